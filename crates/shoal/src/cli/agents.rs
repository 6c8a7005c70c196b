//! `shoal agents`: the agents (Kafka "brokers") a client is shown, as Metadata and
//! DescribeCluster report them: id, advertised host:port, zone (Kafka's rack), how
//! many partitions each leads, the cluster id and the controller. The list depends on
//! the client id: with `shoal_az=ZONE` in `--client-id`, Shoal shows the agents of
//! that zone when it has any.

use std::collections::BTreeMap;

use clap::Args;
use kafka_protocol::messages::DescribeClusterRequest;

use super::{check, metadata, ConnectArgs};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    shoal agents --bootstrap 10.0.0.5:9092\n  \
    shoal agents --client-id 'app,shoal_az=us-east-1a'   # what a client in that zone sees")]
pub struct AgentsCmd {
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub fn run(cmd: &AgentsCmd) -> anyhow::Result<()> {
    let mut c = cmd.conn.open()?;
    let md = metadata(&mut c, None)?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for t in &md.topics {
        for p in &t.partitions {
            *led.entry(p.leader_id.0).or_default() += 1;
        }
    }
    let dc = c.call(
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(false),
        0,
    )?;
    check(dc.error_code, dc.error_message.as_ref(), "DescribeCluster")?;
    let cluster_id = md
        .cluster_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| dc.cluster_id.to_string());
    println!("cluster {cluster_id}, controller {}", dc.controller_id.0);
    println!(
        "{:>6}  {:<40} {:<20} {:>8}",
        "ID", "ADDRESS", "ZONE", "LEADS"
    );
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    for b in brokers {
        let id = b.node_id.0;
        let zone = b
            .rack
            .as_ref()
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:>6}  {:<40} {:<20} {:>8}",
            format!("{id}{}", if id == dc.controller_id.0 { "*" } else { "" }),
            format!("{}:{}", b.host.as_str(), b.port),
            zone,
            led.get(&id).copied().unwrap_or(0)
        );
    }
    let others: Vec<String> = dc
        .brokers
        .iter()
        .filter(|b| !md.brokers.iter().any(|m| m.node_id == b.broker_id))
        .map(|b| format!("{} ({}:{})", b.broker_id.0, b.host.as_str(), b.port))
        .collect();
    if !others.is_empty() {
        println!(
            "also in DescribeCluster, not in this client's Metadata: {}",
            others.join(", ")
        );
    }
    println!("(* the controller; LEADS counts the partitions each agent leads for this client id)");
    Ok(())
}
