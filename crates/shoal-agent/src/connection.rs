//! One client connection: framing, decoding, dispatch, and answers in request order.
//!
//! The reader half takes frames (size checked before buffering), decodes the header and
//! body with `kafka-protocol`, and runs the handler's *synchronous part* before reading
//! the next frame — so admin changes and produce appends happen in request order. The
//! handler's slow part (waiting for a flush commit, a fetch long-poll) runs as a task
//! whose handle goes into a bounded queue; the writer half awaits the handles in order
//! and writes the answers. That gives pipelining with in-order answers, and at most
//! `max_in_flight_per_connection` requests per connection in progress.
//!
//! Malformed frames, unknown API keys and unsupported versions close the connection with
//! a log line (as Kafka does), except ApiVersions, which answers UNSUPPORTED_VERSION so
//! the client can retry with an older version. Nothing here panics on input.
//!
//! Timers close connections that hold a place without using it ([`Timers`]): no
//! complete first request within `--first-request-timeout`, a request whose bytes
//! trickle in for longer than `--request-read-timeout` (slowloris), or no request for
//! `--connections-max-idle` while no answer is pending. Buffers start empty and are
//! dropped after a large request, so an idle connection costs little memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::{self, Reply};
use crate::memory;
use crate::metrics::Metrics;
use crate::security::listeners::ListenerSpec;
use crate::security::Principal;
use crate::Shared;
use shoal_wire::frame;
use shoal_wire::segments::SegmentedBuf;

/// An answer on its way: the request's identity and the task producing the body.
pub(crate) struct Queued {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: JoinHandle<Option<Box<ResponseKind>>>,
    /// The request's memory charge, returned once the answer is written.
    _held: Arc<memory::Reservation>,
}

/// Serves one connection of `listener` (plain TCP or a finished TLS handshake) until
/// it closes; `principal` is its client certificate's, if any.
pub async fn run<S>(
    sock: S,
    peer: SocketAddr,
    listener: Arc<ListenerSpec>,
    principal: Option<Principal>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::debug_span!("conn", %peer, listener = %listener.name);
    Metrics::add(&shared.metrics.connections_open, 1);
    let context = api::ConnContext::new(peer, listener, principal);
    serve(sock, context, shared.clone(), shutdown)
        .instrument(span)
        .await;
    shared
        .metrics
        .connections_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Frames up to this size are copied out of the read buffer; larger ones are read into
/// a buffer of their exact size. Either way a frame (and every slice of it a handler
/// keeps, such as a produce batch) pins only its own bytes, never a shared buffer.
const COPY_BELOW: usize = 64 * 1024;

async fn serve<S>(
    sock: S,
    mut context: api::ConnContext,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, wr) = tokio::io::split(sock);
    let (tx, rx) = mpsc::channel::<Queued>(shared.config.max_in_flight_per_connection.max(1));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_loop(wr, rx, in_flight.clone()).in_current_span());
    // Starts empty: an idle connection holds no buffer to speak of.
    let mut buf = BytesMut::new();
    let max_frame = shared.config.max_frame_bytes;
    let mut timers = Timers::new(&shared.config);
    let budgets = memory::Budgets {
        agent: shared.request_memory.clone(),
        connection: memory::Budget::new(shared.config.max_request_bytes_per_connection),
    };
    // The charge of the frame now being read, taken once its size and API are known.
    let mut admitted: Option<Arc<memory::Reservation>> = None;
    'read: loop {
        // Drain every complete frame already buffered.
        let mut frame_size = None;
        loop {
            // Before a SASL client has authenticated, its requests are held to
            // --sasl-max-receive-bytes (Kafka's sasl.server.max.receive.size).
            let limit = if context.must_authenticate() {
                max_frame.min(shared.config.sasl_max_receive_bytes)
            } else {
                max_frame
            };
            let size = match frame::peek_size(&buf, limit) {
                Ok(Some(size)) => size,
                Ok(None) => break,
                Err(e) => {
                    Metrics::add(&shared.metrics.protocol_errors, 1);
                    if context.must_authenticate() {
                        tracing::warn!(error = %e, "closing connection: bad frame before SASL authentication (raise --sasl-max-receive-bytes if this client is legitimate)");
                    } else {
                        tracing::warn!(error = %e, "closing connection: bad frame (raise --max-frame-bytes if this client is legitimate)");
                    }
                    break 'read;
                }
            };
            frame_size = Some(size);
            if admitted.is_none() {
                if let Some(until) = context.throttle.until(Instant::now()) {
                    // Over a client quota: take no further request until the throttle
                    // time is over (what it sent meanwhile stays in the socket).
                    tokio::select! {
                        _ = shutdown.cancelled() => break 'read,
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                if size >= 2 && buf.len() < 6 {
                    break; // the API key decides the charge
                }
                let key = if size >= 2 {
                    i16::from_be_bytes([buf[4], buf[5]])
                } else {
                    -1
                };
                let charge = match memory::charge(key, size, budgets.connection.total()) {
                    Ok(c) => c,
                    Err(why) => {
                        Metrics::add(&shared.metrics.protocol_errors, 1);
                        tracing::warn!("closing connection: {why}");
                        break 'read;
                    }
                };
                let waited = tokio::select! {
                    _ = shutdown.cancelled() => break 'read,
                    r = budgets.admit(charge) => r,
                };
                admitted = Some(waited);
                timers.resumed();
            }
            if buf.len() < 4 + size {
                break;
            }
            let frame = if buf.capacity() == 4 + size && buf.len() == 4 + size {
                buf.advance(4);
                buf.split().freeze()
            } else {
                let f = Bytes::copy_from_slice(&buf[4..4 + size]);
                buf.advance(4 + size);
                f
            };
            frame_size = None;
            timers.request_read();
            let held = admitted.take().expect("admitted above");
            let is_produce = frame.get(..2) == Some(&shoal_wire::request::PRODUCE.to_be_bytes());
            if is_produce && api::is_supported(ApiKey::Produce, frame_version(&frame)) {
                let total = budgets.connection.total();
                let walked = shoal_wire::request::produce_elements(&frame).ok_or_else(|| {
                    // The decoder accepts some encodings the walk refuses (varints longer
                    // than five bytes, as Kafka refuses too); uncharged, they are not let in.
                    "a Produce request whose fields do not walk (an over-long varint or a \
                     length past the frame)"
                        .to_string()
                });
                let charged = walked.and_then(|n| memory::produce_extra(frame.len(), n, total));
                let extra = match charged {
                    Ok(extra) => extra,
                    Err(why) => {
                        Metrics::add(&shared.metrics.protocol_errors, 1);
                        tracing::warn!("closing connection: {why}");
                        break 'read;
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break 'read,
                    _ = budgets.add(&held, extra) => {}
                }
            }
            context.begin_request(frame.len(), held.clone());
            match decode(frame) {
                Ok(Decoded::Request(boxed)) => {
                    let (header, request) = *boxed;
                    Metrics::add(&shared.metrics.requests, 1);
                    let api_key =
                        ApiKey::try_from(header.request_api_key).expect("checked in decode");
                    let reply = api::handle(&shared, &header, &mut context, request).await;
                    let body = match reply {
                        Reply::Now(r) => tokio::spawn(async move { r }),
                        Reply::Later(f) => tokio::spawn(f.in_current_span()),
                    };
                    let q = Queued {
                        api_key,
                        version: header.request_api_version,
                        correlation_id: header.correlation_id,
                        body,
                        _held: held,
                    };
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    if tx.send(q).await.is_err() {
                        break 'read; // writer failed: the socket is gone
                    }
                    if let Some(why) = context.take_closing() {
                        if !why.is_empty() {
                            Metrics::add(&shared.metrics.protocol_errors, 1);
                            tracing::warn!("closing connection: {why}");
                        }
                        if context.delay_close() {
                            // The writer sends the answer meanwhile; closing at once can
                            // reset the connection before the client has read it.
                            tokio::select! {
                                _ = shutdown.cancelled() => {}
                                _ = tokio::time::sleep(shared.config.failed_authentication_delay) => {}
                            }
                        }
                        break 'read; // the writer sends what is queued, then closes
                    }
                }
                Ok(Decoded::Answer(answer)) => {
                    let (api_key, version, correlation_id, body) = *answer;
                    let q = Queued {
                        api_key,
                        version,
                        correlation_id,
                        body: tokio::spawn(async move { Some(Box::new(body)) }),
                        _held: held,
                    };
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    if tx.send(q).await.is_err() {
                        break 'read;
                    }
                }
                Err(why) => {
                    Metrics::add(&shared.metrics.protocol_errors, 1);
                    tracing::warn!("closing connection: {why}");
                    break 'read;
                }
            }
        }
        match frame_size {
            // A large frame is read into a buffer of exactly its size.
            Some(size) if 4 + size > COPY_BELOW => {
                if buf.capacity() != 4 + size {
                    let mut exact = BytesMut::with_capacity(4 + size);
                    exact.extend_from_slice(&buf);
                    buf = exact;
                }
            }
            _ => {
                if buf.is_empty() && buf.capacity() > COPY_BELOW {
                    buf = BytesMut::new(); // do not keep a big request's buffer while idle
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8 * 1024);
                }
            }
        }
        let (deadline, why) = timers.next(!buf.is_empty());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                if why == Timeout::Idle && in_flight.load(Ordering::Relaxed) > 0 {
                    timers.request_read(); // answers still on their way: not idle
                    continue;
                }
                let (counter, what) = match why {
                    Timeout::FirstRequest => (&shared.metrics.connections_closed_first_request, "no complete request within --first-request-timeout of connecting"),
                    Timeout::SlowRequest => (&shared.metrics.connections_closed_slow_request, "a request did not finish arriving within --request-read-timeout"),
                    Timeout::Idle => (&shared.metrics.connections_closed_idle, "idle for --connections-max-idle"),
                };
                Metrics::add(counter, 1);
                tracing::info!("closing connection: {what}");
                break;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break,
                Ok(_) => timers.bytes_read(),
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    break;
                }
            },
        }
    }
    // Let the writer answer everything already accepted, then close.
    drop(tx);
    let _ = writer.await;
}

/// The API version in a frame's header (0 if the frame is too short to hold one).
fn frame_version(frame: &[u8]) -> i16 {
    frame
        .get(2..4)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0)
}

/// Which of a connection's timers runs out next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    FirstRequest,
    SlowRequest,
    Idle,
}

/// The read side's deadlines: the first complete request within
/// `first_request_timeout` of connecting, each request complete within
/// `request_read_timeout` of its first byte, and no more than `connections_max_idle`
/// between requests (while no answer is pending).
struct Timers {
    connected: Instant,
    first_request: Duration,
    request_read: Duration,
    max_idle: Duration,
    /// When the last complete request was taken off the buffer (`None`: none yet).
    last_request: Option<Instant>,
    /// When the bytes of the request now being read began to arrive.
    partial_since: Option<Instant>,
}

impl Timers {
    fn new(config: &crate::config::AgentConfig) -> Timers {
        Timers {
            connected: Instant::now(),
            first_request: config.first_request_timeout,
            request_read: config.request_read_timeout,
            max_idle: config.connections_max_idle,
            last_request: None,
            partial_since: None,
        }
    }

    fn request_read(&mut self) {
        let now = Instant::now();
        self.last_request = Some(now);
        self.partial_since = None;
    }

    /// Reading resumes after waiting for memory: the wait is not the client's.
    fn resumed(&mut self) {
        if self.partial_since.is_some() {
            self.partial_since = Some(Instant::now());
        }
    }

    fn bytes_read(&mut self) {
        self.partial_since.get_or_insert_with(Instant::now);
    }

    /// The next deadline and what it is for; `partial` says part of a request is
    /// buffered.
    fn next(&mut self, partial: bool) -> (Instant, Timeout) {
        if !partial {
            self.partial_since = None;
        }
        let Some(last) = self.last_request else {
            return (self.connected + self.first_request, Timeout::FirstRequest);
        };
        if partial {
            let since = *self.partial_since.get_or_insert_with(Instant::now);
            return (since + self.request_read, Timeout::SlowRequest);
        }
        (last + self.max_idle, Timeout::Idle)
    }
}

pub(crate) enum Decoded {
    Request(Box<(RequestHeader, RequestKind)>),
    /// Answered without a handler (ApiVersions at an unsupported version): the API, the
    /// version to answer in, the correlation id and the answer.
    Answer(Box<(ApiKey, i16, i32, ResponseKind)>),
}

pub(crate) fn decode(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!(
            "request of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(key) else {
        return Err(format!("unknown API key {key}"));
    };
    if !api::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the supported ranges so the client can pick.
            let body = api::api_versions::unsupported();
            return Ok(Decoded::Answer(Box::new((
                api_key,
                0,
                correlation_id,
                body,
            ))));
        }
        return Err(format!(
            "{api_key:?} v{version} is not supported (Shoal supports {})",
            api::supported_range(api_key)
                .map(|(a, b)| format!("v{a}-v{b}"))
                .unwrap_or_else(|| "none".into())
        ));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("malformed {api_key:?} v{version} header: {e}"))?;
    let request = RequestKind::decode(api_key, &mut body, version)
        .map_err(|e| format!("malformed {api_key:?} v{version} request: {e}"))?;
    Ok(Decoded::Request(Box::new((header, request))))
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Queued>,
    in_flight: Arc<AtomicUsize>,
) {
    while let Some(q) = rx.recv().await {
        let _answered = Answered(&in_flight);
        let body = match q.body.await {
            Ok(Some(b)) => b,
            Ok(None) => continue, // acks=0 produce: no answer
            Err(e) => {
                tracing::error!(error = %e, api = ?q.api_key, "request handler failed; closing connection");
                return;
            }
        };
        // A Fetch answer is encoded as slices: its records are written from the chunks
        // they sit in. Other answers are encoded whole.
        let header_version = q.api_key.response_header_version(q.version);
        let header = ResponseHeader::default().with_correlation_id(q.correlation_id);
        let encoded = match &*body {
            ResponseKind::Fetch(fetch) => {
                let mut out = SegmentedBuf::for_fetch(header_version >= 1);
                header
                    .encode(&mut out, header_version)
                    .and_then(|_| fetch.encode(&mut out, q.version))
                    .map(|_| out)
            }
            other => {
                let mut out = BytesMut::new();
                header
                    .encode(&mut out, header_version)
                    .and_then(|_| other.encode(&mut out, q.version))
                    .map(|_| SegmentedBuf::from(out))
            }
        };
        let encoded = encoded
            .map_err(|e| e.to_string())
            .and_then(SegmentedBuf::into_frame);
        drop(body);
        let frame = match encoded {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, api = ?q.api_key, version = q.version, "could not encode response; closing connection");
                return;
            }
        };
        if write_all_slices(&mut wr, &frame).await.is_err() {
            return;
        }
        // TLS keeps written bytes in its own buffer until flushed; with nothing more
        // queued right now, send them (plain TCP flushes are free).
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes every slice, in order, a few dozen per vectored write.
async fn write_all_slices<W: AsyncWrite + Unpin>(
    wr: &mut W,
    slices: &[Bytes],
) -> std::io::Result<()> {
    const PER_WRITE: usize = 64;
    let (mut i, mut skip) = (0, 0);
    while i < slices.len() {
        let n = {
            let mut io: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(PER_WRITE);
            io.push(std::io::IoSlice::new(&slices[i][skip..]));
            io.extend(
                slices[i + 1..]
                    .iter()
                    .take(PER_WRITE - 1)
                    .map(|b| std::io::IoSlice::new(b)),
            );
            wr.write_vectored(&io).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Step past what was written.
        let mut left = n;
        while left > 0 {
            let here = slices[i].len() - skip;
            if left < here {
                skip += left;
                break;
            }
            left -= here;
            i += 1;
            skip = 0;
        }
        while i < slices.len() && slices[i].len() == skip {
            i += 1;
            skip = 0;
        }
    }
    Ok(())
}

/// Counts a queued answer as done when dropped (written, skipped, or given up on).
struct Answered<'a>(&'a AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
