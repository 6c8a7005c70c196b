//! Compaction through the real binary: many tiny flush objects are merged while records
//! keep being produced and read; every record stays readable, in order, exactly once;
//! the object count stays bounded; crashes between the PUT and the index swap, and
//! between the swap and GC, lose and duplicate nothing and leave no garbage behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const NONE: i16 = 0;
const PARTITIONS: i32 = 3;

/// Object files in the local store: (flush objects, compacted objects).
fn objects(data_dir: &Path) -> (Vec<String>, Vec<String>) {
    let list = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(data_dir.join("objects").join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (list("data"), list("compacted"))
}

/// The base offset of every batch in an object's data region (object format v1: the
/// footer's first field is the index offset, where the data ends).
fn batch_base_offsets(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let footer = bytes.len() - 40;
    let data_end = u64::from_be_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    let mut at = 0;
    let mut out = Vec::new();
    while at < data_end {
        out.push(i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()));
        let len = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        at += 12 + len as usize;
    }
    assert_eq!(at, data_end, "batches fill the data region exactly");
    out
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `n` one-record batches round-robin over the partitions, one flush each.
fn produce(c: &mut Client, topic: &str, from: usize, n: usize, expected: &mut [Vec<String>]) {
    for i in from..from + n {
        let p = (i % PARTITIONS as usize) as i32;
        let v = format!("v{i}");
        let (code, base) = c.produce(topic, p, &values(&[v.as_str()]));
        assert_eq!(code, NONE);
        assert_eq!(base, expected[p as usize].len() as i64, "offsets are dense");
        expected[p as usize].push(v);
    }
}

fn check_all(c: &mut Client, topic: &str, expected: &[Vec<String>]) {
    for (p, want) in expected.iter().enumerate() {
        let got: Vec<String> = c
            .fetch_all(topic, p as i32, 0)
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(&got, want, "partition {p}: every record once, in order");
    }
}

const FAST: &[&str] = &[
    "--compaction-interval",
    "100ms",
    "--compaction-target-bytes",
    "64KiB",
    "--retention-check-interval",
    "100ms",
    "--gc-grace",
    "200ms",
];

#[test]
fn tiny_flushes_are_compacted_while_reads_and_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_in(dir.path(), FAST);
    let mut c = agent.connect();
    c.create_topic("tiny", PARTITIONS, &[]);
    let mut expected = vec![Vec::new(); PARTITIONS as usize];
    for round in 0..6 {
        produce(&mut c, "tiny", round * 50, 50, &mut expected);
        check_all(&mut c, "tiny", &expected);
    }
    // 300 flushes were written; compaction and GC bring the count down.
    wait_for("compaction and GC to bound the object count", 30, || {
        let (data, compacted) = objects(dir.path());
        data.len() + compacted.len() <= 10 && !compacted.is_empty()
    });
    check_all(&mut c, "tiny", &expected);
    // Timestamps and offsets still answer as before.
    assert_eq!(c.list_offsets("tiny", 0, -1).1, 100);
    assert_eq!(c.list_offsets("tiny", 0, -2).1, 0);
}

fn crash_at(failpoint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = vec![Vec::new(); PARTITIONS as usize];
    {
        // Compaction off while writing, so the crash comes with everything written.
        let mut agent = Agent::start_in(dir.path(), &["--compaction-target-bytes", "0"]);
        let mut c = agent.connect();
        c.create_topic("crash", PARTITIONS, &[]);
        produce(&mut c, "crash", 0, 30, &mut expected);
        agent.terminate();
    }
    let before = objects(dir.path()).0;
    assert_eq!(before.len(), 30);
    let mut agent = Agent::start_with_env(dir.path(), FAST, &[("SHOAL_FAILPOINT", failpoint)]);
    let status = agent.wait_exit();
    assert!(!status.success(), "the agent stopped at {failpoint}");
    // The log is drained by another thread, which may still be reading after the exit.
    agent.wait_for_log(failpoint);
    let crashed = objects(dir.path());
    assert_eq!(
        crashed.1.len(),
        1,
        "the compacted object was written before the crash"
    );

    // Restarted (orphans older than 1 s are collected): nothing lost or duplicated.
    let mut args = FAST.to_vec();
    args.extend(["--orphan-grace", "1s"]);
    let agent = Agent::start_in(dir.path(), &args);
    let mut c = agent.connect();
    check_all(&mut c, "crash", &expected);
    let survives = failpoint == "compaction-after-swap";
    wait_for("GC to remove every replaced or orphaned object", 30, || {
        let (data, compacted) = objects(dir.path());
        // After the swap the crashed run's object is the live one; before it, an orphan.
        data.is_empty() && compacted.len() == 1 && compacted.contains(&crashed.1[0]) == survives
    });
    check_all(&mut c, "crash", &expected);
    // The compacted object's batches carry their real base offsets: 0..10 per partition
    // (the flush objects' batches all said 0).
    let (_, compacted) = objects(dir.path());
    let mut bases = batch_base_offsets(&dir.path().join("objects/compacted").join(&compacted[0]));
    bases.sort_unstable();
    let mut want: Vec<i64> = (0..PARTITIONS).flat_map(|_| 0..10).collect();
    want.sort_unstable();
    assert_eq!(bases, want);
    // Writing goes on after offsets the crash did not disturb.
    let (code, base) = c.produce("crash", 0, &values(&["after"]));
    assert_eq!((code, base), (NONE, 10));
}

#[test]
fn a_crash_between_put_and_swap_loses_nothing_and_leaves_no_orphan() {
    crash_at("compaction-after-put");
}

#[test]
fn a_crash_between_swap_and_gc_loses_nothing_and_leaves_no_garbage() {
    crash_at("compaction-after-swap");
}

#[test]
fn two_agents_on_one_store_never_both_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut a_args = FAST.to_vec();
    a_args.extend(["--node-id", "1"]);
    let mut b_args = FAST.to_vec();
    b_args.extend(["--node-id", "2"]);
    let a = Agent::start_in(dir.path(), &a_args);
    let b = Agent::start_in(dir.path(), &b_args);
    let (mut ca, mut cb) = (a.connect(), b.connect());
    ca.create_topic("shared", PARTITIONS, &[]);
    let mut expected = vec![Vec::new(); PARTITIONS as usize];
    for round in 0..4 {
        produce(&mut ca, "shared", round * 25, 25, &mut expected);
    }
    wait_for("compaction of the shared store", 30, || {
        !objects(dir.path()).1.is_empty()
    });
    std::thread::sleep(Duration::from_secs(1));
    let merged_by = |agent: &Agent| agent.log().contains("compaction merged objects");
    assert!(
        merged_by(&a) != merged_by(&b),
        "exactly one agent holds the compaction claim (a: {}, b: {})",
        merged_by(&a),
        merged_by(&b)
    );
    check_all(&mut cb, "shared", &expected);
}
