//! Client quotas against the real binary: AlterClientQuotas and DescribeClientQuotas as
//! Kafka answers them, a produce storm from one client over its quota (throttled, while
//! another client is served within a second, memory stays bounded and nothing
//! acknowledged is lost), and a fetch over its quota muting the connection.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    encode_batch, fetch_request, produce_request, record, sb, Agent, Client, FETCH_V, PRODUCE_V,
};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ProduceRequest,
};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

/// `(entity type, name)` pairs; `None` is the default entity.
type Entity<'a> = &'a [(&'a str, Option<&'a str>)];

fn alter(
    c: &mut Client,
    entity: Entity,
    ops: &[(&str, Option<f64>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let entry = EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(sb(t))
                        .with_entity_name(n.map(sb))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, v)| {
                    OpData::default()
                        .with_key(sb(k))
                        .with_value(v.unwrap_or(0.0))
                        .with_remove(v.is_none())
                })
                .collect(),
        );
    let req = AlterClientQuotasRequest::default()
        .with_entries(vec![entry])
        .with_validate_only(validate_only);
    let resp: AlterClientQuotasResponse = c.send(&req, 1);
    let e = &resp.entries[0];
    (
        e.error_code,
        e.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Entities (as `type=name` joined by `,`, `<default>` for the default) and values.
fn describe(
    c: &mut Client,
    filter: &[(&str, i8, Option<&str>)],
    strict: bool,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>, (i16, String)> {
    let req = DescribeClientQuotasRequest::default()
        .with_components(
            filter
                .iter()
                .map(|(t, m, n)| {
                    ComponentData::default()
                        .with_entity_type(sb(t))
                        .with_match_type(*m)
                        .with_match(n.map(sb))
                })
                .collect(),
        )
        .with_strict(strict);
    let resp: DescribeClientQuotasResponse = c.send(&req, 1);
    if resp.error_code != 0 {
        return Err((
            resp.error_code,
            resp.error_message
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ));
    }
    Ok(resp
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let entity = e
                .entity
                .iter()
                .map(|d| {
                    let name = d.entity_name.as_ref().map_or("<default>", |n| n.as_str());
                    format!("{}={name}", d.entity_type.as_str())
                })
                .collect::<Vec<_>>()
                .join(",");
            let values = e
                .values
                .into_iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            (entity, values)
        })
        .collect())
}

#[test]
fn quotas_are_altered_and_described_as_kafka_does() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    let invalid = ResponseError::InvalidRequest.code();
    let app = [("client-id", Some("app"))];
    let (code, msg) = alter(&mut c, &app, &[("producer_bytes_rate", Some(1.0))], false);
    assert_eq!(code, invalid);
    assert!(msg
        .unwrap()
        .contains("unknown quota key 'producer_bytes_rate'"));
    let (code, _) = alter(&mut c, &app, &[("producer_byte_rate", Some(-5.0))], false);
    assert_eq!(code, invalid, "negative values are refused");
    let (code, _) = alter(&mut c, &app, &[("producer_byte_rate", Some(1000.0))], true);
    assert_eq!(code, 0, "validate_only accepts...");
    assert!(
        describe(&mut c, &[], false).unwrap().is_empty(),
        "...and stores nothing"
    );

    let ops = [
        ("producer_byte_rate", Some(1000.0)),
        ("consumer_byte_rate", Some(2000.0)),
    ];
    assert_eq!(alter(&mut c, &app, &ops, false).0, 0);
    let default_client = [("client-id", None)];
    assert_eq!(
        alter(
            &mut c,
            &default_client,
            &[("request_percentage", Some(50.0))],
            false
        )
        .0,
        0
    );
    let user_app = [("user", Some("ANONYMOUS")), ("client-id", Some("app"))];
    assert_eq!(
        alter(
            &mut c,
            &user_app,
            &[("producer_byte_rate", Some(10.0))],
            false
        )
        .0,
        0
    );

    let all = describe(&mut c, &[], false).unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all["client-id=app"]["consumer_byte_rate"], 2000.0);
    assert_eq!(all["client-id=<default>"]["request_percentage"], 50.0);
    // Exact name; strict leaves out the user+client entity.
    let exact = describe(&mut c, &[("client-id", 0, Some("app"))], true).unwrap();
    assert_eq!(exact.keys().collect::<Vec<_>>(), ["client-id=app"]);
    let loose = describe(&mut c, &[("client-id", 0, Some("app"))], false).unwrap();
    assert_eq!(loose.len(), 2, "{loose:?}");
    let defaults = describe(&mut c, &[("client-id", 1, None)], true).unwrap();
    assert_eq!(defaults.keys().collect::<Vec<_>>(), ["client-id=<default>"]);
    let users = describe(&mut c, &[("user", 2, None)], false).unwrap();
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        ["user=ANONYMOUS,client-id=app"]
    );
    let (code, _) = describe(&mut c, &[("group", 2, None)], false).unwrap_err();
    assert_eq!(code, invalid);

    // Removing one key keeps the other; removing the last forgets the entity.
    assert_eq!(
        alter(&mut c, &app, &[("producer_byte_rate", None)], false).0,
        0
    );
    let after = describe(&mut c, &[("client-id", 0, Some("app"))], true).unwrap();
    assert_eq!(
        after["client-id=app"],
        BTreeMap::from([("consumer_byte_rate".to_string(), 2000.0)])
    );
    assert_eq!(
        alter(&mut c, &app, &[("consumer_byte_rate", None)], false).0,
        0
    );
    assert!(describe(&mut c, &[("client-id", 0, Some("app"))], true)
        .unwrap()
        .is_empty());
}

/// What the storming producer saw.
#[derive(Default)]
struct StormReport {
    /// (base offset, first sequence number, record count) of every acknowledged batch.
    acked: Vec<(i64, u64, u64)>,
    acked_bytes: u64,
    throttled: usize,
    max_throttle_ms: i32,
}

const STORM_QUOTA: f64 = 200_000.0;
const RECORDS_PER_BATCH: u64 = 16;
const VALUE_BYTES: usize = 4096;

fn storm_request(first: u64) -> (ProduceRequest, u64) {
    let records: Vec<_> = (first..first + RECORDS_PER_BATCH)
        .map(|i| {
            record(
                Some(i.to_string().as_bytes()),
                Some(&vec![b'x'; VALUE_BYTES]),
            )
        })
        .collect();
    let batch: Bytes = encode_batch(&records, Compression::None);
    let len = batch.len() as u64;
    (produce_request("storm", vec![(0, batch)]), len)
}

/// A client that ignores throttle times and keeps four produce requests in flight,
/// for `how_long`.
fn storm(agent_addr: std::net::SocketAddr, how_long: Duration) -> StormReport {
    let mut c = Client::connect_as(agent_addr, "storm");
    let mut report = StormReport::default();
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = 0u64;
    let start = Instant::now();
    loop {
        while in_flight.len() < 4 && start.elapsed() < how_long {
            let (req, len) = storm_request(next);
            c.send_only(&req, PRODUCE_V);
            in_flight.push_back((next, len));
            next += RECORDS_PER_BATCH;
        }
        let Some((first, len)) = in_flight.pop_front() else {
            return report;
        };
        let resp = c.recv::<ProduceRequest>();
        if resp.throttle_time_ms > 0 {
            report.throttled += 1;
            report.max_throttle_ms = report.max_throttle_ms.max(resp.throttle_time_ms);
        }
        let p = &resp.responses[0].partition_responses[0];
        if p.error_code == 0 {
            report.acked.push((p.base_offset, first, RECORDS_PER_BATCH));
            report.acked_bytes += len;
        }
    }
}

#[test]
fn a_produce_storm_over_its_quota_is_throttled_and_others_are_served() {
    let agent = Agent::start(&[]);
    let mut admin = agent.connect();
    admin.create_topic("storm", 1, &[]);
    admin.create_topic("calm", 1, &[]);
    let storm_entity = [("client-id", Some("storm"))];
    let ops = [("producer_byte_rate", Some(STORM_QUOTA))];
    assert_eq!(alter(&mut admin, &storm_entity, &ops, false).0, 0);
    let rss_before = agent.memory_mib("VmRSS");

    let storming = Duration::from_secs(6);
    let addr = agent.addr;
    let started = Instant::now();
    let stormer = std::thread::spawn(move || storm(addr, storming));
    // A well-behaved client without a quota, producing and asking for metadata.
    let mut calm = Client::connect_as(agent.addr, "calm");
    let mut slowest = Duration::ZERO;
    let mut calm_acked = Vec::new();
    let mut n = 0;
    while started.elapsed() < storming || n < 10 {
        let t = Instant::now();
        let (code, offset) = calm.produce(
            "calm",
            0,
            &[record(None, Some(format!("calm-{n}").as_bytes()))],
        );
        assert_eq!(code, 0, "the calm client's produce {n} failed");
        calm_acked.push(offset);
        let md = calm.metadata(Some(&["calm"]));
        assert_eq!(md.topics.len(), 1);
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(1),
            "the calm client waited {took:?} (request {n})"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = stormer.join().expect("storm thread");
    let elapsed = started.elapsed().as_secs_f64();
    let rss_peak = agent.memory_mib("VmHWM");
    eprintln!(
        "storm: {} batches ({} bytes) acknowledged in {elapsed:.1} s, {} throttled (max {} ms); calm client: {n} round trips, slowest {slowest:?}; RSS {rss_before} MiB before, peak {rss_peak} MiB",
        report.acked.len(),
        report.acked_bytes,
        report.throttled,
        report.max_throttle_ms
    );

    assert!(
        report.throttled > 0 && report.max_throttle_ms > 0,
        "the storming client was never throttled"
    );
    // Kafka's measure: at most the quota over the (at least 10 s) window, plus what one
    // pipeline of requests adds before the throttle bites.
    let allowed = STORM_QUOTA * (elapsed.max(10.0) + 1.0) + 4.0 * 70_000.0;
    assert!(
        (report.acked_bytes as f64) < allowed,
        "the storm got {} bytes through, more than its quota allows ({allowed})",
        report.acked_bytes
    );
    assert!(!report.acked.is_empty(), "throttled, not starved");
    assert!(
        rss_peak < rss_before + 64,
        "the agent's memory grew from {rss_before} to a peak of {rss_peak} MiB"
    );

    // Every acknowledged record is there, at its offset.
    let stored = admin.fetch_all("storm", 0, 0);
    let by_offset: BTreeMap<i64, Bytes> = stored
        .into_iter()
        .map(|r| (r.offset, r.key.expect("storm records have keys")))
        .collect();
    for (base, first, count) in &report.acked {
        for i in 0..*count {
            let key = by_offset
                .get(&(base + i as i64))
                .unwrap_or_else(|| panic!("acknowledged offset {} is missing", base + i as i64));
            assert_eq!(key.as_ref(), (first + i).to_string().as_bytes());
        }
    }
    let calm_stored = admin.fetch_all("calm", 0, 0);
    assert_eq!(
        calm_stored.len(),
        calm_acked.len(),
        "the calm client's records are all there"
    );
}

#[test]
fn a_fetch_over_its_quota_is_throttled_and_its_connection_waits() {
    // A 200 ms sample makes the whole window (and the longest throttle) 2.2 s.
    let agent = Agent::start(&["--quota-window-size", "200ms"]);
    let mut admin = agent.connect();
    admin.create_topic("big", 1, &[]);
    let value = vec![b'y'; 100_000];
    for _ in 0..5 {
        let (code, _) = admin.produce("big", 0, &[record(None, Some(&value))]);
        assert_eq!(code, 0);
    }
    let reader = [("client-id", Some("reader"))];
    let ops = [("consumer_byte_rate", Some(10_000.0))];
    assert_eq!(alter(&mut admin, &reader, &ops, false).0, 0);
    let mut c = Client::connect_as(agent.addr, "reader");
    // Asking for 1 MiB, the reader gets what its quota allows over the window (10 kB/s
    // × 2 s, as Kafka caps max_bytes), but at least the first batch: one 100 kB record.
    // 100 kB over the 2 s span is 50 kB/s, five times the quota: (50 - 10) / 10 × 2 s,
    // capped at the whole window.
    let first = c.send(&fetch_request("big", 0, 0, 0, 1 << 20), FETCH_V);
    let got: usize = first.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!(
        (100_000..200_000).contains(&got),
        "the first fetch returns one batch ({got} bytes)"
    );
    assert_eq!(
        first.throttle_time_ms, 2200,
        "over the quota: the whole window"
    );
    let t = Instant::now();
    let second = c.send(&fetch_request("big", 0, 5, 0, 1 << 20), FETCH_V);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "the muted connection answered after only {waited:?}"
    );
    assert_eq!(second.error_code, 0);
    // Another client is not held up by the reader's throttle.
    let t = Instant::now();
    admin.metadata(Some(&["big"]));
    assert!(t.elapsed() < Duration::from_secs(1));
    // The quota is read by name: another client id fetches unthrottled.
    let mut other = Client::connect_as(agent.addr, "other-reader");
    let free = other.send(&fetch_request("big", 0, 0, 0, 1 << 20), FETCH_V);
    assert_eq!(free.throttle_time_ms, 0);
    let got: usize = free.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    assert!(got >= 500_000, "uncapped, all five records ({got} bytes)");
}

#[test]
fn a_client_over_its_request_percentage_is_throttled() {
    // A 100 ms sample keeps the longest throttle at 1.1 s.
    let agent = Agent::start(&["--quota-window-size", "100ms"]);
    let mut admin = agent.connect();
    admin.create_topic("t", 1, &[]);
    let busy = [("client-id", Some("busy"))];
    let ops = [("request_percentage", Some(0.0001))];
    assert_eq!(alter(&mut admin, &busy, &ops, false).0, 0);
    let mut c = Client::connect_as(agent.addr, "busy");
    let mut throttled = None;
    for i in 0..200 {
        let md = c.metadata(Some(&["t"]));
        if md.throttle_time_ms > 0 {
            throttled = Some((i, md.throttle_time_ms));
            break;
        }
    }
    let (after, ms) = throttled.expect("200 Metadata requests never went over 0.0001% of a core");
    eprintln!("request_percentage: throttled {ms} ms after {after} requests");
    assert!(ms <= 1100, "at most the whole window");
    // Without a quota, the same requests are never throttled.
    let mut free = Client::connect_as(agent.addr, "free");
    for _ in 0..20 {
        assert_eq!(free.metadata(Some(&["t"])).throttle_time_ms, 0);
    }
}
