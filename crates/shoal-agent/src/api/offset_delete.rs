//! OffsetDelete: remove a group's committed offsets for some partitions, refused for
//! topics the group's live members subscribe to.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(shared: &Arc<Shared>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.as_str().to_string();
    if !cluster::coordinates(shared, &group) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::NotCoordinator.code());
    }
    let known_in_memory = shared.groups.describe(&group).is_some();
    let has_offsets = match shared.meta.group_offsets(&group).await {
        Ok(o) => !o.is_empty(),
        Err(e) => return OffsetDeleteResponse::default().with_error_code(meta_code(&e)),
    };
    if !known_in_memory && !has_offsets {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = shared.groups.subscribed_topics(&group).unwrap_or_default();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        let code = if subscribed.contains(&name) {
            ResponseError::GroupSubscribedToTopic.code()
        } else {
            let deleted = async {
                let fence = cluster::roles::group_fence(shared, &group).await?;
                let r = shared
                    .meta
                    .delete_group_offsets(&group, &name, &partitions, &fence)
                    .await;
                cluster::roles::check(shared, &fence, r)
            };
            match deleted.await {
                Ok(()) => 0,
                Err(e) => meta_code(&e),
            }
        };
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                ),
        );
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
