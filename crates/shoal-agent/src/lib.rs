//! The Shoal agent: a stateless Kafka-protocol server over object storage and a
//! metadata store.
//!
//! Lifecycle: [`Agent::start`] binds the listener, starts the flusher and returns a
//! handle; cancelling the [`CancellationToken`] given to it stops accepting, lets the
//! open connections finish their in-flight requests, flushes and commits what is
//! buffered, and then [`Agent::wait`] returns. The agent keeps no durable state of its
//! own: everything another agent would need is in the object store and the metadata
//! store.
//!
//! Layout: [`server`] accepts, [`connection`] frames and orders, [`api`] holds one module
//! per Kafka API behind one dispatch table, [`write_path`] buffers and flushes produce
//! data, [`read_path`] serves fetches through the chunk cache.

pub mod api;
pub mod compaction;
pub mod config;
pub mod connection;
pub mod errors;
pub mod groups;
pub mod jobs;
pub mod metrics;
pub mod read_path;
pub mod server;
pub mod topics;
pub mod txn;
pub mod write_path;

use std::sync::Arc;

use object_store::ObjectStore;
use shoal_meta::MetaStore;
use tokio_util::sync::CancellationToken;

pub use config::AgentConfig;

/// A failure-injection point for crash tests: when the environment variable
/// `SHOAL_FAILPOINT` names it, the process aborts right here (as a kill -9 would stop it).
pub fn failpoint(name: &str) {
    if std::env::var("SHOAL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("SHOAL_FAILPOINT: aborting at {name}");
        std::process::abort();
    }
}

/// Everything a request handler may touch, shared by all connections.
pub struct Shared {
    pub config: AgentConfig,
    pub meta: Arc<dyn MetaStore>,
    pub topics: topics::TopicCache,
    pub writer: write_path::WritePath,
    pub reader: read_path::ReadPath,
    pub metrics: Arc<metrics::Metrics>,
    /// Consumer groups this agent coordinates.
    pub groups: groups::Coordinator,
    /// Per-id ordering of the transactions this agent coordinates.
    pub txns: txn::TxnCoordinator,
    /// Kafka cluster id, read once from the metadata store.
    pub cluster_id: String,
}

/// A running agent.
pub struct Agent {
    pub local_addr: std::net::SocketAddr,
    pub metrics_addr: Option<std::net::SocketAddr>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Agent {
    /// Binds the listener and starts serving until `shutdown` is cancelled.
    pub async fn start(
        config: AgentConfig,
        meta: Arc<dyn MetaStore>,
        store: Arc<dyn ObjectStore>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Agent> {
        use anyhow::Context;
        let metrics = Arc::new(metrics::Metrics::default());
        let cluster_id = meta.cluster_id().await.context("read the cluster id")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "listen on {} (is another Kafka or Shoal already running there? pick another with --listen)",
                    config.listen
                )
            })?;
        let local_addr = listener.local_addr()?;
        let mut config = config;
        if config.advertise.is_none() {
            config.advertise = Some(local_addr.to_string());
        }
        let flush_stop = CancellationToken::new();
        let reader =
            read_path::ReadPath::new(&config, meta.clone(), store.clone(), metrics.clone());
        let jobs_store = store.clone();
        let (writer, flusher) = write_path::WritePath::new(
            &config,
            meta.clone(),
            store,
            metrics.clone(),
            reader.cache(),
            reader.commit_signal(),
            shutdown.clone(),
            flush_stop.clone(),
        );
        let shared = Arc::new(Shared {
            groups: groups::Coordinator::new(config.group_initial_rebalance_delay),
            txns: txn::TxnCoordinator::default(),
            topics: topics::TopicCache::new(meta.clone()),
            writer,
            reader,
            metrics: metrics.clone(),
            cluster_id,
            meta,
            config,
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut metrics_addr = None;
        if let Some(addr) = shared.config.metrics_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for metrics on {addr}"))?;
            metrics_addr = Some(l.local_addr()?);
            let (m, s) = (metrics.clone(), shutdown.clone());
            tasks.spawn(async move { metrics::serve(l, m, s).await });
        }
        {
            // Drives group timeouts (session expiry, rebalance deadlines).
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => shared.groups.tick(),
                    }
                }
            });
        }
        {
            // Aborts transactions past their timeout; finishes ends left half done.
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0u64.. {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => txn::TxnCoordinator::tick(&shared).await,
                    }
                    if n % 600 == 0 {
                        txn::TxnCoordinator::expire_producers(&shared).await;
                    }
                }
                Ok(())
            });
        }
        if shared.config.compaction_target_bytes > 0 {
            tasks.spawn(jobs::run_compaction(
                shared.clone(),
                jobs_store.clone(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(jobs::run(shared.clone(), jobs_store, shutdown.clone()));
        let server_shared = shared.clone();
        tasks.spawn(async move {
            let result = server::serve(listener, server_shared, shutdown).await;
            // Connections have drained: flush what they buffered, then stop the flusher.
            flush_stop.cancel();
            result
        });
        tasks.spawn(flusher);
        Ok(Agent {
            local_addr,
            metrics_addr,
            tasks,
        })
    }

    /// Waits until the agent has shut down, returning the first error of its tasks.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            let r = r.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = r {
                tracing::error!(error = %format!("{e:#}"), "agent task failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}
