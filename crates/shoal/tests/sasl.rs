//! SASL on a SASL_PLAINTEXT listener, spoken byte by byte as a client would, including
//! what hostile or confused clients send: requests before authentication, unknown
//! mechanisms, oversized tokens, a wrong password, a handshake replayed after
//! authentication, and KIP-368 re-authentication. (The real clients, over TLS too, are
//! in tests/compat/security.)

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::{sb, Agent, Client};
use kafka_protocol::messages::{
    MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

const PASSWORD: &str = "alice-secret";

/// Adds SCRAM credentials for `user` to the playground database in `dir`.
fn add_user(dir: &Path, user: &str, password: &str) {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["users", "add", user, "--mechanism", mechanism, "--data-dir"])
            .arg(dir)
            .env_remove("SHOAL_METADATA")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shoal users");
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "shoal users add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn start(dir: &Path, extra: &[&str]) -> Agent {
    let mut args = vec!["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"];
    args.extend_from_slice(extra);
    Agent::start_in(dir, &args)
}

fn handshake(c: &mut Client, mechanism: &str) -> SaslHandshakeResponse {
    c.send(
        &SaslHandshakeRequest::default().with_mechanism(sb(mechanism)),
        1,
    )
}

fn plain(c: &mut Client, user: &str, password: &str) -> SaslAuthenticateResponse {
    let token = format!("\0{user}\0{password}");
    c.send(
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        2,
    )
}

fn metadata(c: &mut Client) -> MetadataResponse {
    c.send(&MetadataRequest::default().with_topics(None), 12)
}

#[test]
fn authentication_gates_every_request_and_failures_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice", PASSWORD);
    let agent = start(dir.path(), &[]);

    // ApiVersions is answered before authentication; Metadata closes the connection.
    let mut c = agent.connect();
    assert_eq!(c.api_versions().error_code, 0);
    c.send_only(&MetadataRequest::default().with_topics(None), 12);
    c.expect_closed(Duration::from_secs(5));

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list, then a close.
    let mut c = agent.connect();
    let r = handshake(&mut c, "GSSAPI");
    assert_eq!(r.error_code, ResponseError::UnsupportedSaslMechanism.code());
    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    c.expect_closed(Duration::from_secs(5));

    // A wrong password: SASL_AUTHENTICATION_FAILED, then a close; an unknown user is told
    // exactly the same.
    let mut c = agent.connect();
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let wrong = plain(&mut c, "alice", "not-it");
    assert_eq!(
        wrong.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
    c.expect_closed(Duration::from_secs(5));
    let mut c = agent.connect();
    handshake(&mut c, "PLAIN");
    let unknown = plain(&mut c, "mallory", "not-it");
    assert_eq!(unknown.error_code, wrong.error_code);
    assert_eq!(unknown.error_message, wrong.error_message);
    c.expect_closed(Duration::from_secs(5));

    // SaslAuthenticate without a handshake.
    let mut c = agent.connect();
    let r = plain(&mut c, "alice", PASSWORD);
    assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
    c.expect_closed(Duration::from_secs(5));

    // A 1 MiB token before authentication is more than --sasl-max-receive-bytes allows.
    let mut c = agent.connect();
    handshake(&mut c, "PLAIN");
    let mut frame = Vec::new();
    frame.extend_from_slice(&36i16.to_be_bytes()); // SaslAuthenticate
    frame.extend_from_slice(&2i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.resize(1 << 20, b'x');
    let _ = c.write_frame(&frame);
    c.expect_closed(Duration::from_secs(5));

    // The right password: Metadata is served, naming the SASL listener's address.
    let mut c = agent.connect();
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let ok = plain(&mut c, "alice", PASSWORD);
    assert_eq!(ok.error_code, 0, "{:?}", ok.error_message);
    assert_eq!(
        ok.session_lifetime_ms, 0,
        "sessions do not expire by default"
    );
    let m = metadata(&mut c);
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].port, i32::from(agent.addr.port()));

    // A handshake replayed after authentication, with re-authentication off.
    let r = handshake(&mut c, "PLAIN");
    assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
    c.expect_closed(Duration::from_secs(5));

    agent.wait_for_log("before SASL authentication on listener SASL_PLAINTEXT");
    let log = agent.log();
    assert!(
        log.contains("before SASL authentication on listener SASL_PLAINTEXT"),
        "{log}"
    );
    assert!(
        !log.contains("panicked"),
        "no input may panic the agent:\n{log}"
    );
}

#[test]
fn sessions_end_unless_the_client_re_authenticates_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice", PASSWORD);
    add_user(dir.path(), "bob", "bob-secret");
    let agent = start(dir.path(), &["--connections-max-reauth", "2s"]);

    let mut c = agent.connect();
    handshake(&mut c, "PLAIN");
    let ok = plain(&mut c, "alice", PASSWORD);
    assert_eq!(ok.error_code, 0);
    assert_eq!(ok.session_lifetime_ms, 2000);
    // Re-authenticating as the same user renews the session on the same connection.
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    assert_eq!(plain(&mut c, "alice", PASSWORD).error_code, 0);
    assert!(metadata(&mut c).brokers.len() == 1);
    // As another user it is refused.
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = plain(&mut c, "bob", "bob-secret");
    assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
    c.expect_closed(Duration::from_secs(5));

    // A session left to expire: the next request closes the connection.
    let mut c = agent.connect();
    handshake(&mut c, "PLAIN");
    assert_eq!(plain(&mut c, "alice", PASSWORD).error_code, 0);
    std::thread::sleep(Duration::from_millis(2500));
    c.send_only(&MetadataRequest::default().with_topics(None), 12);
    c.expect_closed(Duration::from_secs(5));
    // The log is drained by another thread: the line may land after the close is seen.
    agent.wait_for_log("without re-authentication");
}

#[test]
fn the_authenticated_principal_is_what_acls_are_checked_against() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin", "admin-secret");
    add_user(dir.path(), "alice", PASSWORD);
    let agent = start(
        dir.path(),
        &["--authorizer", "acl", "--super-users", "User:admin"],
    );
    let login = |user: &str, password: &str| {
        let mut c = agent.connect();
        assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
        assert_eq!(plain(&mut c, user, password).error_code, 0);
        c
    };
    let mut admin = login("admin", "admin-secret");
    admin.create_topic("secret", 1, &[]);
    let mut alice = login("alice", PASSWORD);
    let refused = alice.create_topic_raw("alices", 1, &[]);
    assert_eq!(
        refused.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let listed: Vec<String> = metadata(&mut alice)
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert!(listed.is_empty(), "alice may describe nothing: {listed:?}");
    let listed = metadata(&mut admin).topics.len();
    assert_eq!(listed, 1, "the super user sees the topic");
}
