//! The one place internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use shoal_meta::MetaError;

/// The Kafka error code for a metadata-store error.
pub fn meta_code(e: &MetaError) -> i16 {
    match e {
        MetaError::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        MetaError::UnknownTopic(_) | MetaError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        MetaError::Invalid(_) => ResponseError::InvalidRequest.code(),
        // Retriable on the client side: the store may be back in a moment.
        MetaError::Backend(_) => ResponseError::KafkaStorageError.code(),
    }
}

/// Failures of the write path, as a produce partition response reports them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("object store write failed: {0}")]
    ObjectStore(String),
    #[error("metadata commit failed: {0}")]
    Commit(String),
    #[error("partition does not exist")]
    UnknownPartition,
    #[error("agent is shutting down")]
    ShuttingDown,
}

impl WriteError {
    pub fn code(&self) -> i16 {
        match self {
            // KAFKA_STORAGE_ERROR is retriable: clients resend, nothing was acknowledged.
            WriteError::ObjectStore(_) | WriteError::Commit(_) => {
                ResponseError::KafkaStorageError.code()
            }
            WriteError::UnknownPartition => ResponseError::UnknownTopicOrPartition.code(),
            WriteError::ShuttingDown => ResponseError::NotLeaderOrFollower.code(),
        }
    }
}
