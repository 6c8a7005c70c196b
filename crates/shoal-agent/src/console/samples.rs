//! The console's memory of the last minutes: a ring buffer of counter samples, taken
//! once a second by [`run`], and the rates between them that the plots draw.
//!
//! Samples hold the agent's monotonic totals, not rates, so a missed tick only widens
//! one interval. Rates divide by the monotonic time between samples; the wall-clock
//! time of each sample is kept only to label the plots.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::source::{Counters, Source};

/// How many samples are kept: ten minutes at one a second.
pub const CAPACITY: usize = 600;
/// How often [`run`] samples.
pub const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Monotonic milliseconds since sampling began.
    mono_ms: u64,
    /// Wall clock, ms since the Unix epoch.
    t_ms: i64,
    counters: Counters,
}

/// Rates over the interval that ends at `t_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub t_ms: i64,
    pub produce_bytes_s: f64,
    pub fetch_bytes_s: f64,
    pub puts_s: f64,
    pub gets_s: f64,
}

/// The last [`CAPACITY`] samples, oldest first.
pub struct Samples {
    ring: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl Default for Samples {
    fn default() -> Self {
        Samples::with_capacity(CAPACITY)
    }
}

impl Samples {
    pub fn with_capacity(capacity: usize) -> Self {
        Samples {
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(2),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a sample, dropping the oldest when full.
    pub fn push(&self, mono_ms: u64, t_ms: i64, counters: Counters) {
        let mut ring = self.lock();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(Sample {
            mono_ms,
            t_ms,
            counters,
        });
    }

    /// The rate of every interval between consecutive samples, oldest first. A counter
    /// that went backwards (it never should) counts as zero for that interval.
    pub fn rates(&self) -> Vec<Rate> {
        let ring = self.lock();
        let mut out = Vec::with_capacity(ring.len().saturating_sub(1));
        for (a, b) in ring.iter().zip(ring.iter().skip(1)) {
            let secs = b.mono_ms.saturating_sub(a.mono_ms) as f64 / 1000.0;
            if secs <= 0.0 {
                continue;
            }
            let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
            let (x, y) = (&a.counters, &b.counters);
            out.push(Rate {
                t_ms: b.t_ms,
                produce_bytes_s: per_s(x.produced_bytes, y.produced_bytes),
                fetch_bytes_s: per_s(x.fetched_bytes, y.fetched_bytes),
                puts_s: per_s(x.puts, y.puts),
                gets_s: per_s(x.gets, y.gets),
            });
        }
        out
    }
}

/// Samples `source` every [`EVERY`] until `stop`.
pub async fn run(source: Arc<dyn Source>, samples: Arc<Samples>, stop: CancellationToken) {
    let began = tokio::time::Instant::now();
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let mono_ms = began.elapsed().as_millis() as u64;
        samples.push(mono_ms, shoal_meta::clock::now_ms(), source.counters());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(produced: u64, puts: u64) -> Counters {
        Counters {
            produced_bytes: produced,
            fetched_bytes: produced / 2,
            puts,
            gets: 0,
        }
    }

    #[test]
    fn rates_divide_by_the_time_between_samples() {
        let s = Samples::with_capacity(10);
        assert!(s.rates().is_empty());
        s.push(0, 1_000, c(0, 0));
        s.push(1_000, 2_000, c(5_000, 4));
        s.push(3_000, 4_000, c(9_000, 8));
        let r = s.rates();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].t_ms, 2_000);
        assert_eq!(r[0].produce_bytes_s, 5_000.0);
        assert_eq!(r[0].fetch_bytes_s, 2_500.0);
        assert_eq!(r[0].puts_s, 4.0);
        assert_eq!(r[1].produce_bytes_s, 2_000.0, "4000 bytes over 2 s");
        assert_eq!(r[1].puts_s, 2.0);
    }

    #[test]
    fn the_ring_keeps_only_the_newest_samples() {
        let s = Samples::with_capacity(3);
        for i in 0..10u64 {
            s.push(i * 1000, i as i64, c(i * 100, i));
        }
        let r = s.rates();
        assert_eq!(r.len(), 2, "3 samples make 2 intervals");
        assert_eq!(r[0].t_ms, 8);
        assert_eq!(r[1].t_ms, 9);
        assert_eq!(r[1].produce_bytes_s, 100.0);
    }

    #[test]
    fn a_counter_going_backwards_reads_as_zero() {
        let s = Samples::with_capacity(4);
        s.push(0, 0, c(1_000, 5));
        s.push(1_000, 1, c(10, 1));
        assert_eq!(s.rates()[0].produce_bytes_s, 0.0);
        assert_eq!(s.rates()[0].puts_s, 0.0);
    }
}
