//! OffsetCommit: store a group's consumed positions in the metadata store.
//!
//! Commits from members are checked against the group's generation; commits with
//! generation -1 and no member id come from consumers outside any group (assign() plus
//! a group id) and are accepted while the group has no members. Groups another agent
//! coordinates get NOT_COORDINATOR on every partition, and so does a commit the
//! metadata store refuses because this agent no longer holds the group's role
//! ([`cluster::roles`]): a coordinator cut off or paused past its lease cannot write.
//!
//! A store out of reach is waited out, for up to `--offset-commit-timeout` (Kafka's
//! `offset.commit.timeout.ms`), before the commit is answered with an error. Clients
//! retry a failed commit, and librdkafka may send its next automatic commit first, so an
//! error answered for a commit that the store then applies late, or that the client
//! retries after its newer one, sets the group's offset back. Each retry re-checks the
//! member's generation (a group that rebalanced meanwhile refuses the commit) and the
//! role (lost, it is answered NOT_COORDINATOR at once); the connection's later requests
//! wait behind it, as in Kafka.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{GroupOffset, MetaError};

use crate::cluster;
use crate::errors::group_meta_code;
use crate::Shared;

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_METADATA: usize = 4096;

/// How often a commit whose store is out of reach is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

pub async fn handle(
    shared: &Arc<Shared>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str().to_string();
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
                &partitions,
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
        let member = Member {
            id: req.member_id.as_str(),
            generation: req.generation_id_or_member_epoch,
            instance: req.group_instance_id.as_ref().map(|s| s.as_str()),
        };
        if let Err(code) = store(shared, &group, &member, &to_store, &partitions).await {
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

/// Who sent a commit, for re-checking it before a retry.
struct Member<'a> {
    id: &'a str,
    generation: i32,
    instance: Option<&'a str>,
}

/// Writes `offsets` as `group`'s coordinator, waiting out a store that is out of reach
/// (see the module doc). The error is the Kafka code to answer with.
async fn store(
    shared: &Arc<Shared>,
    group: &str,
    member: &Member<'_>,
    offsets: &[GroupOffset],
    partitions: &[crate::groups::consumer::Tp],
) -> Result<(), i16> {
    let until = tokio::time::Instant::now() + shared.config.offset_commit_timeout;
    loop {
        let attempt = async {
            let fence = cluster::roles::group_fence(shared, group).await?;
            let r = shared
                .meta
                .commit_group_offsets(group, offsets, &fence)
                .await;
            cluster::roles::check(shared, &fence, r)
        };
        let e = match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // Only a store out of reach is waited out. A lost role (another agent has it,
        // or this agent's lease lapsed) is answered at once: coming back later as the
        // coordinator, this agent must not write a commit its client may have retried
        // elsewhere meanwhile.
        let wait = matches!(e, MetaError::Backend(_));
        if !wait || tokio::time::Instant::now() + RETRY_EVERY > until {
            tracing::warn!(group = %group, error = %e, "offset commit failed");
            return Err(group_meta_code(&e));
        }
        tracing::debug!(group = %group, error = %e, "offset commit: metadata store out of reach; trying again");
        tokio::time::sleep(RETRY_EVERY).await;
        shared.groups.check_commit(
            group,
            member.generation,
            member.id,
            member.instance,
            false,
            partitions,
        )?;
    }
}
