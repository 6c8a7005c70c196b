//! Authentication of the peer-cache protocol with a secret every agent of a cluster
//! shares (`--cluster-secret-file`).
//!
//! The asker signs each request with HMAC-SHA256 over its fields, a timestamp and a random
//! nonce; the endpoint recomputes the MAC (comparing in constant time), refuses requests
//! whose timestamp is more than [`MAX_SKEW_MS`] away from its clock, and remembers the
//! nonces it accepted within that window so a captured request cannot be replayed. The
//! answer is signed too, over the request's MAC and the answer's bytes, so an asker never
//! caches bytes that did not come from an agent holding the secret for this request.
//!
//! Without a secret both sides still send the fields, with an all-zero MAC that nobody
//! checks: the format is one, the checking is what the secret turns on. This module only
//! computes and checks; it does no I/O and reads no clock (callers pass `now_ms`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a MAC on the wire.
pub const MAC_LEN: usize = 32;
/// Length of a request nonce on the wire.
pub const NONCE_LEN: usize = 16;
/// How far a request's timestamp may be from the endpoint's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Most nonces remembered at once; beyond it requests are refused until old ones age out
/// (the asker then reads the object store itself).
const MAX_NONCES: usize = 200_000;

/// Domain separation: a request MAC can never be mistaken for an answer MAC.
const REQUEST_LABEL: &[u8] = b"shoal peer request v1\0";
const ANSWER_LABEL: &[u8] = b"shoal peer answer v1\0";

/// The cluster's shared secret. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret(<{} bytes redacted>)", self.0.len())
    }
}

/// Why a secret file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("read the cluster secret file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster secret in {path} has {len} bytes; it needs at least {MIN_SECRET_LEN}")]
    TooShort { path: String, len: usize },
}

impl ClusterSecret {
    /// A secret from its bytes (at least [`MIN_SECRET_LEN`] of them).
    pub fn new(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: "<inline>".into(),
                len: bytes.len(),
            });
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// Reads the secret from `path`: the file's bytes without trailing whitespace (so an
    /// `echo`ed file works). Refuses a secret shorter than [`MIN_SECRET_LEN`]; warns when
    /// the file is readable by every user of the machine.
    pub fn load(path: &std::path::Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let raw = std::fs::read(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        let end = raw
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        if end < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: shown,
                len: end,
            });
        }
        if world_readable(path) {
            tracing::warn!(path = %shown, "the cluster secret file is readable by every user; chmod 600 it");
        }
        Ok(ClusterSecret(raw[..end].into()))
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        for p in parts {
            mac.update(p);
        }
        mac
    }

    /// The MAC of a request whose signed bytes (everything before the MAC) are `signed`.
    pub fn sign_request(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        self.mac(REQUEST_LABEL, &[signed])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the request MAC of `signed` (constant time).
    pub fn verify_request(&self, signed: &[u8], mac: &[u8; MAC_LEN]) -> bool {
        self.mac(REQUEST_LABEL, &[signed]).verify_slice(mac).is_ok()
    }

    /// The MAC of an answer (`head`: status and length; `body`) to the request whose MAC
    /// was `request_mac`.
    pub fn sign_answer(
        &self,
        request_mac: &[u8; MAC_LEN],
        head: &[u8],
        body: &[u8],
    ) -> [u8; MAC_LEN] {
        self.mac(ANSWER_LABEL, &[request_mac, head, body])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the answer MAC for these bytes (constant time).
    pub fn verify_answer(
        &self,
        request_mac: &[u8; MAC_LEN],
        head: &[u8],
        body: &[u8],
        mac: &[u8; MAC_LEN],
    ) -> bool {
        self.mac(ANSWER_LABEL, &[request_mac, head, body])
            .verify_slice(mac)
            .is_ok()
    }
}

#[cfg(unix)]
fn world_readable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_: &std::path::Path) -> bool {
    false
}

/// Why the endpoint refused a request before reading anything for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request's MAC is wrong or missing")]
    BadMac,
    #[error("the request's timestamp is more than {MAX_SKEW_MS} ms from this agent's clock")]
    Stale,
    #[error("the request's nonce was seen before (a replay)")]
    Replay,
    #[error("too many recent requests to remember their nonces")]
    Busy,
}

/// The nonces of requests accepted within the last [`MAX_SKEW_MS`] (twice, to cover
/// timestamps ahead of the clock), so each signed request is accepted once.
#[derive(Default)]
pub struct Nonces {
    seen: Mutex<HashMap<[u8; NONCE_LEN], u64>>,
}

impl Nonces {
    /// Records `nonce` of a request stamped `timestamp_ms`, refusing one seen before.
    pub fn admit(
        &self,
        nonce: [u8; NONCE_LEN],
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_NONCES {
            let horizon = now_ms.saturating_sub(2 * MAX_SKEW_MS);
            seen.retain(|_, ts| *ts >= horizon);
            if seen.len() >= MAX_NONCES {
                return Err(Refusal::Busy);
            }
        }
        if seen.insert(nonce, timestamp_ms).is_some() {
            return Err(Refusal::Replay);
        }
        Ok(())
    }
}

/// Checks a request's MAC and timestamp, then its nonce against `nonces`.
pub fn check_request(
    secret: &ClusterSecret,
    nonces: &Nonces,
    signed: &[u8],
    timestamp_ms: u64,
    nonce: [u8; NONCE_LEN],
    mac: &[u8; MAC_LEN],
    now_ms: u64,
) -> Result<(), Refusal> {
    if !secret.verify_request(signed, mac) {
        return Err(Refusal::BadMac);
    }
    if timestamp_ms.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(Refusal::Stale);
    }
    nonces.admit(nonce, timestamp_ms, now_ms)
}

/// A warning that is logged at most once per `every`, saying how many were held back, so
/// a flood of bad requests cannot flood the log.
pub struct RateLimitedWarn {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarn {
    pub fn new(every: Duration) -> Self {
        RateLimitedWarn {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether to log now; `Some(n)`: log, mentioning the `n` occurrences held back
    /// since the last line.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let held = s.1;
                *s = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(b"0123456789abcdef-cluster").unwrap()
    }

    #[test]
    fn a_request_mac_verifies_only_with_its_bytes_and_secret() {
        let s = secret();
        let mac = s.sign_request(b"request bytes");
        assert!(s.verify_request(b"request bytes", &mac));
        assert!(!s.verify_request(b"request bytez", &mac), "bytes changed");
        let other = ClusterSecret::new(b"another-secret-of-16+").unwrap();
        assert!(
            !other.verify_request(b"request bytes", &mac),
            "other secret"
        );
        assert!(
            !s.verify_request(b"request bytes", &[0; MAC_LEN]),
            "missing MAC"
        );
        // An answer MAC over the same bytes is not a request MAC.
        let answer = s.sign_answer(&[0; MAC_LEN], b"request bytes", b"");
        assert!(!s.verify_request(b"request bytes", &answer));
    }

    #[test]
    fn an_answer_mac_is_bound_to_its_request() {
        let s = secret();
        let (r1, r2) = (s.sign_request(b"one"), s.sign_request(b"two"));
        let mac = s.sign_answer(&r1, b"head", b"body");
        assert!(s.verify_answer(&r1, b"head", b"body", &mac));
        assert!(
            !s.verify_answer(&r2, b"head", b"body", &mac),
            "other request"
        );
        assert!(!s.verify_answer(&r1, b"head", b"bod", &mac), "body cut");
    }

    #[test]
    fn check_refuses_wrong_macs_stale_stamps_and_replays() {
        let s = secret();
        let nonces = Nonces::default();
        let mac = s.sign_request(b"r");
        let now = 1_000_000;
        assert_eq!(
            check_request(&s, &nonces, b"r", now, [1; 16], &[7; MAC_LEN], now),
            Err(Refusal::BadMac)
        );
        assert_eq!(
            check_request(&s, &nonces, b"r", now - MAX_SKEW_MS - 1, [1; 16], &mac, now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            check_request(&s, &nonces, b"r", now + MAX_SKEW_MS + 1, [1; 16], &mac, now),
            Err(Refusal::Stale)
        );
        assert_eq!(
            check_request(&s, &nonces, b"r", now + MAX_SKEW_MS, [1; 16], &mac, now),
            Ok(())
        );
        assert_eq!(
            check_request(&s, &nonces, b"r", now, [1; 16], &mac, now),
            Err(Refusal::Replay)
        );
        assert_eq!(
            check_request(&s, &nonces, b"r", now, [2; 16], &mac, now),
            Ok(())
        );
    }

    #[test]
    fn secrets_are_loaded_trimmed_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort\n").unwrap();
        assert!(matches!(
            ClusterSecret::load(&short),
            Err(SecretError::TooShort { len: 8, .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, "s3cr3t-s3cr3t-s3cr3t\n").unwrap();
        let s = ClusterSecret::load(&good).unwrap();
        assert_eq!(&*s.0, b"s3cr3t-s3cr3t-s3cr3t", "trailing newline trimmed");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert!(matches!(
            ClusterSecret::load(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn rate_limited_warnings_count_what_they_hold_back() {
        let w = RateLimitedWarn::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(w.allow(t), Some(0));
        assert_eq!(w.allow(t + Duration::from_secs(1)), None);
        assert_eq!(w.allow(t + Duration::from_secs(2)), None);
        assert_eq!(w.allow(t + Duration::from_secs(11)), Some(2));
    }
}
