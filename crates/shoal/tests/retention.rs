//! Retention, DeleteRecords and object GC through the real binary: records past
//! `retention.ms` / beyond `retention.bytes` become unreadable (OFFSET_OUT_OF_RANGE,
//! earliest offset moves), and their objects disappear from the object store after the
//! grace period while everything still readable stays.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::DeleteRecordsRequest;

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

fn objects(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("objects").join("data"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn delete_records(c: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let r = c.send(&req, 2);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[test]
fn retention_by_time_moves_the_log_start_and_gc_deletes_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_in(
        dir.path(),
        &["--retention-check-interval", "200ms", "--gc-grace", "500ms"],
    );
    let mut c = agent.connect();
    c.create_topic("keep", 1, &[]);
    assert_eq!(c.produce("keep", 0, &values(&["k0", "k1"])), (NONE, 0));
    let kept = objects(dir.path());
    assert_eq!(kept.len(), 1);
    // Created with a long retention so nothing expires while we write; then shortened.
    c.create_topic("old", 1, &[]);
    for i in 0..3 {
        let (code, base) = c.produce("old", 0, &values(&[format!("o{i}")]));
        assert_eq!((code, base), (NONE, i));
    }
    let expired: Vec<String> = objects(dir.path())
        .into_iter()
        .filter(|o| !kept.contains(o))
        .collect();
    assert_eq!(expired.len(), 3, "one object per flush");
    c.set_topic_config("old", "retention.ms", "1");

    wait_for("retention to move the log start of 'old'", || {
        c.list_offsets("old", 0, EARLIEST).1 == 3
    });
    assert_eq!(c.list_offsets("old", 0, LATEST).1, 3);
    let p = c.fetch("old", 0, 0, 0, 1 << 20);
    assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!(p.log_start_offset, 3);
    // Producing goes on at the high watermark.
    assert_eq!(c.produce("old", 0, &values(&["o3"])).1, 3);

    wait_for("GC to delete the expired objects", || {
        let now = objects(dir.path());
        !expired.iter().any(|o| now.contains(o))
    });
    assert!(
        objects(dir.path()).contains(&kept[0]),
        "the object still referenced by 'keep' stays"
    );
    let got: Vec<_> = c
        .fetch_all("keep", 0, 0)
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(got, vec!["k0".as_bytes(), "k1".as_bytes()]);
    // retention.ms=1 expires the new record too, on a later pass.
    wait_for("retention to go on", || {
        c.list_offsets("old", 0, EARLIEST).1 == 4
    });
}

#[test]
fn retention_bytes_delete_records_topic_deletion_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    // A flush object whose commit never happened (its key's timestamp, long ago, is not
    // what GC goes by).
    let orphan_dir = dir.path().join("objects").join("data");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let orphan = "0000000001000-00000000000000000000000000000000.shoal";
    std::fs::write(orphan_dir.join(orphan), b"never committed").unwrap();
    let agent = Agent::start_in(
        dir.path(),
        &[
            "--retention-check-interval",
            "200ms",
            "--gc-grace",
            "300ms",
            // GC times an uncommitted object on its own clock, from when it first saw it.
            "--orphan-grace",
            "1s",
        ],
    );
    let mut c = agent.connect();
    wait_for("GC to delete the orphan", || {
        !objects(dir.path()).contains(&orphan.to_string())
    });

    // retention.bytes keeps the newest entries holding at least that many bytes.
    c.create_topic("small", 1, &[("retention.bytes", "1")]);
    for i in 0..3 {
        assert_eq!(c.produce("small", 0, &values(&[format!("s{i}")])).0, NONE);
    }
    wait_for("retention.bytes to drop the two oldest batches", || {
        c.list_offsets("small", 0, EARLIEST).1 == 2
    });
    assert_eq!(c.fetch_all("small", 0, 2).len(), 1);

    // DeleteRecords: up to an offset, then to the high watermark (-1); never backwards.
    c.create_topic("dr", 1, &[]);
    assert_eq!(c.produce("dr", 0, &values(&["a", "b", "c", "d"])).0, NONE);
    assert_eq!(delete_records(&mut c, "dr", 2), (NONE, 2));
    assert_eq!(c.list_offsets("dr", 0, EARLIEST).1, 2);
    assert_eq!(
        c.fetch("dr", 0, 1, 0, 1 << 20).error_code,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(delete_records(&mut c, "dr", 1), (NONE, 2));
    assert_eq!(delete_records(&mut c, "dr", 9).0, OFFSET_OUT_OF_RANGE);
    assert_eq!(delete_records(&mut c, "dr", -1), (NONE, 4));

    // Deleting topics leaves their objects unreferenced: GC removes every one.
    for t in ["small", "dr"] {
        let req = kafka_protocol::messages::DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(t)])
            .with_timeout_ms(5_000);
        let r = c.send(&req, 4);
        assert_eq!(r.responses[0].error_code, NONE);
    }
    wait_for("GC to delete the objects of the deleted topics", || {
        objects(dir.path()).is_empty()
    });
}
