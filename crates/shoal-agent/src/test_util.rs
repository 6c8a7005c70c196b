//! Helpers shared by this crate's unit tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A plain record (no producer id) at `offset` with sequence `sequence`.
pub fn record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    offset: i64,
    sequence: i32,
    ts: i64,
) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence,
        timestamp: ts,
        delete_horizon: false,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: IndexMap::new(),
    }
}

/// A valid one-record batch (CRC filled in) holding `value`, base offset 0.
pub fn batch(value: &[u8]) -> Bytes {
    let record = record(None, Some(value), 0, -1, 0);
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}
