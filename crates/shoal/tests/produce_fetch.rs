//! End to end through the real binary: ApiVersions, topic creation, produce with every
//! compression codec, fetch (by name and by topic id), ListOffsets, and long-polls.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    encode_batch, fetch_request, record, record_with_headers, values, Agent, Client, FETCH_V,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn api_versions_lists_the_implemented_apis() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let resp = c.api_versions();
    assert_eq!(resp.error_code, 0);
    let expected = [
        (ApiKey::Produce, 3, 12),
        (ApiKey::Fetch, 4, 16),
        (ApiKey::ListOffsets, 1, 8),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::CreateTopics, 2, 7),
        (ApiKey::DeleteTopics, 1, 6),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::AlterConfigs, 0, 2),
        (ApiKey::CreatePartitions, 0, 3),
        (ApiKey::IncrementalAlterConfigs, 0, 1),
        (ApiKey::DescribeCluster, 0, 1),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::JoinGroup, 0, 9),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 5),
        (ApiKey::OffsetCommit, 2, 9),
        (ApiKey::OffsetFetch, 1, 8),
        (ApiKey::ListGroups, 0, 4),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::ConsumerGroupHeartbeat, 0, 1),
        (ApiKey::ConsumerGroupDescribe, 0, 1),
        (ApiKey::OffsetDelete, 0, 0),
        (ApiKey::InitProducerId, 0, 5),
        (ApiKey::AddPartitionsToTxn, 0, 5),
        (ApiKey::AddOffsetsToTxn, 0, 4),
        (ApiKey::EndTxn, 0, 5),
        (ApiKey::TxnOffsetCommit, 0, 5),
        (ApiKey::DescribeProducers, 0, 0),
        (ApiKey::DescribeTransactions, 0, 0),
        (ApiKey::ListTransactions, 0, 1),
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::ListPartitionReassignments, 0, 0),
        (ApiKey::AlterPartitionReassignments, 0, 1),
        (ApiKey::ElectLeaders, 0, 2),
        (ApiKey::DescribeLogDirs, 1, 4),
        (ApiKey::AlterReplicaLogDirs, 1, 2),
    ];
    for (key, min, max) in expected {
        let listed = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} is listed"));
        assert_eq!(
            (listed.min_version, listed.max_version),
            (min, max),
            "{key:?} version range"
        );
    }
    // Each API once; nothing listed that the server would then refuse.
    let mut keys: Vec<i16> = resp.api_keys.iter().map(|k| k.api_key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), resp.api_keys.len(), "no API listed twice");
    for k in &resp.api_keys {
        assert!(k.min_version <= k.max_version, "{k:?}");
        assert!(ApiKey::try_from(k.api_key).is_ok(), "{k:?} is a Kafka API");
    }

    // Every advertised version of ApiVersions answers.
    for v in 0..=4 {
        let r = c.send(&kafka_protocol::messages::ApiVersionsRequest::default(), v);
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
        assert_eq!(r.api_keys.len(), resp.api_keys.len(), "ApiVersions v{v}");
    }
}

/// The records a test batch holds: keys, null keys, null and empty values, headers
/// (including a null header value), and explicit timestamps.
fn sample_records(tag: &str, base_ts: i64) -> Vec<Record> {
    let mut out = vec![
        record(Some(b"k0"), Some(format!("{tag}-v0").as_bytes())),
        record(None, Some(format!("{tag}-v1").as_bytes())),
        record(Some(b"tombstone"), None),
        record(Some(b"empty"), Some(b"")),
        record_with_headers(
            Some(b"h"),
            Some(format!("{tag}-with-headers").as_bytes()),
            &[("trace", Some(b"abc")), ("nil", None), ("empty", Some(b""))],
        ),
        // Compressible bulk, so codecs have something to do.
        record(Some(b"bulk"), Some(tag.repeat(500).as_bytes())),
    ];
    for (i, r) in out.iter_mut().enumerate() {
        r.timestamp = base_ts + i as i64;
    }
    out
}

fn assert_same_record(got: &Record, want: &Record, offset: i64) {
    assert_eq!(got.offset, offset);
    assert_eq!(got.key, want.key, "key at offset {offset}");
    assert_eq!(got.value, want.value, "value at offset {offset}");
    assert_eq!(got.headers, want.headers, "headers at offset {offset}");
    assert_eq!(
        got.timestamp, want.timestamp,
        "timestamp at offset {offset}"
    );
}

#[test]
fn produce_and_fetch_every_codec_on_three_partitions() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("codecs", 3, &[]);
    let base_ts = common::now_ms() - 60_000;

    // expected[partition] = records in offset order
    let mut expected: Vec<Vec<Record>> = vec![Vec::new(); 3];
    for round in 0..2 {
        for (i, codec) in CODECS.iter().enumerate() {
            let partition = ((i + round) % 3) as i32;
            let records = sample_records(&format!("{codec:?}-{round}"), base_ts);
            let batch = encode_batch(&records, *codec);
            let r = c.produce_batch("codecs", partition, batch);
            assert_eq!(r.error_code, 0, "{codec:?} to partition {partition}");
            assert_eq!(
                r.base_offset,
                expected[partition as usize].len() as i64,
                "{codec:?} to partition {partition}: base offset follows what is there"
            );
            expected[partition as usize].extend(records);
        }
    }

    for (p, want) in expected.iter().enumerate() {
        let p = p as i32;
        let got = c.fetch_all("codecs", p, 0);
        assert_eq!(got.len(), want.len(), "partition {p} record count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_same_record(g, w, i as i64);
        }
        // From the middle of a (compressed) batch: starts at the asked offset.
        let mid = c.fetch_all("codecs", p, 3);
        assert_eq!(mid.len(), want.len() - 3);
        assert_same_record(&mid[0], &want[3], 3);

        let (code, earliest, _) = c.list_offsets("codecs", p, -2);
        assert_eq!((code, earliest), (0, 0), "earliest of partition {p}");
        let (code, latest, _) = c.list_offsets("codecs", p, -1);
        assert_eq!(
            (code, latest),
            (0, want.len() as i64),
            "latest of partition {p}"
        );
    }

    // The fetched batches keep the codec they were produced with.
    let p = c.fetch("codecs", 0, 0, 0, 16 << 20);
    let mut data = p.records.unwrap_or_default();
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut data)
        .expect("decode partition 0");
    let codecs: Vec<Compression> = sets.iter().map(|s| s.compression).collect();
    assert_eq!(
        codecs,
        vec![Compression::None, Compression::Lz4, Compression::Snappy]
    );
}

#[test]
fn list_offsets_by_timestamp() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("ts", 1, &[]);
    assert_eq!(c.list_offsets("ts", 0, -2).1, 0);
    assert_eq!(c.list_offsets("ts", 0, -1).1, 0);

    let base_ts = 1_700_000_000_000i64;
    for (i, codec) in [Compression::None, Compression::Zstd].iter().enumerate() {
        let records: Vec<Record> = (0..5)
            .map(|j| {
                let mut r = record(None, Some(format!("r{i}{j}").as_bytes()));
                r.timestamp = base_ts + (i * 5 + j) as i64 * 10;
                r
            })
            .collect();
        let r = c.produce_batch("ts", 0, encode_batch(&records, *codec));
        assert_eq!((r.error_code, r.base_offset), (0, i as i64 * 5));
    }
    // Exact hit, between two records, inside the compressed batch, before the first.
    assert_eq!(c.list_offsets("ts", 0, base_ts + 30), (0, 3, base_ts + 30));
    assert_eq!(c.list_offsets("ts", 0, base_ts + 31), (0, 4, base_ts + 40));
    assert_eq!(c.list_offsets("ts", 0, base_ts + 75), (0, 8, base_ts + 80));
    assert_eq!(c.list_offsets("ts", 0, 0), (0, 0, base_ts));
    // After the last record: no offset.
    let (code, offset, _) = c.list_offsets("ts", 0, base_ts + 1000);
    assert_eq!((code, offset), (0, -1));
    // Max timestamp: the last record.
    assert_eq!(c.list_offsets("ts", 0, -3), (0, 9, base_ts + 90));
    assert_eq!(c.list_offsets("ts", 0, -2).1, 0);
    assert_eq!(c.list_offsets("ts", 0, -1).1, 10);
}

#[test]
fn fetch_at_high_watermark_waits_and_returns_empty() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("idle", 1, &[]);
    assert_eq!(c.produce("idle", 0, &values(&["one"])), (0, 0));

    let p = c.fetch("idle", 0, 1, 300, 1 << 20);
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 1);
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "no records past the high watermark"
    );
    // Empty topic too.
    c.create_topic("empty", 1, &[]);
    let p = c.fetch("empty", 0, 0, 300, 1 << 20);
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));

    // Past the high watermark is out of range.
    let p = c.fetch("idle", 0, 5, 0, 1 << 20);
    assert_eq!(p.error_code, 1, "OFFSET_OUT_OF_RANGE");
}

#[test]
fn long_poll_fetch_returns_a_record_produced_while_waiting() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("poll", 2, &[]);
    assert_eq!(c.produce("poll", 1, &values(&["a", "b"])), (0, 0));

    let addr = agent.addr;
    let producer = std::thread::spawn(move || {
        // Give the fetch a head start; correctness does not depend on it.
        std::thread::sleep(Duration::from_millis(300));
        let mut p = Client::connect(addr);
        p.produce("poll", 1, &values(&["late"]))
    });
    let got = c.fetch("poll", 1, 2, 10_000, 1 << 20);
    let produced = producer.join().expect("producer thread");
    assert_eq!(produced, (0, 2));
    assert_eq!(got.error_code, 0);
    let records = common::decode_records(&got.records.unwrap_or_default());
    assert_eq!(records.len(), 1, "the long-poll returns the new record");
    assert_eq!(records[0].offset, 2);
    assert_eq!(records[0].value.as_deref(), Some(&b"late"[..]));
}

#[test]
fn pipelined_produces_are_answered_in_order() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("pipe", 2, &[]);
    let n = 20;
    for i in 0..n {
        let batch = encode_batch(
            &values(&[format!("v{i}-a"), format!("v{i}-b")]),
            CODECS[i % 5],
        );
        let req = common::produce_request("pipe", vec![((i % 2) as i32, batch)]);
        c.send_only(&req, common::PRODUCE_V);
    }
    let mut next = [0i64; 2];
    for i in 0..n {
        let resp = c.recv::<kafka_protocol::messages::ProduceRequest>();
        let part = &resp.responses[0].partition_responses[0];
        let p = i % 2;
        assert_eq!(part.index, p as i32);
        assert_eq!(part.error_code, 0);
        assert_eq!(part.base_offset, next[p], "request {i}");
        next[p] += 2;
    }
    for p in 0..2 {
        let got = c.fetch_all("pipe", p as i32, 0);
        let want: Vec<String> = (0..n)
            .filter(|i| i % 2 == p)
            .flat_map(|i| [format!("v{i}-a"), format!("v{i}-b")])
            .collect();
        let got: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn small_max_bytes_still_returns_a_whole_batch() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("kip74", 1, &[]);
    let big = vec![b'z'; 10_000];
    assert_eq!(
        c.produce(
            "kip74",
            0,
            &[record(None, Some(&big)), record(None, Some(b"x"))]
        ),
        (0, 0)
    );
    assert_eq!(c.produce("kip74", 0, &values(&["second"])), (0, 2));
    let p = c.fetch("kip74", 0, 0, 0, 100);
    assert_eq!(p.error_code, 0);
    let records = common::decode_records(&p.records.unwrap_or_default());
    assert!(
        !records.is_empty(),
        "the first batch comes back even above max_bytes"
    );
    assert_eq!(records[0].value.as_deref(), Some(&big[..]));
}

#[test]
fn fetch_by_topic_id_v16() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let created = c.create_topic_raw("by-id", 2, &[]);
    let id = created.topics[0].topic_id;
    assert!(!id.is_nil(), "CreateTopics v7 returns the topic id");
    let md = c.metadata(Some(&["by-id"]));
    assert_eq!(md.topics[0].topic_id, id, "Metadata agrees on the topic id");
    assert_eq!(md.topics[0].partitions.len(), 2);
    assert_eq!(c.produce("by-id", 1, &values(&["x", "y"])), (0, 0));

    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(0)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(&req, 16);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].topic_id, id);
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 2));
    let records = common::decode_records(p.records.as_ref().unwrap());
    let vals: Vec<&[u8]> = records
        .iter()
        .map(|r| r.value.as_deref().unwrap())
        .collect();
    assert_eq!(vals, vec![&b"x"[..], &b"y"[..]]);

    // An unknown (here: nil) id gets UNKNOWN_TOPIC_ID (100).
    let req = req
        .with_topics(vec![FetchTopic::default()
            .with_partitions(vec![FetchPartition::default().with_partition(0)])]);
    let resp = c.send(&req, 16);
    assert_eq!(resp.responses[0].partitions[0].error_code, 100);

    // Fetch v12 by name agrees.
    let resp = c.send(&fetch_request("by-id", 1, 1, 0, 1 << 20), FETCH_V);
    let records = common::decode_records(resp.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(
        records.last().unwrap().value,
        Some(Bytes::from_static(b"y"))
    );
}

/// Fetch session ids and epochs as Kafka reads them (KIP-227). Epoch -1 (no session,
/// or close the one named) is a full, sessionless fetch whatever the session id; epoch 0
/// opens a session (closing the one named) and is answered in full with its id; later
/// epochs of that session list only what changed and get only partitions with news.
/// An unknown session is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch
/// INVALID_FETCH_SESSION_EPOCH.
#[test]
fn fetch_session_ids_and_epochs() {
    use kafka_protocol::ResponseError;
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("sessions", 2, &[]);
    assert_eq!(c.produce("sessions", 0, &values(&["a", "b"])), (0, 0));
    let full = |c: &mut Client, id: i32, epoch: i32, want: usize| {
        let req = fetch_request("sessions", 0, 0, 0, 1 << 20)
            .with_session_id(id)
            .with_session_epoch(epoch);
        let resp = c.send(&req, FETCH_V);
        assert_eq!(resp.error_code, 0, "session {id} epoch {epoch}");
        let p = &resp.responses[0].partitions[0];
        let records = common::decode_records(p.records.as_ref().unwrap());
        assert_eq!(
            records.len(),
            want,
            "session {id} epoch {epoch}: a full answer"
        );
        resp.session_id
    };
    assert_eq!(full(&mut c, 0, -1, 2), 0, "epoch -1: no session");
    assert_eq!(
        full(&mut c, 4242, -1, 2),
        0,
        "epoch -1 with an id some Go clients send"
    );
    let id = full(&mut c, 0, 0, 2);
    assert_ne!(id, 0, "epoch 0 opens a session");
    // Partition 1 joins the session; partition 0 moves past its records. Only partition
    // 1 is new to the client (its watermarks were never sent).
    let incremental = |epoch: i32, parts: Vec<(i32, i64)>| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(if parts.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("sessions")))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, offset)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(offset)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]
            })
    };
    let shown = |resp: &FetchResponse| -> Vec<(i32, usize)> {
        resp.responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        p.partition_index,
                        common::decode_records(p.records.as_ref().unwrap()).len(),
                    )
                })
            })
            .collect()
    };
    let resp = c.send(&incremental(1, vec![(0, 2), (1, 0)]), FETCH_V);
    assert_eq!((resp.error_code, resp.session_id), (0, id));
    assert_eq!(shown(&resp), vec![(1, 0)]);
    // Nothing changed: an empty answer.
    let resp = c.send(&incremental(2, vec![]), FETCH_V);
    assert_eq!(shown(&resp), vec![]);
    // New records in partition 0 come back without the client naming it.
    assert_eq!(c.produce("sessions", 0, &values(&["c"])), (0, 2));
    let resp = c.send(&incremental(3, vec![]), FETCH_V);
    assert_eq!(shown(&resp), vec![(0, 1)]);
    // A replayed epoch, and a session that does not exist.
    let resp = c.send(&incremental(3, vec![]), FETCH_V);
    assert_eq!(
        resp.error_code,
        ResponseError::InvalidFetchSessionEpoch.code()
    );
    let resp = c.send(&incremental(4, vec![]).with_session_id(id ^ 1), FETCH_V);
    assert_eq!(
        resp.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
    assert!(resp.responses.is_empty());
    // Epoch -1 closes it; its next epoch is then unknown.
    assert_eq!(full(&mut c, id, -1, 3), 0);
    let resp = c.send(&incremental(4, vec![]), FETCH_V);
    assert_eq!(
        resp.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
}
