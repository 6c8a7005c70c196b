//! ACL enforcement for the administrative APIs (groups, configs, records, producers
//! and transactions), the same way as [`super::authz`]: requests that change something
//! lose their refused resources before the handler runs, and those come back with the
//! refusal; answers that only describe are filtered or have refused entries replaced.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use shoal_meta::{AclOperation as Op, AclResourceType as Rt};

use super::authz::authorize_cluster;
use crate::security::acl::{Caller, CLUSTER_NAME};
use crate::Shared;

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
/// Config resource types of Describe/AlterConfigs.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

fn allowed(shared: &Shared, who: &Caller, op: Op, rt: Rt, name: &str) -> bool {
    shared.authorizer.authorize(who, op, rt, name)
}

/// The ACL resource a config resource is (topic and group configs are their topic's
/// and group's; broker and broker-logger configs are the cluster's), its name, and the refusal code.
fn config_resource(resource_type: i8, name: &str) -> (Rt, String, i16) {
    if resource_type == CONFIG_TOPIC {
        (Rt::Topic, name.to_string(), TOPIC_DENIED)
    } else if resource_type == CONFIG_GROUP {
        (Rt::Group, name.to_string(), GROUP_DENIED)
    } else {
        (Rt::Cluster, CLUSTER_NAME.to_string(), CLUSTER_DENIED)
    }
}

// ---- Groups ----

/// ListGroups: every group with Describe on the cluster, else only the groups `who`
/// may describe.
pub fn finish_list_groups(
    shared: &Shared,
    who: &Caller,
    mut resp: ListGroupsResponse,
) -> ListGroupsResponse {
    if shared.authorizer.enabled() && !authorize_cluster(shared, who, Op::Describe) {
        resp.groups
            .retain(|g| allowed(shared, who, Op::Describe, Rt::Group, &g.group_id));
    }
    resp
}

/// DescribeGroups: refused groups answer GROUP_AUTHORIZATION_FAILED and nothing else;
/// authorized operations filled in when asked.
pub fn finish_describe_groups(
    shared: &Shared,
    who: &Caller,
    include_ops: bool,
    mut resp: DescribeGroupsResponse,
) -> DescribeGroupsResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    for g in &mut resp.groups {
        if !allowed(shared, who, Op::Describe, Rt::Group, &g.group_id) {
            *g = describe_groups_response::DescribedGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(GROUP_DENIED);
        } else if include_ops {
            g.authorized_operations =
                shared
                    .authorizer
                    .authorized_operations(who, Rt::Group, &g.group_id);
        }
    }
    resp
}

/// ConsumerGroupDescribe: groups `who` may not describe become GROUP_AUTHORIZATION_FAILED.
pub fn finish_consumer_group_describe(
    shared: &Shared,
    who: &Caller,
    include_ops: bool,
    mut resp: ConsumerGroupDescribeResponse,
) -> ConsumerGroupDescribeResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    for g in &mut resp.groups {
        if !allowed(shared, who, Op::Describe, Rt::Group, &g.group_id) {
            *g = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(GROUP_DENIED);
        } else if include_ops {
            g.authorized_operations =
                shared
                    .authorizer
                    .authorized_operations(who, Rt::Group, &g.group_id);
        }
    }
    resp
}

/// DeleteGroups: takes the groups `who` may not delete out of the request.
pub fn delete_groups(
    shared: &Shared,
    who: &Caller,
    req: &mut DeleteGroupsRequest,
) -> Vec<delete_groups_response::DeletableGroupResult> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups_names)
        .into_iter()
        .partition(|g| allowed(shared, who, Op::Delete, Rt::Group, g));
    req.groups_names = ok;
    denied
        .into_iter()
        .map(|g| {
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED)
        })
        .collect()
}

/// OffsetDelete: Delete on the group (else the whole answer is refused), and Read on
/// each topic (refused topics are taken out).
pub fn offset_delete(
    shared: &Shared,
    who: &Caller,
    req: &mut OffsetDeleteRequest,
) -> Result<Vec<offset_delete_response::OffsetDeleteResponseTopic>, OffsetDeleteResponse> {
    use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    if !shared.authorizer.enabled() {
        return Ok(Vec::new());
    }
    if !allowed(shared, who, Op::Delete, Rt::Group, &req.group_id) {
        return Err(OffsetDeleteResponse::default().with_error_code(GROUP_DENIED));
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| allowed(shared, who, Op::Read, Rt::Topic, &t.name));
    req.topics = ok;
    Ok(denied
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED)
                        })
                        .collect(),
                )
        })
        .collect())
}

// ---- Topics and configs ----

/// CreatePartitions: takes the topics `who` may not alter out of the request.
pub fn create_partitions(
    shared: &Shared,
    who: &Caller,
    req: &mut CreatePartitionsRequest,
) -> Vec<create_partitions_response::CreatePartitionsTopicResult> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| allowed(shared, who, Op::Alter, Rt::Topic, &t.name));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED)
        })
        .collect()
}

/// DescribeConfigs: refused resources answer their refusal and no configs.
pub fn finish_describe_configs(
    shared: &Shared,
    who: &Caller,
    mut resp: DescribeConfigsResponse,
) -> DescribeConfigsResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    for r in &mut resp.results {
        let (rt, name, code) = config_resource(r.resource_type, &r.resource_name);
        if !allowed(shared, who, Op::DescribeConfigs, rt, &name) {
            r.configs.clear();
            r.error_code = code;
            r.error_message = None;
        }
    }
    resp
}

/// AlterConfigs: takes the resources `who` may not alter the configs of out of the
/// request.
pub fn alter_configs(
    shared: &Shared,
    who: &Caller,
    req: &mut AlterConfigsRequest,
) -> Vec<alter_configs_response::AlterConfigsResourceResponse> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let mut denied = Vec::new();
    req.resources.retain(|r| {
        let (rt, name, code) = config_resource(r.resource_type, &r.resource_name);
        let ok = allowed(shared, who, Op::AlterConfigs, rt, &name);
        if !ok {
            denied.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(code),
            );
        }
        ok
    });
    denied
}

/// IncrementalAlterConfigs: as [`alter_configs`].
pub fn incremental_alter_configs(
    shared: &Shared,
    who: &Caller,
    req: &mut IncrementalAlterConfigsRequest,
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let mut denied = Vec::new();
    req.resources.retain(|r| {
        let (rt, name, code) = config_resource(r.resource_type, &r.resource_name);
        let ok = allowed(shared, who, Op::AlterConfigs, rt, &name);
        if !ok {
            denied.push(
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(code),
            );
        }
        ok
    });
    denied
}

/// DeleteRecords: takes the topics `who` may not delete from out of the request.
pub fn delete_records(
    shared: &Shared,
    who: &Caller,
    req: &mut DeleteRecordsRequest,
) -> Vec<delete_records_response::DeleteRecordsTopicResult> {
    use delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| allowed(shared, who, Op::Delete, Rt::Topic, &t.name));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(TOPIC_DENIED)
                        })
                        .collect(),
                )
        })
        .collect()
}

// ---- Producers and transactions ----

/// DescribeProducers: partitions of topics `who` may not read answer
/// TOPIC_AUTHORIZATION_FAILED and list no producers.
pub fn finish_describe_producers(
    shared: &Shared,
    who: &Caller,
    mut resp: DescribeProducersResponse,
) -> DescribeProducersResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    for t in &mut resp.topics {
        if !allowed(shared, who, Op::Read, Rt::Topic, &t.name) {
            for p in &mut t.partitions {
                p.active_producers.clear();
                p.error_code = TOPIC_DENIED;
                p.error_message = None;
            }
        }
    }
    resp
}

/// DescribeTransactions: refused ids answer TRANSACTIONAL_ID_AUTHORIZATION_FAILED only.
pub fn finish_describe_transactions(
    shared: &Shared,
    who: &Caller,
    mut resp: DescribeTransactionsResponse,
) -> DescribeTransactionsResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    for s in &mut resp.transaction_states {
        if !allowed(
            shared,
            who,
            Op::Describe,
            Rt::TransactionalId,
            &s.transactional_id,
        ) {
            *s = describe_transactions_response::TransactionState::default()
                .with_transactional_id(s.transactional_id.clone())
                .with_error_code(TXN_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    resp
}

/// ListTransactions: only the ids `who` may describe.
pub fn finish_list_transactions(
    shared: &Shared,
    who: &Caller,
    mut resp: ListTransactionsResponse,
) -> ListTransactionsResponse {
    if shared.authorizer.enabled() {
        resp.transaction_states.retain(|s| {
            allowed(
                shared,
                who,
                Op::Describe,
                Rt::TransactionalId,
                &s.transactional_id,
            )
        });
    }
    resp
}

/// DescribeCluster: the cluster's authorized operations, when asked.
pub fn finish_describe_cluster(
    shared: &Shared,
    who: &Caller,
    include_ops: bool,
    mut resp: DescribeClusterResponse,
) -> DescribeClusterResponse {
    if shared.authorizer.enabled() && include_ops {
        resp.cluster_authorized_operations =
            shared
                .authorizer
                .authorized_operations(who, Rt::Cluster, CLUSTER_NAME);
    }
    resp
}
