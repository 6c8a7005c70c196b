//! DeleteGroups: remove empty groups and their committed offsets (only groups this agent
//! coordinates; the others get NOT_COORDINATOR).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use crate::cluster::ClusterView;
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

/// Deletes one group this agent coordinates; returns the error code.
async fn delete_one(shared: &Shared, name: &str) -> i16 {
    match shared.groups.remove_if_empty(name) {
        Err(code) => code,
        Ok(in_memory) => match shared.meta.delete_group(name).await {
            Ok(had_offsets) if in_memory || had_offsets => {
                tracing::info!(group = %name, "deleted group");
                0
            }
            Ok(_) => ResponseError::GroupIdNotFound.code(),
            Err(e) => meta_code(&e),
        },
    }
}
