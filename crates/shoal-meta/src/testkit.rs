//! Test kit: a [`MetaStore`] wrapper that injects faults into flush commits: "applied but
//! reported failed" (the ambiguous outcome of a timeout after the store applied the
//! write), for tests of how callers resolve unknown outcomes, and latency (a stalled
//! store), for tests of deadlines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::*;

/// Forwards every call to `inner`; the next [`FaultyMeta::fail_commits`] flush commits
/// are applied and then answered with [`MetaError::Ambiguous`], and the next
/// [`FaultyMeta::delay_commits`] ones wait before they reach `inner`.
pub struct FaultyMeta {
    pub inner: Arc<dyn MetaStore>,
    commits: AtomicUsize,
    delayed: AtomicUsize,
    delay: std::sync::Mutex<std::time::Duration>,
}

impl FaultyMeta {
    pub fn new(inner: Arc<dyn MetaStore>) -> Self {
        FaultyMeta {
            inner,
            commits: AtomicUsize::new(0),
            delayed: AtomicUsize::new(0),
            delay: std::sync::Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Arms the next `n` calls of [`MetaStore::commit_flush`]: applied, reported lost.
    pub fn fail_commits(&self, n: usize) {
        self.commits.store(n, Ordering::SeqCst);
    }

    /// The next `n` calls of [`MetaStore::commit_flush`] sleep `delay` (tokio time, so
    /// a paused clock runs through it) before they are applied.
    pub fn delay_commits(&self, n: usize, delay: std::time::Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
        self.delayed.store(n, Ordering::SeqCst);
    }
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl MetaStore for FaultyMeta {
    async fn cluster_id(&self) -> Result<String, MetaError> {
        self.inner.cluster_id().await
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
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<TopicInfo, MetaError> {
        self.inner.set_topic_configs(name, configs).await
    }
    async fn commit_flush(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
    ) -> Result<Vec<SegmentOutcome>, MetaError> {
        if take(&self.delayed) {
            let delay = *self.delay.lock().unwrap_or_else(|e| e.into_inner());
            tokio::time::sleep(delay).await;
        }
        let r = self.inner.commit_flush(object, segments).await;
        if r.is_ok() && take(&self.commits) {
            return Err(MetaError::Ambiguous(format!(
                "injected: the commit of {} was applied, then reported lost",
                object.key
            )));
        }
        r
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
    async fn object_size(&self, key: &str) -> Result<Option<u64>, MetaError> {
        self.inner.object_size(key).await
    }
    async fn forget_object(&self, key: &str) -> Result<(), MetaError> {
        self.inner.forget_object(key).await
    }
    async fn claim_job(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
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
    async fn client_quotas(&self) -> Result<Vec<ClientQuota>, MetaError> {
        self.inner.client_quotas().await
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
    ) -> Result<Vec<ScramCredential>, MetaError> {
        self.inner.scram_credentials(user).await
    }
    async fn alter_scram_credentials(
        &self,
        upserts: &[ScramCredential],
        deletions: &[(String, ScramMechanism)],
    ) -> Result<(), MetaError> {
        self.inner.alter_scram_credentials(upserts, deletions).await
    }
    async fn acls(&self) -> Result<Vec<AclBinding>, MetaError> {
        self.inner.acls().await
    }
    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), MetaError> {
        self.inner.create_acls(bindings).await
    }
    async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, MetaError> {
        self.inner.delete_acls(filters).await
    }
    async fn register_agent(&self, info: &AgentInfo) -> Result<i32, MetaError> {
        self.inner.register_agent(info).await
    }
    async fn deregister_agent(&self) -> Result<(), MetaError> {
        self.inner.deregister_agent().await
    }
    fn live_agents(&self) -> Vec<AgentInfo> {
        self.inner.live_agents()
    }
    fn standing(&self) -> Standing {
        self.inner.standing()
    }
    async fn claim_role(&self, role: &str) -> Result<Option<Fence>, MetaError> {
        self.inner.claim_role(role).await
    }
    async fn release_role(&self, fence: &Fence) -> Result<(), MetaError> {
        self.inner.release_role(fence).await
    }
    fn commit_notifications(&self) -> Option<tokio::sync::broadcast::Receiver<ChangedPartitions>> {
        self.inner.commit_notifications()
    }
    fn topic_notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.topic_notifications()
    }
    async fn compact_history(&self, now_ms: i64, keep_ms: i64) -> Result<Option<i64>, MetaError> {
        self.inner.compact_history(now_ms, keep_ms).await
    }
    fn max_swap_entries(&self) -> usize {
        self.inner.max_swap_entries()
    }
}
