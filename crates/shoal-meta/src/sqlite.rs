//! The SQLite backend, for a single machine (the playground).
//!
//! One file, WAL journal, `synchronous=FULL`: a commit that returned is on disk, which
//! is what lets the agent acknowledge a produce. rusqlite is blocking, so every call runs
//! on tokio's blocking pool behind one connection mutex; SQLite serialises writers
//! anyway and each statement here is small.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use crate::sqlite_producers as producers;
use crate::*;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cluster (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_configs (
    topic TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL,
    PRIMARY KEY (topic, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL,
    log_start INTEGER NOT NULL, hwm INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx (
    topic_id BLOB NOT NULL, partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL, end_offset INTEGER NOT NULL,
    object_key TEXT NOT NULL, object_size INTEGER NOT NULL, data_offset INTEGER NOT NULL, data_len INTEGER NOT NULL,
    min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL, leader_epoch INTEGER NOT NULL,
    metadata TEXT, commit_ts INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_by_object ON idx (object_key);
CREATE TABLE IF NOT EXISTS pending_objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, fenced INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_claims (
    job TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_configs (
    group_id TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL,
    PRIMARY KEY (group_id, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS client_quotas (
    entity TEXT NOT NULL, k TEXT NOT NULL, v REAL NOT NULL,
    PRIMARY KEY (entity, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scram_credentials (
    user TEXT NOT NULL, mechanism TEXT NOT NULL,
    salt BLOB NOT NULL, stored_key BLOB NOT NULL, server_key BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    PRIMARY KEY (user, mechanism)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS acls (
    resource_type INTEGER NOT NULL, resource_name TEXT NOT NULL, pattern_type INTEGER NOT NULL,
    principal TEXT NOT NULL, host TEXT NOT NULL, operation INTEGER NOT NULL,
    permission INTEGER NOT NULL,
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
) WITHOUT ROWID;
";

/// Columns added after the first release, with the statement that adds each to an
/// older file: when GC first saw an object unreferenced; the producer ids of a
/// transactions-v2 switch (KIP-890).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "objects",
        "unreferenced_ms",
        "ALTER TABLE objects ADD COLUMN unreferenced_ms INTEGER",
    ),
    (
        "transactions",
        "next_producer_id",
        "ALTER TABLE transactions ADD COLUMN next_producer_id INTEGER NOT NULL DEFAULT -1",
    ),
    (
        "transactions",
        "previous_producer_id",
        "ALTER TABLE transactions ADD COLUMN previous_producer_id INTEGER NOT NULL DEFAULT -1",
    ),
];

/// Consumes the pending record of object `key` inside a commit: it must exist and not be
/// fenced when `required` (a flush), and must not be fenced in any case (compaction).
fn consume_pending(tx: &Connection, key: &str, required: bool) -> Result<(), MetaError> {
    let fenced: Option<i64> = tx
        .prepare_cached("SELECT fenced FROM pending_objects WHERE key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(backend)?;
    match fenced {
        Some(0) => {
            tx.execute("DELETE FROM pending_objects WHERE key = ?1", params![key])
                .map_err(backend)?;
            Ok(())
        }
        None if !required => Ok(()),
        _ => Err(MetaError::Conflict(format!(
            "pending record of object {key} (GC fenced the object, or it was committed already)"
        ))),
    }
}

/// A [`MetaStore`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(e: impl std::fmt::Display) -> MetaError {
    MetaError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let conn = Connection::open(path)
            .map_err(|e| MetaError::Backend(format!("open {}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, MetaError> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(mut conn: Connection) -> Result<Self, MetaError> {
        // The wait for a lock comes first so that even switching to WAL waits for
        // another process opening the same file, not fails with "database is locked".
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        // Transactions read, then write. A deferred transaction that must upgrade its
        // read lock while another process (a second agent on the same file) writes
        // fails at once with SQLITE_BUSY, without waiting; taking the write lock at
        // BEGIN makes it wait its turn under the busy timeout instead.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute_batch(producers::SCHEMA).map_err(backend)?;
        for (table, column, add) in ADDED_COLUMNS {
            let present: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")
                .and_then(|mut s| s.exists(params![table, column]))
                .map_err(backend)?;
            if !present {
                conn.execute_batch(add).map_err(backend)?;
            }
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, MetaError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| MetaError::Backend(format!("metadata task failed: {e}")))?
    }
}

/// Partitions whose watermarks one blocking task reads in `partitions_offsets`.
const OFFSETS_PER_TASK: usize = 256;

/// A partition's log start, high watermark and last stable offset.
fn offsets_in(
    c: &Connection,
    topic_id: Uuid,
    partition: i32,
) -> Result<PartitionOffsets, MetaError> {
    c.prepare_cached("SELECT log_start, hwm FROM partitions WHERE topic_id = ?1 AND partition = ?2")
        .map_err(backend)?
        .query_row(params![topic_id.as_bytes().as_slice(), partition], |r| {
            Ok(PartitionOffsets {
                log_start: r.get(0)?,
                high_watermark: r.get(1)?,
                last_stable: 0,
            })
        })
        .optional()
        .map_err(backend)?
        .ok_or(MetaError::UnknownPartition {
            topic_id,
            partition,
        })
        .and_then(|mut o| {
            let open = producers::first_open_txn(c, topic_id.as_bytes().as_slice(), partition)?;
            // Records below the log start are gone, open transaction or not.
            o.last_stable = open.unwrap_or(o.high_watermark).max(o.log_start);
            Ok(o)
        })
}

fn load_topic(tx: &Connection, name: &str) -> Result<Option<TopicInfo>, MetaError> {
    let row = tx
        .query_row(
            "SELECT id, partitions FROM topics WHERE name = ?1",
            params![name],
            |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i32>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((id, partitions)) = row else {
        return Ok(None);
    };
    let mut stmt = tx
        .prepare_cached("SELECT k, v FROM topic_configs WHERE topic = ?1 ORDER BY k")
        .map_err(backend)?;
    let configs = stmt
        .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?
        .collect::<Result<BTreeMap<String, String>, _>>()
        .map_err(backend)?;
    Ok(Some(TopicInfo {
        name: name.to_string(),
        id: Uuid::from_slice(&id).map_err(backend)?,
        partitions,
        configs,
    }))
}

fn require_topic(tx: &Connection, name: &str) -> Result<TopicInfo, MetaError> {
    load_topic(tx, name)?.ok_or_else(|| MetaError::UnknownTopic(name.to_string()))
}

fn add_partitions(
    tx: &rusqlite::Transaction,
    id: Uuid,
    from: i32,
    to: i32,
) -> Result<(), MetaError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO partitions (topic_id, partition, log_start, hwm) VALUES (?1, ?2, 0, 0)",
        )
        .map_err(backend)?;
    for p in from..to {
        stmt.execute(params![id.as_bytes().as_slice(), p])
            .map_err(backend)?;
    }
    Ok(())
}

fn entry_from_row(r: &rusqlite::Row) -> rusqlite::Result<IndexEntry> {
    Ok(IndexEntry {
        base_offset: r.get(0)?,
        end_offset: r.get(1)?,
        object_key: r.get(2)?,
        object_size: r.get::<_, i64>(3)? as u64,
        data_offset: r.get::<_, i64>(4)? as u64,
        data_len: r.get::<_, i64>(5)? as u64,
        min_timestamp: r.get(6)?,
        max_timestamp: r.get(7)?,
    })
}

const ENTRY_COLUMNS: &str =
    "base_offset, end_offset, object_key, object_size, data_offset, data_len, min_ts, max_ts";

use crate::clock::now_ms;

/// Base64url without padding, as Kafka prints cluster ids.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn cluster_id(&self) -> Result<String, MetaError> {
        self.with(|c| {
            let tx = c.transaction().map_err(backend)?;
            let existing: Option<String> = tx
                .query_row("SELECT v FROM cluster WHERE k = 'cluster_id'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?;
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = base64url(Uuid::new_v4().as_bytes());
                    tx.execute(
                        "INSERT INTO cluster (k, v) VALUES ('cluster_id', ?1)",
                        params![id],
                    )
                    .map_err(backend)?;
                    id
                }
            };
            tx.commit().map_err(backend)?;
            Ok(id)
        })
        .await
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo, MetaError> {
        if spec.partitions <= 0 {
            return Err(MetaError::Invalid(
                "partition count must be positive".into(),
            ));
        }
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            if load_topic(&tx, &spec.name)?.is_some() {
                return Err(MetaError::TopicExists(spec.name));
            }
            let id = Uuid::new_v4();
            tx.execute(
                "INSERT INTO topics (name, id, partitions) VALUES (?1, ?2, ?3)",
                params![spec.name, id.as_bytes().as_slice(), spec.partitions],
            )
            .map_err(backend)?;
            for (k, v) in &spec.configs {
                tx.execute(
                    "INSERT INTO topic_configs (topic, k, v) VALUES (?1, ?2, ?3)",
                    params![spec.name, k, v],
                )
                .map_err(backend)?;
            }
            add_partitions(&tx, id, 0, spec.partitions)?;
            let info = require_topic(&tx, &spec.name)?;
            tx.commit().map_err(backend)?;
            Ok(info)
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicInfo, MetaError> {
        let name = name.to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let info = require_topic(&tx, &name)?;
            let id = info.id.as_bytes().to_vec();
            tx.execute("DELETE FROM topics WHERE name = ?1", params![name])
                .map_err(backend)?;
            tx.execute("DELETE FROM topic_configs WHERE topic = ?1", params![name])
                .map_err(backend)?;
            tx.execute("DELETE FROM partitions WHERE topic_id = ?1", params![id])
                .map_err(backend)?;
            tx.execute("DELETE FROM idx WHERE topic_id = ?1", params![id])
                .map_err(backend)?;
            producers::forget_topic(&tx, &id)?;
            tx.commit().map_err(backend)?;
            Ok(info)
        })
        .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, MetaError> {
        self.with(|c| {
            let names: Vec<String> = {
                let mut stmt = c
                    .prepare_cached("SELECT name FROM topics ORDER BY name")
                    .map_err(backend)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            names.iter().map(|n| require_topic(c, n)).collect()
        })
        .await
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicInfo, MetaError> {
        let name = name.to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let info = require_topic(&tx, &name)?;
            if total <= info.partitions {
                return Err(MetaError::Invalid(format!(
                    "topic '{name}' has {} partitions; the new count {total} must be larger",
                    info.partitions
                )));
            }
            tx.execute(
                "UPDATE topics SET partitions = ?1 WHERE name = ?2",
                params![total, name],
            )
            .map_err(backend)?;
            add_partitions(&tx, info.id, info.partitions, total)?;
            let info = require_topic(&tx, &name)?;
            tx.commit().map_err(backend)?;
            Ok(info)
        })
        .await
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicInfo, MetaError> {
        let name = name.to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            require_topic(&tx, &name)?;
            tx.execute("DELETE FROM topic_configs WHERE topic = ?1", params![name])
                .map_err(backend)?;
            for (k, v) in &configs {
                tx.execute(
                    "INSERT INTO topic_configs (topic, k, v) VALUES (?1, ?2, ?3)",
                    params![name, k, v],
                )
                .map_err(backend)?;
            }
            let info = require_topic(&tx, &name)?;
            tx.commit().map_err(backend)?;
            Ok(info)
        })
        .await
    }

    async fn commit_flush(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
    ) -> Result<Vec<SegmentOutcome>, MetaError> {
        let object = object.clone();
        let segments = segments.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            consume_pending(&tx, &object.key, true)?;
            tx.execute(
                "INSERT INTO objects (key, size) VALUES (?1, ?2)",
                params![object.key, object.size as i64],
            )
            .map_err(backend)?;
            let now = now_ms();
            let mut outcomes = Vec::with_capacity(segments.len());
            // The index entry each partition got last in this commit, so adjacent accepted
            // segments of one partition share one entry: (topic, partition) -> (base, end, data end).
            let mut last_entry: std::collections::HashMap<(Uuid, i32), (i64, i64, u64)> =
                std::collections::HashMap::new();
            for s in &segments {
                let id = s.topic_id.as_bytes().as_slice();
                let state: Option<(i64, i64)> = tx
                    .prepare_cached(
                        "SELECT log_start, hwm FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    )
                    .map_err(backend)?
                    .query_row(params![id, s.partition], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(backend)?;
                let Some((log_start, hwm)) = state else {
                    outcomes.push(SegmentOutcome::UnknownPartition);
                    continue;
                };
                if let Some(b) = &s.producer {
                    match producers::check(&tx, id, s.partition, b)? {
                        producers::Decision::Append => {
                            producers::record(&tx, id, s.partition, b, hwm, now)?;
                        }
                        producers::Decision::Duplicate(base_offset) => {
                            outcomes.push(SegmentOutcome::Duplicate {
                                base_offset,
                                log_start_offset: log_start,
                            });
                            continue;
                        }
                        producers::Decision::Refuse(why) => {
                            outcomes.push(SegmentOutcome::Refused(why));
                            continue;
                        }
                    }
                }
                let end = hwm + s.offset_span as i64;
                tx.prepare_cached(
                    "UPDATE partitions SET hwm = ?1 WHERE topic_id = ?2 AND partition = ?3",
                )
                .map_err(backend)?
                .execute(params![end, id, s.partition])
                .map_err(backend)?;
                let key = (s.topic_id, s.partition);
                match last_entry.get(&key) {
                    Some(&(base, prev_end, data_end))
                        if prev_end == hwm && data_end == s.data_offset =>
                    {
                        tx.prepare_cached(
                            "UPDATE idx SET end_offset = ?1, data_len = data_len + ?2, \
                             min_ts = MIN(min_ts, ?3), max_ts = MAX(max_ts, ?4) \
                             WHERE topic_id = ?5 AND partition = ?6 AND base_offset = ?7",
                        )
                        .map_err(backend)?
                        .execute(params![
                            end,
                            s.data_len as i64,
                            s.min_timestamp,
                            s.max_timestamp,
                            id,
                            s.partition,
                            base
                        ])
                        .map_err(backend)?;
                        last_entry.insert(key, (base, end, s.data_offset + s.data_len));
                    }
                    _ => {
                        tx.prepare_cached(&format!(
                            "INSERT INTO idx (topic_id, partition, {ENTRY_COLUMNS}) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                        ))
                        .map_err(backend)?
                        .execute(params![
                            id,
                            s.partition,
                            hwm,
                            end,
                            object.key,
                            object.size as i64,
                            s.data_offset as i64,
                            s.data_len as i64,
                            s.min_timestamp,
                            s.max_timestamp
                        ])
                        .map_err(backend)?;
                        last_entry.insert(key, (hwm, end, s.data_offset + s.data_len));
                    }
                }
                outcomes.push(SegmentOutcome::Committed {
                    base_offset: hwm,
                    log_start_offset: log_start,
                });
            }
            tx.commit().map_err(backend)?;
            Ok(outcomes)
        })
        .await
    }

    async fn partition_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<PartitionOffsets, MetaError> {
        self.with(move |c| offsets_in(c, topic_id, partition)).await
    }

    async fn partitions_offsets(
        &self,
        parts: &[(Uuid, i32)],
    ) -> Vec<Result<PartitionOffsets, MetaError>> {
        let mut out = Vec::with_capacity(parts.len());
        // A few hundred per task: one handoff to the blocking pool each, and commits
        // waiting for the connection wait only that long.
        for chunk in parts.chunks(OFFSETS_PER_TASK) {
            let chunk = chunk.to_vec();
            let n = chunk.len();
            let got = self
                .with(move |c| {
                    Ok(chunk
                        .iter()
                        .map(|(t, p)| offsets_in(c, *t, *p))
                        .collect::<Vec<_>>())
                })
                .await;
            match got {
                Ok(v) => out.extend(v),
                Err(e) => out.extend((0..n).map(|_| Err(MetaError::Backend(e.to_string())))),
            }
        }
        out
    }

    async fn index_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, MetaError> {
        self.with(move |c| {
            let id = topic_id.as_bytes().as_slice();
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM idx WHERE topic_id = ?1 AND partition = ?2 \
                     AND base_offset >= (SELECT COALESCE(MAX(base_offset), 0) FROM idx \
                         WHERE topic_id = ?1 AND partition = ?2 AND base_offset <= ?3) \
                     AND end_offset > ?3 ORDER BY base_offset LIMIT ?4"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![id, partition, from, limit as i64], entry_from_row)
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn index_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, MetaError> {
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM idx WHERE topic_id = ?1 AND partition = ?2 \
                 AND max_ts >= ?3 ORDER BY base_offset LIMIT 1"
            ))
            .map_err(backend)?
            .query_row(
                params![topic_id.as_bytes().as_slice(), partition, timestamp],
                entry_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn index_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<IndexEntry>, MetaError> {
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM idx WHERE topic_id = ?1 AND partition = ?2 \
                 ORDER BY max_ts DESC, base_offset ASC LIMIT 1"
            ))
            .map_err(backend)?
            .query_row(
                params![topic_id.as_bytes().as_slice(), partition],
                entry_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, MetaError> {
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let id = topic_id.as_bytes().as_slice();
            let (log_start, hwm): (i64, i64) = tx
                .query_row(
                    "SELECT log_start, hwm FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    params![id, partition],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?
                .ok_or(MetaError::UnknownPartition {
                    topic_id,
                    partition,
                })?;
            let start = offset.min(hwm).max(log_start);
            if start > log_start {
                tx.execute(
                    "UPDATE partitions SET log_start = ?1 WHERE topic_id = ?2 AND partition = ?3",
                    params![start, id, partition],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM idx WHERE topic_id = ?1 AND partition = ?2 AND end_offset <= ?3",
                    params![id, partition, start],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM aborted_txns WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3",
                    params![id, partition, start],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(start)
        })
        .await
    }

    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        self.with(move |c| {
            c.execute(
                "UPDATE objects SET unreferenced_ms = ?1 WHERE unreferenced_ms IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM idx WHERE idx.object_key = objects.key)",
                params![now_ms],
            )
            .map_err(backend)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT key FROM objects WHERE unreferenced_ms < ?1 \
                     ORDER BY unreferenced_ms, key LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![before_ms, limit as i64], |r| r.get(0))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn referenced_objects(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, MetaError> {
        let pattern = format!("{}%", prefix.replace('%', "").replace('_', "\\_"));
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key, size FROM objects WHERE key LIKE ?1 ESCAPE '\\' \
                     AND EXISTS (SELECT 1 FROM idx WHERE idx.object_key = objects.key) \
                     ORDER BY key LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![pattern, limit as i64], |r| {
                    Ok(ObjectRef {
                        key: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn object_entries(&self, key: &str) -> Result<Vec<PartitionEntry>, MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT topic_id, partition, {ENTRY_COLUMNS} FROM idx WHERE object_key = ?1 \
                     ORDER BY topic_id, partition, base_offset"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![key], |r| {
                    let id: Vec<u8> = r.get(0)?;
                    let partition: i32 = r.get(1)?;
                    let entry = IndexEntry {
                        base_offset: r.get(2)?,
                        end_offset: r.get(3)?,
                        object_key: r.get(4)?,
                        object_size: r.get::<_, i64>(5)? as u64,
                        data_offset: r.get::<_, i64>(6)? as u64,
                        data_len: r.get::<_, i64>(7)? as u64,
                        min_timestamp: r.get(8)?,
                        max_timestamp: r.get(9)?,
                    };
                    Ok((id, partition, entry))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, partition, entry) = row.map_err(backend)?;
                out.push(PartitionEntry {
                    topic_id: Uuid::from_slice(&id).map_err(backend)?,
                    partition,
                    entry,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn replace_entries(
        &self,
        old: &[PartitionEntry],
        object: &ObjectRef,
        new: &[PartitionEntry],
    ) -> Result<(), MetaError> {
        let (old, object, new) = (old.to_vec(), object.clone(), new.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for o in &old {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM idx WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3 \
                         AND end_offset = ?4 AND object_key = ?5 AND data_offset = ?6 AND data_len = ?7",
                    )
                    .map_err(backend)?
                    .execute(params![
                        o.topic_id.as_bytes().as_slice(),
                        o.partition,
                        o.entry.base_offset,
                        o.entry.end_offset,
                        o.entry.object_key,
                        o.entry.data_offset as i64,
                        o.entry.data_len as i64
                    ])
                    .map_err(backend)?;
                if n != 1 {
                    // Dropping `tx` rolls everything back.
                    return Err(MetaError::Conflict(format!(
                        "index entry at offset {} of partition {} (object {})",
                        o.entry.base_offset, o.partition, o.entry.object_key
                    )));
                }
            }
            consume_pending(&tx, &object.key, false)?;
            tx.execute(
                "INSERT INTO objects (key, size) VALUES (?1, ?2)",
                params![object.key, object.size as i64],
            )
            .map_err(backend)?;
            for n in &new {
                let e = &n.entry;
                tx.prepare_cached(&format!(
                    "INSERT INTO idx (topic_id, partition, {ENTRY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .map_err(backend)?
                .execute(params![
                    n.topic_id.as_bytes().as_slice(),
                    n.partition,
                    e.base_offset,
                    e.end_offset,
                    object.key,
                    object.size as i64,
                    e.data_offset as i64,
                    e.data_len as i64,
                    e.min_timestamp,
                    e.max_timestamp
                ])
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn object_known(&self, key: &str) -> Result<bool, MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            c.prepare_cached("SELECT 1 FROM objects WHERE key = ?1")
                .and_then(|mut s| s.exists(params![key]))
                .map_err(backend)
        })
        .await
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>, MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            c.prepare_cached("SELECT size FROM objects WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |r| r.get::<_, i64>(0)).optional())
                .map(|size| size.map(|n| n as u64))
                .map_err(backend)
        })
        .await
    }

    async fn forget_object(&self, key: &str) -> Result<(), MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM objects WHERE key = ?1", params![key])
                .and_then(|_| c.execute("DELETE FROM pending_objects WHERE key = ?1", params![key]))
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn add_pending_object(&self, key: &str) -> Result<(), MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO pending_objects (key, fenced) VALUES (?1, 0)",
                    params![key],
                )
                .map_err(backend)?;
            if n == 1 {
                Ok(())
            } else {
                Err(MetaError::Conflict(format!(
                    "pending record of object {key} (it has one already, or GC fenced it)"
                )))
            }
        })
        .await
    }

    async fn pending_objects(&self, limit: usize) -> Result<Vec<PendingObject>, MetaError> {
        self.with(move |c| {
            let mut st = c
                .prepare_cached("SELECT id, key, fenced FROM pending_objects ORDER BY id LIMIT ?1")
                .map_err(backend)?;
            let rows = st
                .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
                    Ok(PendingObject {
                        instance: r.get::<_, i64>(0)? as u64,
                        key: r.get(1)?,
                        fenced: r.get::<_, i64>(2)? != 0,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn fence_object(&self, key: &str, instance: Option<u64>) -> Result<bool, MetaError> {
        let key = key.to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let committed = tx
                .prepare_cached("SELECT 1 FROM objects WHERE key = ?1")
                .and_then(|mut st| st.exists(params![key]))
                .map_err(backend)?;
            if committed {
                return Ok(false);
            }
            let row: Option<(i64, i64)> = tx
                .prepare_cached("SELECT id, fenced FROM pending_objects WHERE key = ?1")
                .and_then(|mut st| {
                    st.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(backend)?;
            let fence = match (row, instance) {
                (Some((_, fenced)), _) if fenced != 0 => return Ok(true),
                (Some((id, _)), Some(want)) if id as u64 == want => {
                    "UPDATE pending_objects SET fenced = 1 WHERE key = ?1"
                }
                (None, None) => "INSERT INTO pending_objects (key, fenced) VALUES (?1, 1)",
                _ => return Ok(false),
            };
            tx.execute(fence, params![key]).map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn claim_job(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO job_claims (job, holder, expires_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (job) DO UPDATE SET holder = ?2, expires_ms = ?3 \
                     WHERE job_claims.holder = ?2 OR job_claims.expires_ms <= ?4",
                    params![job, holder, now_ms + ttl_ms, now_ms],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn allocate_producer_id(&self) -> Result<i64, MetaError> {
        self.with(|c| {
            let tx = c.transaction().map_err(backend)?;
            let next: i64 = tx
                .query_row(
                    "SELECT v FROM cluster WHERE k = 'next_producer_id'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(backend)?
                .map(|v| v.parse().map_err(backend))
                .transpose()?
                .unwrap_or(1000);
            tx.execute(
                "INSERT OR REPLACE INTO cluster (k, v) VALUES ('next_producer_id', ?1)",
                params![(next + 1).to_string()],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(next)
        })
        .await
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, MetaError> {
        self.with(move |c| producers::aborted(c, topic_id, partition, from, to))
            .await
    }

    async fn producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<ProducerState>, MetaError> {
        self.with(move |c| producers::producers(c, topic_id, partition))
            .await
    }

    async fn expire_producers(&self, before_ms: i64) -> Result<u64, MetaError> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM producers WHERE last_ts < ?1 AND txn_first IS NULL",
                params![before_ms],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn transaction(&self, transactional_id: &str) -> Result<Option<Transaction>, MetaError> {
        let id = transactional_id.to_string();
        self.with(move |c| producers::load_transaction(c, &id))
            .await
    }

    async fn transactions(&self) -> Result<Vec<Transaction>, MetaError> {
        self.with(|c| {
            let ids = producers::transaction_ids(c)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(producers::load_transaction(c, &id)?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_transaction(&self, txn: &Transaction, _fence: &Fence) -> Result<u64, MetaError> {
        let txn = txn.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let v = producers::save_transaction(&tx, &txn)?;
            tx.commit().map_err(backend)?;
            Ok(v)
        })
        .await
    }

    async fn save_transaction_unfenced(&self, txn: &Transaction) -> Result<u64, MetaError> {
        self.save_transaction(txn, &Fence::sole("")).await
    }

    async fn delete_transaction(&self, txn: &Transaction, _fence: &Fence) -> Result<(), MetaError> {
        let (id, version) = (txn.transactional_id.clone(), txn.version);
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            producers::delete_transaction(&tx, &id, version)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        offsets: &[GroupOffset],
        _fence: &Fence,
    ) -> Result<(), MetaError> {
        let (id, group, offsets) = (
            transactional_id.to_string(),
            group.to_string(),
            offsets.to_vec(),
        );
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            producers::stage_offsets(&tx, &id, &group, &offsets)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn complete_transaction(
        &self,
        txn: &Transaction,
        commit: bool,
        _fence: &Fence,
    ) -> Result<u64, MetaError> {
        let txn = txn.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let v = producers::save_transaction(&tx, &txn)?;
            producers::settle_offsets(&tx, &txn.transactional_id, commit)?;
            tx.commit().map_err(backend)?;
            Ok(v)
        })
        .await
    }

    async fn pending_txn_offsets(&self, group: &str) -> Result<Vec<(String, i32)>, MetaError> {
        let group = group.to_string();
        self.with(move |c| producers::pending_offsets(c, &group))
            .await
    }

    async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        _fence: &Fence,
    ) -> Result<(), MetaError> {
        let (group, offsets) = (group.to_string(), offsets.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO group_offsets \
                         (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ts) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(backend)?;
                for o in &offsets {
                    stmt.execute(params![
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
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, MetaError> {
        let group = group.to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_ts \
                     FROM group_offsets WHERE group_id = ?1 ORDER BY topic, partition",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![group], |r| {
                    Ok(GroupOffset {
                        topic: r.get(0)?,
                        partition: r.get(1)?,
                        offset: r.get(2)?,
                        leader_epoch: r.get(3)?,
                        metadata: r.get(4)?,
                        commit_timestamp: r.get(5)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn delete_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        _fence: &Fence,
    ) -> Result<(), MetaError> {
        let (group, topic, partitions) =
            (group.to_string(), topic.to_string(), partitions.to_vec());
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for p in &partitions {
                tx.execute(
                    "DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3",
                    params![group, topic, p],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete_group(&self, group: &str, _fence: &Fence) -> Result<bool, MetaError> {
        let group = group.to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM group_offsets WHERE group_id = ?1",
                    params![group],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn group_configs(&self, group: &str) -> Result<BTreeMap<String, String>, MetaError> {
        let group = group.to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT k, v FROM group_configs WHERE group_id = ?1")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![group], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn alter_group_configs(
        &self,
        group: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), MetaError> {
        let group = group.to_string();
        let changes = changes.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (k, v) in &changes {
                match v {
                    Some(v) => tx.execute(
                        "INSERT INTO group_configs (group_id, k, v) VALUES (?1, ?2, ?3)
                         ON CONFLICT (group_id, k) DO UPDATE SET v = excluded.v",
                        params![group, k, v],
                    ),
                    None => tx.execute(
                        "DELETE FROM group_configs WHERE group_id = ?1 AND k = ?2",
                        params![group, k],
                    ),
                }
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn client_quotas(&self) -> Result<Vec<ClientQuota>, MetaError> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT entity, k, v FROM client_quotas ORDER BY entity, k")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })
                .map_err(backend)?;
            let mut out: BTreeMap<QuotaEntity, BTreeMap<String, f64>> = BTreeMap::new();
            for row in rows {
                let (entity, k, v) = row.map_err(backend)?;
                let entity = QuotaEntity::decode(&entity)
                    .ok_or_else(|| backend(format!("corrupt quota entity '{entity}'")))?;
                out.entry(entity).or_default().insert(k, v);
            }
            Ok(out
                .into_iter()
                .map(|(entity, values)| ClientQuota { entity, values })
                .collect())
        })
        .await
    }

    async fn alter_client_quota(
        &self,
        entity: &QuotaEntity,
        changes: &[(String, Option<f64>)],
    ) -> Result<(), MetaError> {
        let entity = entity.encode();
        let changes = changes.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (k, v) in &changes {
                match v {
                    Some(v) => tx.execute(
                        "INSERT INTO client_quotas (entity, k, v) VALUES (?1, ?2, ?3)
                         ON CONFLICT (entity, k) DO UPDATE SET v = excluded.v",
                        params![entity, k, v],
                    ),
                    None => tx.execute(
                        "DELETE FROM client_quotas WHERE entity = ?1 AND k = ?2",
                        params![entity, k],
                    ),
                }
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn scram_credentials(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<ScramCredential>, MetaError> {
        let user = user.map(str::to_string);
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT user, mechanism, salt, stored_key, server_key, iterations
                     FROM scram_credentials WHERE ?1 IS NULL OR user = ?1
                     ORDER BY user, mechanism",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![user], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (user, mechanism, salt, stored_key, server_key, iterations) =
                    row.map_err(backend)?;
                let mechanism = ScramMechanism::from_name(&mechanism)
                    .ok_or_else(|| backend(format!("corrupt SCRAM mechanism '{mechanism}'")))?;
                out.push(ScramCredential {
                    user,
                    mechanism,
                    salt,
                    stored_key,
                    server_key,
                    iterations,
                });
            }
            // The mechanism's name sorts as the enum does (256 before 512).
            Ok(out)
        })
        .await
    }

    async fn alter_scram_credentials(
        &self,
        upserts: &[ScramCredential],
        deletions: &[(String, ScramMechanism)],
    ) -> Result<(), MetaError> {
        check_scram_alteration(upserts, deletions)?;
        let upserts = upserts.to_vec();
        let deletions = deletions.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (user, mechanism) in &deletions {
                tx.execute(
                    "DELETE FROM scram_credentials WHERE user = ?1 AND mechanism = ?2",
                    params![user, mechanism.name()],
                )
                .map_err(backend)?;
            }
            for cred in &upserts {
                tx.execute(
                    "INSERT INTO scram_credentials
                         (user, mechanism, salt, stored_key, server_key, iterations)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (user, mechanism) DO UPDATE SET salt = excluded.salt,
                         stored_key = excluded.stored_key, server_key = excluded.server_key,
                         iterations = excluded.iterations",
                    params![
                        cred.user,
                        cred.mechanism.name(),
                        cred.salt,
                        cred.stored_key,
                        cred.server_key,
                        cred.iterations
                    ],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn acls(&self) -> Result<Vec<AclBinding>, MetaError> {
        self.with(|c| read_acls(c)).await
    }

    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), MetaError> {
        let bindings = bindings.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for b in &bindings {
                tx.execute(
                    "INSERT OR IGNORE INTO acls (resource_type, resource_name, pattern_type,
                     principal, host, operation, permission) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        b.resource_type.code(),
                        b.resource_name,
                        b.pattern_type.code(),
                        b.principal,
                        b.host,
                        b.operation.code(),
                        b.permission.code()
                    ],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, MetaError> {
        let filters = filters.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let all = read_acls(&tx)?;
            let matched: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            for b in matched.iter().flatten() {
                tx.execute(
                    "DELETE FROM acls WHERE resource_type = ?1 AND resource_name = ?2
                     AND pattern_type = ?3 AND principal = ?4 AND host = ?5 AND operation = ?6
                     AND permission = ?7",
                    params![
                        b.resource_type.code(),
                        b.resource_name,
                        b.pattern_type.code(),
                        b.principal,
                        b.host,
                        b.operation.code(),
                        b.permission.code()
                    ],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(matched)
        })
        .await
    }

    async fn offset_groups(&self) -> Result<Vec<String>, MetaError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }
}

/// Every stored ACL binding, ordered by the table's key.
fn read_acls(c: &Connection) -> Result<Vec<AclBinding>, MetaError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT resource_type, resource_name, pattern_type, principal, host, operation,
             permission FROM acls ORDER BY resource_type, resource_name, pattern_type,
             principal, host, operation, permission",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i8>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i8>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i8>(5)?,
                r.get::<_, i8>(6)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (rt, resource_name, pt, principal, host, op, perm) = row.map_err(backend)?;
        let corrupt = || backend(format!("corrupt ACL row for '{resource_name}'"));
        out.push(AclBinding {
            resource_type: AclResourceType::from_code(rt).ok_or_else(corrupt)?,
            pattern_type: AclPatternType::from_code(pt).ok_or_else(corrupt)?,
            operation: AclOperation::from_code(op).ok_or_else(corrupt)?,
            permission: AclPermission::from_code(perm).ok_or_else(corrupt)?,
            resource_name,
            principal,
            host,
        });
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 16]).len(), 22);
    }

    #[tokio::test]
    async fn conformance_in_memory() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        crate::conformance::run_all(store).await;
    }

    /// Two agents on one database file (two connections) write at the same time:
    /// every write must wait its turn, none may fail with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_write_concurrently_without_busy_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let stores = [
            Arc::new(SqliteStore::open(&path).unwrap()),
            Arc::new(SqliteStore::open(&path).unwrap()),
        ];
        let topic = stores[0]
            .create_topic(TopicSpec {
                name: "shared".into(),
                partitions: 1,
                configs: BTreeMap::new(),
            })
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (n, store) in stores.iter().enumerate() {
            for i in 0..20 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .create_topic(TopicSpec {
                            name: format!("t-{n}-{i}"),
                            partitions: 1,
                            configs: BTreeMap::new(),
                        })
                        .await?;
                    crate::conformance::flush(
                        &*store,
                        &ObjectRef {
                            key: format!("o-{n}-{i}"),
                            size: 10,
                        },
                        &[crate::conformance::segment(topic.id, 0, 0, 10, 3)],
                    )
                    .await
                }));
            }
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let offsets = stores[1].partition_offsets(topic.id, 0).await.unwrap();
        assert_eq!(offsets.high_watermark, 40 * 3);
        assert_eq!(stores[1].list_topics().await.unwrap().len(), 41);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let (id, cluster) = {
            let s = SqliteStore::open(&path).unwrap();
            let t = s
                .create_topic(TopicSpec {
                    name: "t".into(),
                    partitions: 2,
                    configs: [("retention.ms".to_string(), "5".to_string())].into(),
                })
                .await
                .unwrap();
            crate::conformance::flush(
                &s,
                &ObjectRef {
                    key: "o1".into(),
                    size: 10,
                },
                &[crate::conformance::segment(t.id, 1, 0, 10, 4)],
            )
            .await
            .unwrap();
            (t.id, s.cluster_id().await.unwrap())
        };
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.cluster_id().await.unwrap(), cluster);
        let topics = s.list_topics().await.unwrap();
        assert_eq!(topics[0].id, id);
        assert_eq!(topics[0].configs["retention.ms"], "5");
        assert_eq!(s.partition_offsets(id, 1).await.unwrap().high_watermark, 4);
    }
}
