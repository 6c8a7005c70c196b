//! A minimal Kafka client connection: one TCP stream, many requests in flight.
//!
//! A [`Connection`] frames requests (`length | request header | body`) with the
//! `kafka-protocol` crate's message types, gives each a fresh correlation id, registers it
//! as pending *before* writing so an early answer cannot be lost, and lets a background
//! reader task match every response frame to its request by correlation id. Callers get a
//! [`ResponseFuture`] back as soon as the bytes are written, so they can pipeline as many
//! requests as they like and await the answers later; the reader stamps each response with
//! the instant it arrived so latency figures do not include the caller's own scheduling
//! delays. Response bodies are decoded by the caller, not by the reader, to spread CPU work
//! over tasks. The connection never retries or reconnects: when the stream breaks, every
//! pending request fails with the reason, and the caller decides what to do.
//!
//! The module also picks API versions from the server's ApiVersions answer
//! ([`Versions`]) and names Kafka error codes the way Kafka does (`NOT_LEADER_OR_FOLLOWER`).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Largest response frame we accept; a fetch asks for at most 50 MiB, so anything far
/// above that is a framing error, not data.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may stay unanswered before the benchmark gives up on the server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A response body (header already stripped) and the instant its last byte was read.
pub struct RawResponse {
    pub body: Bytes,
    pub received: Instant,
}

type Reply = std::result::Result<RawResponse, String>;

/// What the reader needs to know about a request to strip its response header.
struct Pending {
    api_key: ApiKey,
    version: i16,
    tx: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Inflight {
    waiting: HashMap<i32, Pending>,
    /// Set once the reader stops; later sends fail fast with this reason.
    closed: Option<String>,
}

/// One TCP connection to one broker, shared by reference between a writer and the reader task.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    /// Whole frames are written under this lock so concurrent senders never interleave bytes.
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    inflight: Arc<Mutex<Inflight>>,
    next_correlation_id: AtomicI32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Opens a connection; the error names the address so a wrong port is obvious.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                anyhow!(
                    "cannot connect to {addr}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let inflight = Arc::new(Mutex::new(Inflight::default()));
        let reader = tokio::spawn(read_loop(read, inflight.clone()));
        Ok(Self {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: tokio::sync::Mutex::new(write),
            inflight,
            next_correlation_id: AtomicI32::new(1),
            reader,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Writes a request and returns a future for its response without waiting for it.
    pub async fn send<Q: Request>(
        &self,
        request: &Q,
        version: i16,
    ) -> Result<ResponseFuture<Q::Response>> {
        let api_key =
            ApiKey::try_from(Q::KEY).map_err(|_| anyhow!("unknown API key {}", Q::KEY))?;
        let (frame, correlation_id) = self.encode(request, version)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut inflight = self.inflight.lock().expect("inflight lock");
            if let Some(reason) = &inflight.closed {
                bail!("connection to {} is closed: {reason}", self.addr);
            }
            inflight.waiting.insert(
                correlation_id,
                Pending {
                    api_key,
                    version,
                    tx,
                },
            );
        }
        let sent = match self.write(&frame).await {
            Ok(sent) => sent,
            Err(e) => {
                let mut inflight = self.inflight.lock().expect("inflight lock");
                inflight.waiting.remove(&correlation_id);
                return Err(e);
            }
        };
        Ok(ResponseFuture {
            rx,
            api_key,
            version,
            sent,
            addr: self.addr.clone(),
            _response: PhantomData,
        })
    }

    /// Writes a request that the server will not answer (Produce with acks=0).
    pub async fn send_oneway<Q: Request>(&self, request: &Q, version: i16) -> Result<Instant> {
        let (frame, _) = self.encode(request, version)?;
        self.write(&frame).await
    }

    /// Sends a request and waits for its decoded response.
    pub async fn call<Q: Request>(&self, request: &Q, version: i16) -> Result<Q::Response> {
        Ok(self.send(request, version).await?.wait().await?.response)
    }

    fn encode<Q: Request>(&self, request: &Q, version: i16) -> Result<(Bytes, i32)> {
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut header = RequestHeader::default();
        header.request_api_key = Q::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let header_version = Q::header_version(version);
        let capacity = header.compute_size(header_version)? + request.compute_size(version)?;
        let mut buf = BytesMut::with_capacity(4 + capacity);
        buf.put_u32(0); // length, patched below from what was actually written
        header.encode(&mut buf, header_version)?;
        request.encode(&mut buf, version).with_context(|| {
            format!(
                "encode {:?} v{version} request",
                ApiKey::try_from(Q::KEY).ok()
            )
        })?;
        let len = u32::try_from(buf.len() - 4).context("request larger than 4 GiB")?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok((buf.freeze(), correlation_id))
    }

    async fn write(&self, frame: &[u8]) -> Result<Instant> {
        let mut writer = self.writer.lock().await;
        let sent = Instant::now();
        writer
            .write_all(frame)
            .await
            .with_context(|| format!("send request to {}", self.addr))?;
        Ok(sent)
    }
}

/// A decoded response with the instants its request was written and its answer read.
pub struct Timed<R> {
    pub response: R,
    pub sent: Instant,
    pub received: Instant,
}

/// The answer to one request, to be awaited whenever the caller is ready.
pub struct ResponseFuture<R> {
    rx: oneshot::Receiver<Reply>,
    api_key: ApiKey,
    version: i16,
    sent: Instant,
    addr: String,
    _response: PhantomData<R>,
}

impl<R: Decodable> ResponseFuture<R> {
    pub async fn wait(self) -> Result<Timed<R>> {
        let what = format!("{:?} v{} to {}", self.api_key, self.version, self.addr);
        let reply = tokio::time::timeout(RESPONSE_TIMEOUT, self.rx)
            .await
            .map_err(|_| anyhow!("{what}: no response within {}s", RESPONSE_TIMEOUT.as_secs()))?
            .map_err(|_| anyhow!("{what}: connection dropped"))?;
        let raw = reply.map_err(|reason| anyhow!("{what}: {reason}"))?;
        let mut body = raw.body;
        let response = R::decode(&mut body, self.version)
            .with_context(|| format!("decode {what} response"))?;
        Ok(Timed {
            response,
            sent: self.sent,
            received: raw.received,
        })
    }
}

async fn read_loop(read: OwnedReadHalf, inflight: Arc<Mutex<Inflight>>) {
    let reason = match read_frames(read, &inflight).await {
        Ok(()) => "connection closed by the server".to_string(),
        Err(e) => format!("{e:#}"),
    };
    let mut inflight = inflight.lock().expect("inflight lock");
    inflight.closed = Some(reason.clone());
    for (_, pending) in inflight.waiting.drain() {
        let _ = pending.tx.send(Err(reason.clone()));
    }
}

async fn read_frames(read: OwnedReadHalf, inflight: &Mutex<Inflight>) -> Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, read);
    loop {
        let len = match reader.read_u32().await {
            Ok(len) => len as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(anyhow!(e).context("read response")),
        };
        if !(4..=MAX_RESPONSE_BYTES).contains(&len) {
            bail!("response frame of {len} bytes is out of bounds");
        }
        let mut body = vec![0u8; len];
        reader
            .read_exact(&mut body)
            .await
            .context("read response body")?;
        let received = Instant::now();
        let mut body = Bytes::from(body);
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let pending = inflight
            .lock()
            .expect("inflight lock")
            .waiting
            .remove(&correlation_id)
            .ok_or_else(|| anyhow!("response with unknown correlation id {correlation_id}"))?;
        let header_version = pending.api_key.response_header_version(pending.version);
        match ResponseHeader::decode(&mut body, header_version) {
            Ok(_) => {
                let _ = pending.tx.send(Ok(RawResponse { body, received }));
            }
            Err(e) => {
                let reason = format!("bad response header: {e:#}");
                let _ = pending.tx.send(Err(reason.clone()));
                bail!(reason);
            }
        }
    }
}

/// The API versions this client speaks, one fixed version per API for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

/// (API, lowest we can use, highest we want, what we use without ApiVersions).
/// Fetch stops at v12 because v13+ names topics by id; Produce at v9 likewise.
const WANTED: [(ApiKey, i16, i16, i16); 5] = [
    (ApiKey::Produce, 7, 9, 8),
    (ApiKey::Fetch, 4, 12, 11),
    (ApiKey::ListOffsets, 1, 7, 5),
    (ApiKey::Metadata, 1, 9, 9),
    (ApiKey::CreateTopics, 2, 7, 5),
];

impl Versions {
    /// Versions both Apache Kafka 3.x/4.x and a new server accept, for servers whose
    /// ApiVersions answer we could not read.
    pub fn fallback() -> Self {
        Self::from_fn(|_, _, _, fallback| Ok(fallback)).expect("fallback versions")
    }

    /// Picks the highest version of each API inside both our range and the server's.
    /// `advertised` holds (api key, min, max) triples from an ApiVersions response.
    pub fn negotiate(advertised: &[(i16, i16, i16)]) -> Result<Self> {
        Self::from_fn(|key, lo, hi, _| pick_version(advertised, key, lo, hi))
    }

    fn from_fn(mut pick: impl FnMut(ApiKey, i16, i16, i16) -> Result<i16>) -> Result<Self> {
        let mut v = [0i16; 5];
        for (slot, &(key, lo, hi, fallback)) in v.iter_mut().zip(WANTED.iter()) {
            *slot = pick(key, lo, hi, fallback)?;
        }
        Ok(Self {
            produce: v[0],
            fetch: v[1],
            list_offsets: v[2],
            metadata: v[3],
            create_topics: v[4],
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "Produce v{}, Fetch v{}, ListOffsets v{}, Metadata v{}, CreateTopics v{}",
            self.produce, self.fetch, self.list_offsets, self.metadata, self.create_topics
        )
    }
}

/// The highest version of `key` inside both `lo..=hi` and what the server advertises
/// (`advertised` holds (api key, min, max) triples from an ApiVersions response).
pub fn pick_version(advertised: &[(i16, i16, i16)], key: ApiKey, lo: i16, hi: i16) -> Result<i16> {
    let Some(&(_, min, max)) = advertised.iter().find(|(k, _, _)| *k == key as i16) else {
        bail!("the server does not support {key:?} at all (shoal-bench needs v{lo}..v{hi})");
    };
    let pick = hi.min(max);
    if pick < lo.max(min) {
        bail!("the server supports {key:?} v{min}..v{max}, shoal-bench needs one of v{lo}..v{hi}");
    }
    Ok(pick)
}

/// Asks the server which API versions it supports: v3 first, then v0 for old servers,
/// which answer an unknown ApiVersions version with a v0 body.
pub async fn api_versions(conn: &Connection) -> Result<Vec<(i16, i16, i16)>> {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str("shoal-bench");
    request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
    let response: ApiVersionsResponse = match conn.call(&request, 3).await {
        Ok(r) if r.error_code == 0 => r,
        _ => conn
            .call(&ApiVersionsRequest::default(), 0)
            .await
            .context("ApiVersions")?,
    };
    if response.error_code != 0 {
        bail!(
            "ApiVersions failed: {}",
            describe_error(response.error_code, None)
        );
    }
    Ok(response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect())
}

/// Kafka's own name for an error code, e.g. 6 → `NOT_LEADER_OR_FOLLOWER`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(e) => screaming_snake(&e.to_string()),
    }
}

/// `NAME (code)` plus the server's message when it sent one.
pub fn describe_error(code: i16, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{} ({code}): {m}", error_name(code)),
        None => format!("{} ({code})", error_name(code)),
    }
}

/// Whether Kafka says a request failing with this code may succeed when sent again.
pub fn is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_match_kafka() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(3000), "UNKNOWN_ERROR_CODE_3000");
        assert_eq!(
            describe_error(3, Some("no such topic")),
            "UNKNOWN_TOPIC_OR_PARTITION (3): no such topic"
        );
        assert_eq!(describe_error(10, None), "MESSAGE_TOO_LARGE (10)");
        assert!(is_retriable(6));
        assert!(!is_retriable(36));
        assert!(!is_retriable(0));
    }

    #[test]
    fn negotiation_picks_highest_common_version() {
        let kafka_39 = [(0, 0, 11), (1, 0, 17), (2, 0, 9), (3, 0, 12), (19, 0, 7)];
        let v = Versions::negotiate(&kafka_39).unwrap();
        assert_eq!(
            v,
            Versions {
                produce: 9,
                fetch: 12,
                list_offsets: 7,
                metadata: 9,
                create_topics: 7
            }
        );
        let small = [(0, 3, 8), (1, 4, 11), (2, 1, 5), (3, 0, 9), (19, 2, 5)];
        let v = Versions::negotiate(&small).unwrap();
        assert_eq!((v.produce, v.fetch, v.list_offsets), (8, 11, 5));
    }

    #[test]
    fn negotiation_explains_what_is_missing() {
        let no_fetch = [(0, 0, 11), (2, 0, 9), (3, 0, 12), (19, 0, 7)];
        let err = Versions::negotiate(&no_fetch).unwrap_err().to_string();
        assert!(err.contains("Fetch"), "{err}");
        let too_new = [(0, 10, 13), (1, 0, 17), (2, 0, 9), (3, 0, 12), (19, 0, 7)];
        let err = Versions::negotiate(&too_new).unwrap_err().to_string();
        assert!(err.contains("Produce v10..v13"), "{err}");
    }

    /// A server that answers two pipelined requests in reverse order: each caller must
    /// still get its own answer.
    #[tokio::test]
    async fn responses_are_matched_by_correlation_id() {
        use kafka_protocol::protocol::decode_request_header_from_buffer;
        use tokio::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut ids = Vec::new();
            for _ in 0..2 {
                let len = stream.read_u32().await.unwrap() as usize;
                let mut frame = vec![0u8; len];
                stream.read_exact(&mut frame).await.unwrap();
                let header = decode_request_header_from_buffer(&mut Bytes::from(frame)).unwrap();
                assert_eq!(header.request_api_key, ApiKey::ApiVersions as i16);
                ids.push(header.correlation_id);
            }
            for id in ids.into_iter().rev() {
                let mut header = ResponseHeader::default();
                header.correlation_id = id;
                let mut response = ApiVersionsResponse::default();
                response.throttle_time_ms = id * 10;
                let mut body = BytesMut::new();
                header.encode(&mut body, 0).unwrap();
                response.encode(&mut body, 3).unwrap();
                stream.write_u32(body.len() as u32).await.unwrap();
                stream.write_all(&body).await.unwrap();
            }
        });

        let conn = Connection::connect(&addr, "test").await.unwrap();
        let first = conn.send(&ApiVersionsRequest::default(), 3).await.unwrap();
        let second = conn.send(&ApiVersionsRequest::default(), 3).await.unwrap();
        let second = second.wait().await.unwrap();
        let first = first.wait().await.unwrap();
        assert_eq!(first.response.throttle_time_ms, 10);
        assert_eq!(second.response.throttle_time_ms, 20);
        assert!(first.received >= first.sent);
        server.await.unwrap();

        // The server has gone: new requests fail and say where.
        let err = match conn.send(&ApiVersionsRequest::default(), 3).await {
            Ok(pending) => pending.wait().await.err().unwrap(),
            Err(e) => e,
        };
        assert!(format!("{err:#}").contains(&addr), "{err:#}");
    }

    #[tokio::test]
    async fn connect_errors_name_the_address() {
        let err = Connection::connect("127.0.0.1:1", "test")
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("cannot connect to 127.0.0.1:1"),
            "{err}"
        );
    }

    #[test]
    fn fallback_versions_are_in_range() {
        let v = Versions::fallback();
        assert_eq!(v.produce, 8);
        assert_eq!(v.fetch, 11);
        assert!(v.describe().starts_with("Produce v8, Fetch v11"));
    }
}
