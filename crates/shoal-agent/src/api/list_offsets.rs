//! ListOffsets: earliest, latest, by timestamp and max timestamp.
//!
//! Latest is the high watermark, or the last stable offset for read_committed. A timestamp lookup asks the index for the first
//! entry whose max timestamp reaches the target, then reads that segment and decodes
//! the batch that holds it (decompressing if needed) to find the exact record, as
//! Kafka's time index plus scan does.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{IndexEntry, TopicInfo};
use shoal_wire::{batch, records};

use crate::errors::meta_code;
use crate::Shared;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(
    shared: &Arc<Shared>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // leader_epoch exists from v4; before that it must stay at its default.
    let epoch = if version >= 4 { 0 } else { -1 };
    let mut infos = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        infos.push(shared.topics.by_name(t.name.0.as_str()).await);
    }
    // Every asked partition's watermarks in one store call, in the order visited below.
    let valid: Vec<(uuid::Uuid, i32)> = req
        .topics
        .iter()
        .zip(&infos)
        .filter_map(|(t, info)| Some((t, info.as_ref().ok()?.as_ref()?)))
        .flat_map(|(t, info)| {
            t.partitions
                .iter()
                .filter(|p| p.partition_index >= 0 && p.partition_index < info.partitions)
                .map(|p| (info.id, p.partition_index))
        })
        .collect();
    let mut watermarks = shared.meta.partitions_offsets(&valid).await.into_iter();
    let mut topics = Vec::with_capacity(req.topics.len());
    for (t, topic) in req.topics.into_iter().zip(infos) {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let info = match &topic {
                Ok(Some(info)) if p.partition_index >= 0 && p.partition_index < info.partitions => {
                    info
                }
                Ok(_) => {
                    parts.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(e) => {
                    parts.push(base.with_error_code(meta_code(e)));
                    continue;
                }
            };
            let offsets = watermarks.next().unwrap_or_else(|| {
                Err(shoal_meta::MetaError::Backend(
                    "fewer watermarks than partitions".into(),
                ))
            });
            match lookup(
                shared,
                info,
                p.partition_index,
                p.timestamp,
                req.isolation_level == 1,
                offsets,
            )
            .await
            {
                Ok((ts, offset)) => parts.push(
                    base.with_timestamp(ts)
                        .with_offset(offset)
                        .with_leader_epoch(epoch),
                ),
                Err(code) => parts.push(base.with_error_code(code)),
            }
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(timestamp, offset)` for one partition, given its watermarks; `(-1, -1)` when no record matches.
async fn lookup(
    shared: &Shared,
    topic: &TopicInfo,
    partition: i32,
    target: i64,
    read_committed: bool,
    offsets: Result<shoal_meta::PartitionOffsets, shoal_meta::MetaError>,
) -> Result<(i64, i64), i16> {
    let offsets = offsets.map_err(|e| meta_code(&e))?;
    match target {
        LATEST if read_committed => return Ok((-1, offsets.last_stable)),
        LATEST => return Ok((-1, offsets.high_watermark)),
        EARLIEST | EARLIEST_LOCAL => return Ok((-1, offsets.log_start)),
        _ => {}
    }
    let entry = if target == MAX_TIMESTAMP {
        shared.meta.index_max_timestamp(topic.id, partition).await
    } else if target < 0 {
        return Err(ResponseError::InvalidRequest.code());
    } else {
        shared
            .meta
            .index_for_timestamp(topic.id, partition, target)
            .await
    };
    let Some(entry) = entry.map_err(|e| meta_code(&e))? else {
        return Ok((-1, -1));
    };
    let data = shared.reader.read_entry(&entry).await.map_err(|e| {
        tracing::warn!(error = %e, "timestamp lookup read failed");
        ResponseError::KafkaStorageError.code()
    })?;
    let want = if target == MAX_TIMESTAMP {
        entry.max_timestamp
    } else {
        target
    };
    let bounds = (
        crate::topics::max_message_bytes(topic),
        shared.config.max_decompression_ratio,
    );
    find_in_segment(&entry, &data, want, target == MAX_TIMESTAMP, bounds)
        .map(|found| found.unwrap_or((-1, -1)))
}

/// Finds the first record with timestamp `>= want` (or `== want` when `exact`) in a
/// segment's batches, whose first offset is `entry.base_offset`. Records are read as
/// produce checked them, bounded by the topic's `max.message.bytes` x the agent's
/// `--max-decompression-ratio`.
fn find_in_segment(
    entry: &IndexEntry,
    data: &Bytes,
    want: i64,
    exact: bool,
    (max_bytes, ratio): (usize, u64),
) -> Result<Option<(i64, i64)>, i16> {
    let mut next = entry.base_offset;
    for b in batch::walk(data) {
        let base = next;
        next += b.header.offset_span();
        let reaches = if exact {
            b.header.max_timestamp == want
        } else {
            b.header.max_timestamp >= want
        };
        if !reaches {
            continue;
        }
        if b.header.is_log_append_time() {
            return Ok(Some((b.header.max_timestamp, base)));
        }
        // Stored batches were checked on produce; the walk is bounded all the same.
        let limits = records::Limits {
            max_uncompressed: (b.range.len().max(max_bytes) as u64).saturating_mul(ratio),
        };
        let mut found = None;
        records::for_each_stored_record(&data[b.range.clone()], limits, |_, r| {
            let ts = b.header.base_timestamp.saturating_add(r.timestamp_delta);
            let hit = if exact { ts == want } else { ts >= want };
            if hit {
                found = Some((ts, base + i64::from(r.offset_delta)));
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| {
            tracing::warn!(error = %e, "could not read a stored batch for a timestamp lookup");
            ResponseError::CorruptMessage.code()
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
