//! TLS for listeners: certificates from PEM files (reloaded when the files change),
//! optional client-certificate verification (mTLS), and the principal a client
//! certificate maps to.
//!
//! The principal of a certificate is its subject as an RFC 2253 distinguished name
//! (`CN=alice,OU=eng,O=Example`), the form Kafka uses, passed through the mapping rules
//! of `--tls-principal-mapping-rules` (Kafka's `ssl.principal.mapping.rules`):
//! `RULE:pattern/replacement/[LU]` entries tried in order, the first whose pattern
//! matches the whole name wins, and `DEFAULT` keeps the name as it is.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::Principal;

/// Whether a TLS listener asks clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    /// Asked for and verified when given; clients without one are `User:ANONYMOUS`.
    Requested,
    /// Clients without a certificate the CA signed cannot connect.
    Required,
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!(
                "unknown client auth '{other}'; use none, requested or required"
            )),
        }
    }
}

/// One rule of `--tls-principal-mapping-rules`.
#[derive(Debug, Clone)]
enum Rule {
    Default,
    Map {
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Kafka's `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

impl Default for PrincipalRules {
    fn default() -> Self {
        PrincipalRules(vec![Rule::Default])
    }
}

/// Reads up to an unescaped `/`; `\/` stands for `/`. Returns the text and the rest.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if s[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl FromStr for PrincipalRules {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rules = Vec::new();
        let mut rest = s;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
                continue;
            }
            let Some(r) = rest.strip_prefix("RULE:") else {
                return Err(format!(
                    "--tls-principal-mapping-rules: expected RULE:pattern/replacement/[LU] or DEFAULT at '{rest}'"
                ));
            };
            let bad =
                || format!("--tls-principal-mapping-rules: '{r}' is not pattern/replacement/[LU]");
            let (pattern, r) = until_slash(r).ok_or_else(bad)?;
            let (replacement, r) = until_slash(r).ok_or_else(bad)?;
            let (case, r) = match r.chars().next() {
                Some(c @ ('L' | 'U')) => (Some(c), &r[1..]),
                _ => (None, r),
            };
            // The pattern must match the whole name, as Java's Matcher.matches() does.
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("--tls-principal-mapping-rules: bad pattern: {e}"))?;
            rules.push(Rule::Map {
                pattern,
                replacement,
                case,
            });
            rest = r;
        }
        if rules.is_empty() {
            return Err("--tls-principal-mapping-rules: no rule given (use DEFAULT)".into());
        }
        Ok(PrincipalRules(rules))
    }
}

impl PrincipalRules {
    /// The principal name a distinguished name maps to; `None` when no rule matches
    /// (the connection is then refused, as in Kafka).
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Map {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let out = pattern.replace(dn, replacement.as_str()).into_owned();
                        return Some(match case {
                            Some('L') => out.to_lowercase(),
                            Some('U') => out.to_uppercase(),
                            _ => out,
                        });
                    }
                }
            }
        }
        None
    }
}

/// The subject of a DER certificate as an RFC 2253 name (last RDN first).
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut parts = Vec::new();
    for rdn in cert.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        let mut attrs = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                other => other,
            }
            .to_string();
            let value = attr.as_str().map(escape_dn_value).unwrap_or_else(|_| {
                let hex: String = attr
                    .attr_value()
                    .data
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("#{hex}")
            });
            attrs.push(format!("{key}={value}"));
        }
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How an agent's TLS listeners are set up (`--tls-*`).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub principal_rules: PrincipalRules,
}

/// When each file was last changed, to notice a renewed certificate.
type Stamps = Vec<Option<SystemTime>>;

/// The TLS side of the listeners: the current rustls configuration, swapped when the
/// files change ([`TlsServer::reload_if_changed`]); connections already open keep the
/// configuration they started with.
pub struct TlsServer {
    settings: TlsSettings,
    current: RwLock<(Arc<ServerConfig>, Stamps)>,
}

fn stamps(settings: &TlsSettings) -> Stamps {
    [
        Some(&settings.cert),
        Some(&settings.key),
        settings.ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

fn load_config(settings: &TlsSettings) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .with_context(|| format!("read the TLS certificate {}", settings.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parse the TLS certificate {}", settings.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (--tls-cert)",
            settings.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key).with_context(|| {
        format!(
            "read the TLS private key {} (--tls-key; PEM, PKCS#8, PKCS#1 or SEC1)",
            settings.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (settings.client_auth, &settings.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => anyhow::bail!(
            "--tls-client-auth requested or required needs --tls-ca, the CA client certificates chain to"
        ),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("read the TLS CA {}", ca.display()))?
            {
                let cert = cert.with_context(|| format!("parse the TLS CA {}", ca.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("add a CA certificate of {}", ca.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().context("the client verifier")?)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    Ok(Arc::new(config))
}

impl TlsServer {
    pub fn new(settings: TlsSettings) -> anyhow::Result<TlsServer> {
        let config = load_config(&settings)?;
        let stamps = stamps(&settings);
        Ok(TlsServer {
            settings,
            current: RwLock::new((config, stamps)),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        tokio_rustls::TlsAcceptor::from(current.0.clone())
    }

    /// Loads the files again if any changed since the last load. A failed reload keeps
    /// the previous configuration (and says why); `Ok(true)`: reloaded.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamps(&self.settings);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == now {
            return Ok(false);
        }
        let result = load_config(&self.settings);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // Remember the stamps either way, so a broken file is reported once per change.
        current.1 = now;
        current.0 = result?;
        Ok(true)
    }

    /// The principal of a connection's client certificate: `Ok(None)` without one, an
    /// error when no mapping rule matches its subject.
    pub fn principal(&self, conn: &rustls::ServerConnection) -> Result<Option<Principal>, String> {
        let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
            return Ok(None);
        };
        let dn = subject_dn(cert).ok_or("the client certificate's subject does not parse")?;
        match self.settings.principal_rules.map(&dn) {
            Some(name) => Ok(Some(Principal::user(name))),
            None => Err(format!(
                "no --tls-principal-mapping-rules rule matches the client certificate subject '{dn}'"
            )),
        }
    }

    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.settings.cert),
            Some(&self.settings.key),
            self.settings.ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_rules_behave_as_kafkas() {
        let rules: PrincipalRules =
            "RULE:^CN=([^,]*),OU=ops.*$/$1-ops/L, RULE:^CN=([^,]*).*$/$1/,DEFAULT"
                .parse()
                .unwrap();
        assert_eq!(
            rules.map("CN=Alice,OU=ops,O=x").as_deref(),
            Some("alice-ops")
        );
        assert_eq!(rules.map("CN=bob,O=Example").as_deref(), Some("bob"));
        assert_eq!(rules.map("O=Example").as_deref(), Some("O=Example"));
        let strict: PrincipalRules = "RULE:^CN=(.*)$/$1/U".parse().unwrap();
        assert_eq!(strict.map("CN=carol").as_deref(), Some("CAROL"));
        assert_eq!(strict.map("O=nobody"), None, "no rule, no DEFAULT: refused");
        let slash: PrincipalRules = r"RULE:^CN=(.*)\/x$/$1/".parse().unwrap();
        assert_eq!(slash.map("CN=a/x").as_deref(), Some("a"));
        assert!("RULE:^CN=(.*)$".parse::<PrincipalRules>().is_err());
        assert!("RULE:(/x/".parse::<PrincipalRules>().is_err());
        assert!("NONSENSE".parse::<PrincipalRules>().is_err());
        assert_eq!(
            PrincipalRules::default().map("CN=x").as_deref(),
            Some("CN=x")
        );
    }

    #[test]
    fn subjects_print_as_rfc_2253_names() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()).as_deref(),
            Some(r"CN=alice,O=Example\, Inc")
        );
        assert_eq!(subject_dn(b"not a certificate"), None);
    }
}
