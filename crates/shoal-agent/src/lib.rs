//! The Shoal agent: a stateless Kafka-protocol server over object storage and a
//! metadata store.
//!
//! Lifecycle: [`Agent::start`] binds the listener, registers the agent in the metadata
//! store's registry of live agents (which gives it its node id), starts the flusher and
//! returns a handle; cancelling the [`CancellationToken`] given to it stops accepting,
//! lets the open connections finish their in-flight requests, flushes and commits what
//! is buffered, removes the agent from the registry, and then [`Agent::wait`] returns.
//! The agent keeps no durable state of its own: everything another agent would need is
//! in the object store and the metadata store.
//!
//! Layout: [`server`] accepts, [`connection`] frames and orders, [`api`] holds one module
//! per Kafka API behind one dispatch table, [`write_path`] buffers and flushes produce
//! data, [`read_path`] serves fetches through the chunk cache, [`cluster`] is the view of
//! the other agents (who leads what, who coordinates what).

pub mod api;
pub mod cleaner;
pub mod cluster;
pub mod commits;
pub mod compaction;
pub mod config;
pub mod connection;
pub mod console;
pub mod errors;
pub mod fetch_sessions;
pub mod groups;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod peer_cache;
pub mod quarantine;
pub mod quotas;
pub mod read_path;
pub mod security;
pub mod server;
#[cfg(test)]
mod test_util;
pub mod topics;
pub mod txn;
pub mod write_path;

/// Entry points for the fuzz targets (`fuzz/` at the repository root): the pure decoders
/// of network input, reachable without a running agent. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::Bytes;
    use kafka_protocol::messages::{RequestHeader, RequestKind};

    /// The connection's request decoding: header and body of one frame (the bytes after
    /// the size prefix). `Ok(None)`: answered without a handler (ApiVersions at an
    /// unsupported version).
    pub fn decode_request(frame: Bytes) -> Result<Option<(RequestHeader, RequestKind)>, String> {
        match crate::connection::decode(frame)? {
            crate::connection::Decoded::Request(boxed) => Ok(Some(*boxed)),
            crate::connection::Decoded::Answer(_) => Ok(None),
        }
    }

    /// The secret the fuzz seeds of the peer-cache protocol are signed with.
    pub const PEER_FUZZ_SECRET: &[u8] = b"shoal-fuzz-cluster-secret";

    /// The peer-cache endpoint's request reader: (object key, object size, chunk index),
    /// and whether the request's MAC verifies with `secret` (at least 16 bytes; `None`:
    /// not checked).
    pub async fn peer_read_request(
        mut input: &[u8],
        secret: Option<&[u8]>,
    ) -> std::io::Result<((String, u64, u64), bool)> {
        let r = crate::peer_cache::read_request(&mut input).await?;
        let verified = secret
            .and_then(|s| crate::peer_cache::auth::ClusterSecret::new(s).ok())
            .is_some_and(|s| s.verify_request(&r.signed_bytes(), &r.mac));
        Ok(((r.key, r.size, r.idx), verified))
    }

    /// The peer-cache asker's answer reader, for a chunk of a `size`-byte object (the
    /// answer's MAC read but not checked).
    pub async fn peer_read_answer(mut input: &[u8], size: u64) -> Result<Bytes, String> {
        crate::peer_cache::read_answer(&mut input, size, None).await
    }

    /// The peer-cache endpoint's bounds check on a requested chunk.
    pub fn peer_chunk_in_object(idx: u64, chunk_size: u64, size: u64) -> bool {
        crate::peer_cache::chunk_in_object(idx, chunk_size, size)
    }

    /// The topics of a consumer-protocol subscription, as the group coordinator reads them.
    pub fn parse_subscription(meta: &[u8]) -> Option<Vec<String>> {
        crate::groups::parse_subscription(meta)
    }
}

use std::sync::Arc;

use object_store::ObjectStore;
use shoal_meta::{AgentInfo, MetaStore};
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
    /// This agent as registered (node id, advertised address, zone, group, roles).
    pub me: AgentInfo,
    pub meta: Arc<dyn MetaStore>,
    pub topics: topics::TopicCache,
    pub writer: write_path::WritePath,
    pub reader: read_path::ReadPath,
    pub fetch_sessions: fetch_sessions::FetchSessions,
    pub metrics: Arc<metrics::Metrics>,
    /// Consumer groups this agent coordinates.
    pub groups: groups::Coordinator,
    /// Per-id ordering of the transactions this agent coordinates.
    pub txns: txn::TxnCoordinator,
    /// Coordination roles (groups, transactional ids) claimed in the metadata store,
    /// with the fences their writes carry.
    pub roles: cluster::roles::Roles,
    /// When each agent was last seen live, to keep departed agents listed a while.
    pub departures: cluster::Departures,
    /// Kafka cluster id, read once from the metadata store.
    pub cluster_id: String,
    /// Cancelled when the agent starts shutting down: long polls answer at once.
    pub stopping: CancellationToken,
    /// Client quotas (a copy of the store's, reloaded every second) and their measurements.
    pub quotas: quotas::Quotas,
    /// ACLs (a copy of the store's, reloaded every second) and the rules that apply them.
    pub authorizer: security::acl::Authorizer,
    /// Memory all requests may hold (`--queued-max-request-bytes`), see [`memory`].
    pub request_memory: memory::Budget,
}

/// A running agent.
pub struct Agent {
    /// The first listener's bound address.
    pub local_addr: std::net::SocketAddr,
    /// Every listener's name and bound address, in `--listeners` order.
    pub listeners: Vec<(String, std::net::SocketAddr)>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the web console listens (`--console-listen`), if it does.
    pub console_addr: Option<std::net::SocketAddr>,
    /// Where the internal peer-cache endpoint listens (fetch agents only).
    pub peer_addr: Option<std::net::SocketAddr>,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl Agent {
    /// Binds the listener, registers the agent and starts serving until `shutdown` is
    /// cancelled.
    pub async fn start(
        config: AgentConfig,
        meta: Arc<dyn MetaStore>,
        store: Arc<dyn ObjectStore>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Agent> {
        use anyhow::Context;
        let metrics = Arc::new(metrics::Metrics::default());
        let cluster_id = meta.cluster_id().await.context("read the cluster id")?;
        let mut config = config;
        let tls = match &config.tls {
            Some(settings) => Some(Arc::new(
                security::tls::TlsServer::new(settings.clone()).context("set up TLS")?,
            )),
            None => None,
        };
        let (listeners, specs) = bind_listeners(&mut config, tls.is_some()).await?;
        let local_addr = listeners[0].local_addr()?;
        let listener_addrs: Vec<(String, std::net::SocketAddr)> =
            specs.iter().map(|l| (l.name.clone(), l.bind)).collect();
        // Bind everything that can fail before registering, so a failed start leaves no
        // registration behind.
        let mut metrics_listener = None;
        if let Some(addr) = config.metrics_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for metrics on {addr}"))?;
            metrics_listener = Some(l);
        }
        let mut console_listener = None;
        if let Some(addr) = config.console_listen {
            let l = match tokio::net::TcpListener::bind(addr).await {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && config.console_any_port_if_taken =>
                {
                    let any = std::net::SocketAddr::new(addr.ip(), 0);
                    tracing::info!(taken = %addr, "the console's default address is taken; using another port");
                    tokio::net::TcpListener::bind(any).await
                }
                r => r,
            }
            .with_context(|| format!("listen for the console on {addr} (--console-listen)"))?;
            if !addr.ip().is_loopback() {
                tracing::warn!(address = %addr, "the console has no authentication and listens beyond loopback");
            }
            console_listener = Some(l);
        }
        // The internal endpoint peers read cached chunks from (fetch agents only).
        let mut peer_listener = None;
        if config.roles.fetch {
            let addr = config
                .peer_listen
                .unwrap_or_else(|| std::net::SocketAddr::new(local_addr.ip(), 0));
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("listen for peer chunk requests on {addr} (--peer-listen)")
            })?;
            peer_listener = Some(l);
        }
        let peer_addr = match &peer_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let peer_port = peer_addr.map(|a| a.port());
        let me = register(&mut config, meta.as_ref(), peer_port).await?;
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
            reader.commits(),
            shutdown.clone(),
            flush_stop.clone(),
        );
        let commits = reader.commits();
        reader.set_identity(me.clone());
        let shared = Arc::new(Shared {
            groups: groups::Coordinator::new(config.group_initial_rebalance_delay)
                .with_consumer_timeouts(
                    config.consumer_group_session_timeout,
                    config.consumer_group_heartbeat_interval,
                )
                .with_migration(
                    config.group_migration_policy.upgrade(),
                    config.group_migration_policy.downgrade(),
                ),
            txns: txn::TxnCoordinator::default(),
            roles: cluster::roles::Roles::default(),
            departures: cluster::Departures::default(),
            topics: topics::TopicCache::new(meta.clone()),
            writer,
            reader,
            fetch_sessions: fetch_sessions::FetchSessions::new(
                config.fetch_session_cache_slots,
                config.fetch_session_cache_partitions,
            ),
            metrics: metrics.clone(),
            cluster_id,
            me,
            meta,
            quotas: quotas::Quotas::new(config.quota_window_size, config.quota_window_num),
            request_memory: memory::Budget::new(config.queued_max_request_bytes),
            authorizer: security::acl::Authorizer::new(config.authorizer.clone()),
            config,
            stopping: shutdown.clone(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut metrics_addr = None;
        if let Some(l) = metrics_listener {
            metrics_addr = Some(l.local_addr()?);
            let (m, s) = (metrics.clone(), shutdown.clone());
            let token = shared.config.metrics_token.clone();
            tasks.spawn(async move { metrics::serve(l, m, token, s).await });
        }
        let mut console_addr = None;
        if let Some(l) = console_listener {
            console_addr = Some(l.local_addr()?);
            let source = Arc::new(console::AgentSource::new(shared.clone()));
            let prices = shared.config.console_prices.clone();
            tasks.spawn(console::serve(l, source, prices, shutdown.clone()));
        }
        if let Some(tls) = tls.clone() {
            // A renewed certificate (or CA) is picked up by new connections within 5 s.
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => {}
                    }
                    match tls.reload_if_changed() {
                        Ok(true) => tracing::info!("TLS certificate files changed; reloaded them"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(
                            error = %format!("{e:#}"),
                            "TLS certificate files changed but do not load; keeping the previous ones"
                        ),
                    }
                }
            });
        }
        if let Some(l) = peer_listener {
            tasks.spawn(peer_cache::serve(l, shared.clone(), shutdown.clone()));
        }
        if let Some(notifications) = shared.meta.commit_notifications() {
            // Commits by other agents wake this agent's long-polling fetches too.
            tasks.spawn(forward_commits(notifications, commits, shutdown.clone()));
        }
        if let Some(mut changes) = shared.meta.topic_notifications() {
            // Topics created or deleted through other agents reach this agent's cache at
            // once (instead of within its TTL).
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return Ok(());
                            }
                            shared.topics.invalidate();
                        }
                    }
                }
            });
        }
        if let Err(e) = reload_quotas(&shared).await {
            tracing::warn!(error = %e, "could not read client quotas; retrying every second");
        }
        if let Err(e) = reload_acls(&shared).await {
            tracing::warn!(error = %e, "could not read ACLs; retrying every second");
        }
        {
            // Client quotas and ACLs changed through other agents take effect within a
            // second.
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut failing = false;
                let mut acls_failing = false;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => {}
                    }
                    match reload_quotas(&shared).await {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "could not read client quotas; keeping the last ones read");
                        }
                        Err(_) => {}
                    }
                    shared.quotas.sweep(tokio::time::Instant::now());
                    match reload_acls(&shared).await {
                        Ok(()) => acls_failing = false,
                        Err(e) if !acls_failing => {
                            acls_failing = true;
                            tracing::warn!(error = %e, "could not read ACLs; keeping the last ones read");
                        }
                        Err(_) => {}
                    }
                }
            });
        }
        {
            // Drives group timeouts (session expiry, rebalance deadlines) and drops the
            // groups (and roles) the registry now gives to another agent, or all of them
            // once this agent's lease may have lapsed.
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => {
                            shared.groups.tick();
                            let view = cluster::ClusterView::of(&shared);
                            shared.groups.release(|g| view.coordinates(g));
                            cluster::roles::sweep(&shared, &view);
                        }
                    }
                }
            });
        }
        {
            // Aborts transactions past their timeout; finishes ends left half done. Both
            // only for the transactional ids this agent coordinates. Forgetting idle
            // producers is a job.
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0u64.. {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => txn::TxnCoordinator::tick(&shared).await,
                    }
                    if n % 600 == 0 && shared.config.roles.jobs {
                        txn::TxnCoordinator::expire_producers(&shared).await;
                    }
                }
                Ok(())
            });
        }
        {
            // Expiry of what clients stopped using: idle transactional ids and the offsets
            // of long-empty groups, each by its coordinator.
            let (shared, stop) = (shared.clone(), shutdown.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(shared.config.retention_check_interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = every.tick() => {
                            txn::TxnCoordinator::expire_ids(&shared).await;
                            api::delete_groups::expire(&shared).await;
                        }
                    }
                }
            });
        }
        if shared.config.roles.jobs {
            if shared.config.compaction_target_bytes > 0 {
                tasks.spawn(jobs::run_compaction(
                    shared.clone(),
                    jobs_store.clone(),
                    shutdown.clone(),
                ));
            }
            if !shared.config.cleaner_interval.is_zero() {
                tasks.spawn(cleaner::run(
                    shared.clone(),
                    jobs_store.clone(),
                    shutdown.clone(),
                ));
            }
            tasks.spawn(jobs::run(shared.clone(), jobs_store, shutdown.clone()));
        }
        // Shutdown order: stop accepting, finish in-flight requests (serve returns),
        // flush and commit what they buffered (the flusher returns), leave the registry.
        let flushed = CancellationToken::new();
        {
            let flushed = flushed.clone();
            tasks.spawn(async move {
                // Cancels on return and on panic alike.
                let _done = flushed.drop_guard();
                flusher.await
            });
        }
        let server_shared = shared.clone();
        tasks.spawn(async move {
            let result =
                server::serve(listeners, specs, tls, server_shared.clone(), shutdown).await;
            // Connections have drained: flush what they buffered, then stop the flusher.
            flush_stop.cancel();
            flushed.cancelled().await;
            match server_shared.meta.deregister_agent().await {
                Ok(()) => tracing::info!(
                    node_id = server_shared.config.node_id,
                    "left the agent registry"
                ),
                Err(e) => tracing::warn!(
                    node_id = server_shared.config.node_id,
                    error = %e,
                    "could not leave the agent registry; the entry expires with its lease"
                ),
            }
            result
        });
        Ok(Agent {
            local_addr,
            listeners: listener_addrs,
            metrics_addr,
            console_addr,
            peer_addr,
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

/// Binds every listener (`--listeners`, or the one of `--listen`) and records the
/// bound addresses in `config`: each listener's `bind` becomes its real address (port 0
/// resolved) and `advertise` defaults to it. The first listener is the primary one
/// (`listen`, `advertise`).
async fn bind_listeners(
    config: &mut AgentConfig,
    have_tls: bool,
) -> anyhow::Result<(
    Vec<tokio::net::TcpListener>,
    Vec<Arc<security::listeners::ListenerSpec>>,
)> {
    use anyhow::Context;
    let mut specs = config.listener_specs();
    if let Some(l) = specs.iter().find(|l| l.protocol.tls() && !have_tls) {
        anyhow::bail!(
            "listener {} uses {}: give its certificate and key with --tls-cert and --tls-key",
            l.name,
            l.protocol
        );
    }
    if let Some(l) = specs.iter().find(|l| l.protocol.sasl()) {
        if config.sasl_mechanisms.is_empty() {
            anyhow::bail!(
                "listener {} uses {} but --sasl-enabled-mechanisms is empty",
                l.name,
                l.protocol
            );
        }
    }
    let mut bound = Vec::new();
    for spec in &mut specs {
        let listener = tokio::net::TcpListener::bind(spec.bind)
            .await
            .with_context(|| {
                format!(
                "listen on {} for listener {} (is another Kafka or Shoal already running there? \
                 pick another with --listen or --listeners)",
                spec.bind, spec.name
            )
            })?;
        spec.bind = listener.local_addr()?;
        if spec.advertise.is_none() {
            spec.advertise = Some(spec.bind.to_string());
        }
        if !spec.bind.ip().is_loopback()
            && spec.protocol == security::listeners::SecurityProtocol::Plaintext
        {
            tracing::warn!(
                listener = %spec.name,
                address = %spec.bind,
                "listener {} accepts unauthenticated, unencrypted clients beyond loopback; \
                 use SASL_SSL or SSL for clients you do not trust",
                spec.name
            );
        }
        bound.push(listener);
    }
    config.listen = specs[0].bind;
    config.advertise = specs[0].advertise.clone();
    config.listeners = specs.clone();
    Ok((bound, specs.into_iter().map(Arc::new).collect()))
}

/// Registers this agent in the metadata store and fixes its node id in `config` (a
/// negative id asks the registry for the lowest free one). Returns the registration.
async fn register(
    config: &mut AgentConfig,
    meta: &dyn MetaStore,
    peer_port: Option<u16>,
) -> anyhow::Result<AgentInfo> {
    use anyhow::Context;
    let (host, port) = config.advertised_host_port();
    let peer_addr = peer_port.map(|p| {
        if host.contains(':') {
            format!("[{host}]:{p}")
        } else {
            format!("{host}:{p}")
        }
    });
    let mut me = AgentInfo {
        node_id: config.node_id.max(-1),
        host,
        port,
        az: config.az.clone(),
        group: config.agent_group.clone(),
        roles: config.roles.names(),
        peer_addr,
        listeners: config
            .listener_specs()
            .iter()
            .map(|l| {
                let (host, port) = security::listeners::split_host_port(
                    l.advertise.as_deref().unwrap_or(&l.bind.to_string()),
                );
                shoal_meta::ListenerAddr {
                    name: l.name.clone(),
                    host,
                    port,
                }
            })
            .collect(),
        incarnation: 0,
    };
    let node_id = meta.register_agent(&me).await.with_context(|| {
        if me.node_id >= 0 {
            format!(
                "register this agent as node {} (is another live agent using --node-id {}?)",
                me.node_id, me.node_id
            )
        } else {
            "register this agent in the metadata store".to_string()
        }
    })?;
    me.node_id = node_id;
    config.node_id = node_id;
    tracing::info!(
        node_id,
        advertised = %format!("{}:{}", me.host, me.port),
        az = %me.az,
        agent_group = %me.group,
        roles = %config.roles,
        "registered agent"
    );
    Ok(me)
}

/// Reads the client quotas from the metadata store into the agent's table.
pub(crate) async fn reload_quotas(shared: &Shared) -> Result<(), shoal_meta::MetaError> {
    let quotas = shared.meta.client_quotas().await?;
    shared.quotas.set_table(quotas);
    Ok(())
}

/// Reads the ACL bindings from the metadata store into the authorizer.
pub(crate) async fn reload_acls(shared: &Shared) -> Result<(), shoal_meta::MetaError> {
    let acls = shared.meta.acls().await?;
    shared.authorizer.set_acls(acls);
    Ok(())
}

/// Passes the partitions the metadata store reports changed (by any agent) on to the
/// read path's [`commits::Commits`], until shutdown or until the store stops reporting.
async fn forward_commits(
    mut notifications: tokio::sync::broadcast::Receiver<shoal_meta::ChangedPartitions>,
    commits: Arc<commits::Commits>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            report = notifications.recv() => match report {
                Ok(Some(partitions)) => commits.changed(partitions.iter().copied()),
                Ok(None) | Err(RecvError::Lagged(_)) => commits.everything_changed(),
                Err(RecvError::Closed) => {
                    tracing::warn!("the metadata store stopped reporting commits; fetches of data committed by other agents wait for their max_wait_ms");
                    return Ok(());
                }
            }
        }
    }
}
