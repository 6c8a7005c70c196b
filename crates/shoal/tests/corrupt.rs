//! A corrupt object through the real binary: one flush object of a partition has a byte
//! flipped on disk. Fetches of its offsets answer CORRUPT_MESSAGE (not a retriable
//! error, not a hang) while the same request's other partitions are served; the metrics
//! name it; compaction merges every other object around it; and `shoal partitions
//! skip-corrupt` moves the log start past it, after which consumers read on.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::records::Record;

const CORRUPT_MESSAGE: i16 = 2;

fn flush_objects(data_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join("objects/data"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, sample: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

fn values_of(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_corrupt_object_is_quarantined_reported_skipped_and_compacted_around() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Compaction off while writing: one flush object per produce.
        let mut agent = Agent::start_in(dir.path(), &["--compaction-target-bytes", "0"]);
        let mut c = agent.connect();
        c.create_topic("c", 2, &[]);
        for p in 0..2 {
            for i in 0..10 {
                let v = format!("p{p}-v{i}");
                assert_eq!(c.produce("c", p, &values(&[v.as_str()])), (0, i));
            }
        }
        agent.terminate();
    }
    // Objects are named by time: the sixth holds partition 0's offset 5. Flip a byte in
    // its record data (past the 61-byte batch header), which the batch CRC covers.
    let objects = flush_objects(dir.path());
    assert_eq!(objects.len(), 20);
    let bad_key = objects[5].clone();
    let bad_path = dir.path().join("objects/data").join(&bad_key);
    let mut bytes = std::fs::read(&bad_path).unwrap();
    bytes[64] ^= 0xff;
    std::fs::write(&bad_path, &bytes).unwrap();

    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let agent = Agent::start_in(
        dir.path(),
        &[
            "--compaction-interval",
            "100ms",
            "--compaction-target-bytes",
            "64KiB",
            "--retention-check-interval",
            "100ms",
            "--gc-grace",
            "200ms",
            "--metrics-listen",
            &metrics_addr,
        ],
    );
    let mut c = agent.connect();

    // The corrupt batch: CORRUPT_MESSAGE at once, not a retriable storage error and not
    // a long-poll (the fetch asks to wait 20 s for a byte).
    let p = c.fetch("c", 0, 5, 20_000, 1 << 20);
    assert_eq!(p.error_code, CORRUPT_MESSAGE, "fetch at the corrupt offset");
    assert_eq!(p.high_watermark, 10);
    // The batches before it are served, and the read stops at it.
    let p = c.fetch("c", 0, 0, 0, 1 << 20);
    assert_eq!(p.error_code, 0);
    let before = decode_records(&p.records.unwrap_or_default());
    assert_eq!(
        values_of(&before),
        (0..5).map(|i| format!("p0-v{i}")).collect::<Vec<_>>()
    );
    // One request for both partitions: partition 1 is served beside the error.
    let mut req = fetch_request("c", 0, 5, 0, 1 << 20);
    let mut p1 = req.topics[0].partitions[0].clone();
    p1.partition = 1;
    p1.fetch_offset = 0;
    req.topics[0].partitions.push(p1);
    let resp = c.send(&req, FETCH_V);
    let parts = &resp.responses[0].partitions;
    let by = |i: i32| parts.iter().find(|p| p.partition_index == i).unwrap();
    assert_eq!(by(0).error_code, CORRUPT_MESSAGE);
    assert_eq!(by(1).error_code, 0);
    assert!(!decode_records(by(1).records.as_ref().unwrap()).is_empty());
    assert_eq!(
        values_of(&c.fetch_all("c", 1, 0)),
        (0..10).map(|i| format!("p1-v{i}")).collect::<Vec<_>>()
    );

    // The metrics and the log name it.
    let text = metrics(port);
    assert_eq!(
        metric(&text, "shoal_quarantined_objects "),
        Some(1),
        "{text}"
    );
    let found = metric(&text, "shoal_corrupt_objects_total{found_by=\"fetch\"} ").unwrap()
        + metric(
            &text,
            "shoal_corrupt_objects_total{found_by=\"compaction\"} ",
        )
        .unwrap();
    assert_eq!(found, 1, "counted once: {text}");
    agent.wait_for_log("corrupt object quarantined");
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("corrupt object quarantined") && l.contains(&bad_key)),
        "{log}"
    );

    // Compaction goes on around it: every other flush object is merged and collected;
    // the corrupt one stays, referenced, and is not copied.
    wait_for("compaction of every object but the corrupt one", 30, || {
        flush_objects(dir.path()) == vec![bad_key.clone()]
    });
    agent.wait_for_log("compaction merged objects");
    let p = c.fetch("c", 0, 5, 0, 1 << 20);
    assert_eq!(
        p.error_code, CORRUPT_MESSAGE,
        "still corrupt after compaction"
    );

    // The operator skips it: a dry run names the range, the real run moves the log start.
    let bootstrap = agent.addr.to_string();
    let args = |dry: bool| {
        let mut a = vec![
            "partitions",
            "skip-corrupt",
            "--bootstrap",
            &bootstrap,
            "--topic",
            "c",
            "--partition",
            "0",
        ];
        if dry {
            a.push("--dry-run");
        }
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = run(args(true));
    assert!(ok, "{out}");
    assert!(out.contains("offsets 5..6"), "{out}");
    assert_eq!(c.list_offsets("c", 0, -2).1, 0, "a dry run skips nothing");
    let (ok, out) = run(args(false));
    assert!(ok, "{out}");
    assert!(out.contains("skipped corrupt offsets 5..6"), "{out}");
    assert_eq!(c.list_offsets("c", 0, -2).1, 6);
    assert_eq!(
        values_of(&c.fetch_all("c", 0, 6)),
        (6..10).map(|i| format!("p0-v{i}")).collect::<Vec<_>>()
    );
    let (ok, out) = run(args(false));
    assert!(ok, "{out}");
    assert!(out.contains("nothing skipped"), "{out}");

    // Unreferenced now: GC deletes the object and the quarantine lets it go.
    wait_for("GC of the corrupt object", 30, || {
        flush_objects(dir.path()).is_empty()
    });
    wait_for("the quarantine to release it", 30, || {
        metric(&metrics(port), "shoal_quarantined_objects ") == Some(0)
    });
    // Writes go on after it.
    assert_eq!(c.produce("c", 0, &values(&["after"])), (0, 10));
}
