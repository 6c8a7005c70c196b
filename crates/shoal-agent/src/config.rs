//! Agent settings. The CLI fills these from flags and environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use shoal_meta::clock::{Clock, SystemClock};

/// How one agent runs. Defaults suit the playground; `shoal agent` raises the flush
/// timeout to trade latency for fewer, larger objects.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The wall clock for timestamps and transaction timeouts ([`SystemClock`]; tests
    /// drive a [`shoal_meta::clock::ManualClock`]).
    pub clock: Arc<dyn Clock>,
    /// Where the Kafka listener binds.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; defaults to the bound address.
    pub advertise: Option<String>,
    /// The broker id this agent reports in Metadata. Negative before the agent starts
    /// means "let the registry pick the lowest free id"; [`crate::Agent::start`] replaces
    /// it with the id the registry gave, so from then on it is this agent's identity.
    pub node_id: i32,
    /// Availability zone (`--az`); Metadata prefers agents in the client's zone. Empty
    /// when unknown.
    pub az: String,
    /// Agent group (`--agent-group`): clients see only the agents of the group of the
    /// agent they asked, and groups and transactions are coordinated within it.
    pub agent_group: String,
    /// What this agent does (`--roles`): serve produce, serve fetch, run background jobs.
    pub roles: Roles,
    /// Largest request frame accepted; bigger frames close the connection.
    pub max_frame_bytes: usize,
    /// A compressed batch may inflate to at most this many times its topic's
    /// `max.message.bytes` (checked while decompressing, on produce and on every later
    /// read of record fields); bounds the work a small "decompression bomb" can cause.
    pub max_decompression_ratio: u64,
    /// A buffered flush is written when it is this old...
    pub batch_timeout: Duration,
    /// ...or this large, whichever comes first.
    pub batch_max_bytes: usize,
    /// Produce data buffered or being flushed beyond this waits (backpressure).
    pub max_buffered_bytes: usize,
    /// Bytes of object chunks kept in memory for fetches.
    pub cache_bytes: usize,
    /// Alignment of cached chunks.
    pub chunk_bytes: u64,
    /// Create unknown topics on Metadata/Produce when the client allows it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: i32,
    /// Most partitions one topic may have (CreateTopics, CreatePartitions).
    pub max_partitions_per_topic: u32,
    /// Most partitions all topics together may have.
    pub max_partitions: u64,
    /// Most topics one CreateTopics request may create; a larger request fails whole.
    pub max_topics_per_request: usize,
    /// Open connections allowed at once; a connection beyond it is accepted and closed
    /// at once (with a log line and `shoal_connections_refused_total`), never left
    /// waiting in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections allowed from one IP address (0: no limit, as Kafka's default).
    pub max_connections_per_ip: usize,
    /// A connection with no request in progress and none read for this long is closed
    /// (Kafka's `connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// A new connection must deliver its first complete request within this.
    pub first_request_timeout: Duration,
    /// Once a request's first byte has arrived, the whole request must arrive within
    /// this (a client sending a byte every few seconds is closed: slowloris).
    pub request_read_timeout: Duration,
    /// Requests one connection may have in progress before it stops reading.
    pub max_in_flight_per_connection: usize,
    /// Bytes all requests together may hold while read, decoded, handled and answered
    /// (Kafka's `queued.max.request.bytes`); see [`crate::memory`]. Connections whose
    /// next request does not fit stop reading until earlier answers are written.
    pub queued_max_request_bytes: usize,
    /// The same bound for the requests of one connection (its pipeline, in bytes).
    pub max_request_bytes_per_connection: usize,
    /// Most record bytes one Fetch answer carries, whatever the client asks for
    /// (Kafka's broker `fetch.max.bytes`); at least one batch is always returned.
    pub fetch_max_bytes: usize,
    /// Fetch sessions (KIP-227) cached at most, and partitions over all of them.
    pub fetch_session_cache_slots: usize,
    pub fetch_session_cache_partitions: usize,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// When set, metrics requests must carry `Authorization: Bearer <token>`
    /// (`--metrics-token-file`); others get 401.
    pub metrics_token: Option<crate::metrics::MetricsToken>,
    /// Where the web console is served, if anywhere (`--console-listen`).
    pub console_listen: Option<SocketAddr>,
    /// When `console_listen` is taken, listen on another free port of the same address
    /// instead of failing (the playground's default address, which several playgrounds
    /// on one machine would otherwise fight over).
    pub console_any_port_if_taken: bool,
    /// The object-store request prices the console's cost estimate uses; `None`: no
    /// estimate shown.
    pub console_prices: Option<crate::console::RequestPrices>,
    /// How long an empty group's first rebalance waits for more members.
    pub group_initial_rebalance_delay: Duration,
    /// Consumer-protocol groups: session timeout and heartbeat interval.
    pub consumer_group_session_timeout: Duration,
    pub consumer_group_heartbeat_interval: Duration,
    /// Which online conversions between classic and consumer-protocol groups are
    /// allowed (Kafka's group.consumer.migration.policy).
    pub group_migration_policy: MigrationPolicy,
    /// The transaction.version feature level offered (2: transactions v2, KIP-890).
    pub transaction_version: i16,
    /// Idle transactional ids and empty groups' offsets are forgotten after these.
    pub transactional_id_expiration: Duration,
    pub offsets_retention: Duration,
    /// How often retention and GC run.
    pub retention_check_interval: Duration,
    /// How long an object no index entry references is kept before GC deletes it.
    pub gc_grace: Duration,
    /// How long GC must have watched an object that was never committed (with its own
    /// monotonic clock, across passes) before it fences and deletes it.
    pub orphan_grace: Duration,
    /// The most a flush may take from the start of its PUT to its commit; past it the
    /// flush's produce requests get REQUEST_TIMED_OUT and its commit is never attempted.
    pub flush_timeout: Duration,
    /// How long an agent that left the registry is still listed to clients as a broker
    /// leading nothing, so they wait for its requests in flight (see [`crate::cluster`]).
    pub departed_agent_grace: Duration,
    /// How long an OffsetCommit waits out a metadata store out of reach before it is
    /// answered with an error (Kafka's `offset.commit.timeout.ms`).
    pub offset_commit_timeout: Duration,
    /// How much of the metadata store's history of old versions (etcd revisions) is
    /// kept; older history is compacted with retention and GC. Zero: never compacted.
    pub metadata_history: Duration,
    /// How often compaction looks for small objects to merge.
    pub compaction_interval: Duration,
    /// Size compaction merges small objects up to; 0 turns compaction off.
    pub compaction_target_bytes: u64,
    /// How often the log cleaner looks at compacted topics; zero turns it off.
    pub cleaner_interval: Duration,
    /// Memory for one cleaning pass's key map (Kafka's `log.cleaner.dedupe.buffer.size`).
    pub cleaner_dedupe_buffer_bytes: u64,
    /// A chunk GET slower than this gets a second, identical GET (hedging).
    pub hedge_after: Duration,
    /// Where the internal chunk endpoint for peer agents binds; `None`: the listen
    /// address's IP with an ephemeral port.
    pub peer_listen: Option<SocketAddr>,
    /// Named listeners (`--listeners`); empty: one PLAINTEXT listener on `listen`,
    /// advertised as `advertise`. The first listener is the agent's primary address.
    pub listeners: Vec<crate::security::listeners::ListenerSpec>,
    /// Certificate, key and client verification of the SSL and SASL_SSL listeners.
    pub tls: Option<crate::security::tls::TlsSettings>,
    /// SASL mechanisms the SASL listeners offer, in Kafka's names.
    pub sasl_mechanisms: Vec<String>,
    /// Longest a SASL session lasts before the client must re-authenticate (KIP-368,
    /// Kafka's `connections.max.reauth.ms`); zero: sessions do not expire.
    pub connections_max_reauth: Duration,
    /// Largest request a SASL listener reads before the client has authenticated
    /// (Kafka's `sasl.server.max.receive.size`).
    pub sasl_max_receive_bytes: usize,
    /// How long a connection whose authentication failed stays open after the answer
    /// (Kafka's `connection.failed.authentication.delay.ms`), so the client reads it.
    pub failed_authentication_delay: Duration,
    /// The secret all agents of the cluster share (`--cluster-secret-file`): peer-cache
    /// requests and answers are signed with it, and unsigned ones refused. `None`: the
    /// peer endpoint is unauthenticated.
    pub cluster_secret: Option<crate::peer_cache::auth::ClusterSecret>,
    /// Client quotas are measured over this many samples (Kafka's `quota.window.num`)...
    pub quota_window_num: usize,
    /// ...of this length each (Kafka's `quota.window.size.seconds`).
    pub quota_window_size: Duration,
    /// Who may do what (`--authorizer`, `--super-users`,
    /// `--allow-everyone-if-no-acl-found`); by default nothing is enforced.
    pub authorizer: crate::security::acl::AuthorizerConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            clock: Arc::new(SystemClock),
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertise: None,
            node_id: -1,
            az: String::new(),
            agent_group: "default".to_string(),
            roles: Roles::ALL,
            max_frame_bytes: 100 * 1024 * 1024,
            max_decompression_ratio: 64,
            batch_timeout: Duration::from_millis(250),
            batch_max_bytes: 8 * 1024 * 1024,
            max_buffered_bytes: 64 * 1024 * 1024,
            cache_bytes: 128 * 1024 * 1024,
            chunk_bytes: 4 * 1024 * 1024,
            auto_create_topics: false,
            default_partitions: 1,
            max_partitions_per_topic: 50_000,
            max_partitions: 200_000,
            max_topics_per_request: 1000,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            connections_max_idle: Duration::from_secs(10 * 60),
            first_request_timeout: Duration::from_secs(10),
            request_read_timeout: Duration::from_secs(60),
            max_in_flight_per_connection: 32,
            queued_max_request_bytes: 512 * 1024 * 1024,
            max_request_bytes_per_connection: 128 * 1024 * 1024,
            fetch_max_bytes: 16 * 1024 * 1024,
            fetch_session_cache_slots: 1000,
            fetch_session_cache_partitions: 200_000,
            metrics_listen: None,
            metrics_token: None,
            console_listen: None,
            console_any_port_if_taken: false,
            console_prices: None,
            group_initial_rebalance_delay: Duration::from_millis(500),
            consumer_group_session_timeout: Duration::from_secs(45),
            group_migration_policy: MigrationPolicy::Bidirectional,
            transaction_version: 2,
            transactional_id_expiration: Duration::from_secs(7 * 24 * 3600),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_group_heartbeat_interval: Duration::from_secs(5),
            retention_check_interval: Duration::from_secs(5 * 60),
            gc_grace: Duration::from_secs(10 * 60),
            metadata_history: Duration::from_secs(5 * 60),
            orphan_grace: Duration::from_secs(60 * 60),
            flush_timeout: Duration::from_secs(30),
            departed_agent_grace: Duration::from_secs(60),
            offset_commit_timeout: Duration::from_secs(20),
            compaction_interval: Duration::from_secs(10),
            compaction_target_bytes: 64 * 1024 * 1024,
            cleaner_interval: Duration::from_secs(15),
            cleaner_dedupe_buffer_bytes: 128 * 1024 * 1024,
            hedge_after: Duration::from_millis(400),
            peer_listen: None,
            listeners: Vec::new(),
            tls: None,
            sasl_mechanisms: vec![
                "PLAIN".into(),
                "SCRAM-SHA-256".into(),
                "SCRAM-SHA-512".into(),
            ],
            connections_max_reauth: Duration::ZERO,
            sasl_max_receive_bytes: 512 * 1024,
            failed_authentication_delay: Duration::from_millis(100),
            cluster_secret: None,
            quota_window_num: 11,
            quota_window_size: Duration::from_secs(1),
            authorizer: Default::default(),
        }
    }
}

impl AgentConfig {
    /// `(host, port)` advertised to clients of the first listener.
    pub fn advertised_host_port(&self) -> (String, i32) {
        let adv = self
            .advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string());
        crate::security::listeners::split_host_port(&adv)
    }

    /// The listeners to bind: `listeners`, or one PLAINTEXT listener on `listen`.
    pub fn listener_specs(&self) -> Vec<crate::security::listeners::ListenerSpec> {
        use crate::security::listeners::{ListenerSpec, SecurityProtocol};
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![ListenerSpec {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            bind: self.listen,
            advertise: self.advertise.clone(),
        }]
    }
}

/// The work an agent takes on. Every agent coordinates groups and transactions and
/// answers metadata and admin requests; roles decide the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Accepts Produce requests (the write path).
    pub produce: bool,
    /// Serves Fetch requests (the read path).
    pub fetch: bool,
    /// Runs retention, object GC, compaction and producer-id expiry.
    pub jobs: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        produce: true,
        fetch: true,
        jobs: true,
    };

    /// The role names, in the order `--roles` documents them.
    pub fn names(&self) -> Vec<String> {
        [
            (self.produce, "produce"),
            (self.fetch, "fetch"),
            (self.jobs, "jobs"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect()
    }
}

impl Default for Roles {
    fn default() -> Self {
        Roles::ALL
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl FromStr for Roles {
    type Err = String;

    /// A comma-separated list of `produce`, `fetch` and `jobs` (case and spaces
    /// ignored, repeats allowed). Unknown names and an empty list are errors.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut roles = Roles {
            produce: false,
            fetch: false,
            jobs: false,
        };
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "produce" => roles.produce = true,
                "fetch" => roles.fetch = true,
                "jobs" => roles.jobs = true,
                _ => {
                    return Err(format!(
                        "unknown role '{name}'; roles are produce, fetch and jobs (comma-separated)"
                    ))
                }
            }
        }
        if roles.names().is_empty() {
            return Err("no role given; name at least one of produce, fetch, jobs".to_string());
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse() {
        assert_eq!("produce,fetch,jobs".parse::<Roles>(), Ok(Roles::ALL));
        assert_eq!(
            " Fetch , fetch ".parse::<Roles>(),
            Ok(Roles {
                produce: false,
                fetch: true,
                jobs: false
            })
        );
        assert_eq!(
            "jobs,produce".parse::<Roles>().unwrap().to_string(),
            "produce,jobs"
        );
        let err = "produce,consume".parse::<Roles>().unwrap_err();
        assert!(err.contains("unknown role 'consume'"), "{err}");
        assert!("".parse::<Roles>().is_err());
        assert!(" , ".parse::<Roles>().is_err());
    }
}

/// Kafka's `group.consumer.migration.policy`: whether a running classic group of
/// consumers is upgraded to the consumer protocol when a consumer-protocol member joins
/// it, and whether a consumer group whose consumer-protocol members all left goes back
/// to the classic protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationPolicy {
    Bidirectional,
    Upgrade,
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    pub fn upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade
        )
    }

    pub fn downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade
        )
    }
}

impl std::str::FromStr for MigrationPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "bidirectional" => MigrationPolicy::Bidirectional,
            "upgrade" => MigrationPolicy::Upgrade,
            "downgrade" => MigrationPolicy::Downgrade,
            "disabled" => MigrationPolicy::Disabled,
            other => {
                return Err(format!(
                    "unknown migration policy {other:?}; use bidirectional, upgrade, downgrade or disabled"
                ))
            }
        })
    }
}
