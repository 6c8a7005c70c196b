//! The records inside a record batch, read as a stream and bounded by the bytes present.
//!
//! [`crate::batch`] checks a batch's header and CRC; this module reads what the header
//! only claims: every record's length, varints, key, value and headers, in compressed
//! batches after decompressing them. It is the one place Shoal looks inside records,
//! used on produce (so nothing malformed is stored, as Kafka's log validator does) and
//! by reads of stored data that need record fields (ListOffsets by timestamp).
//!
//! Why by hand, not `kafka-protocol`'s record decoder: that decoder reserves memory from
//! counts the batch claims (a ~100-byte record claiming 2^31-1 headers asked for
//! gigabytes) and decompresses whole batches with no bound. Here:
//! - nothing is allocated from a claimed count or length: records are read field by
//!   field and their bytes skipped, so a claimed count can only make the walk end early
//!   with an error;
//! - decompression is a stream (gzip, lz4, zstd) read through a counter that stops at
//!   [`Limits::max_uncompressed`], so a small batch that inflates to gigabytes costs at
//!   most that much decompression work and no more memory than the decoder's window
//!   (gzip 32 KiB, lz4 at most 4 MiB a block, zstd at most 2^[`ZSTD_WINDOW_LOG_MAX`]).
//!   Snappy's raw format cannot be streamed: a raw snappy block (or each block of the
//!   xerial framing Java clients use) is inflated into one buffer, after checking its
//!   stated size against the same limit.

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::batch::{BatchError, BatchHeader, HEADER_LEN};

/// The largest zstd window accepted (2^24 = 16 MiB of decoder memory). Kafka clients
/// compress with zstd's default levels, whose windows are at most 2^21 on their inputs.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// What a record walk calls with each record's index and fields.
type PerRecord<'a> = dyn FnMut(i32, &RecordMeta) -> Result<ControlFlow<()>, BatchError> + 'a;

/// Bounds on reading one batch's records.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes a compressed batch's records may inflate to.
    pub max_uncompressed: u64,
}

/// One record's fields, as read (its key, value and header bytes are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// -1 for a null key.
    pub key_len: i32,
    /// -1 for a null value (a tombstone).
    pub value_len: i32,
    pub headers: i32,
}

/// Reads every record of `batch` (a whole batch: header and records, as validated by
/// [`crate::batch::validate_batches`]), calling `f` with each record's index and fields;
/// `f` answering [`ControlFlow::Break`] ends the walk there (the rest is not checked).
///
/// Checks, as Kafka does: the records fill their region exactly (each record's length
/// matches its fields, nothing is left after the last one), their number is the
/// header's record count, offset deltas run 0, 1, 2, ..., and every length and varint
/// is well formed and within the bytes present. A record-level fault is
/// [`BatchError::Record`] (INVALID_RECORD, with the record's index); a codec that cannot
/// be read is [`BatchError::Decompress`] (CORRUPT_MESSAGE); inflating past the limit is
/// [`BatchError::TooLarge`].
pub fn for_each_record(
    batch: &[u8],
    limits: Limits,
    mut f: impl FnMut(i32, &RecordMeta) -> Result<ControlFlow<()>, BatchError>,
) -> Result<(), BatchError> {
    for_each_record_with(batch, limits, true, &mut f)
}

/// A whole batch's header and the (possibly compressed) records region after it.
fn header_and_body(batch: &[u8]) -> Result<(BatchHeader, &[u8]), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let body = batch
        .get(HEADER_LEN..header.total_len())
        .ok_or(BatchError::Structure(
            "batchLength runs past the end of the data",
        ))?;
    Ok((header, body))
}

/// [`for_each_record`]; `dense`: offset deltas must run 0, 1, 2, ... (else the caller
/// checks them).
fn for_each_record_with(
    batch: &[u8],
    limits: Limits,
    dense: bool,
    f: &mut PerRecord<'_>,
) -> Result<(), BatchError> {
    let (header, body) = header_and_body(batch)?;
    let count = header.records_count;
    match header.compression() {
        0 => walk(body, count, u64::MAX, dense, f),
        1 => walk(
            buffered(flate2::read::GzDecoder::new(body)),
            count,
            limits.max_uncompressed,
            dense,
            f,
        ),
        2 => {
            let inflated = snappy(body, limits.max_uncompressed)?;
            walk(
                inflated.as_slice(),
                count,
                limits.max_uncompressed,
                dense,
                f,
            )
        }
        3 => {
            let decoder = lz4::Decoder::new(body).map_err(decompress_error)?;
            walk(buffered(decoder), count, limits.max_uncompressed, dense, f)
        }
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(body).map_err(decompress_error)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(decompress_error)?;
            walk(buffered(decoder), count, limits.max_uncompressed, dense, f)
        }
        _ => Err(BatchError::Invalid("unknown compression codec")),
    }
}

/// [`for_each_record`] for batches read back from storage, which the log cleaner may
/// have rewritten: offset deltas must only increase (a cleaned batch keeps its records'
/// offsets, with gaps where records were removed) instead of running 0, 1, 2, ...
pub fn for_each_stored_record(
    batch: &[u8],
    limits: Limits,
    mut f: impl FnMut(i32, &RecordMeta) -> Result<ControlFlow<()>, BatchError>,
) -> Result<(), BatchError> {
    let mut last = -1;
    for_each_record_with(batch, limits, false, &mut |i, m| {
        if m.offset_delta <= last {
            return Err(BatchError::Record {
                index: i,
                why: "offset delta out of sequence",
            });
        }
        last = m.offset_delta;
        f(i, m)
    })
}

/// The records region of a whole batch, decompressed, refusing to inflate past
/// `limits.max_uncompressed` (an uncompressed batch's region is borrowed as it is).
pub fn records_region(
    batch: &[u8],
    limits: Limits,
) -> Result<std::borrow::Cow<'_, [u8]>, BatchError> {
    let (header, body) = header_and_body(batch)?;
    let limit = limits.max_uncompressed;
    let read_all = |mut r: Box<dyn Read + '_>| -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::new();
        r.by_ref()
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(decompress_error)?;
        if out.len() as u64 > limit {
            return Err(BatchError::TooLarge { limit });
        }
        Ok(out)
    };
    let inflated = match header.compression() {
        0 => return Ok(std::borrow::Cow::Borrowed(body)),
        1 => read_all(Box::new(flate2::read::GzDecoder::new(body)))?,
        2 => snappy(body, limit)?,
        3 => read_all(Box::new(lz4::Decoder::new(body).map_err(decompress_error)?))?,
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(body).map_err(decompress_error)?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(decompress_error)?;
            read_all(Box::new(decoder))?
        }
        _ => return Err(BatchError::Invalid("unknown compression codec")),
    };
    Ok(std::borrow::Cow::Owned(inflated))
}

/// [`for_each_record`] with nothing to do per record: the produce-side check.
pub fn check_records(batch: &[u8], limits: Limits) -> Result<(), BatchError> {
    for_each_record(batch, limits, |_, _| Ok(ControlFlow::Continue(())))
}

/// Records are read a varint at a time; a decoder asked for one byte per call spends
/// most of its time on call overhead, so its output is read in blocks of this size.
const DECODED_BLOCK: usize = 32 * 1024;

fn buffered<R: Read>(decoder: R) -> io::BufReader<R> {
    io::BufReader::with_capacity(DECODED_BLOCK, decoder)
}

fn decompress_error(e: io::Error) -> BatchError {
    BatchError::Decompress(e.to_string())
}

/// Why reading the record stream stopped.
enum Stop {
    /// The stream ended inside a record.
    Truncated,
    /// More bytes than the limit.
    TooLarge,
    /// The codec failed.
    Codec(String),
}

/// A reader that counts the bytes it hands out and refuses to go past a limit.
struct Counted<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Counted<R> {
    /// The next byte; `None` at the end of the stream.
    fn byte(&mut self) -> Result<Option<u8>, Stop> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.count(1)?;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Codec(e.to_string())),
            }
        }
    }

    fn count(&mut self, n: u64) -> Result<(), Stop> {
        self.read += n;
        if self.read > self.limit {
            return Err(Stop::TooLarge);
        }
        Ok(())
    }

    /// Skips exactly `n` bytes.
    fn skip(&mut self, mut n: u64) -> Result<(), Stop> {
        let mut scratch = [0u8; 8192];
        while n > 0 {
            let want = n.min(scratch.len() as u64) as usize;
            match self.inner.read(&mut scratch[..want]) {
                Ok(0) => return Err(Stop::Truncated),
                Ok(got) => {
                    self.count(got as u64)?;
                    n -= got as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Codec(e.to_string())),
            }
        }
        Ok(())
    }

    /// A zig-zag varint of at most `max_bytes` bytes (5 for int32, 10 for int64).
    /// `Ok(None)` only when the stream ends before its first byte.
    fn varint(&mut self, max_bytes: usize) -> Result<Option<i64>, VarintError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let Some(b) = self.byte().map_err(VarintError::Stop)? else {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(VarintError::Stop(Stop::Truncated))
                };
            };
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(((value >> 1) as i64) ^ -((value & 1) as i64)));
            }
        }
        Err(VarintError::TooLong)
    }
}

enum VarintError {
    Stop(Stop),
    TooLong,
}

/// Reads `count` records from `stream`, then checks it is exhausted.
fn walk<R: Read>(
    stream: R,
    count: i32,
    limit: u64,
    dense: bool,
    f: &mut PerRecord<'_>,
) -> Result<(), BatchError> {
    let mut r = Counted {
        inner: stream,
        read: 0,
        limit,
    };
    for index in 0..count {
        let meta = match record(&mut r) {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                return Err(BatchError::Record {
                    index,
                    why: "the batch holds fewer records than its header counts",
                })
            }
            Err(RecordFault::Stop(stop)) => return Err(stopped(stop, index, limit)),
            Err(RecordFault::Invalid(why)) => return Err(BatchError::Record { index, why }),
        };
        if dense && meta.offset_delta != index {
            return Err(BatchError::Record {
                index,
                why: "offset delta out of sequence",
            });
        }
        if f(index, &meta)?.is_break() {
            return Ok(());
        }
    }
    match r.byte() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(BatchError::Record {
            index: count,
            why: "bytes left after the last record the header counts",
        }),
        Err(stop) => Err(stopped(stop, count, limit)),
    }
}

fn stopped(stop: Stop, index: i32, limit: u64) -> BatchError {
    match stop {
        Stop::Truncated => BatchError::Record {
            index,
            why: "record runs past the end of the batch",
        },
        Stop::TooLarge => BatchError::TooLarge { limit },
        Stop::Codec(e) => BatchError::Decompress(e),
    }
}

enum RecordFault {
    Stop(Stop),
    Invalid(&'static str),
}

impl From<Stop> for RecordFault {
    fn from(s: Stop) -> RecordFault {
        RecordFault::Stop(s)
    }
}

/// One record, or `None` when the stream ends where a record would start.
fn record<R: Read>(r: &mut Counted<R>) -> Result<Option<RecordMeta>, RecordFault> {
    let start = r.read;
    let Some(len) = varint32(r, "record length is not a valid varint", true)? else {
        return Ok(None);
    };
    if len < 0 {
        return Err(RecordFault::Invalid("negative record length"));
    }
    let body_start = r.read;
    let attributes = r.byte()?.ok_or(Stop::Truncated)? as i8;
    let timestamp_delta = varint_field(r, 10, "timestamp delta is not a valid varlong")?;
    let offset_delta = varint32(r, "offset delta is not a valid varint", false)?.unwrap_or(0);
    let key_len = varint32(r, "key length is not a valid varint", false)?.unwrap_or(0);
    skip_nullable(r, key_len, "negative key length")?;
    let value_len = varint32(r, "value length is not a valid varint", false)?.unwrap_or(0);
    skip_nullable(r, value_len, "negative value length")?;
    let headers = varint32(r, "header count is not a valid varint", false)?.unwrap_or(0);
    if headers < 0 {
        return Err(RecordFault::Invalid("negative header count"));
    }
    // Each header takes at least two bytes, so a claimed count beyond the record's
    // length ends the loop early with an error instead of running on.
    for _ in 0..headers {
        if r.read - body_start >= len as u64 {
            return Err(RecordFault::Invalid(
                "header count exceeds the record's bytes",
            ));
        }
        let key = varint32(r, "header key length is not a valid varint", false)?.unwrap_or(0);
        if key < 0 {
            return Err(RecordFault::Invalid("negative header key length"));
        }
        r.skip(key as u64)?;
        let value = varint32(r, "header value length is not a valid varint", false)?.unwrap_or(0);
        skip_nullable(r, value, "negative header value length")?;
    }
    if r.read - body_start != len as u64 {
        return Err(RecordFault::Invalid(
            "record length does not match its fields",
        ));
    }
    debug_assert!(r.read > start);
    Ok(Some(RecordMeta {
        attributes,
        timestamp_delta,
        offset_delta,
        key_len,
        value_len,
        headers,
    }))
}

/// An int32 varint field (`bad`: the complaint if it is malformed); `first` allows a
/// clean end of the stream before it.
fn varint32<R: Read>(
    r: &mut Counted<R>,
    bad: &'static str,
    first: bool,
) -> Result<Option<i32>, RecordFault> {
    match r.varint(5) {
        Ok(None) if first => Ok(None),
        Ok(None) => Err(RecordFault::Stop(Stop::Truncated)),
        Ok(Some(v)) => i32::try_from(v)
            .map(Some)
            .map_err(|_| RecordFault::Invalid(bad)),
        Err(VarintError::Stop(s)) => Err(RecordFault::Stop(s)),
        Err(VarintError::TooLong) => Err(RecordFault::Invalid(bad)),
    }
}

fn varint_field<R: Read>(
    r: &mut Counted<R>,
    max_bytes: usize,
    bad: &'static str,
) -> Result<i64, RecordFault> {
    match r.varint(max_bytes) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(RecordFault::Stop(Stop::Truncated)),
        Err(VarintError::Stop(s)) => Err(RecordFault::Stop(s)),
        Err(VarintError::TooLong) => Err(RecordFault::Invalid(bad)),
    }
}

/// Skips a length-prefixed field whose length -1 means null.
fn skip_nullable<R: Read>(
    r: &mut Counted<R>,
    len: i32,
    negative: &'static str,
) -> Result<(), RecordFault> {
    match len {
        -1 => Ok(()),
        n if n < -1 => Err(RecordFault::Invalid(negative)),
        n => Ok(r.skip(n as u64)?),
    }
}

/// The xerial framing Java clients wrap snappy in: this magic, then blocks of
/// `[u32 compressed length][raw snappy block]`.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;

/// Inflates a snappy records region (raw, or xerial-framed), refusing to produce more
/// than `limit` bytes; each block's stated size is checked before it is allocated.
fn snappy(body: &[u8], limit: u64) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let inflate = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let n = snap::raw::decompress_len(block)
            .map_err(|e| BatchError::Decompress(format!("snappy: {e}")))?;
        if out.len() as u64 + n as u64 > limit {
            return Err(BatchError::TooLarge { limit });
        }
        let at = out.len();
        out.resize(at + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[at..])
            .map_err(|e| BatchError::Decompress(format!("snappy: {e}")))?;
        Ok(())
    };
    if body.len() < XERIAL_HEADER || &body[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        inflate(body, &mut out)?;
        return Ok(out);
    }
    let mut rest = &body[XERIAL_HEADER..];
    while !rest.is_empty() {
        let Some(len) = rest.get(..4) else {
            return Err(BatchError::Decompress(
                "snappy: truncated xerial block length".into(),
            ));
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(block) = rest.get(4..4 + len) else {
            return Err(BatchError::Decompress(
                "snappy: xerial block runs past the end".into(),
            ));
        };
        inflate(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
