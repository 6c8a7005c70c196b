//! Admin commands that talk to a running agent over the Kafka protocol, like Kafka's
//! own CLI tools: `shoal groups list` and `shoal groups describe GROUP` (committed
//! offsets, end offsets and lag per partition, and which member owns each partition),
//! and `shoal partitions skip-corrupt` (finds the first corrupt batches of a partition
//! and moves its log start past them with DeleteRecords).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, DescribeGroupsRequest, FetchRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cli::ConnectArgs;
use crate::client::Conn;

/// Prints every group with its state.
pub fn list_groups(args: &ConnectArgs) -> anyhow::Result<()> {
    let mut c = args.open()?;
    let r = c.call(&ListGroupsRequest::default(), 4)?;
    if r.error_code != 0 {
        bail!("ListGroups failed with error code {}", r.error_code);
    }
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for g in r.groups {
        println!(
            "{:<40} {:<20} {}",
            g.group_id.0.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

/// Topic → partitions in a consumer-protocol assignment (version, [topic, [partition]]).
pub(crate) fn parse_assignment(mut b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    take(&mut b, 2)?;
    let topics = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..topics.clamp(0, 100_000) {
        let len = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
        let name = String::from_utf8_lossy(take(&mut b, usize::try_from(len).ok()?)?).into_owned();
        let n = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut parts = Vec::new();
        for _ in 0..n.clamp(0, 1_000_000) {
            parts.push(i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?));
        }
        out.push((name, parts));
    }
    Some(out)
}

/// Prints a group's state, members, and per-partition committed offset, end offset and lag.
pub fn describe_group(args: &ConnectArgs, group: &str) -> anyhow::Result<()> {
    let mut bootstrap = args.open()?;
    let mut c = crate::cli::coordinator(&mut bootstrap, args, group)?;
    let d = c.call(
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
        5,
    )?;
    let Some(desc) = d.groups.first() else {
        bail!("no answer for group {group}")
    };
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &desc.members {
        for (topic, parts) in parse_assignment(&m.member_assignment).unwrap_or_default() {
            for p in parts {
                owner.insert((topic.clone(), p), m.member_id.as_str().to_string());
            }
        }
    }
    let f = c.call(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(None)]),
        8,
    )?;
    let fg = f.groups.first().context("no offsets answer")?;
    if fg.error_code != 0 {
        bail!("OffsetFetch failed with error code {}", fg.error_code);
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &fg.topics {
        for p in &t.partitions {
            committed.insert(
                (t.name.0.as_str().to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    for key in owner.keys() {
        committed.entry(key.clone()).or_insert(-1);
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in committed.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let lo = c.call(
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        5,
    )?;
    let mut end: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in lo.topics {
        for p in t.partitions {
            end.insert(
                (t.name.0.as_str().to_string(), p.partition_index),
                if p.error_code == 0 { p.offset } else { -1 },
            );
        }
    }
    println!(
        "group {group}: state {}, protocol {}, {} member(s)",
        desc.group_state.as_str(),
        if desc.protocol_data.is_empty() {
            "-"
        } else {
            desc.protocol_data.as_str()
        },
        desc.members.len()
    );
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    let mut total = 0i64;
    for ((topic, p), off) in &committed {
        let e = end.get(&(topic.clone(), *p)).copied().unwrap_or(-1);
        let lag = if e >= 0 { e - (*off).max(0) } else { 0 };
        total += lag.max(0);
        let show = |v: i64| {
            if v < 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        println!(
            "{:<30} {:>9} {:>14} {:>14} {:>10}  {}",
            topic,
            p,
            show(*off),
            show(e),
            lag,
            owner
                .get(&(topic.clone(), *p))
                .map(String::as_str)
                .unwrap_or("-")
        );
    }
    println!("total lag {total}");
    Ok(())
}

/// Kafka's CORRUPT_MESSAGE error code.
const CORRUPT_MESSAGE: i16 = 2;
/// Bytes asked per fetch while scanning for the corrupt batch.
const SCAN_BYTES: i32 = 1 << 20;

/// What a fetch at one offset found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Batches, and the offset after the last one.
    Records {
        next: i64,
    },
    /// Nothing to read there (at or past the high watermark).
    Empty,
    Corrupt,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// (log start offset, high watermark) of a partition, from ListOffsets.
fn log_bounds(c: &mut Conn, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
    let mut at = |timestamp: i64| -> anyhow::Result<i64> {
        let r = c.call(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp)])]),
            5,
        )?;
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("ListOffsets answered no partition")?;
        if p.error_code != 0 {
            bail!(
                "ListOffsets of {topic}/{partition} failed with error code {}",
                p.error_code
            );
        }
        Ok(p.offset)
    };
    Ok((at(-2)?, at(-1)?))
}

/// One fetch of `topic`/`partition` at `offset` (read_uncommitted, no waiting).
fn probe(c: &mut Conn, topic: &str, partition: i32, offset: i64) -> anyhow::Result<Probe> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(SCAN_BYTES)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(SCAN_BYTES)])]);
    let r = c.call(&req, 12)?;
    if r.error_code != 0 {
        bail!("Fetch failed with error code {}", r.error_code);
    }
    let p = r
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .context("Fetch answered no partition")?;
    match p.error_code {
        0 => {}
        CORRUPT_MESSAGE => return Ok(Probe::Corrupt),
        code => {
            bail!("Fetch of {topic}/{partition} at offset {offset} failed with error code {code}")
        }
    }
    let records = p.records.clone().unwrap_or_default();
    let next = shoal_wire::batch::walk(&records)
        .last()
        .map(|b| b.header.base_offset + b.header.offset_span());
    Ok(match next {
        Some(next) => Probe::Records { next },
        None => Probe::Empty,
    })
}

/// The corrupt offsets `[first, end)` found from `from` on (before `high_watermark`):
/// `first` is where a scan of whole batches gets CORRUPT_MESSAGE, `end` the lowest
/// offset above it that reads again (found by doubling steps, then bisection; the read
/// path fails every offset from a corrupt batch to the end of its unreadable run).
/// `None` when every batch reads.
fn find_corrupt(
    mut probe: impl FnMut(i64) -> anyhow::Result<Probe>,
    from: i64,
    high_watermark: i64,
) -> anyhow::Result<Option<(i64, i64)>> {
    let mut at = from;
    let first = loop {
        if at >= high_watermark {
            return Ok(None);
        }
        match probe(at)? {
            Probe::Corrupt => break at,
            Probe::Records { next } if next > at => at = next,
            Probe::Records { .. } | Probe::Empty => {
                bail!("a fetch at offset {at}, below the high watermark {high_watermark}, returned no records")
            }
        }
    };
    // `bad` reads corrupt, `good` does not (the high watermark always reads: empty).
    let (mut bad, mut step) = (first, 1i64);
    let mut good = loop {
        let next = first.saturating_add(step).min(high_watermark);
        if next >= high_watermark || probe(next)? != Probe::Corrupt {
            break next;
        }
        bad = next;
        step = step.saturating_mul(2);
    };
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if probe(mid)? == Probe::Corrupt {
            bad = mid;
        } else {
            good = mid;
        }
    }
    Ok(Some((first, good)))
}

/// `shoal partitions skip-corrupt`: finds the first corrupt offsets of a partition at or
/// after `from` (default: the log start) and, unless `dry_run`, moves the log start past
/// them with DeleteRecords. The records skipped are lost to every consumer.
pub fn skip_corrupt(
    args: &ConnectArgs,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let mut c = args.open()?;
    let (log_start, high_watermark) = log_bounds(&mut c, topic, partition)?;
    let from = from.unwrap_or(log_start).max(log_start);
    let found = find_corrupt(|o| probe(&mut c, topic, partition, o), from, high_watermark)?;
    let Some((first, end)) = found else {
        println!(
            "{topic}/{partition}: no corrupt batch between offsets {from} and {high_watermark}; nothing skipped"
        );
        return Ok(());
    };
    if dry_run {
        println!(
            "{topic}/{partition}: offsets {first}..{end} ({} offsets) are corrupt; --dry-run: nothing skipped",
            end - first
        );
        return Ok(());
    }
    let r = c.call(
        &DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(end)])]),
        2,
    )?;
    let p = r
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("DeleteRecords answered no partition")?;
    if p.error_code != 0 {
        bail!(
            "DeleteRecords of {topic}/{partition} to offset {end} failed with error code {}",
            p.error_code
        );
    }
    println!(
        "{topic}/{partition}: skipped corrupt offsets {first}..{end} ({} offsets; records below {first} were also removed); the log start is now {}",
        end - first,
        p.low_watermark
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_assignments() {
        // v0, one topic "t" with partitions 1 and 3, empty user data.
        let b = [
            0u8, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 255, 255, 255, 255,
        ];
        assert_eq!(
            parse_assignment(&b).unwrap(),
            vec![("t".to_string(), vec![1, 3])]
        );
        assert!(parse_assignment(&[0, 0, 0, 0, 0, 5]).is_none());
    }

    /// A log of one-offset batches where `bad` offsets read corrupt.
    fn log(bad: std::ops::Range<i64>) -> impl FnMut(i64) -> anyhow::Result<Probe> {
        move |o| {
            Ok(if bad.contains(&o) {
                Probe::Corrupt
            } else if o >= 100 {
                Probe::Empty
            } else {
                // Two batches per fetch, stopping before a bad run as the agent does.
                let next = (o + 2).min(if o < bad.start { bad.start } else { 100 });
                Probe::Records { next }
            })
        }
    }

    #[test]
    fn finds_exactly_the_corrupt_run() {
        for (start, end) in [(0, 1), (7, 8), (7, 40), (50, 100), (99, 100), (1, 64)] {
            assert_eq!(
                find_corrupt(log(start..end), 0, 100).unwrap(),
                Some((start, end)),
                "run {start}..{end}"
            );
        }
        // From past the run, or with none: nothing.
        assert_eq!(find_corrupt(log(7..8), 8, 100).unwrap(), None);
        assert_eq!(find_corrupt(log(0..0), 0, 100).unwrap(), None);
        // A fetch below the high watermark that returns nothing is an error, not a loop.
        assert!(find_corrupt(|_| Ok(Probe::Empty), 0, 100).is_err());
    }
}
