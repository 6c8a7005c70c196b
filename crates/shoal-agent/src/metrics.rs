//! Counters the agent keeps and serves in Prometheus text format.
//!
//! Plain atomics: every counter is a monotonic total, scraped over HTTP at `/metrics`.
//! The HTTP side is deliberately tiny (one GET, one answer, connection closed) so the
//! agent carries no web framework for one page.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Metrics {
    pub object_puts: AtomicU64,
    pub object_put_bytes: AtomicU64,
    pub object_gets: AtomicU64,
    pub object_get_bytes: AtomicU64,
    pub object_errors: AtomicU64,
    pub flushes: AtomicU64,
    pub commit_errors: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub produced_batches: AtomicU64,
    pub produce_rejected_batches: AtomicU64,
    /// Producer batches the commit found already written (retries) or refused.
    pub producer_duplicates: AtomicU64,
    pub producer_refusals: AtomicU64,
    pub txn_commits: AtomicU64,
    pub txn_aborts: AtomicU64,
    pub txn_timeouts: AtomicU64,
    /// Transactions v2 (KIP-890): EndTxn v5 answered, and saves that joined partitions or
    /// a group to a transaction from Produce v12 or TxnOffsetCommit v5.
    pub txn_v2_ends: AtomicU64,
    pub txn_implicit_adds: AtomicU64,
    /// Transactional ids and groups' committed offsets forgotten by expiry.
    pub txn_ids_expired: AtomicU64,
    pub group_offsets_expired: AtomicU64,
    pub compacted_objects: AtomicU64,
    pub compacted_bytes: AtomicU64,
    pub gc_deleted_objects: AtomicU64,
    pub compaction_gets: AtomicU64,
    pub compaction_puts: AtomicU64,
    /// The log cleaner's own object-store requests and bytes (see [`crate::cleaner`]).
    pub cleaner_gets: AtomicU64,
    pub cleaner_puts: AtomicU64,
    pub cleaner_read_bytes: AtomicU64,
    pub cleaner_written_bytes: AtomicU64,
    /// Bytes of index entries passes went over, and records they dropped.
    pub cleaner_cleaned_bytes: AtomicU64,
    pub cleaner_removed_records: AtomicU64,
    /// Wall time of the cleaner's passes that read data (not the sleeps between them,
    /// nor the metadata-only checks that found nothing due): throughput is cleaned bytes
    /// over this.
    pub cleaner_busy_ms: AtomicU64,
    pub fetched_bytes: AtomicU64,
    /// Objects put in quarantine ([`crate::quarantine`]), by who found them corrupt; the
    /// objects quarantined now (a gauge); reads that failed on a cached or peer copy and
    /// succeeded on a fresh read from the object store.
    pub corrupt_objects_fetch: AtomicU64,
    pub corrupt_objects_compaction: AtomicU64,
    pub quarantined_objects: AtomicU64,
    pub corrupt_copies_healed: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Chunks a peer (their owner) supplied, and chunks read from the store because the
    /// owner failed; chunks this agent served to peers.
    pub peer_chunk_hits: AtomicU64,
    pub peer_chunk_fallbacks: AtomicU64,
    pub peer_chunks_served: AtomicU64,
    /// Peer-cache requests refused: closed for a wrong or missing MAC, a stale
    /// timestamp or a replayed nonce; answered with an error because they named an
    /// object that is not committed or not with the size they gave.
    pub peer_requests_refused_auth: AtomicU64,
    pub peer_requests_refused_object: AtomicU64,
    /// Metrics scrapes refused for a missing or wrong bearer token.
    pub metrics_unauthorized: AtomicU64,
    /// Second GETs sent because the first was slow.
    pub hedged_gets: AtomicU64,
    /// Long-polling fetches woken by a commit: those that read again because one of
    /// their partitions changed, and those that went back to waiting.
    pub fetch_wakeups_read: AtomicU64,
    pub fetch_wakeups_skipped: AtomicU64,
    /// Fetch requests by kind (KIP-227): full without a session or starting one, the
    /// sessions started, incremental ones, and sessions evicted from the cache.
    pub fetch_full: AtomicU64,
    pub fetch_session_new: AtomicU64,
    pub fetch_incremental: AtomicU64,
    pub fetch_session_evictions: AtomicU64,
    pub requests: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections accepted and closed at once: over `--max-connections`, over
    /// `--max-connections-per-ip`.
    pub connections_refused_max: AtomicU64,
    pub connections_refused_per_ip: AtomicU64,
    /// Connections closed by the agent's timers: idle, no first request in time, a
    /// request that did not finish arriving in time.
    pub connections_closed_idle: AtomicU64,
    pub connections_closed_first_request: AtomicU64,
    pub connections_closed_slow_request: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// TLS handshakes that failed (bad certificate, timeout, unmapped subject).
    pub tls_handshake_failures: AtomicU64,
    /// SASL authentications that succeeded and that failed.
    pub sasl_authenticated: AtomicU64,
    pub sasl_failed: AtomicU64,
    /// Responses throttled by a client quota, and the throttle time they carried, by
    /// quota type (a response over two quotas counts in both).
    pub throttled_produce: AtomicU64,
    pub throttled_produce_ms: AtomicU64,
    pub throttled_fetch: AtomicU64,
    pub throttled_fetch_ms: AtomicU64,
    pub throttled_request: AtomicU64,
    pub throttled_request_ms: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        counter(
            "shoal_object_store_requests_total",
            "Object store requests by operation.",
            &[
                ("{op=\"put\"}", g(&self.object_puts)),
                ("{op=\"get\"}", g(&self.object_gets)),
            ],
        );
        counter(
            "shoal_object_store_bytes_total",
            "Bytes moved to and from the object store.",
            &[
                ("{op=\"put\"}", g(&self.object_put_bytes)),
                ("{op=\"get\"}", g(&self.object_get_bytes)),
            ],
        );
        counter(
            "shoal_object_store_errors_total",
            "Failed object store requests.",
            &[("", g(&self.object_errors))],
        );
        counter(
            "shoal_flushes_total",
            "Objects flushed and committed.",
            &[("", g(&self.flushes))],
        );
        counter(
            "shoal_commit_errors_total",
            "Failed metadata commits.",
            &[("", g(&self.commit_errors))],
        );
        counter(
            "shoal_produced_bytes_total",
            "Record batch bytes acknowledged.",
            &[("", g(&self.produced_bytes))],
        );
        counter(
            "shoal_produced_batches_total",
            "Record batches acknowledged.",
            &[("", g(&self.produced_batches))],
        );
        counter(
            "shoal_produce_rejected_batches_total",
            "Record batches refused by validation.",
            &[("", g(&self.produce_rejected_batches))],
        );
        counter(
            "shoal_producer_batches_total",
            "Batches with a producer id that the commit did not append, by outcome.",
            &[
                ("{outcome=\"duplicate\"}", g(&self.producer_duplicates)),
                ("{outcome=\"refused\"}", g(&self.producer_refusals)),
            ],
        );
        counter(
            "shoal_transactions_total",
            "Transactions ended, by result (timeouts are also counted as aborts).",
            &[
                ("{result=\"commit\"}", g(&self.txn_commits)),
                ("{result=\"abort\"}", g(&self.txn_aborts)),
                ("{result=\"timeout\"}", g(&self.txn_timeouts)),
            ],
        );
        counter(
            "shoal_transactions_v2_total",
            "Transactions v2 (KIP-890): EndTxn v5 answered, and transactions joined by Produce v12 or TxnOffsetCommit v5 (saves of the record; repeats this agent remembers are not counted).",
            &[
                ("{event=\"end\"}", g(&self.txn_v2_ends)),
                ("{event=\"join\"}", g(&self.txn_implicit_adds)),
            ],
        );
        counter(
            "shoal_expired_total",
            "Forgotten by expiry: idle transactional ids (--transactional-id-expiration), and the committed offsets of empty groups (--offsets-retention), counted in groups.",
            &[
                ("{what=\"transactional_id\"}", g(&self.txn_ids_expired)),
                ("{what=\"group_offsets\"}", g(&self.group_offsets_expired)),
            ],
        );
        counter(
            "shoal_compaction_total",
            "Compaction: objects merged, bytes read, and its own object-store GETs and PUTs (not in shoal_object_store_requests_total).",
            &[
                ("{what=\"objects\"}", g(&self.compacted_objects)),
                ("{what=\"bytes\"}", g(&self.compacted_bytes)),
                ("{what=\"gets\"}", g(&self.compaction_gets)),
                ("{what=\"puts\"}", g(&self.compaction_puts)),
            ],
        );
        counter(
            "shoal_cleaner_total",
            "Log cleaner (cleanup.policy=compact): bytes of the log it went over, records it dropped, bytes it read and wrote, and its own object-store GETs and PUTs (not in shoal_object_store_requests_total).",
            &[
                ("{what=\"cleaned_bytes\"}", g(&self.cleaner_cleaned_bytes)),
                ("{what=\"removed_records\"}", g(&self.cleaner_removed_records)),
                ("{what=\"read_bytes\"}", g(&self.cleaner_read_bytes)),
                ("{what=\"written_bytes\"}", g(&self.cleaner_written_bytes)),
                ("{what=\"gets\"}", g(&self.cleaner_gets)),
                ("{what=\"puts\"}", g(&self.cleaner_puts)),
            ],
        );
        counter(
            "shoal_cleaner_busy_ms_total",
            "Log cleaner: milliseconds spent in passes that read data (throughput is cleaned_bytes of shoal_cleaner_total over this).",
            &[("", g(&self.cleaner_busy_ms))],
        );
        counter(
            "shoal_gc_deleted_objects_total",
            "Objects deleted by GC (unreferenced past the grace period, or never committed).",
            &[("", g(&self.gc_deleted_objects))],
        );
        counter(
            "shoal_fetched_bytes_total",
            "Record bytes returned by Fetch.",
            &[("", g(&self.fetched_bytes))],
        );
        counter(
            "shoal_corrupt_objects_total",
            "Objects found corrupt on a fresh read and quarantined, by who found them.",
            &[
                ("{found_by=\"fetch\"}", g(&self.corrupt_objects_fetch)),
                (
                    "{found_by=\"compaction\"}",
                    g(&self.corrupt_objects_compaction),
                ),
            ],
        );
        counter(
            "shoal_corrupt_copies_healed_total",
            "Reads that failed on a cached or peer copy of a chunk and succeeded on a fresh read from the object store.",
            &[("", g(&self.corrupt_copies_healed))],
        );
        counter(
            "shoal_chunk_cache_requests_total",
            "Chunk cache lookups by result.",
            &[
                ("{result=\"hit\"}", g(&self.cache_hits)),
                ("{result=\"miss\"}", g(&self.cache_misses)),
            ],
        );
        counter(
            "shoal_peer_chunks_total",
            "Distributed chunk cache: chunks got from their owner agent, chunks read from the object store because the owner failed, chunks served to peers.",
            &[
                ("{result=\"peer_hit\"}", g(&self.peer_chunk_hits)),
                ("{result=\"fallback\"}", g(&self.peer_chunk_fallbacks)),
                ("{result=\"served\"}", g(&self.peer_chunks_served)),
            ],
        );
        counter(
            "shoal_peer_requests_refused_total",
            "Peer-cache requests refused: not signed with the cluster secret (or stale, or replayed), or naming an object that is not committed with the size asked.",
            &[
                ("{reason=\"auth\"}", g(&self.peer_requests_refused_auth)),
                ("{reason=\"object\"}", g(&self.peer_requests_refused_object)),
            ],
        );
        counter(
            "shoal_metrics_unauthorized_total",
            "Metrics requests refused (401) for a missing or wrong bearer token.",
            &[("", g(&self.metrics_unauthorized))],
        );
        counter(
            "shoal_object_hedged_gets_total",
            "Second GETs sent because the first was slower than --hedge-after (also counted in shoal_object_store_requests_total).",
            &[("", g(&self.hedged_gets))],
        );
        counter(
            "shoal_fetch_wakeups_total",
            "Waiting fetches woken by a commit report: read again (one of their partitions changed) or skipped (kept waiting without reading).",
            &[
                ("{result=\"read\"}", g(&self.fetch_wakeups_read)),
                ("{result=\"skipped\"}", g(&self.fetch_wakeups_skipped)),
            ],
        );
        counter(
            "shoal_fetch_requests_total",
            "Fetch requests by kind: full (no session, or starting one) and incremental (KIP-227 fetch sessions).",
            &[
                ("{kind=\"full\"}", g(&self.fetch_full)),
                ("{kind=\"incremental\"}", g(&self.fetch_incremental)),
            ],
        );
        counter(
            "shoal_fetch_sessions_total",
            "Fetch sessions started, and evicted from the cache (by a newer one, or grown past --fetch-session-cache-partitions).",
            &[
                ("{event=\"started\"}", g(&self.fetch_session_new)),
                ("{event=\"evicted\"}", g(&self.fetch_session_evictions)),
            ],
        );
        counter(
            "shoal_requests_total",
            "Kafka requests handled.",
            &[("", g(&self.requests))],
        );
        counter(
            "shoal_connections_total",
            "Connections accepted.",
            &[("", g(&self.connections_total))],
        );
        counter(
            "shoal_tls_handshake_failures_total",
            "TLS handshakes that failed (untrusted or missing client certificate, timeout, no mapping rule for the subject).",
            &[("", g(&self.tls_handshake_failures))],
        );
        counter(
            "shoal_sasl_authentications_total",
            "SASL authentications, by result.",
            &[
                ("{result=\"ok\"}", g(&self.sasl_authenticated)),
                ("{result=\"failed\"}", g(&self.sasl_failed)),
            ],
        );
        counter(
            "shoal_connections_refused_total",
            "Connections accepted and closed at once because a connection limit was reached.",
            &[
                (
                    "{limit=\"max-connections\"}",
                    g(&self.connections_refused_max),
                ),
                (
                    "{limit=\"max-connections-per-ip\"}",
                    g(&self.connections_refused_per_ip),
                ),
            ],
        );
        counter(
            "shoal_connections_timed_out_total",
            "Connections closed by the agent's timers.",
            &[
                ("{reason=\"idle\"}", g(&self.connections_closed_idle)),
                (
                    "{reason=\"first-request\"}",
                    g(&self.connections_closed_first_request),
                ),
                (
                    "{reason=\"slow-request\"}",
                    g(&self.connections_closed_slow_request),
                ),
            ],
        );
        counter(
            "shoal_quota_throttled_total",
            "Requests throttled by a client quota, by quota type (producer_byte_rate, consumer_byte_rate, request_percentage).",
            &[
                ("{quota=\"produce\"}", g(&self.throttled_produce)),
                ("{quota=\"fetch\"}", g(&self.throttled_fetch)),
                ("{quota=\"request\"}", g(&self.throttled_request)),
            ],
        );
        counter(
            "shoal_quota_throttle_ms_total",
            "Throttle time given to clients over a quota, by quota type.",
            &[
                ("{quota=\"produce\"}", g(&self.throttled_produce_ms)),
                ("{quota=\"fetch\"}", g(&self.throttled_fetch_ms)),
                ("{quota=\"request\"}", g(&self.throttled_request_ms)),
            ],
        );
        counter(
            "shoal_protocol_errors_total",
            "Connections closed for malformed or unsupported requests.",
            &[("", g(&self.protocol_errors))],
        );
        out.push_str(&format!(
            "# HELP shoal_quarantined_objects Objects this agent holds in quarantine as corrupt now.\n# TYPE shoal_quarantined_objects gauge\nshoal_quarantined_objects {}\n",
            g(&self.quarantined_objects)
        ));
        out.push_str(&format!(
            "# HELP shoal_connections_open Connections open now.\n# TYPE shoal_connections_open gauge\nshoal_connections_open {}\n",
            g(&self.connections_open)
        ));
        out
    }
}

/// The bearer token metrics requests must carry (`--metrics-token-file`). Its `Debug`
/// form never shows the token.
#[derive(Clone)]
pub struct MetricsToken(Arc<[u8]>);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

impl MetricsToken {
    /// A token; `None` when it is empty (after trimming whitespace), which would let
    /// anyone in.
    pub fn new(token: &str) -> Option<Self> {
        let t = token.trim();
        (!t.is_empty()).then(|| MetricsToken(t.as_bytes().into()))
    }

    /// Reads the token from a file (its first line, trimmed).
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the metrics token file {}", path.display()))?;
        MetricsToken::new(text.lines().next().unwrap_or(""))
            .with_context(|| format!("the metrics token file {} is empty", path.display()))
    }

    /// Whether `presented` is the token. Compares digests in constant time, so neither
    /// the token's bytes nor its length leak through timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let (a, b) = (
            sha2::Sha256::digest(&self.0),
            sha2::Sha256::digest(presented),
        );
        a.ct_eq(&b).into()
    }
}

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;

/// Whether an HTTP request head authorizes a scrape: its `Authorization` header is
/// `Bearer <token>` (header name and scheme in any case).
fn authorized(head: &str, token: &MetricsToken) -> bool {
    head.split("\r\n").skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return false;
        }
        let value = value.trim();
        match value.split_once(' ') {
            Some((scheme, cred)) if scheme.eq_ignore_ascii_case("bearer") => {
                token.matches(cred.trim().as_bytes())
            }
            _ => false,
        }
    })
}

/// Reads a request head (up to the blank line, at most [`MAX_HEAD`] bytes).
async fn read_head<R: tokio::io::AsyncRead + Unpin>(sock: &mut R) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD {
            break;
        }
    }
    buf.truncate(MAX_HEAD);
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

/// Status line and body of the answer to a request head.
fn respond(head: &str, metrics: &Metrics, token: Option<&MetricsToken>) -> (&'static str, String) {
    if !(head.starts_with("GET /metrics") || head.starts_with("GET / ")) {
        return ("404 Not Found", "try GET /metrics\n".to_string());
    }
    if let Some(t) = token {
        if !authorized(head, t) {
            Metrics::add(&metrics.metrics_unauthorized, 1);
            return (
                "401 Unauthorized",
                "a bearer token is required\n".to_string(),
            );
        }
    }
    ("200 OK", metrics.render())
}

/// Serves `GET /metrics` until `shutdown`; with `token`, only to requests that carry it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    token: Option<MetricsToken>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "metrics accept failed"); continue; }
            },
        };
        let metrics = metrics.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), read_head(&mut sock)).await;
            let Ok(Some(req)) = read else { return };
            let (status, body) = respond(&req, &metrics, token.as_ref());
            let auth = if status.starts_with("401") {
                "WWW-Authenticate: Bearer\r\n"
            } else {
                ""
            };
            let head = format!(
                "HTTP/1.1 {status}\r\n{auth}Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, headers: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_token_protects_the_metrics_page() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let token = MetricsToken::new("s3cret-token\n").unwrap();
        tokio::spawn(serve(l, metrics.clone(), Some(token), stop.clone()));

        let none = get(addr, "").await;
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(none.contains("WWW-Authenticate: Bearer"));
        assert!(!none.contains("shoal_requests_total"));
        let wrong = get(addr, "Authorization: Bearer s3cret-tokeN\r\n").await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let basic = get(addr, "Authorization: Basic s3cret-token\r\n").await;
        assert!(basic.starts_with("HTTP/1.1 401"), "{basic}");
        let right = get(addr, "authorization: bearer s3cret-token\r\n").await;
        assert!(right.starts_with("HTTP/1.1 200"), "{right}");
        assert!(
            right.contains("shoal_metrics_unauthorized_total 3"),
            "{right}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn without_a_token_anyone_reads_it() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(l, Arc::new(Metrics::default()), None, stop.clone()));
        assert!(get(addr, "").await.starts_with("HTTP/1.1 200"));
        stop.cancel();
    }

    #[test]
    fn tokens_compare_whole_and_never_print() {
        let t = MetricsToken::new(" abc ").unwrap();
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"ab"));
        assert!(!t.matches(b"abcd"));
        assert!(MetricsToken::new(" \n").is_none(), "empty token refused");
        assert!(!format!("{t:?}").contains("abc"));
    }
}
