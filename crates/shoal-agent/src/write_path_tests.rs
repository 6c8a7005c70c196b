use std::collections::BTreeMap;

use object_store::memory::InMemory;
use shoal_meta::{SqliteStore, TopicSpec};
use shoal_object::ObjectIndex;

use super::*;

struct Harness {
    writer: WritePath,
    meta: Arc<dyn MetaStore>,
    store: Arc<dyn ObjectStore>,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
    topic: Uuid,
}

async fn harness(store: Arc<dyn ObjectStore>, timeout_ms: u64) -> Harness {
    let meta: Arc<dyn MetaStore> = Arc::new(SqliteStore::in_memory().unwrap());
    harness_with(
        store,
        meta,
        timeout_ms,
        AgentConfig::default().flush_timeout,
    )
    .await
}

async fn harness_with(
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    timeout_ms: u64,
    flush_timeout: Duration,
) -> Harness {
    let topic = meta
        .create_topic(TopicSpec {
            name: "t".into(),
            partitions: 4,
            configs: BTreeMap::new(),
        })
        .await
        .unwrap()
        .id;
    let config = AgentConfig {
        batch_timeout: Duration::from_millis(timeout_ms),
        batch_max_bytes: 64 * 1024,
        flush_timeout,
        ..AgentConfig::default()
    };
    let stop = CancellationToken::new();
    let (writer, run) = WritePath::new(
        &config,
        meta.clone(),
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::new(ChunkCache::new(1 << 20, 1 << 16)),
        Arc::new(crate::commits::Commits::default()),
        CancellationToken::new(),
        stop.clone(),
    );
    Harness {
        writer,
        meta,
        store,
        stop,
        run: tokio::spawn(run),
        topic,
    }
}

/// A harness (2 ms batches, in-memory objects) whose metadata store injects faults.
async fn faulty_meta_harness(
    flush_timeout: Duration,
) -> (Harness, Arc<shoal_meta::testkit::FaultyMeta>) {
    let sqlite: Arc<dyn MetaStore> = Arc::new(SqliteStore::in_memory().unwrap());
    let faulty = Arc::new(shoal_meta::testkit::FaultyMeta::new(sqlite));
    let h = harness_with(Arc::new(InMemory::new()), faulty.clone(), 2, flush_timeout).await;
    (h, faulty)
}

/// Appends one partition's batches as one request (buffered at once) and returns the
/// future of its answer.
fn first_outcome(
    h: &Harness,
    part: PartitionAppend,
    deadline: Option<tokio::time::Instant>,
) -> impl std::future::Future<Output = Result<AppendAck, WriteError>> {
    let writer = h.writer.clone();
    let rx = tokio::spawn(async move { writer.append(vec![part], 0, deadline).await });
    async move {
        let rx = rx.await.unwrap()?;
        rx.into_iter().next().unwrap().await.unwrap()
    }
}

/// `n` copies of the one-record `batch` for one partition, as one request.
fn copies(topic: Uuid, partition: i32, batch: &Bytes, n: usize) -> PartitionAppend {
    PartitionAppend {
        topic_id: topic,
        partition,
        batches: (0..n)
            .map(|_| BatchToWrite {
                bytes: batch.clone(),
                offset_span: 1,
                min_timestamp: 1,
                max_timestamp: 1,
                producer: None,
            })
            .collect(),
        log_append_time: -1,
    }
}

fn part(topic: Uuid, partition: i32, spans: &[u64]) -> PartitionAppend {
    PartitionAppend {
        topic_id: topic,
        partition,
        batches: spans
            .iter()
            .map(|s| BatchToWrite {
                bytes: Bytes::from(vec![*s as u8; 100]),
                offset_span: *s,
                min_timestamp: 1,
                max_timestamp: 2,
                producer: None,
            })
            .collect(),
        log_append_time: -1,
    }
}

/// One idempotent batch of `span` records from producer 7, epoch 0, at `seq`.
fn idempotent(topic: Uuid, partition: i32, span: u64, seq: i32) -> PartitionAppend {
    let mut p = part(topic, partition, &[span]);
    p.batches[0].producer = Some(ProducerBatch {
        producer_id: 7,
        epoch: 0,
        first_sequence: seq,
        last_sequence: seq + span as i32 - 1,
        kind: shoal_meta::BatchKind::Data {
            transactional: false,
        },
    });
    p
}

#[test]
fn producer_batches_get_commit_segments_of_their_own() {
    let mut b = ObjectBuilder::new();
    let topic = Uuid::new_v4();
    let plain = |b: &mut ObjectBuilder, partition, span| PendingBatch {
        slot: b.add(topic, partition, Bytes::from(vec![0u8; 10]), span, 1, 2),
        len: 10,
        offset_span: span,
        min_timestamp: 1,
        max_timestamp: 2,
        producer: None,
    };
    let producer = Some(ProducerBatch {
        producer_id: 1,
        epoch: 0,
        first_sequence: 0,
        last_sequence: 0,
        kind: shoal_meta::BatchKind::Data {
            transactional: false,
        },
    });
    // Partition 0: plain, plain, producer, plain; partition 1: plain.
    let mut batches = vec![plain(&mut b, 0, 2), plain(&mut b, 0, 3)];
    let mut p = plain(&mut b, 0, 1);
    p.producer = producer;
    batches.push(p);
    batches.push(plain(&mut b, 1, 4));
    batches.push(plain(&mut b, 0, 5));
    let (_, infos) = b.finish();
    let (segments, placement) = commit_segments(&infos, &batches);
    let shape: Vec<(i32, u64, u64, u64, bool)> = segments
        .iter()
        .map(|s| {
            (
                s.partition,
                s.data_offset,
                s.data_len,
                s.offset_span,
                s.producer.is_some(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, 0, 20, 5, false),
            (0, 20, 10, 1, true),
            (0, 30, 10, 5, false),
            (1, 40, 10, 4, false),
        ]
    );
    assert_eq!(placement, vec![(0, 0), (0, 2), (1, 0), (3, 0), (2, 0)]);
}

#[tokio::test]
async fn idempotent_retries_get_the_original_offset_and_gaps_are_refused() {
    let h = harness(Arc::new(InMemory::new()), 2).await;
    let send = |p: PartitionAppend| {
        let w = h.writer.clone();
        async move {
            let rx = w.append(vec![p], 0, None).await.unwrap();
            rx.into_iter().next().unwrap().await.unwrap()
        }
    };
    assert_eq!(send(part(h.topic, 0, &[3])).await.unwrap().base_offset, 0);
    assert_eq!(
        send(idempotent(h.topic, 0, 4, 0))
            .await
            .unwrap()
            .base_offset,
        3
    );
    // The retry of a batch whose ack was lost: same offset, nothing new written.
    assert_eq!(
        send(idempotent(h.topic, 0, 4, 0))
            .await
            .unwrap()
            .base_offset,
        3
    );
    assert!(matches!(
        send(idempotent(h.topic, 0, 1, 9)).await,
        Err(WriteError::Refused(
            shoal_meta::ProducerRefusal::OutOfOrderSequence
        ))
    ));
    assert_eq!(
        send(idempotent(h.topic, 0, 1, 4))
            .await
            .unwrap()
            .base_offset,
        7
    );
    let hwm = h
        .meta
        .partition_offsets(h.topic, 0)
        .await
        .unwrap()
        .high_watermark;
    assert_eq!(hwm, 8);
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn acks_come_after_the_commit_with_contiguous_offsets() {
    let h = harness(Arc::new(InMemory::new()), 5).await;
    let mut next = 0;
    for spans in [&[3u64, 2][..], &[1], &[5, 5, 5]] {
        let rx = h
            .writer
            .append(vec![part(h.topic, 1, spans)], 0, None)
            .await
            .unwrap();
        let ack = rx.into_iter().next().unwrap().await.unwrap().unwrap();
        assert_eq!(ack.base_offset, next);
        next += spans.iter().sum::<u64>() as i64;
        // The commit is durable before the ack: the store already shows it.
        let hwm = h
            .meta
            .partition_offsets(h.topic, 1)
            .await
            .unwrap()
            .high_watermark;
        assert!(
            hwm >= next,
            "acked offset {next} beyond the committed {hwm}"
        );
    }
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn concurrent_appends_never_share_offsets_and_keep_per_task_order() {
    let h = harness(Arc::new(InMemory::new()), 2).await;
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (writer, topic) = (h.writer.clone(), h.topic);
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..40u64 {
                let span = 1 + (task + i) % 4;
                // Two partitions per request; both land in the same flush.
                let rxs = writer
                    .append(
                        vec![
                            part(topic, 0, &[span]),
                            part(topic, (task % 3 + 1) as i32, &[1]),
                        ],
                        0,
                        None,
                    )
                    .await
                    .unwrap();
                pending.push((span, rxs));
            }
            let mut got = Vec::new();
            for (span, rxs) in pending {
                let mut it = rxs.into_iter();
                let a = it.next().unwrap().await.unwrap().unwrap();
                it.next().unwrap().await.unwrap().unwrap();
                got.push((a.base_offset, span));
            }
            got
        }));
    }
    let mut ranges = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        // Requests of one task get increasing offsets: appends keep arrival order.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        ranges.extend(got);
    }
    ranges.sort();
    let mut next = 0i64;
    for (base, span) in &ranges {
        assert_eq!(*base, next, "offsets must be dense and unshared");
        next += *span as i64;
    }
    assert_eq!(
        h.meta
            .partition_offsets(h.topic, 0)
            .await
            .unwrap()
            .high_watermark,
        next
    );
    // Every object in the store parses and its index matches what was committed.
    let entries = h.meta.index_from(h.topic, 0, 0, 10_000).await.unwrap();
    for e in entries.iter().take(5) {
        let obj = h
            .store
            .get(&Path::from(e.object_key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let idx = ObjectIndex::read(&obj).unwrap();
        assert!(idx.segments.iter().any(|s| s.partition == 0
            && s.data_offset == e.data_offset
            && s.data_len == e.data_len));
    }
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn unknown_partition_fails_alone() {
    let h = harness(Arc::new(InMemory::new()), 2).await;
    let rxs = h
        .writer
        .append(
            vec![part(h.topic, 9, &[1]), part(h.topic, 2, &[2])],
            0,
            None,
        )
        .await
        .unwrap();
    let mut it = rxs.into_iter();
    assert!(matches!(
        it.next().unwrap().await.unwrap(),
        Err(WriteError::UnknownPartition)
    ));
    assert_eq!(it.next().unwrap().await.unwrap().unwrap().base_offset, 0);
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn failed_put_is_not_acknowledged_or_committed() {
    // A store rooted at a regular file cannot write anything.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not-a-dir");
    std::fs::create_dir(&root).unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap();
    std::fs::remove_dir(&root).unwrap();
    std::fs::write(&root, b"file").unwrap();
    let h = harness(Arc::new(fs), 2).await;
    let rx = h
        .writer
        .append(vec![part(h.topic, 0, &[4])], 0, None)
        .await
        .unwrap();
    let r = rx.into_iter().next().unwrap().await.unwrap();
    assert!(matches!(r, Err(WriteError::ObjectStore(_))), "{r:?}");
    assert_eq!(
        h.meta
            .partition_offsets(h.topic, 0)
            .await
            .unwrap()
            .high_watermark,
        0
    );
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[tokio::test]
async fn stopping_flushes_what_is_buffered() {
    // A timer that would never fire: only the stop flushes.
    let h = harness(Arc::new(InMemory::new()), 3_600_000).await;
    let rx = h
        .writer
        .append(vec![part(h.topic, 3, &[2])], 0, None)
        .await
        .unwrap();
    h.stop.cancel();
    let ack = rx.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!(ack.base_offset, 0);
    h.run.await.unwrap().unwrap();
    assert!(matches!(
        h.writer.append(vec![part(h.topic, 3, &[1])], 0, None).await,
        Err(WriteError::ShuttingDown)
    ));
}

/// `batch_max_bytes` (64 KiB here) caps an object: an append that would take the buffer
/// past it waits for the buffer to be flushed first, even with a long batch timeout.
#[tokio::test]
async fn objects_hold_at_most_batch_max_bytes() {
    let h = harness(Arc::new(InMemory::new()), 60_000).await;
    // Requests of 40 KB each: two never fit in one object.
    let request = |p: i32| part(h.topic, p, &[1; 400]);
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.extend(
            h.writer
                .append(vec![request(i % 4)], 0, None)
                .await
                .unwrap(),
        );
    }
    h.stop.cancel(); // flushes the last request
    for rx in acks {
        rx.await.unwrap().unwrap();
    }
    h.run.await.unwrap().unwrap();
    use futures::StreamExt;
    let objects: Vec<u64> = h.store.list(None).map(|o| o.unwrap().size).collect().await;
    assert_eq!(objects.len(), 5, "one object per request: {objects:?}");
    // 40 000 bytes of batches plus the object's index and footer.
    assert!(objects.iter().all(|&size| size < 48 * 1024), "{objects:?}");
}

/// A fetch inside one large index entry (one segment of 40 batches here, up to the
/// compaction target in a compacted run) reads batch by batch: it loads only the chunks
/// holding what it returns, and returns at most `max_bytes` plus one batch.
#[tokio::test]
async fn a_fetch_reads_only_the_batches_it_returns_from_a_large_entry() {
    let h = harness(Arc::new(InMemory::new()), 60_000).await;
    let one = crate::test_util::batch(&[7u8; 1000]);
    let append = copies(h.topic, 0, &one, 40);
    let acks = h.writer.append(vec![append], 0, None).await.unwrap();
    h.stop.cancel();
    for rx in acks {
        rx.await.unwrap().unwrap();
    }
    h.run.await.unwrap().unwrap();
    let entries = h.meta.index_from(h.topic, 0, 0, 16).await.unwrap();
    assert_eq!(entries.len(), 1, "the 40 batches share one index entry");

    let config = AgentConfig {
        chunk_bytes: 4096,
        ..AgentConfig::default()
    };
    let metrics = Arc::new(Metrics::default());
    let reader =
        crate::read_path::ReadPath::new(&config, h.meta.clone(), h.store.clone(), metrics.clone());
    let read = reader
        .read_partition(h.topic, "t", 0, 0, 40, 1500, true)
        .await
        .unwrap();
    assert_eq!(read.next_offset, 1, "one batch fits in 1500 bytes");
    assert_eq!(read.records.len(), one.len());
    let gets = metrics.object_gets.load(Ordering::Relaxed);
    assert!(
        gets <= 2,
        "{gets} chunk GETs for one 1 KB batch of a 40 KB entry"
    );

    // From the middle, with room for three batches and a bit: three whole batches.
    let read = reader
        .read_partition(h.topic, "t", 0, 20, 40, 3 * one.len() + 100, true)
        .await
        .unwrap();
    assert_eq!(read.next_offset, 23);
    assert_eq!(read.records.len(), 3 * one.len());
    let first = shoal_wire::batch::BatchHeader::parse(&read.records.into_bytes()).unwrap();
    assert_eq!(first.base_offset, 20, "base offsets are patched");
}

/// A commit the store applied but reported lost: the producer is told REQUEST_TIMED_OUT
/// (it may have succeeded), not a storage error, and its retry is a duplicate that gets
/// the original offset, so the records are written once.
#[tokio::test]
async fn an_ambiguous_commit_answers_request_timed_out_and_its_retry_is_a_duplicate() {
    let (h, flaky) = faulty_meta_harness(Duration::from_secs(30)).await;
    flaky.fail_commits(1);
    let rx = h
        .writer
        .append(vec![idempotent(h.topic, 0, 3, 0)], 0, None)
        .await
        .unwrap();
    let err = rx.into_iter().next().unwrap().await.unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        kafka_protocol::ResponseError::RequestTimedOut.code(),
        "{err}"
    );
    let rx = h
        .writer
        .append(vec![idempotent(h.topic, 0, 3, 0)], 0, None)
        .await
        .unwrap();
    let ack = rx.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!(ack.base_offset, 0, "the retry is the original batch");
    let o = h.meta.partition_offsets(h.topic, 0).await.unwrap();
    assert_eq!(o.high_watermark, 3, "written once");
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

/// A PUT still running at the flush deadline: the producer is told REQUEST_TIMED_OUT
/// and the flush is never committed, however late the PUT lands.
#[tokio::test(start_paused = true)]
async fn a_put_past_the_flush_timeout_never_commits() {
    let slow = object_store::throttle::ThrottledStore::new(
        InMemory::new(),
        object_store::throttle::ThrottleConfig {
            wait_put_per_call: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let store: Arc<dyn ObjectStore> = Arc::new(slow);
    let meta: Arc<dyn MetaStore> = Arc::new(SqliteStore::in_memory().unwrap());
    let h = harness_with(store, meta, 2, Duration::from_secs(5)).await;
    let rx = h
        .writer
        .append(vec![part(h.topic, 0, &[2])], 0, None)
        .await
        .unwrap();
    let err = rx.into_iter().next().unwrap().await.unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        kafka_protocol::ResponseError::RequestTimedOut.code(),
        "{err}"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    let o = h.meta.partition_offsets(h.topic, 0).await.unwrap();
    assert_eq!(o.high_watermark, 0, "never committed");
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

#[test]
fn a_request_deadline_falls_short_of_the_clients_timeout() {
    let now = tokio::time::Instant::now();
    assert_eq!(request_deadline(0), None);
    assert_eq!(request_deadline(-1), None);
    let d = request_deadline(30_000).unwrap() - now;
    assert!(
        d >= Duration::from_secs(25) && d < Duration::from_millis(25_100),
        "{d:?}"
    );
    let d = request_deadline(2_000).unwrap() - now;
    assert!(
        d >= Duration::from_millis(1_500) && d < Duration::from_millis(1_600),
        "{d:?}"
    );
}

/// A request that waited behind a stalled commit past its own timeout: it is answered
/// REQUEST_TIMED_OUT and its batch is never committed, even though the store recovers
/// well within `--flush-timeout`. (Its client may have given up and sent the records
/// again under a new producer epoch, which no sequence check could catch.)
#[tokio::test(start_paused = true)]
async fn a_flush_past_a_requests_timeout_never_commits() {
    let (h, stalled) = faulty_meta_harness(Duration::from_secs(60)).await;
    stalled.delay_commits(1, Duration::from_secs(20));
    // No deadline: its commit stalls 20 s, then lands.
    let first = h
        .writer
        .append(vec![part(h.topic, 0, &[2])], 0, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A 10 s request behind it: its flush is made and PUT at once, then waits its turn.
    let second = first_outcome(&h, idempotent(h.topic, 1, 3, 0), request_deadline(10_000));
    let ack = first.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!(ack.base_offset, 0);
    let err = second.await.unwrap_err();
    assert_eq!(
        err.code(),
        kafka_protocol::ResponseError::RequestTimedOut.code(),
        "{err}"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    let o = h.meta.partition_offsets(h.topic, 1).await.unwrap();
    assert_eq!(
        o.high_watermark, 0,
        "the timed-out request is never committed"
    );
    // The producer's retry (same epoch and sequence) is a first write, not a duplicate.
    let retry = first_outcome(&h, idempotent(h.topic, 1, 3, 0), request_deadline(10_000));
    let ack = retry.await.unwrap();
    assert_eq!(ack.base_offset, 0);
    let o = h.meta.partition_offsets(h.topic, 1).await.unwrap();
    assert_eq!(o.high_watermark, 3, "written once");
    h.stop.cancel();
    h.run.await.unwrap().unwrap();
}

/// A request that cannot get room in the write buffer before its deadline (flushes are
/// stuck behind a stalled commit) is answered REQUEST_TIMED_OUT with nothing buffered.
#[tokio::test(start_paused = true)]
async fn an_append_that_cannot_get_room_by_its_deadline_times_out() {
    let (h, stalled) = faulty_meta_harness(Duration::from_secs(600)).await;
    stalled.delay_commits(1, Duration::from_secs(300));
    let chunk = Bytes::from(vec![1u8; 60 * 1024]);
    let big = |partition: i32| copies(h.topic, partition, &chunk, 1);
    // 60 KiB each, 64 KiB objects: fill the committer's queue and then the buffer
    // behind the stalled commit, until an append has to wait for room.
    let mut early = Vec::new();
    for i in 0..16 {
        match tokio::time::timeout(
            Duration::from_secs(1),
            h.writer.append(vec![big(i % 4)], 0, None),
        )
        .await
        {
            Ok(r) => early.extend(r.unwrap()),
            Err(_) => break,
        }
    }
    assert!(early.len() < 16, "the buffer never filled");
    let started = tokio::time::Instant::now();
    let r = h
        .writer
        .append(vec![big(3)], 0, request_deadline(4_000))
        .await;
    let err = match r {
        Err(e) => e,
        Ok(_) => panic!("the append got room although every flush is stuck"),
    };
    assert_eq!(
        err.code(),
        kafka_protocol::ResponseError::RequestTimedOut.code(),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    h.stop.cancel();
    for rx in early {
        let _ = rx.await;
    }
    h.run.await.unwrap().unwrap();
}

/// Three one-record batches of partition 0 in one object, behind a faulty store; a read
/// path on it with 4 KiB chunks. Returns the read path, the faulty store, the index entry
/// and the byte (absolute in the object) inside the third batch's records.
async fn corrupt_setup() -> (
    crate::read_path::ReadPath,
    Arc<shoal_object::testkit::FaultyStore>,
    Arc<Metrics>,
    shoal_meta::IndexEntry,
    u64,
    Uuid,
) {
    let faulty = Arc::new(shoal_object::testkit::FaultyStore::new(Arc::new(
        InMemory::new(),
    )));
    let h = harness(faulty.clone(), 60_000).await;
    let one = crate::test_util::batch(&[7u8; 100]);
    let append = copies(h.topic, 0, &one, 3);
    let acks = h.writer.append(vec![append], 0, None).await.unwrap();
    h.stop.cancel();
    for rx in acks {
        rx.await.unwrap().unwrap();
    }
    h.run.await.unwrap().unwrap();
    let entry = h
        .meta
        .index_from(h.topic, 0, 0, 16)
        .await
        .unwrap()
        .remove(0);
    let config = AgentConfig {
        chunk_bytes: 4096,
        ..AgentConfig::default()
    };
    let metrics = Arc::new(Metrics::default());
    let reader =
        crate::read_path::ReadPath::new(&config, h.meta.clone(), faulty.clone(), metrics.clone());
    let third = entry.data_offset + 2 * one.len() as u64 + 64;
    (reader, faulty, metrics, entry, third, h.topic)
}

/// The corrupt-object window: a batch failing its CRC is quarantined and answered as
/// corrupt, the batches before it are still served, and its bad chunk does not stay
/// cached, so once the object is repaired the next read returns it.
#[tokio::test]
async fn a_corrupt_batch_is_quarantined_and_a_repaired_object_reads_afresh() {
    use std::sync::atomic::Ordering::Relaxed;
    let (reader, faulty, metrics, entry, third, topic) = corrupt_setup().await;
    faulty.corrupt_byte(&entry.object_key, third, None);
    // From 0: the two good batches, stopping before the bad one.
    let read = reader
        .read_partition(topic, "t", 0, 0, 3, 1 << 20, true)
        .await
        .unwrap();
    assert_eq!(read.next_offset, 2);
    // At the bad batch: corrupt, and quarantined once however often it is read.
    for _ in 0..2 {
        let err = reader
            .read_partition(topic, "t", 0, 2, 3, 1 << 20, true)
            .await
            .err()
            .expect("the bad batch fails");
        assert!(
            matches!(err, crate::read_path::ReadError::Corrupt { .. }),
            "{err}"
        );
    }
    let q = reader.quarantine();
    assert!(q.contains(&entry.object_key));
    let c = &q.list()[0];
    assert_eq!((c.partition, c.base_offset, c.end_offset), (0, 0, 3));
    assert!(c.what.contains("offset 2"), "{}", c.what);
    assert_eq!(metrics.corrupt_objects_fetch.load(Relaxed), 1);
    assert_eq!(metrics.quarantined_objects.load(Relaxed), 1);
    assert_eq!(
        reader.cache().size(),
        0,
        "no chunk of a corrupt object stays cached"
    );
    // Repaired (put back from a backup): the next read GETs it and gets every batch.
    faulty.repair(&entry.object_key);
    let read = reader
        .read_partition(topic, "t", 0, 2, 3, 1 << 20, true)
        .await
        .unwrap();
    assert_eq!(read.next_offset, 3);
}

/// A bad copy (here: one GET returning a flipped byte, as a bad cached or peer chunk
/// would) is healed by the fresh read, not quarantined.
#[tokio::test]
async fn a_corrupt_copy_heals_on_a_fresh_read() {
    use std::sync::atomic::Ordering::Relaxed;
    let (reader, faulty, metrics, entry, third, topic) = corrupt_setup().await;
    faulty.corrupt_byte(&entry.object_key, third, Some(1));
    let read = reader
        .read_partition(topic, "t", 0, 0, 3, 1 << 20, true)
        .await
        .unwrap();
    assert_eq!(read.next_offset, 3, "every batch, from the second read");
    assert!(reader.quarantine().is_empty());
    assert_eq!(metrics.corrupt_copies_healed.load(Relaxed), 1);
    assert_eq!(metrics.corrupt_objects_fetch.load(Relaxed), 0);
}
