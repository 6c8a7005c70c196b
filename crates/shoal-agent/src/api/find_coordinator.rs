//! FindCoordinator: which agent coordinates a group or a transactional id (v0–v3: one
//! key; v4+: batched).
//!
//! The coordinator is chosen by rendezvous hashing over all live agents of this agent's
//! group ([`crate::cluster::ClusterView::coordinator`]), whatever the client's zone, so
//! every client finds the same one; with one agent it is this one. Transaction state
//! lives in the metadata store, so the transaction coordinator is only a home for the
//! per-id ordering and the timeout scan.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sb;
use crate::cluster::ClusterView;
use crate::Shared;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// `(error, node, host, port)` for one key.
fn locate(view: &ClusterView, key: &str, key_type: i8, listener: &str) -> (i16, i32, String, i32) {
    if key_type != GROUP && key_type != TRANSACTION {
        return (ResponseError::InvalidRequest.code(), -1, String::new(), -1);
    }
    match view.coordinator(key) {
        Some(a) => {
            let (host, port) = a.endpoint(listener);
            (0, a.node_id, host.to_string(), port)
        }
        None => (
            ResponseError::CoordinatorNotAvailable.code(),
            -1,
            String::new(),
            -1,
        ),
    }
}

pub fn handle(
    shared: &Shared,
    listener: &str,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let view = ClusterView::of(shared);
    if version < 4 {
        let (error, node, host, port) = locate(&view, req.key.as_str(), req.key_type, listener);
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
            let (error, node, host, port) = locate(&view, k.as_str(), req.key_type, listener);
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
