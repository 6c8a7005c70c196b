//! AddPartitionsToTxn. v0–v3, the client form: partitions join the producer's
//! transaction. Unknown topics or partitions fail the request; the other partitions then
//! get OPERATION_NOT_ATTEMPTED, as in Kafka. Ids another agent coordinates get
//! NOT_COORDINATOR on every partition. v4–v5, the batched form Kafka's brokers send their
//! transaction coordinator ([`handle_batched`]): several transactions per request, each
//! either added to or, with `verify_only`, only checked (KIP-890 part 1); it needs
//! ClusterAction on the cluster when ACLs are enforced, as in Kafka.

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
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
    if version >= 4 {
        return handle_batched(shared, req).await;
    }
    let results = add(
        shared,
        req.v3_and_below_transactional_id.0.as_str(),
        (
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
        ),
        &req.v3_and_below_topics,
        version,
        false,
    )
    .await;
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// v4+: each transaction of the request on its own.
async fn handle_batched(
    shared: &Shared,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let AddPartitionsToTxnTransaction {
            transactional_id,
            producer_id,
            producer_epoch,
            verify_only,
            topics,
            ..
        } = t;
        let topic_results = add(
            shared,
            transactional_id.0.as_str(),
            (producer_id.0, *producer_epoch),
            topics,
            5,
            *verify_only,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// Adds (or, `verify_only`, checks) the partitions of `topics` for the transaction of
/// `id`; the per-partition answers.
async fn add(
    shared: &Shared,
    id: &str,
    (producer_id, epoch): (i64, i16),
    topics: &[AddPartitionsToTxnTopic],
    version: i16,
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    // Resolve every partition first; any unknown one fails the whole request.
    let mut wanted = Vec::new();
    let mut codes: Vec<(usize, i32, Option<i16>)> = Vec::new();
    let coordinated = cluster::coordinates(shared, id);
    for (ti, t) in topics.iter().enumerate() {
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
    if verify_only && !failed {
        // Partitions the transaction does not list get INVALID_TXN_STATE.
        match txn::verify_partitions(shared, id, producer_id, epoch, &wanted).await {
            Ok(missing) => {
                for (ti, p, code) in &mut codes {
                    let name = topics[*ti].name.0.as_str();
                    if missing.iter().any(|m| m.topic == name && m.partition == *p) {
                        *code = Some(ResponseError::InvalidTxnState.code());
                    }
                }
            }
            Err(e) => {
                for (_, _, code) in &mut codes {
                    *code = Some(e.code());
                }
            }
        }
    }
    let outcome = if failed {
        ResponseError::OperationNotAttempted.code()
    } else if verify_only {
        0
    } else {
        match txn::add_partitions(shared, id, producer_id, epoch, &wanted).await {
            Ok(()) => 0,
            Err(e) => {
                let e = txn::for_version(e, version, 2);
                tracing::debug!(error = %e.message, "AddPartitionsToTxn refused");
                e.code()
            }
        }
    };
    topics
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
        .collect()
}
