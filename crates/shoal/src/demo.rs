//! `shoal demo`: something to look at in one command. It starts a playground agent in
//! this process (SQLite and a local directory in a temporary data directory, removed on
//! exit unless `--data-dir` was given), or uses a running cluster (`--bootstrap`);
//! creates the topic `demo`; runs a producer and a consumer group member at a modest
//! rate; prints the console's URL and opens it when a browser is at hand.
//!
//! The producer and the consumer are plain blocking loops on their own threads over
//! [`crate::client::Conn`], the binary's one Kafka client; they check the stop token at
//! least every half second, so Ctrl-C (or SIGTERM) stops them (the consumer commits and
//! leaves its group), then the agent flushes and leaves the registry, then the temporary
//! directory goes.
//!
//! The consumer is a classic-protocol group member that assigns itself every partition
//! when it leads (it is alone unless a second demo joins the same group), commits its
//! position every second and heartbeats at the same time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, CreateTopicsRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use shoal_agent::Agent;
use tokio_util::sync::CancellationToken;

use crate::client::Conn;

#[derive(Args)]
pub struct DemoCmd {
    /// Keep the demo's data here (and leave it on exit) instead of a temporary directory.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Run the producer and consumer against this running cluster instead of starting
    /// a playground (its agents serve their own console with --console-listen).
    #[arg(long, env = "SHOAL_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Records per second the producer writes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    record_size: u32,
    /// Topic the demo writes and reads.
    #[arg(long, default_value = "demo")]
    topic: String,
    /// Partitions of the topic when the demo creates it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    /// Consumer group of the demo's consumer.
    #[arg(long, default_value = "demo-group")]
    group: String,
    /// Do not open the console in a browser.
    #[arg(long)]
    no_open: bool,
    /// Flush produce data after this long.
    #[arg(long, env = "SHOAL_BATCH_TIMEOUT", default_value = "50ms", value_parser = crate::units::parse_duration)]
    batch_timeout: Duration,
    /// Serve the web console here, or `off`. [default: 127.0.0.1:8080, or another free
    /// port when that one is taken]
    #[arg(long, env = "SHOAL_CONSOLE_LISTEN", value_name = "ADDR|off")]
    console_listen: Option<crate::ConsoleListen>,
    #[command(flatten)]
    common: crate::Common,
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(d: DemoCmd) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::wait_for_signal().await;
            tracing::info!("stopping the demo: producer and consumer first, then the agent");
            stop.cancel();
            crate::wait_for_signal().await;
            tracing::warn!("second signal: exiting immediately");
            std::process::exit(130);
        });
    }
    // The agent stops after the producer and the consumer, so the consumer's last
    // commit and its LeaveGroup still reach it.
    let agent_stop = CancellationToken::new();
    // Dropped last: removes the temporary data directory once the agent has stopped.
    let mut _tmp = None;
    let mut agent_task = None;
    let mut console = None;
    let mut text = String::new();
    let bootstrap = match &d.bootstrap {
        Some(b) => b.clone(),
        None => {
            let dir = match &d.data_dir {
                Some(p) => p.clone(),
                None => {
                    let t = tempfile::Builder::new()
                        .prefix("shoal-demo-")
                        .tempdir()
                        .context("create a temporary data directory")?;
                    let p = t.path().to_path_buf();
                    _tmp = Some(t);
                    p
                }
            };
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create the data directory {}", dir.display()))?;
            let meta = crate::stores::sqlite(&dir.join("metadata.db"))?;
            let store = crate::stores::local_dir(&dir.join("objects"))?;
            let mut config = d.common.config(d.batch_timeout)?;
            crate::set_console(&mut config, d.console_listen);
            let agent = Agent::start(config, meta, store, agent_stop.clone()).await?;
            let addr = agent.local_addr.to_string();
            let kept = if _tmp.is_some() {
                "removed on exit"
            } else {
                "kept on exit"
            };
            text = crate::banner_text(
                &addr,
                &addr,
                &format!("demo data in {}, {kept}", dir.display()),
                agent.metrics_addr,
                agent.console_addr,
            );
            console = agent.console_addr;
            agent_task = Some(tokio::spawn(agent.wait()));
            addr
        }
    };
    let (topic, partitions) = (d.topic.clone(), d.partitions);
    let b = bootstrap.clone();
    let partitions = tokio::task::spawn_blocking(move || create_topic(&b, &topic, partitions))
        .await?
        .with_context(|| format!("create the topic {} on {bootstrap}", d.topic))?;

    let mut threads = Vec::new();
    {
        let (b, t, stop) = (bootstrap.clone(), d.topic.clone(), shutdown.clone());
        let (rate, size) = (d.rate, d.record_size as usize);
        threads.push(std::thread::spawn(move || {
            produce_loop(&b, &t, partitions, rate, size, &stop)
        }));
    }
    {
        let (b, t, g, stop) = (
            bootstrap.clone(),
            d.topic.clone(),
            d.group.clone(),
            shutdown.clone(),
        );
        threads.push(std::thread::spawn(move || {
            consume_loop(&b, &t, &g, partitions, &stop)
        }));
    }
    eprintln!("{}", demo_text(&d, &bootstrap, console, &text));
    if let Some(c) = console {
        if !d.no_open {
            open_browser(&format!("http://{c}/"));
        }
    }

    let failed = match agent_task.as_mut() {
        Some(task) => tokio::select! {
            _ = shutdown.cancelled() => None,
            r = task => Some(r),
        },
        None => {
            shutdown.cancelled().await;
            None
        }
    };
    shutdown.cancel();
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    agent_stop.cancel();
    match (failed, agent_task) {
        (Some(r), _) => r??,
        (None, Some(task)) => task.await??,
        (None, None) => {}
    }
    Ok(())
}

/// What the demo prints once it runs.
fn demo_text(d: &DemoCmd, bootstrap: &str, console: Option<SocketAddr>, agent: &str) -> String {
    let mut out = String::new();
    if !agent.is_empty() {
        out.push_str(agent);
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "The demo is running: a producer writes {} records/s to topic '{}' and consumer group '{}' reads them.\n",
        d.rate, d.topic, d.group
    ));
    match console {
        Some(c) => out.push_str(&format!("  console             http://{c}/\n")),
        None if d.bootstrap.is_some() => out.push_str(
            "  console             served by the cluster's agents that run with --console-listen\n",
        ),
        None => out.push_str("  console             off (--console-listen)\n"),
    }
    out.push_str(&format!(
        "  watch the records   kcat -b {bootstrap} -C -t {} -o end\n  the group's lag     shoal groups describe {} --bootstrap {bootstrap}\n",
        d.topic, d.group
    ));
    if d.bootstrap.is_none() {
        out.push_str(
            "\nTo let a second agent join, a cluster needs shared metadata and objects; this\n\
             demo keeps them in a SQLite file and a local directory, which no other agent can\n\
             use. Run the demo on etcd and S3 instead, then start more agents the same way:\n\
             \x20 shoal agent --metadata etcd://HOST:2379 --object-store s3://BUCKET/shoal \\\n\
             \x20   --listen 0.0.0.0:9092 --advertise THIS_HOST:9092 --console-listen 127.0.0.1:8080\n\
             and point the demo at them: shoal demo --bootstrap THIS_HOST:9092\n",
        );
    }
    if agent.is_empty() {
        out.push_str("\nStop with Ctrl-C.");
    }
    out.trim_end().to_string()
}

/// Opens `url` with xdg-open when there is a display to open it on.
fn open_browser(url: &str) {
    let display = std::env::var_os("DISPLAY").is_some_and(|v| !v.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty());
    if !display {
        return;
    }
    let spawned = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not run xdg-open; open the console yourself");
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Kafka's TOPIC_ALREADY_EXISTS, MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS,
/// OFFSET_OUT_OF_RANGE.
const TOPIC_ALREADY_EXISTS: i16 = 36;
const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Creates the topic (keeping it if it exists) and returns its partition count.
fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<i32> {
    let mut c = Conn::open(bootstrap)?;
    let r = c.call(
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)])
            .with_timeout_ms(10_000),
        7,
    )?;
    let t = r.topics.first().context("CreateTopics answered no topic")?;
    match t.error_code {
        0 => Ok(partitions),
        TOPIC_ALREADY_EXISTS => {
            let m = c.call(
                &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(sb(topic)))),
                ])),
                12,
            )?;
            let n = m.topics.first().map_or(0, |t| t.partitions.len() as i32);
            if n < 1 {
                bail!("topic {topic} exists but Metadata lists no partitions");
            }
            Ok(n)
        }
        code => bail!(
            "CreateTopics failed with error code {code} ({})",
            t.error_message.as_deref().unwrap_or("")
        ),
    }
}

/// Sleeps up to `d`, waking early when `stop` is cancelled. False once stopped.
fn nap(d: Duration, stop: &CancellationToken) -> bool {
    let until = Instant::now() + d;
    while !stop.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    false
}

/// Ten times a second, one batch of `rate / 10` records to the next partition in turn.
fn produce_loop(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u32,
    size: usize,
    stop: &CancellationToken,
) {
    const TICK: Duration = Duration::from_millis(100);
    let per_tick = f64::from(rate) * TICK.as_secs_f64();
    let (mut owed, mut n, mut tick) = (0.0f64, 0u64, 0u64);
    let mut conn: Option<Conn> = None;
    let mut next = Instant::now();
    while !stop.is_cancelled() {
        next += TICK;
        let now = Instant::now();
        if next > now {
            if !nap(next - now, stop) {
                return;
            }
        } else {
            next = now;
        }
        owed += per_tick;
        let count = owed.floor() as u64;
        if count == 0 {
            continue;
        }
        let partition = (tick % partitions as u64) as i32;
        tick += 1;
        let batch = demo_batch(n, count, size);
        let result = match conn.as_mut() {
            Some(c) => produce(c, topic, partition, batch),
            None => {
                Conn::open(bootstrap).and_then(|c| produce(conn.insert(c), topic, partition, batch))
            }
        };
        match result {
            Ok(()) => {
                owed -= count as f64;
                n += count;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "demo producer: produce failed; retrying in a second");
                conn = None;
                owed = 0.0;
                if !nap(Duration::from_secs(1), stop) {
                    return;
                }
            }
        }
    }
}

/// `count` records numbered from `first`, each with a `size`-byte value, as one batch.
fn demo_batch(first: u64, count: u64, size: usize) -> Bytes {
    let now = shoal_meta::clock::now_ms();
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let mut value = format!("demo record {} produced at {now} ms ", first + i).into_bytes();
            value.resize(size, b'.');
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // Constant offset − sequence keeps the records in one batch.
                sequence: i as i32 - 1,
                timestamp: now,
                key: Some(Bytes::from(format!("key-{}", (first + i) % 100))),
                value: Some(Bytes::from(value)),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode plain records");
    buf.freeze()
}

fn produce(c: &mut Conn, topic: &str, partition: i32, records: Bytes) -> anyhow::Result<()> {
    let r = c.call(
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(sb(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]),
        9,
    )?;
    let code = r
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .context("Produce answered no partition")?;
    if code != 0 {
        bail!("Produce to {topic}/{partition} failed with error code {code}");
    }
    Ok(())
}

/// Runs group sessions until `stop`, starting a new one a second after one fails.
fn consume_loop(
    bootstrap: &str,
    topic: &str,
    group: &str,
    partitions: i32,
    stop: &CancellationToken,
) {
    while !stop.is_cancelled() {
        if let Err(e) = session(bootstrap, topic, group, partitions, stop) {
            tracing::warn!(error = %format!("{e:#}"), "demo consumer: group session ended; rejoining in a second");
            if !nap(Duration::from_secs(1), stop) {
                return;
            }
        }
    }
}

/// A member of `group`: where it stands in each assigned partition.
struct Member {
    id: String,
    generation: i32,
    positions: BTreeMap<i32, i64>,
}

/// One membership: join, read and commit until `stop` (then leave), or until an error.
fn session(
    bootstrap: &str,
    topic: &str,
    group: &str,
    partitions: i32,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut coord = Conn::open(&coordinator(bootstrap, group)?)?;
    let mut data = Conn::open(bootstrap)?;
    let mut m = join(&mut coord, group, topic, partitions, "")?;
    let mut beat = Instant::now();
    while !stop.is_cancelled() {
        fetch(&mut data, topic, &mut m.positions)?;
        if beat.elapsed() >= Duration::from_secs(1) {
            commit(&mut coord, group, topic, &m)?;
            let h = coord.call(
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(sb(group)))
                    .with_generation_id(m.generation)
                    .with_member_id(sb(&m.id)),
                3,
            )?;
            match h.error_code {
                0 => {}
                REBALANCE_IN_PROGRESS => {
                    let id = m.id.clone();
                    m = join(&mut coord, group, topic, partitions, &id)?;
                }
                code => bail!("Heartbeat failed with error code {code}"),
            }
            beat = Instant::now();
        }
    }
    commit(&mut coord, group, topic, &m)?;
    coord.call(
        &LeaveGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_members(vec![MemberIdentity::default().with_member_id(sb(&m.id))]),
        3,
    )?;
    Ok(())
}

/// `host:port` of the group's coordinator (the bootstrap agent if it cannot say).
fn coordinator(bootstrap: &str, group: &str) -> anyhow::Result<String> {
    let mut c = Conn::open(bootstrap)?;
    let r = c.call(
        &FindCoordinatorRequest::default()
            .with_key(sb(group))
            .with_key_type(0),
        2,
    )?;
    if r.error_code != 0 {
        bail!("FindCoordinator failed with error code {}", r.error_code);
    }
    Ok(format!("{}:{}", r.host.as_str(), r.port))
}

/// Joins (or rejoins, as `member_id`) the group; as its leader, spreads the topic's
/// partitions over the members in turn. Starts each assigned partition at its committed
/// offset, or at 0.
fn join(
    c: &mut Conn,
    group: &str,
    topic: &str,
    partitions: i32,
    member_id: &str,
) -> anyhow::Result<Member> {
    let mut subscription = BytesMut::new();
    subscription.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![sb(topic)])
        .encode(&mut subscription, 0)?;
    let subscription = subscription.freeze();
    let mut member = member_id.to_string();
    for _ in 0..5 {
        let r = c.call(
            &JoinGroupRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(sb(&member))
                .with_protocol_type(sb("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(sb("roundrobin"))
                    .with_metadata(subscription.clone())]),
            5,
        )?;
        member = r.member_id.as_str().to_string();
        match r.error_code {
            0 => {}
            MEMBER_ID_REQUIRED | REBALANCE_IN_PROGRESS => continue,
            code => bail!("JoinGroup failed with error code {code}"),
        }
        let assignments = if r.leader == r.member_id {
            let mut ids: Vec<&str> = r.members.iter().map(|m| m.member_id.as_str()).collect();
            ids.sort_unstable();
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    let mine: Vec<i32> = (0..partitions)
                        .filter(|p| *p as usize % ids.len() == i)
                        .collect();
                    Ok(SyncGroupRequestAssignment::default()
                        .with_member_id(sb(id))
                        .with_assignment(assignment(topic, mine)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let s = c.call(
            &SyncGroupRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_generation_id(r.generation_id)
                .with_member_id(sb(&member))
                .with_assignments(assignments),
            3,
        )?;
        match s.error_code {
            0 => {}
            REBALANCE_IN_PROGRESS => continue,
            code => bail!("SyncGroup failed with error code {code}"),
        }
        let mine: Vec<i32> = crate::admin::parse_assignment(&s.assignment)
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .flat_map(|(_, ps)| ps)
            .collect();
        let positions = committed(c, group, topic, &mine)?;
        tracing::info!(member = %member, partitions = ?mine, "demo consumer joined its group");
        return Ok(Member {
            id: member,
            generation: r.generation_id,
            positions,
        });
    }
    bail!("could not join group {group}: it kept rebalancing")
}

/// A consumer-protocol assignment of `partitions` of `topic`.
fn assignment(topic: &str, partitions: Vec<i32>) -> anyhow::Result<Bytes> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(sb(topic)))
            .with_partitions(partitions)])
        .encode(&mut b, 0)?;
    Ok(b.freeze())
}

/// Committed offsets of `partitions` (0 where none).
fn committed(
    c: &mut Conn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let r = c.call(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb(group)))
            .with_topics(None)]),
        8,
    )?;
    let mut out: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    for g in &r.groups {
        for t in g.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                if let Some(pos) = out.get_mut(&p.partition_index) {
                    *pos = p.committed_offset.max(0);
                }
            }
        }
    }
    Ok(out)
}

fn commit(c: &mut Conn, group: &str, topic: &str, m: &Member) -> anyhow::Result<()> {
    if m.positions.is_empty() {
        return Ok(());
    }
    let r = c.call(
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id_or_member_epoch(m.generation)
            .with_member_id(sb(&m.id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partitions(
                    m.positions
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                )]),
        7,
    )?;
    for t in &r.topics {
        if let Some(p) = t.partitions.iter().find(|p| p.error_code != 0) {
            bail!(
                "OffsetCommit of partition {} failed with error code {}",
                p.partition_index,
                p.error_code
            );
        }
    }
    Ok(())
}

/// One fetch of every assigned partition (waiting up to half a second for data),
/// moving `positions` past what came back.
fn fetch(c: &mut Conn, topic: &str, positions: &mut BTreeMap<i32, i64>) -> anyhow::Result<()> {
    if positions.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        return Ok(());
    }
    let r = c.call(
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_isolation_level(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(sb(topic)))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(p, o)| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(*o)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]),
        12,
    )?;
    if r.error_code != 0 {
        bail!("Fetch failed with error code {}", r.error_code);
    }
    for p in r.responses.iter().flat_map(|t| &t.partitions) {
        let Some(pos) = positions.get_mut(&p.partition_index) else {
            continue;
        };
        match p.error_code {
            0 => {
                let records = p.records.clone().unwrap_or_default();
                if let Some(b) = shoal_wire::batch::walk(&records).last() {
                    *pos = b.header.base_offset + b.header.offset_span();
                }
            }
            OFFSET_OUT_OF_RANGE => *pos = p.log_start_offset.max(0),
            code => bail!(
                "Fetch of {topic}/{} failed with error code {code}",
                p.partition_index
            ),
        }
    }
    Ok(())
}
