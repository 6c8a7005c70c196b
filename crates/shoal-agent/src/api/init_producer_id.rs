//! InitProducerId: a producer id for idempotent producers, or the current producer id
//! and a bumped epoch of a transactional id (see [`crate::txn::init_producer_id`]).
//! With a transactional id, only the id's coordinator answers; the others say
//! NOT_COORDINATOR. Plain idempotent producers may ask any agent.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::txn::{self, ProducerIdAndEpoch};
use crate::Shared;

pub async fn handle(
    shared: &Shared,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let expected = (req.producer_id.0 >= 0).then_some(ProducerIdAndEpoch {
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
    });
    let id = req.transactional_id.as_ref().map(|t| t.0.as_str());
    if id.is_some_and(|id| !cluster::coordinates(shared, id)) {
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::NotCoordinator.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match txn::init_producer_id(shared, id, req.transaction_timeout_ms, expected).await {
        Ok(p) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(p.producer_id))
            .with_producer_epoch(p.epoch),
        Err(e) => {
            let e = txn::for_version(e, version, 4);
            tracing::debug!(transactional_id = ?id, error = %e.message, "InitProducerId refused");
            InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
