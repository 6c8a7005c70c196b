//! DeleteGroups: remove empty groups and their committed offsets (only groups this agent
//! coordinates; the others get NOT_COORDINATOR). Also the expiry of empty groups'
//! offsets ([`expire`]).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use crate::cluster::{roles, ClusterView};
use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(shared: &Arc<Shared>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let view = ClusterView::of(shared);
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let name = id.0.as_str().to_string();
        let code = if !view.coordinates(&name) {
            ResponseError::NotCoordinator.code()
        } else {
            delete_one(shared, &name).await
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// Deletes the group's committed offsets, as its coordinator (fenced).
async fn delete_offsets(shared: &Shared, name: &str) -> Result<bool, shoal_meta::MetaError> {
    let fence = roles::group_fence(shared, name).await?;
    let deleted = shared.meta.delete_group(name, &fence).await;
    roles::check(shared, &fence, deleted)
}

/// Removes a deleted group's own configs (KIP-848 group configs), as Kafka does; a
/// failure leaves them for a group of the same id later, and is logged.
async fn forget_configs(shared: &Shared, name: &str) {
    let own = match shared.meta.group_configs(name).await {
        Ok(c) if c.is_empty() => return,
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(group = %name, error = %e, "deleted group's configs unreadable; they stay");
            return;
        }
    };
    let changes: Vec<(String, Option<String>)> = own.into_keys().map(|k| (k, None)).collect();
    if let Err(e) = shared.meta.alter_group_configs(name, &changes).await {
        tracing::warn!(group = %name, error = %e, "deleted group's configs not removed");
    }
    shared.groups.configs.invalidate(name);
}

/// Deletes one group this agent coordinates; returns the error code.
async fn delete_one(shared: &Shared, name: &str) -> i16 {
    match shared.groups.remove_if_empty(name) {
        Err(code) => code,
        Ok(in_memory) => match delete_offsets(shared, name).await {
            Ok(had_offsets) if in_memory || had_offsets => {
                forget_configs(shared, name).await;
                tracing::info!(group = %name, "deleted group");
                0
            }
            Ok(_) => ResponseError::GroupIdNotFound.code(),
            Err(e) => meta_code(&e),
        },
    }
}

/// Forgets the committed offsets of the groups this agent coordinates that have no
/// members, no transaction's offsets staged, and no commit newer than
/// `--offsets-retention` (Kafka's `offsets.retention.minutes`; Kafka counts from when the
/// group became empty, which is at or after its last commit for groups that commit until
/// they leave). Groups with members keep every offset.
pub async fn expire(shared: &Arc<Shared>) {
    let groups = match shared.meta.offset_groups().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "offset expiry could not read the metadata store");
            return;
        }
    };
    let retention = shared.config.offsets_retention.as_millis() as i64;
    let view = ClusterView::of(shared);
    for name in groups {
        if !view.coordinates(&name) || shared.groups.has_members(&name) {
            continue;
        }
        let result = async {
            let newest = shared
                .meta
                .group_offsets(&name)
                .await?
                .iter()
                .map(|o| o.commit_timestamp)
                .max();
            let now = shared.config.clock.now_ms();
            if newest.is_none_or(|t| now - t <= retention)
                || !shared.meta.pending_txn_offsets(&name).await?.is_empty()
                || shared.groups.remove_if_empty(&name).is_err()
            {
                return Ok(false);
            }
            delete_offsets(shared, &name).await
        }
        .await;
        match result {
            Ok(true) => {
                tracing::info!(group = %name, "expired the offsets of an empty group");
                crate::metrics::Metrics::add(&shared.metrics.group_offsets_expired, 1);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(group = %name, error = %e, "could not expire a group's offsets")
            }
        }
    }
}
