//! The log cleaner: Kafka's `cleanup.policy=compact` over objects. It keeps the latest
//! record per key of a compacted topic's partitions and drops the older ones, then, after
//! `delete.retention.ms`, the tombstones (null values) themselves.
//!
//! **State lives in the index.** Every object the cleaner writes is named `cleaned/…`;
//! the partition's *clean part* is the run of index entries from the log start that
//! point into such objects, and everything after it is *dirty* (Kafka's cleaner
//! checkpoint, kept where the swap that advances it is atomic, so there is no second
//! record to disagree with). Only the metadata is read to decide whether a pass is due.
//!
//! **A pass over one partition** ([`clean_partition`]):
//! 1. [`plan`]: the dirty range is the run of entries after the clean part that lie
//!    below the last stable offset and whose newest record is `min.compaction.lag.ms`
//!    old. A pass runs when the dirty bytes are at least `min.cleanable.dirty.ratio` of
//!    clean plus dirty (so a pass rereads at most 1/ratio times what changed, never the
//!    whole partition for a small change), when the oldest dirty record is older than
//!    `max.compaction.lag.ms`, or when a clean object holds tombstones whose delete
//!    horizon has passed (its key says when: `…-h{ms}.shoal`).
//! 2. The key map: the dirty range's records, key hash (SHA-256, 16 bytes) → latest
//!    offset, bounded by `--cleaner-dedupe-buffer` (32 bytes a key, as Kafka's
//!    `log.cleaner.dedupe.buffer.size`). When it fills, the dirty range ends before the
//!    entry that filled it (its keys already in the map only drop older records, which
//!    is right); if the first dirty entry alone fills it, that entry is still cleaned
//!    and its keys beyond the bound are kept as they are.
//! 3. The rewrite: entries from the log start to the end of the dirty range are read
//!    again, batch by batch, and rewritten ([`rewrite_batch`]) into `cleaned/` objects of
//!    up to the compaction target, each swapped for the entries it replaces in one
//!    conditional step ([`shoal_meta::MetaStore::replace_entries`], as compaction does;
//!    a conflict ends the pass and the next one starts over). A group of clean entries
//!    that lost nothing is left as it is (no PUT, no swap).
//!
//! **What is kept.** A record is dropped when the map holds a later offset for its key.
//! Batches keep their base offset and `lastOffsetDelta` and their records their offsets,
//! so offsets only increase, with gaps; a run of batches that lost every record becomes
//! one empty batch spanning their offsets (readers skip it), so the index still covers
//! every offset and the read path's offset patching is unchanged. Keyless records are
//! dropped, as Kafka's cleaner drops them (produce refuses them on compacted topics).
//! A tombstone that is the latest of its key is kept, and the first pass that keeps it
//! stamps its batch with a delete horizon of now + `delete.retention.ms` (Kafka's
//! KIP-534 batch attribute); a later pass past the horizon drops it.
//!
//! **Transactions.** The cleaned range never passes the last stable offset, so every
//! transactional batch in it belongs to a finished transaction: aborted if the
//! partition's aborted-transaction records ([`shoal_meta::AbortedTxn`]) list its producer
//! over its offset, else committed. As in Kafka, committed records are cleaned like any
//! others and aborted ones are removed (their batches become empty runs) and never enter
//! the key map.
//!
//! **Transaction markers.** A pass walks from the log start, so it sees each
//! transaction's data (what is left of it) before its marker ([`Txns`]). A *commit*
//! marker whose transaction kept no record, in this pass or an earlier one, is removed as
//! Kafka removes it: the first pass that finds it so stamps its batch with a delete
//! horizon of now + `delete.retention.ms` (the object key carries it, as for
//! tombstones), and the first pass past the horizon drops it (an empty run, like any
//! emptied batch); the horizon is Kafka's rule, so a reader partway through the log
//! still finds the marker for `delete.retention.ms`. *Abort* markers stay: the read path hands read_committed
//! consumers the partition's aborted-transaction records over what they fetch, and a
//! consumer told of an aborted transaction skips its producer's transactional batches
//! until that producer's abort marker. Kafka drops an empty aborted transaction's marker
//! together with its entry in the cleaned segment's transaction index; Shoal's records
//! live in the metadata store, which has no call yet to drop one, so a marker without its
//! record would make consumers skip that producer's later, committed data. An abort
//! marker costs one small batch per transaction and partition.
//!
//! The cleaner runs as one claimed job ([`run`]), so two agents never clean at once;
//! its GETs and PUTs are counted apart from the fetch path's (`shoal_cleaner_total`), and
//! the time of its passes that read data in `shoal_cleaner_busy_ms_total`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use shoal_meta::{
    AbortedTxn, IndexEntry, MetaError, MetaStore, ObjectRef, PartitionEntry, TopicInfo,
};
use shoal_object::ObjectBuilder;
use shoal_wire::batch::{self, BatchError, BatchHeader};
use shoal_wire::records::{self, Limits};
use shoal_wire::retain;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::topics::effective;

/// Object key prefix of the cleaner's output; entries pointing there are clean.
pub const CLEANED_PREFIX: &str = "cleaned/";
/// Bytes of key map memory counted per key (16-byte hash, 8-byte offset, table overhead).
pub const BYTES_PER_KEY: u64 = 32;
/// Index entries read per page.
const PAGE: usize = 1000;

/// Whether a topic's `cleanup.policy` includes `compact`.
pub fn is_compacted(topic: &TopicInfo) -> bool {
    policy_has(topic, "compact")
}

/// Whether a topic's `cleanup.policy` includes `delete` (time and size retention).
pub fn deletes(topic: &TopicInfo) -> bool {
    policy_has(topic, "delete")
}

fn policy_has(topic: &TopicInfo, what: &str) -> bool {
    effective(&topic.configs, "cleanup.policy")
        .split(',')
        .any(|p| p.trim() == what)
}

/// Produce's check for compacted topics: a record without a key is refused with
/// INVALID_RECORD, as Kafka refuses it. `index` is the record's index in its batch.
pub fn check_key(topic_compacted: bool, index: i32, key_len: i32) -> Result<(), BatchError> {
    if topic_compacted && key_len < 0 {
        return Err(BatchError::Record {
            index,
            why: "compacted topic cannot accept a record without a key",
        });
    }
    Ok(())
}

/// A topic's cleaning settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min_lag_ms: i64,
    pub max_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub min_dirty_ratio: f64,
}

impl Policy {
    pub fn of(topic: &TopicInfo) -> Policy {
        let long = |k: &str, d: i64| effective(&topic.configs, k).parse().unwrap_or(d);
        Policy {
            min_lag_ms: long("min.compaction.lag.ms", 0).max(0),
            max_lag_ms: long("max.compaction.lag.ms", i64::MAX).max(0),
            delete_retention_ms: long("delete.retention.ms", 86_400_000).max(0),
            min_dirty_ratio: effective(&topic.configs, "min.cleanable.dirty.ratio")
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite())
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
        }
    }
}

/// Limits of the cleaner job (flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Key map memory per pass (`--cleaner-dedupe-buffer`).
    pub dedupe_buffer_bytes: u64,
    /// Output objects are cut at about this size.
    pub max_object_bytes: u64,
    /// The most a stored batch may inflate to when read.
    pub max_uncompressed: u64,
}

/// Which entries a pass takes: `entries[..clean]` are clean, `entries[clean..clean + dirty]`
/// the dirty range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub clean: usize,
    pub dirty: usize,
}

/// The delete horizon a cleaned object's key carries (its earliest tombstone's).
pub fn key_horizon(key: &str) -> Option<i64> {
    let stem = key.strip_prefix(CLEANED_PREFIX)?.strip_suffix(".shoal")?;
    stem.rsplit_once("-h")?.1.parse().ok()
}

fn cleaned_key(horizon: Option<i64>) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let id = Uuid::new_v4().simple();
    match horizon {
        Some(h) => format!("{CLEANED_PREFIX}{ms:013}-{id}-h{h}.shoal"),
        None => format!("{CLEANED_PREFIX}{ms:013}-{id}.shoal"),
    }
}

/// Decides whether a pass is due and over which entries (see the module docs).
/// `entries` are the partition's index entries from its log start, in offset order.
pub fn plan(entries: &[IndexEntry], last_stable: i64, now_ms: i64, p: &Policy) -> Option<Plan> {
    let mut clean = 0;
    let mut end = None;
    for e in entries {
        if !e.object_key.starts_with(CLEANED_PREFIX) || end.is_some_and(|x| x != e.base_offset) {
            break;
        }
        end = Some(e.end_offset);
        clean += 1;
    }
    let mut dirty = 0;
    for e in &entries[clean..] {
        let contiguous = end.is_none_or(|x| x == e.base_offset);
        let lagged = now_ms.saturating_sub(e.max_timestamp) >= p.min_lag_ms;
        if !contiguous || e.end_offset > last_stable || !lagged {
            break;
        }
        end = Some(e.end_offset);
        dirty += 1;
    }
    let bytes = |es: &[IndexEntry]| es.iter().map(|e| e.data_len).sum::<u64>();
    let clean_bytes = bytes(&entries[..clean]);
    let dirty_bytes = bytes(&entries[clean..clean + dirty]);
    let tombstones_due = entries[..clean]
        .iter()
        .any(|e| key_horizon(&e.object_key).is_some_and(|h| h <= now_ms));
    let overdue = entries[clean..clean + dirty]
        .first()
        .is_some_and(|e| now_ms.saturating_sub(e.min_timestamp) >= p.max_lag_ms);
    let ratio = if clean_bytes + dirty_bytes == 0 {
        0.0
    } else {
        dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64
    };
    let due = tombstones_due || (dirty > 0 && (overdue || ratio >= p.min_dirty_ratio));
    due.then_some(Plan { clean, dirty })
}

/// Latest offset per key (by a 16-byte hash of the key), holding at most `cap` keys.
pub struct KeyMap {
    map: HashMap<[u8; 16], i64>,
    cap: usize,
}

fn key_hash(key: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(key);
    let mut h = [0u8; 16];
    h.copy_from_slice(&digest[..16]);
    h
}

impl KeyMap {
    pub fn with_budget(bytes: u64) -> KeyMap {
        KeyMap {
            map: HashMap::new(),
            cap: (bytes / BYTES_PER_KEY).max(1) as usize,
        }
    }

    /// Records `offset` as the latest of `key`; false (nothing recorded) when the key is
    /// new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = key_hash(key);
        if let Some(o) = self.map.get_mut(&h) {
            *o = (*o).max(offset);
            return true;
        }
        if self.map.len() >= self.cap {
            return false;
        }
        self.map.insert(h, offset);
        true
    }

    /// Whether a record of `key` at `offset` has a later record of the same key.
    pub fn superseded(&self, key: &[u8], offset: i64) -> bool {
        self.map.get(&key_hash(key)).is_some_and(|&o| o > offset)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What [`rewrite_batch`] made of one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewritten {
    /// Kept byte for byte (`horizon`: the delete horizon of tombstones it keeps).
    Same { horizon: Option<i64> },
    /// Every record went: `span` offsets to cover with an empty batch, stamped `timestamp`.
    Empty { span: i64, timestamp: i64 },
    /// Some records went (or a tombstone got its horizon): the new batch.
    New {
        batch: Vec<u8>,
        horizon: Option<i64>,
    },
}

/// Whether the batch with header `h` at offset `base` holds data of an aborted
/// transaction (`aborted`: the partition's aborted-transaction records).
pub fn is_aborted(h: &BatchHeader, base: i64, aborted: &[AbortedTxn]) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id && a.first_offset <= base && base <= a.last_offset
        })
}

/// The transactions a pass walks through, in offset order.
#[derive(Debug, Default)]
pub struct Txns<'a> {
    /// The partition's aborted-transaction records over the pass's range.
    aborted: &'a [AbortedTxn],
    /// Producer id → whether a record of its transaction since its last marker was kept.
    /// Every pass walks from the log start, so a transaction whose data earlier passes
    /// removed is simply absent.
    kept: HashMap<i64, bool>,
}

impl<'a> Txns<'a> {
    pub fn new(aborted: &'a [AbortedTxn]) -> Self {
        Txns {
            aborted,
            kept: HashMap::new(),
        }
    }

    fn data(&mut self, producer_id: i64, kept: bool) {
        *self.kept.entry(producer_id).or_default() |= kept;
    }

    /// A marker of `producer_id`: ends its transaction; true when none of its data is left.
    fn end(&mut self, producer_id: i64) -> bool {
        !self.kept.remove(&producer_id).unwrap_or(false)
    }
}

/// Whether a control record's key says commit (key: version i16, type i16; 1 commit).
fn is_commit_key(key: &[u8]) -> bool {
    key.len() >= 4 && i16::from_be_bytes([key[2], key[3]]) == 1
}

/// A transaction marker (see the module docs): a commit marker whose transaction kept no
/// data gets a delete horizon and goes once it has passed; anything else stays as it is.
fn rewrite_marker(
    b: &[u8],
    h: &BatchHeader,
    txn_empty: bool,
    now_ms: i64,
    delete_retention_ms: i64,
    limits: Limits,
) -> Result<(Rewritten, u64), BatchError> {
    let region = records::records_region(b, limits)?;
    let recs = retain::parse(&region, h.base_timestamp)?;
    let commit = recs.first().and_then(|r| r.key).is_some_and(is_commit_key);
    if !commit || !txn_empty {
        return Ok((Rewritten::Same { horizon: None }, 0));
    }
    match retain::delete_horizon(h) {
        Some(x) if x <= now_ms => Ok((
            Rewritten::Empty {
                span: h.offset_span(),
                timestamp: h.max_timestamp,
            },
            recs.len() as u64,
        )),
        Some(x) => Ok((Rewritten::Same { horizon: Some(x) }, 0)),
        None => {
            let horizon = now_ms.saturating_add(delete_retention_ms);
            let kept: Vec<_> = recs.iter().collect();
            Ok((
                Rewritten::New {
                    batch: retain::rebuild(h, &kept, Some(horizon)),
                    horizon: Some(horizon),
                },
                0,
            ))
        }
    }
}

/// Rewrites one stored batch at offset `base` against the key map (see the module
/// docs); `txns`: the pass's transactions so far (its aborted ones: see [`is_aborted`]).
/// Also returns how many records it dropped.
pub fn rewrite_batch(
    b: &[u8],
    base: i64,
    map: &KeyMap,
    txns: &mut Txns<'_>,
    now_ms: i64,
    delete_retention_ms: i64,
    limits: Limits,
) -> Result<(Rewritten, u64), BatchError> {
    let h = BatchHeader::parse(b)?;
    if h.is_control() {
        let txn_empty = txns.end(h.producer_id);
        return rewrite_marker(b, &h, txn_empty, now_ms, delete_retention_ms, limits);
    }
    if is_aborted(&h, base, txns.aborted) {
        let (span, timestamp) = (h.offset_span(), h.max_timestamp);
        let dropped = h.records_count.max(0) as u64;
        return Ok((Rewritten::Empty { span, timestamp }, dropped));
    }
    if h.records_count == 0 {
        let timestamp = h.max_timestamp;
        return Ok((
            Rewritten::Empty {
                span: h.offset_span(),
                timestamp,
            },
            0,
        ));
    }
    let region = records::records_region(b, limits)?;
    let recs = retain::parse(&region, h.base_timestamp)?;
    let had = retain::delete_horizon(&h);
    let mut kept = Vec::with_capacity(recs.len());
    let mut tombstones = false;
    for r in &recs {
        let Some(key) = r.key else { continue };
        let offset = base + i64::from(r.offset_delta);
        if map.superseded(key, offset) || (r.tombstone && had.is_some_and(|x| x <= now_ms)) {
            continue;
        }
        tombstones |= r.tombstone;
        kept.push(r);
    }
    let dropped = (recs.len() - kept.len()) as u64;
    if h.is_transactional() {
        txns.data(h.producer_id, !kept.is_empty());
    }
    if kept.is_empty() {
        let timestamp = h.max_timestamp;
        return Ok((
            Rewritten::Empty {
                span: h.offset_span(),
                timestamp,
            },
            dropped,
        ));
    }
    let horizon = match (tombstones, had) {
        (false, _) => None,
        (true, Some(x)) => Some(x),
        (true, None) => Some(now_ms.saturating_add(delete_retention_ms)),
    };
    if dropped == 0 && (had.is_some() || !tombstones) {
        return Ok((Rewritten::Same { horizon }, 0));
    }
    // A new horizon only for a batch that has none; an old one stays in the header.
    let stamp = if had.is_some() { None } else { horizon };
    Ok((
        Rewritten::New {
            batch: retain::rebuild(&h, &kept, stamp),
            horizon,
        },
        dropped,
    ))
}

/// What one pass over a partition did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    /// Bytes of index entries rewritten (read and cleaned).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_removed: u64,
    /// Objects written (each swapped in).
    pub objects: u64,
    pub gets: u64,
    pub puts: u64,
}

/// What the cleaner works with: the store, the index and the counters.
pub struct Ctx<'a> {
    pub meta: &'a dyn MetaStore,
    pub store: &'a dyn ObjectStore,
    pub metrics: &'a Metrics,
    pub settings: Settings,
}

impl Ctx<'_> {
    async fn read(&self, e: &IndexEntry, stats: &mut Cleaned) -> anyhow::Result<Bytes> {
        let range = e.data_offset..e.data_offset + e.data_len;
        let body = self
            .store
            .get_range(&Path::from(e.object_key.as_str()), range)
            .await?;
        stats.gets += 1;
        Metrics::add(&self.metrics.cleaner_gets, 1);
        Metrics::add(&self.metrics.cleaner_read_bytes, body.len() as u64);
        if body.len() as u64 != e.data_len {
            anyhow::bail!(
                "object {} returned {} bytes, not {}",
                e.object_key,
                body.len(),
                e.data_len
            );
        }
        Ok(body)
    }
}

/// The batches of one entry's bytes at their offsets, each checked (whole, CRC), and
/// ending exactly at the entry's end offset.
fn batches(body: &[u8], e: &IndexEntry) -> anyhow::Result<Vec<(i64, std::ops::Range<usize>)>> {
    let mut out = Vec::new();
    let mut next = e.base_offset;
    let mut at = 0;
    for b in batch::walk(body) {
        let bytes = &body[b.range.clone()];
        if crc32c::crc32c(bytes.get(21..).unwrap_or_default()) != b.header.crc {
            anyhow::bail!(
                "batch at offset {next} of object {} fails its CRC",
                e.object_key
            );
        }
        out.push((next, b.range.clone()));
        next += b.header.offset_span();
        at = b.range.end;
    }
    if at != body.len() || next != e.end_offset {
        anyhow::bail!(
            "entry {}..{} of object {} does not hold whole batches spanning it",
            e.base_offset,
            e.end_offset,
            e.object_key
        );
    }
    Ok(out)
}

/// All index entries of a partition from offset `from`, in offset order.
pub(crate) async fn all_entries(
    meta: &dyn MetaStore,
    topic: Uuid,
    partition: i32,
    from: i64,
) -> Result<Vec<IndexEntry>, MetaError> {
    let mut entries = Vec::new();
    let mut from = from;
    loop {
        let page = meta.index_from(topic, partition, from, PAGE).await?;
        let done = page.len() < PAGE;
        if let Some(last) = page.last() {
            from = last.end_offset;
        }
        entries.extend(page);
        if done {
            return Ok(entries);
        }
    }
}

/// One output object being filled: the entries it replaces and the batches it holds.
#[derive(Default)]
struct Group {
    old: Vec<IndexEntry>,
    out: Vec<Bytes>,
    spans: Vec<i64>,
    bytes: u64,
    /// Something was dropped or stamped, or an input was dirty: the group must be swapped.
    changed: bool,
    horizon: Option<i64>,
    /// A run of emptied batches not yet written: base offset, span, timestamp.
    empty: Option<(i64, i64, i64)>,
}

impl Group {
    fn flush_empty(&mut self) {
        if let Some((base, span, ts)) = self.empty.take() {
            let b = retain::empty_batch(base, span, ts);
            self.bytes += b.len() as u64;
            self.out.push(Bytes::from(b));
            self.spans.push(span);
        }
    }

    fn push(&mut self, b: Bytes, span: i64) {
        self.flush_empty();
        self.bytes += b.len() as u64;
        self.out.push(b);
        self.spans.push(span);
    }

    fn push_empty(&mut self, base: i64, span: i64, ts: i64) {
        match &mut self.empty {
            Some((b, s, t)) if *b + *s == base && *s + span <= 1 << 31 => {
                *s += span;
                *t = (*t).max(ts);
            }
            _ => {
                self.flush_empty();
                self.empty = Some((base, span, ts));
            }
        }
    }
}

/// One cleaning pass over a partition (see the module docs). Returns what it did;
/// nothing when no pass was due.
pub async fn clean_partition(
    ctx: &Ctx<'_>,
    topic: &TopicInfo,
    partition: i32,
    now_ms: i64,
) -> anyhow::Result<Cleaned> {
    let mut stats = Cleaned::default();
    let policy = Policy::of(topic);
    let offsets = ctx.meta.partition_offsets(topic.id, partition).await?;
    let entries = all_entries(ctx.meta, topic.id, partition, offsets.log_start).await?;
    let Some(plan) = plan(&entries, offsets.last_stable, now_ms, &policy) else {
        return Ok(stats);
    };
    let limits = Limits {
        max_uncompressed: ctx.settings.max_uncompressed,
    };
    // Aborted transactions over the range (it ends below the last stable offset, so
    // every transaction in it is finished).
    let taken = &entries[..plan.clean + plan.dirty];
    let aborted = match (taken.first(), taken.last()) {
        (Some(first), Some(last)) => {
            ctx.meta
                .aborted_transactions(topic.id, partition, first.base_offset, last.end_offset)
                .await?
        }
        _ => Vec::new(),
    };
    // 1. The key map of the dirty range; its bodies are kept for the rewrite while they fit.
    let mut map = KeyMap::with_budget(ctx.settings.dedupe_buffer_bytes);
    let mut kept: HashMap<usize, Bytes> = HashMap::new();
    let mut kept_bytes = 0;
    let mut end = plan.clean + plan.dirty;
    let dirty = entries.iter().enumerate().take(end).skip(plan.clean);
    'entries: for (i, e) in dirty {
        let body = ctx.read(e, &mut stats).await?;
        for (base, range) in batches(&body, e)? {
            let b = &body[range];
            let h = BatchHeader::parse(b)?;
            if h.is_control() || h.records_count == 0 || is_aborted(&h, base, &aborted) {
                continue;
            }
            let region = records::records_region(b, limits)?;
            for r in retain::parse(&region, h.base_timestamp)? {
                let Some(key) = r.key else { continue };
                if !map.put(key, base + i64::from(r.offset_delta)) && i > plan.clean {
                    // Full: this entry waits for the next pass.
                    end = i;
                    break 'entries;
                }
            }
        }
        if kept_bytes + e.data_len <= ctx.settings.max_object_bytes {
            kept_bytes += e.data_len;
            kept.insert(i, body);
        }
    }
    // 2. The rewrite, group by group.
    let max_entries = ctx.meta.max_swap_entries().max(1);
    let mut group = Group::default();
    let mut txns = Txns::new(&aborted);
    for (i, e) in entries[..end].iter().enumerate() {
        let body = match kept.remove(&i) {
            Some(b) => b,
            None => ctx.read(e, &mut stats).await?,
        };
        let contiguous = group
            .old
            .last()
            .is_none_or(|l| l.end_offset == e.base_offset);
        if !group.old.is_empty()
            && (!contiguous
                || group.bytes >= ctx.settings.max_object_bytes
                || group.old.len() >= max_entries)
        {
            let done = std::mem::take(&mut group);
            if !swap(ctx, topic.id, partition, done, &mut stats).await? {
                return Ok(stats);
            }
        }
        group.changed |= !e.object_key.starts_with(CLEANED_PREFIX);
        for (base, range) in batches(&body, e)? {
            let b = &body[range.clone()];
            let (what, dropped) = rewrite_batch(
                b,
                base,
                &map,
                &mut txns,
                now_ms,
                policy.delete_retention_ms,
                limits,
            )?;
            stats.records_removed += dropped;
            let span = BatchHeader::parse(b)?.offset_span();
            match what {
                Rewritten::Same { horizon } => {
                    group.horizon = min_opt(group.horizon, horizon);
                    group.push(body.slice(range), span);
                }
                Rewritten::Empty { span, timestamp } => {
                    // An empty batch left by an earlier pass, merged again, is no change.
                    group.changed |= dropped > 0 || group.empty.is_some();
                    group.push_empty(base, span, timestamp);
                }
                Rewritten::New { batch, horizon } => {
                    group.changed = true;
                    group.horizon = min_opt(group.horizon, horizon);
                    group.push(Bytes::from(batch), span);
                }
            }
        }
        stats.bytes_in += e.data_len;
        group.old.push(e.clone());
    }
    if !group.old.is_empty() {
        swap(ctx, topic.id, partition, group, &mut stats).await?;
    }
    Ok(stats)
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Writes one group's object and swaps it for the entries it replaces. False when the
/// swap lost a race (the pass ends; the next starts over).
async fn swap(
    ctx: &Ctx<'_>,
    topic_id: Uuid,
    partition: i32,
    mut group: Group,
    stats: &mut Cleaned,
) -> anyhow::Result<bool> {
    group.flush_empty();
    if !group.changed {
        return Ok(true);
    }
    let (first, last) = match (group.old.first(), group.old.last()) {
        (Some(f), Some(l)) => (f.clone(), l.clone()),
        _ => return Ok(true),
    };
    let (min_ts, max_ts) = group.old.iter().fold((i64::MAX, i64::MIN), |(lo, hi), e| {
        (lo.min(e.min_timestamp), hi.max(e.max_timestamp))
    });
    let mut builder = ObjectBuilder::new();
    for (b, span) in group.out.iter().zip(&group.spans) {
        builder.add(topic_id, partition, b.clone(), *span as u64, min_ts, max_ts);
    }
    drop(std::mem::take(&mut group.out));
    let (object, infos) = builder.finish();
    let Some(info) = infos.first() else {
        return Ok(true);
    };
    let mut object = object
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    // Each batch's real base offset, written in (as compaction does).
    let range = info.data_offset as usize..(info.data_offset + info.data_len) as usize;
    let mut next = first.base_offset;
    for b in batch::walk(&object[range.clone()]).collect::<Vec<_>>() {
        let at = range.start + b.range.start..range.start + b.range.end;
        batch::set_base_offset(&mut object[at], next);
        next += b.header.offset_span();
    }
    anyhow::ensure!(
        next == last.end_offset,
        "cleaned batches end at offset {next}, the entries at {}",
        last.end_offset
    );
    let key = cleaned_key(group.horizon);
    let size = object.len() as u64;
    let entry = IndexEntry {
        base_offset: first.base_offset,
        end_offset: last.end_offset,
        object_key: key.clone(),
        object_size: size,
        data_offset: info.data_offset,
        data_len: info.data_len,
        min_timestamp: min_ts,
        max_timestamp: max_ts,
    };
    ctx.meta.add_pending_object(&key).await?;
    ctx.store
        .put(&Path::from(key.as_str()), PutPayload::from(object.freeze()))
        .await?;
    stats.puts += 1;
    Metrics::add(&ctx.metrics.cleaner_puts, 1);
    let old: Vec<PartitionEntry> = group
        .old
        .iter()
        .map(|e| PartitionEntry {
            topic_id,
            partition,
            entry: e.clone(),
        })
        .collect();
    let new = [PartitionEntry {
        topic_id,
        partition,
        entry,
    }];
    match ctx
        .meta
        .replace_entries(
            &old,
            &ObjectRef {
                key: key.clone(),
                size,
            },
            &new,
        )
        .await
    {
        Ok(()) => {}
        Err(MetaError::Conflict(what)) => {
            tracing::info!(key = %key, %what, "the cleaner lost a race with retention, compaction or deletion; retrying later");
            let _ = ctx.store.delete(&Path::from(key.as_str())).await;
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    stats.objects += 1;
    stats.bytes_out += info.data_len;
    Metrics::add(&ctx.metrics.cleaner_written_bytes, info.data_len);
    Ok(true)
}

/// Claims the `cleaner` job and cleans every partition of every compacted topic, every
/// `cleaner_interval`, until `stop`.
pub async fn run(
    shared: Arc<crate::Shared>,
    store: Arc<dyn ObjectStore>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let interval = shared.config.cleaner_interval;
    let target = match shared.config.compaction_target_bytes {
        0 => 64 << 20,
        t => t,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
        if !crate::jobs::claim(&shared, "cleaner", interval).await {
            continue;
        }
        let topics = match shared.meta.list_topics().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "the cleaner could not list topics; retrying next interval");
                continue;
            }
        };
        for topic in topics.iter().filter(|t| is_compacted(t)) {
            let ctx = Ctx {
                meta: &*shared.meta,
                store: &*store,
                metrics: &shared.metrics,
                settings: Settings {
                    dedupe_buffer_bytes: shared.config.cleaner_dedupe_buffer_bytes,
                    max_object_bytes: target,
                    max_uncompressed: (crate::topics::max_message_bytes(topic) as u64)
                        .saturating_mul(shared.config.max_decompression_ratio.max(1)),
                },
            };
            for p in 0..topic.partitions {
                if stop.is_cancelled() {
                    return Ok(());
                }
                let started = std::time::Instant::now();
                let outcome = clean_partition(&ctx, topic, p, crate::txn::now_ms()).await;
                if outcome.as_ref().is_ok_and(|c| c.gets > 0) {
                    let ms = started.elapsed().as_millis() as u64;
                    Metrics::add(&shared.metrics.cleaner_busy_ms, ms);
                }
                match outcome {
                    Ok(c) if c.objects > 0 => {
                        tracing::info!(topic = %topic.name, partition = p, bytes_in = c.bytes_in,
                            bytes_out = c.bytes_out, removed = c.records_removed, "cleaned a partition");
                        Metrics::add(&shared.metrics.cleaner_cleaned_bytes, c.bytes_in);
                        Metrics::add(&shared.metrics.cleaner_removed_records, c.records_removed);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(topic = %topic.name, partition = p,
                        error = %format!("{e:#}"), "cleaning a partition failed; retrying next interval"),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
