//! The transaction coordinator: producer ids, transaction state, markers, timeouts.
//!
//! Every transactional id has one record in the metadata store ([`Transaction`]); the
//! coordinator changes it with compare-and-swap saves, so any agent could take over. On
//! this agent, the operations of one transactional id run one at a time (a lock per id),
//! which keeps EndTxn, InitProducerId and the timeout scan from interleaving.
//!
//! Ending a transaction: the record goes to PrepareCommit/PrepareAbort (the decision is
//! durable), then one marker per partition is written through the ordinary write path
//! (flush, PUT, commit: the same durability as records), then the record goes to
//! CompleteCommit/CompleteAbort together with the group offsets the transaction staged
//! (applied on commit, dropped on abort). EndTxn answers after all of it. If the agent
//! dies in between, the record stays in a Prepare state and the next operation on the
//! id, or the scan ([`TxnCoordinator::tick`]), writes the markers again and completes it.
//! Markers written twice are harmless: a marker is accepted only while the record is in
//! the matching Prepare state (checked inside the flush commit), and a second one then
//! closes nothing; a late one, after the transaction completed, is refused.
//!
//! Transactions older than their timeout are aborted by the scan with the epoch bumped,
//! which fences the producer that left them open (Kafka's behaviour).
//!
//! In a cluster, one live agent coordinates each transactional id
//! ([`crate::cluster::ClusterView::coordinator`]); requests for ids coordinated
//! elsewhere are answered NOT_COORDINATOR by the API handlers before they reach this
//! module, and the scan skips them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kafka_protocol::ResponseError;
use shoal_meta::{
    BatchKind, GroupOffset, MetaError, ProducerBatch, ProducerRefusal, Transaction, TxnPartition,
    TxnState,
};
use shoal_wire::batch;

use crate::cluster::roles;
use crate::errors::WriteError;
use crate::metrics::Metrics;
use crate::write_path::{BatchToWrite, PartitionAppend};
use crate::Shared;

/// Kafka's `transaction.max.timeout.ms` default: longer timeouts are refused.
pub const MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;
/// Kafka's `producer.id.expiration.ms` default: idle producers are forgotten after this.
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;
/// How often a save that lost a compare-and-swap is retried before giving up.
const CAS_ATTEMPTS: usize = 5;

/// A Kafka error for a transactional request, with a message for the log.
#[derive(Debug)]
pub struct TxnError {
    pub error: ResponseError,
    pub message: String,
}

impl TxnError {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        TxnError {
            error,
            message: message.into(),
        }
    }

    pub fn code(&self) -> i16 {
        self.error.code()
    }
}

impl From<MetaError> for TxnError {
    fn from(e: MetaError) -> Self {
        let error = match e {
            MetaError::Conflict(_) => ResponseError::ConcurrentTransactions,
            MetaError::Fenced(_) => ResponseError::NotCoordinator,
            // Retriable: clients look the coordinator up again and retry.
            _ => ResponseError::CoordinatorNotAvailable,
        };
        TxnError::new(error, e.to_string())
    }
}

/// Maps PRODUCER_FENCED to INVALID_PRODUCER_EPOCH for request versions older than
/// `fenced_since`, which predate the PRODUCER_FENCED code.
pub fn for_version(e: TxnError, version: i16, fenced_since: i16) -> TxnError {
    if e.error == ResponseError::ProducerFenced && version < fenced_since {
        TxnError::new(ResponseError::InvalidProducerEpoch, e.message)
    } else {
        e
    }
}

pub use shoal_meta::clock::now_ms;

/// The epoch of a producer's transaction and the partitions (topic id, partition) seen
/// to join it through this agent.
type Joined = (i16, HashSet<(uuid::Uuid, i32)>);

/// Producers whose [`join`]s this agent remembers at most (then it forgets them all).
const JOINED_PRODUCERS: usize = 10_000;

/// Per-id ordering for the transactions this agent coordinates, and the partitions this
/// agent saw join transactions v2 (by producer id: the epoch, and the partitions).
#[derive(Default)]
pub struct TxnCoordinator {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    joined: Mutex<HashMap<i64, Joined>>,
}

impl TxnCoordinator {
    /// Whether every one of `partitions` joined the transaction of `producer_id` at
    /// `epoch` through this agent. Every v2 end bumps the epoch, so an entry of an
    /// earlier transaction never matches.
    fn joined(&self, producer_id: i64, epoch: i16, partitions: &[TxnPartition]) -> bool {
        let joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        joined.get(&producer_id).is_some_and(|(e, set)| {
            *e == epoch
                && partitions
                    .iter()
                    .all(|p| set.contains(&(p.topic_id, p.partition)))
        })
    }

    fn remember_joined(&self, producer_id: i64, epoch: i16, partitions: &[TxnPartition]) {
        let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        if joined.len() >= JOINED_PRODUCERS && !joined.contains_key(&producer_id) {
            joined.clear();
        }
        let entry = joined
            .entry(producer_id)
            .or_insert_with(|| (epoch, HashSet::new()));
        if entry.0 != epoch {
            *entry = (epoch, HashSet::new());
        }
        entry
            .1
            .extend(partitions.iter().map(|p| (p.topic_id, p.partition)));
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.to_string()).or_default().clone()
    }
}

/// The producer id and epoch a client should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

/// InitProducerId. Without a transactional id: a fresh producer id. With one: aborts or
/// finishes what the previous incarnation left, then bumps the epoch (fencing it), or
/// starts a new producer id once the epoch is exhausted. `expected` is the KIP-360
/// producer id and epoch a client sends to recover; they must match the record.
pub async fn init_producer_id(
    shared: &Shared,
    transactional_id: Option<&str>,
    timeout_ms: i32,
    expected: Option<ProducerIdAndEpoch>,
) -> Result<ProducerIdAndEpoch, TxnError> {
    let Some(id) = transactional_id else {
        return Ok(ProducerIdAndEpoch {
            producer_id: shared.meta.allocate_producer_id().await?,
            epoch: 0,
        });
    };
    if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(TxnError::new(
            ResponseError::InvalidTransactionTimeout,
            format!("transaction timeout {timeout_ms} ms must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let lock = shared.txns.lock_for(id);
    let _held = lock.lock().await;
    for _ in 0..CAS_ATTEMPTS {
        let Some(mut rec) = shared.meta.transaction(id).await? else {
            let rec = Transaction {
                transactional_id: id.to_string(),
                producer_id: shared.meta.allocate_producer_id().await?,
                epoch: 0,
                state: TxnState::Empty,
                timeout_ms,
                started_ms: -1,
                updated_ms: shared.config.clock.now_ms(),
                partitions: vec![],
                groups: vec![],
                next_producer_id: -1,
                previous_producer_id: -1,
                version: 0,
            };
            match save(shared, &rec).await {
                Ok(_) => return Ok(pid_epoch(&rec)),
                Err(MetaError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(exp) = expected {
            if exp.producer_id != rec.producer_id || exp.epoch != rec.epoch {
                return Err(TxnError::new(
                    ResponseError::ProducerFenced,
                    format!(
                        "producer {}/{} is not the current one ({}/{}) of '{id}'",
                        exp.producer_id, exp.epoch, rec.producer_id, rec.epoch
                    ),
                ));
            }
        }
        match rec.state {
            TxnState::Ongoing => {
                tracing::info!(
                    transactional_id = id,
                    "aborting the open transaction of a previous producer"
                );
                rec = prepare_end(shared, rec, false, true).await?;
                rec = finish(shared, rec).await?;
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                rec = finish(shared, rec).await?;
            }
            _ => {}
        }
        if rec.epoch >= i16::MAX - 1 {
            rec.producer_id = shared.meta.allocate_producer_id().await?;
            rec.epoch = 0;
        } else {
            rec.epoch += 1;
        }
        rec.state = TxnState::Empty;
        rec.timeout_ms = timeout_ms;
        rec.started_ms = -1;
        rec.updated_ms = shared.config.clock.now_ms();
        rec.partitions.clear();
        rec.groups.clear();
        match save(shared, &rec).await {
            Ok(_) => return Ok(pid_epoch(&rec)),
            Err(MetaError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TxnError::new(
        ResponseError::ConcurrentTransactions,
        format!("transaction '{id}' kept changing; retry"),
    ))
}

/// Saves `rec` as the coordinator of its transactional id: the write is fenced by the
/// role's claim, so an agent that lost the role (its lease lapsed, or the registry moved
/// the id) can no longer change the record.
async fn save(shared: &Shared, rec: &Transaction) -> Result<u64, MetaError> {
    let fence = roles::txn_fence(shared, &rec.transactional_id).await?;
    let saved = shared.meta.save_transaction(rec, &fence).await;
    roles::check(shared, &fence, saved)
}

/// [`MetaStore::complete_transaction`], fenced like [`save`].
async fn complete(shared: &Shared, rec: &Transaction, commit: bool) -> Result<u64, MetaError> {
    let fence = roles::txn_fence(shared, &rec.transactional_id).await?;
    let done = shared.meta.complete_transaction(rec, commit, &fence).await;
    roles::check(shared, &fence, done)
}

fn pid_epoch(rec: &Transaction) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch {
        producer_id: rec.producer_id,
        epoch: rec.epoch,
    }
}

/// The record of `id`; INVALID_PRODUCER_ID_MAPPING when there is none.
async fn load(shared: &Shared, id: &str) -> Result<Transaction, TxnError> {
    shared.meta.transaction(id).await?.ok_or_else(|| {
        TxnError::new(
            ResponseError::InvalidProducerIdMapping,
            format!("no producer is registered for transactional id '{id}'; call InitProducerId"),
        )
    })
}

fn not_its_producer(id: &str, producer_id: i64, rec: &Transaction) -> TxnError {
    TxnError::new(
        ResponseError::InvalidProducerIdMapping,
        format!(
            "producer id {producer_id} does not belong to transactional id '{id}' (current {})",
            rec.producer_id
        ),
    )
}

/// Loads the record of `id` and checks that the caller is its current producer.
async fn load_current(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
) -> Result<Transaction, TxnError> {
    let rec = load(shared, id).await?;
    if rec.producer_id != producer_id {
        return Err(not_its_producer(id, producer_id, &rec));
    }
    if epoch != rec.epoch {
        return Err(TxnError::new(
            ResponseError::ProducerFenced,
            format!(
                "epoch {epoch} of '{id}' was fenced by a newer producer (epoch {})",
                rec.epoch
            ),
        ));
    }
    Ok(rec)
}

/// Runs `change` on the current record of `id` (after finishing a pending end) and saves
/// it as part of an ongoing transaction, retrying lost compare-and-swaps.
async fn update_ongoing<F>(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    change: F,
) -> Result<Transaction, TxnError>
where
    F: Fn(&mut Transaction),
{
    let lock = shared.txns.lock_for(id);
    let _held = lock.lock().await;
    for _ in 0..CAS_ATTEMPTS {
        let mut rec = load_current(shared, id, producer_id, epoch).await?;
        if matches!(rec.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            rec = finish(shared, rec).await?;
        }
        if rec.state != TxnState::Ongoing {
            rec.state = TxnState::Ongoing;
            rec.started_ms = shared.config.clock.now_ms();
        }
        change(&mut rec);
        rec.updated_ms = shared.config.clock.now_ms();
        match save(shared, &rec).await {
            Ok(v) => {
                rec.version = v;
                return Ok(rec);
            }
            Err(MetaError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TxnError::new(
        ResponseError::ConcurrentTransactions,
        format!("transaction '{id}' kept changing; retry"),
    ))
}

/// AddPartitionsToTxn: the partitions (already resolved to topics) join the transaction.
pub async fn add_partitions(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[TxnPartition],
) -> Result<(), TxnError> {
    update_ongoing(shared, id, producer_id, epoch, |rec| {
        for p in partitions {
            if !rec.partitions.contains(p) {
                rec.partitions.push(p.clone());
            }
        }
        rec.partitions.sort();
    })
    .await
    .map(|_| ())
}

/// Transactions v2 (KIP-890 part 2): adds `partitions` (Produce v12) or `group`
/// (TxnOffsetCommit v5) to the producer's transaction, beginning one if none is open, as
/// AddPartitionsToTxn and AddOffsetsToTxn do for older clients. It runs on whichever
/// agent got the request (the partition's, or the group coordinator), not only on the
/// transaction's coordinator: the save is unfenced and ordered with the coordinator's
/// fenced ones by the record's version. The flush commit still checks every
/// transactional batch against the record, so a stale [`TxnCoordinator::joined`] entry
/// can only cost a refused batch, never a batch outside its transaction. A transaction
/// still ending answers CONCURRENT_TRANSACTIONS, which clients retry.
pub async fn join(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[TxnPartition],
    group: Option<&str>,
) -> Result<(), TxnError> {
    if group.is_none() && shared.txns.joined(producer_id, epoch, partitions) {
        return Ok(());
    }
    let lock = shared.txns.lock_for(id);
    let _held = lock.lock().await;
    for _ in 0..CAS_ATTEMPTS {
        let mut rec = load_current(shared, id, producer_id, epoch).await?;
        if matches!(rec.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::new(
                ResponseError::ConcurrentTransactions,
                format!("the previous transaction of '{id}' is still ending; retry"),
            ));
        }
        let missing: Vec<&TxnPartition> = partitions
            .iter()
            .filter(|p| !rec.partitions.contains(p))
            .collect();
        let group_missing = group.is_some_and(|g| !rec.groups.iter().any(|x| x == g));
        if rec.state == TxnState::Ongoing && missing.is_empty() && !group_missing {
            shared.txns.remember_joined(producer_id, epoch, partitions);
            return Ok(());
        }
        let now = shared.config.clock.now_ms();
        if rec.state != TxnState::Ongoing {
            rec.state = TxnState::Ongoing;
            rec.started_ms = now;
        }
        rec.partitions.extend(missing.into_iter().cloned());
        rec.partitions.sort();
        if let Some(g) = group.filter(|_| group_missing) {
            rec.groups.push(g.to_string());
            rec.groups.sort();
        }
        rec.updated_ms = now;
        match shared.meta.save_transaction_unfenced(&rec).await {
            Ok(_) => {
                shared.txns.remember_joined(producer_id, epoch, partitions);
                Metrics::add(&shared.metrics.txn_implicit_adds, 1);
                return Ok(());
            }
            Err(MetaError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TxnError::new(
        ResponseError::ConcurrentTransactions,
        format!("transaction '{id}' kept changing; retry"),
    ))
}

/// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1): which of `partitions`
/// the producer's ongoing transaction does not list (all of them when none is ongoing).
pub async fn verify_partitions(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[TxnPartition],
) -> Result<Vec<TxnPartition>, TxnError> {
    let rec = load_current(shared, id, producer_id, epoch).await?;
    Ok(partitions
        .iter()
        .filter(|p| rec.state != TxnState::Ongoing || !rec.partitions.contains(p))
        .cloned()
        .collect())
}

/// AddOffsetsToTxn: the transaction will commit offsets of `group`.
pub async fn add_offsets(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    group: &str,
) -> Result<(), TxnError> {
    update_ongoing(shared, id, producer_id, epoch, |rec| {
        if !rec.groups.iter().any(|g| g == group) {
            rec.groups.push(group.to_string());
            rec.groups.sort();
        }
    })
    .await
    .map(|_| ())
}

/// TxnOffsetCommit: stages offsets that the transaction commits with its records.
pub async fn stage_offsets(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    group: &str,
    offsets: &[GroupOffset],
    v2: bool,
) -> Result<(), TxnError> {
    if v2 {
        join(shared, id, producer_id, epoch, &[], Some(group)).await?;
    }
    let lock = shared.txns.lock_for(id);
    let _held = lock.lock().await;
    let rec = load_current(shared, id, producer_id, epoch).await?;
    if rec.state != TxnState::Ongoing || !rec.groups.iter().any(|g| g == group) {
        return Err(TxnError::new(
            ResponseError::InvalidTxnState,
            format!("group '{group}' was not added to an ongoing transaction of '{id}' (AddOffsetsToTxn first)"),
        ));
    }
    let fence = roles::group_fence(shared, group).await?;
    let staged = shared
        .meta
        .stage_txn_offsets(id, group, offsets, &fence)
        .await;
    roles::check(shared, &fence, staged)?;
    Ok(())
}

/// EndTxn: commits or aborts the ongoing transaction; answers once markers are written
/// and staged offsets applied. A retry of a finished end succeeds again. `v2` is an
/// EndTxn v5 (transactions v2, [`end_v2`]). Returns the producer id and epoch the client
/// goes on with.
pub async fn end(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    v2: bool,
) -> Result<ProducerIdAndEpoch, TxnError> {
    let lock = shared.txns.lock_for(id);
    let _held = lock.lock().await;
    if v2 {
        return end_v2(shared, id, producer_id, epoch, commit).await;
    }
    let rec = load_current(shared, id, producer_id, epoch).await?;
    let done = match (rec.state, commit) {
        (TxnState::Ongoing, _) => {
            let rec = prepare_end(shared, rec, commit, false).await?;
            finish(shared, rec).await?
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            finish(shared, rec).await?
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => rec,
        (TxnState::PrepareCommit, false) | (TxnState::PrepareAbort, true) => {
            let err = wrong_end_state(id, &rec, commit);
            finish(shared, rec).await?;
            return Err(err);
        }
        _ => return Err(wrong_end_state(id, &rec, commit)),
    };
    Ok(pid_epoch(&done))
}

fn wrong_end_state(id: &str, rec: &Transaction, commit: bool) -> TxnError {
    TxnError::new(
        ResponseError::InvalidTxnState,
        format!(
            "cannot {} transaction '{id}' in state {}",
            if commit { "commit" } else { "abort" },
            rec.state.as_str()
        ),
    )
}

/// Whether the transaction a record ended matches the end asked for.
fn ended_as(state: TxnState, commit: bool) -> bool {
    matches!(
        (state, commit),
        (TxnState::PrepareCommit | TxnState::CompleteCommit, true)
            | (TxnState::PrepareAbort | TxnState::CompleteAbort, false)
    )
}

/// EndTxn v5 (KIP-890 part 2): every end bumps the epoch, so a zombie's late writes of
/// the ended transaction are refused, and the answer carries the epoch (or, once the
/// epoch is exhausted, the new producer id) to go on with. A retry is told apart from the
/// next end by its epoch: it carries the one before the bump. Aborting when nothing is
/// open bumps the epoch too (franz-go does it to clear a produce whose outcome it does
/// not know).
async fn end_v2(
    shared: &Shared,
    id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<ProducerIdAndEpoch, TxnError> {
    let rec = load(shared, id).await?;
    let same_id = rec.producer_id == producer_id;
    // The end being retried bumped the epoch, or switched to a new producer id.
    let retry = (same_id && i32::from(rec.epoch) == i32::from(epoch) + 1)
        || (!same_id
            && rec.previous_producer_id == producer_id
            && epoch >= i16::MAX - 1
            && rec.epoch == 0);
    if !same_id && !retry {
        return Err(not_its_producer(id, producer_id, &rec));
    }
    let fenced = || {
        TxnError::new(
            ResponseError::ProducerFenced,
            format!(
                "epoch {epoch} of '{id}' was fenced by a newer producer (epoch {})",
                rec.epoch
            ),
        )
    };
    match rec.state {
        TxnState::Ongoing if epoch == rec.epoch => {
            let rec = prepare_end_v2(shared, rec, commit).await?;
            Ok(pid_epoch(&finish(shared, rec).await?))
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            if same_id && epoch == rec.epoch && !commit =>
        {
            // Nothing open: the abort still bumps the epoch (no markers to write).
            let rec = prepare_end_v2(shared, rec, false).await?;
            Ok(pid_epoch(&finish(shared, rec).await?))
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort if retry => {
            let matches = ended_as(rec.state, commit);
            let err = wrong_end_state(id, &rec, commit);
            let done = finish(shared, rec).await?;
            if matches {
                Ok(pid_epoch(&done))
            } else {
                Err(err)
            }
        }
        TxnState::CompleteCommit | TxnState::CompleteAbort if retry => {
            if ended_as(rec.state, commit) {
                Ok(pid_epoch(&rec))
            } else {
                Err(wrong_end_state(id, &rec, commit))
            }
        }
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            if epoch == rec.epoch =>
        {
            Err(wrong_end_state(id, &rec, commit))
        }
        _ => Err(fenced()),
    }
}

/// The decision of a transactions-v2 end: the Prepare state with the epoch bumped, and
/// a new producer id taken when the epoch is exhausted (switched to by [`finish`]).
async fn prepare_end_v2(
    shared: &Shared,
    mut rec: Transaction,
    commit: bool,
) -> Result<Transaction, TxnError> {
    if rec.epoch >= i16::MAX - 1 && rec.next_producer_id < 0 {
        rec.next_producer_id = shared.meta.allocate_producer_id().await?;
    }
    rec.epoch = rec.epoch.saturating_add(1);
    prepare_end(shared, rec, commit, false).await
}

/// Records the decision (Prepare state), bumping the epoch when `fence` (timeouts and
/// a new producer taking over), so the old producer can no longer write or end it.
async fn prepare_end(
    shared: &Shared,
    mut rec: Transaction,
    commit: bool,
    fence: bool,
) -> Result<Transaction, TxnError> {
    rec.state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    if fence && rec.epoch < i16::MAX - 1 {
        rec.epoch += 1;
    }
    rec.updated_ms = shared.config.clock.now_ms();
    rec.version = save(shared, &rec).await?;
    Ok(rec)
}

/// Writes the markers of a prepared transaction and completes it.
async fn finish(shared: &Shared, mut rec: Transaction) -> Result<Transaction, TxnError> {
    let commit = match rec.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return Ok(rec),
    };
    write_markers(shared, &rec, commit).await?;
    rec.state = if commit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    if rec.next_producer_id >= 0 {
        // Transactions v2 with the epoch exhausted: the next transaction runs under a
        // new producer id (the markers above were written under the old one).
        rec.previous_producer_id = rec.producer_id;
        rec.producer_id = rec.next_producer_id;
        rec.next_producer_id = -1;
        rec.epoch = 0;
    }
    rec.partitions.clear();
    rec.groups.clear();
    rec.started_ms = -1;
    rec.updated_ms = shared.config.clock.now_ms();
    rec.version = complete(shared, &rec, commit).await?;
    tracing::debug!(transactional_id = %rec.transactional_id, commit, "transaction ended");
    Metrics::add(
        if commit {
            &shared.metrics.txn_commits
        } else {
            &shared.metrics.txn_aborts
        },
        1,
    );
    Ok(rec)
}

async fn write_markers(shared: &Shared, rec: &Transaction, commit: bool) -> Result<(), TxnError> {
    if rec.partitions.is_empty() {
        return Ok(());
    }
    let now = shared.config.clock.now_ms();
    let parts = rec
        .partitions
        .iter()
        .map(|p| {
            let bytes = batch::control_batch(rec.producer_id, rec.epoch, commit, 0, now);
            PartitionAppend {
                topic_id: p.topic_id,
                partition: p.partition,
                batches: vec![BatchToWrite {
                    bytes: bytes.into(),
                    offset_span: 1,
                    min_timestamp: now,
                    max_timestamp: now,
                    producer: Some(ProducerBatch {
                        producer_id: rec.producer_id,
                        epoch: rec.epoch,
                        first_sequence: -1,
                        last_sequence: -1,
                        kind: BatchKind::Marker { commit },
                    }),
                }],
                log_append_time: -1,
            }
        })
        .collect();
    let retriable = |e: WriteError| {
        TxnError::new(
            ResponseError::ConcurrentTransactions,
            format!(
                "writing the markers of '{}' failed ({e}); the end is retried",
                rec.transactional_id
            ),
        )
    };
    let receivers = shared
        .writer
        .append(parts, 0, None)
        .await
        .map_err(retriable)?;
    for (rx, p) in receivers.into_iter().zip(&rec.partitions) {
        match rx.await.unwrap_or(Err(WriteError::ShuttingDown)) {
            Ok(_) => {}
            // The topic went away: nothing left to end there.
            Err(WriteError::UnknownPartition) => {}
            Err(WriteError::Refused(ProducerRefusal::InvalidProducerEpoch)) => {
                tracing::warn!(transactional_id = %rec.transactional_id, topic = %p.topic, partition = p.partition,
                    "a newer producer epoch already wrote to the partition; marker skipped");
            }
            // The record left this Prepare state meanwhile: another coordinator ended the
            // transaction (a handoff). Its markers are written; this one would end nothing.
            Err(WriteError::Refused(ProducerRefusal::InvalidTxnState)) => {
                tracing::info!(transactional_id = %rec.transactional_id, topic = %p.topic, partition = p.partition,
                    "the transaction was already ended elsewhere; marker skipped");
            }
            Err(e) => return Err(retriable(e)),
        }
    }
    Ok(())
}

impl TxnCoordinator {
    /// Forgets producers idle for [`PRODUCER_EXPIRATION_MS`] without an open transaction.
    pub async fn expire_producers(shared: &Shared) {
        match shared
            .meta
            .expire_producers(shared.config.clock.now_ms() - PRODUCER_EXPIRATION_MS)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "forgot idle producers"),
            Err(e) => tracing::warn!(error = %e, "could not expire idle producers"),
        }
    }

    /// Forgets the transactional ids this agent coordinates that have no transaction
    /// open and have not changed for `--transactional-id-expiration` (Kafka's
    /// `transactional.id.expiration.ms`), so the metadata store does not keep every id
    /// ever used. A later InitProducerId of the id gets a new producer id.
    pub async fn expire_ids(shared: &Shared) {
        let all = match shared.meta.transactions().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "transactional id expiry could not read the metadata store");
                return;
            }
        };
        let max_idle = shared.config.transactional_id_expiration.as_millis() as i64;
        let idle = |rec: &Transaction, now: i64| {
            matches!(
                rec.state,
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
            ) && now - rec.updated_ms > max_idle
        };
        let view = crate::cluster::ClusterView::of(shared);
        let mut forgotten = 0u64;
        for rec in all {
            let now = shared.config.clock.now_ms();
            if !idle(&rec, now) || !view.coordinates(&rec.transactional_id) {
                continue;
            }
            let id = rec.transactional_id.clone();
            let lock = shared.txns.lock_for(&id);
            let Ok(_held) = lock.try_lock() else { continue };
            let result = async {
                let fence = roles::txn_fence(shared, &id).await?;
                let deleted = shared.meta.delete_transaction(&rec, &fence).await;
                roles::check(shared, &fence, deleted)
            }
            .await;
            match result {
                Ok(()) => forgotten += 1,
                // It changed since the scan read it: in use again.
                Err(MetaError::Conflict(_)) => {}
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "could not expire a transactional id")
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(ids = forgotten, "forgot idle transactional ids");
            Metrics::add(&shared.metrics.txn_ids_expired, forgotten);
        }
    }

    /// The scan: aborts transactions past their timeout (fencing their producer) and
    /// finishes ends an earlier agent left half done. Runs about once a second, and only
    /// for the transactional ids this agent coordinates (their other coordinators scan
    /// the rest), so two agents never race on one id.
    pub async fn tick(shared: &Shared) {
        let all = match shared.meta.transactions().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "transaction scan could not read the metadata store");
                return;
            }
        };
        let now = shared.config.clock.now_ms();
        let view = crate::cluster::ClusterView::of(shared);
        for rec in all {
            if !view.coordinates(&rec.transactional_id) {
                continue;
            }
            let expired = rec.state == TxnState::Ongoing
                && rec.started_ms >= 0
                && now - rec.started_ms > i64::from(rec.timeout_ms);
            let stuck = matches!(rec.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
            if !expired && !stuck {
                continue;
            }
            let id = rec.transactional_id.clone();
            let lock = shared.txns.lock_for(&id);
            // Busy ids are being handled by a request right now.
            let Ok(_held) = lock.try_lock() else { continue };
            let result = async {
                let Some(rec) = shared.meta.transaction(&id).await? else {
                    return Ok(());
                };
                let rec = match rec.state {
                    TxnState::Ongoing
                        if shared.config.clock.now_ms() - rec.started_ms
                            > i64::from(rec.timeout_ms) =>
                    {
                        tracing::info!(transactional_id = %id, timeout_ms = rec.timeout_ms,
                            "aborting a transaction past its timeout");
                        Metrics::add(&shared.metrics.txn_timeouts, 1);
                        prepare_end(shared, rec, false, true).await?
                    }
                    TxnState::PrepareCommit | TxnState::PrepareAbort => rec,
                    _ => return Ok(()),
                };
                finish(shared, rec).await.map(|_| ())
            }
            .await;
            if let Err(e) = result {
                let e: TxnError = e;
                tracing::warn!(transactional_id = %id, error = %e.message, "transaction scan could not end a transaction; will retry");
            }
        }
    }
}
