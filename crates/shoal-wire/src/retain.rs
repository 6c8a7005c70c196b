//! Rewriting a stored batch with only some of its records: the log cleaner's view of
//! records (see the agent's `cleaner` module for what it keeps).
//!
//! [`parse`] splits a (decompressed) records region into records, each with its key, its
//! timestamp and its bytes as stored. [`rebuild`] writes a new batch from a header and the
//! records kept: same base offset, `lastOffsetDelta`, producer fields and max timestamp,
//! so the batch still spans the same offsets and readers patch it the same way; the
//! records keep their offset deltas (the gaps are the removed records, as in Kafka) and
//! the batch is written uncompressed. With a delete horizon it is stamped as Kafka's
//! cleaner does (KIP-534): attribute bit 6 set, `baseTimestamp` = the horizon, and every
//! record's timestamp delta re-encoded against it, so record timestamps do not change.
//! [`empty_batch`] stands for a run of batches that lost every record: no records, the
//! run's offsets, so offsets after it stay where they are.
//!
//! All of it reads only bytes present: lengths are checked against the slice before use
//! and nothing is allocated from a claimed count.

use crate::batch::{read_varint, write_varint, BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD};

const CRC_START: usize = 21;
const ATTR_COMPRESSION: i16 = 0x7;
/// Kafka's delete-horizon attribute (KIP-534): `baseTimestamp` holds the time after which
/// the cleaner may drop the batch's tombstones (and transaction markers).
pub const ATTR_DELETE_HORIZON: i16 = 1 << 6;

/// One record of a batch, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord<'a> {
    pub offset_delta: i32,
    /// The record's timestamp (the batch's base timestamp plus its delta).
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub tombstone: bool,
    /// The record's fields after its timestamp delta (offset delta, key, value,
    /// headers), exactly as stored.
    rest: &'a [u8],
    attributes: u8,
}

fn bad(why: &'static str) -> BatchError {
    BatchError::Invalid(why)
}

fn varint(b: &[u8], at: &mut usize, why: &'static str) -> Result<i64, BatchError> {
    let (v, n) = read_varint(b.get(*at..).unwrap_or_default()).ok_or(bad(why))?;
    *at += n;
    Ok(v)
}

/// A nullable byte field: its length varint then its bytes.
fn nullable<'a>(
    b: &'a [u8],
    at: &mut usize,
    why: &'static str,
) -> Result<Option<&'a [u8]>, BatchError> {
    let len = varint(b, at, why)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| bad(why))?;
    let field = b.get(*at..at.saturating_add(len)).ok_or(bad(why))?;
    *at += len;
    Ok(Some(field))
}

/// Splits `region` (a batch's records, decompressed) into records. `base_timestamp` is
/// the batch's. Offset deltas must increase.
pub fn parse(region: &[u8], base_timestamp: i64) -> Result<Vec<StoredRecord<'_>>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut last_delta = -1i64;
    while at < region.len() {
        let len = varint(region, &mut at, "record length is not a varint")?;
        let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
        let body = region
            .get(at..at.saturating_add(len))
            .ok_or(bad("record runs past the end of the batch"))?;
        at += len;
        let attributes = *body.first().ok_or(bad("empty record"))?;
        let mut p = 1;
        let ts_delta = varint(body, &mut p, "timestamp delta is not a varint")?;
        let rest = &body[p..];
        let offset_delta = varint(body, &mut p, "offset delta is not a varint")?;
        if offset_delta <= last_delta || offset_delta > i64::from(i32::MAX) {
            return Err(bad("offset deltas do not increase"));
        }
        last_delta = offset_delta;
        let key = nullable(body, &mut p, "key length is invalid")?;
        let value = nullable(body, &mut p, "value length is invalid")?;
        out.push(StoredRecord {
            offset_delta: offset_delta as i32,
            timestamp: base_timestamp.saturating_add(ts_delta),
            key,
            tombstone: value.is_none(),
            rest,
            attributes,
        });
    }
    Ok(out)
}

/// Writes a batch like `header`'s (base offset, offsets spanned, producer fields,
/// timestamp type, transactional flag) holding `records`, uncompressed. With
/// `delete_horizon`, the batch carries it (see the module docs); without, it keeps the
/// header's (if it had one).
pub fn rebuild(
    header: &BatchHeader,
    records: &[&StoredRecord<'_>],
    delete_horizon: Option<i64>,
) -> Vec<u8> {
    let mut attributes = header.attributes & !ATTR_COMPRESSION;
    let base_ts = match delete_horizon {
        Some(h) => {
            attributes |= ATTR_DELETE_HORIZON;
            h
        }
        None => header.base_timestamp,
    };
    let mut body = Vec::new();
    let mut rec = Vec::new();
    for r in records {
        rec.clear();
        rec.push(r.attributes);
        write_varint(r.timestamp.wrapping_sub(base_ts), &mut rec);
        rec.extend_from_slice(r.rest);
        write_varint(rec.len() as i64, &mut body);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(&header.base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&header.max_timestamp.to_be_bytes());
    b.extend_from_slice(&header.producer_id.to_be_bytes());
    b.extend_from_slice(&header.producer_epoch.to_be_bytes());
    b.extend_from_slice(&header.base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch with no records spanning `span` offsets from `base_offset` (1 ..= 2^31),
/// stamped `timestamp`: what is left of a run of batches whose records were all removed.
pub fn empty_batch(base_offset: i64, span: i64, timestamp: i64) -> Vec<u8> {
    let header = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: (span - 1).clamp(0, i64::from(i32::MAX)) as i32,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: 0,
    };
    rebuild(&header, &[], None)
}

/// The delete horizon a batch carries, if any.
pub fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::walk;
    use crate::records::{for_each_stored_record, records_region, Limits};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    fn encoded(n: i64, compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: Some(bytes::Bytes::from(format!("k{}", i % 3))),
                value: (i != 4).then(|| bytes::Bytes::from(format!("v{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn keeps_chosen_records_offsets_and_timestamps() {
        for compression in [Compression::None, Compression::Lz4, Compression::Gzip] {
            let b = encoded(6, compression);
            let h = BatchHeader::parse(&b).unwrap();
            let limits = Limits {
                max_uncompressed: 1 << 20,
            };
            let region = records_region(&b, limits).unwrap();
            let recs = parse(&region, h.base_timestamp).unwrap();
            assert_eq!(recs.len(), 6);
            assert_eq!(recs[1].key, Some(&b"k1"[..]));
            assert!(recs[4].tombstone && !recs[3].tombstone);
            let kept: Vec<&StoredRecord> =
                recs.iter().filter(|r| r.offset_delta % 2 == 0).collect();
            for horizon in [None, Some(99_999)] {
                let out = rebuild(&h, &kept, horizon);
                // A whole batch with a right CRC (produce's validator would refuse the
                // gaps; readers take them).
                let infos: Vec<_> = walk(&out).collect();
                assert_eq!(infos.len(), 1);
                assert_eq!(infos[0].range.len(), out.len());
                let oh = BatchHeader::parse(&out).unwrap();
                assert_eq!(crc32c::crc32c(&out[21..]), oh.crc);
                assert_eq!(oh.offset_span(), h.offset_span());
                assert_eq!(oh.compression(), 0);
                assert_eq!(delete_horizon(&oh), horizon);
                let mut deltas = Vec::new();
                for_each_stored_record(&out, limits, |_, m| {
                    deltas.push(m.offset_delta);
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .unwrap();
                assert_eq!(deltas, vec![0, 2, 4]);
                let mut data = bytes::Bytes::from(out.clone());
                let decoded = RecordBatchDecoder::decode(&mut data).unwrap();
                let got: Vec<(i64, i64, bool)> = decoded
                    .records
                    .iter()
                    .map(|r| (r.offset, r.timestamp, r.value.is_none()))
                    .collect();
                assert_eq!(
                    got,
                    vec![(0, 1_000, false), (2, 1_002, false), (4, 1_004, true)]
                );
            }
        }
    }

    #[test]
    fn an_empty_batch_spans_its_run() {
        let e = empty_batch(40, 10, 5);
        let infos: Vec<_> = walk(&e).collect();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].header.offset_span(), 10);
        assert_eq!(infos[0].header.records_count, 0);
        assert_eq!(crc32c::crc32c(&e[21..]), infos[0].header.crc);
    }

    #[test]
    fn malformed_regions_are_errors_not_panics() {
        for region in [&[0x01][..], &[0x7f, 0], &[0x04, 0, 0, 0, 0x05], &[0xff; 12]] {
            assert!(parse(region, 0).is_err(), "{region:?}");
        }
        // Offset deltas must increase.
        let b = encoded(2, Compression::None);
        let region = &b[HEADER_LEN..];
        let mut twice = region.to_vec();
        twice.extend_from_slice(region);
        assert!(parse(&twice, 0).is_err());
    }
}
