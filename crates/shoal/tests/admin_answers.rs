//! Admin requests Kafka answers in a particular way, through the real binary: a
//! CreateTopics naming one topic twice, and the replica and log-directory APIs, which
//! mean nothing without replicas but must get well-formed answers (sent here without an
//! ApiVersions first, as some clients do).

mod common;

use common::{sb, topic_name, Agent, CREATE_TOPICS_V};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::alter_replica_log_dirs_request::{
    AlterReplicaLogDir, AlterReplicaLogDirTopic,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterReplicaLogDirsRequest, BrokerId, CreateTopicsRequest,
    DescribeLogDirsRequest, ElectLeadersRequest, ListPartitionReassignmentsRequest,
};
use kafka_protocol::ResponseError;

#[test]
fn create_topics_naming_a_topic_twice_refuses_that_name() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let topic = |name: &str, partitions| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
    };
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic("twice", 1), topic("once", 2), topic("twice", 3)])
        .with_timeout_ms(10_000);
    let resp = c.send(&req, CREATE_TOPICS_V);
    let results: Vec<(String, i16)> = resp
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect();
    assert_eq!(
        results,
        vec![
            ("twice".to_string(), ResponseError::InvalidRequest.code()),
            ("once".to_string(), 0),
        ],
        "one result per name"
    );
    let md = c.metadata(None);
    let names: Vec<String> = md
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["once".to_string()],
        "neither 'twice' was created"
    );
}

#[test]
fn replica_apis_get_well_formed_answers() {
    let agent = Agent::start(&[]);
    let mut admin = agent.connect();
    admin.create_topic("r", 2, &[]);
    // A fresh connection straight to each request, no ApiVersions.
    let mut c = agent.connect();

    let list = c.send(&ListPartitionReassignmentsRequest::default(), 0);
    assert_eq!(list.error_code, 0);
    assert!(list.topics.is_empty(), "no reassignment in progress");

    let alter = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        ReassignableTopic::default()
            .with_name(topic_name("r"))
            .with_partitions(vec![
                ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(0)])),
                ReassignablePartition::default().with_partition_index(1),
                ReassignablePartition::default().with_partition_index(9),
            ]),
    ]);
    let resp = c.send(&alter, 1);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<i16> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::InvalidReplicaAssignment.code(),
            ResponseError::NoReassignmentInProgress.code(),
            ResponseError::UnknownTopicOrPartition.code(),
        ]
    );
    let why = resp.responses[0].partitions[0].error_message.as_deref();
    assert!(why.is_some_and(|m| m.contains("no replicas")), "{why:?}");

    for v in 0..=2 {
        let elect = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic(topic_name("r"))
                .with_partitions(vec![0, 1, 5]),
        ]));
        let resp = c.send(&elect, v);
        let codes: Vec<(i32, i16)> = resp.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                (0, ResponseError::ElectionNotNeeded.code()),
                (1, ResponseError::ElectionNotNeeded.code()),
                (5, ResponseError::UnknownTopicOrPartition.code()),
            ],
            "ElectLeaders v{v}"
        );
    }
    // No list: every partition of every topic.
    let resp = c.send(
        &ElectLeadersRequest::default().with_topic_partitions(None),
        2,
    );
    assert_eq!(resp.replica_election_results.len(), 1);
    assert_eq!(resp.replica_election_results[0].partition_result.len(), 2);

    for v in 1..=4 {
        let resp = c.send(&DescribeLogDirsRequest::default().with_topics(None), v);
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.results.len(), 1, "one pseudo log dir (v{v})");
        assert!(resp.results[0].topics.is_empty(), "holding no partitions");
    }

    let move_dirs =
        AlterReplicaLogDirsRequest::default().with_dirs(vec![AlterReplicaLogDir::default()
            .with_path(sb("/data"))
            .with_topics(vec![AlterReplicaLogDirTopic::default()
                .with_name(topic_name("r"))
                .with_partitions(vec![0])])]);
    let resp = c.send(&move_dirs, 2);
    assert_eq!(
        resp.results[0].partitions[0].error_code,
        ResponseError::LogDirNotFound.code()
    );

    // The connection is still good.
    assert_eq!(c.api_versions().error_code, 0);
}
