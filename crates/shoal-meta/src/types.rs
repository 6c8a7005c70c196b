//! Plain data carried across the [`crate::MetaStore`] trait.

use std::collections::BTreeMap;
use uuid::Uuid;

/// Errors a metadata backend reports. Callers tell these apart.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic_id} does not exist")]
    UnknownPartition { topic_id: Uuid, partition: i32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed (I/O, lost connection, corrupt file); may succeed if retried.
    #[error("metadata backend failed: {0}")]
    Backend(String),
}

impl MetaError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, MetaError::Backend(_))
    }
}

/// What a client asked for when creating a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Only the configs set explicitly; defaults are the agent's business.
    pub configs: BTreeMap<String, String>,
}

/// The flushed object a commit refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Key of the object in the object store (relative to the store's prefix).
    pub key: String,
    pub size: u64,
}

/// One partition's contiguous byte range in a flushed object, to be given offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentAppend {
    pub topic_id: Uuid,
    pub partition: i32,
    pub data_offset: u64,
    pub data_len: u64,
    /// Number of offsets the segment occupies.
    pub offset_span: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

/// What a commit did with one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Committed; the segment's first batch has this base offset.
    Committed {
        base_offset: i64,
        log_start_offset: i64,
    },
    /// The partition does not exist (any more); nothing was committed for it.
    UnknownPartition,
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
}

/// Where a run of offsets lives: `[base_offset, end_offset)` in `object` at
/// `data_offset..data_offset + data_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub base_offset: i64,
    pub end_offset: i64,
    pub object_key: String,
    /// Size of the whole object, so readers never ask for bytes past its end.
    pub object_size: u64,
    pub data_offset: u64,
    pub data_len: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

/// A consumer group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp: i64,
}
