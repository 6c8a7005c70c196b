//! The accept loop.
//!
//! A connection permit is taken *before* `accept`, so at most `max_connections` sockets
//! are open and the rest wait in the kernel's backlog. Each connection runs as a task in
//! a `JoinSet` that is reaped as it goes. Shutdown has two phases: stop accepting (the
//! listener is dropped), then let connections finish what they have in flight, bounded
//! by a drain timeout after which the stragglers are aborted.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{connection, Shared};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!(error = %e, "connection task panicked");
                }
            }
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        Metrics::add(&shared.metrics.connections_total, 1);
        let (shared, token) = (shared.clone(), shutdown.child_token());
        conns.spawn(async move {
            let _permit = permit;
            connection::run(sock, peer, shared, token).await;
        });
    }
    drop(listener);
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
