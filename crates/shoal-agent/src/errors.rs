//! The one place internal errors become Kafka error codes.

use kafka_protocol::ResponseError;
use shoal_meta::{MetaError, ProducerRefusal};

/// The Kafka error code for a metadata-store error.
pub fn meta_code(e: &MetaError) -> i16 {
    match e {
        MetaError::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        MetaError::UnknownTopic(_) | MetaError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        MetaError::Invalid(_) => ResponseError::InvalidRequest.code(),
        MetaError::Conflict(_) => ResponseError::ConcurrentTransactions.code(),
        // Retriable on the client side: the store may be back in a moment.
        MetaError::Backend(_) => ResponseError::KafkaStorageError.code(),
        // Another agent coordinates it now: the client looks it up again.
        MetaError::Fenced(_) => ResponseError::NotCoordinator.code(),
        // Kafka's answer when a write may or may not have happened.
        MetaError::Ambiguous(_) => ResponseError::RequestTimedOut.code(),
    }
}

/// The Kafka error code a failed SASL exchange is answered with in SaslAuthenticate:
/// SASL_AUTHENTICATION_FAILED for every failure of the exchange itself, as Kafka does
/// (its message, [`crate::security::sasl::SaslError`]'s Display, says which).
pub fn sasl_code(e: &crate::security::sasl::SaslError) -> i16 {
    use crate::security::sasl::SaslError;
    match e {
        SaslError::AuthenticationFailed(_)
        | SaslError::Illegal(_)
        | SaslError::Unavailable(_)
        | SaslError::Internal(_) => ResponseError::SaslAuthenticationFailed.code(),
    }
}

/// The Kafka error code for a metadata-store error met while serving a group API:
/// an unavailable store is COORDINATOR_NOT_AVAILABLE, which clients retry (after looking
/// the coordinator up again), where KAFKA_STORAGE_ERROR would fail their commit.
pub fn group_meta_code(e: &MetaError) -> i16 {
    match e {
        MetaError::Backend(_) => ResponseError::CoordinatorNotAvailable.code(),
        other => meta_code(other),
    }
}

/// Failures of the write path, as a produce partition response reports them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("object store write failed: {0}")]
    ObjectStore(String),
    #[error("metadata commit failed: {0}")]
    Commit(String),
    /// The write may have been committed or not (an unresolved ambiguous outcome, or the
    /// flush ran out of time): Kafka's REQUEST_TIMED_OUT, which clients retry.
    #[error("write of unknown outcome: {0}")]
    TimedOut(String),
    #[error("partition does not exist")]
    UnknownPartition,
    #[error("agent is shutting down")]
    ShuttingDown,
    #[error("{}", refusal_text(*.0))]
    Refused(ProducerRefusal),
}

fn refusal_text(r: ProducerRefusal) -> &'static str {
    match r {
        ProducerRefusal::OutOfOrderSequence => {
            "the batch's sequence number does not follow the last one written for this producer"
        }
        ProducerRefusal::InvalidProducerEpoch => {
            "the producer epoch is older than the current one: this producer was fenced"
        }
        ProducerRefusal::InvalidTxnState => {
            "transactional batch for a partition not added to an ongoing transaction of this producer"
        }
    }
}

impl WriteError {
    pub fn code(&self) -> i16 {
        match self {
            // KAFKA_STORAGE_ERROR is retriable: clients resend, nothing was acknowledged.
            WriteError::ObjectStore(_) | WriteError::Commit(_) => {
                ResponseError::KafkaStorageError.code()
            }
            WriteError::TimedOut(_) => ResponseError::RequestTimedOut.code(),
            WriteError::UnknownPartition => ResponseError::UnknownTopicOrPartition.code(),
            WriteError::ShuttingDown => ResponseError::NotLeaderOrFollower.code(),
            WriteError::Refused(ProducerRefusal::OutOfOrderSequence) => {
                ResponseError::OutOfOrderSequenceNumber.code()
            }
            WriteError::Refused(ProducerRefusal::InvalidProducerEpoch) => {
                ResponseError::InvalidProducerEpoch.code()
            }
            WriteError::Refused(ProducerRefusal::InvalidTxnState) => {
                ResponseError::InvalidTxnState.code()
            }
        }
    }
}

/// The Kafka error code a request refused by the authorizer gets, by the type of the
/// resource it was refused on.
pub fn denied_code(rt: shoal_meta::AclResourceType) -> i16 {
    use shoal_meta::AclResourceType::*;
    match rt {
        Topic => ResponseError::TopicAuthorizationFailed.code(),
        Group => ResponseError::GroupAuthorizationFailed.code(),
        Cluster => ResponseError::ClusterAuthorizationFailed.code(),
        TransactionalId => ResponseError::TransactionalIdAuthorizationFailed.code(),
    }
}
