//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
//!
//! - TOPIC: topic configs are stored in the metadata store; every accepted key is
//!   reported with its explicit value (source DYNAMIC_TOPIC_CONFIG) or Kafka's default
//!   (DEFAULT_CONFIG).
//! - GROUP (KIP-848): a consumer group's own `consumer.session.timeout.ms` and
//!   `consumer.heartbeat.interval.ms`, stored in the metadata store (see
//!   [`crate::groups::configs`]); unset ones report the agent's flag (DEFAULT_CONFIG).
//! - BROKER: the agent's flags, read-only (see [`super::broker_configs`]); altering one
//!   is refused for that resource, deleting one finds nothing to delete.
//! - BROKER_LOGGER: describes as empty.

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

use super::{broker_configs, sb};
use crate::errors::meta_code;
use crate::groups::configs::{self as group_configs, GROUP_CONFIGS};
use crate::topics::{config_spec, effective, validate_config, TOPIC_CONFIGS};
use crate::Shared;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const GROUP: i8 = 32;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;
const TYPE_INT: i8 = 3;

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
        // No keys, or an empty list, asks for every config (as Kafka reads it).
        let wanted = |k: &str| match &r.configuration_keys {
            None => true,
            Some(keys) => keys.is_empty() || keys.iter().any(|x| x.as_str() == k),
        };
        let answered = match r.resource_type {
            TOPIC => None,
            BROKER => Some(
                broker_configs::describe(
                    shared,
                    &name,
                    &wanted,
                    req.include_synonyms,
                    req.include_documentation,
                )
                .map_err(|why| (ResponseError::InvalidRequest.code(), why)),
            ),
            BROKER_LOGGER => Some(Ok(Vec::new())),
            GROUP => Some(describe_group(shared, &name, &wanted, req.include_synonyms).await),
            other => Some(Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown resource type {other}"),
            ))),
        };
        if let Some(answer) = answered {
            results.push(match answer {
                Ok(configs) => result.with_configs(configs),
                Err((code, why)) => result
                    .with_error_code(code)
                    .with_error_message(Some(sb(why))),
            });
            continue;
        }
        match r.resource_type {
            TOPIC => {}
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

/// The agent's defaults for group configs: (session timeout, heartbeat interval).
fn group_defaults(shared: &Shared) -> (std::time::Duration, std::time::Duration) {
    (
        shared.groups.consumer.session_timeout,
        shared.groups.consumer.heartbeat_interval,
    )
}

/// A group's configs: its own values (GROUP_CONFIG) or the agent's (DEFAULT_CONFIG).
async fn describe_group(
    shared: &Shared,
    group: &str,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    synonyms: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    if group.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "a group config resource needs a group id".into(),
        ));
    }
    let own = shared
        .meta
        .group_configs(group)
        .await
        .map_err(|e| (meta_code(&e), e.to_string()))?;
    let (session, heartbeat) = group_defaults(shared);
    Ok(GROUP_CONFIGS
        .iter()
        .filter(|k| wanted(k))
        .map(|k| {
            let default = if *k == group_configs::SESSION_TIMEOUT {
                session
            } else {
                heartbeat
            };
            let (value, source) = match own.get(*k) {
                Some(v) => (v.clone(), SOURCE_GROUP),
                None => (default.as_millis().to_string(), SOURCE_DEFAULT),
            };
            let mut c = DescribeConfigsResourceResult::default()
                .with_name(sb(*k))
                .with_value(Some(sb(value.clone())))
                .with_config_source(source)
                .with_config_type(TYPE_INT);
            if synonyms {
                c = c.with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(sb(*k))
                    .with_value(Some(sb(value)))
                    .with_source(source)]);
            }
            c
        })
        .collect())
}

/// Stores a group's new config set (`configs`, after the request's changes) as the
/// changes from `before`, once it validates.
async fn store_group(
    shared: &Shared,
    group: &str,
    before: &BTreeMap<String, String>,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if group.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "a group config resource needs a group id".into(),
        ));
    }
    group_configs::validate(&configs, group_defaults(shared))
        .map_err(|why| (ResponseError::InvalidConfig.code(), why))?;
    if validate_only {
        return Ok(());
    }
    let mut changes: Vec<(String, Option<String>)> = before
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    changes.extend(
        configs
            .into_iter()
            .filter(|(k, v)| before.get(k) != Some(v))
            .map(|(k, v)| (k, Some(v))),
    );
    let r = shared.meta.alter_group_configs(group, &changes).await;
    shared.groups.configs.invalidate(group);
    r.map_err(|e| (meta_code(&e), e.to_string()))
}

async fn stored_group_configs(
    shared: &Shared,
    group: &str,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    shared
        .meta
        .group_configs(group)
        .await
        .map_err(|e| (meta_code(&e), e.to_string()))
}

/// BROKER configs are flags: refuses the first key the request would change.
fn refuse_broker(
    shared: &Shared,
    keys: &mut dyn Iterator<Item = &str>,
) -> Result<(), (i16, String)> {
    match keys.next() {
        Some(k) => Err((
            ResponseError::InvalidRequest.code(),
            broker_configs::refusal(shared, k),
        )),
        None => Ok(()),
    }
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
            // Non-incremental: the given set replaces everything.
            let configs: BTreeMap<String, String> = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.as_str().to_string(), v.as_str().to_string()))
                })
                .collect();
            match r.resource_type {
                BROKER => refuse_broker(shared, &mut configs.keys().map(String::as_str)),
                GROUP => {
                    let before = stored_group_configs(shared, &name).await?;
                    store_group(shared, &name, &before, configs, req.validate_only).await
                }
                _ => {
                    topic_configs(shared, r.resource_type, &name).await?;
                    store(shared, &name, configs, req.validate_only).await
                }
            }
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
            if r.resource_type == BROKER {
                // An agent keeps no dynamic configs, so deleting one (as tools clearing
                // replication throttles do) finds nothing to delete: done, as in Kafka.
                return refuse_broker(
                    shared,
                    &mut r
                        .configs
                        .iter()
                        .filter(|c| c.config_operation != 1)
                        .map(|c| c.name.as_str()),
                );
            }
            if r.resource_type == GROUP {
                let before = stored_group_configs(shared, &name).await?;
                let mut configs = before.clone();
                for c in &r.configs {
                    let key = c.name.as_str().to_string();
                    match (c.config_operation, c.value.as_ref()) {
                        (0, Some(v)) => {
                            configs.insert(key, v.as_str().to_string());
                        }
                        (1, _) => {
                            configs.remove(&key);
                        }
                        (0, None) => {
                            return Err((
                                ResponseError::InvalidRequest.code(),
                                format!("SET of '{key}' needs a value"),
                            ))
                        }
                        (op, _) => {
                            return Err((
                                ResponseError::InvalidConfig.code(),
                                format!("operation {op} does not apply to group config '{key}'; use SET or DELETE"),
                            ))
                        }
                    }
                }
                return store_group(shared, &name, &before, configs, req.validate_only).await;
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
