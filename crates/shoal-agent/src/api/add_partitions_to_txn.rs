//! AddPartitionsToTxn (v0–v3, the client form): partitions join the producer's
//! transaction. Unknown topics or partitions fail the request; the other partitions then
//! get OPERATION_NOT_ATTEMPTED, as in Kafka. Ids another agent coordinates get
//! NOT_COORDINATOR on every partition.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;
use shoal_meta::TxnPartition;

use crate::cluster;
use crate::errors::meta_code;
use crate::txn;
use crate::Shared;

pub async fn handle(
    shared: &Shared,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    // Resolve every partition first; any unknown one fails the whole request.
    let mut wanted = Vec::new();
    let mut codes: Vec<(usize, i32, Option<i16>)> = Vec::new();
    let coordinated = cluster::coordinates(shared, req.v3_and_below_transactional_id.0.as_str());
    for (ti, t) in req.v3_and_below_topics.iter().enumerate() {
        if !coordinated {
            let code = Some(ResponseError::NotCoordinator.code());
            codes.extend(t.partitions.iter().map(|&p| (ti, p, code)));
            continue;
        }
        let name = t.name.0.as_str();
        let info = shared.topics.by_name(name).await;
        for &p in &t.partitions {
            let code = match &info {
                Ok(Some(info)) if p >= 0 && p < info.partitions => {
                    wanted.push(TxnPartition {
                        topic: name.to_string(),
                        topic_id: info.id,
                        partition: p,
                    });
                    None
                }
                Ok(_) => Some(ResponseError::UnknownTopicOrPartition.code()),
                Err(e) => Some(meta_code(e)),
            };
            codes.push((ti, p, code));
        }
    }
    let failed = codes.iter().any(|(_, _, c)| c.is_some());
    let outcome = if failed {
        ResponseError::OperationNotAttempted.code()
    } else {
        match txn::add_partitions(
            shared,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &wanted,
        )
        .await
        {
            Ok(()) => 0,
            Err(e) => {
                let e = txn::for_version(e, version, 2);
                tracing::debug!(error = %e.message, "AddPartitionsToTxn refused");
                e.code()
            }
        }
    };
    let results = req
        .v3_and_below_topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let parts = codes
                .iter()
                .filter(|(i, _, _)| *i == ti)
                .map(|(_, p, c)| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(c.unwrap_or(outcome))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(parts)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
