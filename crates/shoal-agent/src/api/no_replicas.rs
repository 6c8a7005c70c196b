//! Admin APIs about replicas and log directories, which Shoal does not have: partitions
//! live in object storage and every agent serves every one, so there is nothing to
//! reassign, elect or move between disks. Each gets a well-formed answer saying so, as
//! Kafka's own error codes put it, instead of a closed connection:
//!
//! - ListPartitionReassignments: none in progress (an empty list).
//! - AlterPartitionReassignments: per partition, INVALID_REPLICA_ASSIGNMENT for a new
//!   assignment and NO_REASSIGNMENT_IN_PROGRESS for a cancellation, with a message.
//! - ElectLeaders: per partition, ELECTION_NOT_NEEDED (the leader is already the one it
//!   would elect), which Kafka's `kafka-leader-election.sh` reports as such.
//! - DescribeLogDirs: one pseudo log directory, [`NO_LOG_DIR`], holding no partitions
//!   (sizes unknown, -1).
//! - AlterReplicaLogDirs: per partition, LOG_DIR_NOT_FOUND.
//!
//! Unknown topics and partitions get UNKNOWN_TOPIC_OR_PARTITION. Each needs the cluster
//! operation Kafka asks for (ALTER, or DESCRIBE for the two reads) when ACLs are on;
//! without it every item gets CLUSTER_AUTHORIZATION_FAILED.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResult;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, ElectLeadersRequest, ElectLeadersResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::authz::authorize_cluster;
use super::sb;
use shoal_meta::AclOperation as Op;

use crate::security::acl::Caller;
use crate::Shared;

/// The one log directory DescribeLogDirs reports: it holds no partition.
pub const NO_LOG_DIR: &str = "object-storage (Shoal keeps no partition data on agents' disks)";

const WHY: &str = "Shoal keeps partitions in object storage without replicas: every agent \
                   serves every partition, so there are no replicas to move or elect";

/// The error for partition `p` of `topic`: `none_of_ours` unless the topic or partition
/// does not exist, or the caller lacks the cluster operation.
async fn partition_error(
    shared: &Shared,
    allowed: bool,
    topic: &str,
    p: i32,
    none_of_ours: ResponseError,
) -> (i16, String) {
    if !allowed {
        return (
            ResponseError::ClusterAuthorizationFailed.code(),
            "this operation needs its permission on the cluster".into(),
        );
    }
    match shared.topics.by_name(topic).await {
        Ok(Some(t)) if (0..t.partitions).contains(&p) => (none_of_ours.code(), WHY.into()),
        Ok(_) => (
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic '{topic}' has no partition {p}"),
        ),
        Err(e) => (crate::errors::meta_code(&e), e.to_string()),
    }
}

pub async fn list_reassignments(
    shared: &Shared,
    who: &Caller,
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !authorize_cluster(shared, who, Op::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(sb("DESCRIBE on the cluster is needed")));
    }
    ListPartitionReassignmentsResponse::default()
}

pub async fn alter_reassignments(
    shared: &Shared,
    who: &Caller,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let allowed = authorize_cluster(shared, who, Op::Alter);
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let kind = match p.replicas {
                None => ResponseError::NoReassignmentInProgress,
                Some(_) => ResponseError::InvalidReplicaAssignment,
            };
            let (code, msg) =
                partition_error(shared, allowed, &t.name, p.partition_index, kind).await;
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_error_message(Some(sb(msg))),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

pub async fn elect_leaders(
    shared: &Shared,
    who: &Caller,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let allowed = authorize_cluster(shared, who, Op::Alter);
    // No list: every partition of every topic, as Kafka does.
    let wanted: Vec<(TopicName, Vec<i32>)> = match req.topic_partitions {
        Some(list) => list.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => match shared.topics.snapshot().await {
            Ok(snap) => snap
                .sorted
                .iter()
                .map(|t| (TopicName(sb(t.name.clone())), (0..t.partitions).collect()))
                .collect(),
            Err(e) => {
                return ElectLeadersResponse::default()
                    .with_error_code(crate::errors::meta_code(&e));
            }
        },
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, parts) in wanted {
        let mut partition_result = Vec::with_capacity(parts.len());
        for p in parts {
            let kind = ResponseError::ElectionNotNeeded;
            let (code, msg) = partition_error(shared, allowed, &topic, p, kind).await;
            partition_result.push(
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(code)
                    .with_error_message(Some(sb(msg))),
            );
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(partition_result),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

pub async fn describe_log_dirs(
    shared: &Shared,
    who: &Caller,
    _req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !authorize_cluster(shared, who, Op::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // One log directory with no partitions: an empty list would read as "not allowed"
    // to the Java admin client (before v3 the answer had no error code).
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(sb(NO_LOG_DIR))
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}

pub async fn alter_replica_log_dirs(
    shared: &Shared,
    who: &Caller,
    req: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let allowed = authorize_cluster(shared, who, Op::Alter);
    let mut results = Vec::new();
    for dir in req.dirs {
        for t in dir.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let kind = ResponseError::LogDirNotFound;
                let (code, _) = partition_error(shared, allowed, &t.name, p, kind).await;
                partitions.push(
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code),
                );
            }
            results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(t.name)
                    .with_partitions(partitions),
            );
        }
    }
    AlterReplicaLogDirsResponse::default().with_results(results)
}
