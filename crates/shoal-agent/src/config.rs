//! Agent settings. The CLI fills these from flags and environment variables.

use std::net::SocketAddr;
use std::time::Duration;

/// How one agent runs. Defaults suit the playground; `shoal agent` raises the flush
/// timeout to trade latency for fewer, larger objects.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the Kafka listener binds.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; defaults to the bound address.
    pub advertise: Option<String>,
    /// The broker id this agent reports in Metadata.
    pub node_id: i32,
    /// Largest request frame accepted; bigger frames close the connection.
    pub max_frame_bytes: usize,
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
    /// Open connections allowed at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Requests one connection may have in progress before it stops reading.
    pub max_in_flight_per_connection: usize,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How long an empty group's first rebalance waits for more members.
    pub group_initial_rebalance_delay: Duration,
    /// How often retention and GC run.
    pub retention_check_interval: Duration,
    /// How long an object no index entry references is kept before GC deletes it.
    pub gc_grace: Duration,
    /// How old an object that was never committed must be before GC deletes it.
    pub orphan_grace: Duration,
    /// How often compaction looks for small objects to merge.
    pub compaction_interval: Duration,
    /// Size compaction merges small objects up to; 0 turns compaction off.
    pub compaction_target_bytes: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertise: None,
            node_id: 0,
            max_frame_bytes: 100 * 1024 * 1024,
            batch_timeout: Duration::from_millis(250),
            batch_max_bytes: 8 * 1024 * 1024,
            max_buffered_bytes: 64 * 1024 * 1024,
            cache_bytes: 128 * 1024 * 1024,
            chunk_bytes: 4 * 1024 * 1024,
            auto_create_topics: false,
            default_partitions: 1,
            max_connections: 1024,
            max_in_flight_per_connection: 32,
            metrics_listen: None,
            group_initial_rebalance_delay: Duration::from_millis(500),
            retention_check_interval: Duration::from_secs(5 * 60),
            gc_grace: Duration::from_secs(10 * 60),
            orphan_grace: Duration::from_secs(60 * 60),
            compaction_interval: Duration::from_secs(10),
            compaction_target_bytes: 64 * 1024 * 1024,
        }
    }
}

impl AgentConfig {
    /// `(host, port)` advertised to clients.
    pub fn advertised_host_port(&self) -> (String, i32) {
        let adv = self
            .advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string());
        match adv.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse().unwrap_or(9092),
            ),
            None => (adv, 9092),
        }
    }
}
