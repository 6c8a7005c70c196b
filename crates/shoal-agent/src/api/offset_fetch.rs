//! OffsetFetch: a group's committed offsets (v1–v7 one group, v8+ batched groups).
//! Partitions without a committed offset answer offset -1, as Kafka does. With
//! `require_stable` (v7+), partitions whose offsets an unfinished transaction staged
//! answer UNSTABLE_OFFSET_COMMIT, which clients retry. Groups another agent coordinates
//! get NOT_COORDINATOR (v1, which has no group-level error, on every partition asked).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::ResponseError;
use shoal_meta::GroupOffset;

use super::{sb, topic_name};
use crate::cluster;
use crate::errors::group_meta_code;
use crate::Shared;

/// One answered partition: (offset, leader epoch, metadata, error code).
type Answer = (i64, i32, String, i16);
/// topic → partition → answer, in order.
type Answers = BTreeMap<String, BTreeMap<i32, Answer>>;

async fn lookup(
    shared: &Shared,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Answers, i16> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId.code());
    }
    if !cluster::coordinates(shared, group) {
        return Err(ResponseError::NotCoordinator.code());
    }
    let stored: Vec<GroupOffset> = shared
        .meta
        .group_offsets(group)
        .await
        .map_err(|e| group_meta_code(&e))?;
    let mut by_key: Answers = BTreeMap::new();
    for o in stored {
        by_key.entry(o.topic).or_default().insert(
            o.partition,
            (o.offset, o.leader_epoch, o.metadata.unwrap_or_default(), 0),
        );
    }
    if require_stable {
        let pending = shared
            .meta
            .pending_txn_offsets(group)
            .await
            .map_err(|e| group_meta_code(&e))?;
        for (topic, p) in pending {
            by_key.entry(topic).or_default().insert(
                p,
                (
                    -1,
                    -1,
                    String::new(),
                    ResponseError::UnstableOffsetCommit.code(),
                ),
            );
        }
    }
    match wanted {
        None => Ok(by_key),
        Some(list) => {
            let mut out: Answers = BTreeMap::new();
            for (topic, parts) in list {
                let have = by_key.get(&topic);
                let entry = out.entry(topic.clone()).or_default();
                for p in parts {
                    let a =
                        have.and_then(|h| h.get(&p))
                            .cloned()
                            .unwrap_or((-1, -1, String::new(), 0));
                    entry.insert(p, a);
                }
            }
            Ok(out)
        }
    }
}

pub async fn handle(
    shared: &Arc<Shared>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    if version < 8 {
        let wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
                .collect()
        });
        let stable = version >= 7 && req.require_stable;
        // v1 has no group-level error: it goes on each partition asked for.
        let asked = if version < 2 { wanted.clone() } else { None };
        return match lookup(shared, req.group_id.0.as_str(), wanted, stable).await {
            Err(code) if version >= 2 => OffsetFetchResponse::default().with_error_code(code),
            Err(code) => OffsetFetchResponse::default().with_topics(
                asked
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(sb("")))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Ok(answers) => OffsetFetchResponse::default().with_topics(
                answers
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, (offset, e, meta, code))| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch(e))
                                            .with_metadata(Some(sb(meta)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        };
    }
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let wanted = g.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes))
                .collect()
        });
        let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        groups.push(
            match lookup(shared, g.group_id.0.as_str(), wanted, req.require_stable).await {
                Err(code) => group.with_error_code(code),
                Ok(answers) => group.with_topics(
                    answers
                        .into_iter()
                        .map(|(topic, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(topic_name(&topic))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, (offset, e, meta, code))| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_error_code(code)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(e)
                                                .with_metadata(Some(sb(meta)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            },
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}
