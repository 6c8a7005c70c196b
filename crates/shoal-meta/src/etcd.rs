//! The etcd backend, for clusters: many agents share one strongly consistent store.
//!
//! Every record is one etcd key under a prefix (`etcd://host:2379/PREFIX`, default
//! `shoal/`); values are small JSON documents. Layout (`{id}` a topic id, partitions
//! and offsets zero-padded so keys sort numerically):
//!
//! | key | holds |
//! |---|---|
//! | `topics/{name}` | topic id, partition count, configs |
//! | `parts/{id}/{p}` | log start, high watermark, open transactions |
//! | `idx/{id}/{p}/{base}` | one index entry |
//! | `prod/{id}/{p}/{pid}` | a producer's state on a partition |
//! | `abort/{id}/{p}/{last}/{pid}` | an aborted transaction |
//! | `obj/{key}` | a committed object: size, the index keys it was given, GC mark |
//! | `txn/{txn id}`, `txnpid/{pid}` | transaction records (version = etcd's key version) |
//! | `txoff/{txn id}/{group}/…`, `goff/{group}/{topic}/{p}` | staged and committed offsets |
//! | `jobs/{name}`, `agents/{node}`, `coord/{role}` | job claims, live agents and coordination role claims (under the holders' leases) |
//! | `quotas/{entity}` | one client-quota entity's values (entity as [`QuotaEntity::encode`]) |
//! | `scram/{user}/{mechanism}` | one SCRAM credential: salt, stored and server key, iterations |
//! | `acls/{type}/{pattern}/{name}/{principal}/{host}/{op}/{perm}` | one ACL binding (codes, escaped names) |
//! | `history` | revisions seen by past history compactions, and the last compacted |
//!
//! Writes are optimistic: read the keys a change depends on, compute, then one etcd
//! transaction that compares each key's mod revision and applies every put and delete.
//! A lost comparison means another agent got there first: read again and retry. So the
//! flush commit is one etcd transaction that assigns offsets; two agents committing to
//! one partition serialise on its `parts/` key and never hand out an offset twice.
//!
//! etcd limits a transaction to `--max-txn-ops` operations (128 by default); the
//! `max-txn-ops=N` URL parameter tells Shoal the server's setting. A flush touching more
//! partitions than fit is committed in several transactions, each atomic for whole
//! partitions; compaction sizes its swaps to fit ([`MetaStore::max_swap_entries`]).
//! Requests stay far below etcd's 1.5 MiB request limit.
//!
//! Lifecycle: [`EtcdStore::connect`] opens the client and starts three watches (live
//! agents, partition commits, topic changes) that reconnect by themselves; the registry
//! lease, the agent's standing and its role claims are `etcd_registry`'s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_etcd::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::producer_rules::ProducerRow;
use crate::*;

/// Attempts at an optimistic write before giving up with a retriable error.
pub(crate) const MAX_ATTEMPTS: usize = 64;
/// Page size of prefix scans (keeps responses well under gRPC's message limit).
pub(crate) const PAGE: i64 = 500;

/// A [`MetaStore`] in etcd. Cheap to clone; clones share the client and watches.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) client: Client,
    /// Every key starts with this (ends with '/').
    pub(crate) prefix: String,
    /// The server's `--max-txn-ops`.
    pub(crate) max_ops: usize,
    agents: watch::Receiver<Vec<AgentInfo>>,
    /// Fed by the watch on partition state; subscribers are the agent's fetch wakeups.
    commits: broadcast::Sender<ChangedPartitions>,
    topics: watch::Receiver<u64>,
    /// This process's registry entry, once registered (see `etcd_registry`).
    pub(crate) registration: Arc<Mutex<Option<crate::etcd_registry::Registration>>>,
}

pub(crate) fn backend(e: impl std::fmt::Display) -> MetaError {
    let msg = e.to_string();
    if msg.contains("too many operations in txn request") {
        return MetaError::Backend(format!(
            "{msg}: etcd's --max-txn-ops is lower than the max-txn-ops Shoal was given in its etcd:// URL; make them agree"
        ));
    }
    MetaError::Backend(format!("etcd: {msg}"))
}

/// Escapes a name (group id, transactional id, job) for use as one key segment.
pub(crate) fn esc(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

pub(crate) fn unesc(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

pub(crate) fn from_json<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, MetaError> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        MetaError::Backend(format!(
            "corrupt metadata record {}: {e}",
            String::from_utf8_lossy(kv.key())
        ))
    })
}

pub(crate) use crate::clock::now_ms;

/// The compare that holds while `key` still is as read (`None`: still absent).
pub(crate) fn unchanged(key: &str, kv: Option<&KeyValue>) -> Compare {
    match kv {
        Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
        None => Compare::version(key, CompareOp::Equal, 0),
    }
}

// ---- Records ----

#[derive(Serialize, Deserialize)]
pub(crate) struct TopicRec {
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Default, Clone)]
pub(crate) struct PartRec {
    pub log_start: i64,
    pub hwm: i64,
    /// Open transactions: producer id -> first offset.
    #[serde(default)]
    pub open: BTreeMap<i64, i64>,
}

impl PartRec {
    pub fn offsets(&self) -> PartitionOffsets {
        let open = self.open.values().min().copied();
        PartitionOffsets {
            log_start: self.log_start,
            high_watermark: self.hwm,
            last_stable: open.unwrap_or(self.hwm).max(self.log_start),
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct EntryRec {
    b: i64,
    e: i64,
    k: String,
    s: u64,
    o: u64,
    l: u64,
    tmin: i64,
    tmax: i64,
}

impl From<&IndexEntry> for EntryRec {
    fn from(e: &IndexEntry) -> Self {
        EntryRec {
            b: e.base_offset,
            e: e.end_offset,
            k: e.object_key.clone(),
            s: e.object_size,
            o: e.data_offset,
            l: e.data_len,
            tmin: e.min_timestamp,
            tmax: e.max_timestamp,
        }
    }
}

impl From<EntryRec> for IndexEntry {
    fn from(r: EntryRec) -> Self {
        IndexEntry {
            base_offset: r.b,
            end_offset: r.e,
            object_key: r.k,
            object_size: r.s,
            data_offset: r.o,
            data_len: r.l,
            min_timestamp: r.tmin,
            max_timestamp: r.tmax,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ProdRec {
    #[serde(flatten)]
    pub row: ProducerRow,
    pub last_ts: i64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AbortRec {
    pub pid: i64,
    pub first: i64,
    pub last: i64,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ObjRec {
    pub size: u64,
    /// Index keys (without the `idx/` prefix) this object was given; an entry may
    /// since have been dropped or replaced, so readers check.
    pub refs: Vec<String>,
    /// When GC first saw the object unreferenced.
    pub unref_ms: Option<i64>,
    /// How many transactions of its flush commit are applied: each one sets it, so a
    /// write of unknown outcome is resolved by reading it back.
    #[serde(default)]
    pub chunks: u32,
}

/// Revisions seen by history compaction passes: `(revision, when)`, oldest first.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct HistoryRec {
    pub marks: Vec<(i64, i64)>,
    pub compacted: i64,
}

/// Marks kept at most (if passes come far more often than the retention, the oldest go,
/// which only delays compaction).
const MAX_HISTORY_MARKS: usize = 1000;

#[derive(Serialize, Deserialize)]
pub(crate) struct ScramRec {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TxnRec {
    pub pid: i64,
    pub epoch: i16,
    pub state: String,
    pub timeout_ms: i32,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub partitions: Vec<(String, Uuid, i32)>,
    pub groups: Vec<String>,
    /// Added with transactions v2; records written before have none.
    #[serde(default = "no_producer")]
    pub next_pid: i64,
    #[serde(default = "no_producer")]
    pub previous_pid: i64,
}

fn no_producer() -> i64 {
    -1
}

impl TxnRec {
    pub fn of(t: &Transaction) -> Self {
        TxnRec {
            pid: t.producer_id,
            epoch: t.epoch,
            state: t.state.as_str().to_string(),
            timeout_ms: t.timeout_ms,
            started_ms: t.started_ms,
            updated_ms: t.updated_ms,
            partitions: t
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.topic_id, p.partition))
                .collect(),
            groups: t.groups.clone(),
            next_pid: t.next_producer_id,
            previous_pid: t.previous_producer_id,
        }
    }

    pub fn into_transaction(self, id: String, version: u64) -> Result<Transaction, MetaError> {
        Ok(Transaction {
            transactional_id: id,
            producer_id: self.pid,
            epoch: self.epoch,
            state: TxnState::parse(&self.state).ok_or_else(|| {
                MetaError::Backend(format!("unknown transaction state '{}'", self.state))
            })?,
            timeout_ms: self.timeout_ms,
            started_ms: self.started_ms,
            updated_ms: self.updated_ms,
            partitions: self
                .partitions
                .into_iter()
                .map(|(topic, topic_id, partition)| TxnPartition {
                    topic,
                    topic_id,
                    partition,
                })
                .collect(),
            groups: self.groups,
            next_producer_id: self.next_pid,
            previous_producer_id: self.previous_pid,
            version,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OffsetRec {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub ts: i64,
}

impl OffsetRec {
    pub fn of(o: &GroupOffset) -> Self {
        OffsetRec {
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            ts: o.commit_timestamp,
        }
    }

    pub fn into_offset(self, topic: String, partition: i32) -> GroupOffset {
        GroupOffset {
            topic,
            partition,
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata,
            commit_timestamp: self.ts,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AgentRec {
    node_id: i32,
    host: String,
    port: i32,
    az: String,
    group: String,
    roles: Vec<String>,
    peer_addr: Option<String>,
    #[serde(default)]
    listeners: Vec<crate::ListenerAddr>,
}

impl From<&AgentInfo> for AgentRec {
    fn from(a: &AgentInfo) -> Self {
        AgentRec {
            node_id: a.node_id,
            host: a.host.clone(),
            port: a.port,
            az: a.az.clone(),
            group: a.group.clone(),
            roles: a.roles.clone(),
            peer_addr: a.peer_addr.clone(),
            listeners: a.listeners.clone(),
        }
    }
}

/// A registry entry as the agent it names: its incarnation is the lease it is held under.
fn agent_of(kv: &KeyValue) -> Result<AgentInfo, MetaError> {
    let mut info: AgentInfo = from_json::<AgentRec>(kv)?.into();
    info.incarnation = kv.lease();
    Ok(info)
}

impl From<AgentRec> for AgentInfo {
    fn from(a: AgentRec) -> Self {
        AgentInfo {
            incarnation: 0,
            node_id: a.node_id,
            host: a.host,
            port: a.port,
            az: a.az,
            group: a.group,
            roles: a.roles,
            peer_addr: a.peer_addr,
            listeners: a.listeners,
        }
    }
}

// ---- Connection, keys and small helpers ----

/// `etcd://h1:2379,h2:2379[/prefix][?max-txn-ops=N]` → (endpoints, prefix, max ops).
fn parse_url(url: &str) -> Result<(Vec<String>, String, usize), MetaError> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| MetaError::Invalid(format!("'{url}' is not an etcd:// URL")))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let endpoints: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{h}"))
        .collect();
    if endpoints.is_empty() {
        return Err(MetaError::Invalid(format!(
            "'{url}' names no etcd endpoint; use etcd://host:2379[,host2:2379][/prefix]"
        )));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        "shoal/".to_string()
    } else {
        format!("{prefix}/")
    };
    let mut max_ops = 128;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("max-txn-ops", n)) => {
                max_ops = n.parse().ok().filter(|n| *n >= 16).ok_or_else(|| {
                    MetaError::Invalid(format!("max-txn-ops must be a number >= 16, not '{n}'"))
                })?;
            }
            _ => {
                return Err(MetaError::Invalid(format!(
                    "unknown etcd URL parameter '{pair}' (known: max-txn-ops=N)"
                )))
            }
        }
    }
    Ok((endpoints, prefix, max_ops))
}

impl EtcdStore {
    /// Connects to etcd (`etcd://host:2379[,host2:2379][/prefix][?max-txn-ops=N]`) and
    /// starts watching live agents and commits.
    pub async fn connect(url: &str) -> Result<EtcdStore, MetaError> {
        Self::connect_with(url, ConnectOptions::default()).await
    }

    /// [`EtcdStore::connect`] with client settings: TLS (the URL's endpoints are then
    /// dialled as `https://`) and user/password authentication.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<EtcdStore, MetaError> {
        let (mut endpoints, prefix, max_ops) = parse_url(url)?;
        if options.tls.is_some() {
            for e in &mut endpoints {
                *e = e.replacen("http://", "https://", 1);
            }
        }
        let client = Client::connect(&endpoints, &options).map_err(|e| {
            MetaError::Backend(format!("connect to etcd at {}: {e}", endpoints.join(",")))
        })?;
        let (agents_tx, agents) = watch::channel(Vec::new());
        let commits = broadcast::channel(COMMIT_BACKLOG).0;
        let (topics_tx, topics) = watch::channel(0u64);
        let store = EtcdStore {
            client,
            prefix,
            max_ops,
            agents,
            commits,
            topics,
            registration: Arc::new(Mutex::new(None)),
        };
        // Fail fast with a clear message if etcd is not reachable at all.
        store.get(&store.key("cluster_id")).await.map_err(|e| {
            MetaError::Backend(format!(
                "connect to etcd at {}: {e} (is etcd running there?)",
                endpoints.join(",")
            ))
        })?;
        tokio::spawn(watch_agents(store.clone(), agents_tx));
        tokio::spawn(watch_commits(
            store.client.clone(),
            store.key("parts/"),
            store.commits.downgrade(),
        ));
        tokio::spawn(watch_changes(store.clone(), "topics/", topics_tx));
        Ok(store)
    }

    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub(crate) fn part_key(&self, id: Uuid, p: i32) -> String {
        format!("{}parts/{id}/{p:010}", self.prefix)
    }

    pub(crate) fn idx_prefix(&self, id: Uuid, p: i32) -> String {
        format!("{}idx/{id}/{p:010}/", self.prefix)
    }

    /// `{id}/{p}/{base}`: an index entry's key below `idx/`, as objects record it.
    pub(crate) fn idx_ref(id: Uuid, p: i32, base: i64) -> String {
        format!("{id}/{p:010}/{base:020}")
    }

    pub(crate) fn idx_key_of_ref(&self, r: &str) -> String {
        format!("{}idx/{r}", self.prefix)
    }

    pub(crate) fn prod_key(&self, id: Uuid, p: i32, pid: i64) -> String {
        format!("{}prod/{id}/{p:010}/{pid:020}", self.prefix)
    }

    pub(crate) fn abort_prefix(&self, id: Uuid, p: i32) -> String {
        format!("{}abort/{id}/{p:010}/", self.prefix)
    }

    pub(crate) fn obj_key(&self, key: &str) -> String {
        format!("{}obj/{key}", self.prefix)
    }

    /// One key per distinct binding, so identical bindings share it.
    pub(crate) fn acl_key(&self, b: &AclBinding) -> String {
        self.key(&format!(
            "acls/{}/{}/{}/{}/{}/{}/{}",
            b.resource_type.code(),
            b.pattern_type.code(),
            esc(&b.resource_name),
            esc(&b.principal),
            esc(&b.host),
            b.operation.code(),
            b.permission.code()
        ))
    }

    pub(crate) fn txn_key(&self, id: &str) -> String {
        format!("{}txn/{}", self.prefix, esc(id))
    }

    pub(crate) fn txnpid_key(&self, pid: i64) -> String {
        format!("{}txnpid/{pid:020}", self.prefix)
    }

    pub(crate) fn goff_prefix(&self, group: &str) -> String {
        format!("{}goff/{}/", self.prefix, esc(group))
    }

    pub(crate) fn goff_key(&self, group: &str, topic: &str, p: i32) -> String {
        format!("{}{topic}/{p:010}", self.goff_prefix(group))
    }

    /// Staged offsets of one transaction (`group` empty: of all its groups).
    pub(crate) fn txoff_prefix(&self, txn: &str, group: &str) -> String {
        if group.is_empty() {
            return format!("{}txoff/{}/", self.prefix, esc(txn));
        }
        format!("{}txoff/{}/{}/", self.prefix, esc(txn), esc(group))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError> {
        let resp = self.client.get(key, None).await.map_err(backend)?;
        Ok(resp.kvs.into_iter().next())
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, KeyValue)>, MetaError> {
        match self.get(key).await? {
            Some(kv) => Ok(Some((from_json(&kv)?, kv))),
            None => Ok(None),
        }
    }

    /// Several keys read at one revision (absent keys are `None`), in order.
    pub(crate) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<KeyValue>>, MetaError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut revision = 0;
        for chunk in keys.chunks(self.max_ops.max(1)) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|k| {
                    let opts = (revision > 0).then(|| GetOptions::new().with_revision(revision));
                    TxnOp::get(k.as_str(), opts)
                })
                .collect();
            let resp = self
                .client
                .txn(Txn::new().and_then(ops))
                .await
                .map_err(backend)?;
            if revision == 0 {
                revision = resp.revision();
            }
            for r in resp.op_responses() {
                match r {
                    TxnOpResponse::Get(g) => out.push(g.kvs.into_iter().next()),
                    _ => return Err(MetaError::Backend("etcd: unexpected txn response".into())),
                }
            }
        }
        Ok(out)
    }

    /// Every key-value under `prefix` from `start` (inclusive; default the prefix
    /// itself), in key order, at most `limit` (0: all), paging through big ranges.
    pub(crate) async fn scan(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, MetaError> {
        let end = prefix_end(prefix);
        let mut from = start.unwrap_or(prefix).as_bytes().to_vec();
        let mut out = Vec::new();
        let mut revision = 0;
        loop {
            let want = if limit == 0 {
                PAGE
            } else {
                PAGE.min((limit - out.len()) as i64)
            };
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(want);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self
                .client
                .get(from.clone(), Some(opts))
                .await
                .map_err(backend)?;
            if revision == 0 {
                revision = resp.revision();
            }
            let more = resp.more;
            let kvs = resp.kvs;
            let n = kvs.len();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more || n == 0 || (limit > 0 && out.len() >= limit) {
                return Ok(out);
            }
        }
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<bool, MetaError> {
        let resp = self.client.txn(txn).await.map_err(backend)?;
        Ok(resp.succeeded)
    }

    /// Runs puts/deletes made for a coordination role, each chunk (see
    /// [`Self::apply_chunked`]) on condition that `fence` is still the role's claim;
    /// [`MetaError::Fenced`] when it is not (chunks before it stay applied, as a
    /// chunked write's do on any failure).
    pub(crate) async fn apply_fenced(
        &self,
        ops: Vec<TxnOp>,
        fence: &Fence,
    ) -> Result<(), MetaError> {
        let per_txn = self.max_ops.max(1);
        let mut ops = ops;
        loop {
            let rest = ops.split_off(ops.len().min(per_txn));
            let txn = Txn::new()
                .when([crate::etcd_registry::fence_compare(self, fence)])
                .and_then(ops);
            if !self.txn(txn).await? {
                return Err(MetaError::Fenced(fence.role.clone()));
            }
            if rest.is_empty() {
                return Ok(());
            }
            ops = rest;
        }
    }

    /// Runs puts/deletes in transactions of at most `max_ops` operations each (for
    /// writes that need no atomicity across the chunks).
    pub(crate) async fn apply_chunked(&self, ops: Vec<TxnOp>) -> Result<(), MetaError> {
        self.apply_chunked_nested(ops, 0).await
    }

    /// [`Self::apply_chunked`] for ops that are transactions of up to `inner` operations
    /// each: etcd allows a nested transaction only `max-txn-ops` minus its parent's
    /// operation count, so chunks are that much smaller.
    pub(crate) async fn apply_chunked_nested(
        &self,
        ops: Vec<TxnOp>,
        inner: usize,
    ) -> Result<(), MetaError> {
        let per_txn = self.max_ops.saturating_sub(inner).max(1);
        let mut ops = ops;
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(per_txn));
            self.txn(Txn::new().and_then(ops)).await?;
            ops = rest;
        }
        Ok(())
    }
}

/// The first key after every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub(crate) fn key_str(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

/// Keeps `tx` set to the live agents: list, then follow a watch; start over (after a
/// pause) whenever the watch breaks, e.g. while etcd restarts.
async fn watch_agents(store: EtcdStore, tx: watch::Sender<Vec<AgentInfo>>) {
    let prefix = store.key("agents/");
    loop {
        if tx.is_closed() {
            return;
        }
        let result: Result<(), MetaError> = async {
            let resp = store
                .client
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            let revision = resp.revision();
            let mut agents: BTreeMap<String, AgentInfo> = BTreeMap::new();
            for kv in &resp.kvs {
                agents.insert(key_str(kv), agent_of(kv)?);
            }
            tx.send_replace(agents.values().cloned().collect());
            let mut stream = store
                .client
                .watch(
                    prefix.as_str(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await
                .map_err(backend)?;
            while let Some(msg) = stream.message().await.map_err(backend)? {
                if msg.canceled() {
                    break;
                }
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    match ev.event_type() {
                        shoal_etcd::EventType::Put => {
                            agents.insert(key_str(kv), agent_of(kv)?);
                        }
                        shoal_etcd::EventType::Delete => {
                            agents.remove(&key_str(kv));
                        }
                    }
                }
                tx.send_replace(agents.values().cloned().collect());
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "agent registry watch broke; re-listing in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How many commit reports a slow subscriber may fall behind before it is told it
/// lagged (and then treats every partition as changed).
const COMMIT_BACKLOG: usize = 1024;

/// Reports which partitions' state keys (`parts/{topic id}/{partition}`) change, for as
/// long as the store exists (the task holds no strong sender, so it ends with the
/// store). After the watch (re)starts it reports `None` (anything may have changed
/// while it was down).
async fn watch_commits(
    client: Client,
    prefix: String,
    tx: broadcast::WeakSender<ChangedPartitions>,
) {
    loop {
        let result: Result<(), MetaError> = async {
            let mut stream = client
                .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            let Some(sender) = tx.upgrade() else {
                return Ok(());
            };
            let _ = sender.send(None);
            drop(sender);
            while let Some(msg) = stream.message().await.map_err(backend)? {
                if msg.canceled() {
                    break;
                }
                let mut changed: Vec<(Uuid, i32)> = msg
                    .events()
                    .iter()
                    .filter_map(|ev| parse_part_key(&prefix, ev.kv()?.key_str().ok()?))
                    .collect();
                if changed.is_empty() {
                    continue;
                }
                changed.sort_unstable();
                changed.dedup();
                let Some(sender) = tx.upgrade() else {
                    return Ok(());
                };
                let _ = sender.send(Some(changed.into()));
            }
            Ok(())
        }
        .await;
        if tx.upgrade().is_none() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "etcd commit watch broke; watching again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `(topic id, partition)` of a key `{parts_prefix}{topic id}/{partition}`.
fn parse_part_key(parts_prefix: &str, key: &str) -> Option<(Uuid, i32)> {
    let (id, p) = key.strip_prefix(parts_prefix)?.split_once('/')?;
    Some((Uuid::parse_str(id).ok()?, p.parse().ok()?))
}

/// Bumps `tx` whenever a key under `what/` changes (`topics/`: a topic is created,
/// changed or deleted).
async fn watch_changes(store: EtcdStore, what: &'static str, tx: watch::Sender<u64>) {
    let prefix = store.key(what);
    loop {
        if tx.is_closed() {
            return;
        }
        let result: Result<(), MetaError> = async {
            let mut stream = store
                .client
                .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            // Changes may have happened while the watch was down.
            tx.send_modify(|n| *n += 1);
            while let Some(msg) = stream.message().await.map_err(backend)? {
                if msg.canceled() {
                    break;
                }
                if !msg.events().is_empty() {
                    tx.send_modify(|n| *n += 1);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, prefix = what, "etcd watch broke; watching again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl EtcdStore {
    /// See [`MetaStore::compact_history`]. Each pass notes the current revision with the
    /// time; the history is compacted to the newest revision noted at least `keep_ms`
    /// ago, so a revision is discarded only once it is that old.
    pub(crate) async fn compact_history(
        &self,
        now_ms: i64,
        keep_ms: i64,
    ) -> Result<Option<i64>, MetaError> {
        let key = self.key("history");
        let resp = self.client.get(key.as_str(), None).await.map_err(backend)?;
        let now_rev = resp.revision();
        let kv = resp.kvs.first();
        let mut rec: HistoryRec = match kv {
            Some(kv) => from_json(kv)?,
            None => HistoryRec::default(),
        };
        let cutoff = now_ms.saturating_sub(keep_ms);
        let due = rec
            .marks
            .iter()
            .filter(|&&(_, at)| at <= cutoff)
            .map(|&(rev, _)| rev)
            .max();
        rec.marks.retain(|&(rev, _)| due.is_none_or(|d| rev > d));
        rec.marks.push((now_rev, now_ms));
        if rec.marks.len() > MAX_HISTORY_MARKS {
            rec.marks.remove(0);
        }
        let target = due.filter(|&d| d > rec.compacted);
        if let Some(t) = target {
            rec.compacted = t;
        }
        let written = self
            .txn(Txn::new().when([unchanged(&key, kv)]).and_then([TxnOp::put(
                key.as_str(),
                to_json(&rec),
                None,
            )]))
            .await?;
        if !written {
            return Ok(None); // another pass got there first
        }
        let Some(target) = target else {
            return Ok(None);
        };
        match self.client.compact(target).await {
            Ok(_) => Ok(Some(target)),
            // etcd's own --auto-compaction already went further: nothing to do.
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(None)
            }
            Err(e) => Err(backend(e)),
        }
    }

    pub(crate) fn agents_watch(&self) -> watch::Receiver<Vec<AgentInfo>> {
        self.agents.clone()
    }

    pub(crate) fn live(&self) -> Vec<AgentInfo> {
        self.agents.borrow().clone()
    }

    pub(crate) fn commit_watch(&self) -> broadcast::Receiver<ChangedPartitions> {
        self.commits.subscribe()
    }

    pub(crate) fn topic_watch(&self) -> watch::Receiver<u64> {
        self.topics.clone()
    }
}

/// Deletes every key under `prefix`.
pub(crate) fn delete_prefix(prefix: &str) -> TxnOp {
    TxnOp::delete(prefix, Some(DeleteOptions::new().with_prefix()))
}

/// Descending single-key read: the last key in `[from, to)`.
pub(crate) fn last_before(from: &str, to: &str) -> TxnOp {
    TxnOp::get(
        from,
        Some(
            GetOptions::new()
                .with_range(to)
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(1),
        ),
    )
}

/// Ascending read of `[from, end)`, at most `limit`.
pub(crate) fn range_from(from: Vec<u8>, end: Vec<u8>, limit: i64) -> TxnOp {
    TxnOp::get(
        from,
        Some(GetOptions::new().with_range(end).with_limit(limit)),
    )
}

pub(crate) fn gets(resp: &shoal_etcd::TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs),
            _ => None,
        })
        .collect()
}

/// Producer state keyed for one commit: (topic, partition, producer id).
pub(crate) type ProdKey = (Uuid, i32, i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (e, p, m) = parse_url("etcd://a:1,b:2/team/x?max-txn-ops=1024").unwrap();
        assert_eq!(e, vec!["http://a:1", "http://b:2"]);
        assert_eq!(p, "team/x/");
        assert_eq!(m, 1024);
        let (_, p, m) = parse_url("etcd://a:1").unwrap();
        assert_eq!((p.as_str(), m), ("shoal/", 128));
        assert!(parse_url("etcd:///x").is_err());
        assert!(parse_url("etcd://a:1?max-txn-ops=2").is_err());
        assert!(parse_url("etcd://a:1?colour=red").is_err());
    }

    #[test]
    fn escaping_round_trips() {
        for s in ["plain", "a/b", "100%", "%2F/", ""] {
            assert_eq!(unesc(&esc(s)), s);
            assert!(!esc(s).contains('/'));
        }
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("a/"), b"a0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
    }
}
