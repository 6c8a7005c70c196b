//! Produce: validate batches, buffer them in the write path, answer after the commit.
//!
//! The ordered part (run before the connection reads its next request) looks up topics,
//! validates every batch (structure, CRC32C, record count, `max.message.bytes`), stamps
//! LogAppendTime where the topic asks for it, and appends to the shared flush buffer.
//! The answer waits for the flush's commit; acks=0 gets no answer at all. A partition
//! whose data is refused gets its error code and the others in the request go on.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;
use shoal_meta::{BatchKind, ProducerBatch, TxnPartition};
use shoal_wire::{batch, records};

use super::{sb, Reply};
use crate::errors::meta_code;
use crate::metrics::Metrics;
use crate::topics::{log_append_time, max_message_bytes};
use crate::txn;
use crate::write_path::{request_deadline, AckReceiver, BatchToWrite, PartitionAppend};
use crate::Shared;

/// Where each partition's answer will come from.
enum Slot {
    Done(PartitionProduceResponse),
    /// Index into the receivers returned by the append.
    Pending {
        partition: i32,
        idx: usize,
    },
}

/// Why a partition's data was refused: the Kafka code, a message, and for a bad record
/// its index in the batch (reported in Produce v8+'s `record_errors`).
struct Refused {
    code: i16,
    message: String,
    record: Option<i32>,
}

impl Refused {
    fn new(code: i16, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
            record: None,
        }
    }

    fn response(self, partition: i32) -> PartitionProduceResponse {
        let errors = self
            .record
            .map(|i| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(i)
                    .with_batch_index_error_message(Some(sb(self.message.clone())))
            })
            .into_iter()
            .collect();
        error(partition, self.code, self.message).with_record_errors(errors)
    }
}

fn error(partition: i32, code: i16, message: impl Into<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(partition)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(sb(message.into())))
}

use shoal_meta::clock::now_ms;

/// The answer of an agent without the `produce` role: INVALID_REQUEST with an
/// explanation for every partition, which clients do not retry (see "Cluster mode" in
/// docs/compatibility.md). acks=0 gets no answer, as always.
pub fn refuse(req: ProduceRequest) -> Reply {
    if req.acks == 0 {
        return Reply::Now(None);
    }
    let responses = req
        .topic_data
        .into_iter()
        .map(|td| {
            let parts = td
                .partition_data
                .iter()
                .map(|pd| {
                    error(
                        pd.index,
                        ResponseError::InvalidRequest.code(),
                        "this Shoal agent does not have the produce role (--roles); \
                         produce through an agent group whose agents have it",
                    )
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(parts)
        })
        .collect();
    Reply::now(ProduceResponse::default().with_responses(responses))
}

/// Handles one Produce request of `frame_len` bytes. Its batches are slices of the frame,
/// so the write path's budget is charged the whole frame they keep alive (at least).
pub async fn handle(
    shared: &Arc<Shared>,
    req: ProduceRequest,
    version: i16,
    frame_len: usize,
) -> Reply {
    let acks = req.acks;
    let req_timeout = req.timeout_ms;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    // Produce v12 (transactions v2): the request itself adds its partitions to the
    // producer's transaction: (transactional id, producer id, epoch), partitions.
    let mut joins: Vec<(usize, TxnPartition)> = Vec::new();
    let mut topics: Vec<(kafka_protocol::messages::TopicName, Vec<Slot>)> = Vec::new();
    let mut appends: Vec<PartitionAppend> = Vec::new();
    for td in req.topic_data {
        let name = td.name.0.as_str().to_string();
        let mut slots = Vec::with_capacity(td.partition_data.len());
        let topic = if !matches!(acks, -1..=1) {
            Err((
                ResponseError::InvalidRequiredAcks.code(),
                format!("acks must be -1, 0 or 1, got {acks}"),
            ))
        } else {
            match shared.topics.by_name(&name).await {
                Ok(Some(t)) => Ok(t),
                Ok(None) => Err((
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic '{name}' does not exist"),
                )),
                Err(e) => Err((meta_code(&e), e.to_string())),
            }
        };
        for pd in td.partition_data {
            let p = pd.index;
            let topic = match &topic {
                Ok(t) => t,
                Err((code, msg)) => {
                    slots.push(Slot::Done(error(p, *code, msg.clone())));
                    continue;
                }
            };
            if p < 0 || p >= topic.partitions {
                slots.push(Slot::Done(error(
                    p,
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic '{name}' has no partition {p}"),
                )));
                continue;
            }
            let ratio = shared.config.max_decompression_ratio;
            match prepare(topic, pd.records, acks, ratio) {
                Ok((batches, lat)) => {
                    if version >= 12 && transactional(&batches) {
                        joins.push((
                            appends.len(),
                            TxnPartition {
                                topic: name.clone(),
                                topic_id: topic.id,
                                partition: p,
                            },
                        ));
                    }
                    slots.push(Slot::Pending {
                        partition: p,
                        idx: appends.len(),
                    });
                    appends.push(PartitionAppend {
                        topic_id: topic.id,
                        partition: p,
                        batches,
                        log_append_time: lat,
                    });
                }
                Err(refused) => {
                    Metrics::add(&shared.metrics.produce_rejected_batches, 1);
                    tracing::debug!(topic = %name, partition = p, code = refused.code, "refused produce data: {}", refused.message);
                    slots.push(Slot::Done(refused.response(p)));
                }
            }
        }
        topics.push((td.name, slots));
    }
    if !joins.is_empty() {
        let refused = join_transaction(shared, transactional_id.as_deref(), &appends, &joins).await;
        if let Some(refused) = refused {
            drop_refused(&mut topics, &mut appends, &joins, refused);
        }
    }
    let bytes: u64 = appends
        .iter()
        .flat_map(|a| &a.batches)
        .map(|b| b.bytes.len() as u64)
        .sum();
    let batches: u64 = appends.iter().map(|a| a.batches.len() as u64).sum();
    let receivers: Result<Vec<AckReceiver>, _> = if appends.is_empty() {
        Ok(Vec::new())
    } else {
        shared
            .writer
            .append(appends, frame_len, request_deadline(req_timeout))
            .await
    };
    if acks == 0 {
        return Reply::Now(None);
    }
    let metrics = shared.metrics.clone();
    Reply::Later(Box::pin(async move {
        let mut receivers = receivers.map(|r| r.into_iter().map(Some).collect::<Vec<_>>());
        let mut responses = Vec::with_capacity(topics.len());
        let mut all_ok = true;
        for (name, slots) in topics {
            let mut parts = Vec::with_capacity(slots.len());
            for slot in slots {
                let r = match slot {
                    Slot::Done(r) => r,
                    Slot::Pending { partition, idx } => {
                        let outcome = match &mut receivers {
                            Err(e) => Err(e.clone()),
                            Ok(rs) => match rs[idx].take() {
                                Some(rx) => rx
                                    .await
                                    .unwrap_or(Err(crate::errors::WriteError::ShuttingDown)),
                                None => Err(crate::errors::WriteError::ShuttingDown),
                            },
                        };
                        match outcome {
                            Ok(ack) => PartitionProduceResponse::default()
                                .with_index(partition)
                                .with_base_offset(ack.base_offset)
                                .with_log_append_time_ms(ack.log_append_time)
                                .with_log_start_offset(ack.log_start_offset),
                            Err(e) => {
                                all_ok = false;
                                error(partition, e.code(), e.to_string())
                            }
                        }
                    }
                };
                parts.push(r);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(parts),
            );
        }
        if all_ok {
            Metrics::add(&metrics.produced_bytes, bytes);
            Metrics::add(&metrics.produced_batches, batches);
        }
        Some(Box::new(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        )))
    }))
}

/// Whether the partition's batches are transactional data (all of a request's batches
/// come from one producer).
fn transactional(batches: &[BatchToWrite]) -> bool {
    batches.iter().any(|b| {
        matches!(
            b.producer,
            Some(ProducerBatch {
                kind: BatchKind::Data {
                    transactional: true
                },
                ..
            })
        )
    })
}

/// Joins the partitions of a Produce v12 to the producer's transaction
/// ([`txn::join`]); `None` when they joined, else why not, for all of them.
async fn join_transaction(
    shared: &Shared,
    transactional_id: Option<&str>,
    appends: &[PartitionAppend],
    joins: &[(usize, TxnPartition)],
) -> Option<(i16, String)> {
    let Some(id) = transactional_id else {
        return Some((
            ResponseError::InvalidTxnState.code(),
            "transactional records need the request's transactional id".to_string(),
        ));
    };
    let producer = appends[joins[0].0]
        .batches
        .iter()
        .find_map(|b| b.producer)?;
    let partitions: Vec<TxnPartition> = joins.iter().map(|(_, p)| p.clone()).collect();
    let e = txn::join(
        shared,
        id,
        producer.producer_id,
        producer.epoch,
        &partitions,
        None,
    )
    .await
    .err()?;
    tracing::debug!(transactional_id = id, error = %e.message, "produce could not join the transaction");
    // Produce's codes for what the coordinator refused; its unavailability is retriable.
    let code = match e.error {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::CoordinatorNotAvailable | ResponseError::NotCoordinator => {
            ResponseError::NotEnoughReplicas
        }
        other => other,
    };
    Some((code.code(), e.message))
}

/// Answers the joined partitions with `refused` and leaves their data out of the write.
fn drop_refused(
    topics: &mut [(kafka_protocol::messages::TopicName, Vec<Slot>)],
    appends: &mut Vec<PartitionAppend>,
    joins: &[(usize, TxnPartition)],
    (code, message): (i16, String),
) {
    let refused: HashSet<usize> = joins.iter().map(|(i, _)| *i).collect();
    let mut remap = Vec::with_capacity(appends.len());
    let mut kept = 0;
    for i in 0..appends.len() {
        remap.push((!refused.contains(&i)).then(|| {
            kept += 1;
            kept - 1
        }));
    }
    let mut i = 0;
    appends.retain(|_| {
        i += 1;
        !refused.contains(&(i - 1))
    });
    for slot in topics.iter_mut().flat_map(|(_, slots)| slots.iter_mut()) {
        if let Slot::Pending { partition, idx } = *slot {
            *slot = match remap[idx] {
                Some(idx) => Slot::Pending { partition, idx },
                None => Slot::Done(error(partition, code, message.clone())),
            };
        }
    }
}

/// Validates one partition's records and turns them into batches to write: each
/// batch's header and CRC, then every record in it (decompressed, bounded by
/// `max.message.bytes` x `ratio`) and, for CreateTime topics, every record's timestamp
/// against `message.timestamp.before/after.max.ms`, as Kafka's log validator does.
/// Returns the batches and the LogAppendTime used (-1 for CreateTime topics).
fn prepare(
    topic: &shoal_meta::TopicInfo,
    records: Option<Bytes>,
    acks: i16,
    ratio: u64,
) -> Result<(Vec<BatchToWrite>, i64), Refused> {
    let records = records.ok_or(Refused::new(
        ResponseError::CorruptMessage.code(),
        "partition data has no records",
    ))?;
    let infos = batch::validate_batches(&records).map_err(refused)?;
    let limit = max_message_bytes(topic);
    let lat = if log_append_time(topic) { now_ms() } else { -1 };
    let window = (lat < 0).then(|| timestamp_window(topic, now_ms()));
    let compacted = crate::cleaner::is_compacted(topic);
    let limits = records::Limits {
        max_uncompressed: (limit as u64).saturating_mul(ratio),
    };
    let mut out = Vec::with_capacity(infos.len());
    for info in infos {
        let len = info.range.len();
        if len > limit {
            return Err(Refused::new(
                ResponseError::MessageTooLarge.code(),
                format!(
                    "record batch of {len} bytes exceeds the topic's max.message.bytes of {limit}"
                ),
            ));
        }
        if info.header.is_control() {
            return Err(Refused::new(
                ResponseError::InvalidRecord.code(),
                "clients may not produce control batches",
            ));
        }
        let producer = producer_fields(&info.header, acks).map_err(|(c, m)| Refused::new(c, m))?;
        let base_ts = info.header.base_timestamp;
        let mut late_or_early = false;
        records::for_each_record(&records[info.range.clone()], limits, |index, r| {
            crate::cleaner::check_key(compacted, index, r.key_len)?;
            let ts = base_ts.saturating_add(r.timestamp_delta);
            match window {
                Some((lo, hi)) if !(lo..=hi).contains(&ts) => {
                    late_or_early = true;
                    Err(batch::BatchError::Record {
                        index,
                        why: "timestamp outside the topic's message.timestamp.before.max.ms / after.max.ms",
                    })
                }
                _ => Ok(ControlFlow::Continue(())),
            }
        })
        .map_err(|e| {
            let mut r = refused(e);
            if late_or_early {
                r.code = ResponseError::InvalidTimestamp.code();
            }
            r
        })?;
        let mut bytes = records.slice(info.range.clone());
        let mut max_ts = info.header.max_timestamp;
        if lat >= 0 {
            let mut owned = BytesMut::from(&bytes[..]);
            batch::set_log_append_time(&mut owned, lat);
            bytes = owned.freeze();
            max_ts = lat;
        }
        out.push(BatchToWrite {
            bytes,
            offset_span: info.header.offset_span() as u64,
            min_timestamp: if lat >= 0 { lat } else { base_ts },
            max_timestamp: max_ts,
            producer,
        });
    }
    Ok((out, lat))
}

fn refused(e: batch::BatchError) -> Refused {
    Refused {
        code: e.kafka_code(),
        record: e.record_index(),
        message: e.to_string(),
    }
}

/// The record timestamps a CreateTime topic accepts at `now`: not more than
/// `message.timestamp.before.max.ms` in the past nor `after.max.ms` in the future.
fn timestamp_window(topic: &shoal_meta::TopicInfo, now: i64) -> (i64, i64) {
    let before = config_ms(topic, "message.timestamp.before.max.ms");
    let after = config_ms(topic, "message.timestamp.after.max.ms");
    (now.saturating_sub(before), now.saturating_add(after))
}

fn config_ms(topic: &shoal_meta::TopicInfo, key: &str) -> i64 {
    crate::topics::effective(&topic.configs, key)
        .parse::<i64>()
        .unwrap_or(i64::MAX)
        .max(0)
}

/// The producer fields the commit checks, for a batch written with a producer id
/// (idempotent or transactional); `None` for plain batches.
fn producer_fields(
    h: &batch::BatchHeader,
    acks: i16,
) -> Result<Option<ProducerBatch>, (i16, String)> {
    if h.producer_id < 0 {
        if h.is_transactional() {
            return Err((
                ResponseError::InvalidRecord.code(),
                "a transactional batch must carry a producer id".to_string(),
            ));
        }
        return Ok(None);
    }
    if acks != -1 {
        return Err((
            ResponseError::InvalidRequiredAcks.code(),
            "idempotent and transactional producers must use acks=all (-1)".to_string(),
        ));
    }
    if h.base_sequence < 0 || h.producer_epoch < 0 {
        return Err((
            ResponseError::InvalidRecord.code(),
            format!(
                "batch with producer id {} has an invalid sequence {} or epoch {}",
                h.producer_id, h.base_sequence, h.producer_epoch
            ),
        ));
    }
    Ok(Some(ProducerBatch {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        first_sequence: h.base_sequence,
        last_sequence: batch::add_sequence(h.base_sequence, h.last_offset_delta),
        kind: BatchKind::Data {
            transactional: h.is_transactional(),
        },
    }))
}
