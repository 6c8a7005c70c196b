//! One module per Kafka API behind one dispatch table.
//!
//! [`SUPPORTED`] is what ApiVersions advertises: exactly the APIs and versions Shoal
//! implements (not what the `kafka-protocol` crate could encode). [`handle`] runs a
//! request's ordered part and returns either the answer or a future for it.
//!
//! ACLs are enforced here too, before and after each handler ([`authz`],
//! [`authz_admin`]); handlers themselves know nothing of principals.
//!
//! Roles are enforced here: on an agent started without the `produce` (`fetch`) role,
//! every partition of a Produce (Fetch) request gets INVALID_REQUEST, which no client
//! retries, and the connection logs one warning saying why (see "Cluster mode" in
//! docs/compatibility.md).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::Shared;

pub mod acl_codec;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod authz;
pub mod authz_admin;
pub mod broker_configs;
pub mod configs;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod no_replicas;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sasl;
pub mod sync_group;
pub mod txn_offset_commit;

/// What a handler gives back. `None` means no response is sent (acks=0 produce).
pub enum Reply {
    Now(Option<Box<ResponseKind>>),
    Later(Pin<Box<dyn Future<Output = Option<Box<ResponseKind>>> + Send>>),
}

impl Reply {
    pub(crate) fn now(r: impl Into<ResponseKind>) -> Reply {
        Reply::Now(Some(Box::new(r.into())))
    }
}

/// The APIs and version ranges Shoal implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
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
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
    // No replicas: well-formed answers that say so (see no_replicas).
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
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

/// What handlers know about the connection a request arrived on; lives as long as it.
pub struct ConnContext {
    pub peer: SocketAddr,
    /// The listener the connection came in on: Metadata answers with its addresses.
    pub listener: Arc<crate::security::listeners::ListenerSpec>,
    /// Who the client is: `User:ANONYMOUS` until SASL or a client certificate says
    /// otherwise. ACLs are checked against it.
    pub principal: crate::security::Principal,
    /// Roles whose absence this connection was already warned about (once each).
    warned: Vec<&'static str>,
    /// Set when a client quota throttles this connection: it reads no request until
    /// then (shared with the answer tasks, which set it for Fetch).
    pub throttle: Arc<crate::quotas::Throttle>,
    /// The size of the request being handled, whose slices (produce batches) pin it.
    request_len: usize,
    /// The request's memory charge, which handlers may add the memory of their answer to.
    request_memory: Option<Arc<crate::memory::Reservation>>,
    /// SASL progress on SASL listeners.
    pub(crate) sasl: sasl::SaslState,
    /// Set by a handler to close the connection once its answer is written, with the
    /// reason to log (`Some("")`: already logged).
    closing: Option<String>,
    /// The close follows a failed authentication (see
    /// [`ConnContext::close_after_failed_authentication`]).
    delay_close: bool,
}

impl ConnContext {
    /// A new connection of `listener`; `principal` is its client certificate's, if any.
    pub fn new(
        peer: SocketAddr,
        listener: Arc<crate::security::listeners::ListenerSpec>,
        principal: Option<crate::security::Principal>,
    ) -> ConnContext {
        ConnContext {
            peer,
            listener,
            principal: principal.unwrap_or_else(crate::security::Principal::anonymous),
            warned: Vec::new(),
            throttle: Arc::default(),
            request_len: 0,
            request_memory: None,
            sasl: sasl::SaslState::default(),
            closing: None,
            delay_close: false,
        }
    }

    /// Whether the connection must still authenticate before anything but ApiVersions
    /// and the SASL requests is served.
    pub fn must_authenticate(&self) -> bool {
        self.listener.protocol.sasl() && !self.sasl.authenticated()
    }

    /// Closes the connection after the current answer, logging `why`.
    pub(crate) fn close(&mut self, why: String) {
        self.closing = Some(why);
    }

    /// Closes the connection after a failed authentication, whose reason was logged
    /// already: after `--failed-authentication-delay`, so the client reads the answer
    /// first (as Kafka's `connection.failed.authentication.delay.ms` does).
    pub(crate) fn close_after_failed_authentication(&mut self) {
        self.closing = Some(String::new());
        self.delay_close = true;
    }

    /// Whether the close asked for waits `--failed-authentication-delay` first.
    pub fn delay_close(&self) -> bool {
        self.delay_close
    }

    /// Why the connection must close now, if it must (taken once).
    pub fn take_closing(&mut self) -> Option<String> {
        self.closing.take()
    }

    /// Who is asking, for the authorizer: the principal and the peer's address.
    pub fn caller(&self) -> crate::security::acl::Caller {
        crate::security::acl::Caller {
            principal: self.principal.clone(),
            host: self.peer.ip(),
        }
    }

    /// Called by the connection before each request is handled.
    pub fn begin_request(&mut self, len: usize, memory: Arc<crate::memory::Reservation>) {
        self.request_len = len;
        self.request_memory = Some(memory);
    }

    /// Logs, once per connection and role, that a request needing `role` was refused.
    fn warn_missing_role(&mut self, shared: &Shared, role: &'static str, client_id: Option<&str>) {
        if self.warned.contains(&role) {
            return;
        }
        self.warned.push(role);
        tracing::warn!(
            peer = %self.peer,
            client_id = client_id.unwrap_or_default(),
            node_id = shared.config.node_id,
            agent_group = %shared.config.agent_group,
            roles = %shared.config.roles,
            "refusing {role} requests from this client with INVALID_REQUEST: this agent runs \
             without the `{role}` role (--roles); point the client at an agent group whose \
             agents have it"
        );
    }
}

/// Dispatches one decoded request and counts it against its client's quotas
/// ([`crate::quotas::enforce`]).
pub async fn handle(
    shared: &Arc<Shared>,
    header: &RequestHeader,
    conn: &mut ConnContext,
    mut request: RequestKind,
) -> Reply {
    use crate::quotas::{enforce, Timed};
    if let Ok(key) = ApiKey::try_from(header.request_api_key) {
        if let Err(why) = sasl::gate(conn, key) {
            conn.close(why);
            return Reply::Now(None);
        }
    }
    let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
    let produce_bytes = match &mut request {
        RequestKind::Produce(r) => Some(enforce::produce_bytes(r)),
        RequestKind::Fetch(r) => {
            enforce::cap_fetch(shared, client_id, r);
            None
        }
        _ => None,
    };
    let (reply, busy) = Timed::new(dispatch(shared, header, conn, request)).await;
    let usage = enforce::Usage {
        client_id,
        produce_bytes,
        busy,
    };
    enforce::apply(shared, &conn.throttle, usage, reply)
}

async fn dispatch(
    shared: &Arc<Shared>,
    header: &RequestHeader,
    conn: &mut ConnContext,
    request: RequestKind,
) -> Reply {
    let v = header.request_api_version;
    let client_id = header.client_id.as_ref().map(|c| c.as_str());
    // Taken here so no handler keeps it past its own request by accident.
    let memory = conn.request_memory.take();
    let who = conn.caller();
    // Requests refused whole on their group, transactional id or the cluster.
    if let Some(refused) = authz::group_request(shared, &who, &request)
        .or_else(|| authz::txn_request(shared, &who, &request))
        .or_else(|| authz::cluster_request(shared, &who, &request))
    {
        return Reply::Now(Some(Box::new(refused)));
    }
    match request {
        RequestKind::Produce(r) if !shared.config.roles.produce => {
            conn.warn_missing_role(shared, "produce", client_id);
            produce::refuse(r)
        }
        RequestKind::Fetch(r) if !shared.config.roles.fetch => {
            conn.warn_missing_role(shared, "fetch", client_id);
            Reply::now(fetch::refuse(r, v))
        }
        RequestKind::FindCoordinator(r) => {
            let (key, key_type) = (r.key.to_string(), r.key_type);
            let resp = find_coordinator::handle(shared, &conn.listener.name, r, v);
            Reply::now(authz::finish_find_coordinator(
                shared, &who, &key, key_type, resp,
            ))
        }
        RequestKind::JoinGroup(r) => join_group::handle(shared, client_id, conn.peer, r, v).await,
        RequestKind::SyncGroup(r) => sync_group::handle(shared, r, v),
        RequestKind::Heartbeat(r) => Reply::now(heartbeat::handle(shared, r)),
        RequestKind::LeaveGroup(r) => Reply::now(leave_group::handle(shared, r, v)),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            Reply::now(consumer_group_heartbeat::handle(shared, client_id, conn.peer, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            let ops = r.include_authorized_operations;
            let resp = consumer_group_describe::handle(shared, r).await;
            Reply::now(authz_admin::finish_consumer_group_describe(
                shared, &who, ops, resp,
            ))
        }
        RequestKind::OffsetCommit(mut r) => {
            let denied = authz::offset_commit(shared, &who, &mut r);
            let mut resp = offset_commit::handle(shared, r, v).await;
            resp.topics.extend(denied);
            Reply::now(resp)
        }
        RequestKind::OffsetFetch(r) => {
            let group = (v < 8).then(|| r.group_id.to_string());
            let resp = offset_fetch::handle(shared, r, v).await;
            Reply::now(authz::finish_offset_fetch(
                shared,
                &who,
                resp,
                group.as_deref(),
            ))
        }
        RequestKind::ListGroups(r) => {
            let resp = list_groups::handle(shared, r, v).await;
            Reply::now(authz_admin::finish_list_groups(shared, &who, resp))
        }
        RequestKind::DescribeGroups(r) => {
            let ops = r.include_authorized_operations;
            let resp = describe_groups::handle(shared, r, v).await;
            Reply::now(authz_admin::finish_describe_groups(shared, &who, ops, resp))
        }
        RequestKind::DeleteGroups(mut r) => {
            let denied = authz_admin::delete_groups(shared, &who, &mut r);
            let mut resp = delete_groups::handle(shared, r).await;
            resp.results.extend(denied);
            Reply::now(resp)
        }
        RequestKind::OffsetDelete(mut r) => {
            match authz_admin::offset_delete(shared, &who, &mut r) {
                Err(refused) => Reply::now(refused),
                Ok(denied) => {
                    let mut resp = offset_delete::handle(shared, r).await;
                    resp.topics.extend(denied);
                    Reply::now(resp)
                }
            }
        }
        RequestKind::ApiVersions(r) => Reply::now(api_versions::handle(shared, r, v)),
        RequestKind::Metadata(mut r) => {
            let (denied, asked) = authz::metadata(shared, &who, &mut r, v).await;
            let resp = metadata::handle(shared, client_id, &conn.listener.name, r, v).await;
            Reply::now(authz::finish_metadata(shared, &who, &asked, resp, denied))
        }
        RequestKind::CreateTopics(mut r) => {
            let denied = authz::create_topics(shared, &who, &mut r);
            let mut resp = create_topics::handle(shared, r, v).await;
            resp.topics.extend(denied);
            Reply::now(resp)
        }
        RequestKind::DeleteTopics(mut r) => {
            let denied = authz::delete_topics(shared, &who, &mut r).await;
            let mut resp = delete_topics::handle(shared, r, v).await;
            resp.responses.extend(denied);
            Reply::now(resp)
        }
        RequestKind::CreatePartitions(mut r) => {
            let denied = authz_admin::create_partitions(shared, &who, &mut r);
            let mut resp = create_partitions::handle(shared, r).await;
            resp.results.extend(denied);
            Reply::now(resp)
        }
        RequestKind::DescribeConfigs(r) => {
            let resp = configs::describe(shared, r).await;
            Reply::now(authz_admin::finish_describe_configs(shared, &who, resp))
        }
        RequestKind::AlterConfigs(mut r) => {
            let denied = authz_admin::alter_configs(shared, &who, &mut r);
            let mut resp = configs::alter(shared, r).await;
            resp.responses.extend(denied);
            Reply::now(resp)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let denied = authz_admin::incremental_alter_configs(shared, &who, &mut r);
            let mut resp = configs::incremental_alter(shared, r).await;
            resp.responses.extend(denied);
            Reply::now(resp)
        }
        RequestKind::DescribeCluster(r) => {
            let ops = r.include_cluster_authorized_operations;
            let resp = describe_cluster::handle(shared, client_id, &conn.listener.name, r);
            Reply::now(authz_admin::finish_describe_cluster(
                shared, &who, ops, resp,
            ))
        }
        RequestKind::ListOffsets(mut r) => {
            let denied = authz::list_offsets(shared, &who, &mut r);
            let mut resp = list_offsets::handle(shared, r, v).await;
            resp.topics.extend(denied);
            Reply::now(resp)
        }
        RequestKind::Produce(mut r) => match authz::produce(shared, &who, &mut r) {
            Err(refused) => refused,
            Ok(denied) => authz::finish_produce(
                produce::handle(shared, r, v, conn.request_len).await,
                denied,
            ),
        },
        RequestKind::Fetch(mut r) => {
            let denied = authz::fetch(shared, &who, &mut r).await;
            if r.topics.is_empty() && !denied.is_empty() {
                // Nothing left to read: answer now rather than long-poll on nothing.
                return Reply::now(
                    kafka_protocol::messages::FetchResponse::default().with_responses(denied),
                );
            }
            authz::finish_fetch(fetch::handle(shared, r, v, memory), denied)
        }
        // Transaction requests may wait for a flush (markers): answered from a task.
        RequestKind::InitProducerId(r) => later(shared, move |s| async move {
            init_producer_id::handle(&s, r, v).await.into()
        }),
        RequestKind::AddPartitionsToTxn(r) => later(shared, move |s| async move {
            add_partitions_to_txn::handle(&s, r, v).await.into()
        }),
        RequestKind::AddOffsetsToTxn(r) => later(shared, move |s| async move {
            add_offsets_to_txn::handle(&s, r, v).await.into()
        }),
        RequestKind::EndTxn(r) => later(shared, move |s| async move {
            end_txn::handle(&s, r, v).await.into()
        }),
        RequestKind::TxnOffsetCommit(r) => later(shared, move |s| async move {
            txn_offset_commit::handle(&s, r, v).await.into()
        }),
        RequestKind::DeleteRecords(mut r) => {
            let denied = authz_admin::delete_records(shared, &who, &mut r);
            let mut resp = delete_records::handle(shared, r).await;
            resp.topics.extend(denied);
            Reply::now(resp)
        }
        RequestKind::DescribeProducers(r) => {
            let resp = describe_producers::handle(shared, r).await;
            Reply::now(authz_admin::finish_describe_producers(shared, &who, resp))
        }
        RequestKind::DescribeTransactions(r) => {
            let resp = describe_transactions::describe(shared, r).await;
            Reply::now(authz_admin::finish_describe_transactions(
                shared, &who, resp,
            ))
        }
        RequestKind::ListTransactions(r) => {
            let resp = describe_transactions::list(shared, r).await;
            Reply::now(authz_admin::finish_list_transactions(shared, &who, resp))
        }
        RequestKind::DescribeClientQuotas(r) => {
            Reply::now(describe_client_quotas::handle(shared, r).await)
        }
        RequestKind::AlterClientQuotas(r) => {
            Reply::now(alter_client_quotas::handle(shared, r).await)
        }
        RequestKind::SaslHandshake(r) => Reply::now(sasl::handshake(shared, conn, r, v)),
        RequestKind::SaslAuthenticate(r) => {
            Reply::now(sasl::authenticate(shared, conn, r, v).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            Reply::now(describe_user_scram_credentials::handle(&*shared.meta, r).await)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            Reply::now(alter_user_scram_credentials::handle(&*shared.meta, r).await)
        }
        RequestKind::CreateAcls(r) => Reply::now(create_acls::handle(shared, &who, r).await),
        RequestKind::DescribeAcls(r) => Reply::now(describe_acls::handle(shared, &who, r).await),
        RequestKind::DeleteAcls(r) => Reply::now(delete_acls::handle(shared, &who, r).await),
        RequestKind::ListPartitionReassignments(r) => {
            Reply::now(no_replicas::list_reassignments(shared, &who, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            Reply::now(no_replicas::alter_reassignments(shared, &who, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            Reply::now(no_replicas::elect_leaders(shared, &who, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            Reply::now(no_replicas::describe_log_dirs(shared, &who, r).await)
        }
        RequestKind::AlterReplicaLogDirs(r) => {
            Reply::now(no_replicas::alter_replica_log_dirs(shared, &who, r).await)
        }
        other => {
            // Unreachable while SUPPORTED and this match agree; answer nothing rather than panic.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            Reply::Now(None)
        }
    }
}

/// Answers from a task, so the connection keeps reading while `f` waits.
fn later<F, Fut>(shared: &Arc<Shared>, f: F) -> Reply
where
    F: FnOnce(Arc<Shared>) -> Fut,
    Fut: Future<Output = ResponseKind> + Send + 'static,
{
    let fut = f(shared.clone());
    Reply::Later(Box::pin(async move { Some(Box::new(fut.await)) }))
}

/// `StrBytes` from a `String`.
/// The partitions an (Txn)OffsetCommit names, by topic id, for the member-epoch check
/// of consumer-protocol groups; topics not known here are left out (their partitions
/// are answered UNKNOWN_TOPIC_OR_PARTITION anyway).
pub(crate) async fn commit_partitions<'a, P: Iterator<Item = i32>>(
    shared: &Shared,
    topics: impl Iterator<Item = (&'a str, P)>,
) -> Vec<crate::groups::consumer::Tp> {
    let mut out = Vec::new();
    for (name, partitions) in topics {
        if let Ok(Some(t)) = shared.topics.by_name(name).await {
            out.extend(partitions.map(|p| (t.id, p)));
        }
    }
    out
}

pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// A topic name as the protocol types want it.
pub(crate) fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(sb(s))
}
