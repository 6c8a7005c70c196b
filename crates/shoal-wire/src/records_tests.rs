use super::*;
use crate::batch::{validate_batches, LOG_OVERHEAD};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use std::io::Write;

const LIMITS: Limits = Limits {
    max_uncompressed: 1 << 20,
};

fn record(i: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: usize) -> Record {
    let mut h = kafka_protocol::indexmap::IndexMap::new();
    for n in 0..headers {
        h.insert(
            StrBytes::from_string(format!("h{n}")),
            (n % 2 == 0).then(|| Bytes::from_static(b"v")),
        );
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: i as i32,
        timestamp: 1_700_000_000_000 + 7 * i,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: h,
    }
}

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A batch around a hand-made records region: header fields for `count` records,
/// the region compressed with `codec`, the CRC filled in (so only the records are off).
fn batch_around(region: &[u8], codec: i16, count: i32) -> Vec<u8> {
    wrap(&compress(region, codec), codec, count)
}

fn compress(region: &[u8], codec: i16) -> Vec<u8> {
    match codec {
        0 => region.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(region).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(region).unwrap(),
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(region).unwrap();
            let (out, r) = e.finish();
            r.unwrap();
            out
        }
        _ => zstd::encode_all(region, 3).unwrap(),
    }
}

/// A batch header for `count` records around an already compressed `body`.
fn wrap(body: &[u8], codec: i16, count: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&codec.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn zigzag(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    crate::batch::write_varint(v, &mut out);
    out
}

/// One record's bytes: attributes 0, the deltas, key, value, then `headers` as given
/// (already encoded) under a claimed count of `header_count`.
fn raw_record(
    offset_delta: i64,
    key: &[u8],
    value: &[u8],
    header_count: i64,
    headers: &[u8],
) -> Vec<u8> {
    let mut r = vec![0u8];
    r.extend(zigzag(3));
    r.extend(zigzag(offset_delta));
    r.extend(zigzag(key.len() as i64));
    r.extend_from_slice(key);
    r.extend(zigzag(value.len() as i64));
    r.extend_from_slice(value);
    r.extend(zigzag(header_count));
    r.extend_from_slice(headers);
    let mut out = zigzag(r.len() as i64);
    out.extend(r);
    out
}

#[test]
fn real_batches_of_every_codec_read_back_field_by_field() {
    let records: Vec<Record> = (0..50)
        .map(|i| {
            let key = (i % 3 != 0).then(|| format!("key-{i}").into_bytes());
            let value = (i % 7 != 0).then(|| vec![b'x'; (i * 13) as usize]);
            record(i, key.as_deref(), value.as_deref(), (i % 4) as usize)
        })
        .collect();
    for codec in CODECS {
        let batch = encode(&records, codec);
        validate_batches(&batch).unwrap();
        let mut seen = Vec::new();
        for_each_record(&batch, LIMITS, |i, m| {
            seen.push((i, *m));
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(seen.len(), 50, "{codec:?}");
        for (i, m) in seen {
            let r = &records[i as usize];
            assert_eq!(m.offset_delta, i);
            assert_eq!(m.timestamp_delta, 7 * i as i64, "{codec:?}");
            assert_eq!(m.key_len, r.key.as_ref().map_or(-1, |k| k.len() as i32));
            assert_eq!(m.value_len, r.value.as_ref().map_or(-1, |v| v.len() as i32));
            assert_eq!(m.headers, r.headers.len() as i32);
        }
    }
}

#[test]
fn raw_snappy_and_hand_made_regions_of_every_codec_are_read() {
    let region: Vec<u8> = (0..3)
        .flat_map(|i| raw_record(i, b"k", b"value", 0, &[]))
        .collect();
    for codec in 0..=4 {
        let batch = batch_around(&region, codec, 3);
        validate_batches(&batch).unwrap();
        check_records(&batch, LIMITS).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
    }
}

/// The attack from the hostile-client issue: a ~100-byte record that claims 2^31-1
/// headers. kafka-protocol's decoder reserved gigabytes for it; here the claim only
/// makes the walk run out of bytes.
#[test]
fn a_huge_claimed_header_count_is_an_invalid_record_not_an_allocation() {
    let region = raw_record(0, b"k", &[b'v'; 64], i64::from(i32::MAX), &[0, 0]);
    for codec in 0..=4 {
        let batch = batch_around(&region, codec, 1);
        let err = check_records(&batch, LIMITS).unwrap_err();
        assert!(
            matches!(err, BatchError::Record { index: 0, .. }),
            "codec {codec}: {err:?}"
        );
        assert_eq!(err.kafka_code(), 87);
    }
}

#[test]
fn a_batch_that_inflates_past_the_limit_stops_there() {
    // One record whose 64 MiB value of zeros compresses to at most ~3 MiB; the limit
    // is 1 MiB, so reading stops there.
    let region = raw_record(0, b"k", &vec![0u8; 64 << 20], 0, &[]);
    for codec in 1..=4 {
        let batch = batch_around(&region, codec, 1);
        assert!(
            batch.len() < (4 << 20),
            "codec {codec}: {} bytes",
            batch.len()
        );
        let err = check_records(&batch, LIMITS).unwrap_err();
        assert_eq!(
            err,
            BatchError::TooLarge { limit: 1 << 20 },
            "codec {codec}"
        );
        assert_eq!(err.kafka_code(), 10);
    }
}

#[test]
fn malformed_regions_are_refused_with_the_record_index() {
    let good = |i| {
        raw_record(
            i,
            b"k",
            b"v",
            1,
            &[zigzag(1), b"h".to_vec(), zigzag(-1)].concat(),
        )
    };
    let two: Vec<u8> = [good(0), good(1)].concat();
    let cases: Vec<(&str, Vec<u8>, i32, i32)> = vec![
        ("fewer records than counted", two.clone(), 3, 2),
        ("more records than counted", two.clone(), 1, 1),
        (
            "truncated second record",
            two[..two.len() - 2].to_vec(),
            2,
            1,
        ),
        ("out-of-sequence offsets", [good(0), good(5)].concat(), 2, 1),
        (
            "negative key length",
            {
                let mut r = vec![0u8];
                r.extend(zigzag(0));
                r.extend(zigzag(0));
                r.extend(zigzag(-5));
                let mut out = zigzag(r.len() as i64);
                out.extend(r);
                out
            },
            1,
            0,
        ),
        (
            "record length longer than its fields",
            {
                let mut r = good(0);
                r[0] += 2;
                r.extend([0, 0]);
                r
            },
            1,
            0,
        ),
        (
            "varint longer than five bytes",
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            1,
            0,
        ),
    ];
    for (what, region, count, index) in cases {
        for codec in [0, 1, 4] {
            let batch = batch_around(&region, codec, count);
            let err = check_records(&batch, LIMITS).unwrap_err();
            assert_eq!(
                err.record_index(),
                Some(index),
                "{what}, codec {codec}: {err:?}"
            );
        }
    }
}

#[test]
fn a_cut_codec_stream_is_refused() {
    let region: Vec<u8> = (0..20)
        .flat_map(|i| raw_record(i, b"key", &[b'v'; 100], 0, &[]))
        .collect();
    for codec in 1..=4 {
        let body = compress(&region, codec);
        let batch = wrap(&body[..body.len() / 2], codec, 20);
        validate_batches(&batch).unwrap();
        let err = check_records(&batch, LIMITS).unwrap_err();
        assert!(
            matches!(err, BatchError::Decompress(_) | BatchError::Record { .. }),
            "codec {codec}: {err:?}"
        );
    }
}

proptest! {
    #[test]
    fn random_regions_never_panic(region in prop::collection::vec(any::<u8>(), 0..400), count in 0i32..5, codec in 0i16..=4) {
        let batch = batch_around(&region, codec, count.max(1));
        let _ = check_records(&batch, LIMITS);
    }

    #[test]
    fn random_compressed_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), codec in 1i16..=4) {
        let mut batch = batch_around(&[], 0, 1);
        batch.truncate(HEADER_LEN);
        batch.extend_from_slice(&body);
        let len = (batch.len() - LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
        batch[21..23].copy_from_slice(&codec.to_be_bytes());
        let _ = check_records(&batch, LIMITS);
    }
}
