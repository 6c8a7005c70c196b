//! `shoal playground --secure`: a playground that only speaks SASL_SSL and enforces
//! ACLs, with a CA, a server certificate and a SCRAM admin user (a super user) it makes
//! itself, and the exact client settings printed for Java, librdkafka and kcat.
//!
//! Everything lives in `<data-dir>/secure/` and is reused on the next start, so
//! clients configured once keep working. The CA's key stays there too (mode 0600), to
//! sign client certificates for mTLS tests; delete the directory to start afresh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use shoal_meta::{MetaStore, ScramMechanism};

/// The files of a secure playground.
pub struct Secure {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub password: String,
}

pub const ADMIN: &str = "admin";

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 18];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("read random bytes for the admin password: {e}"))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Makes (or reuses) the CA, the server certificate for `listen` and the admin
/// password under `data_dir/secure`, and stores the admin's SCRAM credentials.
pub async fn prepare(
    data_dir: &Path,
    listen: SocketAddr,
    meta: &dyn MetaStore,
) -> anyhow::Result<Secure> {
    let dir = data_dir.join("secure");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let s = Secure {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        password: String::new(),
        dir,
    };
    let ca_key_path = s.dir.join("ca-key.pem");
    let password_path = s.dir.join("admin.password");
    if !(s.ca.exists() && s.cert.exists() && s.key.exists() && ca_key_path.exists()) {
        let (ca, ca_key, cert, key) = make_certificates(listen)?;
        std::fs::write(&s.ca, ca).with_context(|| format!("write {}", s.ca.display()))?;
        write_private(&ca_key_path, &ca_key)?;
        std::fs::write(&s.cert, cert).with_context(|| format!("write {}", s.cert.display()))?;
        write_private(&s.key, &key)?;
    }
    let password = match std::fs::read_to_string(&password_path) {
        Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
        _ => {
            let p = random_password()?;
            write_private(&password_path, &p)?;
            p
        }
    };
    let creds = ScramMechanism::ALL
        .iter()
        .map(|m| shoal_agent::security::scram::new_credential(ADMIN, *m, &password, 8192))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("salt the admin password: {e}"))?;
    meta.alter_scram_credentials(&creds, &[])
        .await
        .context("store the admin's SCRAM credentials")?;
    Ok(Secure { password, ..s })
}

/// (CA PEM, CA key PEM, server certificate PEM, server key PEM).
fn make_certificates(listen: SocketAddr) -> anyhow::Result<(String, String, String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Shoal playground CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).context("sign the CA certificate")?;
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().context("generate the server key")?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let mut server = CertificateParams::new(Vec::<String>::new()).context("server names")?;
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.try_into().context("a DNS name")?),
        };
        if !server.subject_alt_names.contains(&san) {
            server.subject_alt_names.push(san);
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "shoal playground");
    server.distinguished_name = dn;
    let cert = server
        .signed_by(&key, &issuer)
        .context("sign the server certificate")?;
    Ok((
        ca_cert.pem(),
        ca_key.serialize_pem(),
        cert.pem(),
        key.serialize_pem(),
    ))
}

/// What the banner adds: the client settings, and files holding them.
pub fn client_settings(s: &Secure, bootstrap: &str) -> anyhow::Result<String> {
    let (ca, pw) = (s.ca.display(), &s.password);
    let java = format!(
        "bootstrap.servers={bootstrap}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanism=SCRAM-SHA-512\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{ADMIN}\" password=\"{pw}\";\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={ca}\n"
    );
    let librdkafka = format!(
        "bootstrap.servers={bootstrap}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanisms=SCRAM-SHA-512\n\
         sasl.username={ADMIN}\n\
         sasl.password={pw}\n\
         ssl.ca.location={ca}\n"
    );
    let java_file = s.dir.join("client.properties");
    let rdkafka_file = s.dir.join("librdkafka.properties");
    write_private(&java_file, &java)?;
    write_private(&rdkafka_file, &librdkafka)?;
    Ok(format!(
        "Secure playground: SASL_SSL only, user {ADMIN} (a super user), password {pw}\n\
         \x20 Java client / Kafka CLI   --command-config {jf} (or --producer.config / --consumer.config)\n\
         \x20 librdkafka                {rf}\n\
         \x20 kcat                      kcat -b {bootstrap} -X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username={ADMIN} -X sasl.password={pw} -X ssl.ca.location={ca} -L\n\
         \x20 add a user               kafka-configs.sh --bootstrap-server {bootstrap} --command-config {jf} --alter --entity-type users --entity-name alice --add-config 'SCRAM-SHA-512=[password=alice-secret]'",
        jf = java_file.display(),
        rf = rdkafka_file.display(),
    ))
}
