//! The one small Kafka client of the `shoal` binary: a blocking connection to one agent
//! that sends typed requests from the `kafka-protocol` crate and reads their answers in
//! order. The admin commands ([`crate::admin`], [`crate::cli`]) and `shoal demo`'s
//! producer and consumer ([`crate::demo`]) all use it. Every read and write has a
//! timeout, so a silent server fails a command instead of hanging it.
//!
//! A connection may run over TLS (rustls, trusting the system's roots or a given CA
//! file) and authenticate with SASL PLAIN or SCRAM-SHA-256/512 before its first request
//! ([`Security`]). SCRAM's arithmetic is the agent's own
//! ([`shoal_agent::security::scram`]), so client and server cannot disagree on it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use shoal_agent::security::scram;
use shoal_meta::ScramMechanism;

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read or write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The SASL mechanisms the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl std::str::FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "SCRAM-SHA-256" => Ok(Mechanism::Scram(ScramMechanism::Sha256)),
            "SCRAM-SHA-512" => Ok(Mechanism::Scram(ScramMechanism::Sha512)),
            _ => Err(format!(
                "unknown SASL mechanism '{s}': use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
    }
}

impl Mechanism {
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(ScramMechanism::Sha256) => "SCRAM-SHA-256",
            Mechanism::Scram(ScramMechanism::Sha512) => "SCRAM-SHA-512",
        }
    }
}

/// A SASL login: mechanism, user and password.
#[derive(Clone, Debug)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

/// How every connection of a command is made: TLS or not, SASL or not, and the
/// `client.id` its requests carry.
#[derive(Clone)]
pub struct Security {
    /// `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
    pub client_id: String,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            tls: None,
            sasl: None,
            client_id: "shoal-cli".to_string(),
        }
    }
}

impl Security {
    /// A TLS client configuration trusting the PEM certificates in `ca`, or without one
    /// the system's CA bundle (the first of the usual Linux paths that exists).
    pub fn tls_config(ca: Option<&PathBuf>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let files: Vec<PathBuf> = match ca {
            Some(p) => vec![p.clone()],
            None => [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .take(1)
            .collect(),
        };
        for file in &files {
            let pem = std::fs::read(file)
                .with_context(|| format!("read the CA file {} (set --tls-ca)", file.display()))?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.with_context(|| format!("parse {} as PEM", file.display()))?;
                // The system bundle may hold certificates rustls refuses; skip those.
                let added = roots.add(cert);
                if ca.is_some() {
                    added.with_context(|| format!("use a CA certificate of {}", file.display()))?;
                }
            }
        }
        if roots.is_empty() {
            bail!("no CA certificates to trust: give the cluster's CA with --tls-ca FILE");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A blocking connection to one agent.
pub struct Conn {
    io: Box<dyn Io>,
    correlation: i32,
    client_id: StrBytes,
}

impl Conn {
    /// A plaintext connection with client id `shoal-cli`.
    pub fn open(bootstrap: &str) -> anyhow::Result<Conn> {
        Conn::open_with(bootstrap, &Security::default())
    }

    /// A connection to `addr` (host:port) made as `security` says: TCP, then TLS, then
    /// SASL. Errors say what to check.
    pub fn open_with(addr: &str, security: &Security) -> anyhow::Result<Conn> {
        let stream = tcp(addr)?;
        let io: Box<dyn Io> = match &security.tls {
            None => Box::new(stream),
            Some(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(addr)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("'{host}' is not a valid TLS server name"))?;
                let mut conn = rustls::ClientConnection::new(config.clone(), name)
                    .context("start a TLS session")?;
                let mut stream = stream;
                while conn.is_handshaking() {
                    conn.complete_io(&mut stream).with_context(|| {
                        format!(
                            "TLS handshake with {addr} (is it a TLS listener? is its certificate signed by --tls-ca and made for '{host}'?)"
                        )
                    })?;
                }
                Box::new(rustls::StreamOwned::new(conn, stream))
            }
        };
        let mut c = Conn {
            io,
            correlation: 0,
            client_id: StrBytes::from_string(security.client_id.clone()),
        };
        if let Some(sasl) = &security.sasl {
            c.authenticate(sasl)
                .with_context(|| format!("SASL {} login at {addr}", sasl.mechanism.name()))?;
        }
        Ok(c)
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.io
            .write_all(&frame)
            .and_then(|_| self.io.flush())
            .context("send the request (the server closed the connection?)")?;
        let mut len = [0u8; 4];
        self.io.read_exact(&mut len).context(
            "read the response size (the server closed the connection: does it want TLS or SASL? set --tls / --sasl-mechanism)",
        )?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 << 20).contains(&len) {
            bail!(
                "implausible response size {len} (is this a Kafka listener? a TLS one needs --tls)"
            );
        }
        let mut buf = vec![0u8; len as usize];
        self.io.read_exact(&mut buf).context("read the response")?;
        let mut bytes = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))?;
        if h.correlation_id != self.correlation {
            bail!(
                "response for request {} arrived for {}",
                h.correlation_id,
                self.correlation
            );
        }
        let resp = R::Response::decode(&mut bytes, version)?;
        Ok(resp)
    }

    /// One SaslAuthenticate round: sends `token`, returns the server's answer.
    fn sasl_round(&mut self, token: Vec<u8>) -> anyhow::Result<Bytes> {
        let r = self.call(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            2,
        )?;
        if r.error_code != 0 {
            bail!(
                "{}: {} (check --sasl-username and --sasl-password)",
                crate::cli::code_name(r.error_code),
                r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
            );
        }
        Ok(r.auth_bytes)
    }

    fn authenticate(&mut self, sasl: &Sasl) -> anyhow::Result<()> {
        let h = self.call(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
            1,
        )?;
        if h.error_code != 0 {
            let offered: Vec<&str> = h.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "the listener refused {} ({}); it offers: {} (is it a SASL listener? set --sasl-mechanism)",
                sasl.mechanism.name(),
                crate::cli::code_name(h.error_code),
                if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
            );
        }
        match sasl.mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password).into_bytes();
                self.sasl_round(token)?;
            }
            Mechanism::Scram(m) => {
                let (first, state) = scram_first(&sasl.username)?;
                let server_first = self.sasl_round(first)?;
                let (last, expected) = scram_final(m, &state, &server_first, &sasl.password)?;
                let server_final = self.sasl_round(last)?;
                if server_final.as_ref() != expected.as_bytes() {
                    bail!("the server's SCRAM signature is wrong: it does not know this user's credentials (is it the cluster you meant?)");
                }
            }
        }
        Ok(())
    }
}

/// What a SCRAM client remembers between its first and final messages.
struct ScramState {
    first_bare: String,
    nonce: String,
}

/// The client-first message (`n,,n=USER,r=NONCE`).
fn scram_first(user: &str) -> anyhow::Result<(Vec<u8>, ScramState)> {
    let mut raw = [0u8; 24];
    getrandom::getrandom(&mut raw).map_err(|e| anyhow::anyhow!("random SCRAM nonce: {e}"))?;
    let nonce = B64.encode(raw).replace(['+', '/', '='], "x");
    let user = user.replace('=', "=3D").replace(',', "=2C");
    let first_bare = format!("n={user},r={nonce}");
    Ok((
        format!("n,,{first_bare}").into_bytes(),
        ScramState { first_bare, nonce },
    ))
}

/// The client-final message for `server_first`, and the server-final message to expect.
fn scram_final(
    m: ScramMechanism,
    state: &ScramState,
    server_first: &[u8],
    password: &str,
) -> anyhow::Result<(Vec<u8>, String)> {
    let server_first = std::str::from_utf8(server_first).context("server-first is not UTF-8")?;
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .map(str::to_string)
            .with_context(|| format!("server-first message has no {k}"))
    };
    let (nonce, salt, iterations) = (attr("r=")?, attr("s=")?, attr("i=")?);
    if !nonce.starts_with(&state.nonce) || nonce.len() <= state.nonce.len() {
        bail!("the server's SCRAM nonce does not extend ours");
    }
    let salt = B64.decode(salt).context("the SCRAM salt is not base64")?;
    let iterations: u32 = iterations.parse().context("SCRAM iterations")?;
    if !(1..=1_000_000).contains(&iterations) {
        bail!("implausible SCRAM iteration count {iterations}");
    }
    let salted = scram::salted_password(m, password.as_bytes(), &salt, iterations);
    let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
    let auth = format!("{},{server_first},{without_proof}", state.first_bare);
    let client_key = scram::hmac(m, &salted, b"Client Key");
    let signature = scram::hmac(m, &scram::hash(m, &client_key), auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_sig = scram::hmac(m, &scram::server_key(m, &salted), auth.as_bytes());
    Ok((
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
        format!("v={}", B64.encode(server_sig)),
    ))
}

/// A TCP connection to the first address of `addr` that answers, with timeouts set.
fn tcp(addr: &str) -> anyhow::Result<TcpStream> {
    let hint = || format!("connect to {addr} (is Shoal running there? set --bootstrap)");
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .with_context(|| format!("resolve {addr}: not host:port, or no such host"))
        .with_context(hint)?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow::Error::new(e).context(hint())),
        None => Err(anyhow::anyhow!("{addr} resolves to no address").context(hint())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_client_matches_the_agents_credentials() {
        // The server side of the exchange, from a credential as the agent stores it.
        let m = ScramMechanism::Sha256;
        let cred = scram::new_credential("alice", m, "secret", 4096).unwrap();
        let (_, state) = scram_first("alice").unwrap();
        let server_first = format!(
            "r={}srv,s={},i={}",
            state.nonce,
            B64.encode(&cred.salt),
            cred.iterations
        );
        let (last, expected) = scram_final(m, &state, server_first.as_bytes(), "secret").unwrap();
        let last = String::from_utf8(last).unwrap();
        let (without_proof, proof) = last.rsplit_once(",p=").unwrap();
        let auth = format!("{},{server_first},{without_proof}", state.first_bare);
        assert!(scram::proof_matches(
            &cred,
            auth.as_bytes(),
            &B64.decode(proof).unwrap()
        ));
        assert_eq!(
            expected,
            format!(
                "v={}",
                B64.encode(scram::server_signature(&cred, auth.as_bytes()))
            )
        );
        let (wrong, _) = scram_final(m, &state, server_first.as_bytes(), "guess").unwrap();
        let wrong = String::from_utf8(wrong).unwrap();
        let (_, wrong_proof) = wrong.rsplit_once(",p=").unwrap();
        assert!(!scram::proof_matches(
            &cred,
            auth.as_bytes(),
            &B64.decode(wrong_proof).unwrap()
        ));
    }

    #[test]
    fn mechanisms_parse() {
        assert_eq!("plain".parse::<Mechanism>().unwrap(), Mechanism::Plain);
        assert_eq!(
            "SCRAM-SHA-512".parse::<Mechanism>().unwrap(),
            Mechanism::Scram(ScramMechanism::Sha512)
        );
        assert!("GSSAPI".parse::<Mechanism>().is_err());
    }
}
