//! Per-group configs (KIP-848's GROUP config resource, type 32): a consumer-protocol
//! group's own session timeout and heartbeat interval, set with IncrementalAlterConfigs
//! (`kafka-configs.sh --entity-type groups`) in place of the agent's
//! `--consumer-group-session-timeout` and `--consumer-group-heartbeat-interval`.
//!
//! The configs live in the metadata store ([`MetaStore::group_configs`]), so any agent
//! can take them and the group's coordinator, wherever it runs, sees them. The
//! coordinator reads them through [`GroupConfigCache`]: at most one store read per group
//! per [`CACHE_TTL`], so a change applies within seconds (at once on the agent that took
//! the change). A store that cannot be read leaves the last known values in force.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use shoal_meta::MetaStore;
use tokio::time::Instant;

pub const SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
pub const HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";
/// Every group config Shoal knows, as Kafka names them.
pub const GROUP_CONFIGS: &[&str] = &[SESSION_TIMEOUT, HEARTBEAT_INTERVAL];

/// How long a group's configs are used before the store is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept before expired ones are dropped (one per group heartbeating here).
const CACHE_SOFT_LIMIT: usize = 10_000;

/// Bounds of each config, in milliseconds (Kafka bounds them by broker settings; Shoal
/// takes any value a member can live with).
const SESSION_RANGE: (u64, u64) = (1_000, 3_600_000);
const HEARTBEAT_RANGE: (u64, u64) = (100, 3_600_000);

/// A group's own timeouts; `None` takes the agent's flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTimeouts {
    pub session: Option<Duration>,
    pub heartbeat: Option<Duration>,
}

impl GroupTimeouts {
    /// Reads the known keys of a group's stored configs (values were validated when set).
    pub fn from_configs(configs: &BTreeMap<String, String>) -> Self {
        let ms = |k: &str| {
            configs
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        GroupTimeouts {
            session: ms(SESSION_TIMEOUT),
            heartbeat: ms(HEARTBEAT_INTERVAL),
        }
    }
}

/// Checks a group's whole config set: known keys, whole milliseconds within bounds, and a
/// heartbeat interval below the session timeout (each taken from `defaults` when unset).
/// The error says which key and why (INVALID_CONFIG's message).
pub fn validate(
    configs: &BTreeMap<String, String>,
    defaults: (Duration, Duration),
) -> Result<(), String> {
    for (k, v) in configs {
        let (lo, hi) = match k.as_str() {
            SESSION_TIMEOUT => SESSION_RANGE,
            HEARTBEAT_INTERVAL => HEARTBEAT_RANGE,
            _ => {
                return Err(format!(
                    "unknown group config '{k}'; known: {}",
                    GROUP_CONFIGS.join(", ")
                ))
            }
        };
        match v.parse::<u64>() {
            Ok(n) if (lo..=hi).contains(&n) => {}
            _ => {
                return Err(format!(
                    "{k} must be whole milliseconds in [{lo}, {hi}], not '{v}'"
                ))
            }
        }
    }
    let t = GroupTimeouts::from_configs(configs);
    let (session, heartbeat) = (
        t.session.unwrap_or(defaults.0),
        t.heartbeat.unwrap_or(defaults.1),
    );
    if heartbeat >= session {
        return Err(format!(
            "{HEARTBEAT_INTERVAL} ({} ms) must be less than {SESSION_TIMEOUT} ({} ms)",
            heartbeat.as_millis(),
            session.as_millis()
        ));
    }
    Ok(())
}

/// Groups' timeouts as last read from the store, by group id.
#[derive(Default)]
pub struct GroupConfigCache {
    entries: Mutex<HashMap<String, (Instant, GroupTimeouts)>>,
}

impl GroupConfigCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, GroupTimeouts)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group's timeouts, read from `meta` when not read in the last [`CACHE_TTL`].
    pub async fn get(&self, meta: &dyn MetaStore, group: &str) -> GroupTimeouts {
        let now = Instant::now();
        let cached = self.lock().get(group).copied();
        if let Some((at, t)) = cached {
            if now.duration_since(at) < CACHE_TTL {
                return t;
            }
        }
        let t = match meta.group_configs(group).await {
            Ok(c) => GroupTimeouts::from_configs(&c),
            Err(e) => {
                tracing::debug!(group, error = %e, "group configs unreadable; keeping the last known");
                return cached.map(|(_, t)| t).unwrap_or_default();
            }
        };
        let mut entries = self.lock();
        if entries.len() >= CACHE_SOFT_LIMIT {
            entries.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
            if entries.len() >= CACHE_SOFT_LIMIT {
                entries.clear();
            }
        }
        entries.insert(group.to_string(), (now, t));
        t
    }

    /// Forgets a group's entry, so the next heartbeat reads the store (after a change
    /// taken here).
    pub fn invalidate(&self, group: &str) {
        self.lock().remove(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation_names_the_key_and_the_bound() {
        let d = (Duration::from_secs(45), Duration::from_secs(5));
        assert!(validate(&configs(&[(SESSION_TIMEOUT, "20000")]), d).is_ok());
        let e = validate(&configs(&[("consumer.foo", "1")]), d).unwrap_err();
        assert!(e.contains("unknown group config 'consumer.foo'"), "{e}");
        let e = validate(&configs(&[(SESSION_TIMEOUT, "12s")]), d).unwrap_err();
        assert!(e.contains("whole milliseconds"), "{e}");
        let e = validate(&configs(&[(SESSION_TIMEOUT, "999")]), d).unwrap_err();
        assert!(e.contains("[1000, 3600000]"), "{e}");
        // The default heartbeat (5 s) is not below a 4 s session.
        let e = validate(&configs(&[(SESSION_TIMEOUT, "4000")]), d).unwrap_err();
        assert!(e.contains("must be less than"), "{e}");
        assert!(validate(
            &configs(&[(SESSION_TIMEOUT, "4000"), (HEARTBEAT_INTERVAL, "1000")]),
            d
        )
        .is_ok());
    }

    #[test]
    fn timeouts_read_known_keys_only() {
        let t = GroupTimeouts::from_configs(&configs(&[(HEARTBEAT_INTERVAL, "1500")]));
        assert_eq!(
            t,
            GroupTimeouts {
                session: None,
                heartbeat: Some(Duration::from_millis(1500))
            }
        );
    }
}
