//! FindCoordinator: which agent coordinates a group or a transactional id (v0–v3: one
//! key; v4+: batched).
//!
//! The coordinator is chosen by rendezvous hashing over the live agents
//! ([`crate::groups::coordinator_for`]); with one agent it is this one. Transaction state
//! lives in the metadata store, so the transaction coordinator is only a home for the
//! per-id ordering and the timeout scan.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sb;
use crate::groups::coordinator_for;
use crate::Shared;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// `(error, node, host, port)` for one key.
fn locate(shared: &Shared, key: &str, key_type: i8) -> (i16, i32, String, i32) {
    if key_type != GROUP && key_type != TRANSACTION {
        return (ResponseError::InvalidRequest.code(), -1, String::new(), -1);
    }
    let me = shared.config.node_id;
    match coordinator_for(key, &[me]) {
        Some(node) if node == me => {
            let (host, port) = shared.config.advertised_host_port();
            (0, node, host, port)
        }
        _ => (
            ResponseError::CoordinatorNotAvailable.code(),
            -1,
            String::new(),
            -1,
        ),
    }
}

pub fn handle(
    shared: &Shared,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version < 4 {
        let (error, node, host, port) = locate(shared, req.key.as_str(), req.key_type);
        return FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(node))
            .with_host(sb(host))
            .with_port(port);
    }
    let coordinators = req
        .coordinator_keys
        .iter()
        .map(|k: &StrBytes| {
            let (error, node, host, port) = locate(shared, k.as_str(), req.key_type);
            Coordinator::default()
                .with_key(k.clone())
                .with_error_code(error)
                .with_node_id(BrokerId(node))
                .with_host(sb(host))
                .with_port(port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
