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
//!
//! [`security`]: TLS (server verification, client certificates) and user/password
//! authentication with a token that is renewed when etcd says it is invalid.

pub mod ops;
pub mod proto;
pub mod security;

use std::time::Duration;

use futures::StreamExt;
use http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use ops::*;
pub use proto::{EventType, KeyValue, RangeResponse, TxnResponse, WatchResponse};
pub use security::{Credentials, TlsOptions};

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
    /// The TLS settings could not be used (a malformed certificate or key).
    #[error("etcd TLS settings: {0}")]
    Tls(#[source] tonic::transport::Error),
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
            Error::Endpoint { .. } | Error::Tls(_) => false,
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
    /// TLS for every endpoint; bare `host:port` endpoints then mean `https://`.
    pub tls: Option<TlsOptions>,
    /// Log in as this user (etcd with `auth enable`).
    pub credentials: Option<Credentials>,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            keep_alive: Some((Duration::from_secs(5), Duration::from_secs(3))),
            tls: None,
            credentials: None,
        }
    }
}

/// An etcd v3 client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
    credentials: Option<Credentials>,
    token: security::Token,
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
const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
const USER_ADD: &str = "/etcdserverpb.Auth/UserAdd";
const ROLE_ADD: &str = "/etcdserverpb.Auth/RoleAdd";
const USER_GRANT_ROLE: &str = "/etcdserverpb.Auth/UserGrantRole";
const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";

impl Client {
    /// A client for these endpoints (`http://host:port`, `https://host:port`, or bare
    /// `host:port`: https with [`ConnectOptions::tls`], else http). Nothing is dialled
    /// until the first call.
    pub fn connect<S: AsRef<str>>(endpoints: &[S], options: &ConnectOptions) -> Result<Client> {
        let tls = options.tls.as_ref().map(tls_config);
        let mut list = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let e = e.as_ref();
            let uri = if e.contains("://") {
                e.to_string()
            } else if tls.is_some() {
                format!("https://{e}")
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
            if let Some(tls) = &tls {
                endpoint = endpoint.tls_config(tls.clone()).map_err(Error::Tls)?;
            }
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
            credentials: options.credentials.clone(),
            token: security::Token::default(),
        })
    }

    /// Logs in with the client's credentials (if any) and keeps the token for later calls.
    pub async fn authenticate(&self) -> Result<()> {
        let Some(c) = &self.credentials else {
            return Ok(());
        };
        let req = proto::AuthenticateRequest {
            name: c.user.clone(),
            password: c.password.clone(),
        };
        let resp: proto::AuthenticateResponse = self.call(AUTHENTICATE, req, None).await?;
        self.token.set(Some(resp.token));
        Ok(())
    }

    /// The token to send, logging in first when there are credentials and no token yet.
    async fn current_token(&self) -> Result<Option<String>> {
        if self.credentials.is_some() && self.token.get().is_none() {
            self.authenticate().await?;
        }
        Ok(self.token.get())
    }

    /// Runs `attempt` with the current token; when etcd calls the token invalid and the
    /// client has credentials, logs in again and runs it once more.
    async fn with_token<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = self.current_token().await?;
        match attempt(token).await {
            Err(Error::Status(s))
                if self.credentials.is_some() && security::is_invalid_token(&s) =>
            {
                self.token.set(None);
                self.authenticate().await?;
                attempt(self.token.get()).await
            }
            other => other,
        }
    }

    async fn unary<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.with_token(|token| self.call(path, req.clone(), token))
            .await
    }

    /// One unary call, with `token` as its `token` metadata.
    async fn call<Req, Resp>(
        &self,
        path: &'static str,
        req: Req,
        token: Option<String>,
    ) -> Result<Resp>
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
                with_token(req, token)?,
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
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.with_token(|token| self.stream_call(path, first.clone(), token))
            .await
    }

    async fn stream_call<Req, Resp>(
        &self,
        path: &'static str,
        first: Req,
        token: Option<String>,
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
                with_token(requests, token)?,
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

impl Client {
    /// Adds a user (administration; tests use it to set up authentication).
    pub async fn user_add(&self, name: &str, password: &str) -> Result<()> {
        let req = proto::AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
        };
        let _: proto::AuthAdminResponse = self.unary(USER_ADD, req).await?;
        Ok(())
    }

    /// Adds a role.
    pub async fn role_add(&self, name: &str) -> Result<()> {
        let req = proto::AuthRoleAddRequest { name: name.into() };
        let _: proto::AuthAdminResponse = self.unary(ROLE_ADD, req).await?;
        Ok(())
    }

    /// Grants `role` to `user`.
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<()> {
        let req = proto::AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        let _: proto::AuthAdminResponse = self.unary(USER_GRANT_ROLE, req).await?;
        Ok(())
    }

    /// Turns authentication on (the user `root` with the role `root` must exist).
    pub async fn auth_enable(&self) -> Result<()> {
        let _: proto::AuthAdminResponse =
            self.unary(AUTH_ENABLE, proto::AuthEnableRequest {}).await?;
        Ok(())
    }
}

/// The channel's TLS settings from ours.
fn tls_config(o: &TlsOptions) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new();
    c = match &o.ca_pem {
        Some(pem) => c.ca_certificate(Certificate::from_pem(pem)),
        None => c.with_native_roots(),
    };
    if let Some((cert, key)) = &o.identity {
        c = c.identity(Identity::from_pem(cert, key));
    }
    if let Some(d) = &o.domain {
        c = c.domain_name(d.clone());
    }
    c
}

/// A request carrying `token` (if any) as its `token` metadata, as etcd expects.
fn with_token<T>(message: T, token: Option<String>) -> Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        let value = t.parse().map_err(|_| {
            tonic::Status::internal("etcd returned an auth token that is not ASCII")
        })?;
        req.metadata_mut().insert("token", value);
    }
    Ok(req)
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
            ..ConnectOptions::default()
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
