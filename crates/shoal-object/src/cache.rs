//! A byte-bounded LRU of object chunks, shared by every fetch on an agent.
//!
//! Objects are immutable, so a cached chunk never goes stale; the only policy is size.
//! Chunks are aligned pieces of an object (`chunk_size` bytes, the last one shorter),
//! so concurrent readers of nearby ranges share one object-store GET. Loading is the
//! caller's job (the agent's read path deduplicates in-flight loads); this type only
//! stores and evicts. It never holds more than `capacity` bytes of chunk data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;

type Key = (String, u64);

struct Inner {
    entries: HashMap<Key, (Bytes, u64)>,
    recency: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct ChunkCache {
    inner: Mutex<Inner>,
    capacity: usize,
    chunk_size: u64,
}

impl ChunkCache {
    /// `capacity` bounds the bytes held; `chunk_size` is the alignment of chunks.
    pub fn new(capacity: usize, chunk_size: u64) -> Self {
        assert!(chunk_size > 0, "chunk size must be positive");
        ChunkCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                recency: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
            capacity,
            chunk_size,
        }
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Bytes currently held.
    pub fn size(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a chunk is cached (without marking it used).
    pub fn contains(&self, object: &str, chunk: u64) -> bool {
        self.lock()
            .entries
            .contains_key(&(object.to_string(), chunk))
    }

    /// Returns a cached chunk and marks it recently used.
    pub fn get(&self, object: &str, chunk: u64) -> Option<Bytes> {
        let mut inner = self.lock();
        let key = (object.to_string(), chunk);
        inner.tick += 1;
        let tick = inner.tick;
        let (bytes, old) = {
            let entry = inner.entries.get_mut(&key)?;
            let old = entry.1;
            entry.1 = tick;
            (entry.0.clone(), old)
        };
        inner.recency.remove(&old);
        inner.recency.insert(tick, key);
        Some(bytes)
    }

    /// Drops every cached chunk of `object` (a corrupt object, so the next read GETs
    /// fresh bytes); returns how many were dropped.
    pub fn evict_object(&self, object: &str) -> usize {
        let mut inner = self.lock();
        let victims: Vec<(Key, u64)> = inner
            .entries
            .iter()
            .filter(|((o, _), _)| o == object)
            .map(|(k, (_, tick))| (k.clone(), *tick))
            .collect();
        for (key, tick) in &victims {
            if let Some((b, _)) = inner.entries.remove(key) {
                inner.bytes -= b.len();
            }
            inner.recency.remove(tick);
        }
        victims.len()
    }

    /// Stores a chunk, evicting the least recently used ones to stay within capacity.
    /// A chunk larger than the whole capacity is not stored.
    pub fn insert(&self, object: &str, chunk: u64, data: Bytes) {
        if data.len() > self.capacity {
            return;
        }
        let mut inner = self.lock();
        let key = (object.to_string(), chunk);
        inner.tick += 1;
        let tick = inner.tick;
        let len = data.len();
        if let Some((old, old_tick)) = inner.entries.insert(key.clone(), (data, tick)) {
            inner.bytes -= old.len();
            inner.recency.remove(&old_tick);
        }
        inner.recency.insert(tick, key);
        inner.bytes += len;
        while inner.bytes > self.capacity {
            let Some((_, victim)) = inner.recency.pop_first() else {
                break;
            };
            if let Some((b, _)) = inner.entries.remove(&victim) {
                inner.bytes -= b.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let c = ChunkCache::new(10, 4);
        c.insert("a", 0, Bytes::from_static(b"1234"));
        c.insert("a", 1, Bytes::from_static(b"5678"));
        assert!(c.get("a", 0).is_some()); // a/0 is now the most recent
        c.insert("b", 0, Bytes::from_static(b"xxxx"));
        assert_eq!(c.size(), 8);
        assert!(c.get("a", 1).is_none(), "least recently used goes first");
        assert_eq!(c.get("a", 0).unwrap(), Bytes::from_static(b"1234"));
        assert!(c.get("b", 0).is_some());
        assert!(c.contains("a", 0) && !c.contains("a", 1));
    }

    #[test]
    fn evicting_an_object_drops_all_its_chunks_and_only_them() {
        let c = ChunkCache::new(100, 4);
        c.insert("bad", 0, Bytes::from_static(b"1234"));
        c.insert("bad", 1, Bytes::from_static(b"56"));
        c.insert("good", 0, Bytes::from_static(b"abcd"));
        assert_eq!(c.evict_object("bad"), 2);
        assert!(c.get("bad", 0).is_none() && c.get("bad", 1).is_none());
        assert_eq!(c.get("good", 0).unwrap(), Bytes::from_static(b"abcd"));
        assert_eq!(c.size(), 4);
        assert_eq!(c.evict_object("bad"), 0);
        // Recency stays consistent: filling the cache evicts without panicking.
        for i in 0..30 {
            c.insert("x", i, Bytes::from_static(b"wxyz"));
        }
        assert!(c.size() <= 100);
    }

    #[test]
    fn refuses_oversize_and_replaces_in_place() {
        let c = ChunkCache::new(4, 4);
        c.insert("a", 0, Bytes::from_static(b"123456"));
        assert_eq!(c.size(), 0);
        c.insert("a", 0, Bytes::from_static(b"12"));
        c.insert("a", 0, Bytes::from_static(b"123"));
        assert_eq!(c.size(), 3);
    }
}
