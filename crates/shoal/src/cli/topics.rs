//! `shoal topics list|create|describe|alter|delete`: Kafka's `kafka-topics.sh` and
//! `kafka-configs.sh` for topics, over Metadata, CreateTopics, ListOffsets,
//! DescribeConfigs, IncrementalAlterConfigs, CreatePartitions and DeleteTopics.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
};

use super::{check, metadata, parse_kv, sb, topic_name, ConnectArgs};
use crate::client::Conn;

/// Kafka's resource type of a topic in the config APIs.
const TOPIC_RESOURCE: i8 = 2;

#[derive(Args)]
pub struct TopicsCmd {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(subcommand)]
    pub action: TopicsAction,
}

#[derive(Subcommand)]
pub enum TopicsAction {
    /// List topics with their partition counts.
    #[command(after_help = "Example:\n  shoal topics list --bootstrap 127.0.0.1:9092")]
    List,
    /// Create a topic.
    #[command(after_help = "Examples:\n  \
        shoal topics create orders --partitions 6\n  \
        shoal topics create events --config retention.ms=86400000 --config cleanup.policy=compact")]
    Create {
        topic: String,
        /// Number of partitions [default: the agents' --default-partitions].
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// A topic config, KEY=VALUE (repeat for more).
        #[arg(long = "config", short = 'c', value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// Show a topic's partitions (leader, log start and end offsets) and its configs.
    #[command(after_help = "Example:\n  shoal topics describe orders")]
    Describe { topic: String },
    /// Change a topic's configs (IncrementalAlterConfigs) or grow its partitions.
    #[command(after_help = "Examples:\n  \
        shoal topics alter orders --set retention.ms=3600000 --delete max.message.bytes\n  \
        shoal topics alter orders --partitions 12")]
    Alter {
        topic: String,
        /// Set a config, KEY=VALUE (repeat for more).
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Remove a config so it falls back to its default (repeat for more).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions (partitions cannot shrink).
        #[arg(long)]
        partitions: Option<i32>,
    },
    /// Delete topics and all their records.
    #[command(after_help = "Example:\n  shoal topics delete orders old-events")]
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

pub fn run(cmd: &TopicsCmd) -> anyhow::Result<()> {
    let mut c = cmd.conn.open()?;
    match &cmd.action {
        TopicsAction::List => list(&mut c),
        TopicsAction::Create {
            topic,
            partitions,
            configs,
        } => create(&mut c, topic, *partitions, configs),
        TopicsAction::Describe { topic } => describe(&mut c, topic),
        TopicsAction::Alter {
            topic,
            set,
            delete,
            partitions,
        } => alter(&mut c, topic, set, delete, *partitions),
        TopicsAction::Delete { topics } => delete_topics(&mut c, topics),
    }
}

fn list(c: &mut Conn) -> anyhow::Result<()> {
    let md = metadata(c, None)?;
    let mut topics: Vec<(String, usize, bool)> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                t.partitions.len(),
                t.is_internal,
            )
        })
        .collect();
    topics.sort();
    println!("{:<50} {:>10}  INTERNAL", "TOPIC", "PARTITIONS");
    for (name, parts, internal) in topics {
        println!(
            "{name:<50} {parts:>10}  {}",
            if internal { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn create(
    c: &mut Conn,
    topic: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let r = c.call(
        &CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions.unwrap_or(-1))
                .with_replication_factor(-1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(sb(k))
                                .with_value(Some(sb(v)))
                        })
                        .collect(),
                )]),
        7,
    )?;
    let t = r.topics.first().context("CreateTopics answered no topic")?;
    if t.error_code == 36 {
        bail!("topic {topic} already exists (see `shoal topics describe {topic}`)");
    }
    check(
        t.error_code,
        t.error_message.as_ref(),
        &format!("create topic {topic}"),
    )?;
    println!(
        "created topic {topic} with {} partition(s)",
        t.num_partitions
    );
    Ok(())
}

/// Config source names of DescribeConfigs v1+.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic broker",
        3 => "dynamic default broker",
        4 => "static broker",
        5 => "default",
        6 => "dynamic broker logger",
        7 => "client metrics",
        8 => "group",
        _ => "unknown",
    }
}

/// Log start and end offsets of every partition: ListOffsets at -2 and at -1.
fn log_offsets(
    c: &mut Conn,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let mut at = |timestamp: i64| -> anyhow::Result<std::collections::BTreeMap<i32, i64>> {
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
        Ok(r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| {
                (
                    p.partition_index,
                    if p.error_code == 0 { p.offset } else { -1 },
                )
            })
            .collect())
    };
    let (start, end) = (at(-2)?, at(-1)?);
    Ok(partitions
        .iter()
        .map(|p| {
            (
                *p,
                start.get(p).copied().unwrap_or(-1),
                end.get(p).copied().unwrap_or(-1),
            )
        })
        .collect())
}

fn describe(c: &mut Conn, topic: &str) -> anyhow::Result<()> {
    let md = metadata(c, Some(&[topic]))?;
    let t = md.topics.first().context("Metadata answered no topic")?;
    if t.error_code == 3 {
        bail!("topic {topic} does not exist (see `shoal topics list`)");
    }
    check(t.error_code, None, &format!("Metadata of topic {topic}"))?;
    let mut parts: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    parts.sort();
    let ids: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
    let offsets = log_offsets(c, topic, &ids)?;
    println!("topic {topic}: {} partition(s)", parts.len());
    println!(
        "{:>9} {:>7} {:>14} {:>14} {:>12}",
        "PARTITION", "LEADER", "LOG-START", "END", "RECORDS"
    );
    for ((p, leader), (_, start, end)) in parts.iter().zip(&offsets) {
        let records = if *start >= 0 && *end >= *start {
            (end - start).to_string()
        } else {
            "-".to_string()
        };
        println!("{p:>9} {leader:>7} {start:>14} {end:>14} {records:>12}");
    }
    let r = c.call(
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(sb(topic))
            .with_configuration_keys(None)]),
        4,
    )?;
    let res = r
        .results
        .first()
        .context("DescribeConfigs answered no resource")?;
    check(
        res.error_code,
        res.error_message.as_ref(),
        &format!("DescribeConfigs of topic {topic}"),
    )?;
    let mut configs: Vec<_> = res.configs.iter().collect();
    configs.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    println!("configs:");
    for cfg in configs {
        let value = if cfg.is_sensitive {
            "(sensitive)".to_string()
        } else {
            cfg.value
                .as_ref()
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| "(null)".into())
        };
        println!(
            "  {}={value}  ({})",
            cfg.name.as_str(),
            source_name(cfg.config_source)
        );
    }
    Ok(())
}

fn alter(
    c: &mut Conn,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
    partitions: Option<i32>,
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() && partitions.is_none() {
        bail!("nothing to change: give --set KEY=VALUE, --delete KEY or --partitions N");
    }
    if !set.is_empty() || !delete.is_empty() {
        let configs = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(sb(k))
                    .with_config_operation(0) // SET
                    .with_value(Some(sb(v)))
            })
            .chain(delete.iter().map(|k| {
                AlterableConfig::default()
                    .with_name(sb(k))
                    .with_config_operation(1) // DELETE
                    .with_value(None)
            }))
            .collect();
        let r = c.call(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(TOPIC_RESOURCE)
                    .with_resource_name(sb(topic))
                    .with_configs(configs),
            ]),
            1,
        )?;
        let res = r
            .responses
            .first()
            .context("IncrementalAlterConfigs answered no resource")?;
        check(
            res.error_code,
            res.error_message.as_ref(),
            &format!("alter the configs of topic {topic}"),
        )?;
        for (k, v) in set {
            println!("{topic}: set {k}={v}");
        }
        for k in delete {
            println!("{topic}: deleted {k} (back to its default)");
        }
    }
    if let Some(count) = partitions {
        let r = c.call(
            &CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(count)
                    .with_assignments(None)]),
            3,
        )?;
        let res = r
            .results
            .first()
            .context("CreatePartitions answered no topic")?;
        check(
            res.error_code,
            res.error_message.as_ref(),
            &format!("grow topic {topic} to {count} partitions"),
        )?;
        println!("{topic}: now {count} partition(s)");
    }
    Ok(())
}

fn delete_topics(c: &mut Conn, topics: &[String]) -> anyhow::Result<()> {
    let r = c.call(
        &DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(topics.iter().map(|t| topic_name(t)).collect()),
        5,
    )?;
    let mut failed = Vec::new();
    for t in &r.responses {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        match check(
            t.error_code,
            t.error_message.as_ref(),
            &format!("delete topic {name}"),
        ) {
            Ok(()) => println!("deleted topic {name}"),
            Err(e) => {
                eprintln!("{e}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not delete: {}", failed.join(", "));
    }
    Ok(())
}
