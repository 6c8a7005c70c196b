//! The figures of one run and how they are printed.
//!
//! A [`Report`] holds plain numbers gathered by the phases; this module turns them into
//! rates and percentiles and prints two forms: a block for people, and one `RESULT key=value
//! ...` line for scripts, whose keys and order are a fixed interface (see
//! [`Report::result_line`]). Missing figures print as `n/a`, never as 0. MB means 2^20 bytes,
//! as in kafka-producer-perf-test. Nothing here does I/O or reads a clock.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

const MIB: f64 = (1u64 << 20) as f64;
/// Latency histograms hold microseconds up to ten minutes with three significant digits.
const MAX_LATENCY_US: u64 = 600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

impl Latency {
    /// `None` for an empty histogram: no samples is not the same as zero latency.
    pub fn from_micros(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        Some(Self {
            p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: h.max() as f64 / 1000.0,
            samples: h.len(),
        })
    }
}

pub struct ProduceFigures {
    pub records: u64,
    pub payload_bytes: u64,
    pub batch_bytes: u64,
    pub requests: u64,
    pub retried_batches: u64,
    pub elapsed: Duration,
    pub latency: Option<Latency>,
    /// How the producers were idempotent (e.g. their producer ids), `None` when they
    /// were not.
    pub idempotence: Option<String>,
}

pub struct ConsumeFigures {
    pub records: u64,
    /// Records the producers had acknowledged; the read must find exactly these.
    pub expected: u64,
    /// Record bytes the fetched records stand for (records × record size).
    pub payload_bytes: u64,
    pub batch_bytes: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

impl ConsumeFigures {
    pub fn matches(&self) -> bool {
        self.records == self.expected
    }
}

/// The rebalance after one member's LeaveGroup.
#[derive(Debug, Clone, Copy)]
pub struct LeaveFigures {
    /// From the LeaveGroup until the others held every partition again.
    pub took: Duration,
    /// From the LeaveGroup until the last of the others heard of it from a heartbeat
    /// (`None` if one learned another way).
    pub told: Option<Duration>,
    pub generation: i32,
}

/// What the group phase measured (see [`crate::group`]).
pub struct GroupFigures {
    pub members: usize,
    pub group: String,
    pub coordinator: String,
    pub versions: String,
    /// How long the coordinator took to be found and serve the group, before the members
    /// started (Kafka creates and loads its offsets topic then); part of no figure below.
    pub coordinator_wait: Duration,
    /// Per member that received records: from starting to join to its first record.
    pub join_to_first_record: Vec<Duration>,
    /// From starting all members until all held their assignments in one generation.
    pub rebalance: Duration,
    pub generation: i32,
    /// The rebalance after one member left; `None` with one member.
    pub leave: Option<LeaveFigures>,
    /// Records that had to be consumed (earliest to end offsets), each counted once.
    pub records: u64,
    /// Records the members fetched, re-deliveries after rebalances included.
    pub delivered: u64,
    /// Record bytes `records` stand for (records × record size).
    pub payload_bytes: u64,
    pub batch_bytes: u64,
    /// From the first SyncGroup with partitions until every record was consumed.
    pub elapsed: Duration,
    pub rejoins: u64,
    pub commits: u64,
    /// Offsets nobody consumed and committed offsets other than the end offsets.
    pub problems: Vec<String>,
}

impl GroupFigures {
    pub fn matches(&self) -> bool {
        self.problems.is_empty()
    }

    /// The median join-to-first-record time, in milliseconds.
    pub fn join_p50_ms(&self) -> Option<f64> {
        nearest_rank(&self.join_to_first_record, 0.5).map(ms)
    }

    pub fn join_max_ms(&self) -> Option<f64> {
        nearest_rank(&self.join_to_first_record, 1.0).map(ms)
    }

    pub fn mb_s(&self) -> Option<f64> {
        mb_per_s(self.payload_bytes, self.elapsed)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank quantile `q` (0 < q ≤ 1) of a few durations.
fn nearest_rank(values: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// What the transaction phase measured (see [`crate::txn`]).
pub struct TxnFigures {
    pub transactional_id: String,
    pub coordinator: String,
    pub versions: String,
    /// Partitions each transaction wrote one record to.
    pub partitions: Vec<i32>,
    pub commits: u64,
    /// Finding the coordinator and getting the producer id, before the first transaction.
    pub setup: Duration,
    /// From the first AddPartitionsToTxn to the last EndTxn answer.
    pub elapsed: Duration,
    /// EndTxn(commit) round trips.
    pub commit: Option<Latency>,
    /// From AddPartitionsToTxn to the EndTxn answer, per transaction.
    pub transaction: Option<Latency>,
    /// CONCURRENT_TRANSACTIONS / COORDINATOR_LOAD_IN_PROGRESS answers that were retried.
    pub busy_retries: u64,
    /// What the read_committed Fetch returned.
    pub records_read: u64,
    pub transactional_read: u64,
    pub aborted_skipped: u64,
    pub markers: u64,
    /// Records committed: the read must return exactly these.
    pub expected: u64,
    pub problems: Vec<String>,
}

impl TxnFigures {
    pub fn matches(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn per_s(&self) -> Option<f64> {
        per_s(self.commits, self.elapsed)
    }
}

/// What waiting for compaction to settle measured (see [`crate::compaction`]).
pub struct CompactionWaitFigures {
    /// `--compaction-wait`.
    pub limit: Duration,
    /// The whole wait, settled or not.
    pub waited: Duration,
    /// False when the wait gave up or stopped for a reason given in `note`.
    pub settled: bool,
    /// From the start of the wait to the scrape that saw the objects counter's last
    /// change; `None` when it never changed during the wait.
    pub duration: Option<Duration>,
    /// Deltas of `shoal_compaction_total{what="objects"|"bytes"}` over the wait.
    pub objects: Option<f64>,
    pub bytes: Option<f64>,
    /// Server CPU seconds from the start of the wait to the last change (with `--pid`).
    pub cpu_s: Option<f64>,
    /// Server CPU seconds over the whole wait (with `--pid`).
    pub wait_cpu_s: Option<f64>,
    /// What compaction merged between the run's first scrape and the wait.
    pub objects_before: Option<f64>,
    pub bytes_before: Option<f64>,
    /// Object-store GETs and PUTs during the wait.
    pub gets: Option<f64>,
    pub puts: Option<f64>,
    pub note: Option<String>,
}

impl CompactionWaitFigures {
    /// Bytes compaction read per second until the last change.
    pub fn mb_s(&self) -> Option<f64> {
        let secs = self.duration?.as_secs_f64();
        (secs > 0.0).then_some(self.bytes? / MIB / secs)
    }

    pub fn cpu_percent(&self) -> Option<f64> {
        let secs = self.duration?.as_secs_f64();
        (secs > 0.0).then_some(self.cpu_s? / secs * 100.0)
    }
}

/// `--after-compaction`: the wait for compaction and the catch-up read that followed it.
pub struct AfterCompactionFigures {
    pub wait: CompactionWaitFigures,
    pub consume: ConsumeFigures,
    /// Object-store GETs during this read; `None` when a scrape failed.
    pub gets: Option<f64>,
}

impl AfterCompactionFigures {
    pub fn consume_mb_s(&self) -> Option<f64> {
        mb_per_s(self.consume.payload_bytes, self.consume.elapsed)
    }

    pub fn gets_per_mb(&self) -> Option<f64> {
        per_mib(self.gets, self.consume.payload_bytes)
    }
}

pub struct ObjectStoreFigures {
    pub url: String,
    /// PUTs and GETs counted between the first and the last scrape; `None` when a scrape
    /// failed or the counter is not on the page.
    pub puts: Option<f64>,
    pub gets: Option<f64>,
    /// GETs during the catch-up read alone, when the middle scrape worked.
    pub catch_up_gets: Option<f64>,
    /// Bytes the PUTs and GETs are divided by.
    pub produced_bytes: u64,
    pub consumed_bytes: u64,
    pub note: Option<String>,
}

impl ObjectStoreFigures {
    pub fn puts_per_mb(&self) -> Option<f64> {
        per_mib(self.puts, self.produced_bytes)
    }

    pub fn gets_per_mb(&self) -> Option<f64> {
        per_mib(self.gets, self.consumed_bytes)
    }
}

fn per_mib(count: Option<f64>, bytes: u64) -> Option<f64> {
    count
        .filter(|_| bytes > 0)
        .map(|c| c / (bytes as f64 / MIB))
}

pub struct Report {
    pub label: String,
    pub bootstrap: String,
    pub topic: String,
    pub topic_created: bool,
    pub partitions: i32,
    pub brokers: usize,
    pub versions: String,
    /// One line saying what load was asked for.
    pub workload: String,
    pub produce: ProduceFigures,
    pub e2e: Option<Latency>,
    pub tail_records: u64,
    pub consume: ConsumeFigures,
    pub object_store: Option<ObjectStoreFigures>,
    /// `None` when `--after-compaction` was not given.
    pub after_compaction: Option<AfterCompactionFigures>,
    /// `None` when the group phase was not asked for.
    pub group: Option<GroupFigures>,
    /// `None` when the transaction phase was not asked for.
    pub txn: Option<TxnFigures>,
    pub pid: Option<u32>,
    pub peak_rss_mib: Option<f64>,
}

pub fn mb_per_s(bytes: u64, elapsed: Duration) -> Option<f64> {
    rate(bytes as f64 / MIB, elapsed)
}

pub fn per_s(count: u64, elapsed: Duration) -> Option<f64> {
    rate(count as f64, elapsed)
}

fn rate(amount: f64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (secs > 0.0).then(|| amount / secs)
}

/// `n/a` for missing figures, otherwise the number with `decimals` places.
pub fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "n/a".to_string(),
    }
}

/// A label usable as one `key=value` token.
fn token(label: &str) -> String {
    let t: String = label
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() {
        "-".to_string()
    } else {
        t
    }
}

impl Report {
    pub fn produce_mb_s(&self) -> Option<f64> {
        mb_per_s(self.produce.payload_bytes, self.produce.elapsed)
    }

    pub fn consume_mb_s(&self) -> Option<f64> {
        mb_per_s(self.consume.payload_bytes, self.consume.elapsed)
    }

    /// The line scripts grep for. Keys and their order are fixed; new keys are only ever
    /// appended.
    pub fn result_line(&self) -> String {
        let p = self.produce.latency;
        let os = self.object_store.as_ref();
        let g = self.group.as_ref();
        let commit = self.txn.as_ref().and_then(|t| t.commit);
        let whole = self.txn.as_ref().and_then(|t| t.transaction);
        let ac = self.after_compaction.as_ref();
        let wait = ac.map(|a| &a.wait);
        let fields = [
            ("produce_mb_s", fmt_opt(self.produce_mb_s(), 2)),
            (
                "produce_rec_s",
                fmt_opt(per_s(self.produce.records, self.produce.elapsed), 0),
            ),
            ("produce_p50_ms", fmt_opt(p.map(|l| l.p50_ms), 3)),
            ("produce_p99_ms", fmt_opt(p.map(|l| l.p99_ms), 3)),
            ("produce_max_ms", fmt_opt(p.map(|l| l.max_ms), 3)),
            ("e2e_p50_ms", fmt_opt(self.e2e.map(|l| l.p50_ms), 3)),
            ("e2e_p99_ms", fmt_opt(self.e2e.map(|l| l.p99_ms), 3)),
            ("consume_mb_s", fmt_opt(self.consume_mb_s(), 2)),
            ("puts_per_mb", fmt_opt(os.and_then(|o| o.puts_per_mb()), 3)),
            ("gets_per_mb", fmt_opt(os.and_then(|o| o.gets_per_mb()), 3)),
            ("peak_rss_mib", fmt_opt(self.peak_rss_mib, 1)),
            (
                "group_join_first_record_ms",
                fmt_opt(g.and_then(GroupFigures::join_p50_ms), 1),
            ),
            ("group_rebalance_ms", fmt_opt(g.map(|g| ms(g.rebalance)), 1)),
            (
                "group_rebalance_leave_ms",
                fmt_opt(g.and_then(|g| g.leave).map(|l| ms(l.took)), 1),
            ),
            (
                "group_consume_mb_s",
                fmt_opt(g.and_then(GroupFigures::mb_s), 2),
            ),
            (
                "idempotent",
                (if self.produce.idempotence.is_some() {
                    "on"
                } else {
                    "off"
                })
                .to_string(),
            ),
            ("txn_commit_p50_ms", fmt_opt(commit.map(|l| l.p50_ms), 3)),
            ("txn_commit_p99_ms", fmt_opt(commit.map(|l| l.p99_ms), 3)),
            ("txn_commit_max_ms", fmt_opt(commit.map(|l| l.max_ms), 3)),
            ("txn_p50_ms", fmt_opt(whole.map(|l| l.p50_ms), 3)),
            ("txn_p99_ms", fmt_opt(whole.map(|l| l.p99_ms), 3)),
            ("txn_max_ms", fmt_opt(whole.map(|l| l.max_ms), 3)),
            (
                "compaction_s",
                fmt_opt(wait.and_then(|w| w.duration).map(|d| d.as_secs_f64()), 1),
            ),
            (
                "compaction_mb_s",
                fmt_opt(wait.and_then(CompactionWaitFigures::mb_s), 2),
            ),
            ("compaction_cpu_s", fmt_opt(wait.and_then(|w| w.cpu_s), 2)),
            ("objects_merged", fmt_opt(wait.and_then(|w| w.objects), 0)),
            (
                "consume_after_mb_s",
                fmt_opt(ac.and_then(AfterCompactionFigures::consume_mb_s), 2),
            ),
            (
                "gets_per_mb_after",
                fmt_opt(ac.and_then(AfterCompactionFigures::gets_per_mb), 3),
            ),
        ];
        let mut line = format!("RESULT label={}", token(&self.label));
        for (key, value) in fields {
            let _ = write!(line, " {key}={value}");
        }
        line
    }

    /// The block for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let p = &self.produce;
        let c = &self.consume;
        let _ = writeln!(out, "== shoal-bench: {} ==", self.label);
        let _ = writeln!(out, "target      {}", self.bootstrap);
        let _ = writeln!(
            out,
            "topic       {} ({} partitions on {} broker(s), {})",
            self.topic,
            self.partitions,
            self.brokers,
            if self.topic_created {
                "created"
            } else {
                "already existed"
            }
        );
        let _ = writeln!(out, "protocol    {}", self.versions);
        let _ = writeln!(out, "workload    {}", self.workload);
        let _ = writeln!(out, "-- produce");
        let _ = writeln!(
            out,
            "  producer  {}",
            match &p.idempotence {
                Some(how) => format!("idempotent: {how}"),
                None => "not idempotent (producer id -1, no sequences)".to_string(),
            }
        );
        let _ = writeln!(
            out,
            "  acked     {} records in {:.2} s ({} requests, {} batches retried)",
            p.records,
            p.elapsed.as_secs_f64(),
            p.requests,
            p.retried_batches
        );
        let _ = writeln!(
            out,
            "  rate      {} MB/s, {} records/s (record values+keys; {} MB/s as record batches)",
            fmt_opt(self.produce_mb_s(), 2),
            fmt_opt(per_s(p.records, p.elapsed), 0),
            fmt_opt(mb_per_s(p.batch_bytes, p.elapsed), 2)
        );
        let _ = writeln!(
            out,
            "  latency   {} (per Produce request, write to response)",
            latency_text(p.latency)
        );
        let _ = writeln!(out, "-- end-to-end (tailing consumer)");
        let _ = writeln!(
            out,
            "  latency   {} (send stamp in the value to Fetch response; {} records seen)",
            latency_text(self.e2e),
            self.tail_records
        );
        let _ = writeln!(out, "-- catch-up consume (from the offsets before the run)");
        let _ = writeln!(
            out,
            "  read      {} records in {:.2} s ({} Fetch requests)",
            c.records,
            c.elapsed.as_secs_f64(),
            c.requests
        );
        let _ = writeln!(
            out,
            "  rate      {} MB/s, {} records/s (record values+keys; {} MB/s as record batches)",
            fmt_opt(self.consume_mb_s(), 2),
            fmt_opt(per_s(c.records, c.elapsed), 0),
            fmt_opt(mb_per_s(c.batch_bytes, c.elapsed), 2)
        );
        if c.matches() {
            let _ = writeln!(
                out,
                "  check     OK: {} records read = {} acknowledged",
                c.records, c.expected
            );
        } else {
            let _ = writeln!(
                out,
                "  check     MISMATCH: {} records read, {} acknowledged ({:+})",
                c.records,
                c.expected,
                c.records as i128 - c.expected as i128
            );
        }
        if let Some(a) = &self.after_compaction {
            self.after_compaction_text(&mut out, a);
        }
        match &self.group {
            None => {}
            Some(g) => group_text(&mut out, g),
        }
        if let Some(t) = &self.txn {
            txn_text(&mut out, t);
        }
        let _ = writeln!(out, "-- object store");
        match &self.object_store {
            None => {
                let _ = writeln!(out, "  n/a (no --metrics-url)");
            }
            Some(os) => {
                let _ = writeln!(out, "  source    {}", os.url);
                let _ = writeln!(
                    out,
                    "  PUTs      {} ({} per MB produced)",
                    fmt_opt(os.puts, 0),
                    fmt_opt(os.puts_per_mb(), 3)
                );
                let _ = writeln!(
                    out,
                    "  GETs      {} ({} per MB consumed by tail + catch-up; {} during catch-up)",
                    fmt_opt(os.gets, 0),
                    fmt_opt(os.gets_per_mb(), 3),
                    fmt_opt(os.catch_up_gets, 0)
                );
                if let Some(note) = &os.note {
                    let _ = writeln!(out, "  note      {note}");
                }
            }
        }
        let _ = writeln!(out, "-- server process");
        match self.pid {
            None => {
                let _ = writeln!(out, "  n/a (no --pid)");
            }
            Some(pid) => {
                let _ = writeln!(
                    out,
                    "  peak RSS  {} MiB (pid {pid}, sampled every 200 ms)",
                    fmt_opt(self.peak_rss_mib, 1)
                );
            }
        }
        out
    }
}

impl Report {
    /// GETs per MB of the first catch-up read alone (not the tail's).
    pub fn catch_up_gets_per_mb(&self) -> Option<f64> {
        let os = self.object_store.as_ref()?;
        per_mib(os.catch_up_gets, self.consume.payload_bytes)
    }

    fn after_compaction_text(&self, out: &mut String, a: &AfterCompactionFigures) {
        let w = &a.wait;
        let c = &a.consume;
        let _ = writeln!(out, "-- after compaction");
        let _ = writeln!(
            out,
            "  wait      {} after {:.1} s (objects counter scraped every 1 s; at most {} s)",
            if w.settled { "settled" } else { "NOT settled" },
            w.waited.as_secs_f64(),
            w.limit.as_secs()
        );
        match w.duration {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "  compacted {} objects merged, {} MB read in {:.1} s until the counter's \
                     last change ({} MB/s)",
                    fmt_opt(w.objects, 0),
                    fmt_opt(w.bytes.map(|b| b / MIB), 1),
                    d.as_secs_f64(),
                    fmt_opt(w.mb_s(), 2)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  compacted {} objects merged during the wait",
                    fmt_opt(w.objects, 0)
                );
            }
        }
        match self.pid {
            None => {
                let _ = writeln!(out, "  cpu       n/a (no --pid)");
            }
            Some(pid) if w.duration.is_some() => {
                let _ = writeln!(
                    out,
                    "  cpu       {} s of server CPU until the last change ({} % of one core); \
                     {} s over the whole wait (pid {pid})",
                    fmt_opt(w.cpu_s, 2),
                    fmt_opt(w.cpu_percent(), 1),
                    fmt_opt(w.wait_cpu_s, 2)
                );
            }
            Some(pid) => {
                let _ = writeln!(
                    out,
                    "  cpu       {} s of server CPU over the whole wait (pid {pid})",
                    fmt_opt(w.wait_cpu_s, 2)
                );
            }
        }
        let _ = writeln!(
            out,
            "  earlier   {} objects merged, {} MB read by compaction before the wait \
             (server-wide, since this run's first scrape)",
            fmt_opt(w.objects_before, 0),
            fmt_opt(w.bytes_before.map(|b| b / MIB), 1)
        );
        let _ = writeln!(
            out,
            "  store     {} GETs, {} PUTs during the wait",
            fmt_opt(w.gets, 0),
            fmt_opt(w.puts, 0)
        );
        if let Some(note) = &w.note {
            let _ = writeln!(out, "  note      {note}");
        }
        let _ = writeln!(
            out,
            "  read      {} records in {:.2} s ({} Fetch requests), same offsets and \
             connections as the first read",
            c.records,
            c.elapsed.as_secs_f64(),
            c.requests
        );
        let _ = writeln!(
            out,
            "  rate      {} MB/s after compaction, {} MB/s before",
            fmt_opt(a.consume_mb_s(), 2),
            fmt_opt(self.consume_mb_s(), 2)
        );
        let _ = writeln!(
            out,
            "  GETs      {} per MB after compaction ({} GETs), {} per MB in the first \
             catch-up read ({} GETs)",
            fmt_opt(a.gets_per_mb(), 3),
            fmt_opt(a.gets, 0),
            fmt_opt(self.catch_up_gets_per_mb(), 3),
            fmt_opt(self.object_store.as_ref().and_then(|o| o.catch_up_gets), 0)
        );
        if c.matches() {
            let _ = writeln!(
                out,
                "  check     OK: {} records read = {} acknowledged",
                c.records, c.expected
            );
        } else {
            let _ = writeln!(
                out,
                "  check     MISMATCH: {} records read, {} acknowledged ({:+})",
                c.records,
                c.expected,
                c.records as i128 - c.expected as i128
            );
        }
    }
}

fn group_text(out: &mut String, g: &GroupFigures) {
    let _ = writeln!(
        out,
        "-- group consume ({} consumers, group {}, coordinator {})",
        g.members, g.group, g.coordinator
    );
    let _ = writeln!(out, "  protocol  {}", g.versions);
    let _ = writeln!(
        out,
        "  join      first record after p50 {} ms, max {} ms ({} of {} consumers got records; \
         coordinator ready {} ms before)",
        fmt_opt(g.join_p50_ms(), 1),
        fmt_opt(g.join_max_ms(), 1),
        g.join_to_first_record.len(),
        g.members,
        g.coordinator_wait.as_millis()
    );
    let _ = writeln!(
        out,
        "  rebalance {} ms until all {} held their partitions (generation {})",
        fmt_opt(Some(ms(g.rebalance)), 1),
        g.members,
        g.generation
    );
    match g.leave {
        Some(l) => {
            let told = l.told.map(ms);
            let _ = writeln!(
                out,
                "  leave     {} ms from one LeaveGroup until the other {} held all partitions \
                 (generation {}): {} ms until heartbeats told them, {} ms to rejoin and sync",
                fmt_opt(Some(ms(l.took)), 1),
                g.members - 1,
                l.generation,
                fmt_opt(told, 1),
                fmt_opt(told.map(|t| ms(l.took) - t), 1)
            );
        }
        None => {
            let _ = writeln!(out, "  leave     n/a (one consumer)");
        }
    }
    let _ = writeln!(
        out,
        "  read      {} records in {:.2} s ({} delivered, {} rejoins, {} commits)",
        g.records,
        g.elapsed.as_secs_f64(),
        g.delivered,
        g.rejoins,
        g.commits
    );
    let _ = writeln!(
        out,
        "  rate      {} MB/s, {} records/s (record values+keys; {} MB/s as record batches)",
        fmt_opt(g.mb_s(), 2),
        fmt_opt(per_s(g.records, g.elapsed), 0),
        fmt_opt(mb_per_s(g.batch_bytes, g.elapsed), 2)
    );
    if g.matches() {
        let _ = writeln!(
            out,
            "  check     OK: every offset consumed; committed offsets = end offsets"
        );
    } else {
        for problem in &g.problems {
            let _ = writeln!(out, "  check     MISMATCH: {problem}");
        }
    }
}

fn txn_text(out: &mut String, t: &TxnFigures) {
    let _ = writeln!(
        out,
        "-- transactions (transactional id {}, coordinator {})",
        t.transactional_id, t.coordinator
    );
    let _ = writeln!(out, "  protocol  {}", t.versions);
    let _ = writeln!(
        out,
        "  commits   {} in {:.2} s ({} per s; one record to each of partition(s) {:?}; \
         {} busy answers retried; coordinator ready {} ms before)",
        t.commits,
        t.elapsed.as_secs_f64(),
        fmt_opt(t.per_s(), 1),
        t.partitions,
        t.busy_retries,
        t.setup.as_millis()
    );
    let _ = writeln!(
        out,
        "  EndTxn    {} (commit round trip)",
        latency_text(t.commit)
    );
    let _ = writeln!(
        out,
        "  whole     {} (AddPartitionsToTxn, Produce, EndTxn answered)",
        latency_text(t.transaction)
    );
    let _ = writeln!(
        out,
        "  read      {} records with read_committed ({} transactional, {} of aborted \
         transactions left out, {} markers skipped)",
        t.records_read, t.transactional_read, t.aborted_skipped, t.markers
    );
    if t.matches() {
        let _ = writeln!(
            out,
            "  check     OK: {} transactional records read = {} committed",
            t.records_read, t.expected
        );
    } else {
        for problem in &t.problems {
            let _ = writeln!(out, "  check     MISMATCH: {problem}");
        }
    }
}

fn latency_text(l: Option<Latency>) -> String {
    match l {
        None => "n/a".to_string(),
        Some(l) => format!(
            "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap(); // 10 µs .. 10 ms
        }
        Report {
            label: "kafka 3.9 run".into(),
            bootstrap: "localhost:9092".into(),
            topic: "t".into(),
            topic_created: true,
            partitions: 8,
            brokers: 1,
            versions: "Produce v9".into(),
            workload: "w".into(),
            produce: ProduceFigures {
                records: 1000,
                payload_bytes: 10 << 20,
                batch_bytes: 11 << 20,
                requests: 10,
                retried_batches: 0,
                elapsed: Duration::from_secs(2),
                latency: Latency::from_micros(&h),
                idempotence: None,
            },
            e2e: None,
            tail_records: 0,
            consume: ConsumeFigures {
                records: 1000,
                expected: 1000,
                payload_bytes: 20 << 20,
                batch_bytes: 21 << 20,
                requests: 3,
                elapsed: Duration::from_secs(1),
            },
            object_store: Some(ObjectStoreFigures {
                url: "http://x/metrics".into(),
                puts: Some(5.0),
                gets: None,
                catch_up_gets: None,
                produced_bytes: 10 << 20,
                consumed_bytes: 20 << 20,
                note: None,
            }),
            after_compaction: None,
            group: None,
            txn: None,
            pid: None,
            peak_rss_mib: None,
        }
    }

    fn txn() -> TxnFigures {
        let mut h = new_histogram();
        for us in 1..=100u64 {
            h.record(us * 100).unwrap(); // 0.1 .. 10 ms
        }
        TxnFigures {
            transactional_id: "tx".into(),
            coordinator: "c:1".into(),
            versions: "EndTxn v3".into(),
            partitions: vec![0],
            commits: 100,
            setup: Duration::from_millis(40),
            elapsed: Duration::from_secs(4),
            commit: Latency::from_micros(&h),
            transaction: None,
            busy_retries: 3,
            records_read: 100,
            transactional_read: 100,
            aborted_skipped: 0,
            markers: 100,
            expected: 100,
            problems: Vec::new(),
        }
    }

    fn group() -> GroupFigures {
        GroupFigures {
            members: 3,
            group: "g".into(),
            coordinator: "c:1".into(),
            versions: "JoinGroup v5".into(),
            coordinator_wait: Duration::from_millis(30),
            join_to_first_record: vec![
                Duration::from_millis(300),
                Duration::from_millis(100),
                Duration::from_millis(200),
            ],
            rebalance: Duration::from_micros(250_500),
            generation: 3,
            leave: Some(LeaveFigures {
                took: Duration::from_millis(1200),
                told: Some(Duration::from_millis(900)),
                generation: 4,
            }),
            records: 1000,
            delivered: 1010,
            payload_bytes: 4 << 20,
            batch_bytes: 5 << 20,
            elapsed: Duration::from_secs(2),
            rejoins: 4,
            commits: 9,
            problems: Vec::new(),
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let l = report().produce.latency.unwrap();
        assert_eq!(l.samples, 1000);
        assert!((l.p50_ms - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 10.0).abs() < 0.01, "{l:?}");
        assert_eq!(Latency::from_micros(&new_histogram()), None);
    }

    #[test]
    fn result_line_has_fixed_keys_and_na() {
        assert_eq!(
            report().result_line(),
            "RESULT label=kafka_3.9_run produce_mb_s=5.00 produce_rec_s=500 \
             produce_p50_ms=5.003 produce_p99_ms=9.903 produce_max_ms=10.007 \
             e2e_p50_ms=n/a e2e_p99_ms=n/a consume_mb_s=20.00 puts_per_mb=0.500 \
             gets_per_mb=n/a peak_rss_mib=n/a group_join_first_record_ms=n/a \
             group_rebalance_ms=n/a group_rebalance_leave_ms=n/a group_consume_mb_s=n/a \
             idempotent=off txn_commit_p50_ms=n/a txn_commit_p99_ms=n/a txn_commit_max_ms=n/a \
             txn_p50_ms=n/a txn_p99_ms=n/a txn_max_ms=n/a compaction_s=n/a \
             compaction_mb_s=n/a compaction_cpu_s=n/a objects_merged=n/a \
             consume_after_mb_s=n/a gets_per_mb_after=n/a"
        );
        let mut r = report();
        r.group = Some(group());
        assert!(
            r.result_line().contains(
                " group_join_first_record_ms=200.0 group_rebalance_ms=250.5 \
                 group_rebalance_leave_ms=1200.0 group_consume_mb_s=2.00 idempotent=off"
            ),
            "{}",
            r.result_line()
        );
    }

    #[test]
    fn idempotence_and_transactions_are_reported() {
        let mut r = report();
        r.produce.idempotence = Some("4 producer ids".into());
        r.txn = Some(txn());
        let line = r.result_line();
        assert!(
            line.contains(
                " group_consume_mb_s=n/a idempotent=on txn_commit_p50_ms=5.003 \
                 txn_commit_p99_ms=9.903 txn_commit_max_ms=10.007 txn_p50_ms=n/a \
                 txn_p99_ms=n/a txn_max_ms=n/a compaction_s=n/a"
            ),
            "{line}"
        );
        let text = r.human();
        assert!(
            text.contains("producer  idempotent: 4 producer ids"),
            "{text}"
        );
        assert!(
            text.contains("commits   100 in 4.00 s (25.0 per s"),
            "{text}"
        );
        assert!(text.contains("3 busy answers retried"), "{text}");
        assert!(
            text.contains("OK: 100 transactional records read = 100 committed"),
            "{text}"
        );
        assert!(text.contains("(100 transactional, 0 of aborted"), "{text}");
        let mut t = txn();
        t.problems.push("read_committed returned 99 records".into());
        assert!(!t.matches());
        r.txn = Some(t);
        assert!(r
            .human()
            .contains("check     MISMATCH: read_committed returned 99 records"));
        r.produce.idempotence = None;
        assert!(r.human().contains("not idempotent"));
    }

    #[test]
    fn group_figures_and_mismatch() {
        let mut g = group();
        assert_eq!(g.join_p50_ms(), Some(200.0));
        assert_eq!(g.join_max_ms(), Some(300.0));
        g.join_to_first_record.truncate(2);
        assert_eq!(g.join_p50_ms(), Some(100.0));
        g.join_to_first_record.clear();
        assert_eq!(g.join_p50_ms(), None);
        let mut r = report();
        r.group = Some(group());
        let text = r.human();
        assert!(text.contains("OK: every offset consumed"), "{text}");
        assert!(text.contains("500 records/s"), "{text}");
        assert!(
            text.contains("900.0 ms until heartbeats told them, 300.0 ms to rejoin"),
            "{text}"
        );
        g.problems
            .push("t-0: committed offset 9, end offset 10".into());
        g.leave = None;
        assert!(!g.matches());
        r.group = Some(g);
        let text = r.human();
        assert!(
            text.contains("check     MISMATCH: t-0: committed"),
            "{text}"
        );
        assert!(text.contains("leave     n/a"), "{text}");
    }

    fn after_compaction() -> AfterCompactionFigures {
        AfterCompactionFigures {
            wait: CompactionWaitFigures {
                limit: Duration::from_secs(600),
                waited: Duration::from_secs(14),
                settled: true,
                duration: Some(Duration::from_secs(10)),
                objects: Some(120.0),
                bytes: Some((50 << 20) as f64),
                cpu_s: Some(4.0),
                wait_cpu_s: Some(4.5),
                objects_before: Some(30.0),
                bytes_before: Some((8 << 20) as f64),
                gets: Some(200.0),
                puts: Some(2.0),
                note: None,
            },
            consume: ConsumeFigures {
                records: 1000,
                expected: 1000,
                payload_bytes: 20 << 20,
                batch_bytes: 21 << 20,
                requests: 2,
                elapsed: Duration::from_millis(500),
            },
            gets: Some(4.0),
        }
    }

    #[test]
    fn after_compaction_is_reported_next_to_the_first_read() {
        let mut r = report();
        r.pid = Some(7);
        if let Some(os) = r.object_store.as_mut() {
            os.catch_up_gets = Some(100.0);
        }
        r.after_compaction = Some(after_compaction());
        let line = r.result_line();
        assert!(
            line.ends_with(
                " txn_max_ms=n/a compaction_s=10.0 compaction_mb_s=5.00 compaction_cpu_s=4.00 \
                 objects_merged=120 consume_after_mb_s=40.00 gets_per_mb_after=0.200"
            ),
            "{line}"
        );
        let text = r.human();
        for want in [
            "-- after compaction",
            "wait      settled after 14.0 s",
            "compacted 120 objects merged, 50.0 MB read in 10.0 s",
            "(5.00 MB/s)",
            "4.00 s of server CPU until the last change (40.0 % of one core); 4.50 s",
            "earlier   30 objects merged, 8.0 MB",
            "store     200 GETs, 2 PUTs during the wait",
            "rate      40.00 MB/s after compaction, 20.00 MB/s before",
            "GETs      0.200 per MB after compaction (4 GETs), 5.000 per MB in the first",
            "check     OK: 1000 records read = 1000 acknowledged",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        // Nothing merged during the wait: no duration, no rate, no CPU figure.
        let mut a = after_compaction();
        a.wait.duration = None;
        a.wait.objects = Some(0.0);
        a.wait.bytes = Some(0.0);
        a.wait.cpu_s = None;
        a.wait.settled = false;
        a.wait.note = Some("gave up".into());
        a.consume.records = 999;
        a.gets = None;
        r.after_compaction = Some(a);
        let line = r.result_line();
        assert!(
            line.ends_with(
                " compaction_s=n/a compaction_mb_s=n/a compaction_cpu_s=n/a objects_merged=0 \
                 consume_after_mb_s=40.00 gets_per_mb_after=n/a"
            ),
            "{line}"
        );
        let text = r.human();
        assert!(text.contains("NOT settled"), "{text}");
        assert!(text.contains("note      gave up"), "{text}");
        assert!(text.contains("0 objects merged during the wait"), "{text}");
        assert!(
            text.contains("cpu       4.50 s of server CPU over the whole wait (pid 7)"),
            "{text}"
        );
        assert!(
            text.contains("check     MISMATCH: 999 records read, 1000 acknowledged (-1)"),
            "{text}"
        );
    }

    #[test]
    fn human_block_flags_a_mismatch() {
        let mut r = report();
        assert!(r
            .human()
            .contains("OK: 1000 records read = 1000 acknowledged"));
        r.consume.records = 998;
        assert!(!r.consume.matches());
        let text = r.human();
        assert!(
            text.contains("MISMATCH: 998 records read, 1000 acknowledged (-2)"),
            "{text}"
        );
        assert!(text.contains("n/a (no --pid)"));
    }

    #[test]
    fn rates_and_formatting() {
        assert_eq!(mb_per_s(3 << 20, Duration::from_secs(2)), Some(1.5));
        assert_eq!(per_s(10, Duration::ZERO), None);
        assert_eq!(fmt_opt(None, 2), "n/a");
        assert_eq!(fmt_opt(Some(f64::NAN), 2), "n/a");
        assert_eq!(fmt_opt(Some(1.23456), 2), "1.23");
        assert_eq!(per_mib(Some(10.0), 0), None);
        assert_eq!(token(""), "-");
        assert_eq!(token("a=b c"), "a_b_c");
    }
}
