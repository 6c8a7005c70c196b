//! Idempotent produce and transactions at the protocol level, through the real binary:
//! lost acknowledgements and retries (also across a SIGKILL restart), sequence gaps,
//! fencing, markers, the last stable offset, aborted-transaction lists and timeouts.
//! Real clients are exercised by tests/compat/txn, txn-restart and lost-ack.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeProducersRequest, DescribeTransactionsRequest,
    EndTxnRequest, InitProducerIdRequest, ListOffsetsRequest, ProducerId, TransactionalId,
};
use kafka_protocol::records::Compression;

const NONE: i16 = 0;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const PRODUCER_FENCED: i16 = 90;

/// A batch of `n` records from a producer, sequences `seq..seq+n`.
fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
    transactional: bool,
    tag: &str,
) -> Bytes {
    let records: Vec<_> = (0..n)
        .map(|i| {
            let mut r = record(None, Some(format!("{tag}-{i}").as_bytes()));
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.sequence = seq + i as i32;
            r.offset = i as i64;
            r.transactional = transactional;
            r
        })
        .collect();
    encode_records(&records, Compression::None)
}

fn init_producer_id(c: &mut Client, txn: Option<&str>, timeout_ms: i32) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(txn.map(|t| TransactionalId(sb(t))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = c.send(&req, 4);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

fn add_partition(c: &mut Client, txn: &str, pid: i64, epoch: i16, topic: &str, p: i32) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(sb(txn)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![p])]);
    let r = c.send(&req, 3);
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end_txn(c: &mut Client, txn: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(sb(txn)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    c.send(&req, 3).error_code
}

/// (high watermark, last stable offset, aborted (pid, first offset), records) of a
/// read_committed fetch.
fn fetch_committed(c: &mut Client, topic: &str, from: i64) -> (i64, i64, Vec<(i64, i64)>, usize) {
    let req = fetch_request(topic, 0, from, 0, 1 << 20).with_isolation_level(1);
    let resp = c.send(&req, 12);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE);
    let aborted = p
        .aborted_transactions
        .as_ref()
        .expect("read_committed answers carry an aborted list")
        .iter()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    let n = decode_records(&p.records.clone().unwrap_or_default()).len();
    (p.high_watermark, p.last_stable_offset, aborted, n)
}

fn latest_committed(c: &mut Client, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(1)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    c.send(&req, 7).topics[0].partitions[0].offset
}

#[test]
fn a_retry_after_a_lost_ack_is_written_once_also_after_a_sigkill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    c.create_topic("idem", 1, &[]);
    let (code, pid, epoch) = init_producer_id(&mut c, None, 60_000);
    assert_eq!((code, epoch), (NONE, 0));
    assert!(pid >= 0);

    // The first send's answer is lost: the connection goes away before it is read.
    let first = producer_batch(pid, 0, 0, 5, false, "a");
    let mut lost = agent.connect();
    lost.send_only(&produce_request("idem", vec![(0, first.clone())]), 9);
    std::thread::sleep(Duration::from_millis(300));
    drop(lost);
    let r = c.produce_batch("idem", 0, first.clone());
    assert_eq!(
        (r.error_code, r.base_offset),
        (NONE, 0),
        "the retry gets the original offset"
    );
    let r = c.produce_batch("idem", 0, producer_batch(pid, 0, 5, 3, false, "b"));
    assert_eq!((r.error_code, r.base_offset), (NONE, 5));

    // The producer state is in the metadata store: a restarted agent still knows it.
    agent.kill9();
    let agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    let r = c.produce_batch("idem", 0, producer_batch(pid, 0, 5, 3, false, "b"));
    assert_eq!(
        (r.error_code, r.base_offset),
        (NONE, 5),
        "duplicate after restart"
    );
    let r = c.produce_batch("idem", 0, producer_batch(pid, 0, 10, 1, false, "gap"));
    assert_eq!(r.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let r = c.produce_batch("idem", 0, producer_batch(pid, 0, 8, 2, false, "c"));
    assert_eq!((r.error_code, r.base_offset), (NONE, 8));

    let got: Vec<String> = c
        .fetch_all("idem", 0, 0)
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let want: Vec<String> = [
        "a-0", "a-1", "a-2", "a-3", "a-4", "b-0", "b-1", "b-2", "c-0", "c-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want, "every record exactly once, in order");

    let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(topic_name("idem"))
        .with_partition_indexes(vec![0])]);
    let d = c.send(&req, 0);
    let producers = &d.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (producers[0].producer_id.0, producers[0].last_sequence),
        (pid, 9)
    );
}

#[test]
fn transactions_hold_back_the_lso_abort_is_listed_and_zombies_are_fenced() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("txn", 1, &[]);
    let (code, pid, epoch) = init_producer_id(&mut c, Some("t1"), 60_000);
    assert_eq!(code, NONE);

    // Not added to the transaction yet: refused.
    let r = c.produce_batch("txn", 0, producer_batch(pid, epoch, 0, 2, true, "x"));
    assert_eq!(r.error_code, INVALID_TXN_STATE);
    assert_eq!(add_partition(&mut c, "t1", pid, epoch, "txn", 0), NONE);
    let r = c.produce_batch("txn", 0, producer_batch(pid, epoch, 0, 3, true, "x"));
    assert_eq!((r.error_code, r.base_offset), (NONE, 0));
    assert_eq!(c.produce("txn", 0, &values(&["plain"])), (NONE, 3));

    // Open transaction at 0: read_committed sees nothing, LSO 0.
    let (hw, lso, aborted, n) = fetch_committed(&mut c, "txn", 0);
    assert_eq!((hw, lso, n), (4, 0, 0));
    assert!(aborted.is_empty());
    assert_eq!(latest_committed(&mut c, "txn"), 0);
    assert_eq!(
        c.list_offsets("txn", 0, -1).1,
        4,
        "read_uncommitted latest is the HW"
    );

    assert_eq!(end_txn(&mut c, "t1", pid, epoch, false), NONE);
    // Marker at 4; everything stable; the abort covers the producer's records from 0.
    let (hw, lso, aborted, n) = fetch_committed(&mut c, "txn", 0);
    assert_eq!((hw, lso), (5, 5));
    assert_eq!(aborted, vec![(pid, 0)]);
    assert_eq!(
        n, 5,
        "aborted records, the plain one and the marker travel; clients filter"
    );
    // Retrying the same end succeeds; the other end is refused.
    assert_eq!(end_txn(&mut c, "t1", pid, epoch, false), NONE);
    assert_eq!(end_txn(&mut c, "t1", pid, epoch, true), INVALID_TXN_STATE);

    // A new producer with the same transactional id fences the old one.
    let (code, pid2, epoch2) = init_producer_id(&mut c, Some("t1"), 60_000);
    assert_eq!((code, pid2, epoch2), (NONE, pid, epoch + 1));
    assert_eq!(
        add_partition(&mut c, "t1", pid, epoch, "txn", 0),
        PRODUCER_FENCED
    );
    assert_eq!(add_partition(&mut c, "t1", pid2, epoch2, "txn", 0), NONE);
    let r = c.produce_batch("txn", 0, producer_batch(pid2, epoch2, 0, 2, true, "y"));
    assert_eq!((r.error_code, r.base_offset), (NONE, 5));
    let r = c.produce_batch("txn", 0, producer_batch(pid, epoch, 3, 1, true, "zombie"));
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(end_txn(&mut c, "t1", pid, epoch, true), PRODUCER_FENCED);
    assert_eq!(end_txn(&mut c, "t1", pid2, epoch2, true), NONE);
    let (hw, lso, aborted, _) = fetch_committed(&mut c, "txn", 5);
    assert_eq!((hw, lso), (8, 8));
    assert!(
        aborted.is_empty(),
        "the committed transaction is not listed: {aborted:?}"
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("slow", 1, &[]);
    let (_, pid, epoch) = init_producer_id(&mut c, Some("t-slow"), 1_000);
    assert_eq!(add_partition(&mut c, "t-slow", pid, epoch, "slow", 0), NONE);
    let r = c.produce_batch("slow", 0, producer_batch(pid, epoch, 0, 2, true, "s"));
    assert_eq!(r.error_code, NONE);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (hw, lso, aborted, _) = fetch_committed(&mut c, "slow", 0);
        if lso == hw && hw == 3 {
            assert_eq!(aborted, vec![(pid, 0)]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction was not aborted (hw {hw}, lso {lso})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = c.send(
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(sb("t-slow"))]),
        0,
    );
    let s = &d.transaction_states[0];
    assert_eq!(s.transaction_state.as_str(), "CompleteAbort");
    assert_eq!(s.producer_epoch, epoch + 1, "the abort bumped the epoch");
    let r = c.produce_batch("slow", 0, producer_batch(pid, epoch, 2, 1, true, "late"));
    assert_eq!(r.error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(end_txn(&mut c, "t-slow", pid, epoch, true), PRODUCER_FENCED);
}

#[test]
fn an_end_left_half_done_by_a_crash_is_finished_after_the_restart() {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{AddOffsetsToTxnRequest, GroupId, TxnOffsetCommitRequest};
    use shoal_meta::{MetaStore, SqliteStore, TxnState};

    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    c.create_topic("half", 1, &[]);
    let (_, pid, epoch) = init_producer_id(&mut c, Some("t-half"), 60_000);
    assert_eq!(add_partition(&mut c, "t-half", pid, epoch, "half", 0), NONE);
    let r = c.produce_batch("half", 0, producer_batch(pid, epoch, 0, 2, true, "h"));
    assert_eq!(r.error_code, NONE);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(sb("t-half")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(sb("g-half")));
    assert_eq!(c.send(&add, 3).error_code, NONE);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(sb("t-half")))
        .with_group_id(GroupId(sb("g-half")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name("half"))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_leader_epoch(-1)])]);
    let resp = c.send(&commit, 3);
    assert_eq!(resp.topics[0].partitions[0].error_code, NONE);
    agent.terminate();

    // The coordinator had decided to commit when it died: the record says PrepareCommit,
    // no marker was written, the offsets are still staged.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("metadata.db");
    rt.block_on(async {
        let store = SqliteStore::open(&db).unwrap();
        let mut rec = store.transaction("t-half").await.unwrap().unwrap();
        assert_eq!(rec.state, TxnState::Ongoing);
        rec.state = TxnState::PrepareCommit;
        store
            .save_transaction(&rec, &shoal_meta::Fence::sole("txn:t-half"))
            .await
            .unwrap();
    });

    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (hw, lso, aborted, n) = fetch_committed(&mut c, "half", 0);
        if hw == 3 && lso == 3 {
            assert!(aborted.is_empty(), "committed, not aborted: {aborted:?}");
            assert_eq!(n, 3, "two records and the commit marker");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the prepared commit was not finished (hw {hw}, lso {lso})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = c.send(
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(sb("t-half"))]),
        0,
    );
    assert_eq!(
        d.transaction_states[0].transaction_state.as_str(),
        "CompleteCommit"
    );
    agent.terminate();
    rt.block_on(async {
        let store = SqliteStore::open(&db).unwrap();
        let offsets = store.group_offsets("g-half").await.unwrap();
        assert_eq!(offsets.len(), 1);
        assert_eq!(
            offsets[0].offset, 42,
            "the staged offset was applied with the commit"
        );
        assert!(store
            .pending_txn_offsets("g-half")
            .await
            .unwrap()
            .is_empty());
    });
}

/// KIP-447: a TxnOffsetCommit naming a consumer's member id and generation is checked
/// against the group like an OffsetCommit, so a zombie from an old generation cannot
/// commit offsets through a transaction; one naming neither is accepted.
#[test]
fn txn_offset_commits_are_fenced_by_the_group_generation() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        AddOffsetsToTxnRequest, GroupId, JoinGroupRequest, TxnOffsetCommitRequest,
    };
    const ILLEGAL_GENERATION: i16 = 22;
    const UNKNOWN_MEMBER_ID: i16 = 25;

    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("fenced", 1, &[]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(sb("g-fenced")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(sb(""))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]);
    let joined = c.send(&join, 3);
    assert_eq!((joined.error_code, joined.generation_id), (NONE, 1));
    let member = joined.member_id.to_string();

    let (_, pid, epoch) = init_producer_id(&mut c, Some("t-fenced"), 60_000);
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(sb("t-fenced")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(sb("g-fenced")));
    assert_eq!(c.send(&add, 3).error_code, NONE);
    let mut commit = |member: &str, generation: i32| {
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(sb("t-fenced")))
            .with_group_id(GroupId(sb("g-fenced")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(generation)
            .with_member_id(sb(member))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name("fenced"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(7)
                    .with_committed_leader_epoch(-1)])]);
        c.send(&req, 3).topics[0].partitions[0].error_code
    };
    assert_eq!(commit(&member, 0), ILLEGAL_GENERATION, "an old generation");
    assert_eq!(commit("someone-else", 1), UNKNOWN_MEMBER_ID);
    assert_eq!(
        commit(&member, 1),
        NONE,
        "the current member and generation"
    );
    assert_eq!(commit("", -1), NONE, "no group identity: not checked");
}

/// EndTxn v5 (transactions v2): (error code, producer id, epoch) to go on with.
fn end_txn_v2(c: &mut Client, txn: &str, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(sb(txn)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r = c.send(&req, 5);
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// A transactional Produce at `version` naming `txn`; the partition's answer.
fn produce_txn(
    c: &mut Client,
    version: i16,
    txn: &str,
    topic: &str,
    p: i32,
    records: Bytes,
) -> (i16, i64) {
    let req = produce_request(topic, vec![(p, records)])
        .with_transactional_id(Some(TransactionalId(sb(txn))));
    let r = c.send(&req, version);
    let part = &r.responses[0].partition_responses[0];
    (part.error_code, part.base_offset)
}

/// TxnOffsetCommit at `version` of one offset of `topic` partition 0; its error code.
fn txn_offset_commit(
    c: &mut Client,
    version: i16,
    txn: &str,
    (pid, epoch): (i64, i16),
    group: &str,
    (topic, offset): (&str, i64),
) -> i16 {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, TxnOffsetCommitRequest};
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(sb(txn)))
        .with_group_id(GroupId(sb(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    c.send(&req, version).topics[0].partitions[0].error_code
}

/// Transactions v2 (KIP-890 part 2), as Kafka 4.x clients use them once ApiVersions
/// finalizes transaction.version 2: Produce v12 and TxnOffsetCommit v5 join the
/// transaction themselves, every EndTxn v5 bumps the epoch (so the ended transaction's
/// zombie writes are refused) and answers with it, a retry is told apart from the next
/// end, an abort with nothing open still bumps, and an exhausted epoch moves the
/// producer to a new id. Older versions keep their rules.
#[test]
fn transactions_v2_join_by_produce_and_bump_the_epoch_at_every_end() {
    use shoal_meta::{MetaStore, SqliteStore, TxnState};

    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    let versions = c.api_versions();
    let tv = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level);
    assert_eq!(tv, Some(2), "transactions v2 is finalized");
    assert!(versions.finalized_features_epoch >= 0);

    c.create_topic("tv2", 2, &[]);
    let (_, pid, e) = init_producer_id(&mut c, Some("t-v2"), 60_000);
    // v11 keeps the old rule: the partition must have been added first.
    let b = |epoch, seq, tag| producer_batch(pid, epoch, seq, 2, true, tag);
    assert_eq!(
        produce_txn(&mut c, 11, "t-v2", "tv2", 1, b(e, 0, "old")).0,
        INVALID_TXN_STATE
    );
    // v12 adds it itself.
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 0, b(e, 0, "a")),
        (NONE, 0)
    );
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 0, b(e, 2, "b")),
        (NONE, 2)
    );
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 1, b(e, 0, "c")),
        (NONE, 0)
    );
    // TxnOffsetCommit v4 needs AddOffsetsToTxn; v5 does it itself.
    let ids = (pid, e);
    assert_eq!(
        txn_offset_commit(&mut c, 4, "t-v2", ids, "g-v2", ("tv2", 7)),
        INVALID_TXN_STATE
    );
    assert_eq!(
        txn_offset_commit(&mut c, 5, "t-v2", ids, "g-v2", ("tv2", 7)),
        NONE
    );
    assert_eq!(
        fetch_committed(&mut c, "tv2", 0).1,
        0,
        "open: LSO held back"
    );

    // The end bumps the epoch and says so; a retry (the old epoch) gets the same answer.
    assert_eq!(end_txn_v2(&mut c, "t-v2", pid, e, true), (NONE, pid, e + 1));
    assert_eq!(end_txn_v2(&mut c, "t-v2", pid, e, true), (NONE, pid, e + 1));
    assert_eq!(
        end_txn_v2(&mut c, "t-v2", pid, e, false).0,
        INVALID_TXN_STATE
    );
    let (hw, lso, aborted, _) = fetch_committed(&mut c, "tv2", 0);
    assert_eq!((hw, lso), (5, 5), "four records and the commit marker");
    assert!(aborted.is_empty());
    // A zombie of the ended transaction can no longer write.
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 0, b(e, 4, "zombie")).0,
        INVALID_PRODUCER_EPOCH
    );
    // Nothing open: a commit is refused, an abort bumps the epoch.
    assert_eq!(
        end_txn_v2(&mut c, "t-v2", pid, e + 1, true).0,
        INVALID_TXN_STATE
    );
    assert_eq!(
        end_txn_v2(&mut c, "t-v2", pid, e + 1, false),
        (NONE, pid, e + 2)
    );
    // The next transaction runs at the new epoch, sequences from 0.
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 0, b(e + 2, 0, "d")),
        (NONE, 5)
    );
    assert_eq!(
        end_txn_v2(&mut c, "t-v2", pid, e + 2, false),
        (NONE, pid, e + 3)
    );
    let (_, lso, aborted, _) = fetch_committed(&mut c, "tv2", 5);
    assert_eq!(lso, 8, "two records and the abort marker");
    assert_eq!(aborted, vec![(pid, 5)]);
    agent.terminate();

    // An exhausted epoch: the end moves the producer to a new id, epoch 0.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("metadata.db");
    rt.block_on(async {
        let store = SqliteStore::open(&db).unwrap();
        let offsets = store.group_offsets("g-v2").await.unwrap();
        assert_eq!(offsets.len(), 1);
        assert_eq!(offsets[0].offset, 7, "the v5 offset was committed");
        let mut rec = store.transaction("t-v2").await.unwrap().unwrap();
        assert_eq!(rec.state, TxnState::CompleteAbort);
        rec.epoch = i16::MAX - 1;
        store
            .save_transaction(&rec, &shoal_meta::Fence::sole("txn:t-v2"))
            .await
            .unwrap();
    });
    let mut agent = Agent::start_in(dir.path(), &[]);
    let mut c = agent.connect();
    let last = i16::MAX - 1;
    assert_eq!(
        produce_txn(&mut c, 12, "t-v2", "tv2", 1, b(last, 0, "e")).0,
        NONE
    );
    let (code, pid2, epoch2) = end_txn_v2(&mut c, "t-v2", pid, last, true);
    assert_eq!(code, NONE);
    assert_ne!(pid2, pid, "a new producer id");
    assert_eq!(epoch2, 0);
    assert_eq!(
        end_txn_v2(&mut c, "t-v2", pid, last, true),
        (NONE, pid2, 0),
        "a retry from the old producer id"
    );
    let b2 = producer_batch(pid2, 0, 0, 1, true, "f");
    assert_eq!(produce_txn(&mut c, 12, "t-v2", "tv2", 1, b2).0, NONE);
    assert_eq!(end_txn_v2(&mut c, "t-v2", pid2, 0, true), (NONE, pid2, 1));
    let (_, lso, _, _) = fetch_committed(&mut c, "tv2", 0);
    assert_eq!(lso, 8, "partition 0 untouched");
    agent.terminate();
}

/// AddPartitionsToTxn v4 (the batched form Kafka's brokers send the coordinator): each
/// transaction of the request on its own; `verify_only` checks without adding.
#[test]
fn batched_add_partitions_to_txn_adds_and_verifies() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("batched", 2, &[]);
    let (_, pid, epoch) = init_producer_id(&mut c, Some("t-batched"), 60_000);
    let mut send = |verify_only: bool, topic: &str, p: i32| {
        let t = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(sb("t-batched")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_verify_only(verify_only)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![p])]);
        let r = c.send(
            &AddPartitionsToTxnRequest::default().with_transactions(vec![t]),
            4,
        );
        assert_eq!(r.error_code, NONE);
        let t = &r.results_by_transaction[0];
        assert_eq!(t.transactional_id.as_str(), "t-batched");
        t.topic_results[0].results_by_partition[0].partition_error_code
    };
    assert_eq!(send(true, "batched", 0), INVALID_TXN_STATE, "not added yet");
    assert_eq!(send(false, "batched", 0), NONE);
    assert_eq!(send(true, "batched", 0), NONE);
    assert_eq!(send(true, "batched", 1), INVALID_TXN_STATE);
    assert_eq!(send(false, "nope", 0), UNKNOWN_TOPIC_OR_PARTITION);
    let r = c.produce_batch("batched", 0, producer_batch(pid, epoch, 0, 1, true, "b"));
    assert_eq!(r.error_code, NONE, "the v4 add let the partition in");
}
