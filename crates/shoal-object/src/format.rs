//! The object layout, version 1. Hand-written because no library knows it: it is ours.
//!
//! ```text
//! +-----------------------------------------------------------+
//! | data region: segment 0 batches | segment 1 batches | ...  |  whole Kafka batches,
//! +-----------------------------------------------------------+  exactly as produced
//! | index: u32 segment count, then per segment (68 bytes):    |
//! |   topic_id [16] | partition i32 | data_offset u64 |       |
//! |   data_len u64 | batch_count u32 | offset_span u64 |      |
//! |   min_timestamp i64 | max_timestamp i64 | reserved u32    |
//! +-----------------------------------------------------------+
//! | footer (40 bytes): index_offset u64 | index_len u32 |     |
//! |   index_crc32c u32 | data_crc32c u32 | version u16 |      |
//! |   reserved u16 | reserved u64 | magic "SHOALOB1"          |
//! +-----------------------------------------------------------+
//! ```
//!
//! All integers are big-endian. Readers check the magic, the version and both CRCs
//! before trusting anything; a reader of a byte range (the fetch path) relies on each
//! Kafka batch's own CRC instead of the whole-object data CRC.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// Last eight bytes of every object.
pub const MAGIC: &[u8; 8] = b"SHOALOB1";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Size of the fixed footer.
pub const FOOTER_LEN: usize = 40;
const ENTRY_LEN: usize = 68;

/// Why an object could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("object is too short to hold a footer ({0} bytes)")]
    TooShort(usize),
    #[error("object magic is wrong: not a Shoal object")]
    BadMagic,
    #[error("object format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u16),
    #[error("object index location is outside the object")]
    BadIndexLocation,
    #[error("object {0} checksum mismatch: the object is corrupt")]
    Checksum(&'static str),
    #[error("object index is malformed: {0}")]
    BadIndex(&'static str),
}

/// Where one partition's batches sit in an object, and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub topic_id: Uuid,
    pub partition: i32,
    /// Byte offset of the segment's first batch from the start of the object.
    pub data_offset: u64,
    pub data_len: u64,
    pub batch_count: u32,
    /// Offsets the segment occupies once committed (sum of `lastOffsetDelta + 1`).
    pub offset_span: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

struct PendingSegment {
    info: SegmentInfo,
    batches: Vec<Bytes>,
}

/// Collects batches for many partitions and lays them out as one object.
#[derive(Default)]
pub struct ObjectBuilder {
    segments: Vec<PendingSegment>,
    by_partition: std::collections::HashMap<(Uuid, i32), usize>,
    data_len: u64,
}

/// Where a batch handed to [`ObjectBuilder::add`] ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSlot {
    /// Index of the segment (in [`ObjectBuilder::finish`]'s list).
    pub segment: usize,
    /// Offsets taken by earlier batches in the same segment.
    pub offset_delta: u64,
}

impl ObjectBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of batch data added so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends one batch (already validated) to its partition's segment.
    pub fn add(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        batch: Bytes,
        offset_span: u64,
        min_timestamp: i64,
        max_timestamp: i64,
    ) -> BatchSlot {
        let idx = *self
            .by_partition
            .entry((topic_id, partition))
            .or_insert_with(|| {
                self.segments.push(PendingSegment {
                    info: SegmentInfo {
                        topic_id,
                        partition,
                        data_offset: 0,
                        data_len: 0,
                        batch_count: 0,
                        offset_span: 0,
                        min_timestamp: i64::MAX,
                        max_timestamp: i64::MIN,
                    },
                    batches: Vec::new(),
                });
                self.segments.len() - 1
            });
        let seg = &mut self.segments[idx];
        let slot = BatchSlot {
            segment: idx,
            offset_delta: seg.info.offset_span,
        };
        seg.info.data_len += batch.len() as u64;
        seg.info.batch_count += 1;
        seg.info.offset_span += offset_span;
        seg.info.min_timestamp = seg.info.min_timestamp.min(min_timestamp);
        seg.info.max_timestamp = seg.info.max_timestamp.max(max_timestamp);
        self.data_len += batch.len() as u64;
        seg.batches.push(batch);
        slot
    }

    /// Lays out data, index and footer. Segments keep the order of their first batch.
    pub fn finish(self) -> (Bytes, Vec<SegmentInfo>) {
        let index_len = 4 + ENTRY_LEN * self.segments.len();
        let mut out = BytesMut::with_capacity(self.data_len as usize + index_len + FOOTER_LEN);
        let mut infos = Vec::with_capacity(self.segments.len());
        for seg in self.segments {
            let mut info = seg.info;
            info.data_offset = out.len() as u64;
            for b in seg.batches {
                out.extend_from_slice(&b);
            }
            infos.push(info);
        }
        let data_crc = crc32c::crc32c(&out);
        let index_offset = out.len() as u64;
        let mut index = BytesMut::with_capacity(index_len);
        index.put_u32(infos.len() as u32);
        for s in &infos {
            index.put_slice(s.topic_id.as_bytes());
            index.put_i32(s.partition);
            index.put_u64(s.data_offset);
            index.put_u64(s.data_len);
            index.put_u32(s.batch_count);
            index.put_u64(s.offset_span);
            index.put_i64(s.min_timestamp);
            index.put_i64(s.max_timestamp);
            index.put_u32(0);
        }
        let index_crc = crc32c::crc32c(&index);
        out.extend_from_slice(&index);
        out.put_u64(index_offset);
        out.put_u32(index.len() as u32);
        out.put_u32(index_crc);
        out.put_u32(data_crc);
        out.put_u16(VERSION);
        out.put_u16(0);
        out.put_u64(0);
        out.put_slice(MAGIC);
        (out.freeze(), infos)
    }
}

/// The parsed footer and index of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    pub segments: Vec<SegmentInfo>,
    /// Length of the data region (where the index starts).
    pub data_len: u64,
    pub data_crc: u32,
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

impl ObjectIndex {
    /// Parses and checks a whole object: footer, index and the data CRC.
    pub fn read(object: &[u8]) -> Result<Self, ObjectError> {
        let index = Self::read_index_only(object)?;
        if crc32c::crc32c(&object[..index.data_len as usize]) != index.data_crc {
            return Err(ObjectError::Checksum("data"));
        }
        Ok(index)
    }

    /// Parses footer and index without reading the data region's CRC.
    pub fn read_index_only(object: &[u8]) -> Result<Self, ObjectError> {
        if object.len() < FOOTER_LEN {
            return Err(ObjectError::TooShort(object.len()));
        }
        let footer = &object[object.len() - FOOTER_LEN..];
        if &footer[32..40] != MAGIC {
            return Err(ObjectError::BadMagic);
        }
        let version = u16::from_be_bytes([footer[20], footer[21]]);
        if version != VERSION {
            return Err(ObjectError::UnsupportedVersion(version));
        }
        let index_offset = be_u64(&footer[0..]);
        let index_len = be_u32(&footer[8..]) as u64;
        let index_crc = be_u32(&footer[12..]);
        let data_crc = be_u32(&footer[16..]);
        let body_len = (object.len() - FOOTER_LEN) as u64;
        if index_offset.checked_add(index_len) != Some(body_len) {
            return Err(ObjectError::BadIndexLocation);
        }
        let index = &object[index_offset as usize..body_len as usize];
        if crc32c::crc32c(index) != index_crc {
            return Err(ObjectError::Checksum("index"));
        }
        if index.len() < 4 {
            return Err(ObjectError::BadIndex("no segment count"));
        }
        let count = be_u32(index) as usize;
        if index.len() != 4 + count * ENTRY_LEN {
            return Err(ObjectError::BadIndex(
                "segment count does not match its size",
            ));
        }
        let mut segments = Vec::with_capacity(count);
        for e in index[4..].chunks_exact(ENTRY_LEN) {
            let s = SegmentInfo {
                topic_id: Uuid::from_slice(&e[0..16]).expect("16 bytes"),
                partition: be_u32(&e[16..]) as i32,
                data_offset: be_u64(&e[20..]),
                data_len: be_u64(&e[28..]),
                batch_count: be_u32(&e[36..]),
                offset_span: be_u64(&e[40..]),
                min_timestamp: be_u64(&e[48..]) as i64,
                max_timestamp: be_u64(&e[56..]) as i64,
            };
            if s.data_offset
                .checked_add(s.data_len)
                .is_none_or(|end| end > index_offset)
            {
                return Err(ObjectError::BadIndex("segment outside the data region"));
            }
            segments.push(s);
        }
        Ok(ObjectIndex {
            segments,
            data_len: index_offset,
            data_crc,
        })
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
