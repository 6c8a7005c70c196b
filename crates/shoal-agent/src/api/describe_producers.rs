//! DescribeProducers: the producer state of partitions (id, epoch, last sequence, open
//! transaction), as kept by the metadata commit.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(shared: &Shared, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let info = shared.topics.by_name(t.name.0.as_str()).await;
        let mut parts = Vec::with_capacity(t.partition_indexes.len());
        for &p in &t.partition_indexes {
            let r = PartitionResponse::default().with_partition_index(p);
            let info = match &info {
                Ok(Some(i)) if p >= 0 && p < i.partitions => i,
                Ok(_) => {
                    parts.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(e) => {
                    parts.push(r.with_error_code(meta_code(e)));
                    continue;
                }
            };
            match shared.meta.producers(info.id, p).await {
                Ok(list) => parts.push(
                    r.with_active_producers(
                        list.iter()
                            .map(|s| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(s.producer_id))
                                    .with_producer_epoch(i32::from(s.epoch))
                                    .with_last_sequence(s.last_sequence)
                                    .with_last_timestamp(s.last_timestamp)
                                    .with_coordinator_epoch(0)
                                    .with_current_txn_start_offset(s.txn_start_offset)
                            })
                            .collect(),
                    ),
                ),
                Err(e) => parts.push(r.with_error_code(meta_code(&e))),
            }
        }
        topics.push(
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
