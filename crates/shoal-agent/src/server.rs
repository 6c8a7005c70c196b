//! The accept loop.
//!
//! Every connection is accepted, then counted against `--max-connections` and
//! `--max-connections-per-ip`; one over a limit is closed at once with a log line
//! (at most one a second) and `shoal_connections_refused_total`. Closing rather than
//! leaving it in the kernel's backlog means a client at the limit gets a clear EOF it
//! can retry, not a connect that hangs, and idle connections cannot quietly lock every
//! new client out. Accepted sockets get TCP keepalive so half-open peers are reaped.
//! Each connection runs as a task in a `JoinSet` that is reaped as it goes. Shutdown
//! has two phases: stop accepting (the listener is dropped), then let connections
//! finish what they have in flight, bounded by a drain timeout after which the
//! stragglers are aborted.
//!
//! One loop accepts on every listener (`--listeners`); the limits count them together.
//! On SSL and SASL_SSL listeners the TLS handshake runs in the connection's task, so a
//! slow handshake holds only its own connection slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::security::listeners::ListenerSpec;
use crate::security::tls::TlsServer;
use crate::{connection, Shared};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// TCP keepalive: first probe after this much silence, then every interval, and the
/// peer is dropped after the retries go unanswered (about 90 s for a vanished peer).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Open connections, in total and per peer IP. A [`Slot`] holds one place.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerIp,
}

/// One open connection's place in [`Counts`], given back when dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Takes a place for a connection from `ip`, or says which limit is reached
/// (`per_ip` 0: no per-IP limit).
fn take_slot(
    counts: &Arc<Mutex<Counts>>,
    ip: IpAddr,
    max: usize,
    per_ip: usize,
) -> Result<Slot, Refusal> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if c.total >= max {
        return Err(Refusal::Total);
    }
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if per_ip > 0 && from_ip >= per_ip {
        return Err(Refusal::PerIp);
    }
    c.total += 1;
    c.per_ip.insert(ip, from_ip + 1);
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

fn keepalive(sock: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(sock).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "could not set TCP keepalive");
    }
}

/// Accepts on every listener until `shutdown`; the connection limits count all of them
/// together.
/// The TLS handshake of a new connection, within `--first-request-timeout`, and the
/// principal of its client certificate (SSL listeners; on SASL_SSL, SASL decides).
/// `None`: the handshake failed or no mapping rule fits the certificate (logged).
async fn handshake(
    tls: &TlsServer,
    sock: TcpStream,
    peer: std::net::SocketAddr,
    spec: &ListenerSpec,
    shared: &Shared,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Option<crate::security::Principal>,
)> {
    let timeout = shared.config.first_request_timeout;
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(sock)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            Metrics::add(&shared.metrics.tls_handshake_failures, 1);
            tracing::info!(%peer, listener = %spec.name, error = %e, "closing connection: TLS handshake failed");
            return None;
        }
        Err(_) => {
            Metrics::add(&shared.metrics.tls_handshake_failures, 1);
            tracing::info!(%peer, listener = %spec.name, "closing connection: no TLS handshake within --first-request-timeout");
            return None;
        }
    };
    if spec.protocol.sasl() {
        return Some((stream, None));
    }
    match tls.principal(stream.get_ref().1) {
        Ok(principal) => Some((stream, principal)),
        Err(why) => {
            Metrics::add(&shared.metrics.tls_handshake_failures, 1);
            tracing::warn!(%peer, listener = %spec.name, "closing connection: {why}");
            None
        }
    }
}

pub async fn serve(
    listeners: Vec<TcpListener>,
    specs: Vec<Arc<ListenerSpec>>,
    tls: Option<Arc<TlsServer>>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    let mut refused_since_log = 0u64;
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!(error = %e, "connection task panicked");
                }
            }
        }
        let accepts = listeners.iter().map(|l| Box::pin(l.accept()));
        let (sock, peer, spec) = tokio::select! {
            _ = shutdown.cancelled() => break,
            (r, which, _) = futures::future::select_all(accepts) => match r {
                Ok((sock, peer)) => (sock, peer, specs[which].clone()),
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed (out of file descriptors? raise `ulimit -n` or lower --max-connections)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let config = &shared.config;
        let slot = match take_slot(
            &counts,
            peer.ip(),
            config.max_connections,
            config.max_connections_per_ip,
        ) {
            Ok(slot) => slot,
            Err(why) => {
                let (counter, flag) = match why {
                    Refusal::Total => {
                        (&shared.metrics.connections_refused_max, "--max-connections")
                    }
                    Refusal::PerIp => (
                        &shared.metrics.connections_refused_per_ip,
                        "--max-connections-per-ip",
                    ),
                };
                Metrics::add(counter, 1);
                refused_since_log += 1;
                let now = tokio::time::Instant::now();
                if last_refusal_log.is_none_or(|t| now - t >= Duration::from_secs(1)) {
                    tracing::warn!(
                        %peer,
                        refused = refused_since_log,
                        "refusing connections: {flag} reached (raise it if these clients are legitimate)"
                    );
                    last_refusal_log = Some(now);
                    refused_since_log = 0;
                }
                drop(sock);
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        keepalive(&sock);
        Metrics::add(&shared.metrics.connections_total, 1);
        let (shared, token) = (shared.clone(), shutdown.child_token());
        let tls = tls.clone();
        conns.spawn(async move {
            let _slot = slot;
            if !spec.protocol.tls() {
                connection::run(sock, peer, spec, None, shared, token).await;
                return;
            }
            let Some(tls) = tls else {
                return; // refused at start: a TLS listener needs --tls-cert
            };
            let Some((stream, principal)) = handshake(&tls, sock, peer, &spec, &shared).await
            else {
                return;
            };
            connection::run(stream, peer, spec, principal, shared, token).await;
        });
    }
    drop(listeners);
    tracing::info!(
        open = conns.len(),
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections did not drain in time; closing them"
        );
        conns.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_in_total_and_per_ip_and_come_back_when_dropped() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = take_slot(&counts, a, 3, 2).unwrap();
        let _a2 = take_slot(&counts, a, 3, 2).unwrap();
        assert_eq!(take_slot(&counts, a, 3, 2).err(), Some(Refusal::PerIp));
        let _b1 = take_slot(&counts, b, 3, 2).unwrap();
        assert_eq!(take_slot(&counts, b, 3, 2).err(), Some(Refusal::Total));
        drop(a1);
        assert!(
            take_slot(&counts, b, 3, 2).is_ok(),
            "a freed place is taken again"
        );
        // No per-IP limit.
        let counts = Arc::new(Mutex::new(Counts::default()));
        let held: Vec<Slot> = (0..5)
            .map(|_| take_slot(&counts, a, 5, 0).unwrap())
            .collect();
        assert_eq!(take_slot(&counts, a, 5, 0).err(), Some(Refusal::Total));
        drop(held);
        let c = counts.lock().unwrap();
        assert_eq!((c.total, c.per_ip.len()), (0, 0));
    }
}
