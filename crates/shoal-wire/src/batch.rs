//! A view of Kafka record batches (magic 2) that reads and patches headers in place.
//!
//! Layout of the 61-byte header, all big-endian:
//!
//! | offset | field                  | notes                                          |
//! |-------:|------------------------|------------------------------------------------|
//! | 0      | baseOffset i64         | patched by the read path, outside the CRC      |
//! | 8      | batchLength i32        | bytes after this field                         |
//! | 12     | partitionLeaderEpoch   | outside the CRC                                |
//! | 16     | magic i8               | must be 2                                      |
//! | 17     | crc u32                | CRC32C of bytes 21..end                        |
//! | 21     | attributes i16         | compression, timestamp type, txn, control      |
//! | 23     | lastOffsetDelta i32    |                                                |
//! | 27     | baseTimestamp i64      |                                                |
//! | 35     | maxTimestamp i64       |                                                |
//! | 43     | producerId i64         |                                                |
//! | 51     | producerEpoch i16      |                                                |
//! | 53     | baseSequence i32       |                                                |
//! | 57     | recordsCount i32       |                                                |
//!
//! Shoal stores batches exactly as clients sent them (compressed or not) and assigns
//! offsets in the metadata commit, so the write path only validates here and the read
//! path only rewrites `baseOffset`, which the CRC does not cover.

use std::ops::Range;

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength`; `batchLength` counts the rest.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// Why a batch was refused. Each maps to one Kafka error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    /// Bytes do not form whole batches (truncated, bad lengths): CORRUPT_MESSAGE.
    #[error("record batch is truncated or its length is invalid: {0}")]
    Structure(&'static str),
    /// The stored CRC does not match the bytes: CORRUPT_MESSAGE.
    #[error("record batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    /// Only magic 2 batches are accepted: UNSUPPORTED_FOR_MESSAGE_FORMAT.
    #[error("record batch magic {0} is not supported (only magic 2)")]
    Magic(i8),
    /// Header fields disagree with the records: INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    /// One record is malformed (its index in the batch): INVALID_RECORD, reported with
    /// the record's index as Produce v8+ does.
    #[error("invalid record {index} of the batch: {why}")]
    Record { index: i32, why: &'static str },
    /// A compressed batch whose codec stream cannot be read: CORRUPT_MESSAGE.
    #[error("compressed record batch cannot be decompressed: {0}")]
    Decompress(String),
    /// A compressed batch that inflates past the limit: MESSAGE_TOO_LARGE.
    #[error("compressed record batch inflates past {limit} bytes")]
    TooLarge { limit: u64 },
}

impl BatchError {
    /// The Kafka error code a produce response carries for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            BatchError::Structure(_) | BatchError::Crc { .. } | BatchError::Decompress(_) => 2, // CORRUPT_MESSAGE
            BatchError::Magic(_) => 43, // UNSUPPORTED_FOR_MESSAGE_FORMAT
            BatchError::Invalid(_) | BatchError::Record { .. } => 87, // INVALID_RECORD
            BatchError::TooLarge { .. } => 10, // MESSAGE_TOO_LARGE
        }
    }

    /// The index of the bad record within its batch, for Produce v8+'s `record_errors`.
    pub fn record_index(&self) -> Option<i32> {
        match self {
            BatchError::Record { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `b`; needs at least [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::Structure("shorter than a batch header"));
        }
        Ok(BatchHeader {
            base_offset: i64_at(b, 0),
            batch_length: i32_at(b, 8),
            partition_leader_epoch: i32_at(b, 12),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(b[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(b, 21),
            last_offset_delta: i32_at(b, 23),
            base_timestamp: i64_at(b, 27),
            max_timestamp: i64_at(b, 35),
            producer_id: i64_at(b, 43),
            producer_epoch: i16_at(b, 51),
            base_sequence: i32_at(b, 53),
            records_count: i32_at(b, 57),
        })
    }

    /// Total size of the batch including the offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// How many offsets the batch occupies (`lastOffsetDelta + 1`).
    pub fn offset_span(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// One validated batch inside a larger buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub header: BatchHeader,
    /// Where the batch sits in the buffer that was validated.
    pub range: Range<usize>,
}

/// Splits `records` (the `records` field of a produce partition) into batches and
/// validates each: length, magic, CRC32C, record count against `lastOffsetDelta`, and
/// for uncompressed batches that the records inside add up exactly.
pub fn validate_batches(records: &[u8]) -> Result<Vec<BatchInfo>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    if records.is_empty() {
        return Err(BatchError::Structure("no record batch"));
    }
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < HEADER_LEN {
            return Err(BatchError::Structure(
                "trailing bytes shorter than a batch header",
            ));
        }
        let header = BatchHeader::parse(rest)?;
        if header.magic != 2 {
            return Err(BatchError::Magic(header.magic));
        }
        if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Structure("batchLength smaller than the header"));
        }
        let total = header.total_len();
        if total > rest.len() {
            return Err(BatchError::Structure(
                "batchLength runs past the end of the data",
            ));
        }
        let batch = &rest[..total];
        let actual = crc32c::crc32c(&batch[CRC_START..]);
        if actual != header.crc {
            return Err(BatchError::Crc {
                expected: header.crc,
                actual,
            });
        }
        if header.records_count <= 0 {
            return Err(BatchError::Invalid("a batch must hold at least one record"));
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::Invalid(
                "lastOffsetDelta does not match the record count",
            ));
        }
        if header.compression() > 4 {
            return Err(BatchError::Invalid("unknown compression codec"));
        }
        if header.compression() == 0 && !header.is_control() {
            check_uncompressed_records(&batch[HEADER_LEN..], header.records_count)?;
        }
        out.push(BatchInfo {
            header,
            range: at..at + total,
        });
        at += total;
    }
    Ok(out)
}

/// Walks length-prefixed records and checks they fill the body exactly.
fn check_uncompressed_records(mut body: &[u8], count: i32) -> Result<(), BatchError> {
    for _ in 0..count {
        let (len, used) =
            read_varint(body).ok_or(BatchError::Invalid("record length is not a varint"))?;
        if len < 0 {
            return Err(BatchError::Invalid("negative record length"));
        }
        let end = used + len as usize;
        if end > body.len() {
            return Err(BatchError::Invalid("record runs past the end of the batch"));
        }
        body = &body[end..];
    }
    if !body.is_empty() {
        return Err(BatchError::Invalid("bytes left after the last record"));
    }
    Ok(())
}

/// Reads a zig-zag varint (as Kafka records use) and how many bytes it took.
pub fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// Appends `v` as a zig-zag varint (as Kafka records use), the inverse of [`read_varint`].
pub fn write_varint(v: i64, out: &mut Vec<u8>) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

/// Iterates whole batches in `data` without validating CRCs (data from our own objects,
/// already validated on the way in). Stops at the first incomplete or nonsensical
/// header, so a cut range simply ends early.
pub fn walk(data: &[u8]) -> impl Iterator<Item = BatchInfo> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        let header = BatchHeader::parse(rest).ok()?;
        if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return None;
        }
        let total = header.total_len();
        if total > rest.len() {
            return None;
        }
        let info = BatchInfo {
            header,
            range: at..at + total,
        };
        at += total;
        Some(info)
    })
}

/// Writes `baseOffset` into a batch. The CRC does not cover it, so nothing else changes.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as LogAppendTime with the broker's time, as Kafka does for topics with
/// `message.timestamp.type=LogAppendTime`: sets the timestamp-type attribute and
/// `maxTimestamp`, then recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16_at(batch, 21) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// `seq + delta` as Kafka counts producer sequences: wrapping from `i32::MAX` to 0.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A transaction marker: a control batch of one record ending a producer's transaction
/// on a partition (Kafka's end-transaction marker: key = version 0 + type, 0 abort /
/// 1 commit; value = version 0 + coordinator epoch). Base offset 0, CRC filled in.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let key: [u8; 4] = [0, 0, 0, u8::from(commit)];
    let mut value = vec![0u8, 0];
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    // Record: length, attributes, timestamp delta, offset delta, key, value, no headers.
    // Every varint here is small and non-negative, so zig-zag is one byte: n * 2.
    let body: Vec<u8> = [
        &[0u8, 0, 0, (key.len() * 2) as u8][..],
        &key,
        &[(value.len() * 2) as u8],
        &value,
        &[0u8],
    ]
    .concat();
    let mut b = Vec::with_capacity(HEADER_LEN + body.len() + 1);
    b.extend_from_slice(&0i64.to_be_bytes());
    let batch_length = (HEADER_LEN - LOG_OVERHEAD + 1 + body.len()) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc, below
    b.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records
    b.push((body.len() * 2) as u8);
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
