//! The `shoal` binary: `playground` (one process, everything embedded) and `agent`
//! (production settings), the admin CLI (`topics`, `produce`, `consume`, `groups`,
//! `agents`, `diagnose-connection`, `partitions`; see [`cli`]), `users` for SCRAM
//! credentials and `cost` for a month's bill beside Kafka's. Flags all have
//! `SHOAL_*` environment equivalents.

mod admin;
mod alloc;
mod cli;
mod client;
mod cost;
mod demo;
mod secure;
mod stores;
mod units;
mod users;

#[global_allocator]
static ALLOCATOR: alloc::LazyHuge = alloc::LazyHuge;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use shoal_agent::config::Roles;
use shoal_agent::security::acl::AuthorizerConfig;
use shoal_agent::{Agent, AgentConfig};
use tokio_util::sync::CancellationToken;

/// `0.1.0 (commit 0123456789ab)`: the version and the commit built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SHOAL_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "shoal",
    version = VERSION,
    about = "A Kafka-compatible streaming platform that keeps all data in object storage",
    long_about = "Shoal speaks the Kafka protocol, so existing clients and tools work unchanged. \
Record data lives in object storage; offsets, topics and configs in a metadata store. \
Agents keep no state of their own.\n\nStart here: `shoal playground`, then point any Kafka \
client at 127.0.0.1:9092."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One agent with embedded defaults: SQLite metadata and objects in a local
    /// directory, both under --data-dir, and the web console on 127.0.0.1:8080. For
    /// development and trying Shoal out.
    #[command(after_help = "Examples:\n  \
        shoal playground                            # Kafka on 127.0.0.1:9092, console on http://127.0.0.1:8080/\n  \
        shoal playground --console-listen off --data-dir /tmp/shoal")]
    Playground(Playground),
    /// A production agent: metadata and object store given explicitly.
    #[command(after_help = "Example:\n  \
        shoal agent --metadata etcd://10.0.0.2:2379 --object-store s3://my-bucket/shoal \\\n      \
        --listen 0.0.0.0:9092 --advertise 10.0.0.5:9092 --console-listen 127.0.0.1:8080")]
    Agent(AgentCmd),
    /// A playground with a producer and a consumer group already running, and the web
    /// console to watch them: the quickest way to see Shoal work. Ctrl-C stops it and
    /// removes its data (unless --data-dir).
    #[command(after_help = "Examples:\n  \
        shoal demo                                  # then open the console URL it prints\n  \
        shoal demo --rate 1000 --console-listen 127.0.0.1:9000\n  \
        shoal demo --bootstrap 10.0.0.5:9092        # against a running cluster")]
    Demo(demo::DemoCmd),
    /// Create, inspect, change and delete topics.
    Topics(cli::topics::TopicsCmd),
    /// Write lines of stdin as records (keys, headers) to a topic.
    Produce(cli::produce::ProduceCmd),
    /// Print a topic's records on stdout, optionally as a consumer group.
    Consume(cli::consume::ConsumeCmd),
    /// Inspect, reset and delete consumer groups of a running Shoal (or any Kafka)
    /// cluster.
    Groups(cli::groups::GroupsCmd),
    /// List the agents a client is shown, with their zones, and the controller.
    Agents(cli::agents::AgentsCmd),
    /// Check what a client on this machine will see: TCP, TLS/SASL, ApiVersions,
    /// latency, the advertised agent addresses and zone routing, each with a verdict and
    /// a fix. Exits non-zero when a check fails.
    DiagnoseConnection(cli::diagnose::DiagnoseCmd),
    /// Repair partitions of a running Shoal: `partitions skip-corrupt --topic T
    /// --partition P` moves the log start past the first corrupt batches.
    Partitions(PartitionsCmd),
    /// Manage users' SCRAM credentials in the metadata store, offline (no agent needed):
    /// `users add NAME`, `users list`, `users delete NAME`.
    Users(users::UsersCmd),
    /// Project a month of Shoal against a month of a 3-zone Apache Kafka cluster for a
    /// workload, at a cloud's list prices, showing the arithmetic of every line.
    #[command(after_help = "Examples:\n  \
        shoal cost --write-mbps 50 --fan-out 3 --retention 3d\n  \
        shoal cost --cloud gcp --zones 3 --agents 6\n  \
        shoal cost --metrics http://10.0.0.5:9100/metrics --metrics http://10.0.0.6:9100/metrics\n  \
        shoal cost --print-prices > prices.json   # edit, then --prices prices.json")]
    Cost(CostCmd),
}

#[derive(Args)]
struct CostCmd {
    /// MB/s the producers write (10^6 bytes, as sent, after client compression).
    #[arg(long, default_value_t = 10.0)]
    write_mbps: f64,
    /// How many consumer groups read every byte.
    #[arg(long, default_value_t = 1.0)]
    fan_out: f64,
    /// How long records are kept (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = units::parse_duration)]
    retention: Duration,
    /// Partitions of the workload (reported; neither bill depends on them here).
    #[arg(long, default_value_t = 100)]
    partitions: u64,
    /// Availability zones the clients and servers run in.
    #[arg(long, default_value_t = 3)]
    zones: u64,
    /// Shoal agents.
    #[arg(long, default_value_t = 3)]
    agents: u64,
    /// The agents' --batch-timeout: each agent PUTs one object per flush.
    #[arg(long, default_value = "250ms", value_parser = units::parse_duration)]
    batch_timeout: Duration,
    /// Kafka brokers to compare with (same instance type as the agents).
    #[arg(long, default_value_t = 3)]
    kafka_brokers: u64,
    /// Kafka's replication factor.
    #[arg(long, default_value_t = 3)]
    replication: u64,
    /// Which cloud's prices to use: a name in the price file (aws, gcp, azure).
    #[arg(long, default_value = "aws")]
    cloud: String,
    /// A price file (JSON, as --print-prices writes it) instead of the built-in prices.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Print the built-in price file and exit.
    #[arg(long)]
    print_prices: bool,
    /// A running agent's metrics URL (repeat for each agent): use the PUTs and GETs per MB
    /// the agents measured instead of the model.
    #[arg(long = "metrics")]
    metrics: Vec<String>,
    /// Bearer token for --metrics (the agents' --metrics-token).
    #[arg(long, env = "SHOAL_METRICS_TOKEN")]
    metrics_token: Option<String>,
}

fn run_cost(c: &CostCmd) -> anyhow::Result<()> {
    if c.print_prices {
        print!("{}", cost::DEFAULT_PRICES);
        return Ok(());
    }
    let text = match &c.prices {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("read the price file {}", path.display()))?,
        None => cost::DEFAULT_PRICES.to_string(),
    };
    let all = cost::parse_prices(&text)?;
    let Some(prices) = all.get(&c.cloud) else {
        anyhow::bail!(
            "no prices for cloud '{}'; the price file has: {}",
            c.cloud,
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    if c.write_mbps <= 0.0 || c.fan_out < 0.0 || c.batch_timeout.is_zero() {
        anyhow::bail!(
            "--write-mbps and --batch-timeout must be above zero, --fan-out at least zero"
        );
    }
    let measured = if c.metrics.is_empty() {
        None
    } else {
        let mut pages = Vec::new();
        for url in &c.metrics {
            pages.push((
                url.clone(),
                cost::http_get(url, c.metrics_token.as_deref())?,
            ));
        }
        Some(cost::measured_from_pages(&pages)?)
    };
    let w = cost::Workload {
        write_mb_s: c.write_mbps,
        fan_out: c.fan_out,
        retention: c.retention,
        partitions: c.partitions,
        zones: c.zones,
        agents: c.agents,
        batch_timeout: c.batch_timeout,
        kafka_brokers: c.kafka_brokers,
        replication: c.replication,
    };
    let e = cost::estimate(&w, prices, measured.as_ref());
    print!("{}", cost::render(&c.cloud, &w, prices, &e));
    Ok(())
}

#[derive(Args)]
struct PartitionsCmd {
    #[command(flatten)]
    conn: cli::ConnectArgs,
    #[command(subcommand)]
    action: PartitionsAction,
}

#[derive(Subcommand)]
enum PartitionsAction {
    /// Finds the first corrupt batches of a partition (where Fetch answers
    /// CORRUPT_MESSAGE) and moves the log start past them with DeleteRecords, so
    /// consumers stuck there go on. Every record below the new log start is gone for
    /// good, the good ones before the corrupt run included; use --from to skip only from
    /// where consumers stand, and --dry-run to see the range first.
    #[command(after_help = "Examples:\n  \
        shoal partitions skip-corrupt --topic events --partition 3 --dry-run\n  \
        shoal partitions skip-corrupt --topic events --partition 3 --from 1200")]
    SkipCorrupt {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// Offset to scan from (default: the log start). Only batches at or after it are
        /// read.
        #[arg(long)]
        from: Option<i64>,
        /// Print the corrupt range without skipping it.
        #[arg(long, default_value_t = false)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct Playground {
    /// Directory for the metadata database and the object files.
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "./shoal-data")]
    data_dir: PathBuf,
    /// Object store URL; defaults to a directory under --data-dir.
    #[arg(long, env = "SHOAL_OBJECT_STORE")]
    object_store: Option<String>,
    /// Flush produce data after this long (e.g. 10ms, 250ms, 1s).
    #[arg(long, env = "SHOAL_BATCH_TIMEOUT", default_value = "10ms", value_parser = units::parse_duration)]
    batch_timeout: Duration,
    /// Listen with SASL_SSL only: make a CA, a server certificate and a SCRAM admin user
    /// under DATA_DIR/secure, enforce ACLs (--authorizer acl, with User:admin a super
    /// user), and print the client settings for Java, librdkafka and kcat. Reused on the
    /// next start.
    #[arg(long, env = "SHOAL_SECURE", default_value_t = false)]
    secure: bool,
    /// Serve the web console (agents, topics, consumer groups, throughput plots) at this
    /// address, or `off`. [default: 127.0.0.1:8080, or another free port when that one
    /// is taken; the banner prints the URL]
    #[arg(long, env = "SHOAL_CONSOLE_LISTEN", value_name = "ADDR|off")]
    console_listen: Option<ConsoleListen>,
    #[command(flatten)]
    common: Common,
}

/// `--console-listen`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
struct ConsoleListen(Option<SocketAddr>);

impl std::str::FromStr for ConsoleListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(ConsoleListen(None));
        }
        s.parse()
            .map(|a| ConsoleListen(Some(a)))
            .map_err(|_| format!("'{s}' is neither host:port (e.g. 127.0.0.1:8080) nor off"))
    }
}

/// Where the playground and the demo serve the console unless told otherwise.
const DEFAULT_CONSOLE: &str = "127.0.0.1:8080";

/// Sets the console's address in `config`: `given`, or the playground's default
/// (moving to a free port when it is taken).
fn set_console(config: &mut AgentConfig, given: Option<ConsoleListen>) {
    match given {
        Some(ConsoleListen(addr)) => config.console_listen = addr,
        None => {
            config.console_listen = DEFAULT_CONSOLE.parse().ok();
            config.console_any_port_if_taken = true;
        }
    }
    config.console_prices = cost::console_prices();
}

#[derive(Args)]
struct AgentCmd {
    /// Metadata store: etcd://host:2379[,host2:2379][/prefix] for a cluster of agents
    /// (append ?max-txn-ops=N if etcd runs with a --max-txn-ops other than 128), or
    /// sqlite:///path/to/file.db for a single agent.
    #[arg(long, env = "SHOAL_METADATA")]
    metadata: String,
    #[command(flatten)]
    etcd: stores::EtcdSecurity,
    /// Object store: s3://bucket/prefix (AWS_* environment for credentials, region and
    /// endpoint), file:///absolute/dir, or memory:// for tests.
    #[arg(long, env = "SHOAL_OBJECT_STORE")]
    object_store: String,
    /// Flush produce data after this long (e.g. 50ms, 250ms).
    #[arg(long, env = "SHOAL_BATCH_TIMEOUT", default_value = "250ms", value_parser = units::parse_duration)]
    batch_timeout: Duration,
    /// Serve the web console (agents, topics, consumer groups, throughput plots) at this
    /// address, e.g. 127.0.0.1:8080. It has no authentication: keep it on loopback (or
    /// behind a proxy that authenticates).
    #[arg(
        long,
        env = "SHOAL_CONSOLE_LISTEN",
        value_name = "ADDR|off",
        default_value = "off"
    )]
    console_listen: ConsoleListen,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    /// Address of the Kafka listener.
    #[arg(long, env = "SHOAL_LISTEN", default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// host:port clients should connect to, if not the listen address.
    #[arg(long, env = "SHOAL_ADVERTISE")]
    advertise: Option<String>,
    /// Named listeners, comma-separated NAME://HOST:PORT (Kafka's listeners), e.g.
    /// 'SASL_SSL://0.0.0.0:9093,PLAINTEXT://127.0.0.1:9092'. Replaces --listen and
    /// --advertise; the first is the agent's primary address. A name that is a security
    /// protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) uses it; map other names with
    /// --listener-security-protocol-map.
    #[arg(long, env = "SHOAL_LISTENERS")]
    listeners: Option<String>,
    /// Addresses clients are told per listener, NAME://HOST:PORT (Kafka's
    /// advertised.listeners); a listener not named here advertises its bound address.
    #[arg(long, env = "SHOAL_ADVERTISED_LISTENERS")]
    advertised_listeners: Option<String>,
    /// NAME:PROTOCOL pairs, comma-separated, for listeners not named after their
    /// protocol (Kafka's listener.security.protocol.map), e.g. 'INTERNAL:SSL'.
    #[arg(long, env = "SHOAL_LISTENER_SECURITY_PROTOCOL_MAP")]
    listener_security_protocol_map: Option<String>,
    /// PEM certificate chain (leaf first) of the SSL and SASL_SSL listeners. Reloaded
    /// within seconds when the file changes.
    #[arg(long, env = "SHOAL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SHOAL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mTLS).
    #[arg(long, env = "SHOAL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificates on TLS listeners (Kafka's ssl.client.auth): none, requested
    /// (verified when given; without one the client is User:ANONYMOUS) or required.
    /// On SSL listeners the certificate's subject is the principal.
    #[arg(long, env = "SHOAL_TLS_CLIENT_AUTH", default_value = "none")]
    tls_client_auth: shoal_agent::security::tls::ClientAuth,
    /// How a client certificate's subject (an RFC 2253 name such as CN=alice,O=Example)
    /// becomes a principal name (Kafka's ssl.principal.mapping.rules):
    /// RULE:pattern/replacement/[LU] entries tried in order, DEFAULT keeps the name,
    /// e.g. 'RULE:^CN=([^,]*).*$/$1/,DEFAULT'. A subject no rule matches is refused.
    #[arg(
        long,
        env = "SHOAL_TLS_PRINCIPAL_MAPPING_RULES",
        default_value = "DEFAULT"
    )]
    tls_principal_mapping_rules: shoal_agent::security::tls::PrincipalRules,
    /// SASL mechanisms the SASL_PLAINTEXT and SASL_SSL listeners offer,
    /// comma-separated: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. Users and their SCRAM
    /// credentials: `shoal users` or kafka-configs.sh --entity-type users.
    #[arg(
        long,
        env = "SHOAL_SASL_ENABLED_MECHANISMS",
        default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    sasl_enabled_mechanisms: String,
    /// A SASL session lasts at most this long; the client must re-authenticate on the
    /// same connection before it ends or is disconnected (KIP-368, Kafka's
    /// connections.max.reauth.ms). 0s: sessions do not expire.
    #[arg(long, env = "SHOAL_CONNECTIONS_MAX_REAUTH", default_value = "0s", value_parser = units::parse_duration)]
    connections_max_reauth: Duration,
    /// Largest request read from a client that has not authenticated yet on a SASL
    /// listener (Kafka's sasl.server.max.receive.size); a larger one closes the
    /// connection.
    #[arg(long, env = "SHOAL_SASL_MAX_RECEIVE_BYTES", default_value = "512KiB", value_parser = units::parse_bytes)]
    sasl_max_receive_bytes: u64,
    /// A connection whose SASL authentication failed is closed this long after the
    /// answer, so the client reads the error first (Kafka's
    /// connection.failed.authentication.delay.ms).
    #[arg(long, env = "SHOAL_FAILED_AUTHENTICATION_DELAY", default_value = "100ms", value_parser = units::parse_duration)]
    failed_authentication_delay: Duration,
    /// Broker id reported to clients [default: the lowest id no live agent holds; 0 with
    /// SQLite metadata].
    #[arg(long, env = "SHOAL_NODE_ID", value_parser = clap::value_parser!(i32).range(0..))]
    node_id: Option<i32>,
    /// Availability zone of this agent. Clients that put `shoal_az=ZONE` in their
    /// client.id are sent to agents of their zone when there are any.
    #[arg(long, env = "SHOAL_AZ", default_value = "")]
    az: String,
    /// Agent group: clients see only the agents of the group of the agent they connect
    /// to, and groups and transactions are coordinated within it.
    #[arg(long, env = "SHOAL_AGENT_GROUP", default_value = "default")]
    agent_group: String,
    /// What this agent does, comma-separated: produce (accept Produce), fetch (serve
    /// Fetch), jobs (compaction, retention, GC). Produce or Fetch sent to an agent
    /// without the role fail with INVALID_REQUEST.
    #[arg(long, env = "SHOAL_ROLES", default_value = "produce,fetch,jobs")]
    roles: Roles,
    /// Flush produce data once this much is buffered (e.g. 8MiB); also the most an object
    /// holds (a request that would overfill the buffer waits for the flush before it).
    #[arg(long, env = "SHOAL_BATCH_MAX_BYTES", default_value = "8MiB", value_parser = units::parse_bytes)]
    batch_max_bytes: u64,
    /// Memory for cached object chunks used by fetches (e.g. 128MiB).
    #[arg(long, env = "SHOAL_CACHE_SIZE", default_value = "128MiB", value_parser = units::parse_bytes)]
    cache_size: u64,
    /// Largest request accepted; larger frames close the connection.
    #[arg(long, env = "SHOAL_MAX_FRAME_BYTES", default_value = "100MiB", value_parser = units::parse_bytes)]
    max_frame_bytes: u64,
    /// A compressed batch may inflate to at most this many times its topic's
    /// max.message.bytes (64 x the default 1 MiB = 64 MiB); a batch that inflates further
    /// is refused with MESSAGE_TOO_LARGE. Bounds the work a small "decompression bomb"
    /// can cause.
    #[arg(long, env = "SHOAL_MAX_DECOMPRESSION_RATIO", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_decompression_ratio: u64,
    /// Memory all requests together may hold while they are read, decoded, handled and
    /// answered (Kafka's queued.max.request.bytes). A connection whose next request does
    /// not fit stops reading until earlier answers are written; a Fetch gets what is
    /// left. See "Memory" in docs/design.md.
    #[arg(long, env = "SHOAL_QUEUED_MAX_REQUEST_BYTES", default_value = "512MiB", value_parser = units::parse_bytes)]
    queued_max_request_bytes: u64,
    /// The same bound for the requests one connection has in progress (its pipeline,
    /// in bytes). A request other than Produce is charged 32 times its size, so this
    /// divided by 32 is the largest such request accepted.
    #[arg(long, env = "SHOAL_MAX_REQUEST_BYTES_PER_CONNECTION", default_value = "128MiB", value_parser = units::parse_bytes)]
    max_request_bytes_per_connection: u64,
    /// Most record bytes one Fetch answer carries, whatever the client asks for
    /// (Kafka's fetch.max.bytes); at least one batch is always returned.
    #[arg(long, env = "SHOAL_FETCH_MAX_BYTES", default_value = "16MiB", value_parser = units::parse_bytes)]
    fetch_max_bytes: u64,
    /// Incremental fetch sessions (KIP-227) the agent keeps at once (Kafka's
    /// max.incremental.fetch.session.cache.slots); a new one evicts the least recently
    /// used. 0: none, every fetch is a full one.
    #[arg(long, env = "SHOAL_FETCH_SESSION_CACHE_SLOTS", default_value_t = 1000)]
    fetch_session_cache_slots: usize,
    /// Partitions all cached fetch sessions may name together (each costs about 200
    /// bytes); a session larger than this is not cached and its client sends full
    /// fetches.
    #[arg(
        long,
        env = "SHOAL_FETCH_SESSION_CACHE_PARTITIONS",
        default_value_t = 200_000
    )]
    fetch_session_cache_partitions: usize,
    /// Open connections allowed at once; one more is accepted and closed at once (with
    /// a log line and shoal_connections_refused_total).
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Open connections allowed from one IP address (0: no limit, as in Kafka). Set it
    /// on listeners reachable by untrusted clients.
    #[arg(long, env = "SHOAL_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    max_connections_per_ip: u64,
    /// Close a connection after this long without a request while no answer is pending
    /// (Kafka's connections.max.idle.ms).
    #[arg(long, env = "SHOAL_CONNECTIONS_MAX_IDLE", default_value = "10m", value_parser = units::parse_duration)]
    connections_max_idle: Duration,
    /// Close a new connection that has not sent a complete request within this.
    #[arg(long, env = "SHOAL_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = units::parse_duration)]
    first_request_timeout: Duration,
    /// Close a connection whose request takes longer than this to arrive once its first
    /// byte has (a client trickling bytes in: slowloris).
    #[arg(long, env = "SHOAL_REQUEST_READ_TIMEOUT", default_value = "60s", value_parser = units::parse_duration)]
    request_read_timeout: Duration,
    /// Create unknown topics when a client's Metadata request allows it.
    #[arg(long, env = "SHOAL_AUTO_CREATE_TOPICS", default_value_t = false)]
    auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics asking for the default.
    #[arg(long, env = "SHOAL_DEFAULT_PARTITIONS", default_value_t = 1)]
    default_partitions: i32,
    /// Most partitions one topic may have; CreateTopics and CreatePartitions beyond it
    /// fail with INVALID_PARTITIONS.
    #[arg(long, env = "SHOAL_MAX_PARTITIONS_PER_TOPIC", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_partitions_per_topic: u32,
    /// Most partitions all topics together may have; creating or growing a topic
    /// beyond it fails with POLICY_VIOLATION.
    #[arg(long, env = "SHOAL_MAX_PARTITIONS", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_partitions: u64,
    /// Most topics one CreateTopics request may create; a larger request fails whole
    /// with POLICY_VIOLATION.
    #[arg(long, env = "SHOAL_MAX_TOPICS_PER_REQUEST", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_topics_per_request: u64,
    /// How long an empty consumer group's first rebalance waits for more members
    /// (Kafka's group.initial.rebalance.delay.ms).
    #[arg(long, env = "SHOAL_GROUP_INITIAL_REBALANCE_DELAY", default_value = "500ms", value_parser = units::parse_duration)]
    group_initial_rebalance_delay: Duration,
    /// Consumer-protocol groups (KIP-848, group.protocol=consumer): a member silent this
    /// long is removed and its partitions reassigned (Kafka's
    /// group.consumer.session.timeout.ms).
    #[arg(long, env = "SHOAL_CONSUMER_GROUP_SESSION_TIMEOUT", default_value = "45s", value_parser = units::parse_duration)]
    consumer_group_session_timeout: Duration,
    /// Consumer-protocol groups: how often members heartbeat, which is also how soon
    /// they learn of a new assignment (Kafka's group.consumer.heartbeat.interval.ms).
    #[arg(long, env = "SHOAL_CONSUMER_GROUP_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = units::parse_duration)]
    consumer_group_heartbeat_interval: Duration,
    /// Online conversion of running groups between the classic and the consumer
    /// protocol (Kafka's group.consumer.migration.policy): `bidirectional` upgrades a
    /// classic group of consumers when a group.protocol=consumer member joins it (its
    /// classic members stay and are assigned by the coordinator) and turns it back into
    /// a classic group when the last such member leaves; `upgrade`, `downgrade` or
    /// `disabled` allow one way or neither.
    #[arg(
        long,
        env = "SHOAL_GROUP_MIGRATION_POLICY",
        default_value = "bidirectional"
    )]
    group_migration_policy: shoal_agent::config::MigrationPolicy,
    /// The transaction.version feature this agent finalizes for clients. 2 offers
    /// transactions v2 (KIP-890: Produce v12 adds partitions, TxnOffsetCommit v5 adds
    /// groups, EndTxn v5 bumps the epoch every transaction), which Kafka 4.x clients use
    /// when offered; 0 or 1 keeps every client on the older protocol.
    #[arg(long, env = "SHOAL_TRANSACTION_VERSION", default_value_t = 2, value_parser = clap::value_parser!(i16).range(0..=2))]
    transaction_version: i16,
    /// A transactional id with no transaction open and no change for this long is
    /// forgotten (Kafka's transactional.id.expiration.ms); checked at every retention
    /// check.
    #[arg(long, env = "SHOAL_TRANSACTIONAL_ID_EXPIRATION", default_value = "7d", value_parser = units::parse_duration)]
    transactional_id_expiration: Duration,
    /// A consumer group with no members whose newest offset commit is older than this
    /// loses its committed offsets (Kafka's offsets.retention.minutes); checked at every
    /// retention check.
    #[arg(long, env = "SHOAL_OFFSETS_RETENTION", default_value = "7d", value_parser = units::parse_duration)]
    offsets_retention: Duration,
    /// How often retention (retention.ms, retention.bytes) and object GC run.
    #[arg(long, env = "SHOAL_RETENTION_CHECK_INTERVAL", default_value = "5m", value_parser = units::parse_duration)]
    retention_check_interval: Duration,
    /// How long GC keeps an object after the index stopped referencing it (lets
    /// in-flight reads finish), measured on the GC agent's own monotonic clock.
    #[arg(long, env = "SHOAL_GC_GRACE", default_value = "10m", value_parser = units::parse_duration)]
    gc_grace: Duration,
    /// How long GC must have watched an object whose flush never committed (on its own
    /// clock, across passes) before it fences it in the metadata store and deletes it.
    #[arg(long, env = "SHOAL_ORPHAN_GRACE", default_value = "1h", value_parser = units::parse_duration)]
    orphan_grace: Duration,
    /// The most a flush may take from its PUT to its commit; past it its produce requests
    /// get REQUEST_TIMED_OUT and the commit is never attempted. (Each produce request is
    /// also bounded by its own timeout_ms, less a quarter.) Keep it well below
    /// --orphan-grace.
    #[arg(long, env = "SHOAL_FLUSH_TIMEOUT", default_value = "30s", value_parser = units::parse_duration)]
    flush_timeout: Duration,
    /// How long an agent that dropped out of the registry (lease lapsed: cut off,
    /// paused, killed) is still listed in Metadata as a broker that leads nothing, so
    /// clients wait for the answers of their requests still in flight there instead of
    /// resending them elsewhere. Cover the longest produce request (its timeout_ms plus
    /// the commit's read-back).
    #[arg(long, env = "SHOAL_DEPARTED_AGENT_GRACE", default_value = "60s", value_parser = units::parse_duration)]
    departed_agent_grace: Duration,
    /// How long an OffsetCommit waits out a metadata store out of reach (etcd paused,
    /// restarting, cut off) before it is answered COORDINATOR_NOT_AVAILABLE, as Kafka's
    /// offset.commit.timeout.ms. Clients retry failed commits and may send a newer one
    /// first, so an early error can set a group's offset back. Keep it below the
    /// clients' request timeout (30 s by default).
    #[arg(long, env = "SHOAL_OFFSET_COMMIT_TIMEOUT", default_value = "20s", value_parser = units::parse_duration)]
    offset_commit_timeout: Duration,
    /// etcd: how much history of old versions to keep; older revisions are compacted
    /// with each retention check (0s: leave it to etcd's own --auto-compaction-*).
    #[arg(long, env = "SHOAL_METADATA_HISTORY", default_value = "5m", value_parser = units::parse_duration)]
    metadata_history: Duration,
    /// How often compaction looks for small flush objects to merge.
    #[arg(long, env = "SHOAL_COMPACTION_INTERVAL", default_value = "10s", value_parser = units::parse_duration)]
    compaction_interval: Duration,
    /// Compaction merges small objects into objects of up to this size (0: off).
    #[arg(long, env = "SHOAL_COMPACTION_TARGET_BYTES", default_value = "64MiB", value_parser = units::parse_bytes)]
    compaction_target_bytes: u64,
    /// How often the log cleaner looks for compacted topics (cleanup.policy=compact)
    /// with enough dirty data to clean (0s: off).
    #[arg(long, env = "SHOAL_CLEANER_INTERVAL", default_value = "15s", value_parser = units::parse_duration)]
    cleaner_interval: Duration,
    /// Memory for one cleaning pass's key map, 32 bytes a key (as Kafka's
    /// log.cleaner.dedupe.buffer.size); a pass cleans as much dirty data as its keys fit.
    #[arg(long, env = "SHOAL_CLEANER_DEDUPE_BUFFER", default_value = "128MiB", value_parser = units::parse_bytes)]
    cleaner_dedupe_buffer: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "SHOAL_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// File holding a token that metrics requests must send as `Authorization: Bearer
    /// TOKEN` (others get 401). Without it anyone reaching --metrics-listen reads them.
    #[arg(long, env = "SHOAL_METRICS_TOKEN_FILE", value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Internal endpoint other agents of the zone read cached chunks from (the
    /// distributed cache); default: the listen IP with an ephemeral port. Keep it on a
    /// network only agents reach.
    #[arg(long, env = "SHOAL_PEER_LISTEN")]
    peer_listen: Option<SocketAddr>,
    /// File holding a secret (at least 16 bytes) shared by every agent of the cluster:
    /// peer-cache requests and answers are signed with it (HMAC-SHA256) and unsigned
    /// ones refused. Without it the peer endpoint serves anyone who reaches it.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET_FILE", value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Send a second GET for a chunk when the first takes longer than this (hedging
    /// against slow object-store requests).
    #[arg(long, env = "SHOAL_HEDGE_AFTER", default_value = "400ms", value_parser = units::parse_duration)]
    hedge_after: Duration,
    /// For benchmarks only: delay every object-store request as S3 would, a log-normal
    /// draw with this median and 1% of requests over ten times it (e.g. 20ms). Off (0s)
    /// by default; never set it in production.
    #[arg(long, env = "SHOAL_OBJECT_STORE_LATENCY", default_value = "0s", value_parser = units::parse_duration)]
    object_store_latency: Duration,
    /// Seed of --object-store-latency's draws: the same seed, the same delays.
    #[arg(long, env = "SHOAL_OBJECT_STORE_LATENCY_SEED", default_value_t = 1)]
    object_store_latency_seed: u64,
    /// Client quotas (kafka-configs --entity-type clients|users) are measured over this
    /// many samples (Kafka's quota.window.num); the longest throttle is num × size.
    #[arg(long, env = "SHOAL_QUOTA_WINDOW_NUM", default_value_t = 11)]
    quota_window_num: usize,
    /// Length of one client-quota sample (Kafka's quota.window.size.seconds).
    #[arg(long, env = "SHOAL_QUOTA_WINDOW_SIZE", default_value = "1s", value_parser = units::parse_duration)]
    quota_window_size: Duration,
    /// Whether ACLs are enforced: `none` allows everything (ACLs can still be created and
    /// listed with kafka-acls.sh), `acl` enforces them as Kafka's StandardAuthorizer.
    #[arg(long, env = "SHOAL_AUTHORIZER", default_value = "none")]
    authorizer: shoal_agent::security::acl::AuthorizerMode,
    /// Principals every ACL check allows, separated by `;` (e.g. 'User:admin;User:ops').
    #[arg(long, env = "SHOAL_SUPER_USERS", default_value = "")]
    super_users: String,
    /// With --authorizer acl: let everyone use a resource no ACL applies to at all. By
    /// default such a resource is refused to everyone but the super users.
    #[arg(long, env = "SHOAL_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    allow_everyone_if_no_acl_found: bool,
}

impl Common {
    /// The object store, behind --object-store-latency's delays when that is set.
    fn with_latency(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> Arc<dyn object_store::ObjectStore> {
        if self.object_store_latency.is_zero() {
            return store;
        }
        tracing::warn!(median = ?self.object_store_latency, seed = self.object_store_latency_seed, "object-store requests get injected latency (--object-store-latency, for benchmarks)");
        let latency = shoal_object::latency::Latency::new(
            self.object_store_latency,
            self.object_store_latency_seed,
        );
        Arc::new(shoal_object::latency::LatencyStore::new(store, latency))
    }

    fn config(&self, batch_timeout: Duration) -> anyhow::Result<AgentConfig> {
        if self.default_partitions < 1 {
            anyhow::bail!("--default-partitions must be at least 1");
        }
        if self.quota_window_num < 1 || self.quota_window_size.is_zero() {
            anyhow::bail!(
                "--quota-window-num and --quota-window-size must be at least 1 and above zero"
            );
        }
        if self.max_request_bytes_per_connection < self.max_frame_bytes {
            anyhow::bail!(
                "--max-request-bytes-per-connection ({}) must be at least --max-frame-bytes ({})",
                self.max_request_bytes_per_connection,
                self.max_frame_bytes
            );
        }
        if self.queued_max_request_bytes < self.max_request_bytes_per_connection {
            anyhow::bail!(
                "--queued-max-request-bytes ({}) must be at least --max-request-bytes-per-connection ({})",
                self.queued_max_request_bytes,
                self.max_request_bytes_per_connection
            );
        }
        if self.agent_group.trim().is_empty() {
            anyhow::bail!("--agent-group must not be empty");
        }
        let listeners = match &self.listeners {
            Some(l) => shoal_agent::security::listeners::parse_listeners(
                l,
                self.advertised_listeners.as_deref(),
                self.listener_security_protocol_map.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!(e))?,
            None if self.advertised_listeners.is_some() => {
                anyhow::bail!("--advertised-listeners needs --listeners")
            }
            None => Vec::new(),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(shoal_agent::security::tls::TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                ca: self.tls_ca.clone(),
                client_auth: self.tls_client_auth,
                principal_rules: self.tls_principal_mapping_rules.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let sasl_mechanisms: Vec<String> = self
            .sasl_enabled_mechanisms
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(m) = sasl_mechanisms
            .iter()
            .find(|m| !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()))
        {
            anyhow::bail!(
                "--sasl-enabled-mechanisms: unknown mechanism {m}; Shoal offers PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"
            );
        }
        let cluster_secret = match &self.cluster_secret_file {
            Some(path) => Some(shoal_agent::peer_cache::auth::ClusterSecret::load(path)?),
            None => None,
        };
        let metrics_token = match &self.metrics_token_file {
            Some(path) => Some(shoal_agent::metrics::MetricsToken::load(path)?),
            None => None,
        };
        let super_users = AuthorizerConfig::parse_super_users(&self.super_users)
            .map_err(|e| anyhow::anyhow!("--super-users: {e}"))?;
        Ok(AgentConfig {
            listen: self.listen,
            advertise: self.advertise.clone(),
            node_id: self.node_id.unwrap_or(-1),
            az: self.az.clone(),
            agent_group: self.agent_group.clone(),
            roles: self.roles,
            max_frame_bytes: self.max_frame_bytes as usize,
            max_decompression_ratio: self.max_decompression_ratio,
            max_connections: self.max_connections as usize,
            queued_max_request_bytes: self.queued_max_request_bytes as usize,
            max_request_bytes_per_connection: self.max_request_bytes_per_connection as usize,
            fetch_max_bytes: self.fetch_max_bytes as usize,
            fetch_session_cache_slots: self.fetch_session_cache_slots,
            fetch_session_cache_partitions: self.fetch_session_cache_partitions,
            max_connections_per_ip: self.max_connections_per_ip as usize,
            connections_max_idle: self.connections_max_idle,
            first_request_timeout: self.first_request_timeout,
            request_read_timeout: self.request_read_timeout,
            batch_timeout,
            batch_max_bytes: self.batch_max_bytes as usize,
            max_buffered_bytes: (self.batch_max_bytes as usize * 8).max(64 << 20),
            cache_bytes: self.cache_size as usize,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_partitions_per_topic: self.max_partitions_per_topic,
            max_partitions: self.max_partitions,
            max_topics_per_request: self.max_topics_per_request as usize,
            metrics_listen: self.metrics_listen,
            metrics_token,
            cluster_secret,
            group_initial_rebalance_delay: self.group_initial_rebalance_delay,
            consumer_group_session_timeout: self.consumer_group_session_timeout,
            transaction_version: self.transaction_version,
            transactional_id_expiration: self.transactional_id_expiration,
            offsets_retention: self.offsets_retention,
            consumer_group_heartbeat_interval: self.consumer_group_heartbeat_interval,
            group_migration_policy: self.group_migration_policy,
            retention_check_interval: self.retention_check_interval,
            gc_grace: self.gc_grace,
            orphan_grace: self.orphan_grace,
            flush_timeout: self.flush_timeout,
            departed_agent_grace: self.departed_agent_grace,
            offset_commit_timeout: self.offset_commit_timeout,
            metadata_history: self.metadata_history,
            compaction_interval: self.compaction_interval,
            compaction_target_bytes: self.compaction_target_bytes,
            cleaner_interval: self.cleaner_interval,
            cleaner_dedupe_buffer_bytes: self.cleaner_dedupe_buffer,
            peer_listen: self.peer_listen,
            hedge_after: self.hedge_after,
            quota_window_num: self.quota_window_num,
            quota_window_size: self.quota_window_size,
            listeners,
            tls,
            sasl_mechanisms,
            connections_max_reauth: self.connections_max_reauth,
            sasl_max_receive_bytes: self.sasl_max_receive_bytes as usize,
            failed_authentication_delay: self.failed_authentication_delay,
            authorizer: AuthorizerConfig {
                mode: self.authorizer,
                super_users,
                allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
            },
            ..AgentConfig::default()
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Cost(c) = &cli.command {
        return run_cost(c);
    }
    match &cli.command {
        Command::Topics(c) => return cli::topics::run(c),
        Command::Produce(c) => return cli::produce::run(c),
        Command::Consume(c) => return cli::consume::run(c),
        Command::Groups(c) => return cli::groups::run(c),
        Command::Agents(c) => return cli::agents::run(c),
        Command::DiagnoseConnection(c) => return cli::diagnose::run(c),
        _ => {}
    }
    if let Command::Partitions(p) = &cli.command {
        return match &p.action {
            PartitionsAction::SkipCorrupt {
                topic,
                partition,
                from,
                dry_run,
            } => admin::skip_corrupt(&p.conn, topic, *partition, *from, *dry_run),
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut secure = None;
    let (config, meta, store, banner) = match cli.command {
        Command::Users(u) => return users::run(u).await,
        Command::Demo(d) => return demo::run(d).await,
        Command::Playground(p) => {
            std::fs::create_dir_all(&p.data_dir)
                .with_context(|| format!("create the data directory {}", p.data_dir.display()))?;
            let meta = stores::sqlite(&p.data_dir.join("metadata.db"))?;
            let store = match &p.object_store {
                Some(url) => stores::object_store(url)?,
                None => stores::local_dir(&p.data_dir.join("objects"))?,
            };
            let store = p.common.with_latency(store);
            let banner = format!("data in {}", p.data_dir.display());
            let mut config = p.common.config(p.batch_timeout)?;
            set_console(&mut config, p.console_listen);
            if p.secure {
                if p.common.listeners.is_some() || p.common.tls_cert.is_some() {
                    anyhow::bail!("--secure makes its own listener and certificate; leave out --listeners and --tls-*");
                }
                let s = secure::prepare(&p.data_dir, config.listen, meta.as_ref()).await?;
                config.listeners = vec![shoal_agent::security::listeners::ListenerSpec {
                    name: "SASL_SSL".into(),
                    protocol: shoal_agent::security::listeners::SecurityProtocol::SaslSsl,
                    bind: config.listen,
                    advertise: config.advertise.clone(),
                }];
                config.tls = Some(shoal_agent::security::tls::TlsSettings {
                    cert: s.cert.clone(),
                    key: s.key.clone(),
                    ca: Some(s.ca.clone()),
                    client_auth: shoal_agent::security::tls::ClientAuth::None,
                    principal_rules: Default::default(),
                });
                // ACLs are enforced; the admin may do everything.
                config.authorizer.mode = shoal_agent::security::acl::AuthorizerMode::Acl;
                let admin = shoal_agent::security::Principal::user(secure::ADMIN);
                if !config.authorizer.super_users.contains(&admin) {
                    config.authorizer.super_users.push(admin);
                }
                secure = Some(s);
            }
            (config, meta, store, banner)
        }
        Command::Groups(_)
        | Command::Partitions(_)
        | Command::Cost(_)
        | Command::Topics(_)
        | Command::Produce(_)
        | Command::Consume(_)
        | Command::Agents(_)
        | Command::DiagnoseConnection(_) => {
            unreachable!("handled before the runtime starts")
        }
        Command::Agent(a) => {
            let meta = stores::metadata(&a.metadata, &a.etcd).await?;
            let store = a
                .common
                .with_latency(stores::object_store(&a.object_store)?);
            let banner = format!(
                "metadata {}, objects {}",
                stores::redact_url(&a.metadata),
                stores::redact_url(&a.object_store)
            );
            let mut config = a.common.config(a.batch_timeout)?;
            set_console(&mut config, Some(a.console_listen));
            (config, meta, store, banner)
        }
    };
    let shutdown = CancellationToken::new();
    let advertised = config
        .listener_specs()
        .first()
        .and_then(|l| l.advertise.clone());
    let protocols: Vec<(String, String)> = config
        .listener_specs()
        .iter()
        .map(|l| (l.name.clone(), l.protocol.to_string()))
        .collect();
    let agent = Agent::start(config, meta, store, shutdown.clone()).await?;
    let bootstrap = advertised
        .filter(|a| !a.ends_with(":0"))
        .unwrap_or_else(|| agent.local_addr.to_string());
    let mut text = banner_text(
        &agent.local_addr.to_string(),
        &bootstrap,
        &banner,
        agent.metrics_addr,
        agent.console_addr,
    );
    if agent.listeners.len() > 1 || protocols.iter().any(|(_, p)| p != "PLAINTEXT") {
        text.push_str("\n\nListeners:");
        for ((name, addr), (_, protocol)) in agent.listeners.iter().zip(&protocols) {
            text.push_str(&format!("\n  {name:<18}  {addr} ({protocol})"));
        }
    }
    if let Some(s) = &secure {
        text.push_str("\n\n");
        text.push_str(&secure::client_settings(s, &bootstrap)?);
    }
    eprintln!("{text}");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and flushing");
        shutdown.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting immediately");
        std::process::exit(130);
    });
    agent.wait().await
}

/// What the agent prints once it listens: how to connect, with lines a newcomer can
/// paste. The first line's "Shoal is listening on ADDR" is what test harnesses wait for.
fn banner_text(
    listen: &str,
    bootstrap: &str,
    stores: &str,
    metrics: Option<SocketAddr>,
    console: Option<SocketAddr>,
) -> String {
    let mut metrics = metrics
        .map(|m| format!("\n  metrics             http://{m}/metrics"))
        .unwrap_or_default();
    if let Some(c) = console {
        metrics.push_str(&format!("\n  web console         http://{c}/"));
    }
    let (version, commit) = (env!("CARGO_PKG_VERSION"), env!("SHOAL_GIT_COMMIT"));
    format!(
        "Shoal is listening on {listen} ({stores}; shoal {version}, commit {commit}).\n\
         \n\
         Connect any Kafka client:\n\
         \x20 bootstrap address   {bootstrap}\n\
         \x20 Java / librdkafka   bootstrap.servers={bootstrap}\n\
         \x20 kcat                kcat -b {bootstrap} -L\n\
         \x20 create a topic      kafka-topics.sh --bootstrap-server {bootstrap} --create --topic demo --partitions 3{metrics}\n\
         \n\
         Stop with Ctrl-C (buffered data is flushed first)."
    )
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
