use std::collections::BTreeMap;

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};
use object_store::memory::InMemory;
use shoal_meta::{AbortedTxn, SegmentAppend, SqliteStore, TopicSpec};

use super::*;

fn entry(key: &str, base: i64, end: i64, len: u64, max_ts: i64) -> IndexEntry {
    IndexEntry {
        base_offset: base,
        end_offset: end,
        object_key: key.into(),
        object_size: 1 << 20,
        data_offset: 0,
        data_len: len,
        min_timestamp: max_ts - 10,
        max_timestamp: max_ts,
    }
}

fn policy() -> Policy {
    Policy {
        min_lag_ms: 0,
        max_lag_ms: i64::MAX,
        delete_retention_ms: 1_000,
        min_dirty_ratio: 0.5,
    }
}

#[test]
fn a_pass_is_due_for_enough_dirty_data() {
    let p = policy();
    let clean = entry("cleaned/1-a.shoal", 0, 10, 100, 100);
    let d1 = entry("data/1", 10, 20, 60, 200);
    let d2 = entry("data/2", 20, 30, 60, 300);
    // Nothing at all, or only clean data: nothing to do.
    assert_eq!(plan(&[], 0, 1_000, &p), None);
    assert_eq!(plan(std::slice::from_ref(&clean), 10, 1_000, &p), None);
    // Dirty data below the ratio waits; at or above it, a pass takes it all.
    assert_eq!(plan(&[clean.clone(), d1.clone()], 30, 1_000, &p), None);
    assert_eq!(
        plan(&[clean.clone(), d1.clone(), d2.clone()], 30, 1_000, &p),
        Some(Plan { clean: 1, dirty: 2 })
    );
    // Never past the last stable offset (an open transaction).
    assert_eq!(
        plan(&[d1.clone(), d2.clone()], 20, 1_000, &p),
        Some(Plan { clean: 0, dirty: 1 })
    );
    // Not before min.compaction.lag.ms.
    let lagged = Policy {
        min_lag_ms: 750,
        ..p
    };
    assert_eq!(
        plan(&[d1.clone(), d2.clone()], 30, 1_000, &lagged),
        Some(Plan { clean: 0, dirty: 1 })
    );
    // max.compaction.lag.ms forces a pass below the ratio.
    let forced = Policy {
        max_lag_ms: 500,
        ..p
    };
    assert_eq!(
        plan(&[clean.clone(), d1.clone()], 30, 1_000, &forced),
        Some(Plan { clean: 1, dirty: 1 })
    );
    // A clean object with tombstones past their horizon forces one too.
    let due = entry("cleaned/1-b-h900.shoal", 0, 10, 100, 100);
    assert_eq!(key_horizon(&due.object_key), Some(900));
    assert_eq!(
        plan(std::slice::from_ref(&due), 10, 1_000, &p),
        Some(Plan { clean: 1, dirty: 0 })
    );
    assert_eq!(plan(&[due], 10, 800, &p), None);
}

fn rec(key: Option<&str>, value: Option<&str>, offset: i64, ts: i64) -> Record {
    // The encoder starts a new batch where sequences do not follow on.
    crate::test_util::record(
        key.map(str::as_bytes),
        value.map(str::as_bytes),
        offset,
        offset as i32,
        ts,
    )
}

/// One batch of `(key, value)` records with offset deltas 0, 1, ...
fn batch_of(records: &[(&str, Option<&str>)], ts: i64, compression: Compression) -> Bytes {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| rec(Some(k), *v, i as i64, ts + i as i64))
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

const LIMITS: Limits = Limits {
    max_uncompressed: 1 << 20,
};

#[test]
fn rewriting_a_batch_keeps_the_latest_per_key_and_stamps_tombstones() {
    let b = batch_of(
        &[
            ("a", Some("1")),
            ("b", Some("1")),
            ("a", Some("2")),
            ("c", None),
        ],
        5_000,
        Compression::None,
    );
    let mut map = KeyMap::with_budget(1 << 20);
    // At base 10: "a" last at 12, "b" again at 100; "c" (a tombstone) is the latest.
    for (k, o) in [("a", 12), ("b", 100), ("c", 13)] {
        assert!(map.put(k.as_bytes(), o));
    }
    let (out, dropped) = rewrite_batch(&b, 10, &map, &[], 50_000, 1_000, LIMITS).unwrap();
    assert_eq!(dropped, 2, "a@10, b@11");
    let Rewritten::New { batch, horizon } = out else {
        panic!("{out:?}")
    };
    assert_eq!(horizon, Some(51_000));
    let mut data = Bytes::from(batch);
    let d = RecordBatchDecoder::decode(&mut data).unwrap();
    let got: Vec<(i64, bool)> = d
        .records
        .iter()
        .map(|r| (r.offset, r.value.is_none()))
        .collect();
    assert_eq!(got, vec![(2, false), (3, true)], "offset deltas kept");
    assert_eq!(
        d.records[1].timestamp, 5_003,
        "timestamps kept under the horizon"
    );

    // Nothing superseded, no tombstone: the batch is kept byte for byte.
    let plain = batch_of(&[("x", Some("1"))], 1, Compression::Lz4);
    let (out, dropped) = rewrite_batch(&plain, 0, &map, &[], 50_000, 1_000, LIMITS).unwrap();
    assert_eq!((out, dropped), (Rewritten::Same { horizon: None }, 0));

    // Every record superseded: an empty run.
    let old = batch_of(&[("a", Some("0")), ("b", Some("0"))], 1, Compression::Gzip);
    let (out, dropped) = rewrite_batch(&old, 0, &map, &[], 50_000, 1_000, LIMITS).unwrap();
    assert_eq!(dropped, 2);
    assert!(matches!(out, Rewritten::Empty { span: 2, .. }), "{out:?}");
}

#[test]
fn aborted_transactional_data_goes_committed_is_cleaned_markers_stay() {
    let txn_batch = |producer_id: i64| {
        let recs: Vec<Record> = [("a", "1"), ("b", "1")]
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: true,
                producer_id,
                producer_epoch: 0,
                ..rec(Some(k), Some(v), i as i64, 100)
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    };
    let mut map = KeyMap::with_budget(1 << 20);
    assert!(map.put(b"a", 50));
    let aborted = [AbortedTxn {
        producer_id: 9,
        first_offset: 10,
        last_offset: 20,
    }];
    // Producer 9's batch at 10 is aborted: every record goes.
    let (out, dropped) =
        rewrite_batch(&txn_batch(9), 10, &map, &aborted, 0, 1_000, LIMITS).unwrap();
    assert_eq!(
        (out, dropped),
        (
            Rewritten::Empty {
                span: 2,
                timestamp: 100
            },
            2
        )
    );
    assert!(is_aborted(
        &BatchHeader::parse(&txn_batch(9)).unwrap(),
        20,
        &aborted
    ));
    assert!(!is_aborted(
        &BatchHeader::parse(&txn_batch(9)).unwrap(),
        21,
        &aborted
    ));
    // Producer 8's (committed) batch is cleaned like any other and stays transactional.
    let (out, dropped) =
        rewrite_batch(&txn_batch(8), 10, &map, &aborted, 0, 1_000, LIMITS).unwrap();
    assert_eq!(dropped, 1, "a@10 is superseded by a@50");
    let Rewritten::New { batch, .. } = out else {
        panic!("{out:?}")
    };
    let h = BatchHeader::parse(&batch).unwrap();
    assert!(h.is_transactional() && !h.is_control());
    assert_eq!((h.producer_id, h.records_count, h.offset_span()), (8, 1, 2));
    // A marker is kept as it is, even an abort marker.
    let marker = batch::control_batch(9, 0, false, 0, 100);
    let (out, dropped) = rewrite_batch(&marker, 21, &map, &aborted, 0, 1_000, LIMITS).unwrap();
    assert_eq!((out, dropped), (Rewritten::Same { horizon: None }, 0));
}

#[test]
fn the_key_map_is_bounded() {
    let mut map = KeyMap::with_budget(2 * BYTES_PER_KEY);
    assert!(map.put(b"a", 1));
    assert!(map.put(b"b", 2));
    assert!(!map.put(b"c", 3), "full");
    assert!(map.put(b"a", 9), "known keys still move");
    assert_eq!(map.len(), 2);
    assert!(map.superseded(b"a", 8) && !map.superseded(b"a", 9));
    assert!(!map.superseded(b"c", 0));
}

#[test]
fn keyless_records_are_refused_only_on_compacted_topics() {
    assert!(check_key(false, 0, -1).is_ok());
    assert!(check_key(true, 0, 0).is_ok());
    let e = check_key(true, 3, -1).unwrap_err();
    assert_eq!(e.kafka_code(), 87);
    assert_eq!(e.record_index(), Some(3));
    let topic = |policy: &str| TopicInfo {
        name: "t".into(),
        id: Uuid::nil(),
        partitions: 1,
        configs: [("cleanup.policy".to_string(), policy.to_string())].into(),
    };
    assert!(is_compacted(&topic("compact")) && !deletes(&topic("compact")));
    assert!(is_compacted(&topic("compact,delete")) && deletes(&topic("delete, compact")));
    assert!(!is_compacted(&topic("delete")));
}

struct Setup {
    meta: SqliteStore,
    store: InMemory,
    metrics: Metrics,
    topic: TopicInfo,
}

impl Setup {
    async fn new() -> Setup {
        let meta = SqliteStore::in_memory().unwrap();
        let topic = meta
            .create_topic(TopicSpec {
                name: "changelog".into(),
                partitions: 1,
                configs: BTreeMap::from([
                    ("cleanup.policy".into(), "compact".into()),
                    ("delete.retention.ms".into(), "1000".into()),
                    // The plan's tests cover the ratio; here any dirty data is enough.
                    ("min.cleanable.dirty.ratio".into(), "0.01".into()),
                ]),
            })
            .await
            .unwrap();
        Setup {
            meta,
            store: InMemory::new(),
            metrics: Metrics::default(),
            topic,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            meta: &self.meta,
            store: &self.store,
            metrics: &self.metrics,
            settings: Settings {
                dedupe_buffer_bytes: 1 << 20,
                max_object_bytes: 1 << 20,
                max_uncompressed: 1 << 20,
            },
        }
    }

    /// Writes and commits one flush object holding `batches` for partition 0.
    async fn flush(&self, n: usize, batches: &[Bytes]) {
        let mut builder = ObjectBuilder::new();
        for b in batches {
            let h = BatchHeader::parse(b).unwrap();
            builder.add(
                self.topic.id,
                0,
                b.clone(),
                h.offset_span() as u64,
                h.base_timestamp,
                h.max_timestamp,
            );
        }
        let (object, infos) = builder.finish();
        let key = format!("data/{n:013}-x.shoal");
        self.meta.add_pending_object(&key).await.unwrap();
        let size = object.len() as u64;
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(object))
            .await
            .unwrap();
        let segs: Vec<SegmentAppend> = infos
            .iter()
            .map(|s| SegmentAppend {
                topic_id: s.topic_id,
                partition: s.partition,
                data_offset: s.data_offset,
                data_len: s.data_len,
                offset_span: s.offset_span,
                min_timestamp: s.min_timestamp,
                max_timestamp: s.max_timestamp,
                producer: None,
            })
            .collect();
        self.meta
            .commit_flush(&ObjectRef { key, size }, &segs)
            .await
            .unwrap();
    }

    /// The partition's records as a consumer reads them: (offset, key, value).
    async fn read_all(&self) -> Vec<(i64, String, Option<String>)> {
        let entries = all_entries(&self.meta, self.topic.id, 0, 0).await.unwrap();
        let mut out = Vec::new();
        let mut expect_next = 0;
        for e in entries {
            assert_eq!(e.base_offset, expect_next, "the index covers every offset");
            expect_next = e.end_offset;
            let body = self
                .store
                .get_range(
                    &Path::from(e.object_key.as_str()),
                    e.data_offset..e.data_offset + e.data_len,
                )
                .await
                .unwrap();
            let mut next = e.base_offset;
            for (_, range) in batches(&body, &e).unwrap() {
                let mut b = BytesMut::from(&body[range]);
                batch::set_base_offset(&mut b, next);
                next += BatchHeader::parse(&b).unwrap().offset_span();
                let mut data = b.freeze();
                for set in RecordBatchDecoder::decode_all(&mut data).unwrap() {
                    for r in set.records {
                        out.push((
                            r.offset,
                            String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                            r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn a_pass_keeps_the_latest_per_key_then_drops_tombstones_after_their_horizon() {
    let s = Setup::new().await;
    // Offsets 0..6 in two flushes; "b" is deleted at 5, "a" rewritten at 3.
    s.flush(
        1,
        &[batch_of(
            &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))],
            100,
            Compression::None,
        )],
    )
    .await;
    s.flush(
        2,
        &[
            batch_of(&[("a", Some("2"))], 200, Compression::Lz4),
            batch_of(&[("c", Some("2")), ("b", None)], 300, Compression::None),
        ],
    )
    .await;
    let ctx = s.ctx();
    let c = clean_partition(&ctx, &s.topic, 0, 10_000).await.unwrap();
    assert_eq!(c.records_removed, 3);
    assert_eq!((c.objects, c.puts), (1, 1));
    assert_eq!(
        c.gets, 2,
        "each dirty entry read once: kept for the rewrite"
    );
    let after = s.read_all().await;
    assert_eq!(
        after,
        vec![
            (3, "a".into(), Some("2".into())),
            (4, "c".into(), Some("2".into())),
            (5, "b".into(), None),
        ]
    );
    let entries = all_entries(&s.meta, s.topic.id, 0, 0).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(key_horizon(&entries[0].object_key), Some(11_000));
    assert_eq!(
        s.meta
            .partition_offsets(s.topic.id, 0)
            .await
            .unwrap()
            .high_watermark,
        6
    );

    // Nothing dirty, horizon not reached: no pass, not even a GET.
    let c = clean_partition(&ctx, &s.topic, 0, 10_500).await.unwrap();
    assert_eq!(c, Cleaned::default());
    // Past the horizon: the tombstone goes, the offsets stay.
    let c = clean_partition(&ctx, &s.topic, 0, 11_001).await.unwrap();
    assert_eq!(c.records_removed, 1);
    assert_eq!(
        s.read_all().await,
        vec![
            (3, "a".into(), Some("2".into())),
            (4, "c".into(), Some("2".into()))
        ]
    );
    let entries = all_entries(&s.meta, s.topic.id, 0, 0).await.unwrap();
    assert_eq!(key_horizon(&entries[0].object_key), None);
    assert_eq!(entries[0].end_offset, 6);

    // New writes for known keys clean the old values out of the clean part.
    s.flush(
        3,
        &[batch_of(
            &[("a", Some("3")), ("c", Some("3")), ("d", Some("1"))],
            400,
            Compression::None,
        )],
    )
    .await;
    clean_partition(&ctx, &s.topic, 0, 20_000).await.unwrap();
    assert_eq!(
        s.read_all().await,
        vec![
            (6, "a".into(), Some("3".into())),
            (7, "c".into(), Some("3".into())),
            (8, "d".into(), Some("1".into())),
        ]
    );
    assert_eq!(
        s.metrics
            .cleaner_puts
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn a_full_key_map_leaves_the_rest_for_the_next_pass() {
    let s = Setup::new().await;
    s.flush(
        1,
        &[batch_of(
            &[("a", Some("1")), ("b", Some("1"))],
            100,
            Compression::None,
        )],
    )
    .await;
    s.flush(
        2,
        &[batch_of(
            &[("c", Some("1")), ("a", Some("2"))],
            200,
            Compression::None,
        )],
    )
    .await;
    let mut ctx = s.ctx();
    ctx.settings.dedupe_buffer_bytes = 2 * BYTES_PER_KEY;
    clean_partition(&ctx, &s.topic, 0, 10_000).await.unwrap();
    let entries = all_entries(&s.meta, s.topic.id, 0, 0).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[0].object_key.starts_with(CLEANED_PREFIX));
    assert_eq!(entries[0].end_offset, 2, "only the first flush was cleaned");
    assert!(entries[1].object_key.starts_with("data/"));
    // The next pass takes the rest (the dirty half is enough by the ratio).
    clean_partition(&ctx, &s.topic, 0, 10_000).await.unwrap();
    assert_eq!(
        s.read_all().await,
        vec![
            (1, "b".into(), Some("1".into())),
            (2, "c".into(), Some("1".into())),
            (3, "a".into(), Some("2".into()))
        ]
    );
}
