//! The metadata store: the only place where order is decided.
//!
//! It holds topics (name, id, partition count, configs), the per-partition offset state
//! (log start, high watermark) and the offset index: which byte range of which object
//! holds which offsets. Record bytes never pass through it.
//!
//! [`MetaStore`] is the trait every backend implements: [`SqliteStore`] for one machine,
//! [`EtcdStore`] for clusters. [`conformance`] is the suite every backend must pass. The
//! key operation is [`MetaStore::commit_flush`]: one atomic commit per flushed object
//! that assigns offsets to every segment in it, so offsets always come from the store
//! and any agent can rebuild what another knew.

mod acl;
pub mod clock;
pub mod conformance;
mod etcd;
mod etcd_registry;
mod etcd_store;
mod etcd_txn;
mod producer_rules;
mod sqlite;
mod sqlite_producers;
pub mod testkit;
mod types;

pub use acl::*;
pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;
pub use types::*;

use async_trait::async_trait;
use uuid::Uuid;

/// A metadata backend. Required methods are few; everything else is built on them.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// A stable id for the cluster, created on first use.
    async fn cluster_id(&self) -> Result<String, MetaError>;

    /// Creates a topic with `partitions` empty partitions. Fails with
    /// [`MetaError::TopicExists`] if the name is taken.
    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo, MetaError>;

    /// Removes a topic, its partitions and its index entries. Object data is left for GC.
    async fn delete_topic(&self, name: &str) -> Result<TopicInfo, MetaError>;

    /// All topics, ordered by name.
    async fn list_topics(&self) -> Result<Vec<TopicInfo>, MetaError>;

    /// Grows a topic to `total` partitions (never shrinks).
    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicInfo, MetaError>;

    /// Replaces a topic's whole config map.
    async fn set_topic_configs(
        &self,
        name: &str,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<TopicInfo, MetaError>;

    /// Atomically assigns offsets to every segment of one flushed object and records the
    /// index entries. Segments of partitions that no longer exist get
    /// [`SegmentOutcome::UnknownPartition`]; the others are committed together or not at all.
    ///
    /// Segments with a [`ProducerBatch`] are checked in order, inside the same commit,
    /// against the partition's producer state (Kafka's rules): an older epoch is refused;
    /// within an epoch the first sequence must follow the last one written, and a batch
    /// equal to one of the last five is a [`SegmentOutcome::Duplicate`]; a new epoch
    /// must start at sequence 0; an unknown producer may start anywhere. Transactional
    /// data must belong to an ongoing transaction of that producer id and epoch that
    /// lists the partition. The first transactional batch opens the producer's
    /// transaction on the partition (holding back the last stable offset); a marker
    /// closes it and, for an abort, records an [`AbortedTxn`]. Refused and duplicate
    /// segments get no offsets and no index entry. A marker must end a transaction being
    /// ended: its producer id's record, with its epoch, in PrepareCommit (commit marker)
    /// or PrepareAbort (abort marker) and listing the partition; else it is refused with
    /// [`ProducerRefusal::InvalidTxnState`], so a late or duplicate marker ends nothing.
    ///
    /// The object must have a pending record ([`MetaStore::add_pending_object`]) that GC
    /// has not fenced; the commit consumes it atomically, else it fails with
    /// [`MetaError::Conflict`] and commits nothing. So a commit never references an
    /// object GC may delete.
    ///
    /// A backend that needs several transactions for one flush answers the segments of a
    /// failed later transaction [`SegmentOutcome::NotCommitted`] and the earlier ones as
    /// committed. A write whose outcome is unknown is read back before answering;
    /// [`MetaError::Ambiguous`] when even that fails.
    async fn commit_flush(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
    ) -> Result<Vec<SegmentOutcome>, MetaError>;

    /// Records that the object `key` is being written (before or while its PUT runs), so
    /// GC leaves it alone until it is committed or fenced. Fails with
    /// [`MetaError::Conflict`] if the key has a record already (pending, or fenced by GC).
    async fn add_pending_object(&self, key: &str) -> Result<(), MetaError>;

    /// Pending records and GC's tombstones, oldest first, at most `limit`.
    async fn pending_objects(&self, limit: usize) -> Result<Vec<PendingObject>, MetaError>;

    /// GC's fence, one atomic step: if the object `key` is not committed, and its pending
    /// record is the one numbered `instance` (or, for `None`, it has none), the record
    /// becomes a tombstone, so no commit or [`MetaStore::add_pending_object`] can use the
    /// key any more, and this returns true: GC may delete the object. False otherwise.
    /// A key fenced already answers true. [`MetaStore::forget_object`] drops the tombstone.
    async fn fence_object(&self, key: &str, instance: Option<u64>) -> Result<bool, MetaError>;

    /// Log start offset and high watermark of a partition.
    async fn partition_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<PartitionOffsets, MetaError>;

    /// [`MetaStore::partition_offsets`] of many partitions, in the order given, each with
    /// its own outcome. Backends answer it in few steps (SQLite: one task per few hundred
    /// partitions; etcd: one read per `max-txn-ops` keys); this default asks one
    /// partition at a time. A fetch of many partitions reads its watermarks with it.
    async fn partitions_offsets(
        &self,
        parts: &[(Uuid, i32)],
    ) -> Vec<Result<PartitionOffsets, MetaError>> {
        let mut out = Vec::with_capacity(parts.len());
        for (topic_id, partition) in parts {
            out.push(self.partition_offsets(*topic_id, *partition).await);
        }
        out
    }

    /// Index entries covering offsets `>= from`, in offset order, at most `limit`.
    async fn index_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, MetaError>;

    /// The first index entry (by offset) whose max timestamp is `>= timestamp`.
    async fn index_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, MetaError>;

    /// The index entry holding the partition's largest timestamp (first such entry).
    async fn index_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<IndexEntry>, MetaError>;

    /// Moves a partition's log start up to `offset` (never down, never past the high
    /// watermark), drops the index entries wholly below it and the aborted-transaction
    /// records that end below it. Returns the log start now in force.
    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, MetaError>;

    /// Marks, with `now_ms`, committed objects that no index entry references and that
    /// are not marked yet; returns the keys (with their marks) of every marked object
    /// whose mark is older than `before_ms`, oldest first, at most `limit`: objects no
    /// reader has been pointed at since `before_ms`, safe to delete.
    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, MetaError>;

    /// Committed objects whose key starts with `prefix` and that index entries still
    /// reference, oldest key first, at most `limit`.
    async fn referenced_objects(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, MetaError>;

    /// Every index entry pointing into the object `key`.
    async fn object_entries(&self, key: &str) -> Result<Vec<PartitionEntry>, MetaError>;

    /// Compaction's swap, all or nothing: removes the `old` entries (each must still
    /// exist exactly as given, else [`MetaError::Conflict`] and nothing changes), adds
    /// the `new` ones and records `object` (which they point into) as committed,
    /// consuming its pending record if it has one; a conflict if GC fenced it.
    async fn replace_entries(
        &self,
        old: &[PartitionEntry],
        object: &ObjectRef,
        new: &[PartitionEntry],
    ) -> Result<(), MetaError>;

    /// Whether an object was committed and not forgotten since.
    async fn object_known(&self, key: &str) -> Result<bool, MetaError>;

    /// The size of a committed object (as its commit recorded it), `None` when the object
    /// was never committed or was forgotten since. Objects are immutable, so a size once
    /// read stays true for as long as the object exists. The default asks its index
    /// entries; backends override it with a direct lookup.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, MetaError> {
        Ok(self
            .object_entries(key)
            .await?
            .first()
            .map(|e| e.entry.object_size))
    }

    /// Forgets an object GC deleted, and its pending record or tombstone.
    async fn forget_object(&self, key: &str) -> Result<(), MetaError>;

    /// Claims the background job `job` for `holder` until `now_ms + ttl_ms`: succeeds if
    /// nobody holds it, `holder` already does (renewal), or the last claim expired (its
    /// holder died). Two agents never hold one job at once. Backends with a registry hold
    /// the claim under the agent's lease instead, so it ends when the lease does, however
    /// the agents' clocks disagree; a [`Standing::Lapsed`] agent gets no claim.
    async fn claim_job(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError>;

    /// A producer id never handed out before.
    async fn allocate_producer_id(&self) -> Result<i64, MetaError>;

    /// Aborted transactions of a partition overlapping offsets `[from, to)`, ordered by
    /// first offset.
    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, MetaError>;

    /// Producers that have written to a partition, by producer id.
    async fn producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<ProducerState>, MetaError>;

    /// Forgets producers that last wrote before `before_ms` and have no open transaction
    /// (Kafka's `producer.id.expiration.ms`); returns how many partition entries went.
    async fn expire_producers(&self, before_ms: i64) -> Result<u64, MetaError>;

    /// The record of one transactional id.
    async fn transaction(&self, transactional_id: &str) -> Result<Option<Transaction>, MetaError>;

    /// Every transaction record, by transactional id.
    async fn transactions(&self) -> Result<Vec<Transaction>, MetaError>;

    /// Saves a transaction record if the stored one still has `txn.version` (0: none may
    /// exist yet); returns the new version. [`MetaError::Conflict`] otherwise.
    async fn save_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<u64, MetaError>;

    /// [`MetaStore::save_transaction`] without a role fence, for an agent that is not the
    /// id's coordinator: with transactions v2 (KIP-890) the agent of a partition adds the
    /// partition (or the group agent a group) to the ongoing transaction itself. The
    /// version compare alone orders the save with the coordinator's fenced ones.
    async fn save_transaction_unfenced(&self, txn: &Transaction) -> Result<u64, MetaError>;

    /// Forgets the record of `txn.transactional_id` (Kafka's
    /// `transactional.id.expiration.ms`) if it still has `txn.version`:
    /// [`MetaError::Conflict`] otherwise. The next InitProducerId of the id starts afresh.
    async fn delete_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<(), MetaError>;

    /// Stages offsets a transaction will commit for a group when it commits.
    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError>;

    /// Saves `txn` like [`MetaStore::save_transaction`] and, in the same atomic step,
    /// moves the offsets the transaction staged into its groups' committed offsets
    /// (`commit`) or drops them.
    async fn complete_transaction(
        &self,
        txn: &Transaction,
        commit: bool,
        fence: &Fence,
    ) -> Result<u64, MetaError>;

    /// Partitions of a group with offsets staged by an unfinished transaction.
    async fn pending_txn_offsets(&self, group: &str) -> Result<Vec<(String, i32)>, MetaError>;

    /// Stores committed offsets of a consumer group, replacing earlier ones for the same
    /// partitions, all or nothing.
    async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError>;

    /// Every committed offset of a group, ordered by topic and partition.
    async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, MetaError>;

    /// Removes committed offsets of the given partitions of one topic.
    async fn delete_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        fence: &Fence,
    ) -> Result<(), MetaError>;

    /// Removes every committed offset of a group; returns whether it had any.
    async fn delete_group(&self, group: &str, fence: &Fence) -> Result<bool, MetaError>;

    /// Groups that have committed offsets, ordered by name.
    async fn offset_groups(&self) -> Result<Vec<String>, MetaError>;

    /// A group's configs (KIP-848 group configs such as `consumer.session.timeout.ms`):
    /// only the keys set for it; a group never configured has none.
    async fn group_configs(
        &self,
        group: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, MetaError>;

    /// Changes a group's configs in one atomic step, as [`MetaStore::alter_client_quota`]
    /// does quotas: `(key, Some(v))` sets, `(key, None)` removes; a group left with no key
    /// is forgotten. The group need not exist (Kafka lets configs precede the group).
    async fn alter_group_configs(
        &self,
        group: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), MetaError>;

    /// Every client quota set, ordered by entity.
    async fn client_quotas(&self) -> Result<Vec<ClientQuota>, MetaError>;

    /// Changes the quotas of one entity in one atomic step: each `(key, Some(v))` sets a
    /// key, each `(key, None)` removes it (absent keys are fine). An entity left with no
    /// key is forgotten.
    async fn alter_client_quota(
        &self,
        entity: &QuotaEntity,
        changes: &[(String, Option<f64>)],
    ) -> Result<(), MetaError>;

    /// SCRAM credentials, ordered by user then mechanism: every user's, or one user's.
    async fn scram_credentials(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<ScramCredential>, MetaError>;

    /// In one atomic step, stores each credential in `upserts` (replacing the user's
    /// credential for that mechanism) and removes each `(user, mechanism)` in
    /// `deletions` (absent ones are fine). A pair must not appear twice.
    async fn alter_scram_credentials(
        &self,
        upserts: &[ScramCredential],
        deletions: &[(String, ScramMechanism)],
    ) -> Result<(), MetaError>;

    /// Every ACL binding, ordered.
    async fn acls(&self) -> Result<Vec<AclBinding>, MetaError>;

    /// Adds bindings; one identical to a stored binding is not stored twice.
    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), MetaError>;

    /// Removes every binding any filter matches, in one atomic step, and returns per
    /// filter the bindings it matched (a binding matched by two filters is in both).
    async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, MetaError>;

    // --- The control plane: who is alive, and news of commits made elsewhere. ---
    // Single-machine backends keep the defaults: one agent, and every commit is local.

    /// Registers this agent as live for as long as the process keeps running (cluster
    /// backends hold the entry under a lease that dies with the process) and returns the
    /// node id it got: `info.node_id` when it is `>= 0` (an error if another live agent
    /// holds it), else the lowest free id.
    async fn register_agent(&self, info: &AgentInfo) -> Result<i32, MetaError> {
        Ok(info.node_id.max(0))
    }

    /// Removes this agent from the registry at once (graceful shutdown).
    async fn deregister_agent(&self) -> Result<(), MetaError> {
        Ok(())
    }

    /// The live agents as the backend last saw them (kept current by a watch), by node
    /// id. Empty when the backend has no registry: then the agent is alone.
    fn live_agents(&self) -> Vec<AgentInfo> {
        Vec::new()
    }

    /// This agent's standing in the registry right now (cheap: no network call).
    fn standing(&self) -> Standing {
        Standing::Alone
    }

    /// Claims the coordination role `role` (`group:{id}`, `txn:{id}`) for this agent,
    /// under its registration: `Some` if this agent holds it now (newly or already),
    /// `None` if another live agent does (it lets go when it sees the registry change,
    /// or its lease ends) or this agent is not [`Standing::Live`]. The fence goes with
    /// every write made for the role.
    async fn claim_role(&self, role: &str) -> Result<Option<Fence>, MetaError> {
        Ok(Some(Fence::sole(role)))
    }

    /// Gives up a role claimed with [`MetaStore::claim_role`] (a no-op if it is already
    /// gone), so the agent that coordinates it now can claim it at once.
    async fn release_role(&self, fence: &Fence) -> Result<(), MetaError> {
        let _ = fence;
        Ok(())
    }

    /// The partitions whose state (high watermark, last stable offset, log start) any
    /// agent changed, as the backend sees them, so fetches long-polling on this agent wake
    /// for records committed by others, and only fetches of those partitions. A `None`
    /// item (or a lagged receiver) means changes may have been missed: assume every
    /// partition changed. `None` when every commit goes through this process.
    fn commit_notifications(&self) -> Option<tokio::sync::broadcast::Receiver<ChangedPartitions>> {
        None
    }

    /// A counter the backend bumps whenever any agent creates, changes or deletes a
    /// topic, so topic caches of every agent follow at once. `None` when every change goes
    /// through this process.
    fn topic_notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Discards the backend's history of old versions (etcd keeps every revision of every
    /// key until told to compact; without it etcd's database grows until it hits its
    /// space quota and refuses writes). Revisions are kept at least `keep_ms`. Returns
    /// the revision compacted to, `None` if nothing was due or the backend keeps no
    /// history (SQLite).
    async fn compact_history(&self, now_ms: i64, keep_ms: i64) -> Result<Option<i64>, MetaError> {
        let _ = (now_ms, keep_ms);
        Ok(None)
    }

    /// The most index entries [`MetaStore::replace_entries`] accepts in one call (a
    /// backend's transaction-size limit); compaction picks its inputs to fit.
    fn max_swap_entries(&self) -> usize {
        usize::MAX
    }
}
