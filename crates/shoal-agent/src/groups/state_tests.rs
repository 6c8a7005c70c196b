use super::*;

fn args(group: &str, member: &str) -> JoinArgs {
    JoinArgs {
        group_id: group.into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

/// Joins with the KIP-394 two-step and returns the member id and receiver.
fn join_new(c: &Coordinator, group: &str) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = c.join(args(group, ""), &Vec::new).unwrap_err();
    assert_eq!(first.error, ResponseError::MemberIdRequired.code());
    let id = first.member_id.clone();
    (id.clone(), c.join(args(group, &id), &Vec::new).unwrap())
}

#[tokio::test]
async fn two_members_join_sync_and_heartbeat() {
    let c = Coordinator::new(Duration::ZERO);
    let (a, rx_a) = join_new(&c, "g");
    let ja = rx_a.await.unwrap();
    assert_eq!(
        (ja.error, ja.generation, ja.leader.as_str()),
        (0, 1, a.as_str())
    );
    assert_eq!(ja.members.len(), 1);
    let s = c
        .sync(
            "g",
            1,
            &a,
            None,
            None,
            None,
            vec![(a.clone(), Bytes::from_static(b"all"))],
        )
        .unwrap();
    assert_eq!(s.await.unwrap().assignment, Bytes::from_static(b"all"));
    assert_eq!(c.heartbeat("g", 1, &a, None), 0);

    // A second member triggers a rebalance; the first learns it from its heartbeat.
    let (b, rx_b) = join_new(&c, "g");
    assert_eq!(
        c.heartbeat("g", 1, &a, None),
        ResponseError::RebalanceInProgress.code()
    );
    let rx_a = c.join(args("g", &a), &Vec::new).unwrap();
    let (ja, jb) = (rx_a.await.unwrap(), rx_b.await.unwrap());
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays while it is a member");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "followers get no member list");
    let sb = c.sync("g", 2, &b, None, None, None, vec![]).unwrap();
    let sa = c
        .sync(
            "g",
            2,
            &a,
            None,
            None,
            None,
            vec![
                (a.clone(), Bytes::from_static(b"p0")),
                (b.clone(), Bytes::from_static(b"p1")),
            ],
        )
        .unwrap();
    assert_eq!(sa.await.unwrap().assignment, Bytes::from_static(b"p0"));
    assert_eq!(sb.await.unwrap().assignment, Bytes::from_static(b"p1"));
    assert_eq!(
        c.heartbeat("g", 1, &a, None),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        c.heartbeat("g", 2, "nobody", None),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(c.describe("g").unwrap().state, "Stable");
}

#[tokio::test]
async fn unknown_member_and_leave_and_expiry() {
    let c = Coordinator::new(Duration::ZERO);
    assert_eq!(
        c.join(args("g", "made-up"), &Vec::new).unwrap_err().error,
        ResponseError::UnknownMemberId.code()
    );
    let (a, rx) = join_new(&c, "g");
    rx.await.unwrap();
    c.sync("g", 1, &a, None, None, None, vec![])
        .unwrap()
        .await
        .unwrap();
    let (b, rx_b) = join_new(&c, "g");
    // a never rejoins: after the rebalance timeout it is dropped and b completes alone.
    c.tick_at(Instant::now() + Duration::from_secs(11));
    let jb = rx_b.await.unwrap();
    assert_eq!((jb.generation, jb.leader.as_str()), (2, b.as_str()));
    assert_eq!(
        c.heartbeat("g", 2, &a, None),
        ResponseError::UnknownMemberId.code()
    );
    c.sync("g", 2, &b, None, None, None, vec![])
        .unwrap()
        .await
        .unwrap();
    // b goes silent past its session timeout.
    c.tick_at(Instant::now() + Duration::from_secs(11));
    let d = c.describe("g").unwrap();
    assert!(d.members.is_empty());
    assert_eq!(d.state, "Empty");
    assert_eq!(
        d.protocol_type, "consumer",
        "still a consumer group, as in Kafka"
    );
    // Leave of an unknown member.
    assert_eq!(
        c.leave("g", &[("x".into(), None)]).unwrap(),
        vec![ResponseError::UnknownMemberId.code()]
    );
    assert_eq!(c.remove_if_empty("g"), Ok(true));
}

#[tokio::test]
async fn static_member_rejoin_fences_the_old_id() {
    let c = Coordinator::new(Duration::ZERO);
    let mut a = args("g", "");
    a.instance_id = Some("i1".into());
    let j1 = c.join(a, &Vec::new).unwrap().await.unwrap();
    c.sync("g", 1, &j1.member_id, Some("i1"), None, None, vec![])
        .unwrap()
        .await
        .unwrap();
    let mut again = args("g", "");
    again.instance_id = Some("i1".into());
    // A static member returning unchanged to a stable group is answered at once.
    let j2 = match c.join(again, &Vec::new) {
        Err(o) => *o,
        Ok(rx) => rx.await.unwrap(),
    };
    assert_ne!(j1.member_id, j2.member_id);
    assert_eq!(
        c.heartbeat("g", j2.generation, &j1.member_id, Some("i1")),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(c.describe("g").unwrap().members.len(), 1);
}

#[tokio::test]
async fn commits_are_checked_against_membership() {
    let c = Coordinator::new(Duration::ZERO);
    assert_eq!(c.check_commit("simple", -1, "", None, false, &[]), Ok(()));
    assert_eq!(
        c.check_commit("simple", 3, "m", None, false, &[]),
        Err(ResponseError::IllegalGeneration.code())
    );
    let (a, rx) = join_new(&c, "g");
    rx.await.unwrap();
    assert_eq!(
        c.check_commit("g", 1, &a, None, false, &[]),
        Err(ResponseError::RebalanceInProgress.code())
    );
    c.sync("g", 1, &a, None, None, None, vec![])
        .unwrap()
        .await
        .unwrap();
    assert_eq!(c.check_commit("g", 1, &a, None, false, &[]), Ok(()));
    assert_eq!(
        c.check_commit("g", 0, &a, None, false, &[]),
        Err(ResponseError::IllegalGeneration.code())
    );
    assert_eq!(
        c.check_commit("g", -1, "", None, false, &[]),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(
        c.remove_if_empty("g"),
        Err(ResponseError::NonEmptyGroup.code())
    );
}

#[test]
fn inconsistent_protocols_are_refused() {
    let c = Coordinator::new(Duration::ZERO);
    let (a, _rx) = join_new(&c, "g");
    let mut other = args("g", "");
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        c.join(other, &Vec::new).unwrap_err().error,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert!(!a.is_empty());
}

#[test]
fn subscriptions_parse() {
    // version 1, two topics "ab" and "c"
    let meta = [0u8, 1, 0, 0, 0, 2, 0, 2, b'a', b'b', 0, 1, b'c', 0, 0, 0, 0];
    assert_eq!(
        parse_subscription(&meta).unwrap(),
        vec!["ab".to_string(), "c".to_string()]
    );
    assert!(parse_subscription(&[0, 1, 0, 0, 0, 9]).is_none());
}

#[tokio::test]
async fn static_follower_returns_without_a_rebalance() {
    let c = Coordinator::new(Duration::ZERO);
    let static_args = |inst: &str, member: &str| {
        let mut a = args("g", member);
        a.instance_id = Some(inst.into());
        a
    };
    // i1 forms the group alone and leads it.
    let lead = c
        .join(static_args("i1", ""), &Vec::new)
        .unwrap()
        .await
        .unwrap();
    c.sync("g", 1, &lead.member_id, Some("i1"), None, None, vec![])
        .unwrap()
        .await
        .unwrap();
    // i2 joins; i1 rejoins; generation 2 with both.
    let rx2 = c.join(static_args("i2", ""), &Vec::new).unwrap();
    let lead = c
        .join(static_args("i1", &lead.member_id), &Vec::new)
        .unwrap()
        .await
        .unwrap();
    let follow = rx2.await.unwrap();
    assert_eq!((lead.generation, follow.generation), (2, 2));
    assert_eq!(lead.leader, lead.member_id);
    let sf = c
        .sync("g", 2, &follow.member_id, Some("i2"), None, None, vec![])
        .unwrap();
    c.sync(
        "g",
        2,
        &lead.member_id,
        Some("i1"),
        None,
        None,
        vec![
            (lead.member_id.clone(), Bytes::from_static(b"L")),
            (follow.member_id.clone(), Bytes::from_static(b"F")),
        ],
    )
    .unwrap()
    .await
    .unwrap();
    assert_eq!(sf.await.unwrap().assignment, Bytes::from_static(b"F"));
    // The follower restarts: same instance, new member id, same generation, no rebalance.
    let back = *c.join(static_args("i2", ""), &Vec::new).unwrap_err();
    assert_eq!(back.error, 0);
    assert_eq!(back.generation, 2);
    assert_ne!(back.member_id, follow.member_id);
    assert_eq!(c.describe("g").unwrap().state, "Stable");
    assert_eq!(
        c.heartbeat("g", 2, &lead.member_id, Some("i1")),
        0,
        "the leader is not disturbed"
    );
    assert_eq!(
        c.heartbeat("g", 2, &follow.member_id, Some("i2")),
        ResponseError::FencedInstanceId.code(),
        "the old incarnation is fenced"
    );
    let again = c
        .sync("g", 2, &back.member_id, Some("i2"), None, None, vec![])
        .unwrap_err();
    assert_eq!(again.assignment, Bytes::from_static(b"F"));
    // The leader restarts too (KIP-814): it gets the roster with skip_assignment, and its
    // sync keeps everyone's assignment.
    let leader_back = *c.join(static_args("i1", ""), &Vec::new).unwrap_err();
    assert!(leader_back.skip_assignment);
    assert_eq!(leader_back.leader, leader_back.member_id);
    assert_eq!(leader_back.members.len(), 2);
    let mine = c
        .sync(
            "g",
            2,
            &leader_back.member_id,
            Some("i1"),
            None,
            None,
            vec![],
        )
        .unwrap_err();
    assert_eq!(mine.assignment, Bytes::from_static(b"L"));
    assert_eq!(c.describe("g").unwrap().state, "Stable");
}

#[tokio::test]
async fn released_groups_answer_waiting_members_and_start_afresh() {
    let c = Coordinator::new(Duration::ZERO);
    let (a, rx_a) = join_new(&c, "moved");
    assert_eq!(rx_a.await.unwrap().generation, 1);
    let (_stays, rx_stays) = join_new(&c, "stays");
    assert_eq!(rx_stays.await.unwrap().generation, 1);
    // A second member's join waits for `a` to rejoin: the group is mid-rebalance.
    let (_b, rx_b) = join_new(&c, "moved");

    let gone = c.release(|g| g != "moved");
    assert_eq!(gone, vec!["moved".to_string()]);
    let jb = tokio::time::timeout(Duration::from_secs(1), rx_b)
        .await
        .expect("a waiting join is answered at once")
        .unwrap();
    assert_eq!(jb.error, ResponseError::NotCoordinator.code());
    assert_eq!(c.group_ids(), vec!["stays".to_string()]);
    assert_eq!(
        c.heartbeat("moved", 1, &a, None),
        ResponseError::UnknownMemberId.code(),
        "nothing of the old group is left"
    );
    // Back here later, the group starts from generation 1 without the old members.
    let (_c, rx_c) = join_new(&c, "moved");
    let jc = rx_c.await.unwrap();
    assert_eq!((jc.error, jc.generation, jc.members.len()), (0, 1, 1));
}
