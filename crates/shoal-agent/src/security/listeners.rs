//! Named listeners, as Kafka's `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map` configure them.
//!
//! Each listener has a name, a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT,
//! SASL_SSL), the address it binds and the address clients are told to connect to.
//! Metadata answers a client with the addresses of the listener it connected through,
//! so a client on the TLS listener is never sent to a plaintext port. A name that is a
//! protocol's name maps to that protocol unless the map says otherwise, as in Kafka.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(format!(
                "unknown security protocol '{other}'; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper case, unique among the agent's listeners (`PLAINTEXT`, `INTERNAL`, ...).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// `host:port` clients are told; `None`: the bound address.
    pub advertise: Option<String>,
}

/// `NAME://HOST:PORT` pairs, comma-separated (`--listeners`, `--advertised-listeners`).
fn parse_endpoints(s: &str, flag: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("{flag}: '{item}' is not NAME://HOST:PORT"))?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{flag}: listener name '{name}' must be letters, digits and '_'"
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("{flag}: listener {name} is named twice"));
        }
        out.push((name, addr.trim().to_string()));
    }
    if out.is_empty() {
        return Err(format!("{flag}: no listener given"));
    }
    Ok(out)
}

/// Builds the listener list from the three flags. `map` is `NAME:PROTOCOL,...`.
pub fn parse_listeners(
    listeners: &str,
    advertised: Option<&str>,
    map: Option<&str>,
) -> Result<Vec<ListenerSpec>, String> {
    let mut protocols: Vec<(String, SecurityProtocol)> = Vec::new();
    for item in map
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (name, proto) = item.split_once(':').ok_or_else(|| {
            format!("--listener-security-protocol-map: '{item}' is not NAME:PROTOCOL")
        })?;
        protocols.push((name.trim().to_ascii_uppercase(), proto.parse()?));
    }
    let advertised = match advertised {
        Some(a) if !a.trim().is_empty() => parse_endpoints(a, "--advertised-listeners")?,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (name, addr) in parse_endpoints(listeners, "--listeners")? {
        let protocol = match protocols.iter().find(|(n, _)| *n == name) {
            Some((_, p)) => *p,
            None => name.parse().map_err(|_| {
                format!(
                    "--listeners: listener {name} has no security protocol; name it after one \
                     (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) or map it with \
                     --listener-security-protocol-map {name}:SASL_SSL"
                )
            })?,
        };
        let bind = resolve_bind(&addr).map_err(|e| format!("--listeners: {name}://{addr}: {e}"))?;
        let advertise = advertised
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.clone());
        out.push(ListenerSpec {
            name,
            protocol,
            bind,
            advertise,
        });
    }
    if let Some((n, _)) = advertised
        .iter()
        .find(|(n, _)| !out.iter().any(|l| l.name == *n))
    {
        return Err(format!(
            "--advertised-listeners names {n}, which --listeners does not define"
        ));
    }
    Ok(out)
}

/// `HOST:PORT` to bind; an empty host (`://:9092`) binds every interface, as in Kafka.
fn resolve_bind(addr: &str) -> Result<SocketAddr, String> {
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// `(host, port)` of a `host:port` string (IPv6 brackets removed); port 9092 if absent.
pub fn split_host_port(adv: &str) -> (String, i32) {
    match adv.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().unwrap_or(9092),
        ),
        None => (adv.to_string(), 9092),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_take_their_protocol_from_the_name_or_the_map() {
        let l = parse_listeners(
            "PLAINTEXT://127.0.0.1:9092, sasl_ssl://127.0.0.1:9093,INTERNAL://127.0.0.1:0",
            Some("SASL_SSL://kafka.example.com:443"),
            Some("INTERNAL:SSL"),
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l[1].name, "SASL_SSL");
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l[1].advertise.as_deref(), Some("kafka.example.com:443"));
        assert_eq!(l[2].protocol, SecurityProtocol::Ssl);
        assert_eq!(l[2].advertise, None);
        assert!(l[1].protocol.tls() && l[1].protocol.sasl());
    }

    #[test]
    fn bad_listener_flags_say_what_is_wrong() {
        let e = parse_listeners("INTERNAL://127.0.0.1:1", None, None).unwrap_err();
        assert!(
            e.contains("--listener-security-protocol-map INTERNAL:"),
            "{e}"
        );
        let e = parse_listeners("PLAINTEXT://a:1,PLAINTEXT://b:2", None, None).unwrap_err();
        assert!(e.contains("named twice"), "{e}");
        let e = parse_listeners("127.0.0.1:9092", None, None).unwrap_err();
        assert!(e.contains("NAME://HOST:PORT"), "{e}");
        let e = parse_listeners("SSL://127.0.0.1:1", Some("SASL_SSL://x:1"), None).unwrap_err();
        assert!(e.contains("does not define"), "{e}");
        let e = parse_listeners("X://127.0.0.1:1", None, Some("X:TLS")).unwrap_err();
        assert!(e.contains("unknown security protocol"), "{e}");
        assert!(parse_listeners("", None, None).is_err());
    }

    #[test]
    fn an_empty_host_binds_every_interface() {
        let l = parse_listeners("PLAINTEXT://:9092", None, None).unwrap();
        assert_eq!(l[0].bind, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(split_host_port("[::1]:9093"), ("::1".to_string(), 9093));
        assert_eq!(split_host_port("host"), ("host".to_string(), 9092));
    }
}
