//! DescribeTransactions and ListTransactions: the coordinator's records, for admin tools.
//! As with Kafka brokers, an agent describes and lists only the transactional ids it
//! coordinates (NOT_COORDINATOR for the others); admin clients ask every agent.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::ResponseError;
use shoal_meta::{Transaction, TxnState};

use super::{sb, topic_name};
use crate::cluster::ClusterView;
use crate::txn::now_ms;
use crate::Shared;

fn describe_one(rec: &Transaction) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for p in &rec.partitions {
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == p.topic => t.partitions.push(p.partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(topic_name(&p.topic))
                    .with_partitions(vec![p.partition]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(TransactionalId(sb(rec.transactional_id.clone())))
        .with_transaction_state(sb(rec.state.as_str()))
        .with_transaction_timeout_ms(rec.timeout_ms)
        .with_transaction_start_time_ms(rec.started_ms)
        .with_producer_id(ProducerId(rec.producer_id))
        .with_producer_epoch(rec.epoch)
        .with_topics(topics)
}

pub async fn describe(
    shared: &Shared,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let view = ClusterView::of(shared);
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        if !view.coordinates(id.0.as_str()) {
            states.push(
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(ResponseError::NotCoordinator.code()),
            );
            continue;
        }
        let state = match shared.meta.transaction(id.0.as_str()).await {
            Ok(Some(rec)) => describe_one(&rec),
            Ok(None) => TransactionState::default()
                .with_transactional_id(id.clone())
                .with_error_code(ResponseError::TransactionalIdNotFound.code()),
            Err(e) => {
                tracing::warn!(error = %e, "DescribeTransactions could not read the metadata store");
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            }
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub async fn list(shared: &Shared, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for f in &req.state_filters {
        match TxnState::parse(f.as_str()) {
            Some(s) => states.push(s),
            None => unknown.push(f.clone()),
        }
    }
    let all = match shared.meta.transactions().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "ListTransactions could not read the metadata store");
            return ListTransactionsResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
    };
    let now = now_ms();
    let view = ClusterView::of(shared);
    let listed = all
        .iter()
        .filter(|r| view.coordinates(&r.transactional_id))
        .filter(|r| req.state_filters.is_empty() || states.contains(&r.state))
        .filter(|r| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == r.producer_id)
        })
        // v1: only transactions running for longer than the filter (ms).
        .filter(|r| {
            req.duration_filter < 0
                || (r.started_ms >= 0 && now - r.started_ms > req.duration_filter)
        })
        .map(|r| {
            Listed::default()
                .with_transactional_id(TransactionalId(sb(r.transactional_id.clone())))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(sb(r.state.as_str()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
