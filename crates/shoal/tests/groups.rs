//! Consumer-group protocol through the real binary: the join/sync/heartbeat cycle,
//! committed offsets surviving a restart, and the error codes for bad group requests.

mod common;

use bytes::Bytes;
use common::{sb, topic_name, Agent};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::ResponseError;

fn gid(s: &str) -> GroupId {
    GroupId(sb(s))
}

fn join(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))])
}

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    meta: &str,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(sb(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(sb(meta)))])])
}

fn commit_code(r: &kafka_protocol::messages::OffsetCommitResponse) -> i16 {
    r.topics[0].partitions[0].error_code
}

fn fetch_offset(c: &mut common::Client, group: &str) -> Vec<(String, i32, i64, String)> {
    let r = c.send(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(gid(group))
            .with_topics(None)]),
        8,
    );
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0);
    g.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.as_str().to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.metadata
                        .as_ref()
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
        })
        .collect()
}

#[test]
fn a_member_joins_syncs_commits_and_its_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    c.create_topic("gt", 2, &[]);

    let fc = c.send(&FindCoordinatorRequest::default().with_key(sb("g1")), 3);
    assert_eq!(fc.error_code, 0);
    assert_eq!(fc.port, agent.addr.port() as i32);
    let fc4 = c.send(
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![sb("g1"), sb("g2")]),
        4,
    );
    assert_eq!(fc4.coordinators.len(), 2);
    assert!(fc4.coordinators.iter().all(|k| k.error_code == 0));

    // KIP-394: the first join hands out a member id.
    let first = c.send(&join("g1", ""), 5);
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.as_str().to_string();
    let joined = c.send(&join("g1", &member), 5);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.members.len(), 1);
    let generation = joined.generation_id;

    let sync = c.send(
        &SyncGroupRequest::default()
            .with_group_id(gid("g1"))
            .with_generation_id(generation)
            .with_member_id(sb(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(sb(&member))
                .with_assignment(Bytes::from_static(b"assigned"))]),
        3,
    );
    assert_eq!(sync.error_code, 0);
    assert_eq!(sync.assignment, Bytes::from_static(b"assigned"));

    let hb = |c: &mut common::Client, generation, member: &str| {
        c.send(
            &HeartbeatRequest::default()
                .with_group_id(gid("g1"))
                .with_generation_id(generation)
                .with_member_id(sb(member)),
            3,
        )
        .error_code
    };
    assert_eq!(hb(&mut c, generation, &member), 0);
    assert_eq!(
        hb(&mut c, generation + 7, &member),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        hb(&mut c, generation, "someone-else"),
        ResponseError::UnknownMemberId.code()
    );

    // Commits: good, stale generation, unknown member, unknown topic, oversize metadata.
    assert_eq!(
        commit_code(&c.send(&commit("g1", generation, &member, "gt", 1, 42, "m"), 8)),
        0
    );
    assert_eq!(
        commit_code(&c.send(&commit("g1", generation - 1, &member, "gt", 1, 43, ""), 8)),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        commit_code(&c.send(&commit("g1", generation, "nobody", "gt", 1, 43, ""), 8)),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit_code(&c.send(
            &commit("g1", generation, &member, "no-such-topic", 0, 1, ""),
            8
        )),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        commit_code(&c.send(
            &commit("g1", generation, &member, "gt", 0, 1, &"x".repeat(5000)),
            8
        )),
        ResponseError::OffsetMetadataTooLarge.code()
    );
    // A simple consumer (no membership) cannot commit into a live group...
    assert_eq!(
        commit_code(&c.send(&commit("g1", -1, "", "gt", 0, 5, ""), 8)),
        ResponseError::UnknownMemberId.code()
    );
    // ...but can into a group of its own.
    assert_eq!(
        commit_code(&c.send(&commit("solo", -1, "", "gt", 0, 7, ""), 8)),
        0
    );
    assert_eq!(
        fetch_offset(&mut c, "g1"),
        vec![("gt".to_string(), 1, 42, "m".to_string())]
    );

    let described = c.send(
        &DescribeGroupsRequest::default().with_groups(vec![gid("g1"), gid("ghost")]),
        5,
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(
        described.groups[0].members[0].member_assignment,
        Bytes::from_static(b"assigned")
    );
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    let del = c.send(
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("g1")]),
        2,
    );
    assert_eq!(
        del.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );

    // Leave; the group is then empty and shows so.
    let leave = c.send(
        &LeaveGroupRequest::default()
            .with_group_id(gid("g1"))
            .with_members(vec![
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(sb(&member)),
            ]),
        3,
    );
    assert_eq!(leave.error_code, 0);
    assert_eq!(leave.members[0].error_code, 0);
    let listed = c.send(&ListGroupsRequest::default(), 4);
    let state = |name: &str| {
        listed
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == name)
            .map(|g| g.group_state.as_str().to_string())
    };
    assert_eq!(state("g1").as_deref(), Some("Empty"));
    assert_eq!(state("solo").as_deref(), Some("Empty"));

    // Offsets live in the metadata store: they survive a restart of the agent.
    drop(c);
    agent.terminate();
    let agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    assert_eq!(
        fetch_offset(&mut c, "g1"),
        vec![("gt".to_string(), 1, 42, "m".to_string())]
    );
    assert_eq!(
        fetch_offset(&mut c, "solo"),
        vec![("gt".to_string(), 0, 7, String::new())]
    );
    // The old member is gone with the old agent: it must rejoin.
    assert_eq!(
        c.send(
            &HeartbeatRequest::default()
                .with_group_id(gid("g1"))
                .with_generation_id(generation)
                .with_member_id(sb(&member)),
            3
        )
        .error_code,
        ResponseError::UnknownMemberId.code()
    );
    let del = c.send(
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("g1"), gid("never")]),
        2,
    );
    assert_eq!(del.results[0].error_code, 0);
    assert_eq!(
        del.results[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert!(fetch_offset(&mut c, "g1").is_empty());
    c.assert_healthy("gt");
}

#[test]
fn requests_for_unknown_members_and_groups_get_error_codes() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let r = c.send(&join("g", "invented-member"), 5);
    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    let r = c.send(&join("g", "").with_session_timeout_ms(10), 5);
    assert_eq!(r.error_code, ResponseError::InvalidSessionTimeout.code());
    let r = c.send(&join("", ""), 5);
    assert_eq!(r.error_code, ResponseError::InvalidGroupId.code());
    let r = c.send(
        &SyncGroupRequest::default()
            .with_group_id(gid("nope"))
            .with_generation_id(1)
            .with_member_id(sb("m")),
        3,
    );
    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    let r = c.send(
        &LeaveGroupRequest::default()
            .with_group_id(gid("nope"))
            .with_member_id(sb("m")),
        1,
    );
    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    // Old versions answer too (v0 join: no rebalance timeout, no member id round-trip).
    let r = c.send(&join("old", ""), 0);
    assert_eq!(r.error_code, 0);
    assert!(!r.member_id.is_empty());
    c.assert_healthy("after-groups");
}

/// What clients stopped using is forgotten, as Kafka's offsets.retention.minutes and
/// transactional.id.expiration.ms do: the offsets of a group with no members and no
/// recent commit, and a transactional id with nothing open. A group with a member keeps
/// its offsets however old they are.
#[test]
fn empty_groups_offsets_and_idle_transactional_ids_expire() {
    use kafka_protocol::messages::{
        DescribeTransactionsRequest, InitProducerIdRequest, ProducerId, TransactionalId,
    };
    let agent = Agent::start(&[
        "--offsets-retention",
        "2s",
        "--transactional-id-expiration",
        "2s",
        "--retention-check-interval",
        "500ms",
    ]);
    let mut c = agent.connect();
    c.create_topic("exp", 1, &[]);

    // A standalone commit (no members), and a group with a member.
    let r = c.send(&commit("g-empty", -1, "", "exp", 0, 5, ""), 8);
    assert_eq!(commit_code(&r), 0);
    let first = c.send(&join("g-live", ""), 5);
    let member = first.member_id.as_str().to_string();
    let joined = c.send(&join("g-live", &member), 5);
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g-live"))
        .with_generation_id(joined.generation_id)
        .with_member_id(sb(&member))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb(&member))
            .with_assignment(Bytes::new())]);
    assert_eq!(c.send(&sync, 3).error_code, 0);
    let r = c.send(
        &commit("g-live", joined.generation_id, &member, "exp", 0, 9, ""),
        8,
    );
    assert_eq!(commit_code(&r), 0);
    let init = |c: &mut common::Client| {
        let r = c.send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(sb("t-exp"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        );
        assert_eq!(r.error_code, 0);
        r.producer_id.0
    };
    let pid = init(&mut c);
    let described = |c: &mut common::Client| {
        c.send(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(sb("t-exp"))]),
            0,
        )
        .transaction_states[0]
            .error_code
    };
    assert_eq!(described(&mut c), 0);
    assert_eq!(fetch_offset(&mut c, "g-empty").len(), 1);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let heartbeat = HeartbeatRequest::default()
            .with_group_id(gid("g-live"))
            .with_generation_id(joined.generation_id)
            .with_member_id(sb(&member));
        c.send(&heartbeat, 3);
        let empty_gone = fetch_offset(&mut c, "g-empty").is_empty();
        let id_gone = described(&mut c) == ResponseError::TransactionalIdNotFound.code();
        if empty_gone && id_gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not expired: g-empty offsets gone {empty_gone}, t-exp gone {id_gone}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        fetch_offset(&mut c, "g-live")
            .iter()
            .map(|o| o.2)
            .collect::<Vec<_>>(),
        vec![9],
        "the group with a member keeps its offsets"
    );
    assert_ne!(init(&mut c), pid, "an expired id starts afresh");
}
