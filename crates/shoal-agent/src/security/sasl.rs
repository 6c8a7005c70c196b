//! The server side of the SASL mechanisms Shoal offers: PLAIN (RFC 4616) and
//! SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks them.
//!
//! A [`SaslServer`] is one exchange on one connection: the connection, after the
//! client's SaslHandshake picked a mechanism, hands each SaslAuthenticate token to
//! [`SaslServer::step`] and sends back what it returns, until [`Step::Done`] names the
//! authenticated user. Nothing here touches a socket; the only await is the credential
//! lookup (and, for PLAIN, the key derivation on the blocking pool). Any error ends the
//! exchange: the connection answers with the error and closes, as Kafka does.
//!
//! Both mechanisms check against the SCRAM credentials in the metadata store (salted
//! keys, never passwords): PLAIN derives the stored key from the offered password with
//! the credential's salt and iteration count. Unknown users and wrong passwords fail
//! alike, with the same message, and SCRAM answers an unknown user with a made-up salt,
//! so neither the answer nor the step at which it fails tells whether a user exists.
//!
//! What Kafka's SCRAM does not do is refused: channel binding (only the `n,,` GS2 header
//! and `n,a=USER,`), mandatory extensions (`m=`), and the `tokenauth` extension
//! (delegation tokens, which Shoal does not have).

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use shoal_meta::{MetaError, MetaStore, ScramCredential, ScramMechanism};

use super::scram;

/// The largest token any step accepts. Real ones are under 300 bytes; this bounds every
/// field (names, nonces, extensions) without limits of their own.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// A SASL mechanism Shoal can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The name clients send in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a name, matched exactly as Kafka does.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM variant, `None` for PLAIN.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            Mechanism::ScramSha512 => Some(ScramMechanism::Sha512),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange failed. Every variant ends it.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// Unknown user or wrong password; deliberately the same for both.
    #[error(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {0}"
    )]
    AuthenticationFailed(Mechanism),
    /// The client broke the exchange: a malformed token, a wrong nonce or channel
    /// binding, something Shoal refuses (channel binding, delegation tokens, another
    /// authorization id), or a token after the exchange ended.
    #[error("Authentication failed: {0}")]
    Illegal(String),
    /// The credentials could not be read; trying again later may work.
    #[error("Authentication failed: could not read credentials: {0}")]
    Unavailable(#[source] MetaError),
    /// The server could not do its part (no randomness, a lost blocking task).
    #[error("Authentication failed: internal error: {0}")]
    Internal(String),
}

impl SaslError {
    /// Whether the client may succeed by authenticating again with the same password.
    pub fn is_retriable(&self) -> bool {
        matches!(self, SaslError::Unavailable(e) if e.is_retriable())
            || matches!(self, SaslError::Internal(_))
    }
}

fn illegal(why: impl Into<String>) -> SaslError {
    SaslError::Illegal(why.into())
}

/// What one step gives the connection to send back.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The server's token; the client sends another.
    Continue(Vec<u8>),
    /// Authenticated as `user`; `response` is the last token (empty for PLAIN).
    Done { response: Vec<u8>, user: String },
}

/// One SASL exchange on one connection.
pub struct SaslServer {
    mechanism: Mechanism,
    state: State,
    /// Tests fix the server's nonce to check published exchanges.
    fixed_nonce: Option<String>,
}

enum State {
    Start,
    /// SCRAM after the server-first message, waiting for the client-final one.
    ScramSentFirst(Box<ScramFirst>),
    /// Done, or failed: no further tokens are accepted.
    Ended,
}

struct ScramFirst {
    user: String,
    /// The stored credential, or a made-up one for an unknown user (never matches).
    cred: ScramCredential,
    known: bool,
    /// The GS2 header exactly as the client sent it; the final message's `c=` must be it.
    gs2_header: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl SaslServer {
    pub fn new(mechanism: Mechanism) -> SaslServer {
        SaslServer {
            mechanism,
            state: State::Start,
            fixed_nonce: None,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    #[cfg(test)]
    fn with_server_nonce(mechanism: Mechanism, nonce: &str) -> SaslServer {
        SaslServer {
            fixed_nonce: Some(nonce.to_string()),
            ..SaslServer::new(mechanism)
        }
    }

    /// One client token in, the server's token out. After an error or [`Step::Done`]
    /// every further call fails with [`SaslError::Illegal`].
    pub async fn step(&mut self, token: &[u8], meta: &dyn MetaStore) -> Result<Step, SaslError> {
        let state = std::mem::replace(&mut self.state, State::Ended);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(illegal(format!(
                "SASL token of {} bytes is longer than the {MAX_TOKEN_BYTES} allowed",
                token.len()
            )));
        }
        match (state, self.mechanism.scram()) {
            (State::Start, None) => plain(token, meta).await,
            (State::Start, Some(m)) => {
                let first = self.scram_first(m, token, meta).await?;
                let reply = first.server_first.clone().into_bytes();
                self.state = State::ScramSentFirst(Box::new(first));
                Ok(Step::Continue(reply))
            }
            (State::ScramSentFirst(first), _) => scram_final(self.mechanism, &first, token),
            (State::Ended, _) => Err(illegal("the SASL exchange has already ended")),
        }
    }

    async fn scram_first(
        &self,
        m: ScramMechanism,
        token: &[u8],
        meta: &dyn MetaStore,
    ) -> Result<ScramFirst, SaslError> {
        let msg = ClientFirst::parse(token)?;
        let stored = meta
            .scram_credentials(Some(&msg.user))
            .await
            .map_err(SaslError::Unavailable)?
            .into_iter()
            .find(|c| c.mechanism == m);
        let known = stored.is_some();
        let cred = match stored {
            Some(c) => c,
            None => decoy_credential(m, &msg.user)?,
        };
        let server_nonce = match &self.fixed_nonce {
            Some(n) => n.clone(),
            None => B64.encode(random::<24>()?),
        };
        let nonce = format!("{}{server_nonce}", msg.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&cred.salt),
            cred.iterations
        );
        Ok(ScramFirst {
            user: msg.user,
            cred,
            known,
            gs2_header: msg.gs2_header,
            nonce,
            client_first_bare: msg.bare,
            server_first,
        })
    }
}

/// PLAIN: `authzid NUL authcid NUL passwd`, checked against the user's SCRAM credential.
async fn plain(token: &[u8], meta: &dyn MetaStore) -> Result<Step, SaslError> {
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    let [authzid, user, password] = parts[..] else {
        return Err(illegal(format!(
            "invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| illegal("invalid SASL/PLAIN response: not UTF-8"))
    };
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() {
        return Err(illegal("username not specified"));
    }
    if password.is_empty() {
        return Err(illegal("password not specified"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(illegal(
            "Client requested an authorization id that is different from username",
        ));
    }
    let creds = meta
        .scram_credentials(Some(&user))
        .await
        .map_err(SaslError::Unavailable)?;
    // Any of the user's credentials will do; without one, derive against a decoy so
    // an unknown user costs the same time as a wrong password.
    let (cred, known) = match creds.into_iter().next() {
        Some(c) => (c, true),
        None => (decoy_credential(ScramMechanism::Sha256, &user)?, false),
    };
    let matches = tokio::task::spawn_blocking(move || scram::password_matches(&cred, &password))
        .await
        .map_err(|e| SaslError::Internal(format!("password check: {e}")))?;
    if !(known && matches) {
        return Err(SaslError::AuthenticationFailed(Mechanism::Plain));
    }
    Ok(Step::Done {
        response: Vec::new(),
        user,
    })
}

/// The client-final message: check binding, nonce and proof; answer `v=ServerSignature`.
fn scram_final(mechanism: Mechanism, first: &ScramFirst, token: &[u8]) -> Result<Step, SaslError> {
    let msg = std::str::from_utf8(token)
        .map_err(|_| illegal("invalid SCRAM client final message: not UTF-8"))?;
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or_else(|| illegal("invalid SCRAM client final message: no proof"))?;
    let mut attrs = without_proof.split(',');
    let binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or_else(|| illegal("invalid SCRAM client final message: no channel binding"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| illegal("invalid SCRAM client final message: no nonce"))?;
    for ext in attrs {
        check_extension(ext)?;
    }
    if B64.decode(binding).ok().as_deref() != Some(first.gs2_header.as_bytes()) {
        return Err(illegal(
            "invalid SCRAM client final message: channel binding differs",
        ));
    }
    // Kafka checks that the nonce *ends with* the server's: librdkafka sends its own
    // nonce again in front of the combined one, and Kafka accepts that. The proof
    // covers the message as sent, so this loosening lets nothing through unproven.
    if !nonce.ends_with(&first.nonce) {
        return Err(illegal("invalid SCRAM client final message: nonce differs"));
    }
    let proof = B64
        .decode(proof)
        .map_err(|_| illegal("invalid SCRAM client final message: proof is not base64"))?;
    let auth_message = format!(
        "{},{},{without_proof}",
        first.client_first_bare, first.server_first
    );
    let matches = scram::proof_matches(&first.cred, auth_message.as_bytes(), &proof);
    if !(first.known && matches) {
        return Err(SaslError::AuthenticationFailed(mechanism));
    }
    let signature = scram::server_signature(&first.cred, auth_message.as_bytes());
    Ok(Step::Done {
        response: format!("v={}", B64.encode(signature)).into_bytes(),
        user: first.user.clone(),
    })
}

/// A parsed client-first message.
struct ClientFirst {
    gs2_header: String,
    /// The user, `=2C` and `=3D` decoded.
    user: String,
    nonce: String,
    /// The message without its GS2 header, for the AuthMessage.
    bare: String,
}

impl ClientFirst {
    fn parse(token: &[u8]) -> Result<ClientFirst, SaslError> {
        let bad = |why: &str| illegal(format!("invalid SCRAM client first message: {why}"));
        let msg = std::str::from_utf8(token).map_err(|_| bad("not UTF-8"))?;
        let rest = match msg.as_bytes().first() {
            Some(b'n') => msg
                .strip_prefix("n,")
                .ok_or_else(|| bad("malformed GS2 header"))?,
            Some(b'p') | Some(b'y') => {
                return Err(illegal("channel binding is not supported"));
            }
            _ => return Err(bad("malformed GS2 header")),
        };
        let (authz_raw, bare) = rest
            .split_once(',')
            .ok_or_else(|| bad("malformed GS2 header"))?;
        let authzid = match authz_raw {
            "" => None,
            a => Some(sasl_name(
                a.strip_prefix("a=")
                    .ok_or_else(|| bad("malformed authorization id"))?,
            )?),
        };
        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(illegal("mandatory SCRAM extensions are not supported"));
        }
        let user = sasl_name(
            first
                .strip_prefix("n=")
                .ok_or_else(|| bad("no user name"))?,
        )?;
        if user.is_empty() {
            return Err(bad("empty user name"));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| bad("no nonce"))?;
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(bad("the nonce must be printable characters"));
        }
        for ext in attrs {
            check_extension(ext)?;
        }
        if authzid.is_some_and(|a| a != user) {
            return Err(illegal(
                "Client requested an authorization id that is different from username",
            ));
        }
        Ok(ClientFirst {
            gs2_header: format!("n,{authz_raw},"),
            user,
            nonce: nonce.to_string(),
            bare: bare.to_string(),
        })
    }
}

/// An optional extension `key=value`: ignored, except delegation tokens, refused.
fn check_extension(ext: &str) -> Result<(), SaslError> {
    let (key, value) = ext
        .split_once('=')
        .ok_or_else(|| illegal(format!("invalid SCRAM extension '{ext}'")))?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(illegal(format!("invalid SCRAM extension '{ext}'")));
    }
    if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
        return Err(illegal("delegation tokens are not supported"));
    }
    Ok(())
}

/// A `saslname` decoded: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn sasl_name(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(illegal("invalid SCRAM user name: bad '=' escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A credential no password matches, the same for the same user within one process, so
/// an unknown user gets a plausible, stable salt.
fn decoy_credential(m: ScramMechanism, user: &str) -> Result<ScramCredential, SaslError> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = match SECRET.get() {
        Some(s) => s,
        None => {
            let fresh = random::<32>()?;
            SECRET.get_or_init(|| fresh)
        }
    };
    let derive = |label: &str| {
        let mut msg = format!("{label}\0{m}\0").into_bytes();
        msg.extend_from_slice(user.as_bytes());
        scram::hmac(m, secret, &msg)
    };
    let mut salt = derive("salt");
    salt.truncate(scram::SALT_LEN);
    Ok(ScramCredential {
        user: user.to_string(),
        mechanism: m,
        salt,
        stored_key: derive("stored"),
        server_key: derive("server"),
        iterations: scram::DEFAULT_ITERATIONS,
    })
}

fn random<const N: usize>() -> Result<[u8; N], SaslError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out)
        .map_err(|e| SaslError::Internal(format!("no randomness: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
