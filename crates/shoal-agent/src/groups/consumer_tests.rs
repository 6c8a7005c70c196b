use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::*;

const T1: Uuid = Uuid::from_u128(1);
const T2: Uuid = Uuid::from_u128(2);

fn topics() -> Vec<(String, TopicMeta)> {
    vec![
        (
            "orders".into(),
            TopicMeta {
                id: T1,
                partitions: 6,
            },
        ),
        (
            "orders-eu".into(),
            TopicMeta {
                id: T2,
                partitions: 2,
            },
        ),
    ]
}

fn groups() -> ConsumerGroups {
    ConsumerGroups::new(Duration::from_secs(45), Duration::from_secs(5))
}

fn join(id: &str, topics: &[&str]) -> HeartbeatArgs {
    HeartbeatArgs {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(vec![]),
        ..Default::default()
    }
}

/// A plain heartbeat from a member at `epoch` that owns `owned`.
fn beat(id: &str, epoch: i32, owned: &[Tp]) -> HeartbeatArgs {
    HeartbeatArgs {
        group_id: "g".into(),
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.to_vec()),
        ..Default::default()
    }
}

/// A simulated client: what it owns and its epoch, updated from each answer as the
/// Java consumer does (it revokes at once).
#[derive(Default, Clone)]
struct Client {
    epoch: i32,
    owned: Vec<Tp>,
}

impl Client {
    fn apply(&mut self, o: &HeartbeatOutcome) {
        assert_eq!(o.error, 0, "{o:?}");
        self.epoch = o.member_epoch;
        if let Some(a) = &o.assignment {
            self.owned = a.clone();
        }
    }
}

fn no_partition_twice(clients: &HashMap<&str, Client>) {
    let mut seen = BTreeSet::new();
    for c in clients.values() {
        for tp in &c.owned {
            assert!(seen.insert(*tp), "{tp:?} owned by two members");
        }
    }
}

#[test]
fn a_lone_member_gets_every_partition() {
    let g = groups();
    let o = g.heartbeat(join("a", &["orders"]), &topics, Instant::now());
    assert_eq!(o.error, 0);
    assert_eq!(o.member_epoch, 1);
    assert_eq!(o.assignment.unwrap().len(), 6);
    // A steady heartbeat carries no assignment.
    let o = g.heartbeat(beat("a", 1, &[]), &topics, Instant::now());
    assert_eq!(o.member_epoch, 1);
    assert_eq!(o.assignment, None);
}

#[test]
fn partitions_move_only_after_their_owner_revokes_them() {
    let g = groups();
    let now = Instant::now();
    let mut cs: HashMap<&str, Client> = HashMap::new();
    let a = cs.entry("a").or_default();
    a.apply(&g.heartbeat(join("a", &["orders"]), &topics, now));
    assert_eq!(a.owned.len(), 6);
    let mut b = Client::default();
    b.apply(&g.heartbeat(join("b", &["orders"]), &topics, now));
    // b has the new epoch but none of a's partitions yet.
    assert_eq!(b.epoch, 2);
    assert!(b.owned.is_empty());
    cs.insert("b", b);
    no_partition_twice(&cs);
    // a is asked to give three up and stays at its epoch until it does.
    let a = cs.get_mut("a").unwrap();
    let o = g.heartbeat(beat("a", 1, &a.owned.clone()), &topics, now);
    assert_eq!(o.member_epoch, 1);
    a.apply(&o);
    assert_eq!(a.owned.len(), 3);
    no_partition_twice(&cs);
    // b still waits: a has not confirmed.
    let o = g.heartbeat(beat("b", 2, &[]), &topics, now);
    assert_eq!(o.assignment, None);
    assert_eq!(g.describe("g").unwrap().state, "Reconciling");
    // a confirms (its owned list no longer has them) and moves to epoch 2.
    let a = cs.get_mut("a").unwrap();
    let o = g.heartbeat(beat("a", 1, &a.owned.clone()), &topics, now);
    assert_eq!(o.member_epoch, 2);
    a.apply(&o);
    // Now b gets them.
    let b = cs.get_mut("b").unwrap();
    b.apply(&g.heartbeat(beat("b", 2, &[]), &topics, now));
    assert_eq!(b.owned.len(), 3);
    no_partition_twice(&cs);
    assert_eq!(g.describe("g").unwrap().state, "Stable");
}

#[test]
fn epochs_out_of_step_are_fenced_and_commits_stale() {
    let g = groups();
    let now = Instant::now();
    let o = g.heartbeat(join("a", &["orders"]), &topics, now);
    let owned = o.assignment.unwrap();
    let fenced = g.heartbeat(beat("a", 7, &owned), &topics, now);
    assert_eq!(fenced.error, ResponseError::FencedMemberEpoch.code());
    let unknown = g.heartbeat(beat("zz", 1, &[]), &topics, now);
    assert_eq!(unknown.error, ResponseError::UnknownMemberId.code());
    assert_eq!(g.check_commit("g", 1, "a", false, &owned), Some(Ok(())));
    assert_eq!(
        g.check_commit("g", 0, "a", false, &owned),
        Some(Err(ResponseError::StaleMemberEpoch.code()))
    );
    assert_eq!(
        g.check_commit("g", 1, "zz", false, &owned),
        Some(Err(ResponseError::UnknownMemberId.code()))
    );
    assert_eq!(g.check_commit("other", 1, "a", false, &owned), None);
    // The previous epoch with a subset of the assignment is a lost response: accepted.
    g.heartbeat(join("b", &["orders"]), &topics, now);
    let o = g.heartbeat(beat("a", 1, &owned), &topics, now);
    assert_eq!(o.member_epoch, 1, "a must revoke first");
    let kept = o.assignment.unwrap();
    let o = g.heartbeat(beat("a", 1, &kept), &topics, now);
    assert_eq!(o.member_epoch, 2);
    let o = g.heartbeat(beat("a", 1, &kept), &topics, now);
    assert_eq!(o.error, 0, "previous epoch with a subset is accepted");
}

#[test]
fn leaving_and_expiring_members_hand_their_partitions_on() {
    let g = groups();
    let now = Instant::now();
    g.heartbeat(join("a", &["orders"]), &topics, now);
    let mut b = Client::default();
    b.apply(&g.heartbeat(join("b", &["orders"]), &topics, now));
    // a leaves without revoking: its partitions are free at once.
    let left = g.heartbeat(beat("a", -1, &[]), &topics, now);
    assert_eq!((left.error, left.member_epoch), (0, -1));
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, now));
    assert_eq!(b.owned.len(), 6);
    // c joins, then goes silent: after the session timeout b has everything again.
    let mut c = Client::default();
    c.apply(&g.heartbeat(join("c", &["orders"]), &topics, now));
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, now));
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, now));
    assert_eq!(b.owned.len(), 3);
    let soon = now + Duration::from_secs(40);
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, soon));
    g.tick_at(now + Duration::from_secs(46));
    let later = now + Duration::from_secs(46);
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, later));
    assert_eq!(b.owned.len(), 6);
    let d = g.describe("g").unwrap();
    assert_eq!(d.members.len(), 1);
    // The last member leaves: the group is empty and can be deleted.
    g.heartbeat(beat("b", -1, &[]), &topics, later);
    assert_eq!(g.describe("g").unwrap().state, "Empty");
    assert_eq!(g.remove_if_empty("g"), Some(Ok(())));
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_removed() {
    let g = groups();
    let now = Instant::now();
    let a = g.heartbeat(join("a", &["orders"]), &topics, now);
    g.heartbeat(join("b", &["orders"]), &topics, now);
    // a is asked to revoke but keeps reporting every partition.
    let all = a.assignment.unwrap();
    g.heartbeat(beat("a", 1, &all), &topics, now);
    g.tick_at(now + Duration::from_secs(20));
    assert_eq!(g.describe("g").unwrap().members.len(), 2);
    g.heartbeat(beat("b", 2, &[]), &topics, now + Duration::from_secs(20));
    g.tick_at(now + Duration::from_secs(31));
    let d = g.describe("g").unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, "b");
}

#[test]
fn a_static_member_that_leaves_for_a_restart_gets_its_partitions_back() {
    let g = groups();
    let now = Instant::now();
    let mut first = join("a1", &["orders"]);
    first.instance_id = Some("box-1".into());
    let mut a = Client::default();
    a.apply(&g.heartbeat(first.clone(), &topics, now));
    let mut b = Client::default();
    b.apply(&g.heartbeat(join("b", &["orders"]), &topics, now));
    for _ in 0..2 {
        let o = g.heartbeat(
            beat("a1", a.epoch, &a.owned.clone()).with_instance("box-1"),
            &topics,
            now,
        );
        a.apply(&o);
    }
    b.apply(&g.heartbeat(beat("b", b.epoch, &[]), &topics, now));
    let before = a.owned.clone();
    assert_eq!(before.len(), 3);
    // A second process with the same instance id is refused while a1 holds it.
    let mut dup = join("a2", &["orders"]);
    dup.instance_id = Some("box-1".into());
    assert_eq!(
        g.heartbeat(dup.clone(), &topics, now).error,
        ResponseError::UnreleasedInstanceId.code()
    );
    // a1 leaves with -2; its partitions stay reserved for it.
    let o = g.heartbeat(beat("a1", -2, &[]).with_instance("box-1"), &topics, now);
    assert_eq!((o.error, o.member_epoch), (0, -2));
    let o = g.heartbeat(beat("b", b.epoch, &b.owned.clone()), &topics, now);
    assert_eq!(o.assignment, None, "b gets nothing of a's");
    // The restarted instance (a new member id) takes them back.
    let o = g.heartbeat(dup, &topics, now);
    assert_eq!(o.error, 0);
    let mut got = o.assignment.unwrap();
    got.sort();
    assert_eq!(got, before);
}

impl HeartbeatArgs {
    fn with_instance(mut self, inst: &str) -> Self {
        self.instance_id = Some(inst.into());
        self
    }
}

#[test]
fn uniform_keeps_balance_and_range_gives_runs() {
    let g = groups();
    let now = Instant::now();
    let ids = ["m1", "m2", "m3", "m4"];
    let mut cs: HashMap<&str, Client> = HashMap::new();
    for id in ids {
        cs.entry(id).or_default().apply(&g.heartbeat(
            join(id, &["orders", "orders-eu"]),
            &topics,
            now,
        ));
    }
    // Heartbeat until converged, checking that no partition is ever owned twice.
    for _ in 0..6 {
        for id in ids {
            let c = cs.get_mut(id).unwrap();
            let o = g.heartbeat(beat(id, c.epoch, &c.owned.clone()), &topics, now);
            c.apply(&o);
        }
        no_partition_twice(&cs);
    }
    assert_eq!(g.describe("g").unwrap().state, "Stable");
    let mut sizes: Vec<usize> = cs.values().map(|c| c.owned.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 2, 2, 2]);

    let g = groups();
    for id in ["x", "y"] {
        let mut a = join(id, &["orders"]);
        a.server_assignor = Some("range".into());
        g.heartbeat(a, &topics, now);
    }
    let d = g.describe("g").unwrap();
    assert_eq!(d.assignor, "range");
    let x = &d
        .members
        .iter()
        .find(|m| m.member_id == "x")
        .unwrap()
        .target;
    assert_eq!(x, &vec![(T1, 0), (T1, 1), (T1, 2)]);
}

#[test]
fn a_regex_subscription_follows_new_topics() {
    let g = groups();
    let now = Instant::now();
    let mut a = join("a", &[]);
    a.subscribed_topic_names = None;
    a.subscribed_topic_regex = Some("orders.*".into());
    let o = g.heartbeat(a, &topics, now);
    assert_eq!(o.assignment.unwrap().len(), 8);
    let more = || {
        let mut t = topics();
        t.push((
            "orders-us".into(),
            TopicMeta {
                id: Uuid::from_u128(3),
                partitions: 1,
            },
        ));
        t.push((
            "payments".into(),
            TopicMeta {
                id: Uuid::from_u128(4),
                partitions: 1,
            },
        ));
        t
    };
    let o = g.heartbeat(beat("a", 1, &[]), &more, now);
    assert_eq!(o.member_epoch, 2);
    assert_eq!(o.assignment.unwrap().len(), 9);
    let mut bad = join("b", &[]);
    bad.subscribed_topic_regex = Some("(".into());
    assert_eq!(
        g.heartbeat(bad, &topics, now).error,
        ResponseError::InvalidRegularExpression.code()
    );
}

#[test]
fn malformed_heartbeats_get_invalid_request() {
    let g = groups();
    let now = Instant::now();
    let mut a = join("a", &["orders"]);
    a.rebalance_timeout_ms = -1;
    assert_eq!(
        g.heartbeat(a, &topics, now).error,
        ResponseError::InvalidRequest.code()
    );
    let mut a = join("a", &["orders"]);
    a.group_id.clear();
    assert_eq!(
        g.heartbeat(a, &topics, now).error,
        ResponseError::InvalidRequest.code()
    );
    let mut a = join("a", &["orders"]);
    a.server_assignor = Some("sticky".into());
    assert_eq!(
        g.heartbeat(a, &topics, now).error,
        ResponseError::UnsupportedAssignor.code()
    );
}

#[test]
fn a_lone_static_member_restarts_into_its_partitions() {
    let g = groups();
    let now = Instant::now();
    let mut first = join("s1", &["orders"]);
    first.instance_id = Some("box".into());
    let o = g.heartbeat(first, &topics, now);
    assert_eq!(o.assignment.as_ref().unwrap().len(), 6);
    let o = g.heartbeat(beat("s1", -2, &[]).with_instance("box"), &topics, now);
    assert_eq!(o.error, 0);
    let mut again = join("s2", &["orders"]);
    again.instance_id = Some("box".into());
    let o = g.heartbeat(again, &topics, now);
    assert_eq!(o.error, 0);
    assert_eq!(o.assignment.clone().unwrap().len(), 6, "{o:?}");
}

#[test]
fn a_static_member_restarts_after_the_others_are_gone() {
    let g = groups();
    let now = Instant::now();
    let mut cs: HashMap<&str, Client> = HashMap::new();
    let mut sj = join("s1", &["orders"]);
    sj.instance_id = Some("box".into());
    cs.entry("a")
        .or_default()
        .apply(&g.heartbeat(join("a", &["orders"]), &topics, now));
    cs.entry("b")
        .or_default()
        .apply(&g.heartbeat(join("b", &["orders"]), &topics, now));
    cs.entry("s1")
        .or_default()
        .apply(&g.heartbeat(sj, &topics, now));
    let step = |cs: &mut HashMap<&str, Client>, at: Instant| {
        for (id, c) in cs.iter_mut() {
            let mut a = beat(id, c.epoch, &c.owned.clone());
            if *id == "s1" {
                a.instance_id = Some("box".into());
            }
            c.apply(&g.heartbeat(a, &topics, at));
        }
    };
    for _ in 0..4 {
        step(&mut cs, now);
    }
    g.heartbeat(beat("a", cs["a"].epoch, &[]).leaving(), &topics, now);
    cs.remove("a");
    for _ in 0..4 {
        step(&mut cs, now);
    }
    cs.remove("b");
    let later = now + Duration::from_secs(30);
    step(&mut cs, later);
    g.tick_at(now + Duration::from_secs(50));
    let later = now + Duration::from_secs(50);
    for _ in 0..3 {
        step(&mut cs, later);
    }
    assert_eq!(cs["s1"].owned.len(), 6);
    g.heartbeat(beat("s1", -2, &[]).with_instance("box"), &topics, later);
    let mut again = join("s2", &["orders"]);
    again.instance_id = Some("box".into());
    let o = g.heartbeat(again, &topics, later);
    assert_eq!(o.assignment.clone().unwrap().len(), 6, "{o:?}");
}

impl HeartbeatArgs {
    fn leaving(mut self) -> Self {
        self.member_epoch = -1;
        self
    }
}

#[test]
fn a_commit_from_an_older_epoch_counts_for_partitions_held_since() {
    let g = groups();
    let now = Instant::now();
    let mut a = Client::default();
    a.apply(&g.heartbeat(join("a", &["orders"]), &topics, now));
    assert_eq!((a.epoch, a.owned.len()), (1, 6));
    // b joins and leaves: a keeps its three, then gets the other three back at epoch 3.
    g.heartbeat(join("b", &["orders"]), &topics, now);
    a.apply(&g.heartbeat(beat("a", 1, &a.owned.clone()), &topics, now));
    let kept = a.owned.clone();
    a.apply(&g.heartbeat(beat("a", 1, &kept), &topics, now));
    g.heartbeat(beat("b", 2, &[]).leaving(), &topics, now);
    a.apply(&g.heartbeat(beat("a", a.epoch, &a.owned.clone()), &topics, now));
    assert_eq!((a.epoch, a.owned.len()), (3, 6));
    let regained: Vec<Tp> = a
        .owned
        .iter()
        .filter(|tp| !kept.contains(tp))
        .copied()
        .collect();
    // A commit sent at epoch 1, before a learnt of epoch 3: fine for what it held then.
    assert_eq!(g.check_commit("g", 1, "a", false, &kept), Some(Ok(())));
    assert_eq!(
        g.check_commit("g", 1, "a", false, &regained),
        Some(Err(ResponseError::StaleMemberEpoch.code()))
    );
    assert_eq!(g.check_commit("g", 3, "a", false, &regained), Some(Ok(())));
    assert_eq!(
        g.check_commit("g", 4, "a", false, &kept),
        Some(Err(ResponseError::StaleMemberEpoch.code()))
    );
}

#[test]
fn a_groups_own_session_timeout_replaces_the_agents() {
    // The agent's default is 45 s; the group's own config says 10 s.
    let g = groups();
    let now = Instant::now();
    let own = |mut a: HeartbeatArgs| {
        a.session_timeout = Some(Duration::from_secs(10));
        a
    };
    let mut a = Client::default();
    a.apply(&g.heartbeat(own(join("a", &["orders"])), &topics, now));
    let mut b = Client::default();
    b.apply(&g.heartbeat(own(join("b", &["orders"])), &topics, now));
    // b stays alive; a goes silent past 10 s but well within 45 s.
    let later = now + Duration::from_secs(8);
    b.apply(&g.heartbeat(own(beat("b", b.epoch, &b.owned.clone())), &topics, later));
    g.tick_at(now + Duration::from_secs(11));
    let d = g.describe("g").unwrap();
    assert_eq!(
        d.members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect::<Vec<_>>(),
        ["b"],
        "a was removed after the group's 10 s, not the agent's 45 s"
    );
    // Without the group config, the same silence keeps a member.
    let h = groups();
    h.heartbeat(join("a", &["orders"]), &topics, now);
    h.tick_at(now + Duration::from_secs(11));
    assert_eq!(h.describe("g").unwrap().members.len(), 1);
}
