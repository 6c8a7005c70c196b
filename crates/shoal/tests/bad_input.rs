//! Untrusted input through the real binary: every malformed frame or request gets its
//! error code or a closed connection, and the agent keeps serving other connections.
//!
//! Each test sends something bad on one connection, checks what happened to that
//! connection, then opens a fresh one and checks ApiVersions, produce and fetch still work.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes};
use common::{
    encode_batch, fix_crc, raw_request, record, values, Agent, Client, Closed, METADATA_V,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::{Compression, Record};

/// How long the server may take to close a connection it refuses.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const UNSUPPORTED_VERSION: i16 = 35;
const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
const INVALID_RECORD: i16 = 87;

/// A fresh connection still works end to end.
fn assert_agent_healthy(agent: &Agent) {
    agent.connect().assert_healthy("healthy");
}

/// Sends `frame_body` in a correctly sized frame and expects the connection closed.
fn expect_frame_closes(agent: &Agent, frame_body: &[u8]) -> Closed {
    let mut c = agent.connect();
    // The write itself may fail if the server already closed; that counts as closed.
    if c.write_frame(frame_body).is_err() {
        return Closed::Reset;
    }
    c.expect_closed(CLOSE_WITHIN)
}

/// The latest offset of `topic`/0 (asserting no error).
fn latest(c: &mut Client, topic: &str) -> i64 {
    let (code, offset, _) = c.list_offsets(topic, 0, -1);
    assert_eq!(code, 0);
    offset
}

/// A well-formed uncompressed batch of a few records.
fn good_batch() -> Vec<u8> {
    encode_batch(&values(&["alpha", "beta", "gamma"]), Compression::None).to_vec()
}

/// Produces raw partition data to `topic`/0 on a fresh connection; returns the error code.
fn produce_code(agent: &Agent, topic: &str, records: Vec<u8>) -> i16 {
    let mut c = agent.connect();
    let r = c.produce_batch(topic, 0, Bytes::from(records));
    assert_eq!(r.index, 0);
    if r.error_code != 0 {
        assert_eq!(r.base_offset, -1, "a refused partition has no base offset");
    }
    r.error_code
}

#[test]
fn garbage_body_with_valid_length_closes_connection() {
    let agent = Agent::start(&[]);
    // A valid Metadata v12 header prefix, then bytes that are no Metadata request.
    let mut body = Vec::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(METADATA_V);
    body.put_i32(7);
    body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0xff, 0xfe, 0x80, 0x81, 0x82]);
    expect_frame_closes(&agent, &body);

    // Pseudo-random garbage whose "header" still names a supported API and version.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut garbage: Vec<u8> = (0..200)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    garbage[..4].copy_from_slice(&[0, ApiKey::Produce as u8, 0, 9]);
    expect_frame_closes(&agent, &garbage);

    // And a body that is garbage from the first byte (an unknown key, in practice).
    let all_garbage: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    expect_frame_closes(&agent, &all_garbage);

    assert_agent_healthy(&agent);
}

#[test]
fn array_length_far_beyond_the_frame_closes_connection() {
    let agent = Agent::start(&[]);
    // Metadata v4 (classic encoding): the topics array announces i32::MAX entries in a
    // frame of a few bytes. Decoding must fail, not try to allocate for them.
    let mut body = Vec::new();
    body.put_i32(i32::MAX);
    expect_frame_closes(&agent, &raw_request(ApiKey::Metadata as i16, 4, 1, &body));

    // Metadata v12 (flexible): a compact array of 2^32 - 2 entries, after the header's
    // empty tagged-field section.
    let mut body = vec![0u8]; // header tagged fields
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // unsigned varint u32::MAX
    expect_frame_closes(
        &agent,
        &raw_request(ApiKey::Metadata as i16, METADATA_V, 2, &body),
    );

    assert_agent_healthy(&agent);
}

#[test]
fn oversize_frame_closes_connection() {
    let agent = Agent::start(&["--max-frame-bytes", "1MiB"]);
    let mut c = agent.connect();
    // Announce 2 MiB and send only the start: the size alone must be refused.
    let mut bytes = Vec::new();
    bytes.put_i32(2 << 20);
    bytes.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]);
    c.write_raw(&bytes).expect("write the frame start");
    c.expect_closed(CLOSE_WITHIN);

    // A frame just under the limit is still read (and then refused for its content, or
    // answered): it must not be cut off by the size check.
    let mut c = agent.connect();
    let big = encode_batch(
        &[record(None, Some(&vec![b'x'; 900 * 1024]))],
        Compression::None,
    );
    c.create_topic("big", 1, &[("max.message.bytes", "2000000")]);
    let r = c.produce_batch("big", 0, big);
    assert_eq!(
        r.error_code, 0,
        "a 900 KiB produce under a 1 MiB frame limit"
    );

    assert_agent_healthy(&agent);
}

#[test]
fn negative_frame_size_closes_connection() {
    let agent = Agent::start(&[]);
    for size in [-1i32, i32::MIN] {
        let mut c = agent.connect();
        let mut bytes = Vec::new();
        bytes.put_i32(size);
        bytes.extend_from_slice(&[0, 18, 0, 3]);
        c.write_raw(&bytes).expect("write the frame");
        c.expect_closed(CLOSE_WITHIN);
    }
    assert_agent_healthy(&agent);
}

#[test]
fn unknown_api_key_closes_connection() {
    let agent = Agent::start(&[]);
    expect_frame_closes(&agent, &raw_request(999, 0, 1, &[0; 16]));
    expect_frame_closes(&agent, &raw_request(-1, 0, 2, &[0; 16]));
    assert_agent_healthy(&agent);
}

#[test]
fn unsupported_metadata_version_closes_connection() {
    let agent = Agent::start(&[]);
    let mut body = Vec::new();
    body.put_i32(-1); // all topics, in the classic encoding
    expect_frame_closes(&agent, &raw_request(ApiKey::Metadata as i16, 99, 1, &body));
    expect_frame_closes(&agent, &raw_request(ApiKey::Metadata as i16, -1, 2, &body));
    assert_agent_healthy(&agent);
}

#[test]
fn unsupported_api_versions_version_gets_v0_error_answer() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    // Whatever a future ApiVersions body looks like, the server must not parse it.
    let body = raw_request(ApiKey::ApiVersions as i16, 99, 4242, &[0, 1, 2, 3, 4, 5]);
    c.write_frame(&body).expect("write ApiVersions v99");
    let mut frame = c.read_frame().expect("an answer to ApiVersions v99");
    let header = ResponseHeader::decode(&mut frame, 0).expect("v0 response header");
    assert_eq!(header.correlation_id, 4242);
    let resp = ApiVersionsResponse::decode(&mut frame, 0).expect("v0 ApiVersions body");
    assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
    assert!(
        !resp.api_keys.is_empty(),
        "the error answer lists the supported APIs"
    );
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions itself is listed");
    assert_eq!((av.min_version, av.max_version), (0, 4));
    assert_eq!(
        bytes::Buf::remaining(&frame),
        0,
        "nothing after the v0 body"
    );

    // The connection stays usable: the client retries with a version it supports.
    let versions = c.api_versions();
    assert_eq!(versions.error_code, 0);
    c.assert_healthy("after-v99");
    assert_agent_healthy(&agent);
}

#[test]
fn tiny_frames_close_connection() {
    let agent = Agent::start(&[]);
    for body in [
        &[][..],
        &[0u8][..],
        &[0, 18, 0][..],
        &[0, 18, 0, 3, 0, 0, 0][..],
    ] {
        expect_frame_closes(&agent, body);
    }

    // Half a size prefix, then the client stops sending: the server just closes.
    let mut c = agent.connect();
    c.write_raw(&[0, 0]).expect("write two bytes");
    c.shutdown_write();
    c.expect_closed(CLOSE_WITHIN);

    // A size prefix promising more than arrives before the client stops sending.
    let mut c = agent.connect();
    c.write_raw(&[0, 0, 0, 40, 0, 18, 0, 3])
        .expect("write a frame start");
    c.shutdown_write();
    c.expect_closed(CLOSE_WITHIN);

    assert_agent_healthy(&agent);
}

#[test]
fn truncated_batch_is_corrupt_message() {
    let agent = Agent::start(&[]);
    agent.connect().create_topic("t", 1, &[]);
    let good = good_batch();

    // Cut off the end of the records.
    let cut = good[..good.len() - 5].to_vec();
    assert_eq!(produce_code(&agent, "t", cut), CORRUPT_MESSAGE);
    // Shorter than a batch header.
    assert_eq!(
        produce_code(&agent, "t", good[..30].to_vec()),
        CORRUPT_MESSAGE
    );
    // A whole batch followed by a cut one: the partition is refused as a whole.
    let mut two = good.clone();
    two.extend_from_slice(&good[..good.len() - 1]);
    assert_eq!(produce_code(&agent, "t", two), CORRUPT_MESSAGE);
    // batchLength smaller than a header.
    let mut short_len = good.clone();
    short_len[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert_eq!(produce_code(&agent, "t", short_len), CORRUPT_MESSAGE);
    // Empty records.
    assert_eq!(produce_code(&agent, "t", Vec::new()), CORRUPT_MESSAGE);

    // None of it was stored.
    let mut c = agent.connect();
    assert_eq!(latest(&mut c, "t"), 0, "nothing was stored");
    assert_agent_healthy(&agent);
}

#[test]
fn wrong_crc_is_corrupt_message() {
    let agent = Agent::start(&[]);
    agent.connect().create_topic("t", 1, &[]);
    let good = good_batch();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01; // a bit of the last record's value
    assert_eq!(produce_code(&agent, "t", flipped), CORRUPT_MESSAGE);

    let mut bad_crc = good.clone();
    bad_crc[17] ^= 0xff; // the CRC field itself
    assert_eq!(produce_code(&agent, "t", bad_crc), CORRUPT_MESSAGE);

    // Compressed batch with a corrupted payload.
    let mut gz = encode_batch(&values(&["a", "b"]), Compression::Gzip).to_vec();
    let mid = 61 + (gz.len() - 61) / 2;
    gz[mid] ^= 0x55;
    assert_eq!(produce_code(&agent, "t", gz), CORRUPT_MESSAGE);

    let mut c = agent.connect();
    assert_eq!(latest(&mut c, "t"), 0, "nothing was stored");
    assert_agent_healthy(&agent);
}

#[test]
fn wrong_magic_is_unsupported_for_message_format() {
    let agent = Agent::start(&[]);
    agent.connect().create_topic("t", 1, &[]);
    for magic in [0u8, 1, 3] {
        let mut b = good_batch();
        b[16] = magic; // outside the CRC, so only the magic is wrong
        assert_eq!(
            produce_code(&agent, "t", b),
            UNSUPPORTED_FOR_MESSAGE_FORMAT,
            "magic {magic}"
        );
    }
    assert_agent_healthy(&agent);
}

#[test]
fn inconsistent_counts_are_invalid_record() {
    let agent = Agent::start(&[]);
    agent.connect().create_topic("t", 1, &[]);

    // lastOffsetDelta (5) disagrees with the record count (2); the CRC is right.
    let mut gap: Vec<Record> = values(&["a", "b"]);
    gap[0].offset = 0;
    gap[0].sequence = -1;
    gap[1].offset = 5;
    gap[1].sequence = 4;
    let b = common::encode_records(&gap, Compression::None).to_vec();
    assert_eq!(produce_code(&agent, "t", b), INVALID_RECORD);

    // recordsCount says 3 (and lastOffsetDelta 2) but the batch holds 2 records.
    let mut b = encode_batch(&values(&["a", "b"]), Compression::None).to_vec();
    b[23..27].copy_from_slice(&2i32.to_be_bytes());
    b[57..61].copy_from_slice(&3i32.to_be_bytes());
    fix_crc(&mut b);
    assert_eq!(produce_code(&agent, "t", b), INVALID_RECORD);

    // recordsCount says 1 but the batch holds 2 records.
    let mut b = encode_batch(&values(&["a", "b"]), Compression::None).to_vec();
    b[23..27].copy_from_slice(&0i32.to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    fix_crc(&mut b);
    assert_eq!(produce_code(&agent, "t", b), INVALID_RECORD);

    // Zero records.
    let mut b = encode_batch(&values(&["a"]), Compression::None).to_vec();
    b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&0i32.to_be_bytes());
    fix_crc(&mut b);
    assert_eq!(produce_code(&agent, "t", b), INVALID_RECORD);

    let mut c = agent.connect();
    assert_eq!(latest(&mut c, "t"), 0, "nothing was stored");
    assert_agent_healthy(&agent);
}

#[test]
fn batch_over_max_message_bytes_is_message_too_large() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("small", 2, &[("max.message.bytes", "1024")]);

    let big = encode_batch(&[record(None, Some(&[7u8; 4096]))], Compression::None);
    assert!(big.len() > 1024);
    let r = c.produce_batch("small", 0, big);
    assert_eq!(r.error_code, MESSAGE_TOO_LARGE);

    // Under the limit is fine, on the same connection.
    let (code, base) = c.produce("small", 0, &values(&["fits"]));
    assert_eq!((code, base), (0, 0));

    // One request, two partitions: only the oversized one is refused.
    let big = encode_batch(&[record(None, Some(&[7u8; 4096]))], Compression::None);
    let ok = encode_batch(&values(&["ok"]), Compression::None);
    let parts = c.produce_many("small", vec![(0, big), (1, ok)]);
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (parts[0].index, parts[0].error_code),
        (0, MESSAGE_TOO_LARGE)
    );
    assert_eq!(
        (parts[1].index, parts[1].error_code, parts[1].base_offset),
        (1, 0, 0)
    );
    let got = c.fetch_all("small", 0, 0);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&b"fits"[..]));
    assert_agent_healthy(&agent);
}

#[test]
fn produce_to_unknown_topic_or_partition() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let (code, base) = c.produce("no-such-topic", 0, &values(&["x"]));
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(base, -1);

    c.create_topic("two", 2, &[]);
    for p in [2, -1, 1000] {
        let (code, _) = c.produce("two", p, &values(&["x"]));
        assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION, "partition {p}");
    }
    assert_eq!(c.produce("two", 1, &values(&["x"])), (0, 0));
    assert_agent_healthy(&agent);
}

#[test]
fn bad_requests_do_not_disturb_other_connections() {
    // One healthy connection stays open while others misbehave around it.
    let agent = Agent::start(&["--max-frame-bytes", "1MiB"]);
    let mut steady = agent.connect();
    steady.create_topic("steady", 1, &[]);
    let mut expected = 0i64;
    let bad: Vec<Vec<u8>> = vec![
        raw_request(999, 0, 1, &[]),
        raw_request(ApiKey::Metadata as i16, 99, 1, &[]),
        raw_request(ApiKey::Produce as i16, 9, 1, &[0xff; 40]),
        vec![1, 2],
    ];
    for body in bad {
        expect_frame_closes(&agent, &body);
        let (code, base) = steady.produce("steady", 0, &values(&["v"]));
        assert_eq!((code, base), (0, expected));
        expected += 1;
    }
    let mut c: Client = agent.connect();
    let mut oversize = Vec::new();
    oversize.put_i32(64 << 20);
    c.write_raw(&oversize).unwrap();
    c.expect_closed(CLOSE_WITHIN);
    assert_eq!(steady.fetch_all("steady", 0, 0).len() as i64, expected);
}

fn zigzag(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    shoal_wire::batch::write_varint(v, &mut out);
    out
}

/// A batch of `count` records around a records region that is already compressed with
/// `codec` (attributes' low bits), CRC filled in: only the records themselves are off.
fn batch_around(body: &[u8], codec: i16, count: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_i64(0);
    b.put_i32((49 + body.len()) as i32);
    b.put_i32(-1);
    b.put_u8(2);
    b.put_u32(0);
    b.put_i16(codec);
    b.put_i32(count - 1);
    b.put_i64(common::now_ms());
    b.put_i64(common::now_ms());
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count);
    b.extend_from_slice(body);
    fix_crc(&mut b);
    b
}

/// A record's bytes up to (and including) its value length; the value follows.
fn record_start(value_len: i64, record_len: i64) -> Vec<u8> {
    let mut out = zigzag(record_len);
    out.push(0); // attributes
    out.extend(zigzag(0)); // timestamp delta
    out.extend(zigzag(0)); // offset delta
    out.extend(zigzag(-1)); // null key
    out.extend(zigzag(value_len));
    out
}

/// The attacks of the hostile-client issue that once took the agent to 4 GiB: a small
/// record claiming 2^31-1 headers, plain and inside gzip, and a ~0.5 MB gzip batch that
/// inflates to 512 MiB. Each is refused on produce (nothing stored), a well-behaved
/// client is served, and the agent's peak memory stays far below what they claim.
#[test]
fn hostile_record_contents_are_refused_within_bounded_memory() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("hostile", 1, &[]);

    // One record: 64-byte value, then a header count of 2^31 - 1 and two bytes.
    let mut tail = vec![b'v'; 64];
    tail.extend(zigzag(i64::from(i32::MAX)));
    tail.extend([0, 0]);
    let head = record_start(64, 0);
    let record_len = (head.len() - 1 + tail.len()) as i64;
    let mut region = record_start(64, record_len);
    region.extend(&tail);
    assert!(region.len() < 100);
    let plain = batch_around(&region, 0, 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &region).unwrap();
    let gzipped = batch_around(&gz.finish().unwrap(), 1, 1);
    for (what, batch) in [("plain", plain), ("gzip", gzipped)] {
        let r = c.produce_batch("hostile", 0, Bytes::from(batch));
        assert_eq!(r.error_code, INVALID_RECORD, "{what}: {r:?}");
        assert_eq!(r.record_errors.len(), 1, "{what}: the bad record is named");
        assert_eq!(r.record_errors[0].batch_index, 0);
    }

    // A gzip bomb: one record whose 512 MiB value of zeros compresses to ~0.5 MB, under
    // max.message.bytes; it may inflate to 64 x 1 MiB only.
    let value_len: i64 = 512 << 20;
    let head = record_start(value_len, 0);
    let record_len = head.len() as i64 - 1 + value_len + 1;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    std::io::Write::write_all(&mut gz, &record_start(value_len, record_len)).unwrap();
    for _ in 0..512 {
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
    }
    std::io::Write::write_all(&mut gz, &[0]).unwrap(); // no headers
    let bomb = batch_around(&gz.finish().unwrap(), 1, 1);
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let r = c.produce_batch("hostile", 0, Bytes::from(bomb));
    assert_eq!(r.error_code, MESSAGE_TOO_LARGE, "{r:?}");

    assert_eq!(latest(&mut c, "hostile"), 0, "nothing was stored");
    let (code, _, _) = c.list_offsets("hostile", 0, common::now_ms() - 60_000);
    assert_eq!(code, 0, "a timestamp lookup on the partition still answers");
    assert_agent_healthy(&agent);
    let peak = agent.memory_mib("VmHWM");
    assert!(
        peak < 256,
        "peak RSS {peak} MiB (the attacks once took it to 4 GiB)"
    );
}

#[test]
fn record_timestamps_outside_the_topic_window_are_invalid_timestamp() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("window", 1, &[("message.timestamp.after.max.ms", "60000")]);
    let mut late = values(&["now", "an hour ahead"]);
    late[1].timestamp = common::now_ms() + 3_600_000;
    let r = c.produce_batch("window", 0, encode_batch(&late, Compression::Lz4));
    assert_eq!(r.error_code, 32, "INVALID_TIMESTAMP: {r:?}");
    assert_eq!(r.record_errors.first().map(|e| e.batch_index), Some(1));
    let ok = c.produce_batch(
        "window",
        0,
        encode_batch(&values(&["fine"]), Compression::Lz4),
    );
    assert_eq!(ok.error_code, 0);
}
