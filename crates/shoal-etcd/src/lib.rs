//! A small etcd v3 client: the KV, Lease and Watch calls Shoal's etcd metadata backend
//! makes, on tonic's gRPC channel.
//!
//! Why not the `etcd-client` crate: it generates its gRPC code in a build script that
//! needs a `protoc` binary, so `cargo run` failed on a fresh machine with only the Rust
//! toolchain. Here the messages are written out as `prost` derives ([`proto`]) and each
//! call is a few lines on [`tonic::client::Grpc`], so building needs cargo and nothing
//! else. The calls are the ones Shoal uses; adding one is a message pair in [`proto`]
//! and a method here.
//!
//! Lifecycle: [`Client::connect`] builds a channel balanced over the endpoints (it
//! connects lazily and reconnects by itself) and checks nothing; the first call shows
//! whether etcd is there. A [`Client`] is cheap to clone; clones share the channel.
//! Every unary call has the per-request timeout of [`ConnectOptions`]; a watch or a
//! keep-alive ends with an error when the connection breaks, and the caller starts
//! again.

pub mod ops;
pub mod proto;

use std::time::Duration;

use futures::StreamExt;
use http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

pub use ops::*;
pub use proto::{EventType, KeyValue, RangeResponse, TxnResponse, WatchResponse};

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An endpoint that is not a valid URI.
    #[error("invalid etcd endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The server (or the connection to it) failed the call; `message` is etcd's own,
    /// e.g. `etcdserver: mvcc: required revision has been compacted`.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    /// A stream ended before its first answer.
    #[error("etcd ended the {0} stream")]
    StreamEnded(&'static str),
}

impl Error {
    /// Whether trying again later may succeed (the server was unreachable, busy or
    /// timed out), as opposed to a refused request.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Status(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
            ),
            Error::StreamEnded(_) => true,
            Error::Endpoint { .. } => false,
        }
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

pub type Result<T> = std::result::Result<T, Error>;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long a unary call may take.
    pub timeout: Duration,
    /// HTTP/2 pings at this interval, and the connection counts as dead when one is not
    /// answered within the second duration (a half-open connection is noticed).
    pub keep_alive: Option<(Duration, Duration)>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            keep_alive: Some((Duration::from_secs(5), Duration::from_secs(3))),
        }
    }
}

/// An etcd v3 client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("etcd Client")
    }
}

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
const TXN: &str = "/etcdserverpb.KV/Txn";
const COMPACT: &str = "/etcdserverpb.KV/Compact";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
const WATCH: &str = "/etcdserverpb.Watch/Watch";

impl Client {
    /// A client for these endpoints (`http://host:port`, or bare `host:port`). Nothing
    /// is dialled until the first call.
    pub fn connect<S: AsRef<str>>(endpoints: &[S], options: &ConnectOptions) -> Result<Client> {
        let mut list = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let e = e.as_ref();
            let uri = if e.contains("://") {
                e.to_string()
            } else {
                format!("http://{e}")
            };
            let mut endpoint = Endpoint::from_shared(uri)
                .map_err(|source| Error::Endpoint {
                    endpoint: e.to_string(),
                    source,
                })?
                .connect_timeout(options.connect_timeout)
                .timeout(options.timeout)
                .tcp_nodelay(true);
            if let Some((interval, timeout)) = options.keep_alive {
                endpoint = endpoint
                    .http2_keep_alive_interval(interval)
                    .keep_alive_timeout(timeout)
                    .keep_alive_while_idle(true);
            }
            list.push(endpoint);
        }
        let channel = Channel::balance_list(list.into_iter());
        Ok(Client {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn unary<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("etcd not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let resp = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// A bidirectional stream that sends `first` and then nothing more for as long as
    /// the returned stream lives (dropping it ends the call).
    async fn open_stream<Req, Resp>(
        &self,
        path: &'static str,
        first: Req,
    ) -> Result<tonic::Streaming<Resp>>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("etcd not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let requests = futures::stream::iter([first]).chain(futures::stream::pending());
        let resp = grpc
            .streaming(
                tonic::Request::new(requests),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Reads one key, or a range with [`GetOptions`].
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<RangeResponse> {
        let req = options.unwrap_or_default().request(key.into());
        self.unary(RANGE, req).await
    }

    /// Writes one key; returns the store's revision after the write.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: Option<PutOptions>,
    ) -> Result<i64> {
        let req = proto::PutRequest {
            key: key.into(),
            value: value.into(),
            lease: options.map_or(0, |o| o.lease()),
            prev_kv: false,
        };
        let resp: proto::PutResponse = self.unary(PUT, req).await?;
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// Deletes one key, or a range with [`DeleteOptions`]; returns how many went.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<DeleteOptions>,
    ) -> Result<i64> {
        let req = options.unwrap_or_default().request(key.into());
        let resp: proto::DeleteRangeResponse = self.unary(DELETE_RANGE, req).await?;
        Ok(resp.deleted)
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.unary(TXN, txn.0).await
    }

    /// Discards the history before `revision`.
    pub async fn compact(&self, revision: i64) -> Result<()> {
        let req = proto::CompactionRequest {
            revision,
            physical: false,
        };
        let _: proto::CompactionResponse = self.unary(COMPACT, req).await?;
        Ok(())
    }

    /// A new lease of `ttl` seconds; returns its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64> {
        let req = proto::LeaseGrantRequest { ttl, id: 0 };
        let resp: proto::LeaseGrantResponse = self.unary(LEASE_GRANT, req).await?;
        if !resp.error.is_empty() {
            return Err(tonic::Status::unknown(resp.error).into());
        }
        Ok(resp.id)
    }

    /// Ends a lease now: every key attached to it is deleted.
    pub async fn lease_revoke(&self, id: i64) -> Result<()> {
        let _: proto::LeaseRevokeResponse = self
            .unary(LEASE_REVOKE, proto::LeaseRevokeRequest { id })
            .await?;
        Ok(())
    }

    /// Renews a lease once; returns the seconds it now has left, 0 or less if etcd no
    /// longer knows it (it expired or was revoked).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        let req = proto::LeaseKeepAliveRequest { id };
        let call = async {
            let mut stream: tonic::Streaming<proto::LeaseKeepAliveResponse> =
                self.open_stream(LEASE_KEEP_ALIVE, req).await?;
            match stream.message().await? {
                Some(resp) => Ok(resp.ttl),
                None => Err(Error::StreamEnded("lease keep-alive")),
            }
        };
        // A stream has no per-call timeout of its own.
        let timeout = Duration::from_secs(5);
        tokio::time::timeout(timeout, call).await.map_err(|_| {
            Error::Status(tonic::Status::deadline_exceeded(
                "lease keep-alive unanswered for 5 s",
            ))
        })?
    }

    /// Watches a key, or a prefix with [`WatchOptions`]. The stream's first message
    /// confirms the watch (`created`); events follow.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<WatchOptions>,
    ) -> Result<WatchStream> {
        let create = options.unwrap_or_default().request(key.into());
        let req = proto::WatchRequest {
            request_union: Some(proto::watch_request::RequestUnion::CreateRequest(create)),
        };
        Ok(WatchStream {
            inner: self.open_stream(WATCH, req).await?,
        })
    }
}

/// The responses of one watch.
pub struct WatchStream {
    inner: tonic::Streaming<WatchResponse>,
}

impl WatchStream {
    /// The next response; `None` when the server ended the watch cleanly.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>> {
        Ok(self.inner.message().await?)
    }
}

impl WatchResponse {
    pub fn events(&self) -> &[proto::Event] {
        &self.events
    }
    pub fn canceled(&self) -> bool {
        self.canceled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_etcd_is_a_retriable_error_not_a_hang() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = ConnectOptions {
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_millis(500),
            keep_alive: None,
        };
        let client = Client::connect(&[format!("127.0.0.1:{port}")], &options).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(60), client.get("k", None))
            .await
            .expect("a call to an unreachable etcd ends with an error; it does not hang")
            .unwrap_err();
        assert!(err.is_retriable(), "{err}");
    }

    #[test]
    fn bad_endpoints_are_refused() {
        let err = Client::connect(&["http://bad host:1"], &ConnectOptions::default());
        assert!(matches!(err, Err(Error::Endpoint { .. })));
    }
}
