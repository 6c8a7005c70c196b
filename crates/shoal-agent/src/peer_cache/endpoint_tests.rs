//! The peer-cache endpoint of a running agent, asked over TCP: forged sizes and
//! unsigned requests are refused, and neither disturbs later honest readers.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{memory::InMemory, path::Path, ObjectStoreExt};
use shoal_meta::{MetaStore, ObjectRef, SqliteStore, TopicSpec};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::auth::{ClusterSecret, MAX_SKEW_MS};
use super::*;
use crate::{Agent, AgentConfig};

const KEY: &str = "objects/peer-test";
const SIZE: u64 = 10_000;
const CHUNK: u64 = 4096;

fn object() -> Bytes {
    (0..SIZE)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn secret() -> ClusterSecret {
    ClusterSecret::new(b"the-cluster-secret-for-tests").unwrap()
}

struct Running {
    agent: Agent,
    stop: CancellationToken,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An agent whose metadata store knows one committed object of [`SIZE`] bytes.
async fn agent(cluster_secret: Option<ClusterSecret>) -> Running {
    let meta = Arc::new(SqliteStore::in_memory().unwrap());
    let store = Arc::new(InMemory::new());
    store.put(&Path::from(KEY), object().into()).await.unwrap();
    let t = meta
        .create_topic(TopicSpec {
            name: "t".into(),
            partitions: 1,
            configs: BTreeMap::new(),
        })
        .await
        .unwrap();
    shoal_meta::conformance::flush(
        &*meta,
        &ObjectRef {
            key: KEY.into(),
            size: SIZE,
        },
        &[shoal_meta::conformance::segment(t.id, 0, 0, 1, 1)],
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let agent = Agent::start(
        AgentConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            chunk_bytes: CHUNK,
            cluster_secret,
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..AgentConfig::default()
        },
        meta,
        store,
        stop.clone(),
    )
    .await
    .unwrap();
    let addr = agent
        .peer_addr
        .expect("a fetch agent has a peer endpoint")
        .to_string();
    Running { agent, stop, addr }
}

/// Sends `req` as is and reads the answer (checked with `secret`, if given).
async fn ask(
    addr: &str,
    req: &ChunkRequest,
    secret: Option<&ClusterSecret>,
) -> Result<Bytes, String> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(&req.encode()).await.unwrap();
    read_answer(&mut sock, req.size, secret.map(|s| (s, &req.mac))).await
}

fn now() -> u64 {
    crate::txn::now_ms() as u64
}

/// The value of one series on the agent's metrics page.
async fn metric(agent: &Agent, series: &str) -> u64 {
    use tokio::io::AsyncReadExt;
    let mut sock = TcpStream::connect(agent.metrics_addr.unwrap())
        .await
        .unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    sock.read_to_string(&mut page).await.unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {page}"))
}

const REFUSED_AUTH: &str = "shoal_peer_requests_refused_total{reason=\"auth\"}";
const REFUSED_OBJECT: &str = "shoal_peer_requests_refused_total{reason=\"object\"}";

#[tokio::test]
async fn a_forged_size_is_refused_and_honest_reads_still_get_the_object() {
    let a = agent(None).await;
    let whole = object();
    // The last chunk (2) of a 9,000-byte object would be 808 bytes: a short chunk.
    let forged = ChunkRequest::new(KEY, 9_000, 2, now(), None);
    let e = ask(&a.addr, &forged, None).await.unwrap_err();
    assert!(e.contains("has 10000 bytes, not 9000"), "{e}");
    // A size past the object's end, and an object that was never committed.
    let longer = ChunkRequest::new(KEY, 1 << 40, 2, now(), None);
    assert!(ask(&a.addr, &longer, None).await.is_err());
    let unknown = ChunkRequest::new("objects/none", SIZE, 0, now(), None);
    let e = ask(&a.addr, &unknown, None).await.unwrap_err();
    assert!(e.contains("not a committed object"), "{e}");

    // Honest askers get the real bytes, whole chunks and the short last one.
    for idx in 0..3u64 {
        let got = fetch(&a.addr, KEY, SIZE, idx, None).await.unwrap();
        let lo = (idx * CHUNK) as usize;
        let hi = ((idx + 1) * CHUNK).min(SIZE) as usize;
        assert_eq!(got, whole.slice(lo..hi), "chunk {idx}");
    }
    // And after another forged request the cached chunk is still the real one.
    assert!(ask(&a.addr, &forged, None).await.is_err());
    assert_eq!(
        fetch(&a.addr, KEY, SIZE, 2, None).await.unwrap(),
        whole.slice(8192..)
    );
    assert_eq!(metric(&a.agent, REFUSED_OBJECT).await, 4);
}

#[tokio::test]
async fn a_short_chunk_in_the_cache_is_an_error_or_reloaded_never_a_panic() {
    let meta = Arc::new(SqliteStore::in_memory().unwrap());
    let store = Arc::new(InMemory::new());
    store.put(&Path::from(KEY), object().into()).await.unwrap();
    let reader = crate::read_path::ReadPath::new(
        &AgentConfig {
            chunk_bytes: CHUNK,
            ..AgentConfig::default()
        },
        meta,
        store,
        Arc::new(crate::metrics::Metrics::default()),
    );
    // As a forged size once did: the last chunk cached 808 bytes long.
    reader.cache().insert(KEY, 2, object().slice(8192..9000));
    let got = reader.read_range(KEY, SIZE, 8000, SIZE).await.unwrap();
    assert_eq!(got, object().slice(8000..), "reloaded at its real length");
    // A reader with the wrong size gets an error, not a panic, and does not break others.
    assert!(reader.read_range(KEY, 9_000, 8900, 9_500).await.is_err());
    assert_eq!(
        reader.read_range(KEY, SIZE, 9_990, SIZE).await.unwrap(),
        object().slice(9_990..)
    );
}

#[tokio::test]
async fn with_a_secret_unsigned_wrongly_signed_stale_and_replayed_requests_are_closed() {
    let s = secret();
    let a = agent(Some(s.clone())).await;

    let unsigned = ChunkRequest::new(KEY, SIZE, 0, now(), None);
    let e = ask(&a.addr, &unsigned, Some(&s)).await.unwrap_err();
    assert!(!e.starts_with("peer:"), "closed without an answer, got {e}");

    let other = ClusterSecret::new(b"some-other-cluster-secret").unwrap();
    let wrong = ChunkRequest::new(KEY, SIZE, 0, now(), Some(&other));
    assert!(ask(&a.addr, &wrong, Some(&s)).await.is_err());

    let stale = ChunkRequest::new(KEY, SIZE, 0, now() - MAX_SKEW_MS - 5_000, Some(&s));
    assert!(ask(&a.addr, &stale, Some(&s)).await.is_err());

    // A signed request whose fields were changed after signing.
    let mut tampered = ChunkRequest::new(KEY, SIZE, 0, now(), Some(&s));
    tampered.idx = 1;
    assert!(ask(&a.addr, &tampered, Some(&s)).await.is_err());

    let good = ChunkRequest::new(KEY, SIZE, 0, now(), Some(&s));
    assert_eq!(
        ask(&a.addr, &good, Some(&s)).await.unwrap(),
        object().slice(..CHUNK as usize)
    );
    assert!(ask(&a.addr, &good, Some(&s)).await.is_err(), "replayed");
    // The asker's own path signs and checks.
    assert_eq!(
        fetch(&a.addr, KEY, SIZE, 2, Some(&s)).await.unwrap(),
        object().slice(8192..)
    );
    // An asker without the secret cannot use it.
    assert!(fetch(&a.addr, KEY, SIZE, 2, None).await.is_err());
    assert_eq!(metric(&a.agent, REFUSED_AUTH).await, 6);
}

#[tokio::test]
async fn an_asker_with_a_secret_refuses_an_unsigned_endpoint() {
    let a = agent(None).await;
    let e = fetch(&a.addr, KEY, SIZE, 0, Some(&secret()))
        .await
        .unwrap_err();
    assert!(e.contains("not signed"), "{e}");
}
