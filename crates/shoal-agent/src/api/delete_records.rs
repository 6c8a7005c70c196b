//! DeleteRecords: moves partitions' log start offsets up (offset -1: to the high
//! watermark). Records below become unreadable at once; their objects go when GC finds
//! them unreferenced (see [`crate::jobs`]).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(shared: &Shared, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let info = shared.topics.by_name(t.name.0.as_str()).await;
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let info = match &info {
                Ok(Some(i)) if p.partition_index >= 0 && p.partition_index < i.partitions => i,
                Ok(_) => {
                    parts.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
                Err(e) => {
                    parts.push(r.with_error_code(meta_code(e)));
                    continue;
                }
            };
            let result = async {
                let offsets = shared
                    .meta
                    .partition_offsets(info.id, p.partition_index)
                    .await?;
                let target = if p.offset == -1 {
                    offsets.high_watermark
                } else {
                    p.offset
                };
                if target < 0 || target > offsets.high_watermark {
                    return Ok(Err(ResponseError::OffsetOutOfRange.code()));
                }
                shared
                    .meta
                    .advance_log_start(info.id, p.partition_index, target)
                    .await
                    .map(Ok)
            }
            .await;
            parts.push(match result {
                Ok(Ok(low)) => {
                    tracing::info!(topic = %info.name, partition = p.partition_index, log_start = low, "records deleted");
                    r.with_low_watermark(low)
                }
                Ok(Err(code)) => r.with_error_code(code),
                Err(e) => r.with_error_code(meta_code(&e)),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
