//! One module per Kafka API behind one dispatch table.
//!
//! [`SUPPORTED`] is what ApiVersions advertises: exactly the APIs and versions Shoal
//! implements (not what the `kafka-protocol` crate could encode). [`handle`] runs a
//! request's ordered part and returns either the answer or a future for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::Shared;

pub mod api_versions;
pub mod configs;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

/// What a handler gives back. `None` means no response is sent (acks=0 produce).
pub enum Reply {
    Now(Option<Box<ResponseKind>>),
    Later(Pin<Box<dyn Future<Output = Option<Box<ResponseKind>>> + Send>>),
}

impl Reply {
    fn now(r: impl Into<ResponseKind>) -> Reply {
        Reply::Now(Some(Box::new(r.into())))
    }
}

/// The APIs and version ranges Shoal implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, a, b)| (*a, *b))
}

pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported_range(key).is_some_and(|(a, b)| (a..=b).contains(&version))
}

/// Dispatches one decoded request.
pub async fn handle(shared: &Arc<Shared>, header: &RequestHeader, request: RequestKind) -> Reply {
    let v = header.request_api_version;
    match request {
        RequestKind::ApiVersions(r) => Reply::now(api_versions::handle(r, v)),
        RequestKind::Metadata(r) => Reply::now(metadata::handle(shared, r, v).await),
        RequestKind::CreateTopics(r) => Reply::now(create_topics::handle(shared, r, v).await),
        RequestKind::DeleteTopics(r) => Reply::now(delete_topics::handle(shared, r, v).await),
        RequestKind::CreatePartitions(r) => Reply::now(create_partitions::handle(shared, r).await),
        RequestKind::DescribeConfigs(r) => Reply::now(configs::describe(shared, r, v).await),
        RequestKind::AlterConfigs(r) => Reply::now(configs::alter(shared, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            Reply::now(configs::incremental_alter(shared, r).await)
        }
        RequestKind::DescribeCluster(r) => Reply::now(describe_cluster::handle(shared, r)),
        RequestKind::ListOffsets(r) => Reply::now(list_offsets::handle(shared, r, v).await),
        RequestKind::Produce(r) => produce::handle(shared, r, v).await,
        RequestKind::Fetch(r) => fetch::handle(shared, r, v),
        other => {
            // Unreachable while SUPPORTED and this match agree; answer nothing rather than panic.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            Reply::Now(None)
        }
    }
}

/// `StrBytes` from a `String`.
pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// A topic name as the protocol types want it.
pub(crate) fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(sb(s))
}
