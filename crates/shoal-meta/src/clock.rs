//! One wall clock, read in one place, and injectable where tests need control.
//!
//! Wall-clock time in Shoal is for *timestamps* (record and commit times, transaction
//! start times for their timeouts, producer last-write times): values compared with
//! other wall-clock values, never used to decide which of two agents holds something
//! (leases and claims do that, see the registry). Durations inside one process (flush
//! timers, lease deadlines, sessions) use `tokio::time::Instant`, so tests run them on
//! tokio's paused clock.
//!
//! [`now_ms`] is the system clock, the only place it is read. Code whose timing tests
//! must drive (transaction timeouts) reads a [`Clock`] carried in its configuration:
//! [`SystemClock`] in production, [`ManualClock`] in tests.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch by the system's wall clock (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// A clock reading the system's time now (then standing still).
    pub fn starting_now() -> ManualClock {
        ManualClock::new(now_ms())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Sets the clock to `ms` (backwards too: clocks are stepped in real life).
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
        c.set(500);
        assert_eq!(c.now_ms(), 500);
        assert!(
            SystemClock.now_ms() > 1_600_000_000_000,
            "the system clock is past 2020"
        );
    }
}
