//! SCRAM's arithmetic (RFC 5802 section 3, with SHA-256 or SHA-512 as RFC 7677 and
//! Kafka use them): deriving a credential from a password or a salted password, the
//! signatures of an exchange, and the constant-time proof check.
//!
//! Kept apart from the exchange ([`super::sasl`]) so the CLI (`shoal users add`), the
//! AlterUserScramCredentials handler and PLAIN all derive credentials the same way. The
//! password is used as its UTF-8 bytes without SASLprep, as Kafka does, so credentials
//! made here and by Kafka's tools agree.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use shoal_meta::{ScramCredential, ScramMechanism};
use subtle::ConstantTimeEq;

/// Kafka's bounds on a credential's iteration count (both mechanisms).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;
/// The iteration count `shoal users add` uses unless told otherwise (Kafka's tools use
/// 4096; more is slower to guess).
pub const DEFAULT_ITERATIONS: i32 = 8192;
/// Bytes of random salt in credentials Shoal makes.
pub const SALT_LEN: usize = 32;

/// `HMAC(key, msg)` with the mechanism's hash.
pub fn hmac(m: ScramMechanism, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn with<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    }
    match m {
        ScramMechanism::Sha256 => with::<Hmac<Sha256>>(key, msg),
        ScramMechanism::Sha512 => with::<Hmac<Sha512>>(key, msg),
    }
}

/// `H(data)` with the mechanism's hash.
pub fn hash(m: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// `SaltedPassword := Hi(password, salt, i)`: PBKDF2 with the mechanism's HMAC. Costs
/// `iterations` HMACs: call it off the async threads when they matter.
pub fn salted_password(
    m: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => {
            let mut out = vec![0; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out
        }
        ScramMechanism::Sha512 => {
            let mut out = vec![0; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            out
        }
    }
}

/// `StoredKey := H(HMAC(SaltedPassword, "Client Key"))`.
pub fn stored_key(m: ScramMechanism, salted: &[u8]) -> Vec<u8> {
    hash(m, &hmac(m, salted, b"Client Key"))
}

/// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(m: ScramMechanism, salted: &[u8]) -> Vec<u8> {
    hmac(m, salted, b"Server Key")
}

/// The credential for a password the client already salted (what
/// AlterUserScramCredentials carries).
pub fn credential_from_salted(
    user: &str,
    m: ScramMechanism,
    salt: &[u8],
    salted: &[u8],
    iterations: i32,
) -> ScramCredential {
    ScramCredential {
        user: user.to_string(),
        mechanism: m,
        salt: salt.to_vec(),
        stored_key: stored_key(m, salted),
        server_key: server_key(m, salted),
        iterations,
    }
}

/// The credential for a password with the given salt.
pub fn credential(
    user: &str,
    m: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: i32,
) -> ScramCredential {
    let salted = salted_password(m, password.as_bytes(), salt, iterations.max(1) as u32);
    credential_from_salted(user, m, salt, &salted, iterations)
}

/// A credential for a password with a fresh random salt.
pub fn new_credential(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> Result<ScramCredential, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::getrandom(&mut salt)?;
    Ok(credential(user, m, password, &salt, iterations))
}

/// Why an iteration count is refused, as Kafka words it; `None` when it is acceptable.
pub fn check_iterations(iterations: i32) -> Option<&'static str> {
    if iterations < MIN_ITERATIONS {
        Some("Too few iterations")
    } else if iterations > MAX_ITERATIONS {
        Some("Too many iterations")
    } else {
        None
    }
}

/// Whether a client's proof is right: `ClientKey := ClientProof XOR
/// HMAC(StoredKey, AuthMessage)` must hash to `StoredKey`. Constant time in the
/// contents of the proof and the key.
pub fn proof_matches(cred: &ScramCredential, auth_message: &[u8], proof: &[u8]) -> bool {
    let signature = hmac(cred.mechanism, &cred.stored_key, auth_message);
    if proof.len() != signature.len() {
        return false;
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    hash(cred.mechanism, &client_key)
        .ct_eq(&cred.stored_key)
        .into()
}

/// `ServerSignature := HMAC(ServerKey, AuthMessage)`, the server's proof of knowing the
/// credential.
pub fn server_signature(cred: &ScramCredential, auth_message: &[u8]) -> Vec<u8> {
    hmac(cred.mechanism, &cred.server_key, auth_message)
}

/// Whether `password` is the one `cred` was made from (PLAIN against a SCRAM
/// credential), comparing stored keys in constant time. Costs `cred.iterations` HMACs.
pub fn password_matches(cred: &ScramCredential, password: &str) -> bool {
    let iterations = cred.iterations.clamp(1, MAX_ITERATIONS) as u32;
    let salted = salted_password(cred.mechanism, password.as_bytes(), &cred.salt, iterations);
    stored_key(cred.mechanism, &salted)
        .ct_eq(&cred.stored_key)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    #[test]
    fn rfc7677_credential() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = credential("user", ScramMechanism::Sha256, "pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert!(proof_matches(&c, auth_message.as_bytes(), &proof));
        assert_eq!(
            B64.encode(server_signature(&c, auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!proof_matches(&c, auth_message.as_bytes(), &wrong));
        assert!(!proof_matches(&c, auth_message.as_bytes(), &proof[..31]));
        assert!(password_matches(&c, "pencil"));
        assert!(!password_matches(&c, "pencil "));
    }

    #[test]
    fn salted_and_plain_derivations_agree() {
        for m in ScramMechanism::ALL {
            let salt = b"NaCl";
            let salted = salted_password(m, b"secret", salt, 4096);
            assert_eq!(
                salted.len(),
                if m == ScramMechanism::Sha256 { 32 } else { 64 }
            );
            let a = credential_from_salted("u", m, salt, &salted, 4096);
            assert_eq!(a, credential("u", m, "secret", salt, 4096));
            assert_ne!(a.stored_key, a.server_key);
        }
        let one = new_credential("u", ScramMechanism::Sha512, "p", 4096).unwrap();
        let two = new_credential("u", ScramMechanism::Sha512, "p", 4096).unwrap();
        assert_eq!(one.salt.len(), SALT_LEN);
        assert_ne!(one.salt, two.salt, "salts are random");
        assert!(password_matches(&one, "p") && password_matches(&two, "p"));
    }

    #[test]
    fn iteration_bounds_are_kafkas() {
        assert_eq!(check_iterations(4095), Some("Too few iterations"));
        assert_eq!(check_iterations(4096), None);
        assert_eq!(check_iterations(16384), None);
        assert_eq!(check_iterations(16385), Some("Too many iterations"));
        assert_eq!(check_iterations(-1), Some("Too few iterations"));
    }
}
