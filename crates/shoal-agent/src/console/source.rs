//! What the console may know about the agent: the [`Source`] trait, and its one
//! implementation over the running agent's [`Shared`] state.
//!
//! This file is the only part of the console that reads the agent's internals. Every
//! answer is a plain, serialisable copy taken at the moment of the request, so pages and
//! JSON endpoints hold no locks and cannot change what the agent does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde::Serialize;
use shoal_meta::MetaError;
use uuid::Uuid;

use crate::cluster::ClusterView;
use crate::Shared;

/// Totals of the agent's counters the plots are made of (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub produced_bytes: u64,
    pub fetched_bytes: u64,
    /// Object-store PUTs and GETs of every kind: flushes and reads, compaction and the
    /// cleaner.
    pub puts: u64,
    pub gets: u64,
}

/// One live agent, as the registry lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    pub node_id: i32,
    pub address: String,
    pub zone: String,
    pub agent_group: String,
    pub roles: Vec<String>,
    /// Whether this is the agent serving the console; only its uptime and version are
    /// known (the registry does not hold them for the others).
    pub this_agent: bool,
    pub uptime_s: Option<u64>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionRow {
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
    /// Bytes of record batches in the index from the log start; `None` when the topic
    /// has too many partitions to add them up on every page load.
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicRow {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionRow>,
    /// Only the configs set on the topic; the rest are the agent's defaults.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// Topic → partitions this member consumes.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagRow {
    pub topic: String,
    pub partition: i32,
    /// Committed offset; -1 for none.
    pub committed: i64,
    /// The partition's high watermark; -1 when the topic is gone.
    pub end: i64,
    /// Records between the committed offset and the end (0 when either is unknown).
    pub lag: i64,
    pub member: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    /// State as ListGroups shows it; `Empty` for a group known only by its offsets.
    pub state: String,
    /// Whether this agent coordinates the group (only then are its members known here).
    pub coordinated_here: bool,
    pub members: Vec<MemberRow>,
    pub partitions: Vec<LagRow>,
    pub total_lag: i64,
}

/// The console's narrow view of an agent.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    fn cluster_id(&self) -> String;
    fn agents(&self) -> Vec<AgentRow>;
    async fn topics(&self) -> Result<Vec<TopicRow>, MetaError>;
    async fn groups(&self) -> Result<Vec<GroupRow>, MetaError>;
    fn counters(&self) -> Counters;
}

/// Topics with more partitions than this in all are listed without their bytes.
const MAX_PARTITIONS_WITH_BYTES: i64 = 512;

/// [`Source`] over a running agent.
pub struct AgentSource {
    shared: Arc<Shared>,
    started: Instant,
}

impl AgentSource {
    pub fn new(shared: Arc<Shared>) -> Self {
        AgentSource {
            shared,
            started: Instant::now(),
        }
    }
}

#[async_trait::async_trait]
impl Source for AgentSource {
    fn cluster_id(&self) -> String {
        self.shared.cluster_id.clone()
    }

    fn agents(&self) -> Vec<AgentRow> {
        let me = &self.shared.me;
        let mut live = self.shared.meta.live_agents();
        if !live.iter().any(|a| a.node_id == me.node_id) {
            live.push(me.clone());
        }
        live.sort_by_key(|a| a.node_id);
        live.into_iter()
            .map(|a| {
                let this_agent = a.node_id == me.node_id && a.incarnation == me.incarnation;
                AgentRow {
                    node_id: a.node_id,
                    address: format!("{}:{}", a.host, a.port),
                    zone: a.az,
                    agent_group: a.group,
                    roles: a.roles,
                    this_agent,
                    uptime_s: this_agent.then(|| self.started.elapsed().as_secs()),
                    version: this_agent.then(|| env!("CARGO_PKG_VERSION").to_string()),
                }
            })
            .collect()
    }

    async fn topics(&self) -> Result<Vec<TopicRow>, MetaError> {
        let meta = &*self.shared.meta;
        let mut topics = meta.list_topics().await?;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let total: i64 = topics.iter().map(|t| i64::from(t.partitions)).sum();
        let mut rows = Vec::with_capacity(topics.len());
        for t in topics {
            let parts: Vec<(Uuid, i32)> = (0..t.partitions).map(|p| (t.id, p)).collect();
            let mut partitions = Vec::with_capacity(parts.len());
            for ((_, p), offsets) in parts.iter().zip(meta.partitions_offsets(&parts).await) {
                let o = offsets?;
                let bytes = if total <= MAX_PARTITIONS_WITH_BYTES {
                    let entries = crate::cleaner::all_entries(meta, t.id, *p, o.log_start).await?;
                    Some(entries.iter().map(|e| e.data_len).sum())
                } else {
                    None
                };
                partitions.push(PartitionRow {
                    partition: *p,
                    log_start: o.log_start,
                    high_watermark: o.high_watermark,
                    bytes,
                });
            }
            rows.push(TopicRow {
                name: t.name,
                id: t.id,
                partitions,
                configs: t.configs,
            });
        }
        Ok(rows)
    }

    async fn groups(&self) -> Result<Vec<GroupRow>, MetaError> {
        let shared = &*self.shared;
        let view = ClusterView::of(shared);
        let topics = shared.meta.list_topics().await?;
        let by_name: HashMap<&str, &shoal_meta::TopicInfo> =
            topics.iter().map(|t| (t.name.as_str(), t)).collect();
        let by_id: HashMap<Uuid, &str> = topics.iter().map(|t| (t.id, t.name.as_str())).collect();
        let mut ids: BTreeSet<String> = shared.meta.offset_groups().await?.into_iter().collect();
        ids.extend(shared.groups.group_ids());
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let coordinated_here = view.coordinates(&id);
            let (state, members) = if !coordinated_here {
                ("Unknown here".to_string(), Vec::new())
            } else if let Some(d) = shared.groups.describe(&id) {
                let members = d
                    .members
                    .into_iter()
                    .map(|m| MemberRow {
                        assignment: parse_assignment(&m.assignment),
                        member_id: m.member_id,
                        client_id: m.client_id,
                        client_host: m.client_host,
                    })
                    .collect();
                (d.state.to_string(), members)
            } else if let Some(d) = shared.groups.consumer.describe(&id) {
                let members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut assignment: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                        for (topic, p) in &m.assigned {
                            let name = by_id.get(topic).copied().unwrap_or("?");
                            assignment.entry(name.to_string()).or_default().push(*p);
                        }
                        MemberRow {
                            member_id: m.member_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            assignment,
                        }
                    })
                    .collect();
                (d.state.to_string(), members)
            } else {
                ("Empty".to_string(), Vec::new())
            };
            let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
            for m in &members {
                for (t, ps) in &m.assignment {
                    for p in ps {
                        owner.insert((t.clone(), *p), m.member_id.clone());
                    }
                }
            }
            let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for o in shared.meta.group_offsets(&id).await? {
                committed.insert((o.topic, o.partition), o.offset);
            }
            for key in owner.keys() {
                committed.entry(key.clone()).or_insert(-1);
            }
            let keys: Vec<(String, i32)> = committed.keys().cloned().collect();
            let known: Vec<(Uuid, i32)> = keys
                .iter()
                .filter_map(|(t, p)| by_name.get(t.as_str()).map(|info| (info.id, *p)))
                .collect();
            let mut ends: HashMap<(Uuid, i32), i64> = HashMap::new();
            for (tp, o) in known
                .iter()
                .zip(shared.meta.partitions_offsets(&known).await)
            {
                if let Ok(o) = o {
                    ends.insert(*tp, o.high_watermark);
                }
            }
            let partitions: Vec<LagRow> = keys
                .into_iter()
                .map(|(topic, partition)| {
                    let end = by_name
                        .get(topic.as_str())
                        .and_then(|info| ends.get(&(info.id, partition)))
                        .copied()
                        .unwrap_or(-1);
                    let c = committed[&(topic.clone(), partition)];
                    LagRow {
                        lag: lag(c, end),
                        member: owner.get(&(topic.clone(), partition)).cloned(),
                        topic,
                        partition,
                        committed: c,
                        end,
                    }
                })
                .collect();
            rows.push(GroupRow {
                group: id,
                state,
                coordinated_here,
                members,
                total_lag: partitions.iter().map(|p| p.lag).sum(),
                partitions,
            });
        }
        Ok(rows)
    }

    fn counters(&self) -> Counters {
        let m = &self.shared.metrics;
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        Counters {
            produced_bytes: g(&m.produced_bytes),
            fetched_bytes: g(&m.fetched_bytes),
            puts: g(&m.object_puts) + g(&m.compaction_puts) + g(&m.cleaner_puts),
            gets: g(&m.object_gets) + g(&m.compaction_gets) + g(&m.cleaner_gets),
        }
    }
}

/// Records from a committed offset to the end; a group that committed nothing lags by
/// the whole partition. Zero when the end is unknown.
fn lag(committed: i64, end: i64) -> i64 {
    if end < 0 {
        0
    } else {
        (end - committed.max(0)).max(0)
    }
}

/// Topic → partitions of a classic consumer-protocol assignment (a version, then the
/// body); empty when it is not one.
fn parse_assignment(bytes: &bytes::Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut b = bytes.clone();
    if b.len() < 2 {
        return out;
    }
    // Later versions only append fields: read them as the newest one we know.
    let version = b.get_i16().clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version) {
        for t in a.assigned_partitions {
            out.insert(t.topic.0.to_string(), t.partitions);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_start() {
        assert_eq!(lag(40, 100), 60);
        assert_eq!(lag(-1, 100), 100);
        assert_eq!(lag(120, 100), 0);
        assert_eq!(lag(5, -1), 0);
    }

    #[test]
    fn assignments_decode_and_garbage_gives_nothing() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("demo")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).unwrap();
        let parsed = parse_assignment(&buf.freeze());
        assert_eq!(parsed.get("demo"), Some(&vec![0, 2]));
        assert!(parse_assignment(&bytes::Bytes::from_static(b"\x00\x01\xff")).is_empty());
    }
}
