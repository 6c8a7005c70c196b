//! `--after-compaction`: wait for the server's background compaction to settle, measuring
//! it from outside, so the catch-up read can be repeated over the merged objects.
//!
//! [`wait_for_settle`] scrapes the metrics page every second and follows the counter
//! `shoal_compaction_total{what="objects"}` ([`SettleWatch`]): compaction has settled once
//! the counter stayed the same for [`QUIET_SCRAPES`] scrapes in a row and either it moved
//! since the wait began or the wait already took more than [`IDLE_GRACE`] (a server whose
//! compaction finished before the wait, or has nothing to merge, would otherwise never
//! settle). The wait gives up after `--compaction-wait` seconds. The counter only moves
//! when a pass ends, so the compaction duration (wait start → the scrape that saw the last
//! change) has a resolution of one scrape interval and includes the part of a pass that
//! was already under way when the wait began. With `--pid`, the server's CPU time
//! (utime + stime of `/proc/PID/stat`, [`parse_cpu_ticks`]) is read at every scrape.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use crate::metrics::{counter_sum, scrape};
use crate::report::CompactionWaitFigures;

pub const COMPACTION_COUNTER: &str = "shoal_compaction_total";
const OBJECT_STORE_COUNTER: &str = crate::OBJECT_STORE_COUNTER;
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// Scrapes in a row that must see the objects counter unchanged.
pub const QUIET_SCRAPES: u32 = 3;
/// Without any change since the wait began, how long to wait before calling it settled.
pub const IDLE_GRACE: Duration = Duration::from_secs(15);
/// Failed scrapes in a row after which the wait stops.
const MAX_FAILED_SCRAPES: u32 = 5;
/// Clock ticks per second of `/proc/PID/stat`. `libc` is not a dependency of this crate,
/// so `sysconf(_SC_CLK_TCK)` is not asked: this assumes USER_HZ = 100, which is what
/// Linux reports to user space on every common architecture and configuration.
const CLK_TCK: f64 = 100.0;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Follows the objects counter scrape by scrape and decides when compaction has settled.
#[derive(Debug, Clone)]
pub struct SettleWatch {
    start: f64,
    last: f64,
    /// Consecutive scrapes that saw `last` again.
    quiet: u32,
    /// When (since the wait began) a scrape first saw the latest value, if it ever moved.
    last_change: Option<Duration>,
}

impl SettleWatch {
    /// `start` is the counter at the beginning of the wait.
    pub fn new(start: f64) -> Self {
        Self {
            start,
            last: start,
            quiet: 0,
            last_change: None,
        }
    }

    /// Takes one scrape's value, seen `at` after the wait began; true once settled.
    pub fn observe(&mut self, value: f64, at: Duration) -> bool {
        if value == self.last {
            self.quiet += 1;
        } else {
            self.last = value;
            self.quiet = 0;
            self.last_change = Some(at);
        }
        self.quiet >= QUIET_SCRAPES && (self.last > self.start || at > IDLE_GRACE)
    }

    /// Whether the counter has just changed (the last observation moved it).
    pub fn just_changed(&self) -> bool {
        self.quiet == 0 && self.last_change.is_some()
    }

    pub fn last_change(&self) -> Option<Duration> {
        self.last_change
    }

    pub fn merged(&self) -> f64 {
        self.last - self.start
    }
}

/// utime + stime (clock ticks) from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may itself hold spaces and parentheses, so fields are counted
/// from the last `)`: state is field 3, utime field 14, stime field 15.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds the process has used so far, `None` if it cannot be read.
async fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / CLK_TCK)
}

/// One scrape's counters of interest.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    objects: Option<f64>,
    bytes: Option<f64>,
    gets: Option<f64>,
    puts: Option<f64>,
}

impl Counters {
    fn of(page: &str) -> Self {
        Self {
            objects: counter_sum(page, COMPACTION_COUNTER, &[("what", "objects")]),
            bytes: counter_sum(page, COMPACTION_COUNTER, &[("what", "bytes")]),
            gets: counter_sum(page, OBJECT_STORE_COUNTER, &[("op", "get")]),
            puts: counter_sum(page, OBJECT_STORE_COUNTER, &[("op", "put")]),
        }
    }
}

fn delta(to: Option<f64>, from: Option<f64>) -> Option<f64> {
    Some(to? - from?)
}

/// Waits (at most `limit`) until compaction has settled; `run_start` is the page scraped
/// before producing, to tell what compaction merged before the wait. Never fails: what
/// could not be measured is `None`, and why is in the figures' note.
pub async fn wait_for_settle(
    url: &str,
    pid: Option<u32>,
    limit: Duration,
    run_start: Option<&str>,
) -> CompactionWaitFigures {
    let started = Instant::now();
    let cpu_start = match pid {
        Some(pid) => cpu_seconds(pid).await,
        None => None,
    };
    let mut figures = CompactionWaitFigures {
        limit,
        waited: Duration::ZERO,
        settled: false,
        duration: None,
        objects: None,
        bytes: None,
        cpu_s: None,
        wait_cpu_s: None,
        objects_before: None,
        bytes_before: None,
        gets: None,
        puts: None,
        note: None,
    };
    let first = match scrape(url).await {
        Ok(page) => Counters::of(&page),
        Err(e) => {
            figures.note = Some(format!("the first scrape failed: {e:#}"));
            figures.waited = started.elapsed();
            return figures;
        }
    };
    let Some(start_objects) = first.objects else {
        figures.note = Some(format!(
            "{COMPACTION_COUNTER}{{what=\"objects\"}} is not on the page: nothing to wait for"
        ));
        figures.waited = started.elapsed();
        return figures;
    };
    if let Some(page) = run_start {
        let before = Counters::of(page);
        figures.objects_before = delta(first.objects, before.objects);
        figures.bytes_before = delta(first.bytes, before.bytes);
    }
    let mut watch = SettleWatch::new(start_objects);
    let mut last = first;
    let mut cpu_at_change = None;
    let mut failures = 0;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(SCRAPE_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let page = scrape(url).await;
        let at = started.elapsed();
        let cpu_now = match pid {
            Some(pid) => cpu_seconds(pid).await,
            None => None,
        };
        match page {
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILED_SCRAPES {
                    figures.note = Some(format!(
                        "stopped waiting after {failures} failed scrapes in a row: {e:#}"
                    ));
                    break;
                }
            }
            Ok(page) => {
                failures = 0;
                let now = Counters::of(&page);
                let Some(objects) = now.objects else {
                    figures.note = Some(format!(
                        "{COMPACTION_COUNTER}{{what=\"objects\"}} vanished from the page"
                    ));
                    break;
                };
                last = now;
                let settled = watch.observe(objects, at);
                if watch.just_changed() {
                    cpu_at_change = cpu_now;
                }
                if settled {
                    figures.settled = true;
                    break;
                }
            }
        }
        if at >= limit {
            figures.note = Some(format!(
                "gave up after {} s (--compaction-wait): compaction had not settled",
                limit.as_secs()
            ));
            break;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprintln!(
                "  {:>6.1} s  {} objects merged, {:.1} MB read by compaction since the wait began",
                at.as_secs_f64(),
                watch.merged(),
                delta(last.bytes, first.bytes).unwrap_or(0.0) / (1u64 << 20) as f64
            );
        }
    }
    figures.waited = started.elapsed();
    figures.duration = watch.last_change();
    figures.objects = Some(watch.merged());
    figures.bytes = delta(last.bytes, first.bytes);
    figures.gets = delta(last.gets, first.gets);
    figures.puts = delta(last.puts, first.puts);
    figures.cpu_s = delta(cpu_at_change, cpu_start);
    if let Some(pid) = pid {
        figures.wait_cpu_s = delta(cpu_seconds(pid).await, cpu_start);
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn settles_after_three_quiet_scrapes_once_it_moved() {
        let mut w = SettleWatch::new(10.0);
        assert!(!w.observe(12.0, secs(1)));
        assert!(w.just_changed());
        assert!(!w.observe(20.0, secs(2)));
        assert!(!w.observe(20.0, secs(3)));
        assert!(!w.just_changed());
        assert!(!w.observe(20.0, secs(4)));
        // A change resets the quiet count.
        assert!(!w.observe(21.0, secs(5)));
        assert!(!w.observe(21.0, secs(6)));
        assert!(!w.observe(21.0, secs(7)));
        assert!(w.observe(21.0, secs(8)));
        assert_eq!(w.last_change(), Some(secs(5)));
        assert_eq!(w.merged(), 11.0);
    }

    #[test]
    fn without_a_change_it_settles_only_after_the_grace() {
        let mut w = SettleWatch::new(5.0);
        for s in 1..=15 {
            assert!(!w.observe(5.0, secs(s)), "settled at {s} s");
        }
        assert!(w.observe(5.0, secs(16)));
        assert_eq!(w.last_change(), None);
        assert!(!w.just_changed());
        assert_eq!(w.merged(), 0.0);
    }

    #[test]
    fn a_late_start_is_waited_for() {
        // Nothing for 10 s, then a pass ends: quiet must follow the change.
        let mut w = SettleWatch::new(0.0);
        for s in 1..=10 {
            assert!(!w.observe(0.0, secs(s)));
        }
        assert!(!w.observe(4.0, secs(11)));
        assert!(!w.observe(4.0, secs(12)));
        assert!(!w.observe(4.0, secs(13)));
        assert!(w.observe(4.0, secs(14)));
        assert_eq!(w.last_change(), Some(secs(11)));
    }

    #[test]
    fn cpu_ticks_parse_from_proc_stat() {
        let stat = "4242 (shoal) S 1 4242 4242 0 -1 4194560 12064 0 0 0 \
                    731 158 0 0 20 0 9 0 123456 1041133568 20536 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17991 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_cpu_ticks(stat), Some(731 + 158));
        // A command name with spaces and parentheses.
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(odd), Some(11));
        assert_eq!(parse_cpu_ticks("7 (x) R 1 2"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks(""), None);
    }
}
