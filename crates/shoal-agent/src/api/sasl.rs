//! SaslHandshake (17) and SaslAuthenticate (36): authentication on SASL listeners, and
//! the gate that keeps an unauthenticated client to ApiVersions and these two.
//!
//! A client on a SASL_PLAINTEXT or SASL_SSL listener sends ApiVersions, SaslHandshake
//! naming a mechanism, then SaslAuthenticate tokens until the mechanism
//! ([`crate::security::sasl`]) is done. Any other request before that closes the
//! connection (as Kafka does), and so does a failed authentication, after its
//! SASL_AUTHENTICATION_FAILED answer.
//!
//! Re-authentication (KIP-368): with `--connections-max-reauth` above zero the
//! SaslAuthenticate answer carries the session's lifetime; the client sends
//! SaslHandshake and SaslAuthenticate again on the same connection before it ends,
//! and must come back as the same principal. A request after the session ended
//! closes the connection. Without it a SaslHandshake after authentication is refused
//! with ILLEGAL_SASL_STATE and the connection closed.
//!
//! On listeners without SASL both requests answer ILLEGAL_SASL_STATE, as Kafka's do.
//! SaslHandshake v0 is offered only because librdkafka looks for it before it will
//! use v1; a v0 handshake itself (bare tokens after it) is refused.

use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::{sb, ConnContext};
use crate::metrics::Metrics;
use crate::security::sasl::{Mechanism, SaslServer, Step};
use crate::security::Principal;
use crate::Shared;

/// A connection's SASL progress.
#[derive(Default)]
pub struct SaslState {
    /// The exchange begun by the last SaslHandshake, with its mechanism's name.
    exchange: Option<(String, SaslServer)>,
    /// The mechanism of the completed authentication (re-authentication must reuse it).
    mechanism: Option<String>,
    /// When the session ends (`--connections-max-reauth`); `None`: never.
    expires: Option<Instant>,
}

impl SaslState {
    pub fn authenticated(&self) -> bool {
        self.mechanism.is_some()
    }
}

/// Whether `key` may be served on this connection now. `Err`: close the connection,
/// for the reason given.
pub(crate) fn gate(conn: &ConnContext, key: ApiKey) -> Result<(), String> {
    if !conn.listener.protocol.sasl() {
        return Ok(());
    }
    let sasl_api = matches!(
        key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    );
    if sasl_api {
        return Ok(());
    }
    if !conn.sasl.authenticated() {
        return Err(format!(
            "{key:?} before SASL authentication on listener {} (configure the client with \
             security.protocol={} and a sasl.mechanism)",
            conn.listener.name, conn.listener.protocol
        ));
    }
    if conn.sasl.expires.is_some_and(|t| Instant::now() >= t) {
        return Err(format!(
            "the SASL session of {} ended (--connections-max-reauth) without re-authentication",
            conn.principal
        ));
    }
    Ok(())
}

pub(crate) fn handshake(
    shared: &Shared,
    conn: &mut ConnContext,
    req: SaslHandshakeRequest,
    version: i16,
) -> SaslHandshakeResponse {
    let offered: Vec<_> = shared
        .config
        .sasl_mechanisms
        .iter()
        .map(|m| sb(m.clone()))
        .collect();
    let answer = |code: i16| {
        SaslHandshakeResponse::default()
            .with_error_code(code)
            .with_mechanisms(offered.clone())
    };
    if !conn.listener.protocol.sasl() {
        return answer(ResponseError::IllegalSaslState.code());
    }
    let name = req.mechanism.as_str().to_string();
    if version == 0 {
        // v0 is followed by bare tokens outside Kafka's framing; every client that
        // speaks v1 (all current ones) uses it, since ApiVersions offers it.
        conn.close(format!(
            "SaslHandshake v0 for {name}: unframed SASL tokens are not supported; use a \
             client that sends SaslHandshake v1 and SaslAuthenticate"
        ));
        return answer(ResponseError::IllegalSaslState.code());
    }
    if conn.sasl.exchange.is_some() {
        conn.close(format!(
            "SaslHandshake for {name} while a {} exchange is in progress",
            conn.sasl.exchange.as_ref().map_or("", |(m, _)| m.as_str())
        ));
        return answer(ResponseError::IllegalSaslState.code());
    }
    if let Some(done) = &conn.sasl.mechanism {
        if shared.config.connections_max_reauth.is_zero() {
            conn.close(
                "SaslHandshake after authentication, and re-authentication is off \
                 (--connections-max-reauth 0s)"
                    .to_string(),
            );
            return answer(ResponseError::IllegalSaslState.code());
        }
        if *done != name {
            conn.close(format!(
                "re-authentication with {name} after authenticating with {done}"
            ));
            return answer(ResponseError::IllegalSaslState.code());
        }
    }
    let mechanism = shared
        .config
        .sasl_mechanisms
        .contains(&name)
        .then(|| Mechanism::from_name(&name))
        .flatten();
    let Some(mechanism) = mechanism else {
        conn.close(format!(
            "SaslHandshake for mechanism '{name}', which is not enabled (--sasl-enabled-mechanisms {})",
            shared.config.sasl_mechanisms.join(",")
        ));
        return answer(ResponseError::UnsupportedSaslMechanism.code());
    };
    conn.sasl.exchange = Some((name, SaslServer::new(mechanism)));
    answer(0)
}

pub(crate) async fn authenticate(
    shared: &Shared,
    conn: &mut ConnContext,
    req: SaslAuthenticateRequest,
    version: i16,
) -> SaslAuthenticateResponse {
    let fail = |code: ResponseError, message: String| {
        SaslAuthenticateResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(sb(message)))
    };
    if !conn.listener.protocol.sasl() {
        return fail(
            ResponseError::IllegalSaslState,
            format!("listener {} does not use SASL", conn.listener.name),
        );
    }
    let Some((name, mut server)) = conn.sasl.exchange.take() else {
        conn.close("SaslAuthenticate without a SaslHandshake first".to_string());
        return fail(
            ResponseError::IllegalSaslState,
            "SaslAuthenticate without a SaslHandshake first".to_string(),
        );
    };
    match server.step(&req.auth_bytes, shared.meta.as_ref()).await {
        Ok(Step::Continue(token)) => {
            conn.sasl.exchange = Some((name, server));
            SaslAuthenticateResponse::default().with_auth_bytes(token.into())
        }
        Ok(Step::Done { response, user }) => {
            let principal = Principal::user(user);
            if conn.sasl.authenticated() && principal != conn.principal {
                Metrics::add(&shared.metrics.sasl_failed, 1);
                let why = format!(
                    "re-authentication as {principal} on a connection of {}",
                    conn.principal
                );
                conn.close(why.clone());
                return fail(ResponseError::SaslAuthenticationFailed, why);
            }
            Metrics::add(&shared.metrics.sasl_authenticated, 1);
            tracing::debug!(%principal, mechanism = %name, "SASL authentication succeeded");
            conn.principal = principal;
            conn.sasl.mechanism = Some(name);
            let lifetime = shared.config.connections_max_reauth;
            conn.sasl.expires = (!lifetime.is_zero()).then(|| Instant::now() + lifetime);
            let mut answer = SaslAuthenticateResponse::default().with_auth_bytes(response.into());
            if version >= 1 && !lifetime.is_zero() {
                answer.session_lifetime_ms = lifetime.as_millis().min(i64::MAX as u128) as i64;
            }
            answer
        }
        Err(e) => {
            Metrics::add(&shared.metrics.sasl_failed, 1);
            let message = e.to_string();
            tracing::info!(peer = %conn.peer, mechanism = %name, "closing connection: SASL authentication failed: {message}");
            conn.close_after_failed_authentication();
            SaslAuthenticateResponse::default()
                .with_error_code(crate::errors::sasl_code(&e))
                .with_error_message(Some(sb(message)))
        }
    }
}
