//! Heartbeat: keep a member alive and tell it when a rebalance started.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::Shared;

pub fn handle(shared: &Shared, req: HeartbeatRequest) -> HeartbeatResponse {
    if !cluster::coordinates(shared, req.group_id.0.as_str()) {
        return HeartbeatResponse::default().with_error_code(ResponseError::NotCoordinator.code());
    }
    let code = shared.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    HeartbeatResponse::default().with_error_code(code)
}
