//! Producer state, transaction records and staged transactional offsets of the etcd
//! backend. A transaction record's version is etcd's own per-key version counter, so the
//! compare-and-swap of [`crate::MetaStore::save_transaction`] is one `version` compare.

use shoal_etcd::{Compare, CompareOp, Txn, TxnOp};
use uuid::Uuid;

use crate::etcd::*;
use crate::etcd_registry::fence_compare;
use crate::*;

impl EtcdStore {
    pub(crate) async fn next_producer_id(&self) -> Result<i64, MetaError> {
        let key = self.key("next_producer_id");
        for _ in 0..64 {
            let kv = self.get(&key).await?;
            let next: i64 = match &kv {
                Some(kv) => String::from_utf8_lossy(kv.value())
                    .parse()
                    .map_err(backend)?,
                None => 1000,
            };
            if self
                .txn(
                    Txn::new()
                        .when([unchanged(&key, kv.as_ref())])
                        .and_then([TxnOp::put(key.as_str(), (next + 1).to_string(), None)]),
                )
                .await?
            {
                return Ok(next);
            }
        }
        Err(MetaError::Backend(
            "producer id allocation kept conflicting".into(),
        ))
    }

    /// Aborted transactions overlapping `[from, to)`; keys sort by last offset, so the
    /// scan starts at `from`.
    pub(crate) async fn aborted(
        &self,
        topic_id: Uuid,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<AbortedTxn>, MetaError> {
        let prefix = self.abort_prefix(topic_id, partition);
        let start = format!("{prefix}{:020}", from.max(0));
        let mut out: Vec<AbortedTxn> = Vec::new();
        for kv in self.scan(&prefix, Some(&start), 0).await? {
            let r: AbortRec = from_json(&kv)?;
            if r.first < to && r.last >= from {
                out.push(AbortedTxn {
                    producer_id: r.pid,
                    first_offset: r.first,
                    last_offset: r.last,
                });
            }
        }
        out.sort_by_key(|a| (a.first_offset, a.producer_id));
        Ok(out)
    }

    pub(crate) async fn producer_states(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<ProducerState>, MetaError> {
        let prefix = format!("{}prod/{topic_id}/{partition:010}/", self.prefix);
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let pid: i64 = key_str(&kv)[prefix.len()..].parse().map_err(backend)?;
            let r: ProdRec = from_json(&kv)?;
            out.push(ProducerState {
                producer_id: pid,
                epoch: r.row.epoch,
                last_sequence: r.row.last_sequence(),
                last_timestamp: r.last_ts,
                txn_start_offset: r.row.txn_first.unwrap_or(-1),
            });
        }
        Ok(out)
    }

    pub(crate) async fn expire(&self, before_ms: i64) -> Result<u64, MetaError> {
        let mut gone = 0;
        for kv in self.scan(&self.key("prod/"), None, 0).await? {
            let r: ProdRec = from_json(&kv)?;
            if r.last_ts >= before_ms || r.row.txn_first.is_some() {
                continue;
            }
            let k = key_str(&kv);
            // A producer that wrote meanwhile stays.
            if self
                .txn(
                    Txn::new()
                        .when([unchanged(&k, Some(&kv))])
                        .and_then([TxnOp::delete(k.as_str(), None)]),
                )
                .await?
            {
                gone += 1;
            }
        }
        Ok(gone)
    }

    pub(crate) async fn load_transaction(
        &self,
        id: &str,
    ) -> Result<Option<Transaction>, MetaError> {
        match self.get_json::<TxnRec>(&self.txn_key(id)).await? {
            Some((rec, kv)) => Ok(Some(
                rec.into_transaction(id.to_string(), kv.version() as u64)?,
            )),
            None => Ok(None),
        }
    }

    pub(crate) async fn all_transactions(&self) -> Result<Vec<Transaction>, MetaError> {
        let prefix = self.key("txn/");
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            let id = unesc(&key_str(&kv)[prefix.len()..]);
            let rec: TxnRec = from_json(&kv)?;
            out.push(rec.into_transaction(id, kv.version() as u64)?);
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// Compare-and-swap save of a transaction record; with `settle`, also applies
    /// (`Some(true)`) or drops the offsets it staged, in the same etcd transaction when
    /// they fit one.
    pub(crate) async fn store_transaction(
        &self,
        t: &Transaction,
        settle: Option<bool>,
        fence: Option<&Fence>,
    ) -> Result<u64, MetaError> {
        let key = self.txn_key(&t.transactional_id);
        let compare = Compare::version(key.as_str(), CompareOp::Equal, t.version as i64);
        let mut ops = vec![
            TxnOp::put(key.as_str(), to_json(&TxnRec::of(t)), None),
            TxnOp::put(
                self.txnpid_key(t.producer_id),
                t.transactional_id.as_str(),
                None,
            ),
        ];
        if let Some(commit) = settle {
            let prefix = self.txoff_prefix(&t.transactional_id, "");
            let mut applied = Vec::new();
            if commit {
                for kv in self.scan(&prefix, None, 0).await? {
                    // {group}/{topic}/{partition}
                    let rest = key_str(&kv)[prefix.len()..].to_string();
                    let Some((g, rest)) = rest.split_once('/') else {
                        continue;
                    };
                    let Some((topic, p)) = rest.rsplit_once('/') else {
                        continue;
                    };
                    let p: i32 = p.parse().map_err(backend)?;
                    applied.push(TxnOp::put(
                        self.goff_key(&unesc(g), topic, p),
                        kv.value().to_vec(),
                        None,
                    ));
                }
            }
            ops.push(delete_prefix(&prefix));
            if ops.len() + applied.len() > self.max_ops {
                // Too many to apply with the record: apply them first (a retry of the
                // whole end applies the same values again), then save the record.
                let current = self.get(&key).await?;
                if current.map_or(0, |kv| kv.version()) != t.version as i64 {
                    return Err(MetaError::Conflict(format!(
                        "transaction '{}'",
                        t.transactional_id
                    )));
                }
                let fence = fence.ok_or_else(|| {
                    MetaError::Backend("a transaction is settled only by its coordinator".into())
                })?;
                self.apply_fenced(applied, fence).await?;
            } else {
                ops.extend(applied);
            }
        }
        let mut when = vec![compare];
        let mut or_else = Vec::new();
        if let Some(fence) = fence {
            when.push(fence_compare(self, fence));
            or_else.push(TxnOp::get(self.role_key(&fence.role), None));
        }
        let resp = self
            .client
            .txn(Txn::new().when(when).and_then(ops).or_else(or_else))
            .await
            .map_err(backend)?;
        if resp.succeeded {
            return Ok(t.version + 1);
        }
        Err(refused(&resp, fence, t))
    }

    pub(crate) async fn forget_transaction(
        &self,
        t: &Transaction,
        fence: &Fence,
    ) -> Result<(), MetaError> {
        let key = self.txn_key(&t.transactional_id);
        let mut ops = vec![
            TxnOp::delete(key.as_str(), None),
            TxnOp::delete(self.txnpid_key(t.producer_id), None),
        ];
        if t.previous_producer_id >= 0 {
            ops.push(TxnOp::delete(self.txnpid_key(t.previous_producer_id), None));
        }
        let resp = self
            .client
            .txn(
                Txn::new()
                    .when([
                        Compare::version(key.as_str(), CompareOp::Equal, t.version as i64),
                        fence_compare(self, fence),
                    ])
                    .and_then(ops)
                    .or_else([TxnOp::get(self.role_key(&fence.role), None)]),
            )
            .await
            .map_err(backend)?;
        if resp.succeeded {
            return Ok(());
        }
        Err(refused(&resp, Some(fence), t))
    }

    pub(crate) async fn stage_offsets(
        &self,
        transactional_id: &str,
        group: &str,
        offsets: &[GroupOffset],
        fence: &Fence,
    ) -> Result<(), MetaError> {
        let prefix = self.txoff_prefix(transactional_id, group);
        let ops = offsets
            .iter()
            .map(|o| {
                TxnOp::put(
                    format!("{prefix}{}/{:010}", o.topic, o.partition),
                    to_json(&OffsetRec::of(o)),
                    None,
                )
            })
            .collect();
        self.apply_fenced(ops, fence).await
    }

    pub(crate) async fn pending_offsets(
        &self,
        group: &str,
    ) -> Result<Vec<(String, i32)>, MetaError> {
        let prefix = self.key("txoff/");
        let group = esc(group);
        let mut out = Vec::new();
        for kv in self.scan(&prefix, None, 0).await? {
            // {txn id}/{group}/{topic}/{partition}
            let rest = key_str(&kv)[prefix.len()..].to_string();
            let mut it = rest.splitn(3, '/');
            let (_txn, g) = (it.next(), it.next());
            if g != Some(group.as_str()) {
                continue;
            }
            let Some((topic, p)) = it.next().and_then(|r| r.rsplit_once('/')) else {
                continue;
            };
            out.push((topic.to_string(), p.parse().map_err(backend)?));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Why a conditional write of transaction `t` failed: the role's claim (read by the
/// failed branch) is not `fence` any more, or else the record's version moved on.
fn refused(resp: &shoal_etcd::TxnResponse, fence: Option<&Fence>, t: &Transaction) -> MetaError {
    if let Some(fence) = fence {
        let claim = gets(resp).into_iter().flatten().next();
        if claim.map_or(0, |kv| kv.create_revision()) != fence.epoch {
            return MetaError::Fenced(fence.role.clone());
        }
    }
    MetaError::Conflict(format!("transaction '{}'", t.transactional_id))
}
