//! Fetch: read committed batches, long-poll at the high watermark.
//!
//! The whole request is answered from a task (the connection keeps reading meanwhile).
//! Each round reads every requested partition; if fewer than `min_bytes` came back and
//! `max_wait_ms` has not passed, the task waits until a commit changes one of its
//! partitions ([`crate::commits`]; not a polling timer, and not every commit anywhere)
//! and tries again. read_committed fetches stop at the last stable offset
//! and carry the aborted transactions overlapping what they return, so clients can drop
//! aborted records (control batches travel with the data, as in Kafka).
//!
//! Fetch sessions (KIP-227) are kept by [`crate::fetch_sessions`]: a session's
//! requests name only the partitions that changed, its answers only the partitions with
//! something new; every partition of the session is read each round.
//!
//! Records travel as [`shoal_wire::segments`] markers: the connection writes them from the
//! cached chunks they are slices of, with no copy into the answer's buffer.
//!
//! A partition whose next batch is in a corrupt object ([`crate::quarantine`]) answers
//! CORRUPT_MESSAGE, as Kafka does for a batch failing its CRC; the other partitions of
//! the request are answered as usual.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName};
use kafka_protocol::ResponseError;
use shoal_meta::TopicInfo;
use shoal_wire::segments;

use super::Reply;
use crate::errors::meta_code;
use crate::fetch_sessions::Plan;
use crate::memory::Reservation;
use crate::metrics::Metrics;
use crate::read_path::{Batches, ReadError};
use crate::Shared;

/// Upper bound on a long-poll.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Answers from a task. `memory` is the request's charge ([`crate::memory`]): each read
/// round takes what it may fill from the free budget (twice the records: the answer
/// and its encoding), without waiting; the last round's share is held until the answer
/// is written. A fetch that finds no memory free reads nothing that round.
pub fn handle(
    shared: &Arc<Shared>,
    req: FetchRequest,
    version: i16,
    memory: Option<Arc<Reservation>>,
) -> Reply {
    let shared = shared.clone();
    Reply::Later(Box::pin(async move {
        Some(Box::new(ResponseKind::Fetch(
            fetch(&shared, req, version, memory.as_deref()).await,
        )))
    }))
}

/// The answer of an agent without the `fetch` role: INVALID_REQUEST for every partition,
/// which clients do not retry (see "Cluster mode" in docs/compatibility.md).
pub fn refuse(req: FetchRequest, version: i16) -> FetchResponse {
    let read_committed = req.isolation_level == 1;
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_aborted_transactions(if read_committed { Some(vec![]) } else { None })
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(if version >= 13 {
                    TopicName::default()
                } else {
                    t.topic
                })
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default()
        .with_responses(responses)
        .with_session_id(0)
}

async fn fetch(
    shared: &Shared,
    mut req: FetchRequest,
    version: i16,
    memory: Option<&Reservation>,
) -> FetchResponse {
    let plan = if version >= 7 {
        shared
            .fetch_sessions
            .begin(&req, version >= 13, &shared.metrics)
    } else {
        Plan::Sessionless
    };
    let (session, incremental) = match plan {
        Plan::Error(code) => {
            return FetchResponse::default()
                .with_error_code(code)
                .with_session_id(0);
        }
        Plan::Sessionless => (0, false),
        Plan::New(id) => (id, false),
        Plan::Incremental { id, topics } => {
            req.topics = topics;
            (id, true)
        }
    };
    let mut resp = fetch_partitions(shared, req, version, memory).await;
    if session != 0 {
        shared
            .fetch_sessions
            .finish(session, incremental, &mut resp);
    }
    resp
}

/// Reads the partitions of `req.topics` (long-polling as the module doc says) and
/// answers for each of them.
async fn fetch_partitions(
    shared: &Shared,
    req: FetchRequest,
    version: i16,
    memory: Option<&Reservation>,
) -> FetchResponse {
    // Resolve topics once: by id from v13, by name before.
    let mut resolved: Vec<(TopicName, uuid::Uuid, Result<Arc<TopicInfo>, i16>)> = Vec::new();
    for t in &req.topics {
        let found = if version >= 13 {
            match shared.topics.by_id(t.topic_id).await {
                Ok(Some(info)) => Ok(info),
                Ok(None) => Err(ResponseError::UnknownTopicId.code()),
                Err(e) => Err(meta_code(&e)),
            }
        } else {
            match shared.topics.by_name(t.topic.0.as_str()).await {
                Ok(Some(info)) => Ok(info),
                Ok(None) => Err(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Err(meta_code(&e)),
            }
        };
        resolved.push((t.topic.clone(), t.topic_id, found));
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let asked = (req.max_bytes.max(0) as usize).min(shared.config.fetch_max_bytes);
    let read_committed = req.isolation_level == 1;
    // The partitions each round reads, in the order it visits them (those of known
    // topics with a valid index): their watermarks come in one store call, and a commit
    // to one of them wakes a waiting round.
    let in_range: Vec<(uuid::Uuid, i32)> = req
        .topics
        .iter()
        .zip(&resolved)
        .filter_map(|(t, (_, _, topic))| Some((t, topic.as_ref().ok()?)))
        .flat_map(|(t, info)| {
            t.partitions
                .iter()
                .filter(|p| p.partition >= 0 && p.partition < info.partitions)
                .map(|p| (info.id, p.partition))
        })
        .collect();
    let commits = shared.reader.commits();
    let mut signal = commits.subscribe();
    loop {
        // Partition state read below reflects every report up to `seen`.
        let seen = *signal.borrow_and_update();
        // This round's memory; without any, it reads nothing (and says so in no record).
        let taken = match memory {
            Some(m) => m.try_take(asked.saturating_mul(2)),
            None => None,
        };
        let max_bytes = match (&taken, memory) {
            (Some(t), _) => t.bytes / 2,
            (None, Some(_)) => 0,
            (None, None) => asked,
        };
        let mut total = 0usize;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(req.topics.len());
        // Records read this round, by (topic, partition) position in `responses`: made
        // into slices together once the round is over (see `Batches::assemble`).
        let mut kept: Vec<((usize, usize), Batches)> = Vec::new();
        // Every watermark of the round in one store call, not one per partition.
        let mut watermarks = shared.meta.partitions_offsets(&in_range).await.into_iter();
        for (t, (name, id, topic)) in req.topics.iter().zip(&resolved) {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut pd = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_aborted_transactions(if read_committed { Some(vec![]) } else { None });
                let topic = match topic {
                    Ok(t) if p.partition >= 0 && p.partition < t.partitions => t,
                    Ok(_) => {
                        any_error = true;
                        parts.push(
                            pd.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        );
                        continue;
                    }
                    Err(code) => {
                        any_error = true;
                        parts.push(pd.with_error_code(*code));
                        continue;
                    }
                };
                let read = watermarks.next().unwrap_or_else(|| {
                    Err(shoal_meta::MetaError::Backend(
                        "fewer watermarks than partitions".into(),
                    ))
                });
                let offsets = match read {
                    Ok(o) => o,
                    Err(e) => {
                        any_error = true;
                        parts.push(pd.with_error_code(meta_code(&e)));
                        continue;
                    }
                };
                pd = pd
                    .with_high_watermark(offsets.high_watermark)
                    .with_last_stable_offset(offsets.last_stable)
                    .with_log_start_offset(offsets.log_start);
                let visible_end = if read_committed {
                    offsets.last_stable
                } else {
                    offsets.high_watermark
                };
                if p.fetch_offset < offsets.log_start || p.fetch_offset > offsets.high_watermark {
                    any_error = true;
                    parts.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                    continue;
                }
                let budget =
                    (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
                if p.fetch_offset >= visible_end || max_bytes == 0 {
                    parts.push(pd.with_records(Some(Default::default())));
                    continue;
                }
                match shared
                    .reader
                    // The first partition with data always gets at least one batch (KIP-74).
                    .read_partition(
                        topic.id,
                        &topic.name,
                        p.partition,
                        p.fetch_offset,
                        visible_end,
                        budget,
                        total == 0,
                    )
                    .await
                {
                    Ok(got) if read_committed => {
                        let aborted = shared
                            .meta
                            .aborted_transactions(
                                topic.id,
                                p.partition,
                                p.fetch_offset,
                                got.next_offset.max(p.fetch_offset + 1),
                            )
                            .await;
                        match aborted {
                            Ok(list) => {
                                total += got.records.len();
                                kept.push(((responses.len(), parts.len()), got.records));
                                parts.push(
                                    pd.with_records(Some(Default::default()))
                                        .with_aborted_transactions(Some(
                                            list.iter()
                                                .map(|a| {
                                                    AbortedTransaction::default()
                                                        .with_producer_id(ProducerId(a.producer_id))
                                                        .with_first_offset(a.first_offset)
                                                })
                                                .collect(),
                                        )),
                                );
                            }
                            Err(e) => {
                                any_error = true;
                                parts.push(pd.with_error_code(meta_code(&e)));
                            }
                        }
                    }
                    Ok(got) => {
                        total += got.records.len();
                        kept.push(((responses.len(), parts.len()), got.records));
                        parts.push(pd.with_records(Some(Default::default())));
                    }
                    Err(e @ ReadError::Corrupt { .. }) => {
                        // Logged and counted once by the quarantine. Not retriable: the
                        // Java consumer raises it to the application; the log start must
                        // move past it (`shoal partitions skip-corrupt`).
                        any_error = true;
                        tracing::debug!(topic = %topic.name, partition = p.partition, offset = p.fetch_offset, error = %e, "fetch of a corrupt object");
                        parts.push(pd.with_error_code(ResponseError::CorruptMessage.code()));
                    }
                    Err(e) => {
                        any_error = true;
                        tracing::warn!(topic = %topic.name, partition = p.partition, error = %e, "fetch read failed");
                        parts.push(pd.with_error_code(ResponseError::KafkaStorageError.code()));
                    }
                }
            }
            let name = if version >= 13 {
                TopicName::default()
            } else {
                name.clone()
            };
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(name)
                    .with_topic_id(*id)
                    .with_partitions(parts),
            );
        }
        let (at, batches): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
        for ((t, p), records) in at.into_iter().zip(Batches::assemble(batches)) {
            responses[t].partitions[p].records = Some(segments::marker(records));
        }
        let done = total >= req.min_bytes.max(0) as usize
            || any_error
            || tokio::time::Instant::now() >= deadline
            || shared.stopping.is_cancelled();
        if done {
            if let (Some(m), Some(t)) = (memory, taken) {
                m.keep(t);
            }
            return FetchResponse::default()
                .with_responses(responses)
                .with_session_id(0);
        }
        // Wait for a report naming one of our partitions, the deadline or the agent's
        // shutdown.
        let mut reread = false;
        loop {
            tokio::select! {
                r = signal.changed() => if r.is_err() { return FetchResponse::default().with_responses(responses) },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shared.stopping.cancelled() => break,
            }
            if commits.changed_since(seen, &in_range) {
                Metrics::add(&shared.metrics.fetch_wakeups_read, 1);
                reread = true;
                break;
            }
            Metrics::add(&shared.metrics.fetch_wakeups_skipped, 1);
        }
        // At the deadline (or shutdown) with no commit to our partitions since this
        // round read them, its answer is current: an idle long-poll reads each
        // partition once, not twice. Otherwise read again, for the new records and
        // watermarks.
        if !reread && !commits.changed_since(seen, &in_range) {
            if let (Some(m), Some(t)) = (memory, taken) {
                m.keep(t);
            }
            return FetchResponse::default()
                .with_responses(responses)
                .with_session_id(0);
        }
    }
}
