//! The read path: index lookup, chunk cache, offset patching.
//!
//! A fetch of (partition, offset) asks the metadata store for the index entries covering
//! the offset, reads their byte ranges through the [`ChunkCache`] (one GET per missing
//! aligned chunk, deduplicated while in flight), checks each batch's CRC, writes the
//! committed base offset into each batch, and stops at the byte limit — always returning
//! at least one whole batch when there is one, as Kafka does (KIP-74).
//!
//! In a cluster, a chunk missing here is first asked of its owner agent in this zone
//! ([`crate::peer_cache`]); only the owner, or an agent whose peer failed, GETs it from
//! the object store. GETs slower than `hedge_after` are hedged: a second identical GET
//! is sent and the first answer wins.
//!
//! It also owns the [`Commits`] record that wakes long-polling fetches: the write path
//! reports every local commit's partitions, and the metadata store's watch those of
//! commits by other agents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use object_store::{path::Path, ObjectStore, ObjectStoreExt};
use shoal_meta::{AgentInfo, IndexEntry, MetaError, MetaStore};
use shoal_object::ChunkCache;
use shoal_wire::batch;
use shoal_wire::segments::Segments;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::commits::Commits;
use crate::metrics::Metrics;
use crate::quarantine::{Corruption, Quarantine};
use crate::AgentConfig;

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("metadata: {0}")]
    Meta(String),
    #[error("object store GET of {key} failed: {error}")]
    ObjectStore { key: String, error: String },
    #[error("object {key} is corrupt: {what}")]
    Corrupt { key: String, what: String },
}

impl From<MetaError> for ReadError {
    fn from(e: MetaError) -> Self {
        ReadError::Meta(e.to_string())
    }
}

/// (object key, chunk index, whether the load asks a peer). A load from the object store
/// (this agent owns the chunk, or serves a peer) never waits on a load that asks a peer,
/// so two agents whose registry views disagree cannot each wait for the other's answer;
/// loads of one kind share one request.
type ChunkKey = (String, u64, bool);
type ChunkWaiters = Vec<oneshot::Sender<Result<Bytes, ReadError>>>;

/// Most chunks one partition read loads at once ahead of its batches.
const LOAD_AHEAD: usize = 8;

pub struct ReadPath {
    meta: Arc<dyn MetaStore>,
    store: Arc<dyn ObjectStore>,
    cache: Arc<ChunkCache>,
    metrics: Arc<Metrics>,
    committed: Arc<Commits>,
    /// Chunks being fetched now, with the readers waiting for them.
    loading: Mutex<HashMap<ChunkKey, ChunkWaiters>>,
    /// This agent as registered (set once at start), for finding chunk owners.
    me: std::sync::OnceLock<AgentInfo>,
    /// A GET slower than this gets a second, identical GET; the first answer wins.
    hedge_after: std::time::Duration,
    /// Signs requests to chunk owners (and checks their answers), when the cluster has one.
    peer_secret: Option<crate::peer_cache::auth::ClusterSecret>,
    /// Objects found corrupt: never read from a peer, left out of compaction.
    quarantine: Arc<Quarantine>,
}

/// Why a partition read stopped early.
enum Stop {
    Corrupt(Corruption),
    Failed(ReadError),
}

/// What one attempt at a partition read got: whole batches up to `read_to`, and why it
/// stopped before `max_bytes` or the end, if it did.
struct Attempt {
    out: Batches,
    read_to: i64,
    stop: Option<Stop>,
}

/// Records read for one partition.
pub struct PartitionRead {
    /// Whole batches, to be patched and cut into slices by [`Batches::assemble`].
    pub records: Batches,
    /// The offset after the last batch returned (`offset` when none was).
    pub next_offset: i64,
}

/// Bytes of an object as the cache holds them: a slice of one chunk, or (a range
/// crossing chunks) a copy of its own.
struct Piece {
    bytes: Bytes,
    /// The chunk the slice pins (its index and length), if it is one.
    chunk: Option<(u64, usize)>,
}

/// A chunk a kept batch is a slice of: (object key, chunk index).
type ChunkId = (Arc<str>, u64);

/// The batches a read keeps, before [`Batches::assemble`] makes them [`Segments`].
#[derive(Default)]
pub struct Batches {
    /// (batch bytes as read, committed base offset, the chunk it is a slice of).
    kept: Vec<(Bytes, i64, Option<ChunkId>)>,
    /// Per chunk sliced: (bytes of it kept, its length).
    pinned: HashMap<ChunkId, (usize, usize)>,
    len: usize,
}

impl Batches {
    /// Record bytes kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, key: &Arc<str>, piece: Piece, base: i64) {
        self.len += piece.bytes.len();
        let chunk = piece.chunk.map(|(idx, chunk_len)| {
            let id = (key.clone(), idx);
            self.pinned.entry(id.clone()).or_insert((0, chunk_len)).0 += piece.bytes.len();
            id
        });
        self.kept.push((piece.bytes, base, chunk));
    }

    /// The batches of one answer's partitions, with their base offsets patched, as
    /// slices. A batch stays a slice of its chunk when the answer keeps at least half of
    /// that chunk (over all its partitions); otherwise it is copied. So the chunks an
    /// answer pins, whether or not the cache still holds them, never exceed twice its
    /// record bytes. The 8 bytes of each sliced batch's base offset come from a small
    /// buffer of their own.
    pub fn assemble(reads: Vec<Batches>) -> Vec<Segments> {
        let mut used: HashMap<ChunkId, (usize, usize)> = HashMap::new();
        for r in &reads {
            for (id, (n, len)) in &r.pinned {
                used.entry(id.clone()).or_insert((0, *len)).0 += n;
            }
        }
        let sliced = |c: &Option<ChunkId>| {
            c.as_ref()
                .is_none_or(|id| used.get(id).is_some_and(|(n, len)| n * 2 >= *len))
        };
        reads
            .into_iter()
            .map(|r| {
                let (mut heads_len, mut copied_len) = (0, 0);
                for (b, _, c) in &r.kept {
                    if sliced(c) {
                        heads_len += 8;
                    } else {
                        copied_len += b.len();
                    }
                }
                let mut heads = BytesMut::with_capacity(heads_len);
                let mut copied = BytesMut::with_capacity(copied_len);
                let mut out = Segments::new();
                for (b, base, c) in &r.kept {
                    if sliced(c) && b.len() > 8 {
                        if !copied.is_empty() {
                            out.push(copied.split().freeze());
                        }
                        heads.extend_from_slice(&base.to_be_bytes());
                        out.push(heads.split().freeze());
                        out.push(b.slice(8..));
                    } else {
                        let start = copied.len();
                        copied.extend_from_slice(b);
                        batch::set_base_offset(&mut copied[start..], *base);
                    }
                }
                if !copied.is_empty() {
                    out.push(copied.freeze());
                }
                out
            })
            .collect()
    }

    /// The batches in one piece (tests, and callers that want plain bytes).
    pub fn into_bytes(self) -> Bytes {
        Self::assemble(vec![self])
            .pop()
            .map(|s| s.to_bytes())
            .unwrap_or_default()
    }
}

impl ReadPath {
    pub fn new(
        config: &AgentConfig,
        meta: Arc<dyn MetaStore>,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ReadPath {
            meta,
            store,
            cache: Arc::new(ChunkCache::new(config.cache_bytes, config.chunk_bytes)),
            committed: Arc::new(Commits::default()),
            loading: Mutex::new(HashMap::new()),
            me: std::sync::OnceLock::new(),
            hedge_after: config.hedge_after,
            peer_secret: config.cluster_secret.clone(),
            quarantine: Arc::new(Quarantine::new(metrics.clone())),
            metrics,
        }
    }

    /// The objects this agent found corrupt.
    pub fn quarantine(&self) -> Arc<Quarantine> {
        self.quarantine.clone()
    }

    /// Tells the read path which agent it runs in, once registered, so it can ask chunk
    /// owners in its zone.
    pub fn set_identity(&self, me: AgentInfo) {
        let _ = self.me.set(me);
    }

    /// The peer address of the agent owning chunk `idx` of `key`, unless it is this one
    /// or there are no peers.
    fn owner_addr(&self, key: &str, idx: u64) -> Option<String> {
        let me = self.me.get()?;
        let live = self.meta.live_agents();
        let peers = crate::peer_cache::zone_peers(me, &live);
        if peers.len() < 2 {
            return None;
        }
        let owner = crate::cluster::placement::chunk_owner(&peers, key, idx)?;
        if owner.node_id == me.node_id {
            return None;
        }
        owner.peer_addr.clone()
    }

    pub fn cache(&self) -> Arc<ChunkCache> {
        self.cache.clone()
    }

    /// Where commits are reported (by the write path, and for other agents' commits by
    /// the metadata store's watch) and where waiting fetches learn of them.
    pub fn commits(&self) -> Arc<Commits> {
        self.committed.clone()
    }

    /// Reads whole batches of a partition starting at the batch containing `offset` and
    /// ending before `high_watermark`, up to `max_bytes`. With `at_least_one`, the first
    /// batch is returned even if it alone exceeds `max_bytes` (KIP-74).
    ///
    /// Batches are read one at a time through the cache (a header, then the batch if it
    /// is wanted), never a whole index entry: an entry of a compacted run may hold up to
    /// the compaction target of batches, and the answer stays within `max_bytes` plus
    /// at most one batch.
    ///
    /// A segment that fails its checks is read once more straight from the object store
    /// (its cached chunks evicted, no peer asked): the bad bytes may have been a cached or
    /// peer copy. Still corrupt, the object is quarantined and its chunks evicted again,
    /// so the next read GETs it afresh; the batches before the corrupt one are returned,
    /// and a read that starts at it fails with [`ReadError::Corrupt`].
    #[allow(clippy::too_many_arguments)]
    pub async fn read_partition(
        &self,
        topic_id: Uuid,
        topic_name: &str,
        partition: i32,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<PartitionRead, ReadError> {
        let read = |ask_peer| {
            self.read_batches(
                topic_id,
                topic_name,
                partition,
                offset,
                high_watermark,
                max_bytes,
                at_least_one,
                ask_peer,
            )
        };
        let mut attempt = read(true).await;
        if let Some(Stop::Corrupt(c)) = &attempt.stop {
            if !self.quarantine.contains(&c.object_key) {
                let key = c.object_key.clone();
                self.cache.evict_object(&key);
                attempt = read(false).await;
                if attempt.stop.is_none() {
                    Metrics::add(&self.metrics.corrupt_copies_healed, 1);
                    tracing::warn!(%key, topic = topic_name, partition, "a cached or peer copy of an object was corrupt; a fresh read was not");
                }
            }
        }
        match attempt.stop {
            None => {}
            Some(Stop::Failed(e)) => return Err(e),
            Some(Stop::Corrupt(c)) => {
                self.cache.evict_object(&c.object_key);
                let err = ReadError::Corrupt {
                    key: c.object_key.clone(),
                    what: c.what.clone(),
                };
                self.quarantine.report(c);
                if attempt.out.is_empty() {
                    return Err(err);
                }
            }
        }
        Metrics::add(&self.metrics.fetched_bytes, attempt.out.len as u64);
        Ok(PartitionRead {
            records: attempt.out,
            next_offset: attempt.read_to,
        })
    }

    /// One attempt of [`ReadPath::read_partition`]; with `ask_peer` false, chunks missing
    /// here are read from the object store even where a peer owns them.
    #[allow(clippy::too_many_arguments)]
    async fn read_batches(
        &self,
        topic_id: Uuid,
        topic_name: &str,
        partition: i32,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        at_least_one: bool,
        ask_peer: bool,
    ) -> Attempt {
        let mut a = Attempt {
            out: Batches::default(),
            read_to: offset,
            stop: None,
        };
        let mut from = offset;
        'entries: while from < high_watermark {
            let entries = match self.meta.index_from(topic_id, partition, from, 16).await {
                Ok(e) => e,
                Err(e) => {
                    a.stop = Some(Stop::Failed(e.into()));
                    break;
                }
            };
            if entries.is_empty() {
                break;
            }
            // The chunks these entries will need, loaded together rather than one GET
            // after the other (as far as what the answer may still take).
            let left = max_bytes.saturating_sub(a.out.len).max(1) as u64;
            self.load_ahead(&entries, left, ask_peer).await;
            for e in &entries {
                let key: Arc<str> = e.object_key.as_str().into();
                let corrupt = |what: String| {
                    Stop::Corrupt(Corruption {
                        object_key: e.object_key.clone(),
                        topic: topic_name.to_string(),
                        topic_id,
                        partition,
                        base_offset: e.base_offset,
                        end_offset: e.end_offset,
                        what,
                        found_by: "fetch",
                    })
                };
                // A range-level failure: a corrupt chunk is this entry's corruption.
                let failed = |err: ReadError| match err {
                    ReadError::Corrupt { what, .. } => corrupt(what),
                    other => Stop::Failed(other),
                };
                let end = e.data_offset + e.data_len;
                let mut at = e.data_offset;
                let mut next = e.base_offset;
                // The chunk last read in this entry: batches in it need no cache lookup.
                let mut last: Option<(u64, Bytes)> = None;
                while at < end {
                    let head = match self
                        .read_piece(
                            e,
                            &mut last,
                            at,
                            (at + batch::HEADER_LEN as u64).min(end),
                            ask_peer,
                        )
                        .await
                    {
                        Ok(h) => h.bytes,
                        Err(err) => {
                            a.stop = Some(failed(err));
                            break 'entries;
                        }
                    };
                    let header = batch::BatchHeader::parse(&head)
                        .ok()
                        .filter(|h| {
                            h.batch_length >= (batch::HEADER_LEN - batch::LOG_OVERHEAD) as i32
                        })
                        .filter(|h| at + h.total_len() as u64 <= end);
                    let Some(header) = header else {
                        a.stop = Some(corrupt(format!(
                            "no whole batch at byte {at} of its segment"
                        )));
                        break 'entries;
                    };
                    let base = next;
                    let total = header.total_len() as u64;
                    next += header.offset_span();
                    if next <= offset {
                        at += total; // before the offset asked for: its body is never read
                        continue;
                    }
                    if base >= high_watermark {
                        break 'entries;
                    }
                    if (!a.out.is_empty() || !at_least_one)
                        && a.out.len + total as usize > max_bytes
                    {
                        break 'entries;
                    }
                    let piece = match self
                        .read_piece(e, &mut last, at, at + total, ask_peer)
                        .await
                    {
                        Ok(b) => b,
                        Err(err) => {
                            a.stop = Some(failed(err));
                            break 'entries;
                        }
                    };
                    at += total;
                    if crc32c::crc32c(piece.bytes.get(21..).unwrap_or_default()) != header.crc {
                        a.stop = Some(corrupt(format!("batch at offset {base} fails its CRC")));
                        break 'entries;
                    }
                    a.out.push(&key, piece, base);
                    a.read_to = next;
                    if a.out.len >= max_bytes {
                        break 'entries;
                    }
                }
                if next != e.end_offset {
                    a.stop = Some(corrupt(format!(
                        "segment batches end at offset {next}, its index entry at {}",
                        e.end_offset
                    )));
                    break 'entries;
                }
                from = e.end_offset;
            }
        }
        a
    }

    /// The bytes of one index entry's segment.
    pub async fn read_entry(&self, e: &IndexEntry) -> Result<Bytes, ReadError> {
        self.read_range(
            &e.object_key,
            e.object_size,
            e.data_offset,
            e.data_offset + e.data_len,
        )
        .await
    }

    /// Bytes `[start, end)` of an object of `size` bytes, through the chunk cache.
    pub async fn read_range(
        &self,
        key: &str,
        size: u64,
        start: u64,
        end: u64,
    ) -> Result<Bytes, ReadError> {
        let (piece, _) = self
            .read_range_piece(key, size, start, end, true, None)
            .await?;
        Ok(piece.bytes)
    }

    /// Bytes `[start, end)` of entry `e`'s object; `last` is the chunk this read used
    /// last, used again without a cache lookup when the range lies in it.
    async fn read_piece(
        &self,
        e: &IndexEntry,
        last: &mut Option<(u64, Bytes)>,
        start: u64,
        end: u64,
        ask_peer: bool,
    ) -> Result<Piece, ReadError> {
        let (piece, whole) = self
            .read_range_piece(
                &e.object_key,
                e.object_size,
                start,
                end,
                ask_peer,
                last.as_ref(),
            )
            .await?;
        if let (Some((idx, _)), Some(whole)) = (piece.chunk, whole) {
            *last = Some((idx, whole));
        }
        Ok(piece)
    }

    /// Loads, all at once, the chunks missing here that the first `bytes` of `entries`
    /// lie in (up to [`LOAD_AHEAD`] of them); a failure is left to the reads after.
    async fn load_ahead(&self, entries: &[IndexEntry], bytes: u64, ask_peer: bool) {
        let cs = self.cache.chunk_size();
        let mut left = bytes;
        let mut missing: Vec<(&IndexEntry, u64)> = Vec::new();
        'entries: for e in entries {
            let len = e.data_len.min(left);
            if len == 0 || e.data_offset + len > e.object_size {
                break;
            }
            for idx in e.data_offset / cs..=(e.data_offset + len - 1) / cs {
                if missing.len() == LOAD_AHEAD {
                    break 'entries;
                }
                let seen = missing
                    .iter()
                    .any(|(m, i)| *i == idx && m.object_key == e.object_key);
                if !seen && !self.cache.contains(&e.object_key, idx) {
                    missing.push((e, idx));
                }
            }
            left -= len;
        }
        if missing.len() < 2 {
            return; // one GET is no faster ahead than when it is needed
        }
        let loads = missing
            .iter()
            .map(|(e, idx)| self.load_chunk(&e.object_key, e.object_size, *idx, ask_peer));
        futures::future::join_all(loads).await;
    }

    /// [`ReadPath::read_range`], asking chunk owners for missing chunks only if
    /// `ask_peer`, and saying which chunk the bytes are a slice of (handing back that
    /// whole chunk); `last_chunk` is a chunk already in hand.
    async fn read_range_piece(
        &self,
        key: &str,
        size: u64,
        start: u64,
        end: u64,
        ask_peer: bool,
        last_chunk: Option<&(u64, Bytes)>,
    ) -> Result<(Piece, Option<Bytes>), ReadError> {
        if end > size || start > end {
            return Err(ReadError::Corrupt {
                key: key.to_string(),
                what: format!("range {start}..{end} outside an object of {size} bytes"),
            });
        }
        if start == end {
            let empty = Piece {
                bytes: Bytes::new(),
                chunk: None,
            };
            return Ok((empty, None));
        }
        let cs = self.cache.chunk_size();
        let (first, last) = (start / cs, (end - 1) / cs);
        // Every chunk has its expected length (load_chunk checks), so these slices fit;
        // they are checked anyway: a short chunk is an error, never a panic.
        let piece = |chunk: &Bytes, idx: u64| {
            let lo = (start.max(idx * cs) - idx * cs) as usize;
            let hi = (end.min((idx + 1) * cs) - idx * cs) as usize;
            if hi > chunk.len() {
                return Err(ReadError::Corrupt {
                    key: key.to_string(),
                    what: format!("chunk {idx} has {} bytes, {hi} were needed", chunk.len()),
                });
            }
            Ok(chunk.slice(lo..hi))
        };
        if first == last {
            let chunk = match last_chunk {
                Some((i, c)) if *i == first => c.clone(),
                _ => self.load_chunk(key, size, first, ask_peer).await?,
            };
            let p = Piece {
                bytes: piece(&chunk, first)?,
                chunk: Some((first, chunk.len())),
            };
            return Ok((p, Some(chunk)));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for idx in first..=last {
            let chunk = self.load_chunk(key, size, idx, ask_peer).await?;
            out.extend_from_slice(&piece(&chunk, idx)?);
        }
        let p = Piece {
            bytes: out.freeze(),
            chunk: None,
        };
        Ok((p, None))
    }

    /// A chunk from this agent's cache or the object store, never from a peer: what the
    /// owner serves to its peers.
    pub async fn local_chunk(&self, key: &str, size: u64, idx: u64) -> Result<Bytes, ReadError> {
        self.load_chunk(key, size, idx, false).await
    }

    async fn load_chunk(
        &self,
        key: &str,
        size: u64,
        idx: u64,
        ask_peer: bool,
    ) -> Result<Bytes, ReadError> {
        let cs = self.cache.chunk_size();
        let Some(range) = idx
            .checked_mul(cs)
            .filter(|start| *start < size)
            .map(|start| start..start.saturating_add(cs).min(size))
        else {
            return Err(ReadError::Corrupt {
                key: key.to_string(),
                what: format!("chunk {idx} lies outside an object of {size} bytes"),
            });
        };
        let want = range.end - range.start;
        // A cached chunk of another length was cached for another idea of the object's
        // size: not this one (it is replaced by the load below).
        if let Some(b) = self.cache.get(key, idx).filter(|b| b.len() as u64 == want) {
            Metrics::add(&self.metrics.cache_hits, 1);
            return Ok(b);
        }
        Metrics::add(&self.metrics.cache_misses, 1);
        // A quarantined object's chunks come from the store: a peer may hold a bad copy.
        let owner = if ask_peer && !self.quarantine.contains(key) {
            self.owner_addr(key, idx)
        } else {
            None
        };
        let k = (key.to_string(), idx, owner.is_some());
        let rx = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            match loading.get_mut(&k) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    loading.insert(k.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = rx {
            return rx.await.unwrap_or_else(|_| {
                Err(ReadError::ObjectStore {
                    key: key.to_string(),
                    error: "loader went away".into(),
                })
            });
        }
        let result = match owner {
            Some(addr) => {
                match crate::peer_cache::fetch(&addr, key, size, idx, self.peer_secret.as_ref())
                    .await
                {
                    Ok(b) if b.len() as u64 == want => {
                        Metrics::add(&self.metrics.peer_chunk_hits, 1);
                        Ok(b)
                    }
                    other => {
                        let why = match other {
                            Ok(b) => {
                                format!("{} bytes instead of {want}", b.len())
                            }
                            Err(e) => e,
                        };
                        Metrics::add(&self.metrics.peer_chunk_fallbacks, 1);
                        tracing::debug!(key, idx, peer = %addr, %why, "chunk owner failed; reading the object store");
                        self.get_with_retry(key, range).await
                    }
                }
            }
            None => self.get_with_retry(key, range).await,
        };
        if let Ok(b) = &result {
            self.cache.insert(key, idx, b.clone());
        }
        let waiters = self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&k)
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(result.clone());
        }
        result
    }

    async fn get_with_retry(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ReadError> {
        let path = Path::from(key);
        let mut delay = std::time::Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            Metrics::add(&self.metrics.object_gets, 1);
            match self.hedged_get(&path, range.clone()).await {
                Ok(b) => {
                    Metrics::add(&self.metrics.object_get_bytes, b.len() as u64);
                    if b.len() as u64 != range.end - range.start {
                        return Err(ReadError::Corrupt {
                            key: key.to_string(),
                            what: format!(
                                "GET returned {} bytes, expected {}",
                                b.len(),
                                range.end - range.start
                            ),
                        });
                    }
                    return Ok(b);
                }
                Err(e) => {
                    Metrics::add(&self.metrics.object_errors, 1);
                    let not_found = matches!(e, object_store::Error::NotFound { .. });
                    if attempt >= 3 || not_found {
                        tracing::warn!(key, error = %e, attempt, "object store GET failed");
                        return Err(ReadError::ObjectStore {
                            key: key.to_string(),
                            error: e.to_string(),
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// One GET, plus a second identical one if the first is slower than `hedge_after`;
    /// whichever answers first wins (object stores have long latency tails).
    async fn hedged_get(
        &self,
        path: &Path,
        range: std::ops::Range<u64>,
    ) -> object_store::Result<Bytes> {
        hedged(
            self.hedge_after,
            || self.store.get_range(path, range.clone()),
            || {
                Metrics::add(&self.metrics.object_gets, 1);
                Metrics::add(&self.metrics.hedged_gets, 1);
            },
        )
        .await
    }
}

/// Runs `start()`; if it has not finished after `after`, calls `on_hedge` and runs
/// `start()` a second time, returning whichever finishes first.
async fn hedged<T, F, Fut>(after: std::time::Duration, start: F, on_hedge: impl FnOnce()) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let first = start();
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => return r,
        _ = tokio::time::sleep(after) => {}
    }
    on_hedge();
    let second = start();
    tokio::pin!(second);
    tokio::select! {
        r = &mut first => r,
        r = &mut second => r,
    }
}

#[cfg(test)]
mod tests {
    use super::{hedged, Batches, Piece};
    use bytes::Bytes;
    use std::sync::Arc;

    /// A fake batch of `len` bytes (base offset field zero, then `fill`).
    fn batch(len: usize, fill: u8) -> Bytes {
        let mut b = vec![fill; len];
        b[..8].fill(0);
        Bytes::from(b)
    }

    #[test]
    fn batches_keep_slices_of_well_used_chunks_and_copy_the_rest() {
        let chunk = batch(1000, b'c');
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let slice = |range: std::ops::Range<usize>| Piece {
            bytes: chunk.slice(range),
            chunk: Some((0, 1000)),
        };
        // Object a's chunk: 300 bytes kept by one partition, 300 by another, so it is
        // sliced; object b's: 100 bytes of 1000, copied.
        let (mut one, mut two) = (Batches::default(), Batches::default());
        one.push(&a, slice(0..300), 10);
        two.push(&a, slice(300..600), 20);
        let small = Piece {
            bytes: batch(100, b's'),
            chunk: Some((0, 1000)),
        };
        one.push(&b, small, 11);
        let mut all = Batches::assemble(vec![one, two]);
        let second = all.pop().unwrap();
        assert_eq!(second.parts().len(), 2);
        assert_eq!(&second.parts()[0][..], &20i64.to_be_bytes());
        let segments = all.pop().unwrap();
        assert_eq!(segments.len(), 400);
        // offset, slice, copy.
        assert_eq!(segments.parts().len(), 3);
        assert_eq!(&segments.parts()[0][..], &10i64.to_be_bytes());
        assert_eq!(
            segments.parts()[1].as_ptr(),
            chunk[8..].as_ptr(),
            "by reference"
        );
        let copy = &segments.parts()[2];
        assert_eq!(&copy[..8], &11i64.to_be_bytes(), "patched in the copy");
        assert!(copy[8..].iter().all(|b| *b == b's'));
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// The first call takes `first_ms`, later calls 10 ms; returns which call answered.
    async fn run(first_ms: u64) -> (u32, u32, bool) {
        let calls = AtomicU32::new(0);
        let mut hedged_once = false;
        let answer = hedged(
            Duration::from_millis(400),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let ms = if n == 0 { first_ms } else { 10 };
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    n
                }
            },
            || hedged_once = true,
        )
        .await;
        (answer, calls.load(Ordering::SeqCst), hedged_once)
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_get_is_not_hedged() {
        assert_eq!(run(100).await, (0, 1, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_get_is_hedged_and_the_second_answer_wins() {
        let t = tokio::time::Instant::now();
        assert_eq!(run(5_000).await, (1, 2, true));
        assert_eq!(
            t.elapsed(),
            Duration::from_millis(410),
            "paused clock: 400 + 10 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_get_finishing_after_the_hedge_started_still_counts() {
        assert_eq!(run(405).await, (0, 2, true));
    }
}
