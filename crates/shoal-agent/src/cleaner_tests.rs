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

/// [`rewrite_batch`] with the tests' delete.retention.ms (1 s) and limits.
fn rewrite(
    b: &[u8],
    base: i64,
    map: &KeyMap,
    txns: &mut Txns<'_>,
    now_ms: i64,
) -> (Rewritten, u64) {
    rewrite_batch(b, base, map, txns, now_ms, 1_000, LIMITS).unwrap()
}

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
    let (out, dropped) = rewrite(&b, 10, &map, &mut Txns::new(&[]), 50_000);
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
    let (out, dropped) = rewrite(&plain, 0, &map, &mut Txns::new(&[]), 50_000);
    assert_eq!((out, dropped), (Rewritten::Same { horizon: None }, 0));

    // Every record superseded: an empty run.
    let old = batch_of(&[("a", Some("0")), ("b", Some("0"))], 1, Compression::Gzip);
    let (out, dropped) = rewrite(&old, 0, &map, &mut Txns::new(&[]), 50_000);
    assert_eq!(dropped, 2);
    assert!(matches!(out, Rewritten::Empty { span: 2, .. }), "{out:?}");
}

/// A committed-or-aborted transaction's batch of producer `producer_id`: a=1, b=1.
fn txn_batch(producer_id: i64) -> Bytes {
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
}

#[test]
fn aborted_transactional_data_goes_committed_is_cleaned_markers_stay() {
    let mut map = KeyMap::with_budget(1 << 20);
    assert!(map.put(b"a", 50));
    let aborted = [AbortedTxn {
        producer_id: 9,
        first_offset: 10,
        last_offset: 20,
    }];
    // Producer 9's batch at 10 is aborted: every record goes.
    let (out, dropped) = rewrite(&txn_batch(9), 10, &map, &mut Txns::new(&aborted), 0);
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
    let (out, dropped) = rewrite(&txn_batch(8), 10, &map, &mut Txns::new(&aborted), 0);
    assert_eq!(dropped, 1, "a@10 is superseded by a@50");
    let Rewritten::New { batch, .. } = out else {
        panic!("{out:?}")
    };
    let h = BatchHeader::parse(&batch).unwrap();
    assert!(h.is_transactional() && !h.is_control());
    assert_eq!((h.producer_id, h.records_count, h.offset_span()), (8, 1, 2));
    // An abort marker is kept as it is.
    let marker = batch::control_batch(9, 0, false, 0, 100);
    let mut txns = Txns::new(&aborted);
    let (out, dropped) = rewrite(&marker, 21, &map, &mut txns, 0);
    assert_eq!((out, dropped), (Rewritten::Same { horizon: None }, 0));
}

#[test]
fn a_commit_marker_goes_after_its_horizon_once_its_transaction_kept_nothing() {
    let mut map = KeyMap::with_budget(1 << 20);
    assert!(map.put(b"a", 50) && map.put(b"b", 51));
    // Producer 8 commits a, b at 10..12 (both superseded since), marker at 14; producer 9
    // aborts at 12..14, marker at 15.
    let aborted = [AbortedTxn {
        producer_id: 9,
        first_offset: 12,
        last_offset: 15,
    }];
    let commit = batch::control_batch(8, 0, true, 0, 100);
    let abort = batch::control_batch(9, 0, false, 0, 100);
    let mut txns = Txns::new(&aborted);
    for (pid, base) in [(8, 10), (9, 12)] {
        let (out, dropped) = rewrite(&txn_batch(pid), base, &map, &mut txns, 5_000);
        assert!(matches!(out, Rewritten::Empty { span: 2, .. }), "{out:?}");
        assert_eq!(dropped, 2);
    }
    // The commit marker is stamped with a horizon; the abort marker stays as it is.
    let (out, dropped) = rewrite(&commit, 14, &map, &mut txns, 5_000);
    assert_eq!(dropped, 0);
    let Rewritten::New {
        batch: stamped,
        horizon: Some(6_000),
    } = out
    else {
        panic!("{out:?}")
    };
    let h = BatchHeader::parse(&stamped).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!((h.producer_id, h.records_count, h.offset_span()), (8, 1, 1));
    assert_eq!(retain::delete_horizon(&h), Some(6_000));
    let (out, _) = rewrite(&abort, 15, &map, &mut txns, 5_000);
    assert_eq!(out, Rewritten::Same { horizon: None });

    // Later passes (the data already gone): the stamped marker stays until its horizon,
    // then goes; the abort marker stays for good.
    let mut txns = Txns::new(&aborted);
    let (out, _) = rewrite(&stamped, 14, &map, &mut txns, 5_999);
    assert_eq!(
        out,
        Rewritten::Same {
            horizon: Some(6_000)
        }
    );
    let mut txns = Txns::new(&aborted);
    let (out, dropped) = rewrite(&stamped, 14, &map, &mut txns, 6_000);
    assert_eq!(
        (out, dropped),
        (
            Rewritten::Empty {
                span: 1,
                timestamp: 100
            },
            1
        )
    );
    let (out, _) = rewrite(&abort, 15, &map, &mut txns, 60_000);
    assert_eq!(out, Rewritten::Same { horizon: None });

    // A commit marker whose transaction kept a record stays as it is.
    let empty_map = KeyMap::with_budget(1 << 20);
    let mut txns = Txns::new(&[]);
    let (out, _) = rewrite(&txn_batch(8), 10, &empty_map, &mut txns, 5_000);
    assert_eq!(out, Rewritten::Same { horizon: None });
    let (out, _) = rewrite(&commit, 12, &empty_map, &mut txns, 5_000);
    assert_eq!(out, Rewritten::Same { horizon: None });
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

    /// The partition's index entries from offset 0 with their data, checking that they
    /// cover every offset.
    async fn bodies(&self) -> Vec<(IndexEntry, Bytes)> {
        let mut out = Vec::new();
        let mut expect_next = 0;
        for e in all_entries(&self.meta, self.topic.id, 0, 0).await.unwrap() {
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
            out.push((e, body));
        }
        out
    }

    /// The partition's records as a consumer reads them: (offset, key, value).
    async fn read_all(&self) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        for (e, body) in self.bodies().await {
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

/// Control batches in the partition, by producer id, in offset order.
async fn markers(s: &Setup) -> Vec<i64> {
    let mut out = Vec::new();
    for (e, body) in s.bodies().await {
        for (_, range) in batches(&body, &e).unwrap() {
            let h = BatchHeader::parse(&body[range]).unwrap();
            if h.is_control() {
                out.push(h.producer_id);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_pass_drops_a_commit_marker_after_its_transaction_and_horizon() {
    let s = Setup::new().await;
    // Producer 8 commits a=1, b=1 at 0..2 (marker at 2); plain a=2, b=2 follow at 3..5.
    s.flush(
        1,
        &[
            txn_batch(8),
            Bytes::from(batch::control_batch(8, 0, true, 0, 100)),
        ],
    )
    .await;
    s.flush(
        2,
        &[batch_of(
            &[("a", Some("2")), ("b", Some("2"))],
            200,
            Compression::None,
        )],
    )
    .await;
    let ctx = s.ctx();
    clean_partition(&ctx, &s.topic, 0, 10_000).await.unwrap();
    assert_eq!(markers(&s).await, vec![8], "kept until the delete horizon");
    let entries = all_entries(&s.meta, s.topic.id, 0, 0).await.unwrap();
    assert_eq!(key_horizon(&entries[0].object_key), Some(11_000));
    // Before the horizon: nothing due. After it: the marker goes, the offsets stay.
    assert_eq!(
        clean_partition(&ctx, &s.topic, 0, 10_999).await.unwrap(),
        Cleaned::default()
    );
    let c = clean_partition(&ctx, &s.topic, 0, 11_000).await.unwrap();
    assert_eq!((c.records_removed, c.objects), (1, 1));
    assert_eq!(markers(&s).await, Vec::<i64>::new());
    let entries = all_entries(&s.meta, s.topic.id, 0, 0).await.unwrap();
    assert_eq!(key_horizon(&entries[0].object_key), None);
    assert_eq!(
        (entries[0].base_offset, entries.last().unwrap().end_offset),
        (0, 5)
    );
    assert_eq!(
        s.read_all().await,
        vec![
            (3, "a".into(), Some("2".into())),
            (4, "b".into(), Some("2".into()))
        ]
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
