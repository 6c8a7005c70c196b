//! AddOffsetsToTxn: the transaction will also commit offsets of a consumer group. Sent
//! to the transaction's coordinator; the other agents answer NOT_COORDINATOR.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::txn;
use crate::Shared;

pub async fn handle(
    shared: &Shared,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    if !cluster::coordinates(shared, req.transactional_id.0.as_str()) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::NotCoordinator.code());
    }
    let r = txn::add_offsets(
        shared,
        req.transactional_id.0.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.group_id.0.as_str(),
    )
    .await;
    match r {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(e) => {
            let e = txn::for_version(e, version, 2);
            tracing::debug!(error = %e.message, "AddOffsetsToTxn refused");
            AddOffsetsToTxnResponse::default().with_error_code(e.code())
        }
    }
}
