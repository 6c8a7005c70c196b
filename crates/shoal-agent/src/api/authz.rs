//! ACL enforcement at the dispatch table: each request is checked against the
//! authorizer before its handler runs, as Kafka's `KafkaApis` checks it.
//!
//! Requests about one resource (a group, a transactional id, the cluster) are answered
//! at once with the resource's *_AUTHORIZATION_FAILED code when refused. Requests about
//! many topics are split: the topics the principal may not use are taken out of the
//! request before the handler sees it (so a refused Fetch never reads, let alone
//! returns, record bytes, and a refused Metadata never auto-creates) and put back into
//! the answer with TOPIC_AUTHORIZATION_FAILED. With `--authorizer none` every check
//! passes and nothing is split.

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use shoal_meta::{AclOperation as Op, AclResourceType as Rt};

use super::{sb, Reply};
use crate::security::acl::{Caller, CLUSTER_NAME};
use crate::Shared;

/// Whether `who` may do `op` on the cluster. The helper other handlers (e.g.
/// AlterUserScramCredentials: Alter) call for cluster-wide operations.
pub fn authorize_cluster(shared: &Shared, who: &Caller, op: Op) -> bool {
    shared
        .authorizer
        .authorize(who, op, Rt::Cluster, CLUSTER_NAME)
}

fn topic(shared: &Shared, who: &Caller, op: Op, name: &str) -> bool {
    shared.authorizer.authorize(who, op, Rt::Topic, name)
}

fn group(shared: &Shared, who: &Caller, op: Op, name: &str) -> bool {
    shared.authorizer.authorize(who, op, Rt::Group, name)
}

fn txn_id(shared: &Shared, who: &Caller, op: Op, name: &str) -> bool {
    shared
        .authorizer
        .authorize(who, op, Rt::TransactionalId, name)
}

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();

impl Reply {
    /// The same reply with `f` applied to its answer (if any).
    pub(crate) fn map(
        self,
        f: impl FnOnce(ResponseKind) -> ResponseKind + Send + 'static,
    ) -> Reply {
        match self {
            Reply::Now(r) => Reply::Now(r.map(|b| Box::new(f(*b)))),
            Reply::Later(fut) => {
                Reply::Later(Box::pin(async move { fut.await.map(|b| Box::new(f(*b))) }))
            }
        }
    }
}

// ---- Produce ----

/// Takes the topics `who` may not write out of `req`; `Err` with the whole answer when
/// the transactional id is refused.
pub fn produce(
    shared: &Shared,
    who: &Caller,
    req: &mut ProduceRequest,
) -> Result<Vec<produce_response::TopicProduceResponse>, Reply> {
    use produce_response::{PartitionProduceResponse, TopicProduceResponse};
    if !shared.authorizer.enabled() {
        return Ok(Vec::new());
    }
    let answer = |td: &produce_request::TopicProduceData, code| {
        TopicProduceResponse::default()
            .with_name(td.name.clone())
            .with_topic_id(td.topic_id)
            .with_partition_responses(
                td.partition_data
                    .iter()
                    .map(|p| {
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code)
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                    })
                    .collect(),
            )
    };
    if let Some(t) = &req.transactional_id {
        if !txn_id(shared, who, Op::Write, t) {
            let all = req
                .topic_data
                .iter()
                .map(|td| answer(td, TXN_DENIED))
                .collect();
            let resp = ProduceResponse::default().with_responses(all);
            return Err(if req.acks == 0 {
                Reply::Now(None)
            } else {
                Reply::now(resp)
            });
        }
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topic_data)
        .into_iter()
        .partition(|td| topic(shared, who, Op::Write, &td.name));
    req.topic_data = ok;
    Ok(denied.iter().map(|td| answer(td, TOPIC_DENIED)).collect())
}

pub fn finish_produce(reply: Reply, denied: Vec<produce_response::TopicProduceResponse>) -> Reply {
    if denied.is_empty() {
        return reply;
    }
    reply.map(move |r| match r {
        ResponseKind::Produce(mut p) => {
            p.responses.extend(denied);
            ResponseKind::Produce(p)
        }
        other => other,
    })
}

// ---- Fetch ----

/// Takes the topics `who` may not read out of `req` (by name or, v13+, by id).
pub async fn fetch(
    shared: &Shared,
    who: &Caller,
    req: &mut FetchRequest,
) -> Vec<fetch_response::FetchableTopicResponse> {
    use fetch_response::{FetchableTopicResponse, PartitionData};
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let mut kept = Vec::new();
    let mut denied = Vec::new();
    for t in std::mem::take(&mut req.topics) {
        let name = if t.topic_id.is_nil() {
            Some(t.topic.0.to_string())
        } else {
            // Unknown ids stay in: the handler answers UNKNOWN_TOPIC_ID.
            match shared.topics.by_id(t.topic_id).await {
                Ok(Some(info)) => Some(info.name.clone()),
                _ => None,
            }
        };
        match name {
            Some(n) if !topic(shared, who, Op::Read, &n) => denied.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_high_watermark(-1)
                                    .with_last_stable_offset(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect(),
                    ),
            ),
            _ => kept.push(t),
        }
    }
    req.topics = kept;
    denied
}

pub fn finish_fetch(reply: Reply, denied: Vec<fetch_response::FetchableTopicResponse>) -> Reply {
    if denied.is_empty() {
        return reply;
    }
    reply.map(move |r| match r {
        ResponseKind::Fetch(mut f) => {
            f.responses.extend(denied);
            ResponseKind::Fetch(f)
        }
        other => other,
    })
}

// ---- ListOffsets ----

pub fn list_offsets(
    shared: &Shared,
    who: &Caller,
    req: &mut ListOffsetsRequest,
) -> Vec<list_offsets_response::ListOffsetsTopicResponse> {
    use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic(shared, who, Op::Describe, &t.name));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect()
}

// ---- Metadata ----

/// What a Metadata request asked for, as [`finish_metadata`] needs it.
pub struct MetadataAsked {
    /// Every topic (null list, or an empty one at v0).
    pub all: bool,
    /// Every topic it named was refused, leaving an empty list.
    pub emptied: bool,
    pub topic_ops: bool,
    pub cluster_ops: bool,
}

/// Takes topics asked for by name that `who` may not describe (or would auto-create
/// without Create) out of `req`, returning their names.
pub async fn metadata(
    shared: &Shared,
    who: &Caller,
    req: &mut MetadataRequest,
    version: i16,
) -> (Vec<String>, MetadataAsked) {
    let mut asked = MetadataAsked {
        all: req
            .topics
            .as_ref()
            .is_none_or(|t| t.is_empty() && version == 0),
        emptied: false,
        topic_ops: req.include_topic_authorized_operations,
        cluster_ops: req.include_cluster_authorized_operations,
    };
    let denied = metadata_refused(shared, who, req, version).await;
    asked.emptied = !asked.all && req.topics.as_ref().is_some_and(|t| t.is_empty());
    (denied, asked)
}

async fn metadata_refused(
    shared: &Shared,
    who: &Caller,
    req: &mut MetadataRequest,
    version: i16,
) -> Vec<String> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let may_create = req.allow_auto_topic_creation || version < 4;
    let Some(list) = req.topics.as_mut() else {
        return Vec::new();
    };
    if list.is_empty() {
        return Vec::new();
    }
    let cluster_create = authorize_cluster(shared, who, Op::Create);
    let mut denied = Vec::new();
    let mut kept = Vec::new();
    for t in std::mem::take(list) {
        let Some(name) = t
            .name
            .as_ref()
            .filter(|n| !n.0.is_empty())
            .map(|n| n.0.to_string())
        else {
            kept.push(t);
            continue;
        };
        let refused = if !topic(shared, who, Op::Describe, &name) {
            true
        } else if may_create
            && shared.config.auto_create_topics
            && !cluster_create
            && !topic(shared, who, Op::Create, &name)
        {
            matches!(shared.topics.by_name(&name).await, Ok(None))
        } else {
            false
        };
        if refused {
            denied.push(name);
        } else {
            kept.push(t);
        }
    }
    *list = kept;
    denied
}

/// Hides topics `who` may not describe from an answer listing all topics, answers the
/// refused named ones with TOPIC_AUTHORIZATION_FAILED, and fills in the authorized
/// operations when asked.
pub fn finish_metadata(
    shared: &Shared,
    who: &Caller,
    asked: &MetadataAsked,
    mut resp: MetadataResponse,
    denied: Vec<String>,
) -> MetadataResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    if asked.emptied {
        // Every named topic was refused; a v0 handler would have listed all.
        resp.topics.clear();
    }
    let describable = |t: &metadata_response::MetadataResponseTopic| {
        t.error_code != 0
            || t.name
                .as_ref()
                .is_none_or(|n| topic(shared, who, Op::Describe, n))
    };
    if asked.all {
        resp.topics.retain(describable);
    } else {
        // Asked for by id: refused, without the name.
        for t in resp.topics.iter_mut().filter(|t| !describable(t)) {
            *t = metadata_response::MetadataResponseTopic::default()
                .with_name(None)
                .with_topic_id(t.topic_id)
                .with_error_code(TOPIC_DENIED);
        }
    }
    let (include_topic_ops, include_cluster_ops) = (asked.topic_ops, asked.cluster_ops);
    if include_topic_ops {
        for t in resp.topics.iter_mut().filter(|t| t.error_code == 0) {
            if let Some(n) = &t.name {
                t.topic_authorized_operations =
                    shared.authorizer.authorized_operations(who, Rt::Topic, n);
            }
        }
    }
    if include_cluster_ops {
        resp.cluster_authorized_operations =
            shared
                .authorizer
                .authorized_operations(who, Rt::Cluster, CLUSTER_NAME);
    }
    for name in denied {
        resp.topics.push(
            metadata_response::MetadataResponseTopic::default()
                .with_name(Some(super::topic_name(&name)))
                .with_error_code(TOPIC_DENIED),
        );
    }
    resp
}

// ---- Groups ----

/// The answer to a group request refused on its group, if it is refused.
pub fn group_request(shared: &Shared, who: &Caller, request: &RequestKind) -> Option<ResponseKind> {
    if !shared.authorizer.enabled() {
        return None;
    }
    let (name, op) = match request {
        RequestKind::JoinGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::SyncGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::Heartbeat(r) => (&r.group_id.0, Op::Read),
        RequestKind::ConsumerGroupHeartbeat(r) => (&r.group_id.0, Op::Read),
        RequestKind::LeaveGroup(r) => (&r.group_id.0, Op::Read),
        RequestKind::OffsetCommit(r) => (&r.group_id.0, Op::Read),
        _ => return None,
    };
    if group(shared, who, op, name) {
        return None;
    }
    Some(match request {
        RequestKind::JoinGroup(_) => JoinGroupResponse::default()
            .with_error_code(GROUP_DENIED)
            .with_generation_id(-1)
            .into(),
        RequestKind::SyncGroup(_) => SyncGroupResponse::default()
            .with_error_code(GROUP_DENIED)
            .into(),
        RequestKind::Heartbeat(_) => HeartbeatResponse::default()
            .with_error_code(GROUP_DENIED)
            .into(),
        RequestKind::ConsumerGroupHeartbeat(_) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(GROUP_DENIED)
            .into(),
        RequestKind::LeaveGroup(_) => LeaveGroupResponse::default()
            .with_error_code(GROUP_DENIED)
            .into(),
        RequestKind::OffsetCommit(r) => OffsetCommitResponse::default()
            .with_topics(offset_commit_errors(&r.topics, |_| GROUP_DENIED))
            .into(),
        _ => return None,
    })
}

fn offset_commit_errors(
    topics: &[offset_commit_request::OffsetCommitRequestTopic],
    code: impl Fn(&str) -> i16,
) -> Vec<offset_commit_response::OffsetCommitResponseTopic> {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(&t.name))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// Takes the topics `who` may not read out of an OffsetCommit.
pub fn offset_commit(
    shared: &Shared,
    who: &Caller,
    req: &mut OffsetCommitRequest,
) -> Vec<offset_commit_response::OffsetCommitResponseTopic> {
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic(shared, who, Op::Read, &t.name));
    req.topics = ok;
    offset_commit_errors(&denied, |_| TOPIC_DENIED)
}

/// OffsetFetch: Describe on each group; topics `who` may not describe are left out of
/// the answer.
pub fn finish_offset_fetch(
    shared: &Shared,
    who: &Caller,
    mut resp: OffsetFetchResponse,
    group_v0_7: Option<&str>,
) -> OffsetFetchResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    if let Some(g) = group_v0_7 {
        if !group(shared, who, Op::Describe, g) {
            return OffsetFetchResponse::default().with_error_code(GROUP_DENIED);
        }
        resp.topics
            .retain(|t| topic(shared, who, Op::Describe, &t.name));
    }
    for g in &mut resp.groups {
        if !group(shared, who, Op::Describe, &g.group_id) {
            g.topics.clear();
            g.error_code = GROUP_DENIED;
        } else {
            g.topics
                .retain(|t| topic(shared, who, Op::Describe, &t.name));
        }
    }
    resp
}

// ---- FindCoordinator ----

pub fn finish_find_coordinator(
    shared: &Shared,
    who: &Caller,
    req_key: &str,
    key_type: i8,
    mut resp: FindCoordinatorResponse,
) -> FindCoordinatorResponse {
    if !shared.authorizer.enabled() {
        return resp;
    }
    let allowed = |key: &str| match key_type {
        1 => txn_id(shared, who, Op::Describe, key),
        _ => group(shared, who, Op::Describe, key),
    };
    let code = if key_type == 1 {
        TXN_DENIED
    } else {
        GROUP_DENIED
    };
    if resp.coordinators.is_empty() {
        if !allowed(req_key) {
            return FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_host(sb(""))
                .with_port(-1);
        }
        return resp;
    }
    for c in &mut resp.coordinators {
        if !allowed(&c.key) {
            *c = find_coordinator_response::Coordinator::default()
                .with_key(c.key.clone())
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_host(sb(""))
                .with_port(-1);
        }
    }
    resp
}

// ---- Transactions ----

/// The answer to a transaction request refused on its transactional id, group or (for
/// InitProducerId without an id) the cluster, if it is refused.
pub fn txn_request(shared: &Shared, who: &Caller, request: &RequestKind) -> Option<ResponseKind> {
    if !shared.authorizer.enabled() {
        return None;
    }
    match request {
        RequestKind::InitProducerId(r) => {
            let code = match &r.transactional_id {
                Some(t) if !txn_id(shared, who, Op::Write, t) => TXN_DENIED,
                Some(_) => return None,
                None if authorize_cluster(shared, who, Op::IdempotentWrite)
                    || shared.authorizer.authorize_any(who, Op::Write, Rt::Topic) =>
                {
                    return None
                }
                None => CLUSTER_DENIED,
            };
            Some(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .into(),
            )
        }
        RequestKind::EndTxn(r) => {
            (!txn_id(shared, who, Op::Write, &r.transactional_id)).then(|| {
                EndTxnResponse::default()
                    .with_error_code(TXN_DENIED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .into()
            })
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !txn_id(shared, who, Op::Write, &r.transactional_id) {
                TXN_DENIED
            } else if !group(shared, who, Op::Read, &r.group_id) {
                GROUP_DENIED
            } else {
                return None;
            };
            Some(
                AddOffsetsToTxnResponse::default()
                    .with_error_code(code)
                    .into(),
            )
        }
        // v4+, the batched form brokers send: ClusterAction, as in Kafka.
        RequestKind::AddPartitionsToTxn(r) if !r.transactions.is_empty() => {
            (!authorize_cluster(shared, who, Op::ClusterAction)).then(|| {
                AddPartitionsToTxnResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .into()
            })
        }
        RequestKind::AddPartitionsToTxn(r) => {
            use add_partitions_to_txn_response::{
                AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
            };
            let txn_ok = txn_id(shared, who, Op::Write, &r.v3_and_below_transactional_id);
            let topic_ok = |n: &str| topic(shared, who, Op::Write, n);
            if txn_ok && r.v3_and_below_topics.iter().all(|t| topic_ok(&t.name)) {
                return None;
            }
            // As Kafka: the refused ones get the refusal, the others OPERATION_NOT_ATTEMPTED.
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let code = if !txn_ok {
                        TXN_DENIED
                    } else if !topic_ok(&t.name) {
                        TOPIC_DENIED
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    };
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Some(
                AddPartitionsToTxnResponse::default()
                    .with_results_by_topic_v3_and_below(results)
                    .into(),
            )
        }
        RequestKind::TxnOffsetCommit(r) => {
            let whole = if !txn_id(shared, who, Op::Write, &r.transactional_id) {
                Some(TXN_DENIED)
            } else if !group(shared, who, Op::Read, &r.group_id) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            if whole.is_none()
                && r.topics
                    .iter()
                    .all(|t| topic(shared, who, Op::Read, &t.name))
            {
                return None;
            }
            let resp = super::txn_offset_commit::answer(r, |t| {
                whole.unwrap_or(if topic(shared, who, Op::Read, &t.name) {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    TOPIC_DENIED
                })
            });
            Some(resp.into())
        }
        _ => None,
    }
}

// ---- Topic administration and cluster-wide APIs ----

/// Takes the topics `who` may not create (Create on the cluster or the topic) out of a
/// CreateTopics request.
pub fn create_topics(
    shared: &Shared,
    who: &Caller,
    req: &mut CreateTopicsRequest,
) -> Vec<create_topics_response::CreatableTopicResult> {
    if !shared.authorizer.enabled() || authorize_cluster(shared, who, Op::Create) {
        return Vec::new();
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic(shared, who, Op::Create, &t.name));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            create_topics_response::CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED)
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .collect()
}

/// Takes the topics `who` may not delete out of a DeleteTopics request (by name; ids
/// are resolved first).
pub async fn delete_topics(
    shared: &Shared,
    who: &Caller,
    req: &mut DeleteTopicsRequest,
) -> Vec<delete_topics_response::DeletableTopicResult> {
    use delete_topics_response::DeletableTopicResult;
    if !shared.authorizer.enabled() {
        return Vec::new();
    }
    let mut denied = Vec::new();
    let (ok, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topic_names)
        .into_iter()
        .partition(|n| topic(shared, who, Op::Delete, n));
    req.topic_names = ok;
    for n in refused {
        denied.push(
            DeletableTopicResult::default()
                .with_name(Some(n))
                .with_error_code(TOPIC_DENIED),
        );
    }
    let mut kept = Vec::new();
    for t in std::mem::take(&mut req.topics) {
        let name = match &t.name {
            Some(n) if !n.0.is_empty() => Some(n.0.to_string()),
            _ => match shared.topics.by_id(t.topic_id).await {
                Ok(Some(info)) => Some(info.name.clone()),
                _ => None,
            },
        };
        match name {
            Some(n) if !topic(shared, who, Op::Delete, &n) => denied.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(TOPIC_DENIED),
            ),
            _ => kept.push(t),
        }
    }
    req.topics = kept;
    denied
}

/// The answer to a cluster-wide request `who` may not make, if refused.
pub fn cluster_request(
    shared: &Shared,
    who: &Caller,
    request: &RequestKind,
) -> Option<ResponseKind> {
    if !shared.authorizer.enabled() {
        return None;
    }
    let op = match request {
        RequestKind::DescribeClientQuotas(_) => Op::DescribeConfigs,
        RequestKind::AlterClientQuotas(_) => Op::AlterConfigs,
        RequestKind::DescribeCluster(_) => Op::Describe,
        RequestKind::DescribeUserScramCredentials(_) => Op::Describe,
        RequestKind::AlterUserScramCredentials(_) => Op::Alter,
        _ => return None,
    };
    if authorize_cluster(shared, who, op) {
        return None;
    }
    let msg = Some(sb(format!("{op} on the cluster is needed")));
    Some(match request {
        RequestKind::DescribeClientQuotas(_) => DescribeClientQuotasResponse::default()
            .with_error_code(CLUSTER_DENIED)
            .with_error_message(msg)
            .with_entries(None)
            .into(),
        RequestKind::AlterClientQuotas(r) => {
            use alter_client_quotas_response::{EntityData, EntryData};
            let entries = r
                .entries
                .iter()
                .map(|e| {
                    EntryData::default()
                        .with_error_code(CLUSTER_DENIED)
                        .with_error_message(msg.clone())
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|p| {
                                    EntityData::default()
                                        .with_entity_type(p.entity_type.clone())
                                        .with_entity_name(p.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            AlterClientQuotasResponse::default()
                .with_entries(entries)
                .into()
        }
        RequestKind::DescribeCluster(_) => DescribeClusterResponse::default()
            .with_error_code(CLUSTER_DENIED)
            .with_error_message(msg)
            .into(),
        RequestKind::DescribeUserScramCredentials(_) => {
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(CLUSTER_DENIED)
                .with_error_message(msg)
                .into()
        }
        RequestKind::AlterUserScramCredentials(r) => {
            use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
            let mut users: Vec<&kafka_protocol::protocol::StrBytes> = r
                .upsertions
                .iter()
                .map(|u| &u.name)
                .chain(r.deletions.iter().map(|d| &d.name))
                .collect();
            users.sort();
            users.dedup();
            kafka_protocol::messages::AlterUserScramCredentialsResponse::default()
                .with_results(
                    users
                        .into_iter()
                        .map(|u| {
                            AlterUserScramCredentialsResult::default()
                                .with_user(u.clone())
                                .with_error_code(CLUSTER_DENIED)
                                .with_error_message(msg.clone())
                        })
                        .collect(),
                )
                .into()
        }
        _ => return None,
    })
}
