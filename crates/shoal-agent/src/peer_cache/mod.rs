//! The distributed chunk cache: each chunk of an object has one owner agent per zone,
//! and the other agents of that zone ask the owner for it instead of the object store,
//! so a chunk is read from object storage about once per zone.
//!
//! The owner of chunk (object key, chunk index) is chosen by rendezvous hashing over the
//! live agents of this agent's zone and group that registered a peer address
//! ([`chunk_owner`](crate::cluster::placement::chunk_owner)); every agent computes the
//! same owner from the same registry. The owner serves the chunk from its own cache,
//! loading it from the object store on a miss (never asking a peer itself, and never
//! waiting on its own loads that ask a peer, so agents whose registry views differ
//! cannot wait on each other).
//!
//! The internal endpoint speaks a tiny binary protocol, one request per connection:
//! request `u8 version (1), u16 key length, key, u64 object size, u64 chunk index,
//! u64 timestamp (ms since the epoch), 16-byte nonce, 32-byte MAC`; answer `u8 status`
//! (0 ok, 1 error), `u32 length`, the chunk bytes or an error text, then a 32-byte MAC.
//! Requests are bounded (key ≤ 1 KiB, the chunk must lie inside the object) and time out.
//! A failing or slow peer only costs a fallback: the asking agent GETs the chunk itself.
//!
//! The endpoint never trusts the asker's idea of the object: it serves only objects the
//! metadata store knows as committed, and only when the asked size is the committed
//! size, so a forged size can neither make it cache a chunk of the wrong length nor
//! serve bytes outside the object.
//!
//! With `--cluster-secret-file` every request and answer is signed (see [`auth`]); the
//! endpoint closes connections whose request is not (counted in
//! `shoal_peer_requests_refused_total`, logged at most every 10 s). Without a secret the
//! endpoint reads committed objects for whoever connects: bind it (`--peer-listen`) to
//! an address only the agents can reach (the agent warns at start when it listens beyond
//! loopback unauthenticated).

pub mod auth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shoal_meta::AgentInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::Shared;
use auth::{ClusterSecret, Nonces, RateLimitedWarn, MAC_LEN, NONCE_LEN};

/// How long a peer may take to answer before the asker reads the object store itself.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_KEY: usize = 1024;
/// The protocol version a request starts with.
const VERSION: u8 = 1;
/// Objects whose committed size the endpoint checked recently (objects never change, so
/// an answer stays true while the object exists); cleared when it holds this many.
const MAX_KNOWN_SIZES: usize = 10_000;

/// The peers a chunk may be owned by, seen from `me`: live agents of its group and zone
/// with a peer address (including `me`).
pub fn zone_peers<'a>(me: &AgentInfo, live: &'a [AgentInfo]) -> Vec<&'a AgentInfo> {
    live.iter()
        .filter(|a| a.group == me.group && a.az == me.az && a.peer_addr.is_some())
        .collect()
}

/// One chunk request as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    pub key: String,
    /// The object's size as the asker's index entry gives it.
    pub size: u64,
    pub idx: u64,
    /// When the asker signed it (ms since the epoch).
    pub timestamp_ms: u64,
    pub nonce: [u8; NONCE_LEN],
    /// HMAC over [`ChunkRequest::signed_bytes`]; zeros without a cluster secret.
    pub mac: [u8; MAC_LEN],
}

impl ChunkRequest {
    /// A request for chunk `idx` of `key` (of `size` bytes), stamped `now_ms` and signed
    /// with `secret` when there is one.
    pub fn new(
        key: &str,
        size: u64,
        idx: u64,
        now_ms: u64,
        secret: Option<&ClusterSecret>,
    ) -> Self {
        let mut r = ChunkRequest {
            key: key.to_string(),
            size,
            idx,
            timestamp_ms: now_ms,
            nonce: *uuid::Uuid::new_v4().as_bytes(),
            mac: [0; MAC_LEN],
        };
        if let Some(s) = secret {
            r.mac = s.sign_request(&r.signed_bytes());
        }
        r
    }

    /// Every byte of the encoded request before the MAC: what the MAC covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(43 + self.key.len());
        b.push(VERSION);
        b.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        b.extend_from_slice(self.key.as_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.idx.to_be_bytes());
        b.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b
    }

    /// The request as sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.signed_bytes();
        b.extend_from_slice(&self.mac);
        b
    }
}

/// Asks the peer at `addr` for chunk `idx` of object `key` (of `size` bytes), signing the
/// request and checking the answer with `secret` when there is one.
pub async fn fetch(
    addr: &str,
    key: &str,
    size: u64,
    idx: u64,
    secret: Option<&ClusterSecret>,
) -> Result<Bytes, String> {
    let req = ChunkRequest::new(key, size, idx, crate::txn::now_ms() as u64, secret);
    let work = async {
        let mut sock = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true).ok();
        sock.write_all(&req.encode())
            .await
            .map_err(|e| e.to_string())?;
        read_answer(&mut sock, size, secret.map(|s| (s, &req.mac))).await
    };
    tokio::time::timeout(PEER_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PEER_TIMEOUT:?}")))
}

/// Reads a peer's answer to a request for a chunk of a `size`-byte object: the chunk,
/// or the peer's error text as the error. With `check` (the secret and the request's
/// MAC), an answer whose MAC does not match is an error.
pub(crate) async fn read_answer<R: AsyncRead + Unpin>(
    sock: &mut R,
    size: u64,
    check: Option<(&ClusterSecret, &[u8; MAC_LEN])>,
) -> Result<Bytes, String> {
    let status = sock.read_u8().await.map_err(|e| e.to_string())?;
    let len = sock.read_u32().await.map_err(|e| e.to_string())?;
    if len as u64 > size {
        return Err(format!(
            "peer announced {len} bytes for a {size}-byte object"
        ));
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let mut mac = [0u8; MAC_LEN];
    sock.read_exact(&mut mac).await.map_err(|e| e.to_string())?;
    if let Some((secret, request_mac)) = check {
        let head = answer_head(status, len);
        if !secret.verify_answer(request_mac, &head, &body, &mac) {
            return Err("the peer's answer is not signed with the cluster secret".into());
        }
    }
    if status != 0 {
        return Err(format!("peer: {}", String::from_utf8_lossy(&body)));
    }
    Ok(Bytes::from(body))
}

fn answer_head(status: u8, len: u32) -> [u8; 5] {
    let mut h = [status, 0, 0, 0, 0];
    h[1..].copy_from_slice(&len.to_be_bytes());
    h
}

/// The endpoint's state beyond the agent's: what it needs to refuse requests cheaply.
struct Endpoint {
    shared: Arc<Shared>,
    secret: Option<ClusterSecret>,
    nonces: Nonces,
    refused_log: RateLimitedWarn,
    /// Committed sizes of objects asked for recently.
    known_sizes: Mutex<HashMap<String, u64>>,
}

/// Serves chunks to peers until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let secret = shared.config.cluster_secret.clone();
    if secret.is_none() {
        if let Ok(addr) = listener.local_addr() {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "the peer-cache endpoint is unauthenticated and listens beyond loopback: anyone reaching it can read committed objects; set --cluster-secret-file");
            }
        }
    }
    let endpoint = Arc::new(Endpoint {
        shared,
        secret,
        nonces: Nonces::default(),
        refused_log: RateLimitedWarn::new(Duration::from_secs(10)),
        known_sizes: Mutex::new(HashMap::new()),
    });
    loop {
        let (sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "peer endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = endpoint.answer(sock, peer).await {
                tracing::debug!(%peer, error = %e, "peer chunk request failed");
            }
        });
    }
}

impl Endpoint {
    async fn answer(&self, mut sock: TcpStream, peer: std::net::SocketAddr) -> std::io::Result<()> {
        sock.set_nodelay(true).ok();
        let req = tokio::time::timeout(PEER_TIMEOUT, read_request(&mut sock))
            .await
            .map_err(|_| std::io::Error::other("request timed out"))??;
        if let Some(secret) = &self.secret {
            let now = crate::txn::now_ms() as u64;
            let checked = auth::check_request(
                secret,
                &self.nonces,
                &req.signed_bytes(),
                req.timestamp_ms,
                req.nonce,
                &req.mac,
                now,
            );
            if let Err(why) = checked {
                Metrics::add(&self.shared.metrics.peer_requests_refused_auth, 1);
                if let Some(held) = self.refused_log.allow(std::time::Instant::now()) {
                    tracing::warn!(%peer, reason = %why, similar_since_last = held, "refused a peer-cache request");
                }
                return Ok(()); // closed without an answer
            }
        }
        let result = self.chunk(&req).await;
        let (status, body) = match &result {
            Ok(b) => {
                Metrics::add(&self.shared.metrics.peer_chunks_served, 1);
                (0u8, b.clone())
            }
            Err(e) => (1u8, Bytes::from(e.clone().into_bytes())),
        };
        let head = answer_head(status, body.len() as u32);
        let mac = match &self.secret {
            Some(s) => s.sign_answer(&req.mac, &head, &body),
            None => [0; MAC_LEN],
        };
        sock.write_all(&head).await?;
        sock.write_all(&body).await?;
        sock.write_all(&mac).await?;
        sock.shutdown().await
    }

    /// The chunk asked for, if the object is committed with the size asked about.
    async fn chunk(&self, req: &ChunkRequest) -> Result<Bytes, String> {
        let cs = self.shared.reader.cache().chunk_size();
        if !chunk_in_object(req.idx, cs, req.size) {
            return Err(format!(
                "chunk {} lies outside the {}-byte object",
                req.idx, req.size
            ));
        }
        let committed = self.committed_size(&req.key).await?;
        if committed != Some(req.size) {
            Metrics::add(&self.shared.metrics.peer_requests_refused_object, 1);
            return Err(match committed {
                None => format!("{} is not a committed object", req.key),
                Some(n) => format!("{} has {n} bytes, not {}", req.key, req.size),
            });
        }
        self.shared
            .reader
            .local_chunk(&req.key, req.size, req.idx)
            .await
            .map_err(|e| e.to_string())
    }

    async fn committed_size(&self, key: &str) -> Result<Option<u64>, String> {
        let known = |m: &Mutex<HashMap<String, u64>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
                .copied()
        };
        if let Some(n) = known(&self.known_sizes) {
            return Ok(Some(n));
        }
        let size = self
            .shared
            .meta
            .object_size(key)
            .await
            .map_err(|e| format!("metadata: {e}"))?;
        if let Some(n) = size {
            let mut m = self.known_sizes.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= MAX_KNOWN_SIZES {
                m.clear();
            }
            m.insert(key.to_string(), n);
        }
        Ok(size)
    }
}

/// Reads one chunk request, bounded by the bytes it announces.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    sock: &mut R,
) -> std::io::Result<ChunkRequest> {
    let version = sock.read_u8().await?;
    if version != VERSION {
        return Err(std::io::Error::other(format!(
            "peer protocol version {version}"
        )));
    }
    let key_len = sock.read_u16().await? as usize;
    if key_len == 0 || key_len > MAX_KEY {
        return Err(std::io::Error::other(format!("key length {key_len}")));
    }
    let mut key = vec![0u8; key_len];
    sock.read_exact(&mut key).await?;
    let size = sock.read_u64().await?;
    let idx = sock.read_u64().await?;
    let timestamp_ms = sock.read_u64().await?;
    let mut nonce = [0u8; NONCE_LEN];
    sock.read_exact(&mut nonce).await?;
    let mut mac = [0u8; MAC_LEN];
    sock.read_exact(&mut mac).await?;
    let key = String::from_utf8(key).map_err(std::io::Error::other)?;
    Ok(ChunkRequest {
        key,
        size,
        idx,
        timestamp_ms,
        nonce,
        mac,
    })
}

/// Whether chunk `idx` (of `chunk_size` bytes each) starts inside a `size`-byte object.
pub(crate) fn chunk_in_object(idx: u64, chunk_size: u64, size: u64) -> bool {
    idx.checked_mul(chunk_size)
        .is_some_and(|start| start < size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(node_id: i32, az: &str) -> AgentInfo {
        AgentInfo {
            node_id,
            host: "h".into(),
            port: 1,
            az: az.into(),
            group: "g".into(),
            roles: vec![],
            peer_addr: Some(format!("h:{node_id}")),
            listeners: Vec::new(),
            incarnation: 0,
        }
    }

    #[tokio::test]
    async fn request_and_answer_readers_take_only_what_is_bounded() {
        let secret = ClusterSecret::new(b"a-secret-of-at-least-16").unwrap();
        let sent = ChunkRequest::new("k/1", 100, 2, 5_000, Some(&secret));
        let req = sent.encode();
        let got = read_request(&mut &req[..]).await.unwrap();
        assert_eq!(got, sent);
        assert!(secret.verify_request(&got.signed_bytes(), &got.mac));
        assert!(
            read_request(&mut &req[..req.len() - 1]).await.is_err(),
            "cut short"
        );
        let mut old = req.clone();
        old[0] = 0;
        assert!(read_request(&mut &old[..]).await.is_err(), "other version");
        assert!(
            read_request(&mut &[1u8, 0, 0][..]).await.is_err(),
            "empty key"
        );
        assert!(
            read_request(&mut &[1u8, 4, 1][..]).await.is_err(),
            "key over 1 KiB"
        );

        let mut ok = vec![0u8, 0, 0, 0, 2, 7, 8];
        ok.extend_from_slice(&[0; MAC_LEN]);
        assert_eq!(
            read_answer(&mut &ok[..], 10, None).await.unwrap(),
            &[7u8, 8][..]
        );
        assert!(
            read_answer(&mut &ok[..], 1, None).await.is_err(),
            "longer than the object"
        );
        assert!(
            read_answer(&mut &ok[..6], 10, None).await.is_err(),
            "cut short"
        );
        assert!(
            read_answer(&mut &ok[..ok.len() - 1], 10, None)
                .await
                .is_err(),
            "MAC cut short"
        );
        let mut err = vec![1u8, 0, 0, 0, 2, b'n', b'o'];
        err.extend_from_slice(&[0; MAC_LEN]);
        assert_eq!(
            read_answer(&mut &err[..], 10, None).await.unwrap_err(),
            "peer: no"
        );

        // Signed answers: the right MAC passes, zeros (an unauthenticated peer) do not.
        let mut signed = ok[..7].to_vec();
        signed.extend_from_slice(&secret.sign_answer(&sent.mac, &ok[..5], &ok[5..7]));
        let check = Some((&secret, &sent.mac));
        assert_eq!(
            read_answer(&mut &signed[..], 10, check).await.unwrap(),
            &[7u8, 8][..]
        );
        assert!(
            read_answer(&mut &ok[..], 10, check).await.is_err(),
            "unsigned"
        );
        let other = [9u8; MAC_LEN];
        assert!(
            read_answer(&mut &signed[..], 10, Some((&secret, &other)))
                .await
                .is_err(),
            "signed for another request"
        );

        assert!(chunk_in_object(2, 4, 9));
        assert!(!chunk_in_object(3, 4, 9));
        assert!(!chunk_in_object(u64::MAX, 2, u64::MAX), "start overflows");
    }

    #[test]
    fn peers_are_the_zone_and_group() {
        let mut other_group = agent(4, "a");
        other_group.group = "other".into();
        let mut no_peer = agent(5, "a");
        no_peer.peer_addr = None;
        let live = vec![agent(1, "a"), agent(2, "b"), other_group, no_peer];
        let ids: Vec<i32> = zone_peers(&agent(9, "a"), &live)
            .iter()
            .map(|a| a.node_id)
            .collect();
        assert_eq!(ids, vec![1]);
    }
}

#[cfg(test)]
mod endpoint_tests;
