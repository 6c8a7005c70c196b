//! Background jobs: retention and garbage collection of objects.
//!
//! - **Retention** (every `retention_check_interval`): for each partition, index entries
//!   whose newest record is older than the topic's `retention.ms`, and the oldest
//!   entries whose removal still leaves at least `retention.bytes` (Kafka's rule, with
//!   index entries in the role of segments), are dropped by moving the log start past them
//!   ([`MetaStore::advance_log_start`]). DeleteRecords moves it the same way on request.
//! - **GC** (same interval): objects the index no longer references (retention, deleted
//!   topics) are first marked, and deleted from the object store once this GC agent has
//!   seen them marked for `gc_grace` on its own monotonic clock (a new GC agent starts
//!   watching afresh), so fetches that looked the index up before the change finish
//!   their reads, whatever any agent's wall clock says. Objects that were never
//!   committed (a flush whose commit failed or whose agent died) are deleted once GC
//!   has watched them, on its own monotonic clock across passes, for `orphan_grace`,
//!   far longer than any flush may take from PUT to commit (`flush_timeout`). No writer's clock is involved (object keys carry the writer's
//!   time, but it is not used). Before deleting one, GC fences it in the metadata store
//!   ([`MetaStore::fence_object`]): its pending record (or, if the writer never wrote
//!   one, an empty slot) becomes a tombstone in one atomic step that fails if the object
//!   was committed; a commit that comes later finds the tombstone and fails. So an
//!   object is either committed or deleted, never both. Tombstones are dropped once
//!   watched for another `orphan_grace`.
//! - **Time-based retention** goes by an entry's newest timestamp, as Kafka's does by a
//!   segment's. A record stamped in the future holds back the entries after it, so
//!   produce refuses timestamps more than `message.timestamp.after.max.ms` ahead of the
//!   broker (default one hour, as in Kafka 4): a producer with a wrong clock can delay
//!   retention by that much at most, never freeze it.
//!
//! - **Metadata history** (same interval, unless `metadata_history` is zero): the
//!   metadata store's history of old versions is compacted to what is older than
//!   `metadata_history` ([`MetaStore::compact_history`]; etcd keeps every revision
//!   until compacted, and stops accepting writes when its database reaches its quota).
//!
//! Retention applies to topics whose `cleanup.policy` includes `delete` (compact-only
//! topics are left to the cleaner, [`crate::cleaner`]).
//!
//! Each kind of pass (retention + GC + history, compaction, cleaning) is claimed through the metadata store
//! before it runs ([`MetaStore::claim_job`]), so with several agents on one store only
//! the holder of the claim works; a claim not renewed (its agent died) expires after
//! three intervals and another agent takes over. Compaction itself is in
//! [`crate::compaction`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use shoal_meta::{IndexEntry, MetaError, MetaStore, TopicInfo};

use crate::metrics::Metrics;
use crate::topics::effective;
use crate::txn::now_ms;
use crate::Shared;

/// Claims `job` for this agent for three `interval`s (at least 30 s). The holder is the
/// agent's node id, so an agent restarted after a crash takes its claim back at once.
/// Errors count as not holding it.
pub(crate) async fn claim(shared: &Shared, job: &str, interval: Duration) -> bool {
    let ttl = (interval * 3).max(Duration::from_secs(30)).as_millis() as i64;
    let holder = format!("node-{}", shared.config.node_id);
    match shared.meta.claim_job(job, &holder, now_ms(), ttl).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(job, error = %e, "could not claim a background job");
            false
        }
    }
}

/// Objects deleted per GC pass at most.
const GC_BATCH: usize = 1000;

/// Where a partition's log start must move for its retention settings, if anywhere.
/// `entries` are the partition's index entries from the log start, in offset order.
pub fn retention_start(
    entries: &[IndexEntry],
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> Option<i64> {
    let mut start = None;
    let mut kept: u64 = entries.iter().map(|e| e.data_len).sum();
    for e in entries {
        let too_old = retention_ms >= 0 && e.max_timestamp < now_ms.saturating_sub(retention_ms);
        let too_big = retention_bytes >= 0 && kept - e.data_len >= retention_bytes as u64;
        if !too_old && !too_big {
            break;
        }
        kept -= e.data_len;
        start = Some(e.end_offset);
    }
    start
}

fn config_i64(topic: &TopicInfo, key: &str) -> i64 {
    effective(&topic.configs, key).parse().unwrap_or(-1)
}

/// One retention pass over every partition of every topic.
pub async fn retention_pass(shared: &Shared) -> Result<u64, MetaError> {
    let mut moved = 0;
    for topic in shared.meta.list_topics().await? {
        let (ms, bytes) = (
            config_i64(&topic, "retention.ms"),
            config_i64(&topic, "retention.bytes"),
        );
        // A compact-only topic keeps its data until the cleaner drops it (Kafka's rule).
        if (ms < 0 && bytes < 0) || !crate::cleaner::deletes(&topic) {
            continue;
        }
        for p in 0..topic.partitions {
            let offsets = shared.meta.partition_offsets(topic.id, p).await?;
            let entries =
                crate::cleaner::all_entries(&*shared.meta, topic.id, p, offsets.log_start).await?;
            if let Some(start) = retention_start(&entries, now_ms(), ms, bytes) {
                if start > offsets.log_start {
                    let now_start = shared.meta.advance_log_start(topic.id, p, start).await?;
                    tracing::info!(topic = %topic.name, partition = p, log_start = now_start,
                        "retention moved the log start");
                    moved += 1;
                }
            }
        }
    }
    Ok(moved)
}

/// What GC has seen across passes, on its own monotonic clock: when it first saw each
/// object that was never committed (by key and pending instance), which listed objects
/// turned out committed (not asked about again), and when it first saw each committed
/// object marked unreferenced.
#[derive(Default)]
pub struct OrphanWatch {
    first_seen: HashMap<(String, Option<u64>), Instant>,
    committed: HashSet<String>,
    /// When this GC first saw each committed object marked unreferenced.
    unreferenced: HashMap<String, Instant>,
}

impl OrphanWatch {
    /// Notes `key` (pending instance `instance`) as seen now, into `next`; whether it was
    /// first seen at least `grace` ago.
    fn due(
        &self,
        next: &mut HashMap<(String, Option<u64>), Instant>,
        key: &str,
        instance: Option<u64>,
        now: Instant,
        grace: Duration,
    ) -> bool {
        let id = (key.to_string(), instance);
        let first = self.first_seen.get(&id).copied().unwrap_or(now);
        next.insert(id, first);
        now.duration_since(first) >= grace
    }
}

/// One GC pass: deletes unreferenced objects past the grace period and orphans past
/// theirs (see the module docs). Returns how many objects were deleted.
pub async fn gc_pass(
    meta: &dyn MetaStore,
    store: &Arc<dyn ObjectStore>,
    gc_grace: Duration,
    orphan_grace: Duration,
    watch: &mut OrphanWatch,
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    let seen_at = Instant::now();
    // Every marked object (the marks' wall-clock times only order them): each is due
    // once this GC has seen it unreferenced for `gc_grace` on its own monotonic clock.
    let marked = meta
        .unreferenced_objects(now_ms(), i64::MAX, GC_BATCH)
        .await?;
    let mut unreferenced = HashMap::with_capacity(marked.len());
    for key in marked {
        let first = watch.unreferenced.get(&key).copied().unwrap_or(seen_at);
        if seen_at.duration_since(first) < gc_grace {
            unreferenced.insert(key, first);
            continue;
        }
        delete(store, &key).await?;
        meta.forget_object(&key).await?;
        watch.committed.remove(&key);
        deleted += 1;
    }
    watch.unreferenced = unreferenced;
    let mut next = HashMap::new();
    let mut pending_keys = HashSet::new();
    let mut acted = 0;
    for p in meta.pending_objects(GC_BATCH).await? {
        pending_keys.insert(p.key.clone());
        if !watch.due(&mut next, &p.key, Some(p.instance), seen_at, orphan_grace)
            || acted >= GC_BATCH
        {
            continue;
        }
        acted += 1;
        if p.fenced {
            // Deleted when fenced; the tombstone has outlived any late writer.
            delete(store, &p.key).await?;
            meta.forget_object(&p.key).await?;
        } else if meta.fence_object(&p.key, Some(p.instance)).await? {
            tracing::info!(key = %p.key, "deleting an object whose commit never happened");
            delete(store, &p.key).await?;
            deleted += 1;
        }
    }
    let mut listing = store
        .list(Some(&Path::from("data")))
        .chain(store.list(Some(&Path::from("compacted"))))
        .chain(store.list(Some(&Path::from("cleaned"))));
    while let Some(listed) = listing.next().await {
        let key = listed?.location.to_string();
        if pending_keys.contains(&key) || watch.committed.contains(&key) {
            continue;
        }
        if !watch.due(&mut next, &key, None, seen_at, orphan_grace) || acted >= GC_BATCH {
            continue;
        }
        acted += 1;
        if meta.object_known(&key).await? {
            next.remove(&(key.clone(), None));
            watch.committed.insert(key);
            continue;
        }
        // No pending record either (the writer died before writing it): fence the slot.
        if meta.fence_object(&key, None).await? {
            tracing::info!(key = %key, "deleting an object whose commit never happened");
            delete(store, &key).await?;
            deleted += 1;
        }
    }
    watch.first_seen = next;
    Ok(deleted)
}

async fn delete(store: &Arc<dyn ObjectStore>, key: &str) -> anyhow::Result<()> {
    match store.delete(&Path::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("delete object {key}: {e}")),
    }
}

/// Runs compaction passes every `compaction_interval` until `stop`; a pass that merged
/// something is followed at once by another.
pub async fn run_compaction(
    shared: Arc<Shared>,
    store: Arc<dyn ObjectStore>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let (interval, target) = (
        shared.config.compaction_interval,
        shared.config.compaction_target_bytes,
    );
    loop {
        // Every jobs agent keeps its own quarantine; objects nothing references leave it.
        if let Err(e) = shared.reader.quarantine().prune(&*shared.meta).await {
            tracing::debug!(error = %e, "quarantine prune failed; retrying next interval");
        }
        if !claim(&shared, "compaction", interval).await {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        let merged = match crate::compaction::compact_once(&shared, &*store, target).await {
            Ok(c) if c.objects_in > 0 => {
                tracing::info!(
                    objects = c.objects_in,
                    bytes_in = c.bytes_in,
                    bytes_out = c.bytes_out,
                    "compaction merged objects"
                );
                Metrics::add(&shared.metrics.compacted_objects, c.objects_in as u64);
                Metrics::add(&shared.metrics.compacted_bytes, c.bytes_in);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "compaction pass failed; retrying next interval");
                false
            }
        };
        if merged && !stop.is_cancelled() {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Runs retention and GC every `interval` until `stop`.
pub async fn run(
    shared: Arc<Shared>,
    store: Arc<dyn ObjectStore>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &shared.config;
    let mut watch = OrphanWatch::default();
    let mut every = tokio::time::interval(cfg.retention_check_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        if !claim(&shared, "retention-gc", cfg.retention_check_interval).await {
            continue;
        }
        if let Err(e) = retention_pass(&shared).await {
            tracing::warn!(error = %e, "retention pass failed; retrying next interval");
        }
        match gc_pass(
            &*shared.meta,
            &store,
            cfg.gc_grace,
            cfg.orphan_grace,
            &mut watch,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(objects = n, "GC deleted objects");
                Metrics::add(&shared.metrics.gc_deleted_objects, n);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "GC pass failed; retrying next interval")
            }
        }
        if !cfg.metadata_history.is_zero() {
            let keep = cfg.metadata_history.as_millis() as i64;
            match shared.meta.compact_history(now_ms(), keep).await {
                Ok(Some(revision)) => tracing::info!(
                    revision,
                    "compacted the metadata store's history (older revisions discarded)"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "metadata history compaction failed; retrying next interval")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: i64, end: i64, len: u64, max_ts: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            end_offset: end,
            object_key: "k".into(),
            object_size: 1 << 20,
            data_offset: 0,
            data_len: len,
            min_timestamp: max_ts - 10,
            max_timestamp: max_ts,
        }
    }

    #[test]
    fn retention_by_time_and_size() {
        let e = [
            entry(0, 10, 100, 1_000),
            entry(10, 20, 100, 2_000),
            entry(20, 30, 100, 3_000),
        ];
        // Nothing configured, or nothing due.
        assert_eq!(retention_start(&e, 10_000, -1, -1), None);
        assert_eq!(retention_start(&e, 3_500, 3_000, -1), None);
        // Entries whose newest record is older than now - retention.ms.
        assert_eq!(retention_start(&e, 4_500, 3_000, -1), Some(10));
        assert_eq!(retention_start(&e, 99_000, 3_000, -1), Some(30));
        // Oldest entries while at least retention.bytes would remain without them.
        assert_eq!(retention_start(&e, 0, -1, 250), None);
        assert_eq!(retention_start(&e, 0, -1, 200), Some(10));
        assert_eq!(retention_start(&e, 0, -1, 101), Some(10));
        assert_eq!(retention_start(&e, 0, -1, 100), Some(20));
        assert_eq!(retention_start(&e, 0, -1, 0), Some(30));
        // Stops at the first entry both rules keep.
        assert_eq!(retention_start(&e, 4_500, 3_000, 1_000), Some(10));
        assert_eq!(retention_start(&e, 0, 1_000_000, 200), Some(10));
        assert_eq!(retention_start(&[], 1, 0, 0), None);
    }

    /// An unreferenced object marked by a GC agent whose wall clock ran an hour behind
    /// (or by one that has since lost the job): the GC agent now holding the job still
    /// keeps it for the whole `gc_grace` on its own monotonic clock before deleting it.
    #[tokio::test(start_paused = true)]
    async fn gc_grace_runs_on_the_gc_agents_monotonic_clock() {
        use object_store::{memory::InMemory, PutPayload};
        use shoal_meta::{ObjectRef, SegmentAppend, SqliteStore, TopicSpec};
        let meta = SqliteStore::in_memory().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let t = meta
            .create_topic(TopicSpec {
                name: "t".into(),
                partitions: 1,
                configs: Default::default(),
            })
            .await
            .unwrap();
        let key = "data/0000000000001-gc.shoal";
        store
            .put(&Path::from(key), PutPayload::from(vec![0u8; 10]))
            .await
            .unwrap();
        meta.add_pending_object(key).await.unwrap();
        let seg = SegmentAppend {
            topic_id: t.id,
            partition: 0,
            data_offset: 0,
            data_len: 10,
            offset_span: 1,
            min_timestamp: 1,
            max_timestamp: 1,
            producer: None,
        };
        let object = ObjectRef {
            key: key.into(),
            size: 10,
        };
        meta.commit_flush(&object, &[seg]).await.unwrap();
        meta.advance_log_start(t.id, 0, 1).await.unwrap();
        // The earlier GC agent's mark, an hour behind this one's wall clock.
        meta.unreferenced_objects(now_ms() - 3_600_000, i64::MIN, 10)
            .await
            .unwrap();
        let grace = Duration::from_secs(60);
        let orphans = Duration::from_secs(3600);
        let mut watch = OrphanWatch::default();
        let exists =
            |store: Arc<dyn ObjectStore>| async move { store.head(&Path::from(key)).await.is_ok() };
        assert_eq!(
            gc_pass(&meta, &store, grace, orphans, &mut watch)
                .await
                .unwrap(),
            0
        );
        assert!(
            exists(store.clone()).await,
            "kept: this GC has not watched it yet"
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            gc_pass(&meta, &store, grace, orphans, &mut watch)
                .await
                .unwrap(),
            0
        );
        assert!(exists(store.clone()).await, "kept for the whole grace");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            gc_pass(&meta, &store, grace, orphans, &mut watch)
                .await
                .unwrap(),
            1
        );
        assert!(
            !exists(store.clone()).await,
            "deleted once the grace has passed"
        );
        assert!(!meta.object_known(key).await.unwrap());
    }
}
