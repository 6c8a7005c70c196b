//! OffsetCommit: store a group's consumed positions in the metadata store.
//!
//! Commits from members are checked against the group's generation; commits with
//! generation -1 and no member id come from consumers outside any group (assign() plus
//! a group id) and are accepted while the group has no members. Groups another agent
//! coordinates get NOT_COORDINATOR on every partition, and so does a commit the
//! metadata store refuses because this agent no longer holds the group's role
//! ([`cluster::roles`]): a coordinator cut off or paused past its lease cannot write.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use shoal_meta::GroupOffset;

use crate::cluster;
use crate::errors::group_meta_code;
use crate::Shared;

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_METADATA: usize = 4096;

pub async fn handle(
    shared: &Arc<Shared>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str().to_string();
    let group_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId.code())
    } else if !cluster::coordinates(shared, &group) {
        Some(ResponseError::NotCoordinator.code())
    } else {
        shared
            .groups
            .check_commit(
                &group,
                req.generation_id_or_member_epoch,
                req.member_id.as_str(),
                req.group_instance_id.as_ref().map(|s| s.as_str()),
                false,
            )
            .err()
    };
    if let Some(code) = group_error {
        tracing::debug!(group = %group, member = %req.member_id.as_str(), generation = req.generation_id_or_member_epoch, code, "offset commit refused");
    }
    let now = shoal_meta::clock::now_ms();
    // (topic index, partition index) → code, filled as we go.
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut to_store = Vec::new();
    let mut stored_at = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.name.0.as_str();
        let (topic, lookup_error) = match group_error {
            Some(_) => (None, None),
            None => match shared.topics.by_name(name).await {
                Ok(t) => (t, None),
                Err(e) => (None, Some(group_meta_code(&e))),
            },
        };
        let mut row = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let code = if let Some(code) = group_error.or(lookup_error) {
                code
            } else if !topic
                .as_ref()
                .is_some_and(|t| p.partition_index >= 0 && p.partition_index < t.partitions)
            {
                ResponseError::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA)
            {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                to_store.push(GroupOffset {
                    topic: name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.as_str().to_string()),
                    commit_timestamp: now,
                });
                stored_at.push((ti, pi));
                0
            };
            row.push(code);
        }
        codes.push(row);
    }
    for o in &to_store {
        tracing::debug!(group = %group, member = %req.member_id.as_str(), generation = req.generation_id_or_member_epoch, topic = %o.topic, partition = o.partition, offset = o.offset, "offset commit");
    }
    if !to_store.is_empty() {
        let committed = async {
            let fence = cluster::roles::group_fence(shared, &group).await?;
            let r = shared
                .meta
                .commit_group_offsets(&group, &to_store, &fence)
                .await;
            cluster::roles::check(shared, &fence, r)
        };
        if let Err(e) = committed.await {
            tracing::warn!(group = %group, error = %e, "offset commit failed");
            let code = group_meta_code(&e);
            for (ti, pi) in stored_at {
                codes[ti][pi] = code;
            }
        }
    }
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, row)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(row)
                        .map(|(p, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
