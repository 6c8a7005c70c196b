//! TxnOffsetCommit: offsets staged by a transaction, applied when it commits. Every
//! partition of the request gets the same outcome. Clients send it to the *group's*
//! coordinator (as in Kafka), so that is the agent that must answer it; the others
//! answer NOT_COORDINATOR. From v3 the request names the consumer's member id and
//! generation (KIP-447), and a zombie whose generation is over is refused with
//! ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID, as OffsetCommit is.

use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;
use shoal_meta::GroupOffset;

use crate::cluster;
use crate::txn;
use crate::Shared;

pub async fn handle(
    shared: &Shared,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let now = txn::now_ms();
    let offsets: Vec<GroupOffset> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| GroupOffset {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                commit_timestamp: now,
            })
        })
        .collect();
    let group = req.group_id.0.as_str();
    let partitions = super::commit_partitions(
        shared,
        req.topics.iter().map(|t| {
            (
                t.name.0.as_str(),
                t.partitions.iter().map(|p| p.partition_index),
            )
        }),
    )
    .await;
    let code = if !cluster::coordinates(shared, group) {
        ResponseError::NotCoordinator.code()
    } else if let Err(code) = shared.groups.check_commit(
        group,
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        true,
        &partitions,
    ) {
        code
    } else {
        stage(shared, &req, &offsets, version).await
    };
    answer(&req, |_| code)
}

/// The answer giving every partition of a topic the code `code_of` gives the topic.
pub(crate) fn answer(
    req: &TxnOffsetCommitRequest,
    code_of: impl Fn(&TxnOffsetCommitRequestTopic) -> i16,
) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let code = code_of(t);
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Stages the offsets; returns the error code.
async fn stage(
    shared: &Shared,
    req: &TxnOffsetCommitRequest,
    offsets: &[GroupOffset],
    version: i16,
) -> i16 {
    match txn::stage_offsets(
        shared,
        req.transactional_id.0.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.group_id.0.as_str(),
        offsets,
        // v5 (transactions v2) also does what AddOffsetsToTxn did.
        version >= 5,
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            let e = txn::for_version(e, version, 3);
            tracing::debug!(error = %e.message, "TxnOffsetCommit refused");
            e.code()
        }
    }
}
