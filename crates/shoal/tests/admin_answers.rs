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

/// KIP-848 group configs: set with IncrementalAlterConfigs on a GROUP resource, shown
/// by DescribeConfigs, checked, and taken by the group's heartbeats; BROKER configs are
/// the agent's flags, described read-only and refused per key.
#[test]
fn group_configs_apply_and_broker_configs_are_read_only_flags() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ConsumerGroupHeartbeatRequest, DescribeConfigsRequest, GroupId,
        IncrementalAlterConfigsRequest,
    };
    const GROUP: i8 = 32;
    const BROKER: i8 = 4;
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("gc", 2, &[]);
    let alter = |c: &mut common::Client, ty: i8, name: &str, sets: &[(&str, &str)]| {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(ty)
                .with_resource_name(sb(name))
                .with_configs(
                    sets.iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(sb(k))
                                .with_config_operation(0)
                                .with_value(Some(sb(v)))
                        })
                        .collect(),
                ),
        ]);
        let r = c.send(&req, 1).responses.remove(0);
        (r.error_code, r.error_message.map(|m| m.to_string()))
    };
    let describe = |c: &mut common::Client, ty: i8, name: &str| {
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(ty)
                .with_resource_name(sb(name))])
            .with_include_documentation(true);
        c.send(&req, 4).results.remove(0)
    };

    // Refused values name the key and why; nothing is stored.
    let (code, msg) = alter(
        &mut c,
        GROUP,
        "g1",
        &[("consumer.session.timeout.ms", "10")],
    );
    assert_eq!(code, ResponseError::InvalidConfig.code(), "{msg:?}");
    assert!(msg.unwrap().contains("consumer.session.timeout.ms"));
    let (code, _) = alter(
        &mut c,
        GROUP,
        "g1",
        &[("consumer.heartbeat.interval.ms", "60000")],
    );
    assert_eq!(
        code,
        ResponseError::InvalidConfig.code(),
        "a heartbeat interval above the (default 45 s) session timeout"
    );
    let (code, _) = alter(&mut c, GROUP, "g1", &[("session.timeout.ms", "20000")]);
    assert_eq!(code, ResponseError::InvalidConfig.code(), "unknown key");

    let configs =
        |r: &kafka_protocol::messages::describe_configs_response::DescribeConfigsResult| {
            r.configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                        c.config_source,
                    )
                })
                .collect::<Vec<_>>()
        };
    let before = describe(&mut c, GROUP, "g1");
    assert_eq!(before.error_code, 0);
    assert_eq!(
        configs(&before),
        [
            (
                "consumer.session.timeout.ms".to_string(),
                "45000".to_string(),
                5
            ),
            (
                "consumer.heartbeat.interval.ms".to_string(),
                "5000".to_string(),
                5
            ),
        ],
        "unset: the agent's defaults"
    );
    let (code, msg) = alter(
        &mut c,
        GROUP,
        "g1",
        &[
            ("consumer.session.timeout.ms", "20000"),
            ("consumer.heartbeat.interval.ms", "1500"),
        ],
    );
    assert_eq!(code, 0, "{msg:?}");
    assert_eq!(
        configs(&describe(&mut c, GROUP, "g1")),
        [
            (
                "consumer.session.timeout.ms".to_string(),
                "20000".to_string(),
                8
            ),
            (
                "consumer.heartbeat.interval.ms".to_string(),
                "1500".to_string(),
                8
            ),
        ],
        "set: the group's own (GROUP_CONFIG)"
    );

    // The group's heartbeats are told its own interval; another group's, the agent's.
    let join = |c: &mut common::Client, group: &str| {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_member_id(sb(&format!("{group}-member-0000000001")))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![topic_name("gc")]))
            .with_topic_partitions(Some(vec![]));
        let r = c.send(&req, 0);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        r.heartbeat_interval_ms
    };
    assert_eq!(join(&mut c, "g1"), 1500);
    assert_eq!(join(&mut c, "g2"), 5000);

    // BROKER: the agent's own node id, every config read-only from a flag.
    let node = c.metadata(None).brokers[0].node_id.0;
    let broker = describe(&mut c, BROKER, &node.to_string());
    assert_eq!(broker.error_code, 0, "{:?}", broker.error_message);
    let get = |name: &str| {
        broker
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} is described"))
    };
    assert_eq!(
        get("node.id").value.as_deref(),
        Some(node.to_string().as_str())
    );
    assert_eq!(
        get("group.consumer.session.timeout.ms").value.as_deref(),
        Some("45000")
    );
    assert!(broker
        .configs
        .iter()
        .all(|c| c.read_only && c.config_source == 4));
    assert!(get("num.partitions")
        .documentation
        .as_ref()
        .unwrap()
        .contains("--default-partitions"));
    let other = describe(&mut c, BROKER, &(node + 100).to_string());
    assert_eq!(other.error_code, ResponseError::InvalidRequest.code());
    let (code, msg) = alter(
        &mut c,
        BROKER,
        &node.to_string(),
        &[("num.partitions", "3")],
    );
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert!(
        msg.unwrap().contains("--default-partitions"),
        "says which flag"
    );
}
