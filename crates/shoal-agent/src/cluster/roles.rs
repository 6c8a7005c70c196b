//! The coordination roles this agent holds, and their fences.
//!
//! The registry view decides which agent *should* coordinate a consumer group or a
//! transactional id ([`super::ClusterView::coordinates`]); that is a cached view and can
//! be stale, so it never suffices to write. Before its first write for a role, the
//! agent claims the role in the metadata store ([`MetaStore::claim_role`]), under its
//! own lease, and every write for the role then carries the claim's [`Fence`]: the
//! store refuses it ([`MetaError::Fenced`]) once the claim is gone (the lease lapsed)
//! or is another agent's. A refused write drops the role here and is answered
//! NOT_COORDINATOR, so the client finds the agent that holds it now.
//!
//! Roles are let go when the view gives them to another agent ([`sweep`], from the
//! agent's 100 ms group tick), so the new coordinator can claim them at once; an agent
//! that died lets go when its lease ends. Between the two, the new coordinator answers
//! NOT_COORDINATOR, which clients retry.
//!
//! With no registry (SQLite, one agent) every claim succeeds with a fence no write is
//! ever refused for.

use std::collections::HashMap;
use std::sync::Mutex;

use shoal_meta::{Fence, MetaError, Standing};

use crate::Shared;

/// The role of coordinating consumer group `id`.
pub fn group_role(id: &str) -> String {
    format!("group:{id}")
}

/// The role of coordinating transactional id `id`.
pub fn txn_role(id: &str) -> String {
    format!("txn:{id}")
}

/// The roles this agent has claimed, by role name.
#[derive(Default)]
pub struct Roles {
    held: Mutex<HashMap<String, Fence>>,
    /// The standing the held roles were claimed under: a new incarnation holds nothing
    /// of the old one.
    standing: Mutex<Option<Standing>>,
}

impl Roles {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fence>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The roles held now (for tests and diagnostics).
    pub fn snapshot(&self) -> Vec<Fence> {
        self.held().values().cloned().collect()
    }
}

/// The fence for writing as the coordinator of `key` (a group or transactional id),
/// claiming the role `role` first if needed. [`MetaError::Fenced`] if this agent does not
/// coordinate `key` by the current view, or another agent still holds the role.
pub async fn fence(shared: &Shared, key: &str, role: &str) -> Result<Fence, MetaError> {
    if !super::coordinates(shared, key) {
        return Err(MetaError::Fenced(role.to_string()));
    }
    if let Some(f) = shared.roles.held().get(role) {
        return Ok(f.clone());
    }
    match shared.meta.claim_role(role).await? {
        Some(f) => {
            shared.roles.held().insert(role.to_string(), f.clone());
            Ok(f)
        }
        None => {
            tracing::debug!(role, "role still held by another agent");
            Err(MetaError::Fenced(role.to_string()))
        }
    }
}

/// The fence of group `id`'s coordinator role.
pub async fn group_fence(shared: &Shared, id: &str) -> Result<Fence, MetaError> {
    fence(shared, id, &group_role(id)).await
}

/// The fence of transactional id `id`'s coordinator role.
pub async fn txn_fence(shared: &Shared, id: &str) -> Result<Fence, MetaError> {
    fence(shared, id, &txn_role(id)).await
}

/// Notes a write's outcome: a fenced write means the role is lost, so it is dropped (a
/// group's in-memory state with it) and the next request claims it again or is told
/// NOT_COORDINATOR.
pub fn check<T>(shared: &Shared, fence: &Fence, r: Result<T, MetaError>) -> Result<T, MetaError> {
    if let Err(MetaError::Fenced(_)) = &r {
        tracing::warn!(role = %fence.role, epoch = fence.epoch, "write refused: this agent no longer holds the role");
        shared.roles.held().remove(&fence.role);
        if let Some(group) = fence.role.strip_prefix("group:") {
            shared.groups.release(|g| g != group);
        }
    }
    r
}

/// Lets go of roles this agent should no longer hold: those the view gives to another
/// agent are released in the store, so their new coordinator can claim them without
/// waiting for a lease. After a change of incarnation every role is forgotten (they were
/// claimed under the old lease, which took them with it). While lapsed nothing changes:
/// [`fence`] refuses every role, and a claim must never be forgotten while its lease may
/// still be alive, or it would block the role's next coordinator until the lease ends.
pub fn sweep(shared: &std::sync::Arc<Shared>, view: &super::ClusterView) {
    let standing = shared.meta.standing();
    if standing == Standing::Lapsed {
        return;
    }
    let new_incarnation = {
        let mut last = shared
            .roles
            .standing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let changed = last.is_some_and(|s| s != standing);
        *last = Some(standing);
        changed
    };
    let gone: Vec<Fence> = {
        let mut held = shared.roles.held();
        if new_incarnation {
            if !held.is_empty() {
                tracing::warn!(
                    roles = held.len(),
                    ?standing,
                    "registered again: the roles of the previous incarnation are gone"
                );
            }
            held.clear();
            return;
        }
        let keys: Vec<String> = held
            .keys()
            .filter(|role| !view.coordinates(key_of(role)))
            .cloned()
            .collect();
        keys.iter().filter_map(|k| held.remove(k)).collect()
    };
    if gone.is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        for f in gone {
            if let Err(e) = shared.meta.release_role(&f).await {
                // Kept, so the next sweep tries again (or a request uses it, if the
                // role comes back here meanwhile: the claim is still this agent's).
                tracing::warn!(role = %f.role, error = %e, "could not release a role; trying again");
                shared.roles.held().entry(f.role.clone()).or_insert(f);
            }
        }
    });
}

/// The group or transactional id a role is for.
fn key_of(role: &str) -> &str {
    role.split_once(':').map_or(role, |(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_name_their_key() {
        assert_eq!(key_of(&group_role("g:1")), "g:1");
        assert_eq!(key_of(&txn_role("t")), "t");
        assert_ne!(group_role("x"), txn_role("x"));
    }
}
