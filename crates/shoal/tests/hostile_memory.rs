//! Clients that try to make the agent hold memory, against the real binary: a frame of
//! exactly `--max-frame-bytes`, many pipelined maximum-size Fetches whose answers are
//! never read, requests whose decoded form would dwarf their frame. Each attack is
//! followed by a well-behaved client that must be served (ApiVersions within 1 s, then
//! produce and fetch), a look at the agent's peak memory, and a check that every
//! acknowledged record is still there.

mod common;

use std::time::{Duration, Instant};

use bytes::BufMut;
use common::{
    encode_batch, fetch_request, produce_request, raw_request, record, Agent, Client, FETCH_V,
    PRODUCE_V,
};
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest};
use kafka_protocol::protocol::{Encodable, Request};
use kafka_protocol::records::Compression;

/// A client beside the attack: answered quickly, and able to produce and fetch.
fn assert_served(agent: &Agent, what: &str) {
    let mut c = agent.connect();
    let started = Instant::now();
    let versions = c.api_versions();
    let took = started.elapsed();
    assert_eq!(versions.error_code, 0);
    assert!(
        took < Duration::from_secs(1),
        "{what}: ApiVersions took {took:?}"
    );
    c.assert_healthy("healthy");
}

/// The body (header included) of a Produce request as the typed encoder writes it.
fn produce_frame(topic: &str, value_len: usize) -> Vec<u8> {
    let batch = encode_batch(
        &[record(None, Some(&vec![b'v'; value_len]))],
        Compression::None,
    );
    let req = produce_request(topic, vec![(0, batch)]);
    let mut body = bytes::BytesMut::new();
    kafka_protocol::messages::RequestHeader::default()
        .with_request_api_key(ProduceRequest::KEY)
        .with_request_api_version(PRODUCE_V)
        .with_correlation_id(1)
        .encode(&mut body, ApiKey::Produce.request_header_version(PRODUCE_V))
        .unwrap();
    req.encode(&mut body, PRODUCE_V).unwrap();
    body.to_vec()
}

/// Every offset of `topic`/0 below `end` comes back, in order.
fn assert_all_there(c: &mut Client, topic: &str, end: i64) {
    let got = c.fetch_all(topic, 0, 0);
    assert_eq!(
        got.len() as i64,
        end,
        "every acknowledged record of {topic}"
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
}

#[test]
fn a_frame_of_exactly_max_frame_bytes_is_served_and_one_byte_more_is_not() {
    let limit = 1 << 20;
    let agent = Agent::start(&["--max-frame-bytes", "1MiB"]);
    let mut c = agent.connect();
    c.create_topic("exact", 1, &[("max.message.bytes", "2000000")]);
    // Find the value length whose request frame is exactly the limit.
    let mut value = limit - 200;
    let frame = loop {
        let f = produce_frame("exact", value);
        match f.len().cmp(&limit) {
            std::cmp::Ordering::Equal => break f,
            std::cmp::Ordering::Less => value += limit - f.len(),
            std::cmp::Ordering::Greater => value -= f.len() - limit,
        }
    };
    c.write_frame(&frame).unwrap();
    let answer = c
        .read_frame()
        .expect("a frame of exactly the limit is answered");
    assert!(answer.len() > 8);
    assert_eq!(
        c.list_offsets("exact", 0, -1).1,
        1,
        "and its record was stored"
    );

    let mut over = produce_frame("exact", value + 1);
    assert_eq!(over.len(), limit + 1);
    let mut c = agent.connect();
    over.truncate(64); // the size prefix alone is refused: send only the start
    let mut bytes = Vec::new();
    bytes.put_i32((limit + 1) as i32);
    bytes.extend_from_slice(&over);
    c.write_raw(&bytes).unwrap();
    c.expect_closed(Duration::from_secs(10));
    assert_served(&agent, "after the frames at and over the limit");
}

/// 64 Fetches asking for everything, pipelined on one connection whose answers are not
/// read: before request memory was budgeted, each answer (16 MiB) was built and queued,
/// about 2 GiB. Now answers take memory only from the budgets, so the agent stays under
/// cache + produce buffer + request budget + its own overhead.
#[test]
fn pipelined_max_fetches_that_are_never_read_stay_within_the_memory_bound() {
    let agent = Agent::start(&[
        "--cache-size",
        "32MiB",
        "--queued-max-request-bytes",
        "96MiB",
        "--max-request-bytes-per-connection",
        "64MiB",
        "--max-frame-bytes",
        "32MiB",
    ]);
    let mut c = agent.connect();
    c.create_topic("big", 1, &[]);
    // 40 MiB in 1000 KB batches of pseudo-random (incompressible) bytes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        let value: Vec<u8> = (0..1_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let r = c.produce_batch(
            "big",
            0,
            encode_batch(&[record(None, Some(&value))], Compression::None),
        );
        assert_eq!(r.error_code, 0);
    }
    let base = agent.memory_mib("VmRSS");

    let mut hog = agent.connect();
    let all = fetch_request("big", 0, 0, 0, i32::MAX);
    for _ in 0..64 {
        hog.send_only(&all, FETCH_V);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_served(&agent, "beside 64 unread maximum fetches");
    let peak = agent.memory_mib("VmHWM");
    // 32 cache + 64 produce buffer + 96 requests + ~60 for the process and allocator.
    assert!(
        peak < 256,
        "peak RSS {peak} MiB (base {base} MiB) with 64 unread 16 MiB fetches"
    );

    // The hog's answers all arrive, in order, once it reads them.
    for i in 0..64 {
        let r = hog.recv::<FetchRequest>();
        assert_eq!(r.error_code, 0, "fetch {i}");
    }
    assert_all_there(&mut c, "big", 40);
}

/// Requests whose decoded form would be many times their frame: a Metadata request of
/// empty topic names beyond the budget's share is refused before it is decoded, and a
/// Produce request of a million empty partitions is refused for what it would decode to.
#[test]
fn requests_that_would_decode_beyond_the_budget_are_refused_unread() {
    let agent = Agent::start(&[
        "--max-request-bytes-per-connection",
        "100MiB",
        "--max-frame-bytes",
        "100MiB",
    ]);
    let mut c = agent.connect();
    c.create_topic("kept", 1, &[]);
    let (code, _) = c.produce("kept", 0, &[record(None, Some(b"acknowledged"))]);
    assert_eq!(code, 0);

    // Metadata v4 with 4 MiB of one-byte-long topic names (2-byte length, 1 byte): a
    // little over 1/32 of the connection budget.
    let names = (4 << 20) / 3 + 1;
    let mut body = Vec::with_capacity(4 + names * 3 + 1);
    body.put_i32(names as i32);
    for _ in 0..names {
        body.put_i16(1);
        body.put_u8(b'a');
    }
    body.put_u8(0); // allow_auto_topic_creation
    let mut hog = agent.connect();
    let frame = raw_request(ApiKey::Metadata as i16, 4, 1, &body);
    let _ = hog.write_frame(&frame);
    hog.expect_closed(Duration::from_secs(10));
    agent.wait_for_log("could decode to");

    // Produce v8 with 2,000,000 partitions, each a 4-byte index and a null records field
    // (10 MB of frame that would decode to ~500 MB).
    let partitions = 2_000_000;
    let mut body = Vec::with_capacity(16 + partitions * 8);
    body.put_i16(-1); // transactional id
    body.put_i16(1); // acks
    body.put_i32(1000); // timeout
    body.put_i32(1); // one topic
    body.put_i16(4);
    body.extend_from_slice(b"kept");
    body.put_i32(partitions as i32);
    for p in 0..partitions {
        body.put_i32(p as i32);
        body.put_i32(-1);
    }
    let mut hog = agent.connect();
    let _ = hog.write_frame(&raw_request(ApiKey::Produce as i16, 8, 1, &body));
    hog.expect_closed(Duration::from_secs(10));
    agent.wait_for_log("topics, partitions and tagged");

    assert_served(&agent, "after the refused requests");
    let peak = agent.memory_mib("VmHWM");
    assert!(peak < 200, "peak RSS {peak} MiB");
    let got = c.fetch_all("kept", 0, 0);
    assert_eq!(got[0].value.as_deref(), Some(&b"acknowledged"[..]));
}

/// Metadata growth has caps: CreateTopics with a million partitions is refused at once
/// (before anything is written), and so are a topic or a request beyond
/// `--max-partitions-per-topic`, `--max-partitions` and `--max-topics-per-request`.
#[test]
fn metadata_growth_stops_at_its_caps_with_kafka_errors() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest};
    const INVALID_PARTITIONS: i16 = 37;
    const POLICY_VIOLATION: i16 = 44;
    let agent = Agent::start(&[
        "--max-partitions-per-topic",
        "1000",
        "--max-partitions",
        "1600",
        "--max-topics-per-request",
        "3",
    ]);
    let mut c = agent.connect();
    let started = Instant::now();
    let r = c.create_topic_raw("million", 1_000_000, &[]);
    assert_eq!(r.topics[0].error_code, INVALID_PARTITIONS, "{r:?}");
    let message = r.topics[0].error_message.as_deref().unwrap_or_default();
    assert!(message.contains("--max-partitions-per-topic"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused before any write"
    );
    assert_eq!(
        c.metadata(Some(&["million"])).topics[0].error_code,
        3,
        "not created"
    );

    c.create_topic("first", 1000, &[]);
    // 1000 + 700 is over the total of 1600.
    let r = c.create_topic_raw("second", 700, &[]);
    assert_eq!(r.topics[0].error_code, POLICY_VIOLATION, "{r:?}");
    c.create_topic("second", 400, &[]);
    // Growing past either cap fails; growing within them works.
    let grow = |c: &mut Client, topic: &str, count: i32| {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(common::topic_name(topic))
                .with_count(count)
                .with_assignments(None)])
            .with_timeout_ms(10_000);
        c.send(&req, 3).results[0].error_code
    };
    assert_eq!(grow(&mut c, "second", 1001), INVALID_PARTITIONS);
    assert_eq!(grow(&mut c, "second", 700), POLICY_VIOLATION);
    assert_eq!(grow(&mut c, "second", 500), 0);
    assert_eq!(c.partition_count("second"), 500);

    // Four topics in one request: the whole request fails, nothing is created.
    let topics = (0..4)
        .map(|i| {
            CreatableTopic::default()
                .with_name(common::topic_name(&format!("batch-{i}")))
                .with_num_partitions(1)
                .with_replication_factor(-1)
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000);
    let r = c.send(&req, common::CREATE_TOPICS_V);
    assert!(
        r.topics.iter().all(|t| t.error_code == POLICY_VIOLATION),
        "{r:?}"
    );
    assert_eq!(c.metadata(Some(&["batch-0"])).topics[0].error_code, 3);
    assert_served(&agent, "after the refused growth");
}
