//! TLS listeners with a rustls client: Metadata on the SSL listener names the SSL
//! port, a 6 MiB Fetch answer arrives whole without the client sending
//! anything more (TLS buffers must be flushed), and a replaced certificate is served to
//! new connections without a restart. (Real clients over TLS and mTLS are in
//! tests/compat/security.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{record, Agent, Client};

/// A CA and a server certificate for 127.0.0.1 it signed, written as PEM files to
/// `dir`; returns the CA's PEM.
fn certificates(dir: &Path, ca_name: &str) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::default();
    server
        .distinguished_name
        .push(DnType::CommonName, "shoal test");
    server.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = server.signed_by(&key, &issuer).unwrap();
    // Key first: the agent reloads once both files changed (it checks every 5 s).
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    ca_cert.pem()
}

/// The bound address of listener `name`, from the agent's banner.
fn listener_addr(agent: &Agent, name: &str) -> std::net::SocketAddr {
    // The banner's listener lines follow the line Agent::start waits for.
    agent.wait_for_log(&format!("({name})"));
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.trim_start().starts_with(name) && l.contains(&format!("({name})")))
        .unwrap_or_else(|| panic!("no listener {name} in the banner:\n{log}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn ssl_listener_serves_large_answers_and_picks_up_a_new_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let ca = certificates(certs.path(), "first CA");
    let (cert, key) = (
        certs.path().join("server.pem"),
        certs.path().join("server-key.pem"),
    );
    let agent = Agent::start(&[
        "--listeners",
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let ssl = listener_addr(&agent, "SSL");

    // 8 batches of 12 records of 64 KiB: a 6 MiB answer, many TLS records.
    let mut plain = agent.connect();
    plain.create_topic("big", 1, &[]);
    let value = vec![7u8; 64 * 1024];
    for _ in 0..8 {
        let batch: Vec<_> = (0..12).map(|_| record(None, Some(&value))).collect();
        assert_eq!(plain.produce("big", 0, &batch).0, 0);
    }

    let mut tls = Client::connect_tls(ssl, ca.as_bytes());
    let m = tls.metadata(None);
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(
        m.brokers[0].port,
        i32::from(ssl.port()),
        "clients of the SSL listener are given its address"
    );
    // The client reads only after a pause: the agent's TLS layer must send the answer's
    // tail without being prompted by another write. (Without a flush after each answer
    // Kafka's ConsumerPerformance read at 0.9 MB/s over SASL_SSL; this loopback test does
    // not reproduce that, bench/tls.sh does.)
    tls.send_only(
        &common::fetch_request("big", 0, 0, 100, 16 << 20),
        common::FETCH_V,
    );
    std::thread::sleep(Duration::from_secs(2));
    let resp = tls.recv::<kafka_protocol::messages::FetchRequest>();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let records = common::decode_records(&p.records.clone().unwrap_or_default());
    assert_eq!(records.len(), 8 * 12, "the whole answer arrived over TLS");

    // A new certificate from another CA: new connections get it, within the agent's
    // 5-second check; the old CA no longer verifies them.
    let new_ca = certificates(certs.path(), "second CA");
    let deadline = Instant::now() + Duration::from_secs(60);
    let handshake_with = |ca: &str| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Client::connect_tls(ssl, ca.as_bytes())
                .api_versions()
                .error_code
        }))
        .is_ok()
    };
    while !handshake_with(&new_ca) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        !handshake_with(&ca),
        "the old certificate is no longer served"
    );
    assert!(agent
        .log()
        .contains("TLS certificate files changed; reloaded them"));
    // Connections made before the change keep working.
    assert_eq!(tls.api_versions().error_code, 0);
}
