//! Which partitions changed, for waking long-polling fetches.
//!
//! A fetch that found nothing new waits. It should wake when one of *its* partitions
//! gets new data (a commit here, or by another agent as reported by the metadata
//! store's watch), and not for every commit of every partition: each wakeup re-reads
//! the fetch's partition state from the metadata store, which in a cluster is a network
//! round trip per partition.
//!
//! [`Commits`] numbers every change report and remembers, per partition, the number of
//! the last report that named it. A fetch notes the current number before it reads
//! partition state; when woken it asks [`Commits::changed_since`] whether any of its
//! partitions was named after that number, and only then reads again. A report that
//! may have missed changes (the store's watch reconnected, or this agent fell behind
//! its reports) counts as naming every partition.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;
use uuid::Uuid;

/// Past this many remembered partitions the memory is dropped and replaced by one
/// "everything changed" mark (so deleted topics cannot make it grow without bound).
const MAX_REMEMBERED: usize = 100_000;

pub struct Commits {
    /// The number of the latest report; fetches wait on it.
    signal: watch::Sender<u64>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    /// Numbers are handed out under the lock, so a report's partitions are recorded
    /// before any fetch can see its number.
    last: u64,
    /// Partition → number of the last report that named it.
    named: HashMap<(Uuid, i32), u64>,
    /// Number of the last report that named every partition.
    everything: u64,
}

impl Default for Commits {
    fn default() -> Self {
        Commits {
            signal: watch::channel(0).0,
            log: Mutex::new(Log::default()),
        }
    }
}

impl Commits {
    /// Reports that these partitions' state changed.
    pub fn changed(&self, partitions: impl IntoIterator<Item = (Uuid, i32)>) {
        let n = {
            let mut log = self.lock();
            log.last += 1;
            let n = log.last;
            for p in partitions {
                log.named.insert(p, n);
            }
            if log.named.len() > MAX_REMEMBERED {
                log.named.clear();
                log.everything = n;
            }
            n
        };
        self.signal.send_modify(|v| *v = (*v).max(n));
    }

    /// Reports that any partition may have changed.
    pub fn everything_changed(&self) {
        let n = {
            let mut log = self.lock();
            log.last += 1;
            log.everything = log.last;
            log.last
        };
        self.signal.send_modify(|v| *v = (*v).max(n));
    }

    /// A receiver whose value is the number of the latest report; it changes with
    /// every report. Note its value before reading partition state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Whether a report after number `seen` named any of `partitions`.
    pub fn changed_since(&self, seen: u64, partitions: &[(Uuid, i32)]) -> bool {
        let log = self.lock();
        log.everything > seen
            || partitions
                .iter()
                .any(|p| log.named.get(p).is_some_and(|&n| n > seen))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_partitions_count_as_changed() {
        let c = Commits::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let rx = c.subscribe();
        let seen = *rx.borrow();
        assert!(!c.changed_since(seen, &[(a, 0)]));
        c.changed([(a, 1), (b, 0)]);
        assert!(rx.has_changed().unwrap());
        assert!(!c.changed_since(seen, &[(a, 0)]), "another partition of a");
        assert!(c.changed_since(seen, &[(a, 0), (a, 1)]));
        assert!(c.changed_since(seen, &[(b, 0)]));
        let seen = *rx.borrow();
        assert!(
            !c.changed_since(seen, &[(a, 1), (b, 0)]),
            "nothing new since"
        );
        c.everything_changed();
        assert!(c.changed_since(seen, &[(Uuid::from_u128(9), 3)]));
    }

    #[test]
    fn memory_is_bounded() {
        let c = Commits::default();
        let seen = *c.subscribe().borrow();
        for i in 0..(MAX_REMEMBERED as u128 + 10) {
            c.changed([(Uuid::from_u128(i), 0)]);
        }
        assert!(c.lock().named.len() <= MAX_REMEMBERED);
        assert!(c.changed_since(seen, &[(Uuid::from_u128(u128::MAX), 0)]));
    }
}
