//! The quarantine: objects this agent found corrupt, so it stops trusting copies of them.
//!
//! The read path reports an object here when a segment of it fails its checks on a
//! fresh read (a batch CRC, no whole batch where the index says one starts, batches not
//! adding up to the index entry), and compaction when an input fails the same checks.
//! Reporting an object logs it once at `warn` (object key, topic, partition, the
//! offsets of the bad entry and what was wrong), counts it in
//! `shoal_corrupt_objects_total`, and sets the `shoal_quarantined_objects` gauge.
//!
//! A quarantined object is never served from a peer's cache (its chunks are read from
//! the object store, and are evicted from this agent's cache after every failed read,
//! so a repaired object is seen at the next read) and compaction leaves it out of its
//! passes, so one bad object can neither stall compaction nor be copied into a new
//! object. Consumers reading it get CORRUPT_MESSAGE (see [`crate::api::fetch`]) until
//! an operator moves the log start past it (`shoal partitions skip-corrupt`, or
//! DeleteRecords).
//!
//! The set lives in memory, per agent: a restarted agent finds the object again at its
//! first read. An entry goes when the metadata store no longer references the object
//! ([`Quarantine::prune`], run by every agent with the `jobs` role each compaction
//! interval). It is bounded: past [`MAX_ENTRIES`] objects the oldest report is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use shoal_meta::{MetaError, MetaStore};
use uuid::Uuid;

use crate::metrics::Metrics;

/// Objects remembered at most (each costs a few hundred bytes).
pub const MAX_ENTRIES: usize = 10_000;

/// Where an object was found corrupt, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub object_key: String,
    /// The topic's name, for the log line.
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The index entry whose segment failed: offsets `base_offset..end_offset`.
    pub base_offset: i64,
    pub end_offset: i64,
    pub what: String,
    /// Who found it: "fetch" or "compaction".
    pub found_by: &'static str,
}

struct Inner {
    /// Object key → the first corruption reported in it, with its report number.
    by_key: BTreeMap<String, (u64, Corruption)>,
    reports: u64,
}

/// The set. One per agent, shared by the read path and compaction.
pub struct Quarantine {
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

impl Quarantine {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Quarantine {
            inner: Mutex::new(Inner {
                by_key: BTreeMap::new(),
                reports: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a corrupt object. Returns whether it was new here (then it is logged and
    /// counted; a known object is only logged at debug).
    pub fn report(&self, c: Corruption) -> bool {
        let mut inner = self.lock();
        if inner.by_key.contains_key(&c.object_key) {
            tracing::debug!(key = %c.object_key, partition = c.partition, what = %c.what, "quarantined object still corrupt");
            return false;
        }
        tracing::warn!(
            key = %c.object_key,
            topic = %c.topic,
            topic_id = %c.topic_id,
            partition = c.partition,
            base_offset = c.base_offset,
            end_offset = c.end_offset,
            what = %c.what,
            found_by = c.found_by,
            "corrupt object quarantined: fetches of these offsets answer CORRUPT_MESSAGE and compaction skips the object until the log start moves past it (shoal partitions skip-corrupt)"
        );
        let counter = match c.found_by {
            "compaction" => &self.metrics.corrupt_objects_compaction,
            _ => &self.metrics.corrupt_objects_fetch,
        };
        Metrics::add(counter, 1);
        inner.reports += 1;
        let n = inner.reports;
        inner.by_key.insert(c.object_key.clone(), (n, c));
        if inner.by_key.len() > MAX_ENTRIES {
            let oldest = inner
                .by_key
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.by_key.remove(&k);
            }
        }
        self.metrics
            .quarantined_objects
            .store(inner.by_key.len() as u64, Relaxed);
        true
    }

    pub fn contains(&self, key: &str) -> bool {
        self.lock().by_key.contains_key(key)
    }

    /// Every quarantined object with its first reported corruption, by key.
    pub fn list(&self) -> Vec<Corruption> {
        self.lock()
            .by_key
            .values()
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets `key`; returns whether it was quarantined.
    pub fn release(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let was = inner.by_key.remove(key).is_some();
        self.metrics
            .quarantined_objects
            .store(inner.by_key.len() as u64, Relaxed);
        was
    }

    /// Releases every object the metadata store no longer references (the log start
    /// moved past it, its topic was deleted): nothing can read it any more. Returns how
    /// many were released.
    pub async fn prune(&self, meta: &dyn MetaStore) -> Result<usize, MetaError> {
        let keys: Vec<String> = self.lock().by_key.keys().cloned().collect();
        let mut released = 0;
        for key in keys {
            if meta.object_entries(&key).await?.is_empty() && self.release(&key) {
                tracing::info!(%key, "corrupt object no longer referenced; released from quarantine");
                released += 1;
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(key: &str, found_by: &'static str) -> Corruption {
        Corruption {
            object_key: key.into(),
            topic: "t".into(),
            topic_id: Uuid::nil(),
            partition: 1,
            base_offset: 10,
            end_offset: 20,
            what: "batch at offset 12 fails its CRC".into(),
            found_by,
        }
    }

    #[test]
    fn reports_count_once_per_object_and_set_the_gauge() {
        let metrics = Arc::new(Metrics::default());
        let q = Quarantine::new(metrics.clone());
        assert!(q.report(bad("a", "fetch")));
        assert!(!q.report(bad("a", "fetch")), "a known object is not new");
        assert!(q.report(bad("b", "compaction")));
        assert!(q.contains("a") && q.contains("b") && !q.contains("c"));
        assert_eq!(metrics.corrupt_objects_fetch.load(Relaxed), 1);
        assert_eq!(metrics.corrupt_objects_compaction.load(Relaxed), 1);
        assert_eq!(metrics.quarantined_objects.load(Relaxed), 2);
        let text = metrics.render();
        assert!(
            text.contains("shoal_corrupt_objects_total{found_by=\"fetch\"} 1"),
            "{text}"
        );
        assert!(text.contains("shoal_quarantined_objects 2"), "{text}");
        assert!(q.release("a"));
        assert!(!q.release("a"));
        assert_eq!(metrics.quarantined_objects.load(Relaxed), 1);
        assert_eq!(q.list(), vec![bad("b", "compaction")]);
    }

    #[test]
    fn the_set_is_bounded_and_drops_the_oldest_report() {
        let q = Quarantine::new(Arc::new(Metrics::default()));
        for i in 0..=MAX_ENTRIES {
            q.report(bad(&format!("k{i:06}"), "fetch"));
        }
        assert_eq!(q.len(), MAX_ENTRIES);
        assert!(!q.contains("k000000"), "the first report went");
        assert!(q.contains(&format!("k{MAX_ENTRIES:06}")));
    }
}
