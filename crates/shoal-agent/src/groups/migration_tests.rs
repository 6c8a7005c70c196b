//! The online upgrade of a classic group to the consumer protocol, classic members in a
//! consumer group, and the downgrade back (`consumer_classic.rs`).

use std::collections::BTreeSet;

use bytes::BufMut;

use super::*;
use crate::groups::consumer::HeartbeatArgs;
use crate::groups::embedded::{decode_assignment, encode_assignment};

const T: uuid::Uuid = uuid::Uuid::from_u128(7);

fn topics() -> Vec<(String, TopicMeta)> {
    vec![(
        "t".into(),
        TopicMeta {
            id: T,
            partitions: 4,
        },
    )]
}

/// A version-1 subscription to `t` that still owns `owned`.
fn subscription(owned: &[i32]) -> Bytes {
    let mut b = bytes::BytesMut::new();
    b.put_i16(1);
    b.put_i32(1);
    b.put_i16(1);
    b.put_slice(b"t");
    b.put_i32(-1);
    b.put_i32(1);
    b.put_i16(1);
    b.put_slice(b"t");
    b.put_i32(owned.len() as i32);
    for p in owned {
        b.put_i32(*p);
    }
    b.freeze()
}

fn classic(member: &str, owned: &[i32]) -> JoinArgs {
    JoinArgs {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "classic".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(owned))],
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

fn consumer_join(member: &str) -> HeartbeatArgs {
    HeartbeatArgs {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(vec![]),
        ..Default::default()
    }
}

fn consumer_beat(member: &str, epoch: i32, owned: &BTreeSet<i32>) -> HeartbeatArgs {
    HeartbeatArgs {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.iter().map(|p| (T, *p)).collect()),
        ..Default::default()
    }
}

fn partitions(assignment: &Bytes) -> BTreeSet<i32> {
    decode_assignment(assignment)
        .expect("a consumer-protocol assignment")
        .into_iter()
        .flat_map(|(t, ps)| {
            assert_eq!(t, "t");
            ps
        })
        .collect()
}

/// The generation of the running classic group [`classic_group`] makes.
const GEN: i32 = 2;

/// A running classic group: a owns 0–1 and b 2–3 at generation [`GEN`] (a alone made
/// generation 1).
async fn classic_group(c: &Coordinator) -> (String, String) {
    let a = c.join(classic("", &[]), &topics).unwrap_err().member_id;
    let b = c.join(classic("", &[]), &topics).unwrap_err().member_id;
    let ja = c.join(classic(&a, &[]), &topics).unwrap().await.unwrap();
    assert_eq!(ja.generation, 1);
    let rx_b = c.join(classic(&b, &[]), &topics).unwrap();
    let rx_a = c.join(classic(&a, &[]), &topics).unwrap();
    let (ja, jb) = (rx_a.await.unwrap(), rx_b.await.unwrap());
    assert_eq!((ja.generation, jb.generation), (GEN, GEN));
    let leader = ja.leader.clone();
    let give = |ps: &[i32]| encode_assignment(1, &[("t".to_string(), ps.to_vec())]);
    let plan = vec![(a.clone(), give(&[0, 1])), (b.clone(), give(&[2, 3]))];
    let mut waits = Vec::new();
    // The follower first: the leader's sync completes the rebalance.
    let mut order = [&a, &b];
    order.sort_by_key(|id| **id == leader);
    for id in order {
        let mine = if *id == leader { plan.clone() } else { vec![] };
        waits.push(c.sync("g", GEN, id, None, None, None, mine).unwrap());
    }
    for w in waits {
        assert_eq!(w.await.unwrap().error, 0);
    }
    (a, b)
}

/// A classic member's rejoin inside the consumer group: answered at once, then synced.
fn rejoin_and_sync(c: &Coordinator, id: &str, owned: &[i32]) -> (i32, BTreeSet<i32>) {
    let j = c.join(classic(id, owned), &topics).unwrap_err();
    assert_eq!(j.error, 0, "rejoin of {id}");
    assert!(
        j.leader.is_empty() && j.members.is_empty(),
        "no client-side assignment"
    );
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    let s = c
        .sync(
            "g",
            j.generation,
            id,
            None,
            Some("consumer"),
            Some("range"),
            vec![],
        )
        .unwrap_err();
    assert_eq!(s.error, 0, "sync of {id}");
    (j.generation, partitions(&s.assignment))
}

#[tokio::test]
async fn a_running_classic_group_is_upgraded_and_downgraded_without_double_ownership() {
    let c = Coordinator::new(Duration::ZERO);
    let (a, b) = classic_group(&c).await;

    // A consumer-protocol member joins: the group becomes a consumer group at once.
    let hc = c.consumer_heartbeat(consumer_join("c"), &topics);
    assert_eq!(hc.error, 0, "{:?}", hc.message);
    assert_eq!(
        hc.member_epoch,
        GEN + 1,
        "the join bumps the classic generation"
    );
    assert!(c.consumer.has_members("g"));
    assert!(
        hc.assignment.unwrap_or_default().is_empty(),
        "everything is still held by the classic members"
    );
    let view = c.consumer.describe("g").unwrap();
    assert_eq!(view.members.iter().filter(|m| m.classic).count(), 2);

    // The classic members learn of it from their heartbeats, and rejoin (eager: they
    // revoked everything first).
    for id in [&a, &b] {
        assert_eq!(
            c.heartbeat("g", GEN, id, None),
            ResponseError::RebalanceInProgress.code()
        );
    }
    // A commit at the old generation still counts until the member rejoins.
    assert_eq!(c.check_commit("g", GEN, &a, None, false, &[(T, 0)]), Ok(()));
    let (ga, pa) = rejoin_and_sync(&c, &a, &[]);
    let (gb, pb) = rejoin_and_sync(&c, &b, &[]);
    assert_eq!((ga, gb), (GEN + 1, GEN + 1));
    assert_eq!(
        c.check_commit("g", GEN, &a, None, false, &[(T, 0)]),
        Err(ResponseError::IllegalGeneration.code()),
        "classic members commit at their exact generation"
    );
    assert_eq!(c.check_commit("g", GEN + 1, &a, None, false, &[]), Ok(()));
    assert_eq!(c.heartbeat("g", GEN + 1, &a, None), 0);

    // The consumer member now gets what they let go.
    let hc = c.consumer_heartbeat(consumer_beat("c", GEN + 1, &BTreeSet::new()), &topics);
    let pc: BTreeSet<i32> = hc
        .assignment
        .expect("its partitions")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(!pc.is_empty());
    let mut all: Vec<i32> = pa.iter().chain(&pb).chain(&pc).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        vec![0, 1, 2, 3],
        "disjoint and covering: a {pa:?} b {pb:?} c {pc:?}"
    );

    // The last consumer-protocol member leaves: the group is classic again and rebalances.
    let mut leave = consumer_beat("c", -1, &pc);
    leave.owned = None;
    assert_eq!(c.consumer_heartbeat(leave, &topics).error, 0);
    assert!(!c.consumer.contains("g"));
    assert_eq!(c.describe("g").unwrap().state, "PreparingRebalance");
    assert_eq!(
        c.heartbeat("g", GEN + 1, &a, None),
        ResponseError::RebalanceInProgress.code()
    );
    let rx_a = c.join(classic(&a, &[]), &topics).unwrap();
    let rx_b = c.join(classic(&b, &[]), &topics).unwrap();
    let (ja, jb) = (rx_a.await.unwrap(), rx_b.await.unwrap());
    assert_eq!((ja.error, jb.error), (0, 0));
    assert_eq!(ja.generation, GEN + 2);
    assert_eq!(ja.leader, jb.leader, "a leader assigns again, client-side");
    assert!(ja.leader == a || ja.leader == b);
}

#[tokio::test]
async fn a_cooperative_classic_member_is_given_only_what_it_keeps_until_it_revokes() {
    let c = Coordinator::new(Duration::ZERO);
    let (a, b) = classic_group(&c).await;
    assert_eq!(c.consumer_heartbeat(consumer_join("c"), &topics).error, 0);
    // The sticky assignor takes one partition from one of them for c.
    let view = c.consumer.describe("g").unwrap();
    let target = |id: &str| {
        view.members
            .iter()
            .find(|m| m.member_id == id)
            .unwrap()
            .target
            .len()
    };
    let (a, held) = if target(&a) == 1 {
        (a, [0, 1])
    } else {
        (b, [2, 3])
    };
    // It still owns both as it rejoins (cooperative).
    let (ga, kept) = rejoin_and_sync(&c, &a, &held);
    assert_eq!(ga, GEN, "still revoking: its epoch stays");
    assert_eq!(kept.len(), 1, "given only what it keeps: {kept:?}");
    assert!(kept.is_subset(&held.into()));
    // It revokes the other and rejoins: now at the group's epoch.
    let owned: Vec<i32> = kept.iter().copied().collect();
    let (ga, now_has) = rejoin_and_sync(&c, &a, &owned);
    assert_eq!(ga, GEN + 1);
    assert_eq!(now_has, kept);
}

#[tokio::test]
async fn the_migration_policy_can_refuse_the_upgrade() {
    let c = Coordinator::new(Duration::ZERO).with_migration(false, true);
    classic_group(&c).await;
    let hc = c.consumer_heartbeat(consumer_join("c"), &topics);
    assert_eq!(hc.error, ResponseError::GroupIdNotFound.code());
    assert!(!c.consumer.contains("g"));
    assert_eq!(c.describe("g").unwrap().state, "Stable");
}

#[tokio::test]
async fn a_classic_member_joins_a_running_consumer_group() {
    let c = Coordinator::new(Duration::ZERO);
    let hc = c.consumer_heartbeat(consumer_join("c"), &topics);
    assert_eq!(hc.error, 0);
    let first = c.join(classic("", &[]), &topics).unwrap_err();
    assert_eq!(first.error, ResponseError::MemberIdRequired.code());
    let (g, mine) = rejoin_and_sync(&c, &first.member_id, &[]);
    assert_eq!(g, 2);
    assert!(mine.is_empty(), "c still holds everything: {mine:?}");
    // A join with another embedded protocol is refused.
    let mut other = classic("", &[]);
    other.protocol_type = "connect".into();
    assert_eq!(
        c.join(other, &topics).unwrap_err().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // Garbage metadata is refused too, not decoded into a huge allocation.
    let mut bad = classic("", &[]);
    bad.protocols = vec![(
        "range".into(),
        Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
    )];
    assert_eq!(
        c.join(bad, &topics).unwrap_err().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // Silent past its own session timeout, the classic member is removed.
    c.tick_at(Instant::now() + Duration::from_secs(11));
    let view = c.consumer.describe("g");
    assert!(view.is_none_or(|v| v.members.iter().all(|m| !m.classic)));
}
