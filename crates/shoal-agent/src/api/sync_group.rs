//! SyncGroup: the leader hands out assignments; followers wait for theirs.

use std::sync::Arc;

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;

use super::{sb, Reply};
use crate::cluster;
use crate::groups::SyncOutcome;
use crate::Shared;

fn response(o: SyncOutcome, version: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default()
        .with_error_code(o.error)
        .with_assignment(o.assignment);
    if version >= 5 {
        r = r
            .with_protocol_type(o.protocol_type.map(sb))
            .with_protocol_name(o.protocol_name.map(sb));
    }
    r
}

pub fn handle(shared: &Arc<Shared>, req: SyncGroupRequest, version: i16) -> Reply {
    if !cluster::coordinates(shared, req.group_id.0.as_str()) {
        return Reply::now(response(
            SyncOutcome {
                error: ResponseError::NotCoordinator.code(),
                ..Default::default()
            },
            version,
        ));
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.as_str().to_string(), a.assignment.clone()))
        .collect();
    let outcome = shared.groups.sync(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.protocol_type.as_ref().map(|s| s.as_str()),
        req.protocol_name.as_ref().map(|s| s.as_str()),
        assignments,
    );
    match outcome {
        Err(o) => Reply::now(response(o, version)),
        Ok(rx) => Reply::Later(Box::pin(async move {
            let o = rx.await.unwrap_or_else(|_| SyncOutcome {
                error: ResponseError::RebalanceInProgress.code(),
                ..Default::default()
            });
            Some(Box::new(ResponseKind::SyncGroup(response(o, version))))
        })),
    }
}
