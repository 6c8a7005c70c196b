//! How the client proves itself to etcd and checks etcd's identity: TLS for `https://`
//! endpoints (a CA to trust, optionally a client certificate for mutual TLS) and
//! user/password authentication.
//!
//! With credentials, the client calls `Auth.Authenticate` before its first call and
//! sends the token it gets as the `token` metadata of every call; when etcd answers that
//! the token is invalid (it expired, or etcd restarted), the client logs in again once
//! and repeats the call. Neither type's `Debug` shows a password or a private key.

use std::sync::{Arc, RwLock};

/// TLS settings for the endpoints (which then default to `https://`).
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM certificates to trust for etcd's server certificate; `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, for etcd's `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name etcd's certificate must carry; `None`: the endpoint's host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity",
                &self.identity.as_ref().map(|_| "<redacted>"),
            )
            .field("domain", &self.domain)
            .finish()
    }
}

/// A user and password for etcd's authentication.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The token of the current login, shared by a client's clones.
#[derive(Clone, Default)]
pub(crate) struct Token(Arc<RwLock<Option<String>>>);

impl Token {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, token: Option<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token;
    }
}

/// Whether etcd refused a call because its auth token is missing, expired or unknown.
pub(crate) fn is_invalid_token(status: &tonic::Status) -> bool {
    let m = status.message();
    m.contains("invalid auth token") || m.contains("user name is empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_forms_hide_secrets() {
        let c = Credentials {
            user: "shoal".into(),
            password: "hunter2-very-secret".into(),
        };
        let t = TlsOptions {
            ca_pem: Some(b"CA".to_vec()),
            identity: Some((b"CERT".to_vec(), b"PRIVATE KEY BYTES".to_vec())),
            domain: None,
        };
        let shown = format!("{c:?} {t:?}");
        assert!(shown.contains("shoal"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn invalid_token_answers_are_recognised() {
        assert!(is_invalid_token(&tonic::Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(!is_invalid_token(&tonic::Status::permission_denied(
            "etcdserver: permission denied"
        )));
    }
}
