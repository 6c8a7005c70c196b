//! The conformance suite every [`MetaStore`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests with a fresh, empty store. Each check
//! uses its own topic names, so they can share one store. The suite panics (with a
//! message naming the broken promise) on the first violation.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::*;

/// A segment for tests: `span` offsets, timestamps `ts..ts+span`.
pub fn segment(
    topic_id: Uuid,
    partition: i32,
    data_offset: u64,
    ts: i64,
    span: u64,
) -> SegmentAppend {
    SegmentAppend {
        topic_id,
        partition,
        data_offset,
        data_len: 100,
        offset_span: span,
        min_timestamp: ts,
        max_timestamp: ts + span as i64 - 1,
        producer: None,
    }
}

/// Commits a flush as the write path does: the object's pending record first.
pub async fn flush(
    s: &dyn MetaStore,
    object: &ObjectRef,
    segments: &[SegmentAppend],
) -> Result<Vec<SegmentOutcome>, MetaError> {
    s.add_pending_object(&object.key).await?;
    s.commit_flush(object, segments).await
}

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        configs: BTreeMap::new(),
    }
}

/// Runs every check against `store`.
pub async fn run_all(store: Arc<dyn MetaStore>) {
    // Deadline job claims are for unregistered callers; registered agents' claims live
    // under their lease (the etcd backend's own tests cover that).
    job_claims_are_exclusive_until_they_expire(&*store).await;
    // The rest runs as a registered agent, as the agent does, so roles can be claimed.
    store.register_agent(&suite_agent()).await.unwrap();
    roles_fence_their_writes(&*store).await;
    topics_lifecycle(&*store).await;
    commit_assigns_contiguous_offsets(&*store).await;
    commit_skips_unknown_partitions(&*store).await;
    index_lookups(&*store).await;
    concurrent_commits_never_overlap(store.clone()).await;
    cluster_id_is_stable(&*store).await;
    group_offsets(&*store).await;
    idempotent_sequences(&*store).await;
    transactions_and_markers(&*store).await;
    transaction_records(&*store).await;
    log_start_and_unreferenced_objects(&*store).await;
    compaction_swaps_entries_atomically(&*store).await;
    late_markers_end_nothing(&*store).await;
    transaction_records_keep_producer_switches(&*store).await;
    pending_objects_fence_commits(&*store).await;
    client_quotas(&*store).await;
    group_configs(&*store).await;
    scram_credentials(&*store).await;
    acls(&*store).await;
}

async fn scram_credentials(s: &dyn MetaStore) {
    use ScramMechanism::{Sha256, Sha512};
    let cred = |user: &str, mechanism, tag: u8| ScramCredential {
        user: user.to_string(),
        mechanism,
        salt: vec![tag; 16],
        stored_key: vec![tag.wrapping_add(1); 32],
        server_key: vec![tag.wrapping_add(2); 32],
        iterations: 4096 + i32::from(tag),
    };
    assert!(s.scram_credentials(None).await.unwrap().is_empty());
    // Names that need escaping in key-value backends, given out of order.
    let (bob, slash, alice) = ("bob", "a/b%2F", "alice");
    s.alter_scram_credentials(
        &[
            cred(bob, Sha512, 1),
            cred(slash, Sha256, 2),
            cred(alice, Sha512, 3),
            cred(alice, Sha256, 4),
        ],
        &[],
    )
    .await
    .unwrap();
    let all = s.scram_credentials(None).await.unwrap();
    let keys: Vec<(&str, ScramMechanism)> =
        all.iter().map(|c| (c.user.as_str(), c.mechanism)).collect();
    assert_eq!(
        keys,
        [
            (slash, Sha256),
            (alice, Sha256),
            (alice, Sha512),
            (bob, Sha512)
        ],
        "ordered by user, then mechanism"
    );
    assert_eq!(all[1], cred(alice, Sha256, 4), "every byte survives");
    assert_eq!(
        s.scram_credentials(Some(alice)).await.unwrap(),
        [cred(alice, Sha256, 4), cred(alice, Sha512, 3)]
    );
    assert_eq!(
        s.scram_credentials(Some("a")).await.unwrap(),
        [],
        "one user's lookup is exact, not a prefix"
    );
    assert_eq!(
        s.scram_credentials(Some(slash)).await.unwrap(),
        [cred(slash, Sha256, 2)]
    );
    // Replace one, delete two (one of them absent), add one: all in one step.
    s.alter_scram_credentials(
        &[cred(alice, Sha512, 9), cred(bob, Sha256, 5)],
        &[(alice.into(), Sha256), (slash.into(), Sha512)],
    )
    .await
    .unwrap();
    assert_eq!(
        s.scram_credentials(Some(alice)).await.unwrap(),
        [cred(alice, Sha512, 9)]
    );
    assert_eq!(
        s.scram_credentials(Some(bob)).await.unwrap(),
        [cred(bob, Sha256, 5), cred(bob, Sha512, 1)]
    );
    // A pair named twice is refused, and nothing of that call is applied.
    let twice = s
        .alter_scram_credentials(
            &[cred("carol", Sha256, 6)],
            &[(bob.into(), Sha512), (bob.into(), Sha512)],
        )
        .await;
    assert!(matches!(twice, Err(MetaError::Invalid(_))), "{twice:?}");
    assert!(s.scram_credentials(Some("carol")).await.unwrap().is_empty());
    let everyone: Vec<(String, ScramMechanism)> = s
        .scram_credentials(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.user, c.mechanism))
        .collect();
    s.alter_scram_credentials(&[], &everyone).await.unwrap();
    assert!(
        s.scram_credentials(None).await.unwrap().is_empty(),
        "every credential removed"
    );
}

async fn client_quotas(s: &dyn MetaStore) {
    let named = |n: &str| Some(QuotaName::Named(n.to_string()));
    let alice_app = QuotaEntity {
        user: named("alice"),
        client_id: named("app/1"),
    };
    let default_client = QuotaEntity {
        user: None,
        client_id: Some(QuotaName::Default),
    };
    let alice = QuotaEntity {
        user: named("alice"),
        client_id: None,
    };
    let set = |k: &str, v: f64| (k.to_string(), Some(v));
    let unset = |k: &str| (k.to_string(), None);
    assert!(
        s.client_quotas().await.unwrap().is_empty(),
        "no quotas at first"
    );
    s.alter_client_quota(
        &alice_app,
        &[
            set("producer_byte_rate", 1024.0),
            set("request_percentage", 12.5),
        ],
    )
    .await
    .unwrap();
    s.alter_client_quota(&default_client, &[set("consumer_byte_rate", 2e9)])
        .await
        .unwrap();
    s.alter_client_quota(&alice, &[unset("producer_byte_rate")])
        .await
        .unwrap();
    let all = s.client_quotas().await.unwrap();
    let values = |e: &QuotaEntity| {
        all.iter()
            .find(|q| &q.entity == e)
            .map(|q| q.values.clone())
    };
    assert_eq!(
        all.len(),
        2,
        "removing from an absent entity creates nothing: {all:?}"
    );
    assert_eq!(
        values(&alice_app),
        Some(BTreeMap::from([
            ("producer_byte_rate".to_string(), 1024.0),
            ("request_percentage".to_string(), 12.5)
        ])),
        "names with '/' survive, values are exact"
    );
    assert_eq!(
        values(&default_client),
        Some(BTreeMap::from([("consumer_byte_rate".to_string(), 2e9)]))
    );
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.entity.cmp(&b.entity));
    assert_eq!(all, sorted, "ordered by entity");
    // One call sets and removes at once; an entity left empty is forgotten.
    s.alter_client_quota(
        &alice_app,
        &[
            unset("request_percentage"),
            set("producer_byte_rate", 2048.0),
        ],
    )
    .await
    .unwrap();
    let all = s.client_quotas().await.unwrap();
    assert_eq!(
        all.iter()
            .find(|q| q.entity == alice_app)
            .map(|q| q.values.clone()),
        Some(BTreeMap::from([("producer_byte_rate".to_string(), 2048.0)]))
    );
    s.alter_client_quota(&alice_app, &[unset("producer_byte_rate")])
        .await
        .unwrap();
    s.alter_client_quota(&default_client, &[unset("consumer_byte_rate")])
        .await
        .unwrap();
    assert!(
        s.client_quotas().await.unwrap().is_empty(),
        "every entity removed"
    );
}

async fn group_configs(s: &dyn MetaStore) {
    let set = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
    let unset = |k: &str| (k.to_string(), None);
    // Names that need escaping in key-value backends.
    let (g, other) = ("app/1%2F", "app");
    assert!(
        s.group_configs(g).await.unwrap().is_empty(),
        "none at first"
    );
    s.alter_group_configs(
        g,
        &[
            set("consumer.session.timeout.ms", "20000"),
            set("consumer.heartbeat.interval.ms", "2000"),
        ],
    )
    .await
    .unwrap();
    s.alter_group_configs(other, &[unset("consumer.session.timeout.ms")])
        .await
        .unwrap();
    assert!(
        s.group_configs(other).await.unwrap().is_empty(),
        "removing from a group with none creates nothing"
    );
    assert_eq!(
        s.group_configs(g).await.unwrap(),
        BTreeMap::from([
            (
                "consumer.heartbeat.interval.ms".to_string(),
                "2000".to_string()
            ),
            (
                "consumer.session.timeout.ms".to_string(),
                "20000".to_string()
            ),
        ])
    );
    // One call sets and removes at once.
    s.alter_group_configs(
        g,
        &[
            unset("consumer.heartbeat.interval.ms"),
            set("consumer.session.timeout.ms", "30000"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        s.group_configs(g).await.unwrap(),
        BTreeMap::from([(
            "consumer.session.timeout.ms".to_string(),
            "30000".to_string()
        )])
    );
    s.alter_group_configs(g, &[unset("consumer.session.timeout.ms")])
        .await
        .unwrap();
    assert!(s.group_configs(g).await.unwrap().is_empty(), "all removed");
}

/// The agent the suite registers as.
fn suite_agent() -> AgentInfo {
    AgentInfo {
        node_id: -1,
        host: "127.0.0.1".into(),
        port: 9092,
        az: String::new(),
        group: "default".into(),
        roles: vec!["produce".into(), "fetch".into(), "jobs".into()],
        peer_addr: None,
        listeners: Vec::new(),
        incarnation: 0,
    }
}

/// The fence of a role this (registered) store can claim.
pub async fn fence(s: &dyn MetaStore, role: &str) -> Fence {
    s.claim_role(role)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a registered agent can claim the free role {role}"))
}

/// A role's writes go through while its claim holds and are refused once it is gone.
async fn roles_fence_their_writes(s: &dyn MetaStore) {
    let role = "group:conf-fenced";
    let f = fence(s, role).await;
    assert_eq!(
        s.claim_role(role).await.unwrap(),
        Some(f.clone()),
        "claiming a held role again gives the same fence"
    );
    let o = |offset| GroupOffset {
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp: 1,
    };
    s.commit_group_offsets("conf-fenced", &[o(5)], &f)
        .await
        .unwrap();
    if s.standing() == Standing::Alone {
        return; // one agent holds every role: nothing can fence it
    }
    assert!(matches!(s.standing(), Standing::Live { .. }));
    s.release_role(&f).await.unwrap();
    let fenced = |r: Result<(), MetaError>, what: &str| {
        assert!(
            matches!(r, Err(MetaError::Fenced(_))),
            "{what} with a released claim: {r:?}"
        )
    };
    fenced(
        s.commit_group_offsets("conf-fenced", &[o(3)], &f).await,
        "an offset commit",
    );
    fenced(
        s.delete_group_offsets("conf-fenced", "t", &[0], &f).await,
        "an offset delete",
    );
    fenced(
        s.stage_txn_offsets("conf-fenced-txn", "conf-fenced", &[o(4)], &f)
            .await,
        "a transactional offset commit",
    );
    assert!(matches!(
        s.delete_group("conf-fenced", &f).await,
        Err(MetaError::Fenced(_))
    ));
    assert_eq!(
        s.group_offsets("conf-fenced").await.unwrap(),
        vec![o(5)],
        "no fenced write landed"
    );
    let again = fence(s, role).await;
    assert!(again.epoch > f.epoch, "a new claim has a later epoch");
    fenced(
        s.commit_group_offsets("conf-fenced", &[o(3)], &f).await,
        "an old claim after a new one",
    );
    let t = s.create_topic(spec("conf-fenced-t", 1)).await.unwrap();
    let tf = fence(s, "txn:conf-fenced-txn").await;
    let mut r = txn("conf-fenced-txn", 99, &t, TxnState::Ongoing);
    r.version = s.save_transaction(&r, &tf).await.unwrap();
    s.release_role(&tf).await.unwrap();
    assert!(matches!(
        s.save_transaction(&r, &tf).await,
        Err(MetaError::Fenced(_))
    ));
    r.state = TxnState::CompleteAbort;
    assert!(matches!(
        s.complete_transaction(&r, false, &tf).await,
        Err(MetaError::Fenced(_))
    ));
    // A partition's agent adds to the transaction without a claim (transactions v2),
    // ordered by the version alone.
    r.state = TxnState::Ongoing;
    let stale = r.clone();
    r.version = s.save_transaction_unfenced(&r).await.unwrap();
    assert!(matches!(
        s.save_transaction_unfenced(&stale).await,
        Err(MetaError::Conflict(_))
    ));
    s.release_role(&again).await.unwrap();
}

async fn job_claims_are_exclusive_until_they_expire(s: &dyn MetaStore) {
    assert!(s.claim_job("conf-job", "a", 1_000, 500).await.unwrap());
    assert!(
        !s.claim_job("conf-job", "b", 1_200, 500).await.unwrap(),
        "held by a"
    );
    assert!(
        s.claim_job("conf-job", "a", 1_400, 500).await.unwrap(),
        "a renews"
    );
    assert!(
        !s.claim_job("conf-job", "b", 1_800, 500).await.unwrap(),
        "renewed until 1900"
    );
    assert!(
        s.claim_job("conf-job", "b", 1_900, 500).await.unwrap(),
        "a's claim expired"
    );
    assert!(!s.claim_job("conf-job", "a", 2_000, 500).await.unwrap());
    assert!(
        s.claim_job("conf-other", "a", 2_000, 500).await.unwrap(),
        "jobs are separate"
    );
}

async fn compaction_swaps_entries_atomically(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-compact", 2)).await.unwrap();
    commit(
        s,
        "cmp/a",
        &[segment(t.id, 0, 0, 1, 3), segment(t.id, 1, 100, 1, 2)],
    )
    .await;
    commit(s, "cmp/b", &[segment(t.id, 0, 0, 9, 4)]).await;
    let listed = s.referenced_objects("cmp/", 10).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, vec!["cmp/a", "cmp/b"]);
    assert!(
        s.referenced_objects("cmp_", 10).await.unwrap().is_empty(),
        "prefix is literal"
    );
    let mut old = s.object_entries("cmp/a").await.unwrap();
    old.extend(s.object_entries("cmp/b").await.unwrap());
    assert_eq!(old.len(), 3);
    // p0's two entries become one (offsets 0..7), p1's one is moved.
    let new = vec![
        PartitionEntry {
            topic_id: t.id,
            partition: 0,
            entry: IndexEntry {
                base_offset: 0,
                end_offset: 7,
                object_key: "cmp/c".into(),
                object_size: 500,
                data_offset: 0,
                data_len: 200,
                min_timestamp: 1,
                max_timestamp: 12,
            },
        },
        PartitionEntry {
            topic_id: t.id,
            partition: 1,
            entry: IndexEntry {
                base_offset: 0,
                end_offset: 2,
                object_key: "cmp/c".into(),
                object_size: 500,
                data_offset: 200,
                data_len: 100,
                min_timestamp: 1,
                max_timestamp: 2,
            },
        },
    ];
    let c = ObjectRef {
        key: "cmp/c".into(),
        size: 500,
    };
    // An entry that changed underneath (here: a stale copy) makes the swap fail whole.
    let mut stale = old.clone();
    stale[0].entry.end_offset += 1;
    assert!(matches!(
        s.replace_entries(&stale, &c, &new).await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(
        s.index_from(t.id, 0, 0, 10).await.unwrap().len(),
        2,
        "nothing changed"
    );
    assert!(!s.object_known("cmp/c").await.unwrap());

    s.replace_entries(&old, &c, &new).await.unwrap();
    let p0 = s.index_from(t.id, 0, 0, 10).await.unwrap();
    assert_eq!(p0, vec![new[0].entry.clone()]);
    assert_eq!(
        s.index_from(t.id, 1, 1, 10).await.unwrap(),
        vec![new[1].entry.clone()]
    );
    assert!(s.object_entries("cmp/a").await.unwrap().is_empty());
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!(o.high_watermark, 7, "offsets are untouched");
    // The same swap again: its old entries are gone now.
    assert!(matches!(
        s.replace_entries(&old, &c, &new).await,
        Err(MetaError::Conflict(_))
    ));
    let keys: Vec<String> = s
        .referenced_objects("cmp/", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        vec!["cmp/c"],
        "a and b have no entries left, marked or not"
    );
    s.delete_topic("conf-compact").await.unwrap();
}

async fn log_start_and_unreferenced_objects(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-retention", 2)).await.unwrap();
    // gc-a holds p0 0..10 and p1 0..5; gc-b holds p0 10..20.
    commit(
        s,
        "gc-a",
        &[segment(t.id, 0, 0, 1, 10), segment(t.id, 1, 100, 1, 5)],
    )
    .await;
    commit(s, "gc-b", &[segment(t.id, 0, 0, 50, 10)]).await;
    assert!(s.object_known("gc-a").await.unwrap());
    assert!(!s.object_known("gc-never").await.unwrap());
    assert_eq!(s.object_size("gc-a").await.unwrap(), Some(1_000));
    assert_eq!(s.object_size("gc-never").await.unwrap(), None);
    let nothing = s.unreferenced_objects(100, 200, 100).await.unwrap();
    assert!(!nothing.iter().any(|k| k.starts_with("gc-")), "{nothing:?}");

    // Mid-entry: the entry stays, the log start moves.
    assert_eq!(s.advance_log_start(t.id, 0, 4).await.unwrap(), 4);
    assert_eq!(
        s.index_from(t.id, 0, 4, 10).await.unwrap()[0].base_offset,
        0
    );
    // Never backwards, never past the high watermark.
    assert_eq!(s.advance_log_start(t.id, 0, 2).await.unwrap(), 4);
    assert_eq!(s.advance_log_start(t.id, 0, 15).await.unwrap(), 15);
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!((o.log_start, o.high_watermark), (15, 20));
    let idx = s.index_from(t.id, 0, 15, 10).await.unwrap();
    assert_eq!(idx.len(), 1);
    assert_eq!(idx[0].object_key, "gc-b");
    assert_eq!(s.advance_log_start(t.id, 0, 99).await.unwrap(), 20);

    // gc-a is still referenced by partition 1; gc-b by nothing once p0 is past it.
    let marked = s.unreferenced_objects(1_000, 1_000, 100).await.unwrap();
    assert!(
        !marked.iter().any(|k| k.starts_with("gc-")),
        "marked now, not before: {marked:?}"
    );
    let due = s.unreferenced_objects(2_000, 1_500, 100).await.unwrap();
    assert!(due.contains(&"gc-b".to_string()), "{due:?}");
    assert!(!due.contains(&"gc-a".to_string()));
    s.forget_object("gc-b").await.unwrap();
    assert!(!s.object_known("gc-b").await.unwrap());
    assert_eq!(s.object_size("gc-b").await.unwrap(), None, "forgotten");
    // Deleting the topic leaves gc-a unreferenced too.
    s.delete_topic("conf-retention").await.unwrap();
    s.unreferenced_objects(3_000, 0, 100).await.unwrap();
    let due = s.unreferenced_objects(4_000, 3_500, 100).await.unwrap();
    assert!(due.contains(&"gc-a".to_string()), "{due:?}");
    assert!(matches!(
        s.advance_log_start(t.id, 0, 1).await,
        Err(MetaError::UnknownPartition { .. })
    ));
}

fn producer_segment(
    topic_id: Uuid,
    data_offset: u64,
    span: u64,
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    kind: BatchKind,
) -> SegmentAppend {
    let mut s = segment(topic_id, 0, data_offset, 1_000, span);
    s.producer = Some(ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
        last_sequence: first_sequence + span as i32 - 1,
        kind,
    });
    s
}

const DATA: BatchKind = BatchKind::Data {
    transactional: false,
};
const TXN_DATA: BatchKind = BatchKind::Data {
    transactional: true,
};

async fn commit(s: &dyn MetaStore, key: &str, segs: &[SegmentAppend]) -> Vec<SegmentOutcome> {
    crate::conformance::flush(
        s,
        &ObjectRef {
            key: key.to_string(),
            size: 1_000,
        },
        segs,
    )
    .await
    .expect("commit")
}

fn committed(base: i64) -> SegmentOutcome {
    SegmentOutcome::Committed {
        base_offset: base,
        log_start_offset: 0,
    }
}

async fn idempotent_sequences(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-idem", 1)).await.unwrap();
    let a = s.allocate_producer_id().await.unwrap();
    let b = s.allocate_producer_id().await.unwrap();
    assert!(b > a && a >= 0, "producer ids must be fresh: {a}, {b}");
    let seg = |off, span, pid, epoch, seq| producer_segment(t.id, off, span, pid, epoch, seq, DATA);

    // Two batches of one producer in one commit: in order, one index entry.
    let out = commit(s, "idem-1", &[seg(0, 5, a, 0, 0), seg(100, 5, a, 0, 5)]).await;
    assert_eq!(out, vec![committed(0), committed(5)]);
    let idx = s.index_from(t.id, 0, 0, 10).await.unwrap();
    assert_eq!(
        idx.len(),
        1,
        "adjacent segments of one commit share an entry: {idx:?}"
    );
    assert_eq!((idx[0].end_offset, idx[0].data_len), (10, 200));

    // A retry of a remembered batch is a duplicate with its original offset.
    let out = commit(s, "idem-2", &[seg(0, 5, a, 0, 0), seg(100, 5, a, 0, 10)]).await;
    assert_eq!(
        out,
        vec![
            SegmentOutcome::Duplicate {
                base_offset: 0,
                log_start_offset: 0
            },
            committed(10)
        ]
    );
    // A gap, an old epoch, a new epoch not starting at 0: refused, nothing written.
    let out = commit(
        s,
        "idem-3",
        &[
            seg(0, 5, a, 0, 20),
            seg(100, 1, a, -1, 15),
            seg(200, 1, a, 1, 3),
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            SegmentOutcome::Refused(ProducerRefusal::OutOfOrderSequence),
            SegmentOutcome::Refused(ProducerRefusal::InvalidProducerEpoch),
            SegmentOutcome::Refused(ProducerRefusal::OutOfOrderSequence),
        ]
    );
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        15
    );
    // A new epoch from 0; an unknown producer may start anywhere.
    let out = commit(s, "idem-4", &[seg(0, 2, a, 1, 0), seg(100, 2, b, 0, 77)]).await;
    assert_eq!(out, vec![committed(15), committed(17)]);
    // The old epoch is now fenced.
    let out = commit(s, "idem-5", &[seg(0, 5, a, 0, 15)]).await;
    assert_eq!(
        out,
        vec![SegmentOutcome::Refused(
            ProducerRefusal::InvalidProducerEpoch
        )]
    );
    let producers = s.producers(t.id, 0).await.unwrap();
    assert_eq!(producers.len(), 2);
    assert_eq!(
        (
            producers[0].producer_id,
            producers[0].epoch,
            producers[0].last_sequence
        ),
        (a, 1, 1)
    );
    assert_eq!(
        (producers[1].producer_id, producers[1].last_sequence),
        (b, 78)
    );
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!(o.last_stable, o.high_watermark, "no open transaction");

    // Expired producers are forgotten: any sequence is accepted again.
    assert!(s.expire_producers(i64::MAX).await.unwrap() >= 2);
    assert!(s.producers(t.id, 0).await.unwrap().is_empty());
    let out = commit(s, "idem-6", &[seg(0, 1, a, 1, 40)]).await;
    assert_eq!(out, vec![committed(19)]);
}

fn txn(id: &str, producer_id: i64, topic: &TopicInfo, state: TxnState) -> Transaction {
    Transaction {
        transactional_id: id.to_string(),
        producer_id,
        epoch: 0,
        state,
        timeout_ms: 60_000,
        started_ms: 1,
        updated_ms: 1,
        partitions: vec![TxnPartition {
            topic: topic.name.clone(),
            topic_id: topic.id,
            partition: 0,
        }],
        groups: vec![],
        next_producer_id: -1,
        previous_producer_id: -1,
        version: 0,
    }
}

async fn transactions_and_markers(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-txn", 1)).await.unwrap();
    let other = s.create_topic(spec("conf-txn-other", 1)).await.unwrap();
    let (a, b) = (
        s.allocate_producer_id().await.unwrap(),
        s.allocate_producer_id().await.unwrap(),
    );
    let seg = |off, span, pid, seq, kind| producer_segment(t.id, off, span, pid, 0, seq, kind);
    let marker = |pid, commit| seg(0, 1, pid, -1, BatchKind::Marker { commit });

    // Transactional data needs an ongoing transaction listing the partition.
    let out = commit(s, "txn-0", &[seg(0, 3, a, 0, TXN_DATA)]).await;
    assert_eq!(
        out,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)]
    );
    let (fa, fb) = (
        fence(s, "txn:conf-txn-a").await,
        fence(s, "txn:conf-txn-b").await,
    );
    let mut ta = txn("conf-txn-a", a, &other, TxnState::Ongoing);
    ta.version = s.save_transaction(&ta, &fa).await.unwrap();
    let out = commit(s, "txn-1", &[seg(0, 3, a, 0, TXN_DATA)]).await;
    assert_eq!(
        out,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)],
        "the partition is not in the transaction"
    );
    let mut ta = txn("conf-txn-a", a, &t, TxnState::Ongoing);
    ta.version = 1;
    ta.version = s.save_transaction(&ta, &fa).await.unwrap();
    let mut tb = txn("conf-txn-b", b, &t, TxnState::Ongoing);
    tb.version = s.save_transaction(&tb, &fb).await.unwrap();

    // a: offsets 0..3 (open), plain 3..5, b: 5..7 (open).
    let out = commit(
        s,
        "txn-2",
        &[
            seg(0, 3, a, 0, TXN_DATA),
            segment(t.id, 0, 300, 1_000, 2),
            seg(400, 2, b, 0, TXN_DATA),
        ],
    )
    .await;
    assert_eq!(out, vec![committed(0), committed(3), committed(5)]);
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable), (7, 0));

    // Markers end only a transaction being ended: the record in the matching Prepare state.
    assert_eq!(
        commit(s, "txn-3a", &[marker(a, false)]).await,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)],
        "a marker for an ongoing transaction"
    );
    ta.state = TxnState::PrepareAbort;
    ta.version = s.save_transaction(&ta, &fa).await.unwrap();
    tb.state = TxnState::PrepareCommit;
    tb.version = s.save_transaction(&tb, &fb).await.unwrap();
    assert_eq!(
        commit(s, "txn-3b", &[marker(a, true)]).await,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)],
        "a commit marker for a transaction being aborted"
    );
    // a aborts (marker at 7): LSO moves to b's first offset; the abort is recorded.
    assert_eq!(
        commit(s, "txn-3", &[marker(a, false)]).await,
        vec![committed(7)]
    );
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable), (8, 5));
    // b commits (marker at 8): nothing open, no abort recorded for b.
    assert_eq!(
        commit(s, "txn-4", &[marker(b, true)]).await,
        vec![committed(8)]
    );
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable), (9, 9));
    let aborted = s.aborted_transactions(t.id, 0, 0, 9).await.unwrap();
    assert_eq!(
        aborted,
        vec![AbortedTxn {
            producer_id: a,
            first_offset: 0,
            last_offset: 7
        }]
    );
    assert!(s
        .aborted_transactions(t.id, 0, 8, 9)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.aborted_transactions(t.id, 0, 7, 8).await.unwrap().len(),
        1
    );
    // A late copy of b's marker (b's transaction completed) closes nothing.
    tb.state = TxnState::CompleteCommit;
    tb.version = s.save_transaction(&tb, &fb).await.unwrap();
    assert_eq!(
        commit(s, "txn-4b", &[marker(b, true)]).await,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)]
    );
    ta.state = TxnState::Ongoing;
    ta.version = s.save_transaction(&ta, &fa).await.unwrap();
    // Sequences go on across transactions within an epoch.
    let out = commit(
        s,
        "txn-5",
        &[seg(0, 1, a, 3, TXN_DATA), seg(100, 3, a, 0, TXN_DATA)],
    )
    .await;
    assert_eq!(
        out,
        vec![
            committed(9),
            SegmentOutcome::Duplicate {
                base_offset: 0,
                log_start_offset: 0
            }
        ]
    );
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!(o.last_stable, 9, "a's new transaction holds the LSO back");
    // Deleting records past an open transaction's start moves the LSO with the log start.
    assert_eq!(s.advance_log_start(t.id, 0, 10).await.unwrap(), 10);
    assert_eq!(s.partition_offsets(t.id, 0).await.unwrap().last_stable, 10);
    s.delete_topic("conf-txn").await.unwrap();
    s.delete_topic("conf-txn-other").await.unwrap();
}

/// GC and a slow writer race for an object: whichever of the commit and GC's fence
/// comes first wins, so a commit never references an object GC deletes.
async fn pending_objects_fence_commits(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-pending", 1)).await.unwrap();
    let obj = |k: &str| ObjectRef {
        key: k.to_string(),
        size: 1_000,
    };
    let seg = || segment(t.id, 0, 0, 1, 2);
    let pending = |key: &'static str| async move {
        s.pending_objects(1_000)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.key == key)
    };
    // A commit consumes the pending record; without one there is no commit.
    s.add_pending_object("pend-a").await.unwrap();
    assert!(matches!(
        s.add_pending_object("pend-a").await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(pending("pend-a").await.map(|p| p.fenced), Some(false));
    assert_eq!(
        s.commit_flush(&obj("pend-a"), &[seg()]).await.unwrap(),
        vec![committed(0)]
    );
    assert_eq!(pending("pend-a").await, None, "the commit consumed it");
    assert!(
        s.commit_flush(&obj("pend-a"), &[seg()]).await.is_err(),
        "committed twice"
    );
    assert!(
        s.commit_flush(&obj("pend-none"), &[seg()]).await.is_err(),
        "a commit without a pending record"
    );
    assert!(!s.fence_object("pend-a", None).await.unwrap(), "committed");

    // GC fences a pending object (the writer paused between PUT and commit).
    s.add_pending_object("pend-b").await.unwrap();
    let p = pending("pend-b").await.expect("listed");
    assert!(!s.fence_object("pend-b", None).await.unwrap());
    assert!(!s
        .fence_object("pend-b", Some(p.instance + 1_000_000))
        .await
        .unwrap());
    assert!(s.fence_object("pend-b", Some(p.instance)).await.unwrap());
    assert!(s.fence_object("pend-b", Some(p.instance)).await.unwrap());
    assert_eq!(pending("pend-b").await.map(|p| p.fenced), Some(true));
    assert!(matches!(
        s.commit_flush(&obj("pend-b"), &[seg()]).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(!s.object_known("pend-b").await.unwrap());
    assert!(matches!(
        s.add_pending_object("pend-b").await,
        Err(MetaError::Conflict(_))
    ));
    let compacted = [PartitionEntry {
        topic_id: t.id,
        partition: 0,
        entry: s.index_from(t.id, 0, 0, 1).await.unwrap().remove(0),
    }];
    assert!(
        s.replace_entries(&compacted, &obj("pend-b"), &compacted)
            .await
            .is_err(),
        "compaction into a fenced object"
    );
    // An object with no record at all (the writer's pending write is late) is fenced too.
    assert!(s.fence_object("pend-c", None).await.unwrap());
    assert!(s.add_pending_object("pend-c").await.is_err());
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        2,
        "only pend-a was committed"
    );
    // Forgetting drops the tombstones.
    s.forget_object("pend-b").await.unwrap();
    s.forget_object("pend-c").await.unwrap();
    assert_eq!(pending("pend-b").await, None);
    assert_eq!(pending("pend-c").await, None);
    s.delete_topic("conf-pending").await.unwrap();
}

/// The producer ids of a transactions-v2 switch survive a save and a load, saved with or
/// without a fence.
async fn transaction_records_keep_producer_switches(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-pid-switch", 1)).await.unwrap();
    let f = fence(s, "txn:conf-pid-switch").await;
    let mut r = txn("conf-pid-switch", 7, &t, TxnState::PrepareCommit);
    r.next_producer_id = 8;
    r.version = s.save_transaction(&r, &f).await.unwrap();
    let back = s.transaction("conf-pid-switch").await.unwrap().unwrap();
    assert_eq!((back.next_producer_id, back.previous_producer_id), (8, -1));
    r.state = TxnState::Ongoing;
    r.producer_id = 8;
    r.next_producer_id = -1;
    r.previous_producer_id = 7;
    r.version = s.save_transaction_unfenced(&r).await.unwrap();
    let back = s.transaction("conf-pid-switch").await.unwrap().unwrap();
    assert_eq!(back, r);
    // Expiry forgets the record, but only the version it looked at.
    let mut stale = r.clone();
    stale.version -= 1;
    assert!(matches!(
        s.delete_transaction(&stale, &f).await,
        Err(MetaError::Conflict(_))
    ));
    s.delete_transaction(&r, &f).await.unwrap();
    assert_eq!(s.transaction("conf-pid-switch").await.unwrap(), None);
    assert!(!s
        .transactions()
        .await
        .unwrap()
        .iter()
        .any(|t| t.transactional_id == "conf-pid-switch"));
    s.release_role(&f).await.unwrap();
    s.delete_topic("conf-pid-switch").await.unwrap();
}

/// Two coordinators finishing the same PrepareCommit (a handoff): the second one's marker
/// arrives after the transaction completed and the producer began its next transaction
/// with the same producer id and epoch. It must not end that transaction.
async fn late_markers_end_nothing(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-late-marker", 1)).await.unwrap();
    let pid = s.allocate_producer_id().await.unwrap();
    let seg = |off, span, seq, kind| producer_segment(t.id, off, span, pid, 0, seq, kind);
    let marker = || seg(0, 1, -1, BatchKind::Marker { commit: true });
    let f = fence(s, "txn:conf-late-marker").await;
    let mut r = txn("conf-late-marker", pid, &t, TxnState::Ongoing);
    r.version = s.save_transaction(&r, &f).await.unwrap();
    assert_eq!(
        commit(s, "late-0", &[seg(0, 2, 0, TXN_DATA)]).await,
        vec![committed(0)]
    );
    r.state = TxnState::PrepareCommit;
    r.version = s.save_transaction(&r, &f).await.unwrap();
    assert_eq!(commit(s, "late-1", &[marker()]).await, vec![committed(2)]);
    r.state = TxnState::CompleteCommit;
    r.version = s.save_transaction(&r, &f).await.unwrap();
    // The next transaction, same producer id and epoch, opens at offset 3.
    r.state = TxnState::Ongoing;
    r.version = s.save_transaction(&r, &f).await.unwrap();
    assert_eq!(
        commit(s, "late-2", &[seg(0, 2, 2, TXN_DATA)]).await,
        vec![committed(3)]
    );
    assert_eq!(s.partition_offsets(t.id, 0).await.unwrap().last_stable, 3);
    // The other coordinator's copy of the first transaction's marker.
    assert_eq!(
        commit(s, "late-3", &[marker()]).await,
        vec![SegmentOutcome::Refused(ProducerRefusal::InvalidTxnState)],
        "a late marker must be refused"
    );
    let o = s.partition_offsets(t.id, 0).await.unwrap();
    assert_eq!(
        (o.high_watermark, o.last_stable),
        (5, 3),
        "a late marker must not end the next transaction"
    );
    s.delete_topic("conf-late-marker").await.unwrap();
}

async fn transaction_records(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-txn-rec", 2)).await.unwrap();
    assert_eq!(s.transaction("conf-rec").await.unwrap(), None);
    let (f, g1) = (fence(s, "txn:conf-rec").await, fence(s, "group:g1").await);
    let mut r = txn("conf-rec", 7, &t, TxnState::Ongoing);
    r.groups = vec!["g1".into()];
    r.version = s.save_transaction(&r, &f).await.unwrap();
    assert_eq!(r.version, 1);
    assert_eq!(s.transaction("conf-rec").await.unwrap().as_ref(), Some(&r));
    // A stale version loses.
    let mut stale = r.clone();
    stale.version = 0;
    assert!(matches!(
        s.save_transaction(&stale, &f).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(s
        .transactions()
        .await
        .unwrap()
        .iter()
        .any(|x| x.transactional_id == "conf-rec"));

    let offset = |p, o| GroupOffset {
        topic: "conf-txn-rec".into(),
        partition: p,
        offset: o,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp: 5,
    };
    s.stage_txn_offsets("conf-rec", "g1", &[offset(0, 10), offset(1, 20)], &g1)
        .await
        .unwrap();
    assert_eq!(
        s.pending_txn_offsets("g1").await.unwrap(),
        vec![
            ("conf-txn-rec".to_string(), 0),
            ("conf-txn-rec".to_string(), 1)
        ]
    );
    assert!(
        s.group_offsets("g1").await.unwrap().is_empty(),
        "staged, not committed"
    );
    // Abort drops them.
    r.state = TxnState::CompleteAbort;
    r.version = s.complete_transaction(&r, false, &f).await.unwrap();
    assert!(s.pending_txn_offsets("g1").await.unwrap().is_empty());
    assert!(s.group_offsets("g1").await.unwrap().is_empty());
    // Commit applies them.
    s.stage_txn_offsets("conf-rec", "g1", &[offset(0, 11)], &g1)
        .await
        .unwrap();
    r.state = TxnState::CompleteCommit;
    r.partitions.clear();
    r.groups.clear();
    r.version = s.complete_transaction(&r, true, &f).await.unwrap();
    assert_eq!(s.group_offsets("g1").await.unwrap(), vec![offset(0, 11)]);
    assert!(s.pending_txn_offsets("g1").await.unwrap().is_empty());
    let stored = s.transaction("conf-rec").await.unwrap().unwrap();
    assert_eq!(stored, r);
}

async fn topics_lifecycle(s: &dyn MetaStore) {
    let mut sp = spec("conf-topics", 3);
    sp.configs.insert("cleanup.policy".into(), "delete".into());
    let t = s.create_topic(sp.clone()).await.expect("create topic");
    assert_eq!(t.partitions, 3);
    assert!(!t.id.is_nil(), "topic id must not be nil");
    assert!(matches!(
        s.create_topic(sp).await,
        Err(MetaError::TopicExists(_))
    ));
    assert!(matches!(
        s.create_topic(spec("conf-zero", 0)).await,
        Err(MetaError::Invalid(_))
    ));
    let listed = s.list_topics().await.unwrap();
    let found = listed
        .iter()
        .find(|x| x.name == "conf-topics")
        .expect("listed");
    assert_eq!(found, &t);

    let grown = s.create_partitions("conf-topics", 5).await.unwrap();
    assert_eq!(grown.partitions, 5);
    assert_eq!(
        s.partition_offsets(t.id, 4).await.unwrap(),
        PartitionOffsets {
            log_start: 0,
            high_watermark: 0,
            last_stable: 0,
        }
    );
    assert!(matches!(
        s.create_partitions("conf-topics", 5).await,
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        s.create_partitions("conf-missing", 5).await,
        Err(MetaError::UnknownTopic(_))
    ));
    // Hundreds at once: more than one etcd transaction (max-txn-ops, 128 by default).
    let many = s.create_partitions("conf-topics", 305).await.unwrap();
    assert_eq!(many.partitions, 305);
    assert_eq!(
        s.partition_offsets(t.id, 304).await.unwrap().high_watermark,
        0
    );

    let configs: BTreeMap<_, _> = [("retention.ms".to_string(), "1000".to_string())].into();
    let changed = s
        .set_topic_configs("conf-topics", configs.clone())
        .await
        .unwrap();
    assert_eq!(
        changed.configs, configs,
        "set_topic_configs replaces the whole map"
    );

    let deleted = s.delete_topic("conf-topics").await.unwrap();
    assert_eq!(deleted.id, t.id);
    assert!(matches!(
        s.delete_topic("conf-topics").await,
        Err(MetaError::UnknownTopic(_))
    ));
    assert!(matches!(
        s.partition_offsets(t.id, 0).await,
        Err(MetaError::UnknownPartition { .. })
    ));
    // The name is free again, with a new id.
    let again = s.create_topic(spec("conf-topics", 1)).await.unwrap();
    assert_ne!(again.id, t.id);
}

async fn commit_assigns_contiguous_offsets(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-commit", 2)).await.unwrap();
    let obj = |k: &str| ObjectRef {
        key: k.to_string(),
        size: 1000,
    };
    let out = crate::conformance::flush(
        s,
        &obj("c1"),
        &[segment(t.id, 0, 0, 10, 5), segment(t.id, 1, 100, 10, 2)],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            SegmentOutcome::Committed {
                base_offset: 0,
                log_start_offset: 0
            },
            SegmentOutcome::Committed {
                base_offset: 0,
                log_start_offset: 0
            },
        ]
    );
    let out = crate::conformance::flush(s, &obj("c2"), &[segment(t.id, 0, 0, 20, 3)])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![SegmentOutcome::Committed {
            base_offset: 5,
            log_start_offset: 0
        }]
    );
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        8
    );
    assert_eq!(
        s.partition_offsets(t.id, 1).await.unwrap().high_watermark,
        2
    );
    // Many partitions in one call, in the order asked, an unknown one among them; more
    // than one backend step holds (SQLite's tasks, etcd's max-txn-ops).
    let mut asked = Vec::new();
    for i in 0..700 {
        asked.push((t.id, i % 2));
        if i == 350 {
            asked.push((t.id, 9));
        }
    }
    let got = s.partitions_offsets(&asked).await;
    assert_eq!(got.len(), asked.len());
    for ((_, p), o) in asked.iter().zip(&got) {
        match (p, o) {
            (0, Ok(o)) => assert_eq!(o.high_watermark, 8),
            (1, Ok(o)) => assert_eq!(o.high_watermark, 2),
            (9, Err(MetaError::UnknownPartition { partition: 9, .. })) => {}
            other => panic!("partition {p}: {other:?}"),
        }
    }
}

async fn commit_skips_unknown_partitions(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-unknown", 1)).await.unwrap();
    let out = crate::conformance::flush(
        s,
        &ObjectRef {
            key: "u1".into(),
            size: 1,
        },
        &[
            segment(t.id, 7, 0, 0, 1),
            segment(Uuid::new_v4(), 0, 0, 0, 1),
            segment(t.id, 0, 0, 0, 4),
        ],
    )
    .await
    .unwrap();
    assert_eq!(out[0], SegmentOutcome::UnknownPartition);
    assert_eq!(out[1], SegmentOutcome::UnknownPartition);
    assert_eq!(
        out[2],
        SegmentOutcome::Committed {
            base_offset: 0,
            log_start_offset: 0
        }
    );
}

async fn index_lookups(s: &dyn MetaStore) {
    let t = s.create_topic(spec("conf-index", 1)).await.unwrap();
    // Three objects: offsets [0,10) ts 100.., [10,15) ts 50.., [15,35) ts 200..
    for (i, (ts, span)) in [(100, 10), (50, 5), (200, 20)].into_iter().enumerate() {
        crate::conformance::flush(
            s,
            &ObjectRef {
                key: format!("i{i}"),
                size: 1,
            },
            &[segment(t.id, 0, i as u64 * 7, ts, span)],
        )
        .await
        .unwrap();
    }
    let from = |o| s.index_from(t.id, 0, o, 10);
    let bases = |v: Vec<IndexEntry>| v.iter().map(|e| e.base_offset).collect::<Vec<_>>();
    assert_eq!(bases(from(0).await.unwrap()), vec![0, 10, 15]);
    assert_eq!(
        bases(from(9).await.unwrap()),
        vec![0, 10, 15],
        "entry containing offset first"
    );
    assert_eq!(bases(from(12).await.unwrap()), vec![10, 15]);
    assert_eq!(bases(from(34).await.unwrap()), vec![15]);
    assert!(from(35).await.unwrap().is_empty());
    assert_eq!(
        bases(s.index_from(t.id, 0, 0, 2).await.unwrap()),
        vec![0, 10],
        "limit"
    );
    let e = &from(12).await.unwrap()[0];
    assert_eq!(
        (e.object_key.as_str(), e.data_offset, e.end_offset),
        ("i1", 7, 15)
    );

    let ts = |x| s.index_for_timestamp(t.id, 0, x);
    assert_eq!(ts(0).await.unwrap().unwrap().base_offset, 0);
    assert_eq!(ts(105).await.unwrap().unwrap().base_offset, 0);
    assert_eq!(
        ts(110).await.unwrap().unwrap().base_offset,
        15,
        "max_ts of [0,10) is 109"
    );
    assert!(ts(10_000).await.unwrap().is_none());
    let max = s.index_max_timestamp(t.id, 0).await.unwrap().unwrap();
    assert_eq!(max.base_offset, 15);
}

async fn concurrent_commits_never_overlap(s: Arc<dyn MetaStore>) {
    let t = s.create_topic(spec("conf-concurrent", 2)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let segs = [
                    segment(t.id, 0, 0, 0, (w + 1) as u64),
                    segment(t.id, 1, 0, 0, 1),
                ];
                crate::conformance::flush(
                    &*s,
                    &ObjectRef {
                        key: format!("w{w}-{i}"),
                        size: 1,
                    },
                    &segs,
                )
                .await
                .expect("concurrent commit");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expected: i64 = (1..=6).map(|w| w * 15).sum();
    assert_eq!(
        s.partition_offsets(t.id, 0).await.unwrap().high_watermark,
        expected
    );
    assert_eq!(
        s.partition_offsets(t.id, 1).await.unwrap().high_watermark,
        90
    );
    let entries = s.index_from(t.id, 0, 0, 1000).await.unwrap();
    let mut next = 0;
    for e in &entries {
        assert_eq!(
            e.base_offset, next,
            "index entries must be contiguous, no gap or overlap"
        );
        next = e.end_offset;
    }
    assert_eq!(next, expected);
}

async fn cluster_id_is_stable(s: &dyn MetaStore) {
    let a = s.cluster_id().await.unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, s.cluster_id().await.unwrap());
}

async fn group_offsets(s: &dyn MetaStore) {
    let o = |topic: &str, partition, offset| GroupOffset {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: Some(format!("m{offset}")),
        commit_timestamp: 1,
    };
    let (g, h) = (
        fence(s, "group:conf-g").await,
        fence(s, "group:conf-h").await,
    );
    assert!(s.group_offsets("conf-g").await.unwrap().is_empty());
    s.commit_group_offsets("conf-g", &[o("b", 1, 5), o("a", 0, 7), o("a", 1, 9)], &g)
        .await
        .unwrap();
    s.commit_group_offsets("conf-g", &[o("a", 0, 8)], &g)
        .await
        .unwrap();
    s.commit_group_offsets("conf-h", &[o("a", 0, 1)], &h)
        .await
        .unwrap();
    let got = s.group_offsets("conf-g").await.unwrap();
    assert_eq!(
        got,
        vec![o("a", 0, 8), o("a", 1, 9), o("b", 1, 5)],
        "later commits replace earlier ones"
    );
    s.delete_group_offsets("conf-g", "a", &[1], &g)
        .await
        .unwrap();
    assert_eq!(
        s.group_offsets("conf-g").await.unwrap(),
        vec![o("a", 0, 8), o("b", 1, 5)]
    );
    let groups = s.offset_groups().await.unwrap();
    assert!(groups.contains(&"conf-g".to_string()) && groups.contains(&"conf-h".to_string()));
    assert!(s.delete_group("conf-g", &g).await.unwrap());
    assert!(!s.delete_group("conf-g", &g).await.unwrap());
    assert!(s.group_offsets("conf-g").await.unwrap().is_empty());
    assert_eq!(
        s.group_offsets("conf-h").await.unwrap().len(),
        1,
        "other groups untouched"
    );
}

fn acl(
    rt: AclResourceType,
    name: &str,
    pt: AclPatternType,
    principal: &str,
    op: AclOperation,
    perm: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.to_string(),
        pattern_type: pt,
        principal: principal.to_string(),
        host: "*".to_string(),
        operation: op,
        permission: perm,
    }
}

async fn acls(s: &dyn MetaStore) {
    use AclOperation::*;
    use AclPatternType::*;
    use AclPermission::*;
    use AclResourceType::*;
    assert!(s.acls().await.unwrap().is_empty(), "no ACLs at first");
    let read = acl(Topic, "orders", Literal, "User:alice", Read, Allow);
    let prefix = acl(Topic, "ord", Prefixed, "User:alice", Write, Allow);
    let wildcard = acl(Topic, "*", Literal, "User:*", Describe, Allow);
    let deny = acl(Group, "app/1", Literal, "User:bob", Read, Deny);
    let mut from_host = read.clone();
    from_host.host = "10.0.0.7".into();
    s.create_acls(&[read.clone(), prefix.clone(), wildcard.clone()])
        .await
        .unwrap();
    s.create_acls(&[read.clone(), deny.clone(), from_host.clone()])
        .await
        .unwrap();
    let mut want = vec![
        read.clone(),
        prefix.clone(),
        wildcard.clone(),
        deny.clone(),
        from_host.clone(),
    ];
    want.sort();
    assert_eq!(
        s.acls().await.unwrap(),
        want,
        "identical bindings stored once"
    );

    // A MATCH filter for topic orders deletes what applies to it, nothing else; an
    // exact filter deletes one binding; a filter matching nothing deletes nothing.
    let matching_orders = AclFilter {
        resource_type: Some(Topic),
        resource_name: Some("orders".into()),
        pattern: AclPatternFilter::Match,
        principal: Some("User:alice".into()),
        ..AclFilter::any()
    };
    let nothing = AclFilter {
        principal: Some("User:carol".into()),
        ..AclFilter::any()
    };
    let deleted = s
        .delete_acls(&[matching_orders, AclFilter::exact(&deny), nothing])
        .await
        .unwrap();
    assert_eq!(deleted.len(), 3);
    let mut first = deleted[0].clone();
    first.sort();
    let mut want_first = vec![read.clone(), prefix.clone(), from_host.clone()];
    want_first.sort();
    assert_eq!(
        first, want_first,
        "MATCH deletes literal, host-bound and prefixed"
    );
    assert_eq!(deleted[1], vec![deny.clone()]);
    assert!(deleted[2].is_empty());
    assert_eq!(s.acls().await.unwrap(), vec![wildcard.clone()]);

    // Two filters matching one binding both report it; it is gone once.
    let deleted = s
        .delete_acls(&[AclFilter::any(), AclFilter::exact(&wildcard)])
        .await
        .unwrap();
    assert_eq!(deleted, vec![vec![wildcard.clone()], vec![wildcard]]);
    assert!(s.acls().await.unwrap().is_empty());
}
