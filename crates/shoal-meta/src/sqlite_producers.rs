//! Producer state and transaction records of the SQLite backend: the sequence checks
//! [`crate::MetaStore::commit_flush`] runs inside its transaction, and the coordinator's
//! transaction rows.

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

pub(crate) use crate::producer_rules::*;
use crate::*;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS producers (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL, producer_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    recent TEXT NOT NULL,
    txn_first INTEGER,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
) WITHOUT ROWID;
-- The last stable offset is read on every fetch: find open transactions without
-- scanning every producer a partition ever had.
CREATE INDEX IF NOT EXISTS producers_open_txn ON producers (topic_id, partition, txn_first)
    WHERE txn_first IS NOT NULL;
CREATE TABLE IF NOT EXISTS aborted_txns (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL, last_offset INTEGER NOT NULL, producer_id INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, first_offset, producer_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions (
    transactional_id TEXT PRIMARY KEY,
    producer_id INTEGER NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transactions_by_producer ON transactions (producer_id);
CREATE TABLE IF NOT EXISTS txn_partitions (
    transactional_id TEXT NOT NULL, topic TEXT NOT NULL, topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    PRIMARY KEY (transactional_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS txn_groups (
    transactional_id TEXT NOT NULL, group_id TEXT NOT NULL,
    PRIMARY KEY (transactional_id, group_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS txn_offsets (
    transactional_id TEXT NOT NULL, group_id TEXT NOT NULL, topic TEXT NOT NULL,
    partition INTEGER NOT NULL, committed_offset INTEGER NOT NULL, leader_epoch INTEGER NOT NULL,
    metadata TEXT, commit_ts INTEGER NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic, partition)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txn_offsets_by_group ON txn_offsets (group_id);
";

fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

fn encode_recent(r: &[Recent]) -> String {
    r.iter()
        .map(|b| format!("{},{},{}", b.first_seq, b.last_seq, b.base_offset))
        .collect::<Vec<_>>()
        .join(";")
}

fn decode_recent(s: &str) -> Vec<Recent> {
    s.split(';')
        .filter_map(|b| {
            let mut it = b.split(',').map(|n| n.parse::<i64>().ok());
            Some(Recent {
                first_seq: it.next()?? as i32,
                last_seq: it.next()?? as i32,
                base_offset: it.next()??,
            })
        })
        .collect()
}

fn load(
    tx: &Connection,
    id: &[u8],
    partition: i32,
    pid: i64,
) -> Result<Option<ProducerRow>, MetaError> {
    tx.prepare_cached(
        "SELECT epoch, recent, txn_first FROM producers \
         WHERE topic_id = ?1 AND partition = ?2 AND producer_id = ?3",
    )
    .map_err(backend)?
    .query_row(params![id, partition, pid], |r| {
        Ok(ProducerRow {
            epoch: r.get(0)?,
            recent: decode_recent(&r.get::<_, String>(1)?),
            txn_first: r.get(2)?,
        })
    })
    .optional()
    .map_err(backend)
}

/// Runs Kafka's producer checks for `b` on a partition (see `MetaStore::commit_flush`).
pub(crate) fn check(
    tx: &Connection,
    id: &[u8],
    partition: i32,
    b: &ProducerBatch,
) -> Result<Decision, MetaError> {
    let row = load(tx, id, partition, b.producer_id)?;
    let in_txn = needs_txn_check(b) && in_ongoing_transaction(tx, id, partition, b)?;
    Ok(decide(row.as_ref(), b, in_txn))
}

/// Whether the transaction of this producer id and epoch lists the partition and is in the
/// state the batch needs (`txn_state_for`).
fn in_ongoing_transaction(
    tx: &Connection,
    id: &[u8],
    partition: i32,
    b: &ProducerBatch,
) -> Result<bool, MetaError> {
    let Some(state) = txn_state_for(b).map(TxnState::as_str) else {
        return Ok(false);
    };
    let found: Option<i64> = tx
        .prepare_cached(
            "SELECT 1 FROM transactions t JOIN txn_partitions p \
             ON p.transactional_id = t.transactional_id \
             WHERE t.producer_id = ?1 AND t.epoch = ?2 AND t.state = ?5 \
             AND p.topic_id = ?3 AND p.partition = ?4",
        )
        .map_err(backend)?
        .query_row(params![b.producer_id, b.epoch, id, partition, state], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    Ok(found.is_some())
}

/// Records an appended producer batch at `base_offset` (after [`check`] said Append).
pub(crate) fn record(
    tx: &Connection,
    id: &[u8],
    partition: i32,
    b: &ProducerBatch,
    base_offset: i64,
    now_ms: i64,
) -> Result<(), MetaError> {
    let row = load(tx, id, partition, b.producer_id)?;
    let (row, aborted) = apply(row.as_ref(), b, base_offset);
    if let Some(a) = aborted {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO aborted_txns \
             (topic_id, partition, first_offset, last_offset, producer_id) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend)?
        .execute(params![
            id,
            partition,
            a.first_offset,
            a.last_offset,
            a.producer_id
        ])
        .map_err(backend)?;
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO producers \
         (topic_id, partition, producer_id, epoch, recent, txn_first, last_ts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(backend)?
    .execute(params![
        id,
        partition,
        b.producer_id,
        row.epoch,
        encode_recent(&row.recent),
        row.txn_first,
        now_ms
    ])
    .map_err(backend)?;
    Ok(())
}

/// The first offset of the oldest open transaction on a partition.
pub(crate) fn first_open_txn(
    tx: &Connection,
    id: &[u8],
    partition: i32,
) -> Result<Option<i64>, MetaError> {
    tx.prepare_cached(
        "SELECT MIN(txn_first) FROM producers \
         WHERE topic_id = ?1 AND partition = ?2 AND txn_first IS NOT NULL",
    )
    .map_err(backend)?
    .query_row(params![id, partition], |r| r.get(0))
    .map_err(backend)
}

pub(crate) fn aborted(
    c: &Connection,
    topic_id: Uuid,
    partition: i32,
    from: i64,
    to: i64,
) -> Result<Vec<AbortedTxn>, MetaError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT producer_id, first_offset, last_offset FROM aborted_txns \
             WHERE topic_id = ?1 AND partition = ?2 AND first_offset < ?4 AND last_offset >= ?3 \
             ORDER BY first_offset, producer_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![topic_id.as_bytes().as_slice(), partition, from, to],
            |r| {
                Ok(AbortedTxn {
                    producer_id: r.get(0)?,
                    first_offset: r.get(1)?,
                    last_offset: r.get(2)?,
                })
            },
        )
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(crate) fn producers(
    c: &Connection,
    topic_id: Uuid,
    partition: i32,
) -> Result<Vec<ProducerState>, MetaError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT producer_id, epoch, recent, txn_first, last_ts FROM producers \
             WHERE topic_id = ?1 AND partition = ?2 ORDER BY producer_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![topic_id.as_bytes().as_slice(), partition], |r| {
            Ok(ProducerState {
                producer_id: r.get(0)?,
                epoch: r.get(1)?,
                last_sequence: decode_recent(&r.get::<_, String>(2)?)
                    .last()
                    .map_or(-1, |b| b.last_seq),
                txn_start_offset: r.get::<_, Option<i64>>(3)?.unwrap_or(-1),
                last_timestamp: r.get(4)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Drops producer state and aborted-transaction records of a deleted topic.
pub(crate) fn forget_topic(tx: &Connection, id: &[u8]) -> Result<(), MetaError> {
    tx.execute("DELETE FROM producers WHERE topic_id = ?1", params![id])
        .map_err(backend)?;
    tx.execute("DELETE FROM aborted_txns WHERE topic_id = ?1", params![id])
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn load_transaction(
    c: &Connection,
    transactional_id: &str,
) -> Result<Option<Transaction>, MetaError> {
    let row = c
        .prepare_cached(
            "SELECT producer_id, epoch, state, timeout_ms, started_ms, updated_ms, version, \
             next_producer_id, previous_producer_id \
             FROM transactions WHERE transactional_id = ?1",
        )
        .map_err(backend)?
        .query_row(params![transactional_id], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, i16>(1)?,
                    r.get::<_, String>(2)?,
                ),
                (
                    r.get::<_, i32>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ),
                (
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                ),
            ))
        })
        .optional()
        .map_err(backend)?;
    let Some((
        (producer_id, epoch, state),
        (timeout_ms, started_ms, updated_ms),
        (version, next_producer_id, previous_producer_id),
    )) = row
    else {
        return Ok(None);
    };
    let state = TxnState::parse(&state)
        .ok_or_else(|| MetaError::Backend(format!("unknown transaction state '{state}'")))?;
    let partitions = {
        let mut stmt = c
            .prepare_cached(
                "SELECT topic, topic_id, partition FROM txn_partitions \
                 WHERE transactional_id = ?1 ORDER BY topic, partition",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![transactional_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?))
            })
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (topic, id, partition) = row.map_err(backend)?;
            out.push(TxnPartition {
                topic,
                topic_id: Uuid::from_slice(&id).map_err(backend)?,
                partition,
            });
        }
        out
    };
    let groups = {
        let mut stmt = c
            .prepare_cached(
                "SELECT group_id FROM txn_groups WHERE transactional_id = ?1 ORDER BY group_id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![transactional_id], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    Ok(Some(Transaction {
        transactional_id: transactional_id.to_string(),
        producer_id,
        epoch,
        state,
        timeout_ms,
        started_ms,
        updated_ms,
        partitions,
        groups,
        next_producer_id,
        previous_producer_id,
        version: version as u64,
    }))
}

pub(crate) fn transaction_ids(c: &Connection) -> Result<Vec<String>, MetaError> {
    let mut stmt = c
        .prepare_cached("SELECT transactional_id FROM transactions ORDER BY transactional_id")
        .map_err(backend)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Compare-and-swap save of a transaction record; returns the new version.
pub(crate) fn save_transaction(tx: &Connection, t: &Transaction) -> Result<u64, MetaError> {
    let stored: Option<i64> = tx
        .prepare_cached("SELECT version FROM transactions WHERE transactional_id = ?1")
        .map_err(backend)?
        .query_row(params![t.transactional_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if stored.unwrap_or(0) as u64 != t.version {
        return Err(MetaError::Conflict(format!(
            "transaction '{}'",
            t.transactional_id
        )));
    }
    let version = t.version + 1;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO transactions \
         (transactional_id, producer_id, epoch, state, timeout_ms, started_ms, updated_ms, version, \
          next_producer_id, previous_producer_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(backend)?
    .execute(params![
        t.transactional_id,
        t.producer_id,
        t.epoch,
        t.state.as_str(),
        t.timeout_ms,
        t.started_ms,
        t.updated_ms,
        version as i64,
        t.next_producer_id,
        t.previous_producer_id
    ])
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM txn_partitions WHERE transactional_id = ?1",
        params![t.transactional_id],
    )
    .map_err(backend)?;
    for p in &t.partitions {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO txn_partitions (transactional_id, topic, topic_id, partition) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?
        .execute(params![
            t.transactional_id,
            p.topic,
            p.topic_id.as_bytes().as_slice(),
            p.partition
        ])
        .map_err(backend)?;
    }
    tx.execute(
        "DELETE FROM txn_groups WHERE transactional_id = ?1",
        params![t.transactional_id],
    )
    .map_err(backend)?;
    for g in &t.groups {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO txn_groups (transactional_id, group_id) VALUES (?1, ?2)",
        )
        .map_err(backend)?
        .execute(params![t.transactional_id, g])
        .map_err(backend)?;
    }
    Ok(version)
}

/// Deletes a transaction record (and its partitions and groups) if it still has
/// `version`.
pub(crate) fn delete_transaction(
    tx: &Connection,
    transactional_id: &str,
    version: u64,
) -> Result<(), MetaError> {
    let n = tx
        .execute(
            "DELETE FROM transactions WHERE transactional_id = ?1 AND version = ?2",
            params![transactional_id, version as i64],
        )
        .map_err(backend)?;
    if n == 0 {
        return Err(MetaError::Conflict(format!(
            "transaction '{transactional_id}'"
        )));
    }
    for table in ["txn_partitions", "txn_groups"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE transactional_id = ?1"),
            params![transactional_id],
        )
        .map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn stage_offsets(
    tx: &Connection,
    transactional_id: &str,
    group: &str,
    offsets: &[GroupOffset],
) -> Result<(), MetaError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO txn_offsets (transactional_id, group_id, topic, partition, \
             committed_offset, leader_epoch, metadata, commit_ts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(backend)?;
    for o in offsets {
        stmt.execute(params![
            transactional_id,
            group,
            o.topic,
            o.partition,
            o.offset,
            o.leader_epoch,
            o.metadata,
            o.commit_timestamp
        ])
        .map_err(backend)?;
    }
    Ok(())
}

/// Applies (commit) or drops the offsets a transaction staged.
pub(crate) fn settle_offsets(
    tx: &Connection,
    transactional_id: &str,
    commit: bool,
) -> Result<(), MetaError> {
    if commit {
        tx.execute(
            "INSERT OR REPLACE INTO group_offsets \
             (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ts) \
             SELECT group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ts \
             FROM txn_offsets WHERE transactional_id = ?1",
            params![transactional_id],
        )
        .map_err(backend)?;
    }
    tx.execute(
        "DELETE FROM txn_offsets WHERE transactional_id = ?1",
        params![transactional_id],
    )
    .map_err(backend)?;
    Ok(())
}

pub(crate) fn pending_offsets(
    c: &Connection,
    group: &str,
) -> Result<Vec<(String, i32)>, MetaError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT DISTINCT topic, partition FROM txn_offsets WHERE group_id = ?1 \
             ORDER BY topic, partition",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![group], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_batches_round_trip() {
        let r = vec![
            Recent {
                first_seq: 0,
                last_seq: 4,
                base_offset: 10,
            },
            Recent {
                first_seq: i32::MAX - 1,
                last_seq: 1,
                base_offset: i64::MAX / 2,
            },
        ];
        assert_eq!(decode_recent(&encode_recent(&r)), r);
        assert!(decode_recent("").is_empty());
    }
}
