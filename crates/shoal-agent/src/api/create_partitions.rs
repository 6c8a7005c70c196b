//! CreatePartitions: grow a topic's partition count (never shrink).

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::MetaError;

use super::sb;
use crate::errors::meta_code;
use crate::topics::check_growth;
use crate::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    // Partitions this request already added, for the total cap.
    let mut pending = 0i64;
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let current = match shared.topics.by_name(&name).await {
            Ok(Some(info)) => info.partitions,
            Ok(None) => {
                results.push(
                    result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(sb(format!("topic '{name}' does not exist")))),
                );
                continue;
            }
            Err(e) => {
                results.push(
                    result
                        .with_error_code(meta_code(&e))
                        .with_error_message(Some(sb(e.to_string()))),
                );
                continue;
            }
        };
        if t.count <= current {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidPartitions.code())
                    .with_error_message(Some(sb(format!(
                        "topic '{name}' has {current} partitions; the new count {} must be larger",
                        t.count
                    )))),
            );
            continue;
        }
        let adding = t.count as i64 - current as i64;
        let growth = check_growth(
            &shared.topics,
            &shared.config,
            &name,
            t.count,
            adding,
            pending,
        );
        if let Err((code, why)) = growth.await {
            results.push(
                result
                    .with_error_code(code)
                    .with_error_message(Some(sb(why))),
            );
            continue;
        }
        if req.validate_only {
            pending += adding;
            results.push(result);
            continue;
        }
        match shared.meta.create_partitions(&name, t.count).await {
            Ok(_) => {
                pending += adding;
                tracing::info!(topic = %name, partitions = t.count, "grew topic");
                results.push(result)
            }
            Err(e) => {
                let code = match e {
                    MetaError::Invalid(_) => ResponseError::InvalidPartitions.code(),
                    ref other => meta_code(other),
                };
                results.push(
                    result
                        .with_error_code(code)
                        .with_error_message(Some(sb(e.to_string()))),
                )
            }
        }
    }
    shared.topics.invalidate();
    CreatePartitionsResponse::default().with_results(results)
}
