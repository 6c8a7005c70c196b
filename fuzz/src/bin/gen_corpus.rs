//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/` (run by
//! `scripts/fuzz.sh --seeds`): valid inputs built with the same encoders clients and
//! Shoal use, so the fuzzers start from inputs that reach deep into each decoder.
//! Output is deterministic; rerunning it rewrites the same files.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use shoal_agent::api::SUPPORTED;
use shoal_object::ObjectBuilder;
use uuid::Uuid;

#[path = "../../../crates/shoal-bench/src/consumer_protocol.rs"]
#[allow(dead_code)]
mod consumer_protocol;

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let batches = batches();
    write(
        &root,
        "records",
        &batches
            .iter()
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect::<Vec<_>>(),
    );
    write(&root, "batch", &batch_seeds(&batches));
    write(&root, "object", &object_seeds(&batches));
    write(&root, "request", &request_seeds(&batches[0].1));
    write(&root, "peer_cache", &peer_seeds());
    write(&root, "group", &group_seeds());
}

fn write(root: &Path, target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn record(i: i64, headers: usize) -> Record {
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
        key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
        value: (i != 2).then(|| Bytes::from(format!("value {i} ").repeat(3))),
        headers: h,
    }
}

/// One valid batch per codec (three records: keys, a null key, a tombstone, headers).
fn batches() -> Vec<(String, Vec<u8>)> {
    let records: Vec<Record> = (0..3).map(|i| record(i, i as usize)).collect();
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    let mut out: Vec<(String, Vec<u8>)> = codecs
        .iter()
        .map(|(name, c)| {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression: *c,
                },
            )
            .expect("encode a batch");
            (name.to_string(), buf.to_vec())
        })
        .collect();
    out.push((
        "marker".into(),
        shoal_wire::batch::control_batch(7, 1, true, 3, 1_700_000_000_000),
    ));
    out
}

fn batch_seeds(batches: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = batches.to_vec();
    out.push((
        "all".into(),
        batches.iter().flat_map(|(_, b)| b.clone()).collect(),
    ));
    out
}

fn object_seeds(batches: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut b = ObjectBuilder::new();
    for (i, (_, batch)) in batches.iter().enumerate() {
        let topic = Uuid::from_bytes([1 + (i % 2) as u8; 16]);
        b.add(topic, (i % 3) as i32, Bytes::from(batch.clone()), 3, 10, 20);
    }
    let (many, _) = b.finish();
    let (empty, _) = ObjectBuilder::new().finish();
    let mut one = ObjectBuilder::new();
    one.add(Uuid::nil(), 0, Bytes::from(batches[0].1.clone()), 3, 0, 0);
    let (one, _) = one.finish();
    vec![
        ("many".into(), many.to_vec()),
        ("empty".into(), empty.to_vec()),
        ("one".into(), one.to_vec()),
    ]
}

fn name(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// A request with some content for the APIs where content matters to the decoder.
fn rich(key: ApiKey, batch: &[u8]) -> Option<RequestKind> {
    let topic = TopicName(name("orders"));
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic)
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::copy_from_slice(batch))),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(500)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic)
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(5)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![
                    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(name("bob"))
                        .with_mechanism(2),
                ])
                .with_upsertions(vec![
                    alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(name("alice"))
                        .with_mechanism(1)
                        .with_iterations(8192)
                        .with_salt(Bytes::from_static(b"salt"))
                        .with_salted_password(Bytes::from_static(&[7; 32])),
                ]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic)),
            ])))
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(name("g")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(name("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(name("range"))
                .with_metadata(
                    consumer_protocol::encode_subscription(&["orders".into()]).ok()?,
                )]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(name("g")))
                .with_generation_id(1)
                .with_member_id(name("m-1"))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(name("m-1"))
                        .with_assignment(
                            consumer_protocol::encode_assignment(&[("orders".into(), vec![0, 1])])
                                .ok()?,
                        ),
                ]),
        ),
        _ => return None,
    })
}

/// The default (empty) request of an API.
fn empty(key: ApiKey) -> RequestKind {
    macro_rules! defaults {
        ($($k:ident),* $(,)?) => {
            match key {
                $(ApiKey::$k => RequestKind::$k(Default::default()),)*
                other => panic!("{other:?} is advertised but has no seed"),
            }
        };
    }
    defaults!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        DeleteRecords,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        SaslHandshake,
        SaslAuthenticate,
    )
}

fn encode_request(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(name("seed")))
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

/// One valid request per advertised API at its lowest and highest version (with some
/// content where the API has a natural one), plus raw streams: two frames in one
/// stream, ApiVersions at a version Shoal does not support, an oversize frame.
fn request_seeds(batch: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stream = Vec::new();
    for &(key, min, max) in SUPPORTED {
        for version in [min, max] {
            let frame = rich(key, batch)
                .and_then(|r| encode_request(key, version, &r))
                .or_else(|| encode_request(key, version, &empty(key)))
                .unwrap_or_else(|| panic!("{key:?} v{version} encodes"));
            let input = shoal_fuzz::request_input(key, version, &frame[4..]).expect("advertised");
            out.push((format!("{key:?}-v{version}"), input));
            if stream.len() < 2 {
                stream.push(frame);
            }
        }
    }
    let mut raw = vec![shoal_fuzz::RAW_STREAM];
    for frame in &stream {
        raw.extend_from_slice(&(frame.len() as i32).to_be_bytes());
        raw.extend_from_slice(frame);
    }
    out.push(("raw-two-frames".into(), raw));
    let mut unsupported = vec![shoal_fuzz::RAW_STREAM];
    let frame = encode_request(ApiKey::ApiVersions, 3, &empty(ApiKey::ApiVersions)).unwrap();
    let mut frame = frame;
    frame[2..4].copy_from_slice(&99i16.to_be_bytes());
    unsupported.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    unsupported.extend_from_slice(&frame);
    out.push(("raw-apiversions-v99".into(), unsupported));
    let mut oversize = vec![shoal_fuzz::RAW_STREAM];
    oversize.extend_from_slice(&(i32::MAX).to_be_bytes());
    oversize.extend_from_slice(&[0, 18, 0, 3]);
    out.push(("raw-oversize".into(), oversize));
    out
}

fn peer_seeds() -> Vec<(String, Vec<u8>)> {
    use shoal_agent::fuzzing::PEER_FUZZ_SECRET;
    use shoal_agent::peer_cache::{auth::ClusterSecret, ChunkRequest};
    let secret = ClusterSecret::new(PEER_FUZZ_SECRET).expect("a long enough secret");
    let req = |signed: bool| {
        // A fixed nonce so the seeds are the same on every run.
        let mut r = ChunkRequest::new("objects/0000000001-agent-1.obj", 10 << 20, 2, 1_700_000_000_000, None);
        r.nonce = [7; 16];
        if signed {
            r.mac = secret.sign_request(&r.signed_bytes());
        }
        let mut out = vec![0u8];
        out.extend_from_slice(&r.encode());
        out
    };
    let answer = |status: u8, body: &[u8]| {
        let mut a = vec![1u8];
        a.extend_from_slice(&(10u64 << 20).to_be_bytes());
        a.push(status);
        a.extend_from_slice(&(body.len() as u32).to_be_bytes());
        a.extend_from_slice(body);
        a.extend_from_slice(&[0u8; 32]);
        a
    };
    vec![
        ("request".into(), req(false)),
        ("request-signed".into(), req(true)),
        ("answer-chunk".into(), answer(0, &[7u8; 64])),
        ("answer-error".into(), answer(1, b"object not found")),
    ]
}

fn group_seeds() -> Vec<(String, Vec<u8>)> {
    let topics: Vec<String> = vec!["orders".into(), "payments".into()];
    let mut v3 = BytesMut::new();
    v3.extend_from_slice(&3i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(Some(Bytes::from_static(b"user")))
        .with_owned_partitions(vec![
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(TopicName(name("orders")))
                .with_partitions(vec![0, 2]),
        ])
        .with_generation_id(4)
        .with_rack_id(Some(name("rack-a")))
        .encode(&mut v3, 3)
        .expect("encode a v3 subscription");
    let assignment = consumer_protocol::encode_assignment(&[
        ("orders".into(), vec![0, 1]),
        ("payments".into(), vec![3]),
    ])
    .expect("encode an assignment");
    vec![
        (
            "subscription-v0".into(),
            consumer_protocol::encode_subscription(&topics)
                .unwrap()
                .to_vec(),
        ),
        ("subscription-v3".into(), v3.to_vec()),
        ("assignment-v0".into(), assignment.to_vec()),
    ]
}
