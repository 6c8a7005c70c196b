//! The client against a real etcd (the `etcd` binary on PATH) serving TLS with
//! `--client-cert-auth`, then with authentication enabled: certificates made here with
//! rcgen, users added through the client's own Auth calls.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, CertifiedIssuer, DnType, KeyPair};
use shoal_etcd::{Client, ConnectOptions, Credentials, TlsOptions};

struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// PEM (certificate, key) pairs: the CA, etcd's server certificate (for 127.0.0.1) and a
/// client certificate.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shoal test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd"),
        client: leaf(vec![], "shoal-client"),
    }
}

fn start(pki: &Pki) -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca = write("ca.pem", &pki.ca);
    let cert = write("server.pem", &pki.server.0);
    let key = write("server-key.pem", &pki.server.1);
    let (port, peer_port) = (free_port(), free_port());
    let client = format!("https://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("t={peer}")])
        .arg("--cert-file")
        .arg(&cert)
        .arg("--key-file")
        .arg(&key)
        .arg("--trusted-ca-file")
        .arg(&ca)
        .arg("--client-cert-auth")
        // Simple tokens expire after a second unused, so the test sees a renewal.
        .args(["--auth-token-ttl", "1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd: install it (Debian package etcd-server; scripts/install-test-deps.sh does)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Etcd {
        child,
        port,
        _dir: dir,
    }
}

fn client(
    etcd: &Etcd,
    pki: &Pki,
    with_identity: bool,
    credentials: Option<(&str, &str)>,
) -> Client {
    let options = ConnectOptions {
        tls: Some(TlsOptions {
            ca_pem: Some(pki.ca.clone().into_bytes()),
            identity: with_identity.then(|| {
                (
                    pki.client.0.clone().into_bytes(),
                    pki.client.1.clone().into_bytes(),
                )
            }),
            domain: None,
        }),
        credentials: credentials.map(|(user, password)| Credentials {
            user: user.into(),
            password: password.into(),
        }),
        timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    // Bare host:port: TLS options make it https.
    Client::connect(&[format!("127.0.0.1:{}", etcd.port)], &options).unwrap()
}

/// Retries a call while etcd is still electing itself leader after start.
async fn put_when_ready(c: &Client, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.put(key, value, None).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline && e.is_retriable() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("put {key}: {e}"),
        }
    }
}

async fn value(c: &Client, key: &str) -> Option<String> {
    let r = c.get(key, None).await.unwrap();
    r.kvs
        .first()
        .map(|kv| String::from_utf8(kv.value.clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_then_user_logins() {
    let pki = pki();
    let other_ca = self::pki().ca;
    let etcd = start(&pki);

    // Mutual TLS: with the client certificate the calls work...
    let admin = client(&etcd, &pki, true, None);
    put_when_ready(&admin, "k", "over tls").await;
    assert_eq!(value(&admin, "k").await.as_deref(), Some("over tls"));
    // ...without it etcd refuses the handshake.
    let anonymous = client(&etcd, &pki, false, None);
    assert!(anonymous.get("k", None).await.is_err());
    // A client that does not trust etcd's CA refuses etcd.
    let untrusting = Client::connect(
        &[format!("127.0.0.1:{}", etcd.port)],
        &ConnectOptions {
            tls: Some(TlsOptions {
                ca_pem: Some(other_ca.into_bytes()),
                identity: Some((
                    pki.client.0.clone().into_bytes(),
                    pki.client.1.clone().into_bytes(),
                )),
                domain: None,
            }),
            ..ConnectOptions::default()
        },
    )
    .unwrap();
    assert!(untrusting.get("k", None).await.is_err());

    // Authentication on: root (etcd requires it) and a user for Shoal.
    admin.user_add("root", "root-pw").await.unwrap();
    admin.role_add("root").await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.user_add("shoal", "shoal-pw").await.unwrap();
    admin.user_grant_role("shoal", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    // Now the certificate alone names a user (its CN) etcd does not know.
    assert!(admin.put("k", "no login", None).await.is_err());
    let wrong = client(&etcd, &pki, true, Some(("shoal", "not-the-password")));
    let e = wrong.get("k", None).await.unwrap_err();
    assert!(e.to_string().contains("authentication failed"), "{e}");

    let shoal = client(&etcd, &pki, true, Some(("shoal", "shoal-pw")));
    shoal.put("k", "logged in", None).await.unwrap();
    assert_eq!(value(&shoal, "k").await.as_deref(), Some("logged in"));
    // The token lives a second unused (--auth-token-ttl 1); the next call finds it
    // invalid, logs in again and succeeds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(value(&shoal, "k").await.as_deref(), Some("logged in"));
    shoal.put("k", "after renewal", None).await.unwrap();
    assert_eq!(value(&shoal, "k").await.as_deref(), Some("after renewal"));
    // Streams carry the token too.
    let lease = shoal.lease_grant(10).await.unwrap();
    assert!(shoal.lease_keep_alive(lease).await.unwrap() > 0);
    let mut watch = shoal.watch("k", None).await.unwrap();
    let created = watch.message().await.unwrap().expect("watch confirmed");
    assert!(!created.canceled());
}
