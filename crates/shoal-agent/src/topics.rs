//! Topic names, ids and configs as this agent sees them, plus topic-config rules.
//!
//! The metadata store is the truth; this is a snapshot refreshed when older than a
//! short TTL, after every local admin change, when the metadata store reports a topic
//! change made through another agent (etcd's watch), and on demand when a request names
//! a topic the snapshot does not know.
//! Config defaults and validation live here too, so every API reports the same values.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use shoal_meta::{MetaError, MetaStore, TopicInfo};
use uuid::Uuid;

const TTL: Duration = Duration::from_millis(1000);

/// All topics at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub by_name: HashMap<String, Arc<TopicInfo>>,
    pub by_id: HashMap<Uuid, Arc<TopicInfo>>,
    pub sorted: Vec<Arc<TopicInfo>>,
}

impl Snapshot {
    /// Every topic as the group coordinator's assignors see it (name, id, partitions).
    pub fn group_topics(&self) -> Vec<(String, crate::groups::consumer::TopicMeta)> {
        self.sorted
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    crate::groups::consumer::TopicMeta {
                        id: t.id,
                        partitions: t.partitions,
                    },
                )
            })
            .collect()
    }
}

pub struct TopicCache {
    meta: Arc<dyn MetaStore>,
    /// The snapshot, when it was loaded, and the generation it was loaded in.
    state: RwLock<Option<(Instant, Arc<Snapshot>, u64)>>,
    /// Bumped by [`TopicCache::invalidate`]; a snapshot from an older generation is
    /// stale even if a reload that began before the change stored it afterwards.
    generation: std::sync::atomic::AtomicU64,
}

impl TopicCache {
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        TopicCache {
            meta,
            state: RwLock::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The current snapshot, reloaded if stale.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, MetaError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if let Some((at, snap, g)) = &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < TTL && *g == generation {
                return Ok(snap.clone());
            }
        }
        self.reload().await
    }

    /// Reloads from the metadata store now.
    pub async fn reload(&self) -> Result<Arc<Snapshot>, MetaError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let topics = self.meta.list_topics().await?;
        let mut snap = Snapshot::default();
        for t in topics {
            let t = Arc::new(t);
            snap.by_name.insert(t.name.clone(), t.clone());
            snap.by_id.insert(t.id, t.clone());
            snap.sorted.push(t);
        }
        let snap = Arc::new(snap);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), snap.clone(), generation));
        Ok(snap)
    }

    /// Drops the snapshot so the next read reloads (a topic changed, here or, as a
    /// metadata watch reports, on another agent).
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Looks a topic up by name, reloading once if it is not in the snapshot.
    pub async fn by_name(&self, name: &str) -> Result<Option<Arc<TopicInfo>>, MetaError> {
        if let Some(t) = self.snapshot().await?.by_name.get(name) {
            return Ok(Some(t.clone()));
        }
        Ok(self.reload().await?.by_name.get(name).cloned())
    }

    /// Looks a topic up by id, reloading once if it is not in the snapshot.
    pub async fn by_id(&self, id: Uuid) -> Result<Option<Arc<TopicInfo>>, MetaError> {
        if let Some(t) = self.snapshot().await?.by_id.get(&id) {
            return Ok(Some(t.clone()));
        }
        Ok(self.reload().await?.by_id.get(&id).cloned())
    }
}

/// The caps on metadata growth (`--max-partitions-per-topic`, `--max-partitions`),
/// checked before a topic is created or grown; `Err` carries the Kafka error code
/// (INVALID_PARTITIONS over the per-topic cap, POLICY_VIOLATION over the total) and a
/// message naming the flag. `adding` is how many partitions the change adds, on top of
/// `pending` added earlier in the same request. The total is read from this agent's
/// snapshot, so agents creating topics at the same moment may overshoot it by one
/// request's worth.
pub async fn check_growth(
    cache: &TopicCache,
    config: &crate::AgentConfig,
    name: &str,
    new_count: i32,
    adding: i64,
    pending: i64,
) -> Result<(), (i16, String)> {
    use kafka_protocol::ResponseError;
    if new_count as i64 > config.max_partitions_per_topic as i64 {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!(
                "topic '{name}' would have {new_count} partitions; at most {} are allowed \
                 (--max-partitions-per-topic)",
                config.max_partitions_per_topic
            ),
        ));
    }
    let existing: i64 = cache
        .snapshot()
        .await
        .map_err(|e| (crate::errors::meta_code(&e), e.to_string()))?
        .sorted
        .iter()
        .map(|t| t.partitions as i64)
        .sum();
    let total = existing + pending + adding;
    if total > config.max_partitions as i64 {
        return Err((
            ResponseError::PolicyViolation.code(),
            format!(
                "the cluster would have {total} partitions; at most {} are allowed \
                 (--max-partitions)",
                config.max_partitions
            ),
        ));
    }
    Ok(())
}

/// Kafka's rule for topic names: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters; the limit is 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// The kind of a config value, as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Every topic config Shoal accepts, with Kafka's default. Shoal stores and reports
/// all of them; which ones it enforces is listed in docs/compatibility.md.
pub const TOPIC_CONFIGS: &[(&str, &str, ConfigType)] = &[
    ("cleanup.policy", "delete", ConfigType::List),
    ("compression.type", "producer", ConfigType::String),
    ("delete.retention.ms", "86400000", ConfigType::Long),
    ("file.delete.delay.ms", "60000", ConfigType::Long),
    ("flush.messages", "9223372036854775807", ConfigType::Long),
    ("flush.ms", "9223372036854775807", ConfigType::Long),
    // Replication throttles: kept and reported, no effect (there are no replicas).
    (
        "follower.replication.throttled.replicas",
        "",
        ConfigType::List,
    ),
    ("index.interval.bytes", "4096", ConfigType::Int),
    (
        "leader.replication.throttled.replicas",
        "",
        ConfigType::List,
    ),
    ("local.retention.bytes", "-2", ConfigType::Long),
    ("local.retention.ms", "-2", ConfigType::Long),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    ("max.message.bytes", "1048588", ConfigType::Int),
    ("message.downconversion.enable", "true", ConfigType::Boolean),
    (
        "message.timestamp.after.max.ms",
        // Kafka 4's default: a record stamped far in the future cannot freeze retention.
        "3600000",
        ConfigType::Long,
    ),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    (
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    ("message.timestamp.type", "CreateTime", ConfigType::String),
    ("min.cleanable.dirty.ratio", "0.5", ConfigType::Double),
    ("min.compaction.lag.ms", "0", ConfigType::Long),
    ("min.insync.replicas", "1", ConfigType::Int),
    ("preallocate", "false", ConfigType::Boolean),
    ("remote.storage.enable", "false", ConfigType::Boolean),
    ("retention.bytes", "-1", ConfigType::Long),
    ("retention.ms", "604800000", ConfigType::Long),
    ("segment.bytes", "1073741824", ConfigType::Int),
    ("segment.index.bytes", "10485760", ConfigType::Int),
    ("segment.jitter.ms", "0", ConfigType::Long),
    ("segment.ms", "604800000", ConfigType::Long),
    (
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
    ),
];

pub fn config_spec(name: &str) -> Option<(&'static str, ConfigType)> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, t)| (*d, *t))
}

/// Checks one topic config value; the error says what would be accepted.
pub fn validate_config(name: &str, value: &str) -> Result<(), String> {
    let Some((_, ty)) = config_spec(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let ok = match (name, ty) {
        ("cleanup.policy", _) => value
            .split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact")),
        ("message.timestamp.type", _) => matches!(value, "CreateTime" | "LogAppendTime"),
        ("compression.type", _) => matches!(
            value,
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
        ),
        ("retention.ms" | "retention.bytes", _) => value.parse::<i64>().is_ok_and(|v| v >= -1),
        ("max.message.bytes", _) => value.parse::<i32>().is_ok_and(|v| v >= 0),
        (_, ConfigType::Int) => value.parse::<i32>().is_ok(),
        (_, ConfigType::Long) => value.parse::<i64>().is_ok(),
        (_, ConfigType::Double) => value.parse::<f64>().is_ok(),
        (_, ConfigType::Boolean) => matches!(value, "true" | "false"),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value '{value}' for topic config '{name}'"))
    }
}

/// A topic's effective value for `name`: the explicit one or the default.
pub fn effective<'a>(configs: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    configs
        .get(name)
        .map(String::as_str)
        .or_else(|| config_spec(name).map(|(d, _)| d))
        .unwrap_or("")
}

/// The effective `max.message.bytes` of a topic.
pub fn max_message_bytes(t: &TopicInfo) -> usize {
    effective(&t.configs, "max.message.bytes")
        .parse::<usize>()
        .unwrap_or(1_048_588)
}

/// Whether a topic stamps batches with the broker's time.
pub fn log_append_time(t: &TopicInfo) -> bool {
    effective(&t.configs, "message.timestamp.type") == "LogAppendTime"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configs() {
        assert!(validate_config("retention.ms", "-1").is_ok());
        assert!(validate_config("retention.ms", "soon").is_err());
        assert!(validate_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_config("cleanup.policy", "shred").is_err());
        assert!(validate_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_config("no.such.config", "1").is_err());
        let mut m = BTreeMap::new();
        assert_eq!(effective(&m, "retention.ms"), "604800000");
        m.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(effective(&m, "retention.ms"), "5");
    }
}
