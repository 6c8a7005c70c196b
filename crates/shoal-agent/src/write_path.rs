//! The write path: buffer produce data from every connection, flush it as one object,
//! commit offsets in one metadata transaction, and only then acknowledge.
//!
//! Lifecycle of a flush:
//! 1. Produce handlers [`WritePath::append`] validated batches under one lock, so all
//!    partitions of a request land in the same flush, in arrival order. Each append
//!    takes memory budget first (backpressure when flushes fall behind).
//! 2. The flusher task takes the buffer when it reaches `batch_max_bytes` or is
//!    `batch_timeout` old, lays it out with [`ObjectBuilder`] and starts the PUT. An
//!    append that would take a non-empty buffer past `batch_max_bytes` first waits for
//!    the flusher to take it, so an object holds at most `batch_max_bytes` of batches,
//!    or one request's if that alone is more. (The connection waits meanwhile, so its
//!    requests stay in order.)
//! 3. The committer task awaits PUTs *in flush order* and commits each object's
//!    segments with [`MetaStore::commit_flush`], which assigns the offsets. Several PUTs
//!    may be in flight, but commits are strictly ordered, so a connection's requests get
//!    increasing offsets per partition.
//! 4. Waiters get their base offsets; the object's bytes go into the chunk cache so tail
//!    reads need no GET; long-polling fetches are woken.
//!
//! Batches that carry a producer id (idempotent or transactional data, transaction
//! markers) become commit segments of their own, so the metadata commit can check each
//! one's sequence and epoch; runs of other batches of a partition share one segment.
//! A refused or duplicate batch's bytes stay in the object, unreferenced by the index.
//!
//! Nothing is acknowledged before both the PUT and the commit succeeded. A failed PUT or
//! commit fails that flush's waiters with a retriable error; the object of a failed
//! commit is left for GC.
//!
//! Alongside the PUT (concurrently, so it adds no round trip) the object gets a pending
//! record in the metadata store ([`MetaStore::add_pending_object`]); the commit consumes
//! it atomically and fails if GC fenced it meanwhile, so a commit never references an
//! object GC may delete. PUT and commit are bounded by `flush_timeout` from the moment
//! the PUT starts, and by the earliest deadline of the produce requests in the flush
//! ([`request_deadline`], from each request's `timeout_ms`): past it the waiters get
//! REQUEST_TIMED_OUT and the commit is never attempted, so no PUT commits after its
//! producers were told it failed or gave up on it. A commit whose
//! outcome stayed unknown after the store's read-back also answers REQUEST_TIMED_OUT
//! (the producer retries; idempotence makes the retry a duplicate, not a second copy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use shoal_meta::{MetaError, MetaStore, ObjectRef, ProducerBatch, SegmentAppend, SegmentOutcome};
use shoal_object::{format::BatchSlot, ChunkCache, ObjectBuilder};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::commits::Commits;
use crate::errors::WriteError;
use crate::metrics::Metrics;
use crate::AgentConfig;

/// One validated batch ready to buffer.
pub struct BatchToWrite {
    pub bytes: Bytes,
    pub offset_span: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Producer fields for the commit's sequence checks, when the batch has a producer id.
    pub producer: Option<ProducerBatch>,
}

/// One partition's batches from one produce request.
pub struct PartitionAppend {
    pub topic_id: Uuid,
    pub partition: i32,
    pub batches: Vec<BatchToWrite>,
    /// The broker time stamped into LogAppendTime batches, or -1.
    pub log_append_time: i64,
}

/// What the producer is told once the flush is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: i64,
    pub log_start_offset: i64,
    pub log_append_time: i64,
}

pub type AckReceiver = oneshot::Receiver<Result<AppendAck, WriteError>>;

struct Waiter {
    /// This request-partition's batches: indexes into the flush's batch list.
    batches: std::ops::Range<usize>,
    log_append_time: i64,
    tx: oneshot::Sender<Result<AppendAck, WriteError>>,
}

/// What the commit needs to know of one buffered batch.
struct PendingBatch {
    slot: BatchSlot,
    len: u64,
    offset_span: u64,
    min_timestamp: i64,
    max_timestamp: i64,
    producer: Option<ProducerBatch>,
}

#[derive(Default)]
struct Pending {
    builder: ObjectBuilder,
    batches: Vec<PendingBatch>,
    waiters: Vec<Waiter>,
    first_at: Option<Instant>,
    /// The earliest deadline of the requests buffered here (see [`request_deadline`]).
    deadline: Option<tokio::time::Instant>,
    permits: Vec<OwnedSemaphorePermit>,
    /// An append is waiting because this buffer is too full to take it: flush now.
    full: bool,
}

struct FlushJob {
    key: String,
    size: u64,
    segments: Vec<SegmentAppend>,
    /// For each buffered batch: its commit segment and the offsets before it there.
    placement: Vec<(usize, u64)>,
    waiters: Vec<Waiter>,
    object: Bytes,
    /// The PUT and the pending record, concurrently.
    put: tokio::task::JoinHandle<Result<(), String>>,
    /// Past this the flush is not committed any more.
    deadline: tokio::time::Instant,
    _permits: Vec<OwnedSemaphorePermit>,
}

struct Inner {
    pending: Mutex<Pending>,
    kick: Notify,
    /// Signalled each time the flusher takes the buffer (appends waiting for room).
    taken: Notify,
    budget: Arc<Semaphore>,
    budget_total: usize,
    batch_max_bytes: usize,
    batch_timeout: Duration,
    stopping: AtomicBool,
}

/// The handle produce handlers use. Cheap to clone.
#[derive(Clone)]
pub struct WritePath {
    inner: Arc<Inner>,
}

impl WritePath {
    /// Creates the write path and returns the future that runs its flusher and committer.
    /// Once `drain` is cancelled (shutdown began) buffered data is flushed at once instead
    /// of waiting for the timer, so in-flight produces are answered while connections
    /// drain; the future ends after `stop` is cancelled and everything is flushed.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &AgentConfig,
        meta: Arc<dyn MetaStore>,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
        cache: Arc<ChunkCache>,
        committed: Arc<Commits>,
        drain: CancellationToken,
        stop: CancellationToken,
    ) -> (
        WritePath,
        impl std::future::Future<Output = anyhow::Result<()>>,
    ) {
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending::default()),
            kick: Notify::new(),
            taken: Notify::new(),
            budget: Arc::new(Semaphore::new(config.max_buffered_bytes)),
            budget_total: config.max_buffered_bytes,
            batch_max_bytes: config.batch_max_bytes,
            batch_timeout: config.batch_timeout,
            stopping: AtomicBool::new(false),
        });
        let (jobs_tx, jobs_rx) = mpsc::channel::<FlushJob>(4);
        let flusher = flusher(
            inner.clone(),
            store,
            meta.clone(),
            config.flush_timeout,
            metrics.clone(),
            jobs_tx,
            drain,
            stop,
        );
        let committer = committer(jobs_rx, meta, metrics, cache, committed);
        let run = async move {
            let (a, b) = tokio::join!(flusher, committer);
            a.and(b)
        };
        (WritePath { inner }, run)
    }

    /// Buffers the partitions of one produce request into the same flush and returns one
    /// receiver per partition, in order. Waits for memory budget first: the batches'
    /// bytes, or `pinned` if more (the request frame the batches are slices of stays in
    /// memory as long as they do, until the flush is laid out).
    ///
    /// `deadline` (from [`request_deadline`]) bounds the request: waiting for budget or
    /// room past it answers REQUEST_TIMED_OUT with nothing buffered, and a flush holding
    /// the request is not committed once it has passed.
    pub async fn append(
        &self,
        parts: Vec<PartitionAppend>,
        pinned: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<AckReceiver>, WriteError> {
        match deadline {
            None => self.append_now(parts, pinned, None).await,
            Some(d) => tokio::time::timeout_at(d, self.append_now(parts, pinned, deadline))
                .await
                .unwrap_or_else(|_| {
                    Err(WriteError::TimedOut(
                        "the produce request's timeout passed while it waited for room \
                         in the write buffer (flushes are falling behind)"
                            .into(),
                    ))
                }),
        }
    }

    async fn append_now(
        &self,
        parts: Vec<PartitionAppend>,
        pinned: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<AckReceiver>, WriteError> {
        let bytes: usize = parts
            .iter()
            .flat_map(|p| p.batches.iter())
            .map(|b| b.bytes.len())
            .sum();
        let want = bytes.max(pinned).clamp(1, self.inner.budget_total) as u32;
        let permit = self
            .inner
            .budget
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        let mut receivers = Vec::with_capacity(parts.len());
        {
            let mut p = loop {
                let taken = self.inner.taken.notified();
                tokio::pin!(taken);
                {
                    let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                    // Checked under the lock the flusher takes to stop, so no append is
                    // stranded.
                    if self.inner.stopping.load(Ordering::Acquire) {
                        return Err(WriteError::ShuttingDown);
                    }
                    let len = p.builder.data_len() as usize;
                    if len == 0 || len + bytes <= self.inner.batch_max_bytes {
                        break p;
                    }
                    // Registered before the lock goes, so the flusher's take is not missed.
                    taken.as_mut().enable();
                    p.full = true;
                }
                self.inner.kick.notify_one();
                taken.await;
            };
            for part in parts {
                let (tx, rx) = oneshot::channel();
                let first = p.batches.len();
                for b in part.batches {
                    let len = b.bytes.len() as u64;
                    let slot = p.builder.add(
                        part.topic_id,
                        part.partition,
                        b.bytes,
                        b.offset_span,
                        b.min_timestamp,
                        b.max_timestamp,
                    );
                    p.batches.push(PendingBatch {
                        slot,
                        len,
                        offset_span: b.offset_span,
                        min_timestamp: b.min_timestamp,
                        max_timestamp: b.max_timestamp,
                        producer: b.producer,
                    });
                }
                let end = p.batches.len();
                if end > first {
                    p.waiters.push(Waiter {
                        batches: first..end,
                        log_append_time: part.log_append_time,
                        tx,
                    });
                }
                receivers.push(rx);
            }
            p.first_at.get_or_insert_with(Instant::now);
            if let Some(d) = deadline {
                p.deadline = Some(p.deadline.map_or(d, |e| e.min(d)));
            }
            p.permits.push(permit);
        }
        self.inner.kick.notify_one();
        Ok(receivers)
    }
}

const DEADLINE: &str =
    "the flush ran past its deadline (--flush-timeout, or a produce request's timeout_ms)";

/// The deadline for a produce request that arrived now with the client's `timeout_ms`
/// (librdkafka and the Java client send their `request.timeout.ms`), or `None` for no
/// bound (`timeout_ms` ≤ 0). A flush holding the request is not committed past it, so
/// a batch is never committed after its client gave up on the request and may have sent
/// it again under a new producer epoch. It falls short of the client's own timeout by a
/// quarter (at most 5 s), which covers the commit call still running at the deadline and
/// the answer's way back; the clock starts when the agent reads the request.
pub fn request_deadline(timeout_ms: i32) -> Option<tokio::time::Instant> {
    if timeout_ms <= 0 {
        return None;
    }
    let timeout = Duration::from_millis(timeout_ms as u64);
    let margin = (timeout / 4).min(Duration::from_secs(5));
    Some(tokio::time::Instant::now() + (timeout - margin))
}

fn object_key() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("data/{ms:013}-{}.shoal", Uuid::new_v4().simple())
}

/// Splits each partition's data into commit segments: every batch with a producer id on
/// its own, runs of other batches together. Returns the segments and, for each batch,
/// its segment and the offsets that precede it within that segment.
fn commit_segments(
    infos: &[shoal_object::format::SegmentInfo],
    batches: &[PendingBatch],
) -> (Vec<SegmentAppend>, Vec<(usize, u64)>) {
    let mut by_segment: Vec<Vec<usize>> = vec![Vec::new(); infos.len()];
    for (i, b) in batches.iter().enumerate() {
        by_segment[b.slot.segment].push(i);
    }
    let mut segments: Vec<SegmentAppend> = Vec::new();
    let mut placement = vec![(0usize, 0u64); batches.len()];
    for (info, members) in infos.iter().zip(by_segment) {
        let mut at = info.data_offset;
        let mut open_run: Option<usize> = None;
        for i in members {
            let b = &batches[i];
            let joins = b.producer.is_none() && open_run.is_some();
            if joins {
                let run = open_run.unwrap_or_default();
                let seg = &mut segments[run];
                placement[i] = (run, seg.offset_span);
                seg.data_len += b.len;
                seg.offset_span += b.offset_span;
                seg.min_timestamp = seg.min_timestamp.min(b.min_timestamp);
                seg.max_timestamp = seg.max_timestamp.max(b.max_timestamp);
            } else {
                placement[i] = (segments.len(), 0);
                segments.push(SegmentAppend {
                    topic_id: info.topic_id,
                    partition: info.partition,
                    data_offset: at,
                    data_len: b.len,
                    offset_span: b.offset_span,
                    min_timestamp: b.min_timestamp,
                    max_timestamp: b.max_timestamp,
                    producer: b.producer,
                });
                open_run = b.producer.is_none().then_some(segments.len() - 1);
            }
            at += b.len;
        }
    }
    (segments, placement)
}

/// The answer for one request-partition: the offset of its first batch (the original
/// one for a duplicate), or the first refusal among its batches.
fn answer(
    w: &Waiter,
    placement: &[(usize, u64)],
    outcomes: &[SegmentOutcome],
) -> Result<AppendAck, WriteError> {
    let mut first = None;
    for i in w.batches.clone() {
        let (segment, delta) = placement[i];
        let (base, log_start) = match outcomes.get(segment) {
            Some(SegmentOutcome::Committed {
                base_offset,
                log_start_offset,
            }) => (base_offset + delta as i64, *log_start_offset),
            Some(SegmentOutcome::Duplicate {
                base_offset,
                log_start_offset,
            }) => (*base_offset, *log_start_offset),
            Some(SegmentOutcome::Refused(why)) => return Err(WriteError::Refused(*why)),
            Some(SegmentOutcome::NotCommitted { unknown: true }) => {
                return Err(WriteError::TimedOut(
                    "part of the flush commit has an unknown outcome".into(),
                ))
            }
            Some(SegmentOutcome::NotCommitted { unknown: false }) => {
                return Err(WriteError::Commit("part of the flush commit failed".into()))
            }
            Some(SegmentOutcome::UnknownPartition) | None => {
                return Err(WriteError::UnknownPartition)
            }
        };
        first.get_or_insert((base, log_start));
    }
    let (base_offset, log_start_offset) = first.ok_or(WriteError::UnknownPartition)?;
    Ok(AppendAck {
        base_offset,
        log_start_offset,
        log_append_time: w.log_append_time,
    })
}

#[allow(clippy::too_many_arguments)]
async fn flusher(
    inner: Arc<Inner>,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    flush_timeout: Duration,
    metrics: Arc<Metrics>,
    jobs: mpsc::Sender<FlushJob>,
    drain: CancellationToken,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let draining = drain.is_cancelled();
        let (ready, deadline) = {
            let p = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.first_at {
                None => (false, None),
                Some(at) => {
                    let deadline = at + inner.batch_timeout;
                    let ready = p.builder.data_len() as usize >= inner.batch_max_bytes
                        || p.full
                        || Instant::now() >= deadline
                        || draining
                        || stop.is_cancelled();
                    (ready, Some(deadline))
                }
            }
        };
        if !ready {
            if stop.is_cancelled() {
                // Stopped and nothing buffered: refuse new appends and finish.
                let p = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                inner.stopping.store(true, Ordering::Release);
                if p.first_at.is_none() {
                    return Ok(());
                }
                continue;
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = inner.kick.notified() => {}
                _ = sleep => {}
                _ = stop.cancelled() => {}
                _ = drain.cancelled(), if !draining => {}
            }
            continue;
        }
        let taken = std::mem::take(&mut *inner.pending.lock().unwrap_or_else(|e| e.into_inner()));
        inner.taken.notify_waiters();
        let (object, infos) = taken.builder.finish();
        let key = object_key();
        let (segments, placement) = commit_segments(&infos, &taken.batches);
        let mut deadline = tokio::time::Instant::now() + flush_timeout;
        if let Some(d) = taken.deadline {
            deadline = deadline.min(d);
        }
        let put = {
            let span = tracing::debug_span!("put", key = %key);
            let (store, meta, metrics, key, object) = (
                store.clone(),
                meta.clone(),
                metrics.clone(),
                key.clone(),
                object.clone(),
            );
            tokio::spawn(
                async move {
                    let len = object.len() as u64;
                    let path = Path::from(key.as_str());
                    let (pending, r) = tokio::join!(
                        meta.add_pending_object(&key),
                        store.put(&path, PutPayload::from(object))
                    );
                    if let Err(e) = pending {
                        return Err(format!("record the object as pending: {e}"));
                    }
                    Metrics::add(&metrics.object_puts, 1);
                    match r {
                        Ok(_) => {
                            Metrics::add(&metrics.object_put_bytes, len);
                            Ok(())
                        }
                        Err(e) => {
                            Metrics::add(&metrics.object_errors, 1);
                            Err(e.to_string())
                        }
                    }
                }
                .instrument(span),
            )
        };
        let job = FlushJob {
            size: object.len() as u64,
            key,
            segments,
            placement,
            waiters: taken.waiters,
            object,
            put,
            deadline,
            _permits: taken.permits,
        };
        if let Err(mpsc::error::SendError(job)) = jobs.send(job).await {
            for w in job.waiters {
                let _ = w.tx.send(Err(WriteError::ShuttingDown));
            }
            anyhow::bail!("the flush committer stopped unexpectedly");
        }
    }
}

async fn committer(
    mut jobs: mpsc::Receiver<FlushJob>,
    meta: Arc<dyn MetaStore>,
    metrics: Arc<Metrics>,
    cache: Arc<ChunkCache>,
    committed: Arc<Commits>,
) -> anyhow::Result<()> {
    while let Some(job) = jobs.recv().await {
        let span = tracing::debug_span!("flush", key = %job.key, bytes = job.size, segments = job.segments.len());
        commit_one(job, &*meta, &metrics, &cache, &committed)
            .instrument(span)
            .await;
    }
    Ok(())
}

async fn commit_one(
    job: FlushJob,
    meta: &dyn MetaStore,
    metrics: &Metrics,
    cache: &ChunkCache,
    committed: &Commits,
) {
    let fail = |waiters: Vec<Waiter>, e: WriteError| {
        for w in waiters {
            let _ = w.tx.send(Err(e.clone()));
        }
    };
    let mut put = job.put;
    match tokio::time::timeout_at(job.deadline, &mut put).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(key = %job.key, error = %e, "object store PUT failed; produce requests get a retriable error");
            return fail(job.waiters, WriteError::ObjectStore(e));
        }
        Ok(Err(e)) => return fail(job.waiters, WriteError::ObjectStore(e.to_string())),
        Err(_) => {
            // The PUT may still land: the object stays pending and GC fences it later.
            put.abort();
            tracing::warn!(key = %job.key, "flush PUT ran past the flush timeout; not committed");
            return fail(job.waiters, WriteError::TimedOut(DEADLINE.into()));
        }
    }
    if tokio::time::Instant::now() >= job.deadline {
        tracing::warn!(key = %job.key, "flush ran past the flush timeout before its commit; not committed");
        return fail(job.waiters, WriteError::TimedOut(DEADLINE.into()));
    }
    let object = ObjectRef {
        key: job.key.clone(),
        size: job.size,
    };
    let outcomes = match meta.commit_flush(&object, &job.segments).await {
        Ok(o) => o,
        Err(e) => {
            Metrics::add(&metrics.commit_errors, 1);
            tracing::warn!(key = %job.key, error = %e, "metadata commit failed; produce requests get a retriable error");
            let e = match e {
                MetaError::Ambiguous(why) => WriteError::TimedOut(why),
                e => WriteError::Commit(e.to_string()),
            };
            return fail(job.waiters, e);
        }
    };
    Metrics::add(&metrics.flushes, 1);
    for o in &outcomes {
        match o {
            SegmentOutcome::Duplicate { .. } => Metrics::add(&metrics.producer_duplicates, 1),
            SegmentOutcome::Refused(_) => Metrics::add(&metrics.producer_refusals, 1),
            _ => {}
        }
    }
    // Write-through: the agent that wrote an object serves its tail reads from memory.
    let chunk = cache.chunk_size();
    let mut at = 0u64;
    while at < job.object.len() as u64 {
        let end = (at + chunk).min(job.object.len() as u64);
        cache.insert(
            &job.key,
            at / chunk,
            job.object.slice(at as usize..end as usize),
        );
        at = end;
    }
    for w in job.waiters {
        let r = answer(&w, &job.placement, &outcomes);
        let _ = w.tx.send(r);
    }
    committed.changed(job.segments.iter().map(|s| (s.topic_id, s.partition)));
}

#[cfg(test)]
#[path = "write_path_tests.rs"]
mod tests;
