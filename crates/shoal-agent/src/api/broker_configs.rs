//! DescribeConfigs of a BROKER resource: the agent's settings under Kafka's broker
//! config names where Kafka has one (`node.id`, `num.partitions`,
//! `group.consumer.session.timeout.ms`, ...) and `shoal.*` names for Shoal's own
//! (`shoal.batch.timeout.ms`, ...). Every one comes from a flag, so every one is
//! read-only, with source STATIC_BROKER_CONFIG and the flag named in its
//! documentation. Altering one is refused per key, saying which flag sets it.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsSynonym,
};

use super::sb;
use crate::Shared;

/// ConfigSource STATIC_BROKER_CONFIG: set in the broker's own configuration.
const SOURCE_STATIC: i8 = 4;
/// Kafka's config types.
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;

/// One agent setting as a broker config: name, config type, the flag, the value.
struct Setting {
    name: &'static str,
    ty: i8,
    flag: &'static str,
    value: String,
}

fn ms(d: std::time::Duration) -> String {
    d.as_millis().to_string()
}

/// The agent's settings, in Kafka's broker config names.
fn settings(shared: &Shared) -> Vec<Setting> {
    let c = &shared.config;
    let me = &shared.me;
    let listeners = if c.listeners.is_empty() {
        format!("PLAINTEXT://{}", c.listen)
    } else {
        c.listeners
            .iter()
            .map(|l| format!("{}://{}", l.name, l.bind))
            .collect::<Vec<_>>()
            .join(",")
    };
    let advertised = if me.listeners.is_empty() {
        format!("PLAINTEXT://{}:{}", me.host, me.port)
    } else {
        me.listeners
            .iter()
            .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
            .collect::<Vec<_>>()
            .join(",")
    };
    let s = |name, ty, flag, value: String| Setting {
        name,
        ty,
        flag,
        value,
    };
    vec![
        s("node.id", INT, "--node-id", me.node_id.to_string()),
        s("broker.id", INT, "--node-id", me.node_id.to_string()),
        s("broker.rack", STRING, "--az", c.az.clone()),
        s("listeners", LIST, "--listen / --listeners", listeners),
        s(
            "advertised.listeners",
            LIST,
            "--advertise / --advertised-listeners",
            advertised,
        ),
        s(
            "sasl.enabled.mechanisms",
            LIST,
            "--sasl-enabled-mechanisms",
            c.sasl_mechanisms.join(","),
        ),
        s(
            "auto.create.topics.enable",
            BOOLEAN,
            "--auto-create-topics",
            c.auto_create_topics.to_string(),
        ),
        s(
            "num.partitions",
            INT,
            "--default-partitions",
            c.default_partitions.to_string(),
        ),
        s(
            "socket.request.max.bytes",
            INT,
            "--max-frame-bytes",
            c.max_frame_bytes.to_string(),
        ),
        s(
            "fetch.max.bytes",
            INT,
            "--fetch-max-bytes",
            c.fetch_max_bytes.to_string(),
        ),
        s(
            "queued.max.request.bytes",
            LONG,
            "--queued-max-request-bytes",
            c.queued_max_request_bytes.to_string(),
        ),
        s(
            "max.connections",
            INT,
            "--max-connections",
            c.max_connections.to_string(),
        ),
        s(
            "max.connections.per.ip",
            INT,
            "--max-connections-per-ip",
            c.max_connections_per_ip.to_string(),
        ),
        s(
            "connections.max.idle.ms",
            LONG,
            "--connections-max-idle",
            ms(c.connections_max_idle),
        ),
        s(
            "connections.max.reauth.ms",
            LONG,
            "--connections-max-reauth",
            ms(c.connections_max_reauth),
        ),
        s(
            "max.incremental.fetch.session.cache.slots",
            INT,
            "--fetch-session-cache-slots",
            c.fetch_session_cache_slots.to_string(),
        ),
        s(
            "group.initial.rebalance.delay.ms",
            INT,
            "--group-initial-rebalance-delay",
            ms(c.group_initial_rebalance_delay),
        ),
        s(
            "group.consumer.session.timeout.ms",
            INT,
            "--consumer-group-session-timeout",
            ms(c.consumer_group_session_timeout),
        ),
        s(
            "group.consumer.heartbeat.interval.ms",
            INT,
            "--consumer-group-heartbeat-interval",
            ms(c.consumer_group_heartbeat_interval),
        ),
        s(
            "group.consumer.migration.policy",
            STRING,
            "--group-migration-policy",
            format!("{:?}", c.group_migration_policy).to_lowercase(),
        ),
        s(
            "offsets.retention.minutes",
            INT,
            "--offsets-retention",
            (c.offsets_retention.as_secs() / 60).to_string(),
        ),
        s(
            "transactional.id.expiration.ms",
            INT,
            "--transactional-id-expiration",
            ms(c.transactional_id_expiration),
        ),
        s(
            "log.retention.check.interval.ms",
            LONG,
            "--retention-check-interval",
            ms(c.retention_check_interval),
        ),
        s(
            "quota.window.num",
            INT,
            "--quota-window-num",
            c.quota_window_num.to_string(),
        ),
        s(
            "quota.window.size.seconds",
            INT,
            "--quota-window-size",
            c.quota_window_size.as_secs().to_string(),
        ),
        s(
            "shoal.batch.timeout.ms",
            LONG,
            "--batch-timeout",
            ms(c.batch_timeout),
        ),
        s(
            "shoal.batch.max.bytes",
            LONG,
            "--batch-max-bytes",
            c.batch_max_bytes.to_string(),
        ),
        s(
            "shoal.cache.bytes",
            LONG,
            "--cache-size",
            c.cache_bytes.to_string(),
        ),
        s(
            "shoal.agent.group",
            STRING,
            "--agent-group",
            c.agent_group.clone(),
        ),
        s("shoal.roles", LIST, "--roles", c.roles.to_string()),
        s(
            "shoal.transaction.version",
            INT,
            "--transaction-version",
            c.transaction_version.to_string(),
        ),
    ]
}

/// The configs of this agent (`name` is its node id; empty asks for cluster-wide
/// dynamic defaults, of which Shoal has none), or INVALID_REQUEST's message.
pub fn describe(
    shared: &Shared,
    name: &str,
    wanted: &dyn Fn(&str) -> bool,
    synonyms: bool,
    documentation: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, String> {
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let me = shared.me.node_id;
    if name.parse::<i32>().ok() != Some(me) {
        return Err(format!(
            "unexpected broker id '{name}': this is node {me} (or ask with an empty name)"
        ));
    }
    Ok(settings(shared)
        .into_iter()
        .filter(|s| wanted(s.name))
        .map(|s| {
            let mut c = DescribeConfigsResourceResult::default()
                .with_name(sb(s.name))
                .with_value(Some(sb(s.value.clone())))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC)
                .with_config_type(s.ty);
            if documentation {
                c = c.with_documentation(Some(sb(format!(
                    "Set by the agent's {} flag; read-only here.",
                    s.flag
                ))));
            }
            if synonyms {
                c = c.with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(sb(s.name))
                    .with_value(Some(sb(s.value)))
                    .with_source(SOURCE_STATIC)]);
            }
            c
        })
        .collect())
}

/// Why a broker config cannot be altered: which flag sets it, or that it is unknown.
pub fn refusal(shared: &Shared, key: &str) -> String {
    match settings(shared).into_iter().find(|s| s.name == key) {
        Some(s) => format!(
            "broker config '{key}' is read-only: it is the agent's {} flag; restart the agent with a new value",
            s.flag
        ),
        None => format!(
            "'{key}' is not a broker config Shoal has; agent settings are flags (see `shoal agent --help`)"
        ),
    }
}
