//! EndTxn: commit or abort; answered once every marker is written and the staged
//! offsets are applied (see [`crate::txn::end`]). Only the id's coordinator answers; the
//! other agents say NOT_COORDINATOR.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::txn;
use crate::Shared;

pub async fn handle(shared: &Shared, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = req.transactional_id.0.as_str();
    if !cluster::coordinates(shared, id) {
        return EndTxnResponse::default().with_error_code(ResponseError::NotCoordinator.code());
    }
    match txn::end(
        shared,
        id,
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
    )
    .await
    {
        Ok(()) => EndTxnResponse::default(),
        Err(e) => {
            let e = txn::for_version(e, version, 2);
            tracing::debug!(transactional_id = id, error = %e.message, "EndTxn refused");
            EndTxnResponse::default().with_error_code(e.code())
        }
    }
}
