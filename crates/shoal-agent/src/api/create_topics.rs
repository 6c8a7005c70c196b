//! CreateTopics: validate names, partition counts and configs, then create in the
//! metadata store (or only validate, with `validate_only`).
//!
//! Shoal keeps no replicas (object storage is the durability), so any replication
//! factor is accepted and reported as 1, and manual replica assignments only fix the
//! partition count. A request naming one topic twice gets INVALID_REQUEST for that name
//! (one result), and neither entry is created, as Kafka answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{MetaError, TopicSpec};

use super::{sb, topic_name};
use crate::errors::meta_code;
use crate::topics::{check_growth, effective, validate_config, validate_topic_name, TOPIC_CONFIGS};
use crate::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    req: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let limit = shared.config.max_topics_per_request;
    if req.topics.len() > limit {
        let why = format!(
            "the request creates {} topics; at most {limit} may be created in one request \
             (--max-topics-per-request)",
            req.topics.len()
        );
        let results = req
            .topics
            .iter()
            .map(|t| {
                failed(
                    t.name.0.as_str(),
                    ResponseError::PolicyViolation.code(),
                    why.clone(),
                )
            })
            .collect();
        return CreateTopicsResponse::default().with_topics(results);
    }
    let mut results = Vec::with_capacity(req.topics.len());
    // A name given more than once is refused, once, and none of its entries is created
    // (as Kafka answers).
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut answered_dupes = std::collections::HashSet::new();
    // Partitions this request already added (validate_only too), for the total cap.
    let mut pending = 0i64;
    for t in req.topics {
        let name = t.name.0.to_string();
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            if answered_dupes.insert(name.clone()) {
                let why = format!(
                    "the request names topic '{name}' more than once; name each topic once"
                );
                results.push(failed(&name, ResponseError::InvalidRequest.code(), why));
            }
            continue;
        }
        let result = create_one(shared, t, req.validate_only, pending).await;
        if result.error_code == 0 {
            pending += result.num_partitions as i64;
        }
        results.push(result);
    }
    shared.topics.invalidate();
    CreateTopicsResponse::default().with_topics(results)
}

fn failed(name: &str, code: i16, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic_name(name))
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}

async fn create_one(
    shared: &Shared,
    t: CreatableTopic,
    validate_only: bool,
    pending: i64,
) -> CreatableTopicResult {
    let name = t.name.0.as_str().to_string();
    if let Err(why) = validate_topic_name(&name) {
        return failed(&name, ResponseError::InvalidTopicException.code(), why);
    }
    let partitions = if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        shared.config.default_partitions
    } else {
        t.num_partitions
    };
    if partitions <= 0 {
        return failed(
            &name,
            ResponseError::InvalidPartitions.code(),
            format!("number of partitions must be at least 1, got {partitions}"),
        );
    }
    let growth = check_growth(
        &shared.topics,
        &shared.config,
        &name,
        partitions,
        partitions as i64,
        pending,
    );
    if let Err((code, why)) = growth.await {
        return failed(&name, code, why);
    }
    if t.replication_factor == 0 || t.replication_factor < -1 {
        return failed(
            &name,
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor must be -1 or at least 1, got {}",
                t.replication_factor
            ),
        );
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let key = c.name.as_str().to_string();
        let Some(value) = c.value.as_ref().map(|v| v.as_str().to_string()) else {
            continue;
        };
        if let Err(why) = validate_config(&key, &value) {
            return failed(&name, ResponseError::InvalidConfig.code(), why);
        }
        configs.insert(key, value);
    }
    let spec = TopicSpec {
        name: name.clone(),
        partitions,
        configs: configs.clone(),
    };
    let (id, code, message) = if validate_only {
        match shared.topics.by_name(&name).await {
            Ok(Some(_)) => (
                uuid::Uuid::nil(),
                ResponseError::TopicAlreadyExists.code(),
                Some(format!("topic '{name}' already exists")),
            ),
            Ok(None) => (uuid::Uuid::nil(), 0, None),
            Err(e) => (uuid::Uuid::nil(), meta_code(&e), Some(e.to_string())),
        }
    } else {
        match shared.meta.create_topic(spec).await {
            Ok(info) => {
                tracing::info!(topic = %name, partitions, "created topic");
                (info.id, 0, None)
            }
            Err(e @ MetaError::TopicExists(_)) => {
                (uuid::Uuid::nil(), meta_code(&e), Some(e.to_string()))
            }
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "create topic failed");
                (uuid::Uuid::nil(), meta_code(&e), Some(e.to_string()))
            }
        }
    };
    if code != 0 {
        return failed(&name, code, message.unwrap_or_default());
    }
    let reported = TOPIC_CONFIGS
        .iter()
        .map(|(k, _, _)| {
            CreatableTopicConfigs::default()
                .with_name(sb(*k))
                .with_value(Some(sb(effective(&configs, k))))
                .with_config_source(if configs.contains_key(*k) { 1 } else { 5 })
        })
        .collect();
    CreatableTopicResult::default()
        .with_name(topic_name(&name))
        .with_topic_id(id)
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(Some(reported))
}
