//! DeleteTopics: by name (all versions) or by topic id (v6+).
//!
//! Deleting removes the topic, its partitions and its index from the metadata store;
//! the objects holding its data are left for garbage collection (a later job).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::ResponseError;

use super::{sb, topic_name};
use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    req: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    // Names come from `topic_names` (v0-5) or `topics` (v6+, name or id).
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(req.topics.iter().map(|t| {
        (
            t.name.as_ref().map(|n| n.0.as_str().to_string()),
            t.topic_id,
        )
    }));
    let mut results = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => match shared.topics.by_id(id).await {
                Ok(Some(t)) => Some(t.name.clone()),
                _ => None,
            },
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        let Some(n) = resolved else {
            results.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        match shared.meta.delete_topic(&n).await {
            Ok(info) => {
                tracing::info!(topic = %n, "deleted topic");
                results.push(
                    result
                        .with_name(Some(topic_name(&n)))
                        .with_topic_id(info.id),
                );
            }
            Err(e) => results.push(
                result
                    .with_error_code(meta_code(&e))
                    .with_error_message(Some(sb(e.to_string()))),
            ),
        }
    }
    shared.topics.invalidate();
    DeleteTopicsResponse::default().with_responses(results)
}
