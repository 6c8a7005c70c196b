//! `shoal consume TOPIC`: records to stdout, one per line, like
//! `kafka-console-consumer.sh` and `rpk topic consume`.
//!
//! Every partition of the topic is read, each from its leader. Without `--group` the
//! command starts at the end (or at the log start with `--from-beginning`) and commits
//! nothing. With `--group G` it starts where G committed (falling back as above) and
//! commits its position for G as it goes and when it stops. It does so as a *simple
//! consumer*: it assigns itself all partitions and commits with generation -1 and no
//! member id, as a Java consumer using `assign()` does, so it never joins G's rebalances
//! (and a group with live members refuses its commits, which is what Kafka does too).
//!
//! It stops after `--max-messages` records, after `--timeout` without a record, or at
//! Ctrl-C (the commit of what was printed so far is then lost; use --timeout or
//! --max-messages when that matters).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::{check, code_name, partition_leaders, sb, topic_name, ConnectArgs, Progress};
use crate::client::Conn;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// How often a group's position is committed while records flow.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    shoal consume greetings --from-beginning --max-messages 10\n  \
    shoal consume events --group audit --print-key --print-headers --timeout 5s\n\n\
    Each record is one line: [headers<TAB>][key<TAB>]value. Headers print as k:v,k:v \
    (NO_HEADERS when none), a missing key as null.")]
pub struct ConsumeCmd {
    /// The topic to read.
    pub topic: String,
    /// Start at the log start of every partition (with --group: of partitions the group
    /// has no committed offset for).
    #[arg(long)]
    pub from_beginning: bool,
    /// Read as consumer group G: start at its committed offsets and commit the position
    /// reached (simple-consumer commits; does not join the group).
    #[arg(long, short = 'g', value_name = "G")]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub max_messages: Option<u64>,
    /// Stop after this long without a record (e.g. 5s, 500ms) [default: never].
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print each record's key before its value.
    #[arg(long)]
    pub print_key: bool,
    /// Print each record's headers first.
    #[arg(long)]
    pub print_headers: bool,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// Where a group commits: its coordinator's connection.
struct Committer {
    group: String,
    conn: Conn,
    /// Position last committed, per partition.
    committed: BTreeMap<i32, i64>,
    last: Instant,
}

pub fn run(cmd: &ConsumeCmd) -> anyhow::Result<()> {
    let mut bootstrap = cmd.conn.open()?;
    let (leaders, mut conns) = partition_leaders(&mut bootstrap, &cmd.topic)?;
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let mut committer = match &cmd.group {
        Some(g) => Some(Committer {
            group: g.clone(),
            conn: super::coordinator(&mut bootstrap, &cmd.conn, g)?,
            committed: BTreeMap::new(),
            last: Instant::now(),
        }),
        None => None,
    };
    let mut positions = start_positions(
        &mut bootstrap,
        committer.as_mut(),
        &cmd.topic,
        &partitions,
        cmd.from_beginning,
    )?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut progress = Progress::new(&format!("consumed from {}", cmd.topic));
    if std::io::stdout().is_terminal() {
        progress = Progress::disabled();
    }
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let limit = cmd.max_messages.unwrap_or(u64::MAX);
    'outer: while printed < limit {
        if cmd.timeout.is_some_and(|t| last_record.elapsed() >= t) {
            break;
        }
        let wait = cmd
            .timeout
            .map(|t| t.saturating_sub(last_record.elapsed()))
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(500));
        // Partitions by leader, one Fetch per leader.
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &partitions {
            by_leader.entry(leaders[p]).or_default().push(*p);
        }
        let mut got_any = false;
        for (leader, parts) in by_leader {
            let c = conns.conn(leader, &cmd.conn)?;
            let batches = fetch(c, &cmd.topic, &parts, &mut positions, wait)?;
            for (partition, records) in batches {
                for r in records {
                    let pos = positions.get_mut(&partition).expect("fetched partition");
                    if r.offset < *pos {
                        continue;
                    }
                    *pos = r.offset + 1;
                    if r.control {
                        continue;
                    }
                    if let Err(e) = print_record(&mut out, &r, cmd) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            break 'outer;
                        }
                        return Err(e).context("write a record to stdout");
                    }
                    printed += 1;
                    got_any = true;
                    if printed >= limit {
                        break 'outer;
                    }
                }
            }
        }
        if let Err(e) = out.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("write records to stdout");
        }
        if got_any {
            last_record = Instant::now();
            progress.tick(printed, cmd.max_messages);
        }
        if let Some(c) = committer.as_mut() {
            if c.last.elapsed() >= COMMIT_EVERY {
                commit(c, &cmd.topic, &positions)?;
            }
        }
    }
    let _ = out.flush();
    progress.finish();
    if let Some(c) = committer.as_mut() {
        commit(c, &cmd.topic, &positions)?;
    }
    Ok(())
}

/// One record as a line: `[headers\t][key\t]value\n`.
fn print_record(out: &mut impl Write, r: &Record, cmd: &ConsumeCmd) -> std::io::Result<()> {
    if cmd.print_headers {
        if r.headers.is_empty() {
            out.write_all(b"NO_HEADERS")?;
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(k.as_bytes())?;
            out.write_all(b":")?;
            out.write_all(v.as_deref().unwrap_or(b"null"))?;
        }
        out.write_all(b"\t")?;
    }
    if cmd.print_key {
        out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"\t")?;
    }
    out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

/// Where each partition starts: the group's committed offset, else the log start
/// (`from_beginning`) or end.
fn start_positions(
    c: &mut Conn,
    committer: Option<&mut Committer>,
    topic: &str,
    partitions: &[i32],
    from_beginning: bool,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    if let Some(cm) = committer {
        let r = cm.conn.call(
            &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(sb(&cm.group)))
                .with_topics(None)]),
            8,
        )?;
        for g in &r.groups {
            check(
                g.error_code,
                None,
                &format!("fetch the committed offsets of group {}", cm.group),
            )?;
            for t in g.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                for p in &t.partitions {
                    if p.error_code == 0 && p.committed_offset >= 0 {
                        out.insert(p.partition_index, p.committed_offset);
                    }
                }
            }
        }
        cm.committed = out.clone();
    }
    let missing: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|p| !out.contains_key(p))
        .collect();
    if !missing.is_empty() {
        for (p, o) in list_offsets(c, topic, &missing, if from_beginning { -2 } else { -1 })? {
            out.insert(p, o);
        }
    }
    Ok(out)
}

/// ListOffsets of `partitions` at `timestamp` (-2 earliest, -1 latest).
pub fn list_offsets(
    c: &mut Conn,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let r = c.call(
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]),
        7,
    )?;
    let mut out = BTreeMap::new();
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        check(
            p.error_code,
            None,
            &format!("ListOffsets of {topic}/{}", p.partition_index),
        )?;
        out.insert(p.partition_index, p.offset);
    }
    Ok(out)
}

/// One Fetch of `parts` at their positions; the records of each partition, decoded. A
/// partition whose position fell below the log start moves to it.
fn fetch(
    c: &mut Conn,
    topic: &str,
    parts: &[i32],
    positions: &mut BTreeMap<i32, i64>,
    wait: Duration,
) -> anyhow::Result<Vec<(i32, Vec<Record>)>> {
    let r = c.call(
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_isolation_level(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(positions[p])
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]),
        12,
    )?;
    check(r.error_code, None, &format!("Fetch from {topic}"))?;
    let mut out = Vec::new();
    for p in r.responses.iter().flat_map(|t| &t.partitions) {
        match p.error_code {
            0 => {}
            OFFSET_OUT_OF_RANGE => {
                let to = p.log_start_offset.max(0);
                eprintln!(
                    "{topic}/{}: offset {} is out of range; going on from the log start {to}",
                    p.partition_index,
                    positions.get(&p.partition_index).copied().unwrap_or(-1)
                );
                positions.insert(p.partition_index, to);
                continue;
            }
            code => bail!(
                "Fetch of {topic}/{} failed: {}",
                p.partition_index,
                code_name(code)
            ),
        }
        let data = p.records.clone().unwrap_or_default();
        let mut records = Vec::new();
        for b in shoal_wire::batch::walk(&data) {
            let mut slice: Bytes = data.slice(b.range.clone());
            let set = RecordBatchDecoder::decode(&mut slice).with_context(|| {
                format!(
                    "decode a batch of {topic}/{} at offset {}",
                    p.partition_index, b.header.base_offset
                )
            })?;
            records.extend(set.records);
        }
        out.push((p.partition_index, records));
    }
    Ok(out)
}

/// Commits the positions that moved since the last commit (simple-consumer form).
fn commit(c: &mut Committer, topic: &str, positions: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
    c.last = Instant::now();
    let moved: Vec<(i32, i64)> = positions
        .iter()
        .filter(|(p, o)| c.committed.get(p) != Some(o))
        .map(|(p, o)| (*p, *o))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let r = c.conn.call(
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(&c.group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(sb(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    moved
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                        })
                        .collect(),
                )]),
        8,
    )?;
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        if p.error_code == 25 || p.error_code == 22 {
            bail!(
                "group {} has live members, so it refuses commits from outside ({}); stop its consumers or use another --group",
                c.group,
                code_name(p.error_code)
            );
        }
        check(
            p.error_code,
            None,
            &format!(
                "commit the offset of {topic}/{} for group {}",
                p.partition_index, c.group
            ),
        )?;
    }
    for (p, o) in moved {
        c.committed.insert(p, o);
    }
    Ok(())
}
