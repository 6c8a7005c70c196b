//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic configs.
//!
//! Topic configs are stored in the metadata store; every accepted key is reported with
//! its explicit value (source DYNAMIC_TOPIC_CONFIG) or Kafka's default (DEFAULT_CONFIG).
//! Broker resources describe as empty and cannot be altered: agents take their settings
//! from flags, not from the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;

use super::sb;
use crate::errors::meta_code;
use crate::topics::{config_spec, effective, validate_config, TOPIC_CONFIGS};
use crate::Shared;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn describe(
    shared: &Arc<Shared>,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.as_str().to_string();
        let result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        match r.resource_type {
            TOPIC => {}
            BROKER | BROKER_LOGGER => {
                results.push(result);
                continue;
            }
            other => {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!("unknown resource type {other}")))),
                );
                continue;
            }
        }
        let topic = match shared.topics.by_name(&name).await {
            Ok(Some(t)) => t,
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
        let wanted = |k: &str| match &r.configuration_keys {
            None => true,
            Some(keys) => keys.iter().any(|x| x.as_str() == k),
        };
        let configs = TOPIC_CONFIGS
            .iter()
            .filter(|(k, _, _)| wanted(k))
            .map(|(k, _, ty)| {
                let value = effective(&topic.configs, k).to_string();
                let source = if topic.configs.contains_key(*k) {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                };
                let mut c = DescribeConfigsResourceResult::default()
                    .with_name(sb(*k))
                    .with_value(Some(sb(value.clone())))
                    .with_config_source(source)
                    .with_config_type(*ty as i8);
                if req.include_synonyms {
                    c = c.with_synonyms(vec![DescribeConfigsSynonym::default()
                        .with_name(sb(*k))
                        .with_value(Some(sb(value)))
                        .with_source(source)]);
                }
                c
            })
            .collect();
        results.push(result.with_configs(configs));
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Checks a resource is a topic that exists; the error is (code, message).
async fn topic_configs(
    shared: &Shared,
    ty: i8,
    name: &str,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    if ty != TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            "only topic configs can be altered; agent settings are flags".into(),
        ));
    }
    match shared.topics.by_name(name).await {
        Ok(Some(t)) => Ok(t.configs.clone()),
        Ok(None) => Err((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic '{name}' does not exist"),
        )),
        Err(e) => Err((meta_code(&e), e.to_string())),
    }
}

async fn store(
    shared: &Shared,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    for (k, v) in &configs {
        validate_config(k, v).map_err(|why| (ResponseError::InvalidConfig.code(), why))?;
    }
    if validate_only {
        return Ok(());
    }
    let r = shared.meta.set_topic_configs(name, configs).await;
    shared.topics.invalidate();
    r.map(|_| ()).map_err(|e| (meta_code(&e), e.to_string()))
}

pub async fn alter(shared: &Arc<Shared>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_string();
        let outcome = async {
            topic_configs(shared, r.resource_type, &name).await?;
            // Non-incremental: the given set replaces everything.
            let configs = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.as_str().to_string(), v.as_str().to_string()))
                })
                .collect();
            store(shared, &name, configs, req.validate_only).await
        }
        .await;
        let mut res = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((code, msg)) = outcome {
            res = res.with_error_code(code).with_error_message(Some(sb(msg)));
        }
        out.push(res);
    }
    AlterConfigsResponse::default().with_responses(out)
}

pub async fn incremental_alter(
    shared: &Arc<Shared>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_string();
        let outcome = async {
            if r.resource_type == BROKER && r.configs.iter().all(|c| c.config_operation == 1) {
                // An agent keeps no dynamic configs, so deleting one (as tools clearing
                // replication throttles do) finds nothing to delete: done, as in Kafka.
                return Ok(());
            }
            let mut configs = topic_configs(shared, r.resource_type, &name).await?;
            for c in &r.configs {
                let key = c.name.as_str().to_string();
                let value = c.value.as_ref().map(|v| v.as_str().to_string());
                if config_spec(&key).is_none() {
                    return Err((
                        ResponseError::InvalidConfig.code(),
                        format!("unknown topic config '{key}'"),
                    ));
                }
                match c.config_operation {
                    0 => {
                        let v = value.ok_or((
                            ResponseError::InvalidRequest.code(),
                            format!("SET of '{key}' needs a value"),
                        ))?;
                        configs.insert(key, v);
                    }
                    1 => {
                        configs.remove(&key);
                    }
                    op @ (2 | 3) => {
                        if key != "cleanup.policy" {
                            return Err((
                                ResponseError::InvalidConfig.code(),
                                format!("APPEND/SUBTRACT only apply to list configs, not '{key}'"),
                            ));
                        }
                        let current = effective(&configs, &key).to_string();
                        let mut items: Vec<String> = current
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                        {
                            if op == 2 && !items.iter().any(|i| i == v) {
                                items.push(v.to_string());
                            } else if op == 3 {
                                items.retain(|i| i != v);
                            }
                        }
                        configs.insert(key, items.join(","));
                    }
                    other => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("unknown config operation {other}"),
                        ))
                    }
                }
            }
            store(shared, &name, configs, req.validate_only).await
        }
        .await;
        let mut res = IncResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err((code, msg)) = outcome {
            res = res.with_error_code(code).with_error_message(Some(sb(msg)));
        }
        out.push(res);
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}
