//! Metadata: the agents this client should use, and the requested topics.
//!
//! The brokers are the client's agents ([`ClusterView::for_client`]: the live agents of
//! this agent's group, preferring the client's zone); each partition's leader is one of
//! them by hashing ([`partition_leaders`]), and its replicas and ISR are that leader
//! alone. Any agent can serve any partition, so leaders only spread the load; with one
//! agent it leads everything. Agents that left the registry a moment ago are listed
//! too, leading nothing ([`crate::cluster::Departures`]). The controller is the first of the client's agents (any
//! agent handles admin requests). Unknown topics are created only when both the client
//! allows it and the agent was started with auto-creation on.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{AgentInfo, TopicInfo, TopicSpec};

use super::{sb, topic_name};
use crate::cluster::placement::partition_leaders;
use crate::cluster::ClusterView;
use crate::errors::meta_code;
use crate::topics::validate_topic_name;
use crate::Shared;

/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
const NOT_REQUESTED: i32 = i32::MIN;

/// An agent as a Metadata broker, at its address on `listener` (the client's); its
/// zone is the broker's rack (v1+).
pub fn broker(a: &AgentInfo, version: i16, listener: &str) -> MetadataResponseBroker {
    let (host, port) = a.endpoint(listener);
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(a.node_id))
        .with_host(sb(host))
        .with_port(port)
        .with_rack((version >= 1 && !a.az.is_empty()).then(|| sb(a.az.clone())))
}

fn topic_entry(agents: &[&AgentInfo], t: &TopicInfo, ops: i32) -> MetadataResponseTopic {
    let partitions = partition_leaders(agents, t.id, t.partitions)
        .into_iter()
        .zip(0..)
        .map(|(leader, p)| {
            let node = BrokerId(leader);
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(ops)
}

fn error_entry(name: Option<&str>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_error_code(code)
        .with_topic_authorized_operations(NOT_REQUESTED)
}

pub async fn handle(
    shared: &Arc<Shared>,
    client_id: Option<&str>,
    listener: &str,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let view = ClusterView::of(shared);
    let agents = view.for_client(client_id);
    let ops = if req.include_topic_authorized_operations {
        TOPIC_OPERATIONS
    } else {
        NOT_REQUESTED
    };
    tracing::debug!(version, topics = ?req.topics, "metadata request");
    let mut topics = Vec::new();
    match shared.topics.snapshot().await {
        Err(e) => {
            tracing::warn!(error = %e, "metadata lookup failed");
            for t in req.topics.iter().flatten() {
                topics.push(error_entry(
                    t.name.as_ref().map(|n| n.0.as_str()),
                    t.topic_id,
                    meta_code(&e),
                ));
            }
        }
        Ok(snap) => match &req.topics {
            // v0 uses an empty list for "all"; later versions use null.
            None => topics.extend(snap.sorted.iter().map(|t| topic_entry(&agents, t, ops))),
            Some(list) if list.is_empty() && version == 0 => {
                topics.extend(snap.sorted.iter().map(|t| topic_entry(&agents, t, ops)))
            }
            Some(list) => {
                for t in list {
                    // By id when an id is given and no name (clients send null, which
                    // may decode as an empty string).
                    let name = t
                        .name
                        .as_ref()
                        .filter(|n| !n.0.is_empty() || t.topic_id.is_nil());
                    let entry = match name {
                        Some(name) => {
                            by_name(
                                shared,
                                &agents,
                                name.0.as_str(),
                                req.allow_auto_topic_creation || version < 4,
                                ops,
                            )
                            .await
                        }
                        None => match shared.topics.by_id(t.topic_id).await {
                            Ok(Some(info)) => topic_entry(&agents, &info, ops),
                            Ok(None) => {
                                error_entry(None, t.topic_id, ResponseError::UnknownTopicId.code())
                            }
                            Err(e) => error_entry(None, t.topic_id, meta_code(&e)),
                        },
                    };
                    topics.push(entry);
                }
            }
        },
    }
    let controller = agents.first().map_or(shared.config.node_id, |a| a.node_id);
    let brokers = shared.departures.brokers(
        &view,
        &agents,
        client_id,
        shared.config.departed_agent_grace,
    );
    MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|a| broker(a, version, listener))
                .collect(),
        )
        .with_cluster_id(Some(sb(shared.cluster_id.clone())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(NOT_REQUESTED)
}

async fn by_name(
    shared: &Shared,
    agents: &[&AgentInfo],
    name: &str,
    client_allows: bool,
    ops: i32,
) -> MetadataResponseTopic {
    let nil = uuid::Uuid::nil();
    if validate_topic_name(name).is_err() {
        return error_entry(Some(name), nil, ResponseError::InvalidTopicException.code());
    }
    match shared.topics.by_name(name).await {
        Ok(Some(t)) => topic_entry(agents, &t, ops),
        Ok(None) if client_allows && shared.config.auto_create_topics => {
            let spec = TopicSpec {
                name: name.to_string(),
                partitions: shared.config.default_partitions,
                configs: Default::default(),
            };
            let created = shared.meta.create_topic(spec).await;
            shared.topics.invalidate();
            match created {
                Ok(t) => {
                    tracing::info!(
                        topic = name,
                        partitions = t.partitions,
                        "auto-created topic"
                    );
                    topic_entry(agents, &t, ops)
                }
                Err(shoal_meta::MetaError::TopicExists(_)) => {
                    match shared.topics.by_name(name).await {
                        Ok(Some(t)) => topic_entry(agents, &t, ops),
                        _ => error_entry(Some(name), nil, ResponseError::LeaderNotAvailable.code()),
                    }
                }
                Err(e) => error_entry(Some(name), nil, meta_code(&e)),
            }
        }
        Ok(None) => error_entry(
            Some(name),
            nil,
            ResponseError::UnknownTopicOrPartition.code(),
        ),
        Err(e) => error_entry(Some(name), nil, meta_code(&e)),
    }
}
