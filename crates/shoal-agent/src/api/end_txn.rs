//! EndTxn: commit or abort; answered once every marker is written and the staged
//! offsets are applied (see [`crate::txn::end`]). Only the id's coordinator answers; the
//! other agents say NOT_COORDINATOR. v5 is transactions v2 (KIP-890): every end bumps
//! the epoch, and the answer carries the producer id and epoch to go on with.

use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::metrics::Metrics;
use crate::txn;
use crate::Shared;

pub async fn handle(shared: &Shared, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = req.transactional_id.0.as_str();
    if !cluster::coordinates(shared, id) {
        return EndTxnResponse::default().with_error_code(ResponseError::NotCoordinator.code());
    }
    let v2 = version >= 5;
    match txn::end(
        shared,
        id,
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
        v2,
    )
    .await
    {
        Ok(next) => {
            if v2 {
                Metrics::add(&shared.metrics.txn_v2_ends, 1);
            }
            EndTxnResponse::default()
                .with_producer_id(ProducerId(next.producer_id))
                .with_producer_epoch(next.epoch)
        }
        Err(e) => {
            let e = txn::for_version(e, version, 2);
            tracing::debug!(transactional_id = id, error = %e.message, "EndTxn refused");
            EndTxnResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
