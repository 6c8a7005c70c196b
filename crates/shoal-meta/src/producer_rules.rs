//! Kafka's producer rules, shared by every backend: given what a partition remembers of
//! one producer, decide what happens to its next batch and what to remember after it.
//! Pure functions; the backends load and store the state inside their commit.

use serde::{Deserialize, Serialize};

use crate::*;

/// How many batches per producer and partition are remembered for duplicate detection
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
pub(crate) const REMEMBERED_BATCHES: usize = 5;

/// One remembered batch of a producer on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recent {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
}

/// What a partition remembers of one producer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ProducerRow {
    pub epoch: i16,
    pub recent: Vec<Recent>,
    /// First offset of the producer's open transaction on the partition.
    pub txn_first: Option<i64>,
}

impl ProducerRow {
    pub fn last_sequence(&self) -> i32 {
        self.recent.last().map_or(-1, |r| r.last_seq)
    }
}

/// The sequence after `seq`, wrapping as Kafka does.
pub(crate) fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// What the producer checks decided for one batch before offsets are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Append,
    Duplicate(i64),
    Refuse(ProducerRefusal),
}

/// Whether a batch needs the transaction check: `decide` returns `Append` for it only if
/// `in_txn` holds, that is the producer id's transaction record, with this epoch, lists
/// the partition and is in [`txn_state_for`] the batch. Transactional data needs an
/// ongoing transaction; a marker needs the transaction it ends to be still in the
/// matching Prepare state, so a late or duplicate marker (written by a coordinator that
/// lost a handoff race, after the transaction completed and the producer began the next
/// one with the same id and epoch) is refused instead of ending the next transaction.
/// The caller evaluates `in_txn` lazily, only when asked.
pub(crate) fn needs_txn_check(b: &ProducerBatch) -> bool {
    txn_state_for(b).is_some()
}

/// The transaction state a batch needs its producer's transaction record in, if any.
pub(crate) fn txn_state_for(b: &ProducerBatch) -> Option<TxnState> {
    match b.kind {
        BatchKind::Data {
            transactional: true,
        } => Some(TxnState::Ongoing),
        BatchKind::Data {
            transactional: false,
        } => None,
        BatchKind::Marker { commit: true } => Some(TxnState::PrepareCommit),
        BatchKind::Marker { commit: false } => Some(TxnState::PrepareAbort),
    }
}

/// Runs Kafka's producer checks for `b` against what the partition remembers of its
/// producer (see `MetaStore::commit_flush`). `in_txn` answers the transaction check for
/// transactional data.
pub(crate) fn decide(row: Option<&ProducerRow>, b: &ProducerBatch, in_txn: bool) -> Decision {
    if let Some(row) = row {
        if b.epoch < row.epoch {
            return Decision::Refuse(ProducerRefusal::InvalidProducerEpoch);
        }
    }
    let BatchKind::Data { transactional } = b.kind else {
        return if in_txn {
            Decision::Append
        } else {
            Decision::Refuse(ProducerRefusal::InvalidTxnState)
        };
    };
    if let Some(row) = row {
        if b.epoch == row.epoch {
            if let Some(dup) = row
                .recent
                .iter()
                .find(|r| r.first_seq == b.first_sequence && r.last_seq == b.last_sequence)
            {
                return Decision::Duplicate(dup.base_offset);
            }
            if b.first_sequence != next_sequence(row.last_sequence()) {
                return Decision::Refuse(ProducerRefusal::OutOfOrderSequence);
            }
        } else if b.first_sequence != 0 {
            return Decision::Refuse(ProducerRefusal::OutOfOrderSequence);
        }
    }
    if transactional && !in_txn {
        return Decision::Refuse(ProducerRefusal::InvalidTxnState);
    }
    Decision::Append
}

/// What to remember after appending `b` at `base_offset` (after [`decide`] said Append),
/// and the aborted transaction it closes, if it is an abort marker of an open one.
pub(crate) fn apply(
    row: Option<&ProducerRow>,
    b: &ProducerBatch,
    base_offset: i64,
) -> (ProducerRow, Option<AbortedTxn>) {
    let same_epoch = row.is_some_and(|r| r.epoch == b.epoch);
    let mut recent = match (row, same_epoch) {
        (Some(r), true) => r.recent.clone(),
        _ => Vec::new(),
    };
    let mut txn_first = row.and_then(|r| r.txn_first);
    let mut aborted = None;
    match b.kind {
        BatchKind::Data { transactional } => {
            recent.push(Recent {
                first_seq: b.first_sequence,
                last_seq: b.last_sequence,
                base_offset,
            });
            if recent.len() > REMEMBERED_BATCHES {
                recent.remove(0);
            }
            if transactional && txn_first.is_none() {
                txn_first = Some(base_offset);
            }
        }
        BatchKind::Marker { commit } => {
            if let Some(first) = txn_first.take() {
                if !commit {
                    aborted = Some(AbortedTxn {
                        producer_id: b.producer_id,
                        first_offset: first,
                        last_offset: base_offset,
                    });
                }
            }
        }
    }
    (
        ProducerRow {
            epoch: b.epoch,
            recent,
            txn_first,
        },
        aborted,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(next_sequence(-1), 0);
        assert_eq!(next_sequence(41), 42);
        assert_eq!(next_sequence(i32::MAX), 0);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut row = None;
        for i in 0..7 {
            let b = ProducerBatch {
                producer_id: 1,
                epoch: 0,
                first_sequence: i,
                last_sequence: i,
                kind: BatchKind::Data {
                    transactional: false,
                },
            };
            assert_eq!(decide(row.as_ref(), &b, false), Decision::Append);
            row = Some(apply(row.as_ref(), &b, i64::from(i) * 10).0);
        }
        let row = row.unwrap();
        assert_eq!(row.recent.len(), REMEMBERED_BATCHES);
        assert_eq!(row.recent[0].first_seq, 2);
        assert_eq!(row.last_sequence(), 6);
    }
}
