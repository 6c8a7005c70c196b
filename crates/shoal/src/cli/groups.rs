//! `shoal groups list|describe|reset-offsets|delete`: Kafka's
//! `kafka-consumer-groups.sh`. `list` and `describe` live in [`crate::admin`];
//! this module parses the commands and runs `reset-offsets` (a dry run unless
//! `--execute`, as in Kafka, committed in the simple-consumer form, which a group
//! with live members refuses) and `delete` (DeleteGroups: offsets and all).

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};

use super::consume::list_offsets;
use super::{
    check, code_name, coordinator, partition_leaders, sb, topic_name, ConnectArgs, Progress,
};

/// Partitions per OffsetCommit while resetting.
const COMMIT_CHUNK: usize = 500;

#[derive(Args)]
pub struct GroupsCmd {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(subcommand)]
    pub action: GroupsAction,
}

#[derive(Subcommand)]
pub enum GroupsAction {
    /// List groups and their states.
    #[command(after_help = "Example:\n  shoal groups list --bootstrap 127.0.0.1:9092")]
    List,
    /// Show a group's members and, per partition, committed offset, end offset and lag.
    #[command(after_help = "Example:\n  shoal groups describe audit")]
    Describe {
        /// The group id.
        group: String,
    },
    /// Move a group's committed offsets on one topic. Prints the plan; changes nothing
    /// without --execute. The group must have no live members (stop its consumers).
    #[command(after_help = "Examples:\n  \
        shoal groups reset-offsets audit --topic events --to-earliest            # dry run\n  \
        shoal groups reset-offsets audit --topic events --to-latest --execute\n  \
        shoal groups reset-offsets audit --topic events --to-offset 1000 --execute")]
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose partitions move (all of them).
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end (skip everything there now).
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (clamped to each partition's log start and end).
        #[arg(long, group = "target", value_name = "N")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it: a dry run).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups: their committed offsets and all. A group with live members is
    /// refused.
    #[command(after_help = "Example:\n  shoal groups delete audit old-group")]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub fn run(cmd: &GroupsCmd) -> anyhow::Result<()> {
    match &cmd.action {
        GroupsAction::List => crate::admin::list_groups(&cmd.conn),
        GroupsAction::Describe { group } => crate::admin::describe_group(&cmd.conn, group),
        GroupsAction::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(n)) => Target::Offset(*n),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            reset(&cmd.conn, group, topic, target, *execute)
        }
        GroupsAction::Delete { groups } => delete(&cmd.conn, groups),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

/// The offset a partition moves to.
fn new_offset(target: Target, start: i64, end: i64) -> i64 {
    match target {
        Target::Earliest => start,
        Target::Latest => end,
        Target::Offset(n) => n.clamp(start, end.max(start)),
    }
}

fn reset(
    args: &ConnectArgs,
    group: &str,
    topic: &str,
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let mut bootstrap = args.open()?;
    let (leaders, _) = partition_leaders(&mut bootstrap, topic)?;
    let partitions: Vec<i32> = leaders.keys().copied().collect();
    let starts = list_offsets(&mut bootstrap, topic, &partitions, -2)?;
    let ends = list_offsets(&mut bootstrap, topic, &partitions, -1)?;
    let mut coord = coordinator(&mut bootstrap, args, group)?;
    let f = coord.call(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(sb(group)))
            .with_topics(None)]),
        8,
    )?;
    let mut current: BTreeMap<i32, i64> = BTreeMap::new();
    for g in &f.groups {
        check(
            g.error_code,
            None,
            &format!("fetch the offsets of group {group}"),
        )?;
        for t in g.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                current.insert(p.partition_index, p.committed_offset);
            }
        }
    }
    let plan: Vec<(i32, i64, i64)> = partitions
        .iter()
        .map(|p| {
            let (s, e) = (starts[p], ends[p]);
            (
                *p,
                current.get(p).copied().unwrap_or(-1),
                new_offset(target, s, e),
            )
        })
        .collect();
    println!(
        "{:<30} {:>9} {:>14} {:>14}",
        "TOPIC", "PARTITION", "CURRENT", "NEW"
    );
    for (p, cur, new) in &plan {
        let cur = if *cur < 0 {
            "-".to_string()
        } else {
            cur.to_string()
        };
        println!("{topic:<30} {p:>9} {cur:>14} {new:>14}");
    }
    if !execute {
        println!(
            "dry run: nothing changed; add --execute to commit these offsets for group {group}"
        );
        return Ok(());
    }
    let mut progress = Progress::new(&format!("reset {group} on {topic}"));
    let mut done = 0u64;
    for chunk in plan.chunks(COMMIT_CHUNK) {
        let r = coord.call(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(sb(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        chunk
                            .iter()
                            .map(|(p, _, o)| {
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
                    "group {group} has live members, so its offsets cannot be reset ({}); stop its consumers first",
                    code_name(p.error_code)
                );
            }
            check(
                p.error_code,
                None,
                &format!("commit {topic}/{} for group {group}", p.partition_index),
            )?;
        }
        done += chunk.len() as u64;
        progress.tick(done, Some(plan.len() as u64));
    }
    progress.finish();
    println!(
        "group {group}: committed new offsets for {} partition(s) of {topic}",
        plan.len()
    );
    Ok(())
}

fn delete(args: &ConnectArgs, groups: &[String]) -> anyhow::Result<()> {
    let mut bootstrap = args.open()?;
    let mut failed = Vec::new();
    for group in groups {
        let mut coord = coordinator(&mut bootstrap, args, group)?;
        let r = coord.call(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]),
            2,
        )?;
        for res in &r.results {
            let outcome = match res.error_code {
                68 => Err(format!(
                    "group {group} has live members ({}); stop its consumers first",
                    code_name(68)
                )),
                69 => Err(format!(
                    "group {group} does not exist ({}); see `shoal groups list`",
                    code_name(69)
                )),
                code => {
                    check(code, None, &format!("delete group {group}")).map_err(|e| e.to_string())
                }
            };
            match outcome {
                Ok(()) => println!("deleted group {}", res.group_id.0.as_str()),
                Err(e) => {
                    eprintln!("{e}");
                    failed.push(group.clone());
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not delete: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_inside_the_log() {
        assert_eq!(new_offset(Target::Earliest, 5, 10), 5);
        assert_eq!(new_offset(Target::Latest, 5, 10), 10);
        assert_eq!(new_offset(Target::Offset(7), 5, 10), 7);
        assert_eq!(new_offset(Target::Offset(1), 5, 10), 5);
        assert_eq!(new_offset(Target::Offset(99), 5, 10), 10);
    }
}
