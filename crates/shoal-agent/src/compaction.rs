//! Compaction: merges small flush objects into larger ones where each partition's data is
//! contiguous.
//!
//! A pass takes the oldest objects the index still references that are smaller than half
//! of `compaction_target_bytes` — compacted objects (`compacted/…`) that are still small,
//! then flush objects (`data/…`) — up to the target in total, copies every index entry
//! pointing into them into one new object (`compacted/…`) grouped by partition in offset
//! order, with
//! each batch's base offset written in, and swaps the entries in one metadata step
//! ([`MetaStore::replace_entries`]): entries adjacent in offsets become one. If any entry
//! changed underneath (retention, DeleteRecords, a deleted topic), the swap fails whole
//! and the new object is deleted; the next pass starts over. The replaced objects are
//! then unreferenced and GC deletes them after its grace period, so fetches that found
//! them in the index just before the swap still read them.
//!
//! A crash between the PUT and the swap leaves an object nothing references (deleted by
//! GC's orphan rule); a crash after the swap leaves the old objects to GC. Either way no
//! offset is lost or duplicated, because offsets live in the index, which changes only
//! in the one atomic step. Objects of half the target or more are left as they are, so
//! the object count stays near total bytes / (target / 2).
//!
//! Every input batch's CRC is checked before it is copied, as are its entries' byte
//! ranges and offsets. An input failing a check is quarantined ([`crate::quarantine`]),
//! left out of this pass (its entries keep pointing at it) and of later ones, and the
//! pass goes on with the rest: one corrupt object never stops compaction, nor is it
//! copied into a new object.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use shoal_meta::{IndexEntry, MetaError, ObjectRef, PartitionEntry};
use shoal_object::ObjectBuilder;
use shoal_wire::batch;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::quarantine::Corruption;
use crate::Shared;

/// Flush objects considered per pass at most.
const CANDIDATES: usize = 1000;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub objects_in: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

fn compacted_key() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("compacted/{ms:013}-{}.shoal", Uuid::new_v4().simple())
}

/// Picks the oldest objects smaller than half the target whose sizes add up to at most
/// `target` (at least two; larger objects are left as they are).
pub fn pick(candidates: &[ObjectRef], target: u64) -> Vec<ObjectRef> {
    let mut out = Vec::new();
    let mut total = 0;
    for o in candidates.iter().filter(|o| o.size < target / 2) {
        if total + o.size > target && !out.is_empty() {
            break;
        }
        total += o.size;
        out.push(o.clone());
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

/// How many small compacted objects make merging them more urgent than new flushes.
const SMALL_COMPACTED_LIMIT: usize = 8;

/// Which objects a pass merges: flush objects first (each is copied once into a
/// compacted object), small compacted objects once there are many of them or no
/// flush objects wait (so a slow trickle of data does not leave a long tail of small
/// objects, and busy partitions do not copy a growing object over and over).
pub fn choose(flushed: &[ObjectRef], small: &[ObjectRef], target: u64) -> Vec<ObjectRef> {
    if small.len() >= SMALL_COMPACTED_LIMIT {
        return pick(small, target);
    }
    match pick(flushed, target) {
        v if v.is_empty() => pick(small, target),
        v => v,
    }
}

/// Whether `body` (a whole object) holds the segment `e` says: its byte range inside
/// the object, whole batches filling it, each passing its CRC, spanning exactly the
/// entry's offsets. The error says what is wrong.
pub fn check_entry(body: &[u8], e: &IndexEntry) -> Result<(), String> {
    let range = e.data_offset as usize..(e.data_offset + e.data_len) as usize;
    let Some(data) = body.get(range) else {
        return Err(format!(
            "the object has {} bytes; its index entry needs {}..{}",
            body.len(),
            e.data_offset,
            e.data_offset + e.data_len
        ));
    };
    let mut at = 0usize;
    let mut next = e.base_offset;
    for b in batch::walk(data) {
        if b.range.start != at {
            break;
        }
        let bytes = &data[b.range.clone()];
        if crc32c::crc32c(bytes.get(21..).unwrap_or_default()) != b.header.crc {
            return Err(format!("batch at offset {next} fails its CRC"));
        }
        next += b.header.offset_span();
        at = b.range.end;
    }
    if at != data.len() {
        return Err(format!("no whole batch at byte {at} of its segment"));
    }
    if next != e.end_offset {
        return Err(format!(
            "segment batches end at offset {next}, its index entry at {}",
            e.end_offset
        ));
    }
    Ok(())
}

/// One compaction pass. Returns what it merged (nothing when fewer than two objects wait).
pub async fn compact_once(
    shared: &Shared,
    store: &dyn ObjectStore,
    target: u64,
) -> anyhow::Result<Compacted> {
    let mut small = shared
        .meta
        .referenced_objects("compacted/", CANDIDATES)
        .await?;
    let quarantine = shared.reader.quarantine();
    small.retain(|o| o.size < target / 2 && !quarantine.contains(&o.key));
    let mut flushed = shared.meta.referenced_objects("data/", CANDIDATES).await?;
    flushed.retain(|o| !quarantine.contains(&o.key));
    let chosen = choose(&flushed, &small, target);
    if chosen.is_empty() {
        return Ok(Compacted::default());
    }
    let mut old: Vec<PartitionEntry> = Vec::new();
    let mut merged = 0;
    // The swap must fit one metadata transaction (etcd's --max-txn-ops); the new entries
    // are never more than the old ones.
    let max_entries = shared.meta.max_swap_entries();
    for o in &chosen {
        // Entries may have gone since the listing (retention): then the object is skipped.
        let entries = shared.meta.object_entries(&o.key).await?;
        if !old.is_empty() && old.len() + entries.len() > max_entries {
            break;
        }
        merged += usize::from(!entries.is_empty());
        old.extend(entries);
    }
    if merged < 2 {
        return Ok(Compacted::default());
    }
    // Each object is read whole, once, straight from the store (not through the fetch
    // cache, whose chunks serve consumers), and checked before anything is copied.
    let mut bodies: BTreeMap<String, bytes::Bytes> = BTreeMap::new();
    for o in &chosen {
        if !old.iter().any(|e| e.entry.object_key == o.key) {
            continue;
        }
        let body = store
            .get(&Path::from(o.key.as_str()))
            .await?
            .bytes()
            .await?;
        Metrics::add(&shared.metrics.compaction_gets, 1);
        let bad = old
            .iter()
            .filter(|e| e.entry.object_key == o.key)
            .find_map(|e| check_entry(&body, &e.entry).err().map(|what| (e, what)));
        if let Some((e, what)) = bad {
            let topic = match shared.topics.by_id(e.topic_id).await {
                Ok(Some(t)) => t.name.clone(),
                _ => e.topic_id.to_string(),
            };
            quarantine.report(Corruption {
                object_key: o.key.clone(),
                topic,
                topic_id: e.topic_id,
                partition: e.partition,
                base_offset: e.entry.base_offset,
                end_offset: e.entry.end_offset,
                what,
                found_by: "compaction",
            });
            continue;
        }
        bodies.insert(o.key.clone(), body);
    }
    // Corrupt inputs stay as they are; the rest are merged if two or more are left.
    old.retain(|e| bodies.contains_key(&e.entry.object_key));
    if bodies.len() < 2 {
        return Ok(Compacted::default());
    }
    let merged = bodies.len();
    // Partition by partition, in offset order.
    let mut by_partition: BTreeMap<(Uuid, i32), Vec<&PartitionEntry>> = BTreeMap::new();
    for e in &old {
        by_partition
            .entry((e.topic_id, e.partition))
            .or_default()
            .push(e);
    }
    let mut builder = ObjectBuilder::new();
    // (topic, partition) -> runs of (first entry, last entry, bytes) in layout order.
    let mut runs: Vec<((Uuid, i32), IndexEntry, u64)> = Vec::new();
    let mut bytes_in = 0;
    for (&(topic_id, partition), entries) in by_partition.iter_mut() {
        entries.sort_by_key(|e| e.entry.base_offset);
        for pe in entries.iter() {
            let e = &pe.entry;
            let body = &bodies[&e.object_key];
            // Checked by check_entry when the body was read.
            let range = e.data_offset as usize..(e.data_offset + e.data_len) as usize;
            bytes_in += e.data_len;
            let span = (e.end_offset - e.base_offset) as u64;
            builder.add(
                topic_id,
                partition,
                // A view of the input, not a copy: the output is the one copy.
                body.slice(range),
                span,
                e.min_timestamp,
                e.max_timestamp,
            );
            match runs.last_mut() {
                Some((key, run, len))
                    if *key == (topic_id, partition) && run.end_offset == e.base_offset =>
                {
                    run.end_offset = e.end_offset;
                    run.min_timestamp = run.min_timestamp.min(e.min_timestamp);
                    run.max_timestamp = run.max_timestamp.max(e.max_timestamp);
                    *len += e.data_len;
                }
                _ => runs.push(((topic_id, partition), e.clone(), e.data_len)),
            }
        }
    }
    let (object, infos) = builder.finish();
    drop(bodies); // the inputs are copied into `object`; free them before the PUT
                  // The builder's output is uniquely owned, so this takes it back without a copy.
    let mut object = object
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let key = compacted_key();
    let size = object.len() as u64;
    // Place the runs: each partition's segment starts at its data offset, runs follow.
    let mut at: BTreeMap<(Uuid, i32), u64> = infos
        .iter()
        .map(|s| ((s.topic_id, s.partition), s.data_offset))
        .collect();
    let new: Vec<PartitionEntry> = runs
        .into_iter()
        .map(|((topic_id, partition), run, len)| {
            let offset = at.get_mut(&(topic_id, partition)).expect("laid out");
            let entry = IndexEntry {
                object_key: key.clone(),
                object_size: size,
                data_offset: *offset,
                data_len: len,
                ..run
            };
            *offset += len;
            // Write each batch's real base offset into the copy.
            let range = entry.data_offset as usize..(entry.data_offset + len) as usize;
            let mut next = entry.base_offset;
            for b in batch::walk(&object[range.clone()]).collect::<Vec<_>>() {
                let at = range.start + b.range.start..range.start + b.range.end;
                batch::set_base_offset(&mut object[at], next);
                next += b.header.offset_span();
            }
            PartitionEntry {
                topic_id,
                partition,
                entry,
            }
        })
        .collect();
    // Pending before the PUT (compaction is off the produce path), so GC never takes
    // the object for an orphan while the swap is on its way.
    shared.meta.add_pending_object(&key).await?;
    store
        .put(&Path::from(key.as_str()), PutPayload::from(object.freeze()))
        .await?;
    Metrics::add(&shared.metrics.compaction_puts, 1);
    crate::failpoint("compaction-after-put");
    let r = shared
        .meta
        .replace_entries(
            &old,
            &ObjectRef {
                key: key.clone(),
                size,
            },
            &new,
        )
        .await;
    match r {
        Ok(()) => {}
        Err(MetaError::Conflict(what)) => {
            tracing::info!(key = %key, %what, "compaction lost a race with retention or deletion; retrying later");
            let _ = store.delete(&Path::from(key.as_str())).await;
            return Ok(Compacted::default());
        }
        Err(e) => return Err(e.into()),
    }
    crate::failpoint("compaction-after-swap");
    Ok(Compacted {
        objects_in: merged,
        bytes_in,
        bytes_out: size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectRef {
        ObjectRef {
            key: key.into(),
            size,
        }
    }

    #[test]
    fn picks_the_oldest_objects_up_to_the_target() {
        let c = [obj("a", 40), obj("b", 40), obj("c", 40)];
        assert_eq!(pick(&c, 100).len(), 2);
        assert_eq!(pick(&c, 1000).len(), 3);
        // A single object is never rewritten alone.
        assert!(pick(&c[..1], 1000).is_empty());
        assert!(pick(&[obj("big", 500), obj("b", 1)], 100).is_empty());
        // Objects already half the target or more are skipped, not in the way.
        assert_eq!(
            pick(&[obj("big", 50), obj("x", 1), obj("y", 1)], 100).len(),
            2
        );
        assert!(pick(&[], 100).is_empty());
    }

    #[test]
    fn flush_objects_first_unless_small_compacted_ones_pile_up() {
        let flushed = [obj("d1", 10), obj("d2", 10)];
        let small: Vec<ObjectRef> = (0..3).map(|i| obj(&format!("c{i}"), 10)).collect();
        let keys = |v: Vec<ObjectRef>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
        assert_eq!(keys(choose(&flushed, &small, 100)), vec!["d1", "d2"]);
        assert_eq!(
            keys(choose(&flushed[..1], &small, 100)),
            vec!["c0", "c1", "c2"]
        );
        let many: Vec<ObjectRef> = (0..8).map(|i| obj(&format!("c{i}"), 10)).collect();
        assert_eq!(choose(&flushed, &many, 100)[0].key, "c0");
        assert!(choose(&flushed[..1], &small[..1], 100).is_empty());
    }
}
