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
//! request `u16 key length, key, u64 object size, u64 chunk index`; answer `u8 status`
//! (0 ok, 1 error) then `u32 length` and the chunk bytes or an error text. Requests are
//! bounded (key ≤ 1 KiB, the chunk must lie inside the object) and time out. A failing or
//! slow peer only costs a fallback: the asking agent GETs the chunk itself.
//!
//! The endpoint reads any object of the bucket for whoever connects: bind it
//! (`--peer-listen`) to an address only the agents can reach.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_meta::AgentInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::Shared;

/// How long a peer may take to answer before the asker reads the object store itself.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_KEY: usize = 1024;

/// The peers a chunk may be owned by, seen from `me`: live agents of its group and zone
/// with a peer address (including `me`).
pub fn zone_peers<'a>(me: &AgentInfo, live: &'a [AgentInfo]) -> Vec<&'a AgentInfo> {
    live.iter()
        .filter(|a| a.group == me.group && a.az == me.az && a.peer_addr.is_some())
        .collect()
}

/// Asks the peer at `addr` for chunk `idx` of object `key` (of `size` bytes).
pub async fn fetch(addr: &str, key: &str, size: u64, idx: u64) -> Result<Bytes, String> {
    let work = async {
        let mut sock = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true).ok();
        let mut req = Vec::with_capacity(18 + key.len());
        req.extend_from_slice(&(key.len() as u16).to_be_bytes());
        req.extend_from_slice(key.as_bytes());
        req.extend_from_slice(&size.to_be_bytes());
        req.extend_from_slice(&idx.to_be_bytes());
        sock.write_all(&req).await.map_err(|e| e.to_string())?;
        read_answer(&mut sock, size).await
    };
    tokio::time::timeout(PEER_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PEER_TIMEOUT:?}")))
}

/// Reads a peer's answer to a request for a chunk of a `size`-byte object: the chunk,
/// or the peer's error text as the error.
pub(crate) async fn read_answer<R: AsyncRead + Unpin>(
    sock: &mut R,
    size: u64,
) -> Result<Bytes, String> {
    let status = sock.read_u8().await.map_err(|e| e.to_string())?;
    let len = sock.read_u32().await.map_err(|e| e.to_string())? as usize;
    if len as u64 > size {
        return Err(format!(
            "peer announced {len} bytes for a {size}-byte object"
        ));
    }
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    if status != 0 {
        return Err(format!("peer: {}", String::from_utf8_lossy(&body)));
    }
    Ok(Bytes::from(body))
}

/// Serves chunks to peers until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(sock, &shared).await {
                tracing::debug!(%peer, error = %e, "peer chunk request failed");
            }
        });
    }
}

async fn answer(mut sock: TcpStream, shared: &Shared) -> std::io::Result<()> {
    sock.set_nodelay(true).ok();
    let (key, size, idx) = tokio::time::timeout(PEER_TIMEOUT, read_request(&mut sock))
        .await
        .map_err(|_| std::io::Error::other("request timed out"))??;
    let cs = shared.reader.cache().chunk_size();
    let result = if !chunk_in_object(idx, cs, size) {
        Err(format!("chunk {idx} lies outside the {size}-byte object"))
    } else {
        shared
            .reader
            .local_chunk(&key, size, idx)
            .await
            .map_err(|e| e.to_string())
    };
    match result {
        Ok(b) => {
            Metrics::add(&shared.metrics.peer_chunks_served, 1);
            sock.write_u8(0).await?;
            sock.write_u32(b.len() as u32).await?;
            sock.write_all(&b).await?;
        }
        Err(e) => {
            sock.write_u8(1).await?;
            sock.write_u32(e.len() as u32).await?;
            sock.write_all(e.as_bytes()).await?;
        }
    }
    sock.shutdown().await
}

/// Reads one chunk request: (object key, object size, chunk index).
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    sock: &mut R,
) -> std::io::Result<(String, u64, u64)> {
    let key_len = sock.read_u16().await? as usize;
    if key_len == 0 || key_len > MAX_KEY {
        return Err(std::io::Error::other(format!("key length {key_len}")));
    }
    let mut key = vec![0u8; key_len];
    sock.read_exact(&mut key).await?;
    let size = sock.read_u64().await?;
    let idx = sock.read_u64().await?;
    let key = String::from_utf8(key).map_err(std::io::Error::other)?;
    Ok((key, size, idx))
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
        }
    }

    #[tokio::test]
    async fn request_and_answer_readers_take_only_what_is_bounded() {
        let mut req = Vec::new();
        req.extend_from_slice(&3u16.to_be_bytes());
        req.extend_from_slice(b"k/1");
        req.extend_from_slice(&100u64.to_be_bytes());
        req.extend_from_slice(&2u64.to_be_bytes());
        let got = read_request(&mut &req[..]).await.unwrap();
        assert_eq!(got, ("k/1".to_string(), 100, 2));
        assert!(read_request(&mut &req[..10]).await.is_err(), "cut short");
        assert!(read_request(&mut &[0u8, 0][..]).await.is_err(), "empty key");
        assert!(
            read_request(&mut &[4u8, 1][..]).await.is_err(),
            "key over 1 KiB"
        );

        let ok = [0u8, 0, 0, 0, 2, 7, 8];
        assert_eq!(read_answer(&mut &ok[..], 10).await.unwrap(), &[7u8, 8][..]);
        assert!(
            read_answer(&mut &ok[..], 1).await.is_err(),
            "longer than the object"
        );
        assert!(read_answer(&mut &ok[..6], 10).await.is_err(), "cut short");
        let err = [1u8, 0, 0, 0, 2, b'n', b'o'];
        assert_eq!(
            read_answer(&mut &err[..], 10).await.unwrap_err(),
            "peer: no"
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
