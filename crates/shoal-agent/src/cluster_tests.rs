//! A whole agent against a metadata store with a registry of other agents (a fake one
//! around SQLite: the etcd backend's own tests cover the real registry): registration,
//! the client's agent list, partition leaders, coordinator checks, roles, and the
//! shutdown order (last flush committed before leaving the registry).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, FetchRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, ListGroupsRequest, MetadataRequest,
    OffsetCommitRequest, ProduceRequest, RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use object_store::memory::InMemory;
use shoal_meta::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::placement::coordinator_for;
use crate::config::Roles;
use crate::{Agent, AgentConfig};

/// SQLite plus an in-memory agent registry that records what the agent did, in order.
struct Registry {
    inner: SqliteStore,
    live: Mutex<Vec<AgentInfo>>,
    me: Mutex<Option<i32>>,
    events: Mutex<Vec<String>>,
    /// `None`: behave as a backend without a registry (every role is this agent's).
    /// `Some`: the agent's standing, with role claims kept in `claims` as etcd keeps them.
    standing: Mutex<Option<Standing>>,
    /// Role → epoch of its current claim (any holder).
    claims: Mutex<BTreeMap<String, i64>>,
    /// The next this many group offset commits fail as if the store were out of reach.
    unreachable: std::sync::atomic::AtomicUsize,
}

impl Registry {
    fn new(others: Vec<AgentInfo>) -> Arc<Registry> {
        Arc::new(Registry {
            inner: SqliteStore::in_memory().unwrap(),
            live: Mutex::new(others),
            me: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            standing: Mutex::new(None),
            claims: Mutex::new(BTreeMap::new()),
            unreachable: Default::default(),
        })
    }

    fn event(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// How many times `event` was recorded.
    fn count(&self, event: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == event)
            .count()
    }

    /// Refuses a write whose fence is not the role's current claim (as etcd's compare
    /// on the claim key's create revision does).
    fn check_fence(&self, fence: &Fence) -> Result<(), MetaError> {
        if self.standing.lock().unwrap().is_none() {
            return Ok(());
        }
        match self.claims.lock().unwrap().get(&fence.role) {
            Some(&epoch) if epoch == fence.epoch => Ok(()),
            _ => Err(MetaError::Fenced(fence.role.clone())),
        }
    }
}

#[async_trait::async_trait]
impl MetaStore for Registry {
    async fn cluster_id(&self) -> Result<String, MetaError> {
        self.inner.cluster_id().await
    }
    async fn client_quotas(&self) -> Result<Vec<ClientQuota>, MetaError> {
        self.inner.client_quotas().await
    }
    async fn acls(&self) -> Result<Vec<shoal_meta::AclBinding>, MetaError> {
        self.inner.acls().await
    }
    async fn create_acls(&self, b: &[shoal_meta::AclBinding]) -> Result<(), MetaError> {
        self.inner.create_acls(b).await
    }
    async fn delete_acls(
        &self,
        f: &[shoal_meta::AclFilter],
    ) -> Result<Vec<Vec<shoal_meta::AclBinding>>, MetaError> {
        self.inner.delete_acls(f).await
    }
    async fn group_configs(
        &self,
        group: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, MetaError> {
        self.inner.group_configs(group).await
    }
    async fn alter_group_configs(
        &self,
        group: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), MetaError> {
        self.inner.alter_group_configs(group, changes).await
    }
    async fn alter_client_quota(
        &self,
        entity: &QuotaEntity,
        changes: &[(String, Option<f64>)],
    ) -> Result<(), MetaError> {
        self.inner.alter_client_quota(entity, changes).await
    }
    async fn scram_credentials(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<shoal_meta::ScramCredential>, MetaError> {
        self.inner.scram_credentials(user).await
    }
    async fn alter_scram_credentials(
        &self,
        upserts: &[shoal_meta::ScramCredential],
        deletions: &[(String, shoal_meta::ScramMechanism)],
    ) -> Result<(), MetaError> {
        self.inner.alter_scram_credentials(upserts, deletions).await
    }
    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo, MetaError> {
        self.inner.create_topic(spec).await
    }
    async fn delete_topic(&self, name: &str) -> Result<TopicInfo, MetaError> {
        self.inner.delete_topic(name).await
    }
    async fn list_topics(&self) -> Result<Vec<TopicInfo>, MetaError> {
        self.inner.list_topics().await
    }
    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicInfo, MetaError> {
        self.inner.create_partitions(name, total).await
    }
    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicInfo, MetaError> {
        self.inner.set_topic_configs(name, configs).await
    }
    async fn commit_flush(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
    ) -> Result<Vec<SegmentOutcome>, MetaError> {
        let r = self.inner.commit_flush(object, segments).await;
        self.event("commit");
        r
    }
    async fn partition_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<PartitionOffsets, MetaError> {
        self.inner.partition_offsets(topic_id, partition).await
    }
    async fn index_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, MetaError> {
        self.inner
            .index_from(topic_id, partition, from, limit)
            .await
    }
    async fn index_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, MetaError> {
        self.inner
            .index_for_timestamp(topic_id, partition, timestamp)
            .await
    }
    async fn index_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<IndexEntry>, MetaError> {
        self.inner.index_max_timestamp(topic_id, partition).await
    }
    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, MetaError> {
        self.inner
            .advance_log_start(topic_id, partition, offset)
            .await
    }
    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        self.inner
            .unreferenced_objects(now_ms, before_ms, limit)
            .await
    }
    async fn referenced_objects(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, MetaError> {
        self.inner.referenced_objects(prefix, limit).await
    }
    async fn object_entries(&self, key: &str) -> Result<Vec<PartitionEntry>, MetaError> {
        self.inner.object_entries(key).await
    }
    async fn replace_entries(
        &self,
        old: &[PartitionEntry],
        object: &ObjectRef,
        new: &[PartitionEntry],
    ) -> Result<(), MetaError> {
        self.inner.replace_entries(old, object, new).await
    }
    async fn object_known(&self, key: &str) -> Result<bool, MetaError> {
        self.inner.object_known(key).await
    }
    async fn forget_object(&self, key: &str) -> Result<(), MetaError> {
        self.inner.forget_object(key).await
    }
    async fn add_pending_object(&self, key: &str) -> Result<(), MetaError> {
        self.inner.add_pending_object(key).await
    }
    async fn pending_objects(&self, limit: usize) -> Result<Vec<PendingObject>, MetaError> {
        self.inner.pending_objects(limit).await
    }
    async fn fence_object(&self, key: &str, instance: Option<u64>) -> Result<bool, MetaError> {
        self.inner.fence_object(key, instance).await
    }
    async fn claim_job(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        self.event(format!("claim {job} {holder}"));
        self.inner.claim_job(job, holder, now_ms, ttl_ms).await
    }
    async fn allocate_producer_id(&self) -> Result<i64, MetaError> {
        self.inner.allocate_producer_id().await
    }
    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, MetaError> {
        self.inner
            .aborted_transactions(topic_id, partition, from, to)
            .await
    }
    async fn producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<ProducerState>, MetaError> {
        self.inner.producers(topic_id, partition).await
    }
    async fn expire_producers(&self, before_ms: i64) -> Result<u64, MetaError> {
        self.event("expire producers");
        self.inner.expire_producers(before_ms).await
    }
    async fn transaction(&self, transactional_id: &str) -> Result<Option<Transaction>, MetaError> {
        self.inner.transaction(transactional_id).await
    }
    async fn transactions(&self) -> Result<Vec<Transaction>, MetaError> {
        self.inner.transactions().await
    }
    async fn save_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<u64, MetaError> {
        self.inner.save_transaction(txn, fence).await
    }
    async fn save_transaction_unfenced(&self, txn: &Transaction) -> Result<u64, MetaError> {
        self.inner.save_transaction_unfenced(txn).await
    }
    async fn delete_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<(), MetaError> {
        self.inner.delete_transaction(txn, fence).await
    }
    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        self.inner
            .stage_txn_offsets(transactional_id, group, offsets, fence)
            .await
    }
    async fn complete_transaction(
        &self,
        txn: &Transaction,
        commit: bool,
        fence: &Fence,
    ) -> Result<u64, MetaError> {
        self.inner.complete_transaction(txn, commit, fence).await
    }
    async fn pending_txn_offsets(&self, group: &str) -> Result<Vec<(String, i32)>, MetaError> {
        self.inner.pending_txn_offsets(group).await
    }
    async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        self.check_fence(fence)?;
        use std::sync::atomic::Ordering;
        let out = self
            .unreachable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if out.is_ok() {
            self.event("offset commit: unreachable");
            return Err(MetaError::Backend("etcd: Timeout expired (test)".into()));
        }
        self.inner.commit_group_offsets(group, offsets, fence).await
    }
    async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, MetaError> {
        self.inner.group_offsets(group).await
    }
    async fn delete_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        self.inner
            .delete_group_offsets(group, topic, partitions, fence)
            .await
    }
    async fn delete_group(&self, group: &str, fence: &Fence) -> Result<bool, MetaError> {
        self.inner.delete_group(group, fence).await
    }
    async fn offset_groups(&self) -> Result<Vec<String>, MetaError> {
        self.inner.offset_groups().await
    }

    async fn register_agent(&self, info: &AgentInfo) -> Result<i32, MetaError> {
        let mut live = self.live.lock().unwrap();
        let id = if info.node_id >= 0 {
            if live.iter().any(|a| a.node_id == info.node_id) {
                return Err(MetaError::Conflict(format!("node id {}", info.node_id)));
            }
            info.node_id
        } else {
            (0..)
                .find(|i| live.iter().all(|a| a.node_id != *i))
                .unwrap()
        };
        live.push(AgentInfo {
            node_id: id,
            ..info.clone()
        });
        *self.me.lock().unwrap() = Some(id);
        self.event(format!("register {id}"));
        Ok(id)
    }
    fn standing(&self) -> Standing {
        self.standing.lock().unwrap().unwrap_or(Standing::Alone)
    }
    async fn claim_role(&self, role: &str) -> Result<Option<Fence>, MetaError> {
        let Some(standing) = *self.standing.lock().unwrap() else {
            return Ok(Some(Fence::sole(role)));
        };
        if standing == Standing::Lapsed {
            return Ok(None);
        }
        let mut claims = self.claims.lock().unwrap();
        let next = claims.values().max().copied().unwrap_or(0) + 1;
        let epoch = *claims.entry(role.to_string()).or_insert(next);
        self.event(format!("claim {role}"));
        // A claim another holder made (a test's "other agent") is not this agent's.
        Ok((epoch < 1000).then(|| Fence {
            role: role.to_string(),
            epoch,
        }))
    }
    async fn release_role(&self, fence: &Fence) -> Result<(), MetaError> {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(&fence.role) == Some(&fence.epoch) {
            claims.remove(&fence.role);
        }
        Ok(())
    }
    async fn deregister_agent(&self) -> Result<(), MetaError> {
        if let Some(id) = self.me.lock().unwrap().take() {
            self.live.lock().unwrap().retain(|a| a.node_id != id);
        }
        self.event("deregister");
        Ok(())
    }
    fn live_agents(&self) -> Vec<AgentInfo> {
        self.live.lock().unwrap().clone()
    }
}

fn other(node_id: i32, az: &str, group: &str) -> AgentInfo {
    AgentInfo {
        node_id,
        host: format!("agent-{node_id}.example"),
        port: 9000 + node_id,
        az: az.to_string(),
        group: group.to_string(),
        roles: Roles::ALL.names(),
        peer_addr: None,
        listeners: Vec::new(),
        incarnation: 0,
    }
}

fn config(az: &str, roles: Roles) -> AgentConfig {
    AgentConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        az: az.to_string(),
        roles,
        // Produce data waits for shutdown's final flush unless a test wants otherwise.
        batch_timeout: Duration::from_secs(60),
        compaction_interval: Duration::from_secs(3600),
        ..AgentConfig::default()
    }
}

async fn start(
    registry: &Arc<Registry>,
    config: AgentConfig,
) -> (Agent, CancellationToken, TcpStream) {
    let stop = CancellationToken::new();
    let agent = Agent::start(
        config,
        registry.clone(),
        Arc::new(InMemory::new()),
        stop.clone(),
    )
    .await
    .unwrap();
    let conn = TcpStream::connect(agent.local_addr).await.unwrap();
    (agent, stop, conn)
}

/// Sends one request and reads its answer.
async fn call<R: Request>(
    conn: &mut TcpStream,
    client_id: &str,
    req: &R,
    version: i16,
) -> R::Response {
    send(conn, client_id, req, version).await;
    recv::<R>(conn, version).await
}

async fn send<R: Request>(conn: &mut TcpStream, client_id: &str, req: &R, version: i16) {
    let key = ApiKey::try_from(R::KEY).unwrap();
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    conn.write_all(&(body.len() as i32).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&body).await.unwrap();
}

async fn recv<R: Request>(conn: &mut TcpStream, version: i16) -> R::Response {
    let key = ApiKey::try_from(R::KEY).unwrap();
    let read = async {
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        conn.read_exact(&mut frame).await.unwrap();
        frame
    };
    let frame = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s");
    let mut buf = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    R::Response::decode(&mut buf, version).unwrap()
}

/// A key of `prefix` that `coordinator_for` gives to `node` among `nodes`.
fn key_of(prefix: &str, node: i32, nodes: &[i32]) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| coordinator_for(k, nodes) == Some(node))
        .unwrap()
}

use crate::test_util::batch;

fn produce(topic: &str, partition: i32, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(crate::api::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(b"v")))])])
}

async fn create_topic(meta: &Registry, name: &str, partitions: i32) -> TopicInfo {
    meta.create_topic(TopicSpec {
        name: name.into(),
        partitions,
        configs: BTreeMap::new(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn agent_in_a_cluster() {
    // Node 0 is another agent of this group in zone b; node 3 is in another group.
    let registry = Registry::new(vec![other(0, "b", "default"), other(3, "a", "other")]);
    let topic = create_topic(&registry, "t", 16).await;
    let (agent, stop, mut conn) = start(&registry, config("a", Roles::ALL)).await;
    // The registry gave the lowest free id.
    assert_eq!(registry.events()[0], "register 1");
    let me = agent.local_addr;

    // Metadata: the group's agents, the client's zone first; node 3 never.
    let ids = |r: &kafka_protocol::messages::MetadataResponse| -> Vec<i32> {
        r.brokers.iter().map(|b| b.node_id.0).collect()
    };
    let all = MetadataRequest::default().with_topics(None);
    let r = call(&mut conn, "app", &all, 12).await;
    assert_eq!(ids(&r), vec![0, 1]);
    assert_eq!(r.brokers[0].host.as_str(), "agent-0.example");
    assert_eq!(r.brokers[0].rack.as_ref().map(|s| s.as_str()), Some("b"));
    assert_eq!(r.brokers[1].host.as_str(), me.ip().to_string());
    assert_eq!(r.brokers[1].port, i32::from(me.port()));
    assert_eq!(r.controller_id.0, 0);
    let r = call(&mut conn, "app,shoal_az=a", &all, 12).await;
    assert_eq!(ids(&r), vec![1]);
    let r = call(&mut conn, "shoal_az=b", &all, 12).await;
    assert_eq!(ids(&r), vec![0]);
    let r = call(&mut conn, "shoal_az=nowhere", &all, 12).await;
    assert_eq!(ids(&r), vec![0, 1]);
    // v0 has no rack: still answers.
    let r = call(
        &mut conn,
        "app",
        &MetadataRequest::default().with_topics(Some(vec![])),
        0,
    )
    .await;
    assert_eq!(ids(&r), vec![0, 1]);
    let r = call(&mut conn, "app", &DescribeClusterRequest::default(), 0).await;
    let described: Vec<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
    assert_eq!(described, vec![0, 1]);

    // Leaders: shared evenly by the client's agents, by the fixed hash.
    let r = call(&mut conn, "app", &all, 12).await;
    let t = &r.topics[0];
    let both = [other(0, "b", "default"), other(1, "a", "default")];
    let both: Vec<&AgentInfo> = both.iter().collect();
    let expected = crate::cluster::placement::partition_leaders(&both, topic.id, topic.partitions);
    assert_eq!(t.partitions.len(), expected.len());
    let mut led = [0; 2];
    for p in &t.partitions {
        assert_eq!(p.leader_id.0, expected[p.partition_index as usize]);
        assert_eq!(p.replica_nodes, vec![p.leader_id]);
        led[p.leader_id.0 as usize] += 1;
    }
    assert_eq!(led, [8, 8], "16 partitions over 2 agents");
    let r = call(&mut conn, "shoal_az=a", &all, 12).await;
    assert!(r.topics[0].partitions.iter().all(|p| p.leader_id.0 == 1));

    // Coordinators: over nodes 0 and 1 whatever the zone.
    let theirs = key_of("g", 0, &[0, 1]);
    let mine = key_of("g", 1, &[0, 1]);
    let find = |key: &str| {
        FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(0)
    };
    let r = call(&mut conn, "shoal_az=a", &find(&theirs), 3).await;
    assert_eq!((r.error_code, r.node_id.0), (0, 0));
    assert_eq!((r.host.as_str(), r.port), ("agent-0.example", 9000));
    let r = call(&mut conn, "app", &find(&mine), 3).await;
    assert_eq!(
        (r.error_code, r.node_id.0, r.port),
        (0, 1, i32::from(me.port()))
    );

    let not_coordinator = ResponseError::NotCoordinator.code();
    let heartbeat = |g: &str| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(g.to_string())))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("m"))
    };
    let r = call(&mut conn, "app", &heartbeat(&theirs), 4).await;
    assert_eq!(r.error_code, not_coordinator);
    let r = call(&mut conn, "app", &heartbeat(&mine), 4).await;
    assert_ne!(r.error_code, not_coordinator);
    let commit = |g: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(g.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(crate::api::topic_name("t"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(0)])])
    };
    let r = call(&mut conn, "app", &commit(&theirs), 8).await;
    assert_eq!(r.topics[0].partitions[0].error_code, not_coordinator);
    let r = call(&mut conn, "app", &commit(&mine), 8).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // Offsets of a group coordinated elsewhere (committed there) are not listed here.
    registry
        .commit_group_offsets(
            &theirs,
            &[GroupOffset {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                leader_epoch: -1,
                metadata: None,
                commit_timestamp: 0,
            }],
            &Fence::sole(&theirs),
        )
        .await
        .unwrap();
    let r = call(&mut conn, "app", &ListGroupsRequest::default(), 4).await;
    let listed: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
    assert_eq!(listed, vec![mine.as_str()]);

    let txn_theirs = key_of("tx", 0, &[0, 1]);
    let txn_mine = key_of("tx", 1, &[0, 1]);
    let init = |id: &str| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.to_string()))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let r = call(&mut conn, "app", &init(&txn_theirs), 4).await;
    assert_eq!(r.error_code, not_coordinator);
    let r = call(&mut conn, "app", &init(&txn_mine), 4).await;
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 0);
    // Idempotent producers may ask any agent.
    let idempotent = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    let r = call(&mut conn, "app", &idempotent, 4).await;
    assert_eq!(r.error_code, 0);

    // Jobs run under this agent's registered id.
    assert!(registry
        .events()
        .iter()
        .any(|e| e == "claim retention-gc node-1"));

    // Shutdown with a produce buffered: answered, flushed and committed, then deregistered.
    send(&mut conn, "app", &produce("t", 3, 1), 9).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!registry.events().iter().any(|e| e == "commit"));
    stop.cancel();
    let r = recv::<ProduceRequest>(&mut conn, 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    agent.wait().await.unwrap();
    let events = registry.events();
    let commit_at = events.iter().position(|e| e == "commit").expect("a commit");
    let left_at = events.iter().position(|e| e == "deregister").expect("left");
    assert!(commit_at < left_at, "{events:?}");
    assert_eq!(left_at, events.len() - 1, "{events:?}");
    assert!(registry.live_agents().iter().all(|a| a.node_id != 1));
}

#[tokio::test]
async fn roles_refuse_what_the_agent_does_not_do() {
    let registry = Registry::new(Vec::new());
    let topic = create_topic(&registry, "t", 2).await;
    let roles = Roles {
        produce: false,
        fetch: false,
        jobs: false,
    };
    let mut config = config("", roles);
    config.node_id = 4;
    let (agent, stop, mut conn) = start(&registry, config).await;
    assert_eq!(registry.events(), vec!["register 4"]);
    let invalid = ResponseError::InvalidRequest.code();
    for _ in 0..2 {
        let r = call(&mut conn, "app", &produce("t", 1, -1), 9).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.index, p.error_code), (1, invalid));
        assert!(p
            .error_message
            .as_ref()
            .is_some_and(|m| m.as_str().contains("produce role")));
    }
    let fetch = FetchRequest::default()
        .with_max_wait_ms(5000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(crate::api::topic_name("t"))
            .with_topic_id(topic.id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = call(&mut conn, "app", &fetch, 12).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.partition_index, p.error_code), (0, invalid));
    assert_eq!(r.responses[0].topic.0.as_str(), "t");
    let r = call(&mut conn, "app", &fetch, 13).await;
    assert_eq!(r.responses[0].topic_id, topic.id);
    assert_eq!(r.responses[0].partitions[0].error_code, invalid);
    // acks=0 gets no answer; the next request is still answered in order.
    send(&mut conn, "app", &produce("t", 0, 0), 9).await;
    let r = call(&mut conn, "app", &MetadataRequest::default(), 12).await;
    assert_eq!(r.brokers[0].node_id.0, 4);
    // No jobs: nothing claimed, no producer expiry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        registry
            .events()
            .iter()
            .all(|e| !e.starts_with("claim") && e != "expire producers"),
        "{:?}",
        registry.events()
    );
    stop.cancel();
    agent.wait().await.unwrap();
    assert_eq!(registry.events(), vec!["register 4", "deregister"]);
}

#[tokio::test]
async fn taken_node_id_fails_the_start() {
    let registry = Registry::new(vec![other(2, "", "default")]);
    let mut config = config("", Roles::ALL);
    config.node_id = 2;
    let err = Agent::start(
        config,
        registry.clone(),
        Arc::new(InMemory::new()),
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("node id 2 is taken");
    assert!(format!("{err:#}").contains("--node-id 2"), "{err:#}");
}

#[tokio::test]
async fn commits_elsewhere_wake_fetches_here() {
    let (notify, notifications) = tokio::sync::broadcast::channel(2);
    let commits = Arc::new(crate::commits::Commits::default());
    let mut woken = commits.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::forward_commits(
        notifications,
        commits.clone(),
        stop.clone(),
    ));
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    async fn next(woken: &mut tokio::sync::watch::Receiver<u64>) {
        tokio::time::timeout(Duration::from_secs(5), woken.changed())
            .await
            .expect("woken")
            .unwrap();
    }
    // A report naming (a, 0) wakes fetches; only those of (a, 0) read again.
    let seen = *woken.borrow_and_update();
    notify.send(Some(vec![(a, 0)].into())).unwrap();
    next(&mut woken).await;
    assert!(commits.changed_since(seen, &[(a, 0)]));
    assert!(!commits.changed_since(seen, &[(a, 1), (b, 0)]));
    // A report that may have missed changes counts for every partition.
    let seen = *woken.borrow_and_update();
    notify.send(None).unwrap();
    next(&mut woken).await;
    assert!(commits.changed_since(seen, &[(b, 7)]));
    stop.cancel();
    task.await.unwrap().unwrap();

    // Falling behind the reports counts for every partition too.
    let (notify, notifications) = tokio::sync::broadcast::channel(2);
    let seen = *woken.borrow_and_update();
    for i in 0..5 {
        notify.send(Some(vec![(a, i)].into())).unwrap();
    }
    let task = tokio::spawn(crate::forward_commits(
        notifications,
        commits.clone(),
        CancellationToken::new(),
    ));
    next(&mut woken).await;
    // The store going away ends the task quietly.
    drop(notify);
    task.await.unwrap().unwrap();
    assert!(
        commits.changed_since(seen, &[(b, 9)]),
        "reports (a, 0..3) were lost"
    );
}

#[tokio::test]
async fn a_group_that_moves_away_is_dropped_and_starts_afresh_when_back() {
    let registry = Registry::new(vec![other(5, "a", "default")]);
    let (agent, stop, mut conn) = start(&registry, config("a", Roles::ALL)).await;
    assert_eq!(registry.events()[0], "register 0");
    // A group this agent coordinates beside agent 5, which agent 6 takes when it comes.
    let group = (0..)
        .map(|i| format!("moving-{i}"))
        .find(|g| {
            coordinator_for(g, &[0, 5]) == Some(0) && coordinator_for(g, &[0, 5, 6]) == Some(6)
        })
        .unwrap();
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))])
    };
    let first = call(&mut conn, "c1", &join(""), 3).await;
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    // A second member's join waits for the first to rejoin (up to 30 s)...
    let mut second_conn = TcpStream::connect(agent.local_addr).await.unwrap();
    send(&mut second_conn, "c2", &join(""), 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...until agent 6 appears and the group is its: the wait ends with NOT_COORDINATOR.
    registry.live.lock().unwrap().push(other(6, "a", "default"));
    let second = recv::<JoinGroupRequest>(&mut second_conn, 3).await;
    assert_eq!(second.error_code, ResponseError::NotCoordinator.code());
    // Agent 6 goes again: the group is back here, without the first member (whose
    // session has 30 s left), so a new member's join completes by itself.
    registry.live.lock().unwrap().retain(|a| a.node_id != 6);
    let third = call(&mut conn, "c3", &join(""), 3).await;
    assert_eq!(
        (third.error_code, third.generation_id, third.members.len()),
        (0, 1, 1)
    );
    stop.cancel();
}

/// A metric's value from the agent's `/metrics` page.
async fn metric(addr: std::net::SocketAddr, series: &str) -> u64 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in the metrics page"))
}

#[tokio::test]
async fn a_waiting_fetch_reads_again_only_when_its_partition_changes() {
    let registry = Registry::new(vec![]);
    create_topic(&registry, "quiet", 1).await;
    create_topic(&registry, "busy", 1).await;
    let (agent, stop, mut producer) = start(
        &registry,
        AgentConfig {
            batch_timeout: Duration::from_millis(5),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..config("a", Roles::ALL)
        },
    )
    .await;
    let metrics = agent.metrics_addr.unwrap();
    let mut consumer = TcpStream::connect(agent.local_addr).await.unwrap();
    let fetch = |offset: i64, max_wait_ms: i32| {
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(crate::api::topic_name("quiet"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])])
    };
    send(&mut consumer, "consumer", &fetch(0, 20_000), 12).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Commits to another topic wake the fetch, which goes back to waiting unread.
    for _ in 0..5 {
        let r = call(&mut producer, "producer", &produce("busy", 0, 1), 9).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let skipped = "shoal_fetch_wakeups_total{result=\"skipped\"}";
    let read = "shoal_fetch_wakeups_total{result=\"read\"}";
    assert!(metric(metrics, skipped).await >= 1);
    assert_eq!(metric(metrics, read).await, 0);
    // A commit to its own partition answers it (long before its 20 s are up).
    let r = call(&mut producer, "producer", &produce("quiet", 0, 1), 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let answer = recv::<FetchRequest>(&mut consumer, 12).await;
    let part = &answer.responses[0].partitions[0];
    assert_eq!((part.error_code, part.high_watermark), (0, 1));
    assert!(!part.records.as_ref().unwrap().is_empty());
    assert_eq!(metric(metrics, read).await, 1);
    // A fetch still waiting when the agent shuts down is answered at once (not after
    // its 30 s), so a SIGTERM is not held up by consumers' long polls.
    send(&mut consumer, "consumer", &fetch(1, 30_000), 12).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let answer = recv::<FetchRequest>(&mut consumer, 12).await;
    let part = &answer.responses[0].partitions[0];
    assert_eq!((part.error_code, part.high_watermark), (0, 1));
}

#[tokio::test]
async fn quotas_set_through_another_agent_apply_here_within_a_second_split_across_agents() {
    // With this agent, four agents of its group take produce traffic; the fetch-only
    // agent and the agent of another group do not share the produce quota.
    let mut fetch_only = other(4, "a", "default");
    fetch_only.roles = vec!["fetch".to_string()];
    let registry = Registry::new(vec![
        other(0, "a", "default"),
        other(1, "a", "default"),
        other(2, "a", "default"),
        other(3, "a", "other"),
        fetch_only,
    ]);
    create_topic(&registry, "t", 1).await;
    let (agent, stop, mut conn) = start(
        &registry,
        AgentConfig {
            batch_timeout: Duration::from_millis(10),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..config("a", Roles::ALL)
        },
    )
    .await;
    let metrics = agent.metrics_addr.unwrap();
    let storm = QuotaEntity {
        user: None,
        client_id: Some(QuotaName::Named("storm".into())),
    };
    // Written to the store directly, as another agent's AlterClientQuotas would.
    let rate = vec![("producer_byte_rate".to_string(), Some(40_000.0))];
    registry.alter_client_quota(&storm, &rate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let big = |n: usize| {
        let mut req = produce("t", 0, 1);
        req.topic_data[0].partition_data[0].records = Some(batch(&vec![b'x'; n]));
        req
    };
    let r = call(&mut conn, "storm", &big(200_000), 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // 200 kB over the 10 s span is 20 kB/s against this agent's 40 kB/s / 4 = 10 kB/s:
    // (20 - 10) / 10 × 10 s. (Alone it would be within the quota; counting all six
    // agents it would be capped at 11 s.)
    assert!(
        (9_900..=10_200).contains(&r.throttle_time_ms),
        "throttle {} ms",
        r.throttle_time_ms
    );
    assert_eq!(
        metric(metrics, "shoal_quota_throttled_total{quota=\"produce\"}").await,
        1
    );
    let ms = metric(metrics, "shoal_quota_throttle_ms_total{quota=\"produce\"}").await;
    assert_eq!(ms, r.throttle_time_ms as u64);
    // Another client id has no quota and is not held up.
    let mut calm = TcpStream::connect(agent.local_addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = call(&mut calm, "calm", &big(200_000), 9).await;
    assert_eq!(r.throttle_time_ms, 0);
    assert!(started.elapsed() < Duration::from_secs(1));

    // Removed elsewhere: within a second "storm" is free again, on a new connection.
    let unset = vec![("producer_byte_rate".to_string(), None)];
    registry.alter_client_quota(&storm, &unset).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut again = TcpStream::connect(agent.local_addr).await.unwrap();
    let r = call(&mut again, "storm", &big(200_000), 9).await;
    assert_eq!(r.throttle_time_ms, 0, "the quota is gone");
    stop.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test]
async fn acls_written_through_another_agent_are_enforced_here_after_a_reload() {
    use crate::security::acl::{AuthorizerConfig, AuthorizerMode};
    let registry = Registry::new(vec![other(1, "a", "default")]);
    create_topic(&registry, "t", 1).await;
    let (_agent, stop, mut conn) = start(
        &registry,
        AgentConfig {
            batch_timeout: Duration::from_millis(10),
            authorizer: AuthorizerConfig {
                mode: AuthorizerMode::Acl,
                super_users: Vec::new(),
                allow_everyone_if_no_acl_found: true,
            },
            ..config("a", Roles::ALL)
        },
    )
    .await;
    let produce_code = |r: kafka_protocol::messages::ProduceResponse| {
        r.responses[0].partition_responses[0].error_code
    };
    assert_eq!(
        produce_code(call(&mut conn, "c", &produce("t", 0, 1), 9).await),
        0
    );

    // Written to the store directly, as another agent's CreateAcls would.
    let deny = AclBinding {
        resource_type: AclResourceType::Topic,
        resource_name: "t".into(),
        pattern_type: AclPatternType::Literal,
        principal: "User:*".into(),
        host: "*".into(),
        operation: AclOperation::Write,
        permission: AclPermission::Deny,
    };
    registry
        .create_acls(std::slice::from_ref(&deny))
        .await
        .unwrap();
    let denied = ResponseError::TopicAuthorizationFailed.code();
    // The periodic reload picks it up (polled, bounded well above its one second).
    let mut code = 0;
    for _ in 0..50 {
        code = produce_code(call(&mut conn, "c", &produce("t", 0, 1), 9).await);
        if code == denied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(code, denied, "the DENY Write reached this agent");

    registry
        .delete_acls(&[AclFilter::exact(&deny)])
        .await
        .unwrap();
    for _ in 0..50 {
        code = produce_code(call(&mut conn, "c", &produce("t", 0, 1), 9).await);
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(code, 0, "the deletion reached this agent");
    stop.cancel();
}

/// A coordinator whose lease may have lapsed, or whose role another agent claimed, must
/// stop acting for it: its view still names it the coordinator, but Heartbeat and
/// OffsetCommit get NOT_COORDINATOR and nothing it commits lands. (Before fencing, the
/// view alone decided and the commit was an unconditional write.)
/// An OffsetCommit of group `g`, outside any generation, for partition 0 of `t`.
fn commit_to_g(offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(crate::api::topic_name("t"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

/// The error code of the first partition of an OffsetCommit answer.
fn first_code(r: &kafka_protocol::messages::OffsetCommitResponse) -> i16 {
    r.topics[0].partitions[0].error_code
}

#[tokio::test]
async fn a_coordinator_that_lost_its_role_stops_writing() {
    let registry = Registry::new(Vec::new());
    let (agent, stop, mut conn) = start(&registry, config("", Roles::ALL)).await;
    let me = *registry.me.lock().unwrap();
    let me = me.expect("registered");
    let live = |incarnation| {
        let mut l = registry.live.lock().unwrap();
        l.iter_mut().for_each(|a| a.incarnation = incarnation);
    };
    live(5);
    *registry.standing.lock().unwrap() = Some(Standing::Live {
        node_id: me,
        incarnation: 5,
    });
    create_topic(&registry, "t", 1).await;
    let commit = commit_to_g;
    let code = first_code;
    let committed = || async { registry.inner.group_offsets("g").await.unwrap()[0].offset };
    let not_coordinator = ResponseError::NotCoordinator.code();

    let r = call(&mut conn, "app", &commit(10), 8).await;
    assert_eq!(code(&r), 0);
    assert_eq!(committed().await, 10);
    let claims = || registry.count("claim group:g");
    assert_eq!(claims(), 1, "the role was claimed");
    call(&mut conn, "app", &commit(10), 8).await;
    assert_eq!(claims(), 1, "and is kept");

    // Another agent claimed the role (this agent's lease lapsed and it has not noticed).
    registry
        .claims
        .lock()
        .unwrap()
        .insert("group:g".into(), 1000);
    let r = call(&mut conn, "app", &commit(5), 8).await;
    assert_eq!(code(&r), not_coordinator, "the store refused the write");
    assert_eq!(committed().await, 10, "offsets never went back");
    let r = call(&mut conn, "app", &commit(5), 8).await;
    assert_eq!(code(&r), not_coordinator, "while the other agent holds it");
    assert_eq!(
        claims(),
        2,
        "the lost role was dropped, so the next commit tries to claim it"
    );

    // The other agent let go; this one may claim it again.
    registry.claims.lock().unwrap().clear();
    let r = call(&mut conn, "app", &commit(11), 8).await;
    assert_eq!(code(&r), 0);

    // The lease may have lapsed: nothing is coordinated, whatever the view says.
    *registry.standing.lock().unwrap() = Some(Standing::Lapsed);
    let r = call(&mut conn, "app", &commit(99), 8).await;
    assert_eq!(code(&r), not_coordinator);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m"));
    assert_eq!(
        call(&mut conn, "app", &hb, 4).await.error_code,
        not_coordinator
    );
    assert_eq!(committed().await, 11);

    // Live again under the same lease: the claim was kept (forgetting it would leave it
    // in the store, under a live lease, blocking the role's next coordinator).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = claims();
    *registry.standing.lock().unwrap() = Some(Standing::Live {
        node_id: me,
        incarnation: 5,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call(&mut conn, "app", &commit(12), 8).await;
    assert_eq!(code(&r), 0);
    assert_eq!(claims(), before, "the same claim is used, not a new one");

    // Back under a new incarnation the registry lists: coordinating again, and the
    // roles of the old incarnation were given up.
    live(6);
    *registry.standing.lock().unwrap() = Some(Standing::Live {
        node_id: me,
        incarnation: 6,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = claims();
    let r = call(&mut conn, "app", &commit(13), 8).await;
    assert_eq!(code(&r), 0);
    assert_eq!(
        claims(),
        before + 1,
        "the old incarnation's role was given up"
    );
    assert_eq!(committed().await, 13);
    stop.cancel();
    agent.wait().await.unwrap();
}

/// An OffsetCommit waits out a store out of reach (for --offset-commit-timeout) rather
/// than answering an error the client would retry, perhaps after its next commit; past
/// the timeout it answers COORDINATOR_NOT_AVAILABLE and nothing is written.
#[tokio::test]
async fn an_offset_commit_waits_out_a_store_out_of_reach() {
    let registry = Registry::new(Vec::new());
    let cfg = AgentConfig {
        offset_commit_timeout: Duration::from_secs(2),
        ..config("", Roles::ALL)
    };
    let (agent, stop, mut conn) = start(&registry, cfg).await;
    create_topic(&registry, "t", 1).await;
    let commit = commit_to_g;
    let code = first_code;
    let committed = || async { registry.inner.group_offsets("g").await.unwrap()[0].offset };
    let misses = || registry.count("offset commit: unreachable");

    // Three attempts fail, the fourth lands: the client sees one success.
    registry
        .unreachable
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let r = call(&mut conn, "app", &commit(10), 8).await;
    assert_eq!(code(&r), 0);
    assert_eq!(misses(), 3);
    assert_eq!(committed().await, 10);

    // Out of reach for longer than the timeout: an error, and the offset is unchanged.
    registry
        .unreachable
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    let r = call(&mut conn, "app", &commit(20), 8).await;
    assert_eq!(code(&r), ResponseError::CoordinatorNotAvailable.code());
    assert!(misses() > 4, "it kept trying ({} attempts)", misses());
    assert_eq!(committed().await, 10);
    registry
        .unreachable
        .store(0, std::sync::atomic::Ordering::SeqCst);
    stop.cancel();
    agent.wait().await.unwrap();
}

/// Transaction timeouts are read from the agent's clock, so a test (or an operator's
/// clock step) moves them without waiting: an ongoing transaction is aborted, its
/// producer fenced, once the clock passes its timeout. Before the clock was injected, this
/// needed the timeout to pass in real time.
#[tokio::test]
async fn transaction_timeouts_follow_the_agents_clock() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId};
    let clock = Arc::new(clock::ManualClock::starting_now());
    let registry = Registry::new(Vec::new());
    let mut config = config("", Roles::ALL);
    config.clock = clock.clone();
    config.batch_timeout = Duration::from_millis(20); // markers are flushed
    let (agent, stop, mut conn) = start(&registry, config).await;
    create_topic(&registry, "tt", 1).await;
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("slow"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = call(&mut conn, "app", &init, 4).await;
    assert_eq!(r.error_code, 0);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("slow")))
        .with_v3_and_below_producer_id(r.producer_id)
        .with_v3_and_below_producer_epoch(r.producer_epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(crate::api::topic_name("tt"))
            .with_partitions(vec![0])]);
    let added = call(&mut conn, "app", &add, 3).await;
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let state = || async { registry.inner.transaction("slow").await.unwrap().unwrap() };
    assert_eq!(state().await.state, TxnState::Ongoing);
    // Two scans (one a second) at the same clock reading: still open.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(state().await.state, TxnState::Ongoing, "not yet timed out");
    clock.advance(Duration::from_secs(61));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while state().await.state != TxnState::CompleteAbort {
        assert!(
            tokio::time::Instant::now() < deadline,
            "aborted once the clock passed the timeout: {:?}",
            state().await.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        state().await.epoch > r.producer_epoch,
        "the producer was fenced"
    );
    stop.cancel();
    agent.wait().await.unwrap();
}
