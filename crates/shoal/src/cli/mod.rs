//! The admin CLI in the style of `rpk`: `shoal topics`, `produce`, `consume`, `groups`,
//! `agents` and `diagnose-connection`, against any bootstrap address, over TLS and SASL
//! when asked. Each command is one blocking run of [`crate::client::Conn`] requests that
//! prints a table or a line per record on stdout; progress goes to stderr, and only when
//! stderr is a terminal.
//!
//! This module holds what the commands share: the connection flags ([`ConnectArgs`]),
//! Kafka error codes in words ([`code_name`]), a per-leader connection pool
//! ([`Leaders`]) and the progress line ([`Progress`]). It must not hold a command's
//! logic; that lives in the command's own module.

pub mod agents;
pub mod consume;
pub mod diagnose;
pub mod groups;
pub mod produce;
pub mod topics;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Conn, Mechanism, Sasl, Security};

/// Metadata version the CLI sends (topics by name, cluster id and controller).
pub const METADATA_V: i16 = 12;

/// How to reach the cluster: the flags every admin command takes.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// Address (host:port) of any agent.
    #[arg(
        long,
        env = "SHOAL_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    /// Connect over TLS (the listener is SSL or SASL_SSL). Implied by --tls-ca.
    #[arg(long, env = "SHOAL_TLS", global = true)]
    pub tls: bool,
    /// PEM CA certificates to trust for TLS [default: the system's CA bundle].
    #[arg(long, env = "SHOAL_TLS_CA", global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "SHOAL_SASL_MECHANISM", global = true)]
    pub sasl_mechanism: Option<Mechanism>,
    /// SASL user name.
    #[arg(long, env = "SHOAL_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// SASL password (prefer the environment variable to the command line).
    #[arg(
        long,
        env = "SHOAL_SASL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// The client.id of every request; `shoal_az=ZONE` in it asks for agents of that
    /// zone.
    #[arg(
        long,
        env = "SHOAL_CLIENT_ID",
        default_value = "shoal-cli",
        global = true
    )]
    pub client_id: String,
}

impl ConnectArgs {
    /// The TLS and SASL settings the flags describe.
    pub fn security(&self) -> anyhow::Result<Security> {
        let tls = if self.tls || self.tls_ca.is_some() {
            Some(Security::tls_config(self.tls_ca.as_ref())?)
        } else {
            None
        };
        let sasl = match (&self.sasl_mechanism, &self.sasl_username, &self.sasl_password) {
            (None, None, None) => None,
            (Some(m), Some(u), Some(p)) => Some(Sasl {
                mechanism: *m,
                username: u.clone(),
                password: p.clone(),
            }),
            (None, _, _) => {
                bail!("--sasl-username and --sasl-password need --sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            }
            _ => bail!("--sasl-mechanism needs --sasl-username and --sasl-password (or SHOAL_SASL_USERNAME and SHOAL_SASL_PASSWORD)"),
        };
        Ok(Security {
            tls,
            sasl,
            client_id: self.client_id.clone(),
        })
    }

    /// A connection to the bootstrap agent.
    pub fn open(&self) -> anyhow::Result<Conn> {
        Conn::open_with(&self.bootstrap, &self.security()?)
    }
}

/// A Kafka error code in words, as Kafka's documentation spells it:
/// `UNKNOWN_TOPIC_OR_PARTITION (3)`.
pub fn code_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(kafka_protocol::error::ResponseError::Unknown(c)) => format!("error code {c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::new();
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            format!("{out} ({code})")
        }
    }
}

/// Fails with `what failed: NAME (code): message` unless `code` is 0.
pub fn check(code: i16, message: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    match message.map(|m| m.as_str()).filter(|m| !m.is_empty()) {
        Some(m) => bail!("{what} failed: {}: {m}", code_name(code)),
        None => bail!("{what} failed: {}", code_name(code)),
    }
}

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// `k=v` of a repeatable flag.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// Metadata for `topics` (every topic when `None`).
pub fn metadata(c: &mut Conn, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
    c.call(
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            })),
        METADATA_V,
    )
    .context("ask for cluster metadata")
}

/// One topic's partitions and their leaders, from Metadata; fails when the topic does
/// not exist.
pub fn partition_leaders(
    c: &mut Conn,
    topic: &str,
) -> anyhow::Result<(BTreeMap<i32, i32>, Leaders)> {
    let md = metadata(c, Some(&[topic]))?;
    let t = md.topics.first().context("Metadata answered no topic")?;
    if t.error_code == 3 {
        bail!("topic {topic} does not exist (see `shoal topics list`, or create it with `shoal topics create {topic}`)");
    }
    check(t.error_code, None, &format!("Metadata of topic {topic}"))?;
    let leaders = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    Ok((leaders, Leaders::from_metadata(&md)))
}

/// A connection to `group`'s coordinator (FindCoordinator, then its advertised address).
pub fn coordinator(c: &mut Conn, args: &ConnectArgs, group: &str) -> anyhow::Result<Conn> {
    let r = c.call(
        &kafka_protocol::messages::FindCoordinatorRequest::default()
            .with_key(sb(group))
            .with_key_type(0),
        2,
    )?;
    check(
        r.error_code,
        r.error_message.as_ref(),
        &format!("find the coordinator of group {group}"),
    )?;
    let addr = format!("{}:{}", r.host.as_str(), r.port);
    Conn::open_with(&addr, &args.security()?).with_context(|| {
        format!("reach group {group}'s coordinator at its advertised address {addr} (check that agent's --advertise)")
    })
}

/// Connections to partition leaders, opened when first needed. Shoal agents serve any
/// partition, but a client should go where Metadata sends it (that keeps it in its zone),
/// so the CLI does too.
pub struct Leaders {
    /// Broker id → advertised host:port.
    addrs: BTreeMap<i32, String>,
    conns: BTreeMap<i32, Conn>,
}

impl Leaders {
    pub fn from_metadata(md: &MetadataResponse) -> Leaders {
        Leaders {
            addrs: md
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect(),
            conns: BTreeMap::new(),
        }
    }

    /// The connection to broker `id` (opened now if needed).
    pub fn conn(&mut self, id: i32, args: &ConnectArgs) -> anyhow::Result<&mut Conn> {
        if !self.conns.contains_key(&id) {
            let addr = self.addrs.get(&id).with_context(|| {
                format!("Metadata names leader {id} but lists no such agent; retry, or run `shoal agents`")
            })?;
            let conn = Conn::open_with(addr, &args.security()?).with_context(|| {
                format!("reach agent {id} at its advertised address {addr} (check its --advertise; `shoal diagnose-connection` shows what is reachable)")
            })?;
            self.conns.insert(id, conn);
        }
        Ok(self.conns.get_mut(&id).expect("inserted above"))
    }
}

/// A progress line on stderr for long operations, redrawn at most a few times a second,
/// and only when stderr is a terminal (a pipe or a log file gets nothing).
pub struct Progress {
    label: String,
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            enabled: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// A progress line that never draws (e.g. while records go to the same terminal).
    pub fn disabled() -> Progress {
        Progress {
            label: String::new(),
            enabled: false,
            last: None,
            drawn: false,
        }
    }

    /// Shows `done` (of `total`, when known).
    pub fn tick(&mut self, done: u64, total: Option<u64>) {
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let text = match total {
            Some(t) => format!("{}: {done}/{t}", self.label),
            None => format!("{}: {done}", self.label),
        };
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_read_as_kafka_names_them() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(code_name(36), "TOPIC_ALREADY_EXISTS (36)");
        assert_eq!(code_name(0), "NONE (0)");
        assert!(code_name(-1).starts_with("UNKNOWN_SERVER_ERROR"));
    }

    #[test]
    fn key_values_parse() {
        assert_eq!(
            parse_kv("retention.ms=1000").unwrap(),
            ("retention.ms".into(), "1000".into())
        );
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }
}
