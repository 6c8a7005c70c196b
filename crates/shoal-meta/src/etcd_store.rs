//! [`MetaStore`] on etcd: topics, the flush commit, the index, objects and jobs. The
//! producer and transaction records and group offsets are in `etcd_txn.rs`. Key layout
//! and the optimistic-write pattern are described in `etcd.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use shoal_etcd::{Compare, CompareOp, Txn, TxnOp};
use uuid::Uuid;

use crate::etcd::*;
use crate::producer_rules::{apply, decide, needs_txn_check, txn_state_for, Decision, ProducerRow};
use crate::*;

/// How long a flush commit of unknown outcome keeps trying to read itself back (and
/// fence itself) before it reports [`MetaError::Ambiguous`]: longer than a paused or
/// briefly cut-off etcd usually stays away, short of a client's request timeout.
const READ_BACK_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);
/// The pause between read-back attempts.
const READ_BACK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// What one chunk of a flush commit changes, computed from what it read.
struct Plan {
    compares: Vec<Compare>,
    puts: Vec<TxnOp>,
}

impl EtcdStore {
    async fn topic(
        &self,
        name: &str,
    ) -> Result<Option<(TopicRec, shoal_etcd::KeyValue)>, MetaError> {
        self.get_json(&self.key(&format!("topics/{name}"))).await
    }

    /// Read-modify-write of a topic record, retried while other writers interfere.
    async fn update_topic(
        &self,
        name: &str,
        change: impl Fn(&mut TopicRec) -> Result<(), MetaError> + Send,
    ) -> Result<TopicInfo, MetaError> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut rec, kv) = self
                .topic(name)
                .await?
                .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
            change(&mut rec)?;
            let key = key_str(&kv);
            if self
                .txn(
                    Txn::new()
                        .when([unchanged(&key, Some(&kv))])
                        .and_then([TxnOp::put(key.as_str(), to_json(&rec), None)]),
                )
                .await?
            {
                return Ok(Self::topic_info(name, rec));
            }
        }
        Err(MetaError::Conflict(format!("topic '{name}'")))
    }

    fn topic_info(name: &str, rec: TopicRec) -> TopicInfo {
        TopicInfo {
            name: name.to_string(),
            id: rec.id,
            partitions: rec.partitions,
            configs: rec.configs,
        }
    }

    /// Writes empty partition records `from..to` of topic `id`, in chunks.
    async fn add_partitions(&self, id: Uuid, from: i32, to: i32) -> Result<(), MetaError> {
        let ops = (from..to)
            .map(|p| TxnOp::put(self.part_key(id, p), to_json(&PartRec::default()), None))
            .collect();
        self.apply_chunked(ops).await
    }

    /// Commits the segments `idx` (all segments of their partitions) of one flush.
    async fn commit_chunk(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
        idx: &[usize],
        chunk_no: u32,
        outcomes: &mut [Option<SegmentOutcome>],
    ) -> Result<(), MetaError> {
        let obj_key = self.obj_key(&object.key);
        let pending_key = self.pending_key(&object.key);
        for attempt in 0..MAX_ATTEMPTS {
            // Read everything the chunk depends on.
            let mut parts: Vec<(Uuid, i32)> = Vec::new();
            let mut prods: Vec<ProdKey> = Vec::new();
            let mut txn_pids: Vec<i64> = Vec::new();
            for &i in idx {
                let s = &segments[i];
                if !parts.contains(&(s.topic_id, s.partition)) {
                    parts.push((s.topic_id, s.partition));
                }
                if let Some(b) = &s.producer {
                    let k = (s.topic_id, s.partition, b.producer_id);
                    if !prods.contains(&k) {
                        prods.push(k);
                    }
                    if needs_txn_check(b) && !txn_pids.contains(&b.producer_id) {
                        txn_pids.push(b.producer_id);
                    }
                }
            }
            let mut keys: Vec<String> = vec![obj_key.clone()];
            keys.extend(parts.iter().map(|&(t, p)| self.part_key(t, p)));
            keys.extend(prods.iter().map(|&(t, p, pid)| self.prod_key(t, p, pid)));
            keys.extend(txn_pids.iter().map(|&pid| self.txnpid_key(pid)));
            keys.push(pending_key.clone());
            let mut read = self.get_many(&keys).await?;
            let pending_kv = read.pop().flatten();
            let obj_kv = read[0].clone();
            // The first chunk consumes the object's pending record (GC's fence makes it a
            // tombstone); later ones need the record the earlier ones left, unmarked.
            let prior = obj_kv.as_ref().map(from_json::<ObjRec>).transpose()?;
            if chunk_no == 0 {
                let live = match &pending_kv {
                    Some(kv) => !from_json::<PendingRec>(kv)?.fenced,
                    None => false,
                };
                if !live || prior.is_some() {
                    return Err(no_pending(&object.key));
                }
            } else if prior
                .as_ref()
                .is_none_or(|r| r.chunks != chunk_no || r.unref_ms.is_some())
            {
                return Err(MetaError::Conflict(format!(
                    "object {} changed between the transactions of its flush commit",
                    object.key
                )));
            }
            let _ = attempt;
            let mut part_state: HashMap<
                (Uuid, i32),
                (Option<PartRec>, Option<shoal_etcd::KeyValue>),
            > = HashMap::new();
            for (n, &(t, p)) in parts.iter().enumerate() {
                let kv = read[1 + n].clone();
                let rec = kv.as_ref().map(from_json::<PartRec>).transpose()?;
                part_state.insert((t, p), (rec, kv));
            }
            let base = 1 + parts.len();
            let mut prod_state: HashMap<
                ProdKey,
                (Option<ProdRec>, Option<shoal_etcd::KeyValue>, bool),
            > = HashMap::new();
            for (n, k) in prods.iter().enumerate() {
                let kv = read[base + n].clone();
                let rec = kv.as_ref().map(from_json::<ProdRec>).transpose()?;
                prod_state.insert(*k, (rec, kv, false));
            }
            // Transactions of transactional producers, for the membership check.
            let base = base + prods.len();
            let mut txn_ids: Vec<(i64, String)> = Vec::new();
            for (n, &pid) in txn_pids.iter().enumerate() {
                if let Some(kv) = &read[base + n] {
                    txn_ids.push((pid, String::from_utf8_lossy(kv.value()).into_owned()));
                }
            }
            let txn_keys: Vec<String> = txn_ids.iter().map(|(_, id)| self.txn_key(id)).collect();
            let txn_read = self.get_many(&txn_keys).await?;
            let mut txns: HashMap<i64, (TxnRec, shoal_etcd::KeyValue)> = HashMap::new();
            for ((pid, _), kv) in txn_ids.iter().zip(txn_read) {
                if let Some(kv) = kv {
                    txns.insert(*pid, (from_json::<TxnRec>(&kv)?, kv));
                }
            }

            // Decide, as the SQLite backend does, on the in-memory copies.
            let now = now_ms();
            let mut chunk_outcomes: Vec<(usize, SegmentOutcome)> = Vec::new();
            // (topic, partition, entry, where its data ends in the object)
            let mut entries: Vec<(Uuid, i32, IndexEntry, u64)> = Vec::new();
            let mut last_entry: HashMap<(Uuid, i32), usize> = HashMap::new();
            let mut aborts: Vec<(Uuid, i32, AbortedTxn)> = Vec::new();
            let mut dirty_parts: HashSet<(Uuid, i32)> = HashSet::new();
            let mut used_txns: HashSet<i64> = HashSet::new();
            for &i in idx {
                let s = &segments[i];
                let key = (s.topic_id, s.partition);
                let Some((Some(part), _)) = part_state.get_mut(&key) else {
                    chunk_outcomes.push((i, SegmentOutcome::UnknownPartition));
                    continue;
                };
                let (log_start, hwm) = (part.log_start, part.hwm);
                if let Some(b) = &s.producer {
                    let pk = (s.topic_id, s.partition, b.producer_id);
                    let (rec, _, dirty) = prod_state.get_mut(&pk).expect("read above");
                    let row = rec.as_ref().map(|r| &r.row);
                    let in_txn = needs_txn_check(b) && {
                        used_txns.insert(b.producer_id);
                        txns.get(&b.producer_id).is_some_and(|(t, _)| {
                            t.pid == b.producer_id
                                && t.epoch == b.epoch
                                && txn_state_for(b).is_some_and(|st| t.state == st.as_str())
                                && t.partitions
                                    .iter()
                                    .any(|(_, id, p)| *id == s.topic_id && *p == s.partition)
                        })
                    };
                    match decide(row, b, in_txn) {
                        Decision::Append => {
                            let (row, aborted): (ProducerRow, _) = apply(row, b, hwm);
                            match row.txn_first {
                                Some(first) => {
                                    part.open.insert(b.producer_id, first);
                                }
                                None => {
                                    part.open.remove(&b.producer_id);
                                }
                            }
                            if let Some(a) = aborted {
                                aborts.push((s.topic_id, s.partition, a));
                            }
                            *rec = Some(ProdRec { row, last_ts: now });
                            *dirty = true;
                        }
                        Decision::Duplicate(base_offset) => {
                            chunk_outcomes.push((
                                i,
                                SegmentOutcome::Duplicate {
                                    base_offset,
                                    log_start_offset: log_start,
                                },
                            ));
                            continue;
                        }
                        Decision::Refuse(why) => {
                            chunk_outcomes.push((i, SegmentOutcome::Refused(why)));
                            continue;
                        }
                    }
                }
                let end = hwm + s.offset_span as i64;
                part.hwm = end;
                dirty_parts.insert(key);
                match last_entry.get(&key).map(|&n| &mut entries[n]) {
                    Some((_, _, e, data_end))
                        if e.end_offset == hwm && *data_end == s.data_offset =>
                    {
                        e.end_offset = end;
                        e.data_len += s.data_len;
                        e.min_timestamp = e.min_timestamp.min(s.min_timestamp);
                        e.max_timestamp = e.max_timestamp.max(s.max_timestamp);
                        *data_end = s.data_offset + s.data_len;
                    }
                    _ => {
                        let entry = IndexEntry {
                            base_offset: hwm,
                            end_offset: end,
                            object_key: object.key.clone(),
                            object_size: object.size,
                            data_offset: s.data_offset,
                            data_len: s.data_len,
                            min_timestamp: s.min_timestamp,
                            max_timestamp: s.max_timestamp,
                        };
                        last_entry.insert(key, entries.len());
                        entries.push((s.topic_id, s.partition, entry, s.data_offset + s.data_len));
                    }
                }
                chunk_outcomes.push((
                    i,
                    SegmentOutcome::Committed {
                        base_offset: hwm,
                        log_start_offset: log_start,
                    },
                ));
            }

            // One etcd transaction: everything read is unchanged, then every write.
            let mut plan = Plan {
                compares: vec![unchanged(&obj_key, obj_kv.as_ref())],
                puts: Vec::new(),
            };
            for (key, (rec, kv)) in &part_state {
                let k = self.part_key(key.0, key.1);
                plan.compares.push(unchanged(&k, kv.as_ref()));
                if dirty_parts.contains(key) {
                    if let Some(rec) = rec {
                        plan.puts.push(TxnOp::put(k, to_json(rec), None));
                    }
                }
            }
            for (&(t, p, pid), (rec, kv, dirty)) in &prod_state {
                let k = self.prod_key(t, p, pid);
                plan.compares.push(unchanged(&k, kv.as_ref()));
                if *dirty {
                    if let Some(rec) = rec {
                        plan.puts.push(TxnOp::put(k, to_json(rec), None));
                    }
                }
            }
            for pid in &used_txns {
                if let Some((_, kv)) = txns.get(pid) {
                    let k = String::from_utf8_lossy(kv.key()).into_owned();
                    plan.compares.push(unchanged(&k, Some(kv)));
                }
            }
            if chunk_no == 0 {
                plan.compares
                    .push(unchanged(&pending_key, pending_kv.as_ref()));
                plan.puts.push(TxnOp::delete(pending_key.as_str(), None));
            }
            let mut obj = prior.clone().unwrap_or(ObjRec {
                size: object.size,
                refs: Vec::new(),
                unref_ms: None,
                chunks: 0,
            });
            obj.chunks = chunk_no + 1;
            for (t, p, e, _) in &entries {
                let r = EtcdStore::idx_ref(*t, *p, e.base_offset);
                plan.puts.push(TxnOp::put(
                    self.idx_key_of_ref(&r),
                    to_json(&EntryRec::from(e)),
                    None,
                ));
                obj.refs.push(r);
            }
            for (t, p, a) in &aborts {
                let k = format!(
                    "{}{:020}/{:020}",
                    self.abort_prefix(*t, *p),
                    a.last_offset,
                    a.producer_id
                );
                let rec = AbortRec {
                    pid: a.producer_id,
                    first: a.first_offset,
                    last: a.last_offset,
                };
                plan.puts.push(TxnOp::put(k, to_json(&rec), None));
            }
            if !obj.refs.is_empty() {
                obj.unref_ms = None;
            }
            plan.puts
                .push(TxnOp::put(obj_key.as_str(), to_json(&obj), None));
            let applied = match self
                .txn(Txn::new().when(plan.compares).and_then(plan.puts))
                .await
            {
                Ok(applied) => applied,
                // Sent, but no answer: it may have been applied. Read back.
                Err(e) => {
                    let fence = if chunk_no == 0 {
                        (pending_key.as_str(), pending_kv.as_ref())
                    } else {
                        (obj_key.as_str(), obj_kv.as_ref())
                    };
                    // Keep trying while etcd is out of reach (paused, cut off): the lost
                    // transaction may still be applied when it comes back, so answering
                    // now would leave a commit that lands after its producer was told
                    // it may have failed.
                    let until = tokio::time::Instant::now() + READ_BACK_WINDOW;
                    let resolved = loop {
                        match self.read_back(&obj_key, fence, chunk_no).await {
                            Ok(r) => break r,
                            Err(again) if tokio::time::Instant::now() >= until => {
                                return Err(MetaError::Ambiguous(format!(
                                    "flush commit of {} ({e}); reading it back failed for \
                                     {READ_BACK_WINDOW:?} too ({again})",
                                    object.key
                                )));
                            }
                            Err(_) => tokio::time::sleep(READ_BACK_RETRY).await,
                        }
                    };
                    match resolved {
                        Some(applied) => applied,
                        None => continue,
                    }
                }
            };
            if applied {
                for (i, o) in chunk_outcomes {
                    outcomes[i] = Some(o);
                }
                return Ok(());
            }
            if attempt > 4 {
                let pause = 1 + (now as u64 % 7) * (attempt as u64).min(10);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
        }
        Err(MetaError::Backend(format!(
            "flush commit of {} kept conflicting with other agents' commits; giving up after {MAX_ATTEMPTS} attempts",
            object.key
        )))
    }

    fn pending_key(&self, key: &str) -> String {
        self.key(&format!("pending/{key}"))
    }

    /// Resolves a flush-commit transaction of unknown outcome. `fence` is a key that
    /// transaction compared unchanged, as it was read: bumping it (a put of the same
    /// value, if it is still unchanged) makes sure the lost transaction can never apply
    /// later. `None`: it did not apply and now never will (the caller may retry). Else
    /// something else changed the key, and the object record says whether the lost
    /// transaction applied.
    async fn read_back(
        &self,
        obj_key: &str,
        fence: (&str, Option<&shoal_etcd::KeyValue>),
        chunk_no: u32,
    ) -> Result<Option<bool>, MetaError> {
        let (key, kv) = fence;
        let bump = match kv {
            Some(kv) => TxnOp::put(key, kv.value().to_vec(), None),
            // A key that did not exist: the fence is a put that the lost transaction's
            // `version == 0` compare then fails on, removed again at once below.
            None => TxnOp::put(key, b"{}".to_vec(), None),
        };
        let fenced = self
            .txn(Txn::new().when([unchanged(key, kv)]).and_then([bump]))
            .await?;
        if fenced && kv.is_none() {
            self.txn(Txn::new().and_then([TxnOp::delete(key, None)]))
                .await?;
        }
        if fenced {
            return Ok(None);
        }
        let done = self
            .get_json::<ObjRec>(obj_key)
            .await?
            .is_some_and(|(r, _)| r.chunks > chunk_no);
        Ok(Some(done))
    }

    /// Whether the index entry `r` (a ref of object `key`) still points into it.
    async fn live_refs(
        &self,
        key: &str,
        refs: &[String],
    ) -> Result<Vec<(String, IndexEntry)>, MetaError> {
        let keys: Vec<String> = refs.iter().map(|r| self.idx_key_of_ref(r)).collect();
        let mut out = Vec::new();
        for (r, kv) in refs.iter().zip(self.get_many(&keys).await?) {
            if let Some(kv) = kv {
                let e: IndexEntry = from_json::<EntryRec>(&kv)?.into();
                if e.object_key == key {
                    out.push((r.clone(), e));
                }
            }
        }
        Ok(out)
    }

    /// Which of `objects` (key, record) still have an index entry pointing into them:
    /// every ref of every object checked in one batched read (not one read per object).
    async fn referenced(&self, objects: &[(String, ObjRec)]) -> Result<Vec<bool>, MetaError> {
        let keys: Vec<String> = objects
            .iter()
            .flat_map(|(_, rec)| rec.refs.iter().map(|r| self.idx_key_of_ref(r)))
            .collect();
        let mut read = self.get_many(&keys).await?.into_iter();
        let mut out = Vec::with_capacity(objects.len());
        for (key, rec) in objects {
            let mut alive = false;
            for kv in read.by_ref().take(rec.refs.len()).flatten() {
                alive |= IndexEntry::from(from_json::<EntryRec>(&kv)?).object_key == *key;
            }
            out.push(alive);
        }
        Ok(out)
    }

    async fn entries_of_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<IndexEntry>, MetaError> {
        self.scan(&self.idx_prefix(topic_id, partition), None, 0)
            .await?
            .iter()
            .map(|kv| from_json::<EntryRec>(kv).map(IndexEntry::from))
            .collect()
    }
}

/// An object's pending record (`pending/{key}`): written before or while its PUT runs,
/// consumed by its commit, turned into a tombstone by GC's fence.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingRec {
    #[serde(default)]
    fenced: bool,
}

fn no_pending(key: &str) -> MetaError {
    MetaError::Conflict(format!(
        "pending record of object {key} (GC fenced the object, or it was committed already)"
    ))
}

fn tracing_warn(key: &str, chunk: usize, e: &MetaError) {
    tracing::warn!(object = key, chunk, error = %e,
        "a later transaction of a flush commit failed; its partitions are answered as not committed");
}

/// Splits a flush's segments into chunks that each fit one etcd transaction, keeping
/// all segments of a partition together, in first-appearance order.
fn plan_chunks(segments: &[SegmentAppend], max_ops: usize) -> Vec<Vec<usize>> {
    let mut by_part: Vec<((Uuid, i32), Vec<usize>)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let k = (s.topic_id, s.partition);
        match by_part.iter_mut().find(|(pk, _)| *pk == k) {
            Some((_, v)) => v.push(i),
            None => by_part.push((k, vec![i])),
        }
    }
    // Per partition: its state key, one entry per segment at most, and for producer
    // batches a state key, a transaction compare and an abort record.
    let cost = |v: &Vec<usize>| {
        2 + v.len()
            + 3 * v
                .iter()
                .filter(|&&i| segments[i].producer.is_some())
                .count()
    };
    // Plus the object record and, in the first chunk, its pending record.
    let budget = max_ops.saturating_sub(4).max(1);
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (_, v) in by_part {
        let c = cost(&v);
        if chunks.is_empty() || used + c > budget {
            chunks.push(Vec::new());
            used = 0;
        }
        used += c;
        chunks.last_mut().expect("pushed").extend(v);
    }
    chunks
}

impl EtcdStore {
    /// Applies `changes` to the JSON map under `key` in one compare-and-swap step
    /// (retried on a concurrent change): `Some` sets a key, `None` removes it, and a map
    /// left empty is deleted. False when every attempt met a concurrent change.
    async fn alter_map<V>(
        &self,
        key: &str,
        changes: &[(String, Option<V>)],
    ) -> Result<bool, MetaError>
    where
        V: Clone + serde::Serialize + serde::de::DeserializeOwned,
    {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get_json::<BTreeMap<String, V>>(key).await?;
            let mut values = current.as_ref().map(|(v, _)| v.clone()).unwrap_or_default();
            for (k, v) in changes {
                match v {
                    Some(v) => values.insert(k.clone(), v.clone()),
                    None => values.remove(k),
                };
            }
            let op = if values.is_empty() {
                TxnOp::delete(key, None)
            } else {
                TxnOp::put(key, to_json(&values), None)
            };
            let when = unchanged(key, current.as_ref().map(|(_, kv)| kv));
            if self.txn(Txn::new().when([when]).and_then([op])).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn cluster_id(&self) -> Result<String, MetaError> {
        let key = self.key("cluster_id");
        if let Some(kv) = self.get(&key).await? {
            return Ok(String::from_utf8_lossy(kv.value()).into_owned());
        }
        let id = crate::sqlite::base64url(Uuid::new_v4().as_bytes());
        self.txn(
            Txn::new()
                .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), id.as_str(), None)]),
        )
        .await?;
        let kv = self
            .get(&key)
            .await?
            .ok_or_else(|| MetaError::Backend("cluster id vanished".into()))?;
        Ok(String::from_utf8_lossy(kv.value()).into_owned())
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicInfo, MetaError> {
        if spec.partitions <= 0 {
            return Err(MetaError::Invalid(
                "partition count must be positive".into(),
            ));
        }
        if self.topic(&spec.name).await?.is_some() {
            return Err(MetaError::TopicExists(spec.name));
        }
        let rec = TopicRec {
            id: Uuid::new_v4(),
            partitions: spec.partitions,
            configs: spec.configs.clone(),
        };
        // Partition records first (under the new id nobody knows yet), then the name.
        self.add_partitions(rec.id, 0, spec.partitions).await?;
        let key = self.key(&format!("topics/{}", spec.name));
        let won = self
            .txn(
                Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.as_str(), to_json(&rec), None)]),
            )
            .await?;
        if !won {
            self.txn(
                Txn::new().and_then([delete_prefix(&format!("{}parts/{}/", self.prefix, rec.id))]),
            )
            .await?;
            return Err(MetaError::TopicExists(spec.name));
        }
        Ok(Self::topic_info(&spec.name, rec))
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicInfo, MetaError> {
        let (rec, kv) = self
            .topic(name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        let key = key_str(&kv);
        let id = rec.id;
        let p = &self.prefix;
        let done = self
            .txn(Txn::new().when([unchanged(&key, Some(&kv))]).and_then([
                TxnOp::delete(key.as_str(), None),
                delete_prefix(&format!("{p}parts/{id}/")),
                delete_prefix(&format!("{p}idx/{id}/")),
                delete_prefix(&format!("{p}prod/{id}/")),
                delete_prefix(&format!("{p}abort/{id}/")),
            ]))
            .await?;
        if !done {
            return Err(MetaError::Conflict(format!("topic '{name}'")));
        }
        Ok(Self::topic_info(name, rec))
    }

    async fn list_topics(&self) -> Result<Vec<TopicInfo>, MetaError> {
        let prefix = self.key("topics/");
        self.scan(&prefix, None, 0)
            .await?
            .iter()
            .map(|kv| {
                let name = key_str(kv)[prefix.len()..].to_string();
                Ok(Self::topic_info(&name, from_json(kv)?))
            })
            .collect()
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicInfo, MetaError> {
        let too_few = |rec: &TopicRec| {
            (total <= rec.partitions).then(|| {
                MetaError::Invalid(format!(
                    "topic '{name}' has {} partitions; the new count {total} must be larger",
                    rec.partitions
                ))
            })
        };
        let (rec, _) = self
            .topic(name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        if let Some(e) = too_few(&rec) {
            return Err(e);
        }
        // New partition records first (each only if absent); they are unused until the
        // count grows.
        let ops = (rec.partitions..total)
            .map(|p| {
                let k = self.part_key(rec.id, p);
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::version(k.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(k.as_str(), to_json(&PartRec::default()), None)]),
                )
            })
            .collect();
        self.apply_chunked_nested(ops, 1).await?;
        self.update_topic(name, |rec| match too_few(rec) {
            Some(e) => Err(e),
            None => {
                rec.partitions = total;
                Ok(())
            }
        })
        .await
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicInfo, MetaError> {
        self.update_topic(name, |rec| {
            rec.configs = configs.clone();
            Ok(())
        })
        .await
    }

    async fn commit_flush(
        &self,
        object: &ObjectRef,
        segments: &[SegmentAppend],
    ) -> Result<Vec<SegmentOutcome>, MetaError> {
        let mut outcomes: Vec<Option<SegmentOutcome>> = vec![None; segments.len()];
        if segments.is_empty() {
            let key = self.obj_key(&object.key);
            let rec = ObjRec {
                size: object.size,
                refs: Vec::new(),
                unref_ms: None,
                chunks: 1,
            };
            let pending = self.pending_key(&object.key);
            let Some((p, kv)) = self.get_json::<PendingRec>(&pending).await? else {
                return Err(no_pending(&object.key));
            };
            if p.fenced
                || !self
                    .txn(Txn::new().when([unchanged(&pending, Some(&kv))]).and_then([
                        TxnOp::put(key, to_json(&rec), None),
                        TxnOp::delete(pending.as_str(), None),
                    ]))
                    .await?
            {
                return Err(no_pending(&object.key));
            }
            return Ok(Vec::new());
        }
        for (n, chunk) in plan_chunks(segments, self.max_ops).iter().enumerate() {
            if let Err(e) = self
                .commit_chunk(object, segments, chunk, n as u32, &mut outcomes)
                .await
            {
                // Nothing is committed when the first fails; the earlier chunks are when a
                // later one does, and their segments are answered as such.
                if n == 0 {
                    return Err(e);
                }
                tracing_warn(&object.key, n, &e);
                let unknown = matches!(e, MetaError::Ambiguous(_));
                return Ok(outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or(SegmentOutcome::NotCommitted { unknown }))
                    .collect());
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every segment is in one chunk"))
            .collect())
    }

    async fn partition_offsets(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<PartitionOffsets, MetaError> {
        let (rec, _) = self
            .get_json::<PartRec>(&self.part_key(topic_id, partition))
            .await?
            .ok_or(MetaError::UnknownPartition {
                topic_id,
                partition,
            })?;
        Ok(rec.offsets())
    }

    async fn partitions_offsets(
        &self,
        parts: &[(Uuid, i32)],
    ) -> Vec<Result<PartitionOffsets, MetaError>> {
        let keys: Vec<String> = parts.iter().map(|(t, p)| self.part_key(*t, *p)).collect();
        match self.get_many(&keys).await {
            Ok(kvs) => kvs
                .iter()
                .zip(parts)
                .map(|(kv, (topic_id, partition))| match kv {
                    Some(kv) => from_json::<PartRec>(kv).map(|r| r.offsets()),
                    None => Err(MetaError::UnknownPartition {
                        topic_id: *topic_id,
                        partition: *partition,
                    }),
                })
                .collect(),
            Err(e) => parts
                .iter()
                .map(|_| Err(MetaError::Backend(e.to_string())))
                .collect(),
        }
    }

    async fn index_from(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, MetaError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = self.idx_prefix(topic_id, partition);
        let at = format!("{prefix}{:020}", from.max(0));
        let mut after = at.clone().into_bytes();
        after.push(0);
        let resp = self
            .client
            .txn(Txn::new().and_then([
                last_before(&prefix, &String::from_utf8_lossy(&after)),
                range_from(after.clone(), prefix_end(&prefix), limit as i64),
            ]))
            .await
            .map_err(backend)?;
        let reads = gets(&resp);
        let mut out = Vec::new();
        if let Some(kv) = reads.first().and_then(|r| r.first()) {
            let e: IndexEntry = from_json::<EntryRec>(kv)?.into();
            if e.end_offset > from {
                out.push(e);
            }
        }
        for kv in reads.get(1).into_iter().flatten() {
            if out.len() >= limit {
                break;
            }
            out.push(from_json::<EntryRec>(kv)?.into());
        }
        Ok(out)
    }

    async fn index_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, MetaError> {
        Ok(self
            .entries_of_partition(topic_id, partition)
            .await?
            .into_iter()
            .find(|e| e.max_timestamp >= timestamp))
    }

    async fn index_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<IndexEntry>, MetaError> {
        let mut best: Option<IndexEntry> = None;
        for e in self.entries_of_partition(topic_id, partition).await? {
            if best
                .as_ref()
                .is_none_or(|b| e.max_timestamp > b.max_timestamp)
            {
                best = Some(e);
            }
        }
        Ok(best)
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, MetaError> {
        let key = self.part_key(topic_id, partition);
        for _ in 0..MAX_ATTEMPTS {
            let (mut rec, kv) =
                self.get_json::<PartRec>(&key)
                    .await?
                    .ok_or(MetaError::UnknownPartition {
                        topic_id,
                        partition,
                    })?;
            let start = offset.min(rec.hwm).max(rec.log_start);
            if start <= rec.log_start {
                return Ok(rec.log_start);
            }
            rec.log_start = start;
            // Entries are contiguous and ordered: everything before the entry holding
            // `start` (or the end, if none does) ends at or below it.
            let prefix = self.idx_prefix(topic_id, partition);
            let keep_from = self
                .index_from(topic_id, partition, start, 1)
                .await?
                .first()
                .map(|e| format!("{prefix}{:020}", e.base_offset))
                .map(String::into_bytes)
                .unwrap_or_else(|| prefix_end(&prefix));
            let aborts = self.abort_prefix(topic_id, partition);
            let done = self
                .txn(
                    Txn::new().when([unchanged(&key, Some(&kv))]).and_then([
                        TxnOp::put(key.as_str(), to_json(&rec), None),
                        TxnOp::delete(
                            prefix.as_str(),
                            Some(shoal_etcd::DeleteOptions::new().with_range(keep_from)),
                        ),
                        TxnOp::delete(
                            aborts.as_str(),
                            Some(
                                shoal_etcd::DeleteOptions::new()
                                    .with_range(format!("{aborts}{start:020}")),
                            ),
                        ),
                    ]),
                )
                .await?;
            if done {
                return Ok(start);
            }
        }
        Err(MetaError::Conflict(format!(
            "log start of partition {partition} of {topic_id}"
        )))
    }

    async fn unreferenced_objects(
        &self,
        now_ms: i64,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, MetaError> {
        let prefix = self.key("obj/");
        let mut due: Vec<(i64, String)> = Vec::new();
        let mut unmarked: Vec<(String, ObjRec)> = Vec::new();
        let mut kvs: Vec<shoal_etcd::KeyValue> = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let key = key_str(&kv)[prefix.len()..].to_string();
            let rec: ObjRec = from_json(&kv)?;
            match rec.unref_ms {
                Some(mark) if mark < before_ms => due.push((mark, key)),
                Some(_) => {}
                None => {
                    unmarked.push((key, rec));
                    kvs.push(kv);
                }
            }
        }
        let alive = self.referenced(&unmarked).await?;
        for (((key, mut rec), kv), alive) in unmarked.into_iter().zip(kvs).zip(alive) {
            if alive {
                continue;
            }
            rec.unref_ms = Some(now_ms);
            let k = key_str(&kv);
            // A commit or GC pass that changed the record meanwhile wins.
            let marked = self
                .txn(
                    Txn::new()
                        .when([unchanged(&k, Some(&kv))])
                        .and_then([TxnOp::put(k.as_str(), to_json(&rec), None)]),
                )
                .await?;
            if marked && now_ms < before_ms {
                due.push((now_ms, key));
            }
        }
        due.sort();
        Ok(due.into_iter().take(limit).map(|(_, k)| k).collect())
    }

    async fn referenced_objects(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRef>, MetaError> {
        let base = self.key("obj/");
        let mut candidates: Vec<(String, ObjRec)> = Vec::new();
        for kv in self.scan(&format!("{base}{prefix}"), None, 0).await? {
            let rec: ObjRec = from_json(&kv)?;
            if rec.unref_ms.is_none() {
                candidates.push((key_str(&kv)[base.len()..].to_string(), rec));
            }
        }
        let mut out = Vec::new();
        // Oldest first, a page at a time, until `limit` referenced objects are found.
        for page in candidates.chunks(64) {
            for ((key, rec), alive) in page.iter().zip(self.referenced(page).await?) {
                if alive && out.len() < limit {
                    out.push(ObjectRef {
                        key: key.clone(),
                        size: rec.size,
                    });
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn object_entries(&self, key: &str) -> Result<Vec<PartitionEntry>, MetaError> {
        let Some((rec, _)) = self.get_json::<ObjRec>(&self.obj_key(key)).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (r, entry) in self.live_refs(key, &rec.refs).await? {
            let mut parts = r.split('/');
            let (Some(id), Some(p)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.push(PartitionEntry {
                topic_id: Uuid::parse_str(id).map_err(backend)?,
                partition: p.parse().map_err(backend)?,
                entry,
            });
        }
        out.sort_by_key(|e| (e.topic_id, e.partition, e.entry.base_offset));
        Ok(out)
    }

    async fn replace_entries(
        &self,
        old: &[PartitionEntry],
        object: &ObjectRef,
        new: &[PartitionEntry],
    ) -> Result<(), MetaError> {
        if old.len() + new.len() + 2 > self.max_ops {
            return Err(MetaError::Invalid(format!(
                "a swap of {} entries does not fit one etcd transaction (max-txn-ops {})",
                old.len() + new.len(),
                self.max_ops
            )));
        }
        let obj_key = self.obj_key(&object.key);
        let old_refs: Vec<String> = old
            .iter()
            .map(|o| EtcdStore::idx_ref(o.topic_id, o.partition, o.entry.base_offset))
            .collect();
        let mut keys: Vec<String> = old_refs.iter().map(|r| self.idx_key_of_ref(r)).collect();
        keys.push(obj_key.clone());
        let pending_key = self.pending_key(&object.key);
        keys.push(pending_key.clone());
        let mut read = self.get_many(&keys).await?;
        let pending_kv = read.pop().flatten();
        let mut compares = vec![
            Compare::version(obj_key.as_str(), CompareOp::Equal, 0),
            unchanged(&pending_key, pending_kv.as_ref()),
        ];
        if read[old.len()].is_some() {
            return Err(MetaError::Conflict(format!("object {}", object.key)));
        }
        if let Some(kv) = &pending_kv {
            if from_json::<PendingRec>(kv)?.fenced {
                return Err(no_pending(&object.key));
            }
        }
        for (o, kv) in old.iter().zip(&read) {
            let same = match kv {
                Some(kv) => {
                    let e: IndexEntry = from_json::<EntryRec>(kv)?.into();
                    e.end_offset == o.entry.end_offset
                        && e.object_key == o.entry.object_key
                        && e.data_offset == o.entry.data_offset
                        && e.data_len == o.entry.data_len
                }
                None => false,
            };
            if !same {
                return Err(MetaError::Conflict(format!(
                    "index entry at offset {} of partition {} (object {})",
                    o.entry.base_offset, o.partition, o.entry.object_key
                )));
            }
            compares.push(unchanged(
                &key_str(kv.as_ref().expect("checked")),
                kv.as_ref(),
            ));
        }
        let new_refs: Vec<String> = new
            .iter()
            .map(|n| EtcdStore::idx_ref(n.topic_id, n.partition, n.entry.base_offset))
            .collect();
        let mut ops: Vec<TxnOp> = old_refs
            .iter()
            .filter(|r| !new_refs.contains(r))
            .map(|r| TxnOp::delete(self.idx_key_of_ref(r), None))
            .collect();
        for (n, r) in new.iter().zip(&new_refs) {
            let mut e = n.entry.clone();
            e.object_key = object.key.clone();
            e.object_size = object.size;
            ops.push(TxnOp::put(
                self.idx_key_of_ref(r),
                to_json(&EntryRec::from(&e)),
                None,
            ));
        }
        let rec = ObjRec {
            size: object.size,
            refs: new_refs,
            unref_ms: None,
            chunks: 1,
        };
        ops.push(TxnOp::put(obj_key.as_str(), to_json(&rec), None));
        if pending_kv.is_some() {
            ops.push(TxnOp::delete(pending_key.as_str(), None));
        }
        if self.txn(Txn::new().when(compares).and_then(ops)).await? {
            Ok(())
        } else {
            Err(MetaError::Conflict("index entries being compacted".into()))
        }
    }

    async fn object_known(&self, key: &str) -> Result<bool, MetaError> {
        Ok(self.get(&self.obj_key(key)).await?.is_some())
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>, MetaError> {
        Ok(self
            .get_json::<ObjRec>(&self.obj_key(key))
            .await?
            .map(|(rec, _)| rec.size))
    }

    async fn forget_object(&self, key: &str) -> Result<(), MetaError> {
        self.txn(Txn::new().and_then([
            TxnOp::delete(self.obj_key(key), None),
            TxnOp::delete(self.pending_key(key), None),
        ]))
        .await
        .map(|_| ())
    }

    async fn add_pending_object(&self, key: &str) -> Result<(), MetaError> {
        let k = self.pending_key(key);
        let rec = PendingRec { fenced: false };
        if self
            .txn(Txn::new().when([unchanged(&k, None)]).and_then([TxnOp::put(
                k.as_str(),
                to_json(&rec),
                None,
            )]))
            .await?
        {
            Ok(())
        } else {
            Err(MetaError::Conflict(format!(
                "pending record of object {key} (it has one already, or GC fenced it)"
            )))
        }
    }

    async fn pending_objects(&self, limit: usize) -> Result<Vec<PendingObject>, MetaError> {
        let prefix = self.key("pending/");
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let rec: PendingRec = from_json(&kv)?;
            out.push(PendingObject {
                key: key_str(&kv)[prefix.len()..].to_string(),
                instance: kv.create_revision() as u64,
                fenced: rec.fenced,
            });
        }
        out.sort_by_key(|p| p.instance);
        out.truncate(limit);
        Ok(out)
    }

    async fn fence_object(&self, key: &str, instance: Option<u64>) -> Result<bool, MetaError> {
        let (obj_key, k) = (self.obj_key(key), self.pending_key(key));
        for _ in 0..MAX_ATTEMPTS {
            let read = self.get_many(&[obj_key.clone(), k.clone()]).await?;
            if read[0].is_some() {
                return Ok(false);
            }
            let current = read[1].as_ref();
            match (current, instance) {
                (Some(kv), _) if from_json::<PendingRec>(kv)?.fenced => return Ok(true),
                (Some(kv), Some(want)) if kv.create_revision() as u64 == want => {}
                (None, None) => {}
                _ => return Ok(false),
            }
            let rec = PendingRec { fenced: true };
            if self
                .txn(
                    Txn::new()
                        .when([unchanged(&obj_key, None), unchanged(&k, current)])
                        .and_then([TxnOp::put(k.as_str(), to_json(&rec), None)]),
                )
                .await?
            {
                return Ok(true);
            }
        }
        Err(MetaError::Conflict(format!(
            "pending record of object {key}"
        )))
    }

    async fn claim_job(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        self.claim_job_under_lease(job, holder, now_ms, ttl_ms)
            .await
    }

    async fn allocate_producer_id(&self) -> Result<i64, MetaError> {
        self.next_producer_id().await
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, MetaError> {
        self.aborted(topic_id, partition, from, to).await
    }

    async fn producers(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<ProducerState>, MetaError> {
        self.producer_states(topic_id, partition).await
    }

    async fn expire_producers(&self, before_ms: i64) -> Result<u64, MetaError> {
        self.expire(before_ms).await
    }

    async fn transaction(&self, transactional_id: &str) -> Result<Option<Transaction>, MetaError> {
        self.load_transaction(transactional_id).await
    }

    async fn transactions(&self) -> Result<Vec<Transaction>, MetaError> {
        self.all_transactions().await
    }

    async fn save_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<u64, MetaError> {
        self.store_transaction(txn, None, Some(fence)).await
    }

    async fn save_transaction_unfenced(&self, txn: &Transaction) -> Result<u64, MetaError> {
        self.store_transaction(txn, None, None).await
    }

    async fn delete_transaction(&self, txn: &Transaction, fence: &Fence) -> Result<(), MetaError> {
        self.forget_transaction(txn, fence).await
    }

    async fn stage_txn_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        self.stage_offsets(transactional_id, group, offsets, fence)
            .await
    }

    async fn complete_transaction(
        &self,
        txn: &Transaction,
        commit: bool,
        fence: &Fence,
    ) -> Result<u64, MetaError> {
        self.store_transaction(txn, Some(commit), Some(fence)).await
    }

    async fn pending_txn_offsets(&self, group: &str) -> Result<Vec<(String, i32)>, MetaError> {
        self.pending_offsets(group).await
    }

    async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        let ops = offsets
            .iter()
            .map(|o| {
                TxnOp::put(
                    self.goff_key(group, &o.topic, o.partition),
                    to_json(&OffsetRec::of(o)),
                    None,
                )
            })
            .collect();
        self.apply_fenced(ops, fence).await
    }

    async fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>, MetaError> {
        let prefix = self.goff_prefix(group);
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let rest = key_str(&kv)[prefix.len()..].to_string();
            let Some((topic, p)) = rest.rsplit_once('/') else {
                continue;
            };
            let rec: OffsetRec = from_json(&kv)?;
            out.push(rec.into_offset(topic.to_string(), p.parse().map_err(backend)?));
        }
        Ok(out)
    }

    async fn delete_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        let ops = partitions
            .iter()
            .map(|p| TxnOp::delete(self.goff_key(group, topic, *p), None))
            .collect();
        self.apply_fenced(ops, fence).await
    }

    async fn delete_group(&self, group: &str, fence: &Fence) -> Result<bool, MetaError> {
        let had = !self
            .scan(&self.goff_prefix(group), None, 1)
            .await?
            .is_empty();
        self.apply_fenced(vec![delete_prefix(&self.goff_prefix(group))], fence)
            .await?;
        Ok(had)
    }

    async fn group_configs(&self, group: &str) -> Result<BTreeMap<String, String>, MetaError> {
        let key = self.key(&format!("gconf/{}", esc(group)));
        Ok(self
            .get_json::<BTreeMap<String, String>>(&key)
            .await?
            .map(|(v, _)| v)
            .unwrap_or_default())
    }

    async fn alter_group_configs(
        &self,
        group: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), MetaError> {
        let key = self.key(&format!("gconf/{}", esc(group)));
        if self.alter_map(&key, changes).await? {
            return Ok(());
        }
        Err(MetaError::Conflict(format!("configs of group {group}")))
    }

    async fn client_quotas(&self) -> Result<Vec<ClientQuota>, MetaError> {
        let prefix = self.key("quotas/");
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let key = key_str(&kv);
            let entity = QuotaEntity::decode(&key[prefix.len()..])
                .ok_or_else(|| backend(format!("corrupt quota key '{key}'")))?;
            out.push(ClientQuota {
                entity,
                values: from_json(&kv)?,
            });
        }
        out.sort_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    async fn alter_client_quota(
        &self,
        entity: &QuotaEntity,
        changes: &[(String, Option<f64>)],
    ) -> Result<(), MetaError> {
        let key = self.key(&format!("quotas/{}", entity.encode()));
        if self.alter_map(&key, changes).await? {
            return Ok(());
        }
        Err(MetaError::Conflict(format!(
            "client quota {}",
            entity.encode()
        )))
    }

    async fn scram_credentials(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<ScramCredential>, MetaError> {
        let all = self.key("scram/");
        let prefix = match user {
            Some(u) => format!("{all}{}/", esc(u)),
            None => all.clone(),
        };
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let key = key_str(&kv);
            let corrupt = || backend(format!("corrupt SCRAM credential key '{key}'"));
            let (user, mechanism) = key[all.len()..].split_once('/').ok_or_else(corrupt)?;
            let mechanism = ScramMechanism::from_name(mechanism).ok_or_else(corrupt)?;
            let rec: ScramRec = from_json(&kv)?;
            out.push(ScramCredential {
                user: unesc(user),
                mechanism,
                salt: rec.salt,
                stored_key: rec.stored_key,
                server_key: rec.server_key,
                iterations: rec.iterations,
            });
        }
        // Escaped names do not sort as names do.
        out.sort_by(|a, b| (&a.user, a.mechanism).cmp(&(&b.user, b.mechanism)));
        Ok(out)
    }

    async fn alter_scram_credentials(
        &self,
        upserts: &[ScramCredential],
        deletions: &[(String, ScramMechanism)],
    ) -> Result<(), MetaError> {
        check_scram_alteration(upserts, deletions)?;
        let key = |user: &str, m: ScramMechanism| self.key(&format!("scram/{}/{m}", esc(user)));
        let mut ops: Vec<TxnOp> = deletions
            .iter()
            .map(|(user, m)| TxnOp::delete(key(user, *m), None))
            .collect();
        for c in upserts {
            let rec = ScramRec {
                salt: c.salt.clone(),
                stored_key: c.stored_key.clone(),
                server_key: c.server_key.clone(),
                iterations: c.iterations,
            };
            ops.push(TxnOp::put(key(&c.user, c.mechanism), to_json(&rec), None));
        }
        if ops.len() > self.max_ops {
            return Err(MetaError::Invalid(format!(
                "{} SCRAM credential changes in one call; etcd takes at most {} at once",
                ops.len(),
                self.max_ops
            )));
        }
        if !ops.is_empty() {
            self.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    }

    async fn acls(&self) -> Result<Vec<AclBinding>, MetaError> {
        let mut out = Vec::new();
        for kv in self.scan(&self.key("acls/"), None, 0).await? {
            out.push(from_json::<AclBinding>(&kv)?);
        }
        out.sort();
        Ok(out)
    }

    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), MetaError> {
        // One key per binding: a second identical put changes nothing.
        let ops = bindings
            .iter()
            .map(|b| TxnOp::put(self.acl_key(b), to_json(b), None))
            .collect();
        self.apply_chunked(ops).await
    }

    async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, MetaError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut stored = Vec::new();
            for kv in self.scan(&self.key("acls/"), None, 0).await? {
                stored.push((from_json::<AclBinding>(&kv)?, kv));
            }
            stored.sort_by(|a, b| a.0.cmp(&b.0));
            let matched: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| {
                    let hits = stored.iter().filter(|(b, _)| f.matches(b));
                    hits.map(|(b, _)| b.clone()).collect()
                })
                .collect();
            // Each doomed key is deleted only if nobody changed it since the scan.
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for (b, kv) in stored
                .iter()
                .filter(|(b, _)| filters.iter().any(|f| f.matches(b)))
            {
                let key = self.acl_key(b);
                compares.push(unchanged(&key, Some(kv)));
                ops.push(TxnOp::delete(key, None));
            }
            if ops.is_empty() {
                return Ok(matched);
            }
            if 2 * ops.len() > self.max_ops {
                // Too many for one transaction: delete in chunks (each key's delete is
                // idempotent, so a retry after a partial failure finishes the job).
                self.apply_chunked(ops).await?;
                return Ok(matched);
            }
            if self.txn(Txn::new().when(compares).and_then(ops)).await? {
                return Ok(matched);
            }
        }
        Err(MetaError::Conflict("ACL bindings".into()))
    }

    async fn offset_groups(&self) -> Result<Vec<String>, MetaError> {
        let prefix = self.key("goff/");
        let mut groups: Vec<String> = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let rest = key_str(&kv)[prefix.len()..].to_string();
            if let Some((g, _)) = rest.split_once('/') {
                let g = unesc(g);
                if groups.last() != Some(&g) {
                    groups.push(g);
                }
            }
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn register_agent(&self, info: &AgentInfo) -> Result<i32, MetaError> {
        self.register(info).await
    }

    async fn deregister_agent(&self) -> Result<(), MetaError> {
        self.deregister().await
    }

    fn live_agents(&self) -> Vec<AgentInfo> {
        self.live()
    }

    fn standing(&self) -> Standing {
        EtcdStore::standing(self)
    }

    async fn claim_role(&self, role: &str) -> Result<Option<Fence>, MetaError> {
        EtcdStore::claim_role(self, role).await
    }

    async fn release_role(&self, fence: &Fence) -> Result<(), MetaError> {
        EtcdStore::release_role(self, fence).await
    }

    async fn compact_history(&self, now_ms: i64, keep_ms: i64) -> Result<Option<i64>, MetaError> {
        EtcdStore::compact_history(self, now_ms, keep_ms).await
    }

    fn commit_notifications(&self) -> Option<tokio::sync::broadcast::Receiver<ChangedPartitions>> {
        Some(self.commit_watch())
    }

    fn topic_notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.topic_watch())
    }

    fn max_swap_entries(&self) -> usize {
        self.max_ops / 2 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_partitions_together_and_fit() {
        let t = Uuid::new_v4();
        let segs: Vec<SegmentAppend> = (0..200)
            .map(|i| crate::conformance::segment(t, i % 70, 0, 0, 1))
            .collect();
        let chunks = plan_chunks(&segs, 128);
        assert!(chunks.len() > 1);
        let mut seen: Vec<usize> = chunks.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        for c in &chunks {
            let parts: HashSet<i32> = c.iter().map(|&i| segs[i].partition).collect();
            assert!(2 * parts.len() + c.len() <= 124, "{}", c.len());
            for other in &chunks {
                if !std::ptr::eq(c, other) {
                    assert!(other.iter().all(|&i| !parts.contains(&segs[i].partition)));
                }
            }
        }
        assert_eq!(plan_chunks(&segs[..3], 128).len(), 1);
    }
}
