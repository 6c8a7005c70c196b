//! The etcd registry: who is alive, which run of an agent holds a node id, and which
//! agent holds each coordination role and background job.
//!
//! - **Registration.** An agent writes `agents/{node}` under a lease of
//!   [`AGENT_LEASE_SECS`] and keeps the lease alive. The lease id is the entry's
//!   *incarnation*: a node id names a slot, the incarnation names the run holding it, so
//!   an agent whose lease lapsed and a newcomer that took its id are never confused.
//! - **Standing.** Each keep-alive that etcd answers moves a deadline forward: the time
//!   the request was *sent*, plus the TTL etcd granted, minus [`LEASE_MARGIN`], on this
//!   process's monotonic clock. etcd cannot expire the lease before that (it restarts
//!   the TTL when it receives the request, which is later), so until the deadline the
//!   agent may act as a coordinator; after it, [`Standing::Lapsed`] and it acts for no
//!   role, whatever its last registry view said. A paused process wakes up past its
//!   deadline and stops at once.
//! - **Roles.** `coord/{role}` is put under the holder's lease with a compare on
//!   absence, so a role has one holder, and the holder's death or lapse frees it. The
//!   claim's create revision is its fence epoch: writes for the role compare it
//!   ([`fence_compare`]), so a write from a holder that lost the role fails in etcd
//!   itself, not only in the agent's memory.
//! - **Jobs.** `jobs/{name}` likewise lives under the holder's lease.
//!
//! Must not: decide anything by wall-clock time; a role or job must never depend on
//! two machines' clocks agreeing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_etcd::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::time::Instant;

use crate::etcd::{backend, esc, from_json, gets, key_str, to_json, AgentRec, EtcdStore};
use crate::{AgentInfo, Fence, MetaError, Standing};

/// Seconds an agent's registry entry (and every claim it holds) outlives its last
/// keep-alive.
pub(crate) const AGENT_LEASE_SECS: i64 = 10;
/// How long before etcd could expire the lease the agent stops coordinating: room for
/// the difference between two clocks' rates and for a request already under way.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// How often the lease is renewed: a keep-alive or two may fail before the deadline.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(2);

/// This process's registry entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration {
    /// The lease the entry (and the agent's claims) are held under; the incarnation.
    pub lease: i64,
    pub node_id: i32,
    /// Until when, by this process's monotonic clock, the lease is certainly alive.
    pub valid_until: Instant,
}

/// The value of a `coord/` or leased `jobs/` claim: who holds it (for people reading
/// etcd; the decisions use the key's lease and create revision).
#[derive(Serialize, Deserialize)]
struct ClaimRec {
    node_id: i32,
    incarnation: i64,
}

/// A `jobs/` claim from before claims were leased: held until `until` (ms).
#[derive(Serialize, Deserialize)]
pub(crate) struct JobRec {
    pub holder: String,
    pub until: i64,
}

/// The etcd compare that holds only while `fence` is still the current claim of its role.
pub(crate) fn fence_compare(store: &EtcdStore, fence: &Fence) -> Compare {
    Compare::create_revision(store.role_key(&fence.role), CompareOp::Equal, fence.epoch)
}

impl EtcdStore {
    pub(crate) fn role_key(&self, role: &str) -> String {
        self.key(&format!("coord/{}", esc(role)))
    }

    fn registration(&self) -> Option<Registration> {
        *self.registration.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_registration(&self, reg: Option<Registration>) {
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = reg;
    }

    /// The registration, if its deadline has not passed.
    fn live_registration(&self) -> Option<Registration> {
        self.registration()
            .filter(|r| Instant::now() < r.valid_until)
    }

    /// See [`crate::MetaStore::standing`].
    pub(crate) fn standing(&self) -> Standing {
        match self.live_registration() {
            Some(r) => Standing::Live {
                node_id: r.node_id,
                incarnation: r.lease,
            },
            None => Standing::Lapsed,
        }
    }

    /// Registry: claims `agents/{id}` under a fresh lease (see
    /// [`crate::MetaStore::register_agent`]), then waits (briefly) until the registry
    /// watch shows the entry, so the agent's first view already includes itself.
    pub(crate) async fn register(&self, info: &AgentInfo) -> Result<i32, MetaError> {
        let (lease, valid_until) = self.grant_lease().await?;
        let id = match self.claim_node_id(info, lease).await {
            Ok(id) => id,
            Err(e) => {
                let _ = self.client.lease_revoke(lease).await;
                return Err(e);
            }
        };
        self.set_registration(Some(Registration {
            lease,
            node_id: id,
            valid_until,
        }));
        tokio::spawn(keep_registered(
            self.clone(),
            AgentInfo {
                node_id: id,
                ..info.clone()
            },
        ));
        let mut agents = self.agents_watch();
        let seen = agents.wait_for(|live| {
            live.iter()
                .any(|a| a.node_id == id && a.incarnation == lease)
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), seen).await;
        Ok(id)
    }

    /// Finds the node id to register: the asked one (`>= 0`), else the lowest free one.
    /// An asked id held by a live entry is waited for up to one lease: the holder is
    /// most often this agent's own previous run, killed and restarted at once (as an
    /// orchestrator restarts a crashed pod with a stable id), whose lease etcd has not
    /// expired yet. Taking the id only once that lease is gone means two runs never hold
    /// it together; a holder still alive after the wait is another agent, an error.
    async fn claim_node_id(&self, info: &AgentInfo, lease: i64) -> Result<i32, MetaError> {
        if info.node_id >= 0 {
            let wait = Duration::from_secs(AGENT_LEASE_SECS as u64) + LEASE_MARGIN;
            let deadline = Instant::now() + wait;
            let mut told = false;
            loop {
                if self.claim_entry(info, lease).await? {
                    return Ok(info.node_id);
                }
                if Instant::now() >= deadline {
                    break;
                }
                if !told {
                    told = true;
                    tracing::warn!(
                        node_id = info.node_id,
                        "node id {} is held by a live registry entry (this agent's previous run, \
                         if it was just restarted); waiting up to {} s for its lease to expire",
                        info.node_id,
                        wait.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return Err(MetaError::Invalid(format!(
                "node id {} is held by another live agent; give each agent its own --node-id \
                 or leave it out",
                info.node_id
            )));
        }
        let taken: Vec<i32> = self
            .scan(&self.key("agents/"), None, 0)
            .await?
            .iter()
            .filter_map(|kv| key_str(kv).rsplit('/').next()?.parse().ok())
            .collect();
        for id in (1..).filter(|i| !taken.contains(i)).take(1000) {
            let info = AgentInfo {
                node_id: id,
                ..info.clone()
            };
            if self.claim_entry(&info, lease).await? {
                return Ok(id);
            }
        }
        Err(MetaError::Invalid(
            "no free node id among the first 1000; give this agent a --node-id".into(),
        ))
    }

    /// A fresh registry lease of [`AGENT_LEASE_SECS`], and its deadline.
    async fn grant_lease(&self) -> Result<(i64, Instant), MetaError> {
        let sent = Instant::now();
        let lease = self
            .client
            .lease_grant(AGENT_LEASE_SECS)
            .await
            .map_err(backend)?;
        Ok((lease, deadline(sent, AGENT_LEASE_SECS)))
    }

    /// Writes `info`'s registry entry under `lease` if no live agent holds its id.
    async fn claim_entry(&self, info: &AgentInfo, lease: i64) -> Result<bool, MetaError> {
        let key = self.key(&format!("agents/{:010}", info.node_id));
        self.txn(
            Txn::new()
                .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.as_str(),
                    to_json(&AgentRec::from(info)),
                    Some(PutOptions::new().with_lease(lease)),
                )]),
        )
        .await
    }

    pub(crate) async fn deregister(&self) -> Result<(), MetaError> {
        let reg = self
            .registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = reg {
            self.client.lease_revoke(r.lease).await.map_err(backend)?;
        }
        Ok(())
    }

    /// See [`crate::MetaStore::claim_role`].
    pub(crate) async fn claim_role(&self, role: &str) -> Result<Option<Fence>, MetaError> {
        let Some(reg) = self.live_registration() else {
            return Ok(None);
        };
        let key = self.role_key(role);
        let value = to_json(&ClaimRec {
            node_id: reg.node_id,
            incarnation: reg.lease,
        });
        let resp = self
            .client
            .txn(
                Txn::new()
                    .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.as_str(),
                        value,
                        Some(PutOptions::new().with_lease(reg.lease)),
                    )])
                    .or_else([TxnOp::get(key.as_str(), None)]),
            )
            .await
            .map_err(backend)?;
        if resp.succeeded {
            // The put created the key at the transaction's revision.
            return Ok(Some(Fence {
                role: role.to_string(),
                epoch: resp.revision(),
            }));
        }
        let held = gets(&resp).into_iter().flatten().next();
        Ok(held.filter(|kv| kv.lease() == reg.lease).map(|kv| Fence {
            role: role.to_string(),
            epoch: kv.create_revision(),
        }))
    }

    /// See [`crate::MetaStore::release_role`].
    pub(crate) async fn release_role(&self, fence: &Fence) -> Result<(), MetaError> {
        self.txn(
            Txn::new()
                .when([fence_compare(self, fence)])
                .and_then([TxnOp::delete(self.role_key(&fence.role), None)]),
        )
        .await
        .map(|_| ())
    }

    /// See [`crate::MetaStore::claim_job`]: a registered agent claims under its lease (the
    /// claim ends with the lease, whatever the clocks say); an unregistered caller (a
    /// tool, a test) with a deadline in the value, as before leases were used.
    pub(crate) async fn claim_job_under_lease(
        &self,
        job: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, MetaError> {
        let key = self.key(&format!("jobs/{}", esc(job)));
        let lease = match self.registration() {
            Some(_) => match self.live_registration() {
                Some(r) => Some(r.lease),
                None => return Ok(false), // lapsed: hold nothing
            },
            None => None,
        };
        for _ in 0..3 {
            let current = self.get(&key).await?;
            if let Some(kv) = &current {
                let mine = match lease {
                    Some(l) if kv.lease() != 0 => kv.lease() == l,
                    _ => {
                        // A deadline claim (or any claim, for an unleased caller).
                        let rec: JobRec = from_json(kv)?;
                        rec.holder == holder || (kv.lease() == 0 && rec.until <= now_ms)
                    }
                };
                if !mine {
                    return Ok(false);
                }
                if lease.is_some_and(|l| kv.lease() == l) {
                    return Ok(true); // renewal: the lease keeps it
                }
            }
            let rec = JobRec {
                holder: holder.to_string(),
                until: now_ms + ttl_ms,
            };
            let put = TxnOp::put(
                key.as_str(),
                to_json(&rec),
                lease.map(|l| PutOptions::new().with_lease(l)),
            );
            let unchanged = crate::etcd::unchanged(&key, current.as_ref());
            if self
                .txn(Txn::new().when([unchanged]).and_then([put]))
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The latest moment the lease is certainly alive, for a grant or keep-alive *sent* at
/// `sent` and answered with `ttl_secs`.
fn deadline(sent: Instant, ttl_secs: i64) -> Instant {
    sent + Duration::from_secs(ttl_secs.max(0) as u64).saturating_sub(LEASE_MARGIN)
}

/// Keeps this agent's lease alive and its deadline current; if the lease lapsed (etcd
/// was out of reach for longer than the lease, or the process was paused), registers
/// again under a new lease, so a new incarnation, with the same node id.
async fn keep_registered(store: EtcdStore, info: AgentInfo) {
    loop {
        tokio::time::sleep(KEEP_ALIVE_EVERY).await;
        let Some(reg) = store.registration() else {
            return; // deregistered
        };
        let sent = Instant::now();
        // etcd answers a lease it no longer knows (it expired while etcd was out of
        // reach, or was revoked) with a TTL of 0.
        match store.client.lease_keep_alive(reg.lease).await {
            Ok(ttl) if ttl > 0 => {
                let mut guard = store.registration.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(r) = guard.as_mut().filter(|r| r.lease == reg.lease) {
                    r.valid_until = r.valid_until.max(deadline(sent, ttl));
                }
            }
            Ok(_) => {
                tracing::warn!(
                    node_id = info.node_id,
                    "registry lease expired; this agent stopped coordinating and registers again"
                );
                match reregister(&store, &info).await {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "could not register again; retrying"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "registry keep-alive failed; retrying"),
        }
    }
}

/// Claims this agent's node id again under a new lease, with the same compare-and-swap
/// as the first registration: while the lease was lapsed another agent may have
/// registered the id, and its entry must not be overwritten. This agent then stays
/// out of the registry (so out of every Metadata answer, and coordinating nothing) and
/// tries again each round.
async fn reregister(store: &EtcdStore, info: &AgentInfo) -> Result<(), MetaError> {
    let (lease, valid_until) = store.grant_lease().await?;
    let won = store.claim_entry(info, lease).await;
    if !matches!(won, Ok(true)) {
        let _ = store.client.lease_revoke(lease).await;
        won?;
        return Err(MetaError::Invalid(format!(
            "node id {} is now held by another agent; this agent is left out of Metadata \
             until the id is free (give each agent its own --node-id)",
            info.node_id
        )));
    }
    let mut guard = store.registration.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_some() {
        *guard = Some(Registration {
            lease,
            node_id: info.node_id,
            valid_until,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_leaves_a_margin_before_etcd_can_expire() {
        let sent = Instant::now();
        let d = deadline(sent, AGENT_LEASE_SECS);
        assert_eq!(
            d - sent,
            Duration::from_secs(AGENT_LEASE_SECS as u64) - LEASE_MARGIN
        );
        // A TTL shorter than the margin gives no time at all.
        assert_eq!(deadline(sent, 2), sent);
        assert_eq!(deadline(sent, 0), sent);
        // Renewals come often enough that two may fail before the deadline passes.
        assert!(KEEP_ALIVE_EVERY * 2 < d - sent);
    }
}
