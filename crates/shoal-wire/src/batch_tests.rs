use super::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

fn record(i: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
    let mut headers = kafka_protocol::indexmap::IndexMap::new();
    headers.insert(
        StrBytes::from_static_str("h"),
        Some(Bytes::from_static(b"v")),
    );
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
        timestamp: 1_700_000_000_000 + i,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers,
    }
}

fn encode(records: &[Record], compression: Compression) -> BytesMut {
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
    buf
}

fn codec(i: u8) -> Compression {
    match i % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

#[test]
fn accepts_every_codec_and_reports_the_header() {
    for c in 0..5 {
        let records: Vec<_> = (0..7)
            .map(|i| record(i, Some(b"k"), if i == 3 { None } else { Some(b"value") }))
            .collect();
        let buf = encode(&records, codec(c));
        let batches = validate_batches(&buf).unwrap();
        assert_eq!(batches.len(), 1);
        let h = batches[0].header;
        assert_eq!(h.records_count, 7);
        assert_eq!(h.offset_span(), 7);
        assert_eq!(h.compression(), c as i16);
        assert_eq!(batches[0].range, 0..buf.len());
    }
}

#[test]
fn rejects_wrong_crc_truncation_and_magic() {
    let records: Vec<_> = (0..3).map(|i| record(i, None, Some(b"x"))).collect();
    let good = encode(&records, Compression::None);

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert!(matches!(
        validate_batches(&bad_crc),
        Err(BatchError::Crc { .. })
    ));

    let truncated = &good[..good.len() - 5];
    assert!(matches!(
        validate_batches(truncated),
        Err(BatchError::Structure(_))
    ));
    assert!(matches!(
        validate_batches(&good[..30]),
        Err(BatchError::Structure(_))
    ));

    let mut magic = good.clone();
    magic[16] = 1;
    assert_eq!(validate_batches(&magic), Err(BatchError::Magic(1)));
    assert!(validate_batches(&[]).is_err());
}

#[test]
fn rejects_a_count_that_disagrees_with_the_records() {
    let records: Vec<_> = (0..3).map(|i| record(i, None, Some(b"x"))).collect();
    let mut buf = encode(&records, Compression::None);
    // Claim 4 records (and a matching lastOffsetDelta) and fix the CRC.
    buf[57..61].copy_from_slice(&4i32.to_be_bytes());
    buf[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        validate_batches(&buf),
        Err(BatchError::Invalid(_))
    ));
}

#[test]
fn base_offset_patch_keeps_the_crc_and_shows_in_decoded_offsets() {
    let records: Vec<_> = (0..4).map(|i| record(i, Some(b"k"), Some(b"v"))).collect();
    let mut buf = encode(&records, Compression::Lz4);
    set_base_offset(&mut buf, 1234);
    validate_batches(&buf).unwrap();
    let decoded = RecordBatchDecoder::decode(&mut buf.clone().freeze()).unwrap();
    let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1234, 1235, 1236, 1237]);
}

#[test]
fn log_append_time_rewrites_header_and_crc() {
    let records: Vec<_> = (0..2).map(|i| record(i, None, Some(b"v"))).collect();
    let mut buf = encode(&records, Compression::Gzip);
    set_log_append_time(&mut buf, 42);
    let h = validate_batches(&buf).unwrap()[0].header;
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 42);
    let decoded = RecordBatchDecoder::decode(&mut buf.freeze()).unwrap();
    assert!(decoded
        .records
        .iter()
        .all(|r| r.timestamp_type == TimestampType::LogAppend));
}

#[test]
fn walk_stops_at_a_cut() {
    let a = encode(&[record(0, None, Some(b"a"))], Compression::None);
    let b = encode(&[record(0, None, Some(b"bb"))], Compression::None);
    let mut both = a.clone();
    both.extend_from_slice(&b);
    assert_eq!(walk(&both).count(), 2);
    assert_eq!(walk(&both[..both.len() - 1]).count(), 1);
    assert_eq!(validate_batches(&both).unwrap().len(), 2);
}

proptest! {
    #[test]
    fn any_encoded_batches_validate(
        batches in prop::collection::vec(
            (0u8..5, prop::collection::vec(
                (prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
                 prop::option::of(prop::collection::vec(any::<u8>(), 0..200))), 1..20)),
            1..5)
    ) {
        let mut all = BytesMut::new();
        let mut counts = Vec::new();
        for (c, recs) in &batches {
            let records: Vec<_> = recs.iter().enumerate()
                .map(|(i, (k, v))| record(i as i64, k.as_deref(), v.as_deref()))
                .collect();
            all.extend_from_slice(&encode(&records, codec(*c)));
            counts.push(records.len() as i32);
        }
        let got = validate_batches(&all).unwrap();
        prop_assert_eq!(got.iter().map(|b| b.header.records_count).collect::<Vec<_>>(), counts);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate_batches(&data);
        let _ = walk(&data).count();
    }

    #[test]
    fn any_single_byte_flip_in_crc_range_is_caught(pos in 21usize..200, flip in 1u8..=255) {
        let records: Vec<_> = (0..5).map(|i| record(i, Some(b"key"), Some(&[7u8; 40]))).collect();
        let mut buf = encode(&records, Compression::None);
        let pos = pos % buf.len();
        prop_assume!(pos >= 21);
        buf[pos] ^= flip;
        prop_assert!(validate_batches(&buf).is_err());
    }
}

#[test]
fn sequences_wrap_like_kafka() {
    assert_eq!(add_sequence(0, 4), 4);
    assert_eq!(add_sequence(i32::MAX, 0), i32::MAX);
    assert_eq!(add_sequence(i32::MAX, 1), 0);
    assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
}

#[test]
fn control_batches_validate_and_say_what_they_end() {
    for commit in [false, true] {
        let b = control_batch(42, 3, commit, 0, 1_700_000_000_000);
        let infos = validate_batches(&b).expect("a marker is a valid batch");
        assert_eq!(infos.len(), 1);
        let h = &infos[0].header;
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.records_count),
            (42, 3, 1)
        );
        assert_eq!(h.offset_span(), 1);
        // Record body: len, attrs, ts delta, offset delta, key len 4, key = [0,0,0,type].
        let key_at = HEADER_LEN + 5;
        assert_eq!(&b[key_at..key_at + 4], &[0, 0, 0, u8::from(commit)]);
    }
}

#[test]
fn varints_round_trip() {
    for v in [
        0i64,
        1,
        -1,
        63,
        -64,
        64,
        300,
        i32::MAX as i64,
        i32::MIN as i64,
        i64::MAX,
        i64::MIN,
    ] {
        let mut out = Vec::new();
        write_varint(v, &mut out);
        assert_eq!(read_varint(&out), Some((v, out.len())), "{v}");
    }
}
