//! `shoal diagnose-connection`: checks, step by step, what a Kafka client on this
//! machine will see, and prints a verdict and a fix for each step:
//!
//! 1. TCP connect to the bootstrap address;
//! 2. the Kafka handshake (TLS and SASL when asked for) and ApiVersions, with the
//!    versions of the APIs clients need;
//! 3. round-trip latency of a few ApiVersions (min / p50 / max);
//! 4. Metadata: every advertised agent address resolves and answers from here
//!    (clients connect to those addresses, not to the bootstrap one);
//! 5. zone routing: which zone the `--client-id` names (`shoal_az=ZONE`, parsed by the
//!    agent's own [`shoal_agent::cluster::client_zone`]) and which agents that client
//!    is shown.
//!
//! It exits non-zero when a check fails; warnings do not fail it.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Args;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{metadata, ConnectArgs};
use crate::client::Conn;

/// ApiVersions round trips timed for the latency line.
const PINGS: usize = 5;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    shoal diagnose-connection --bootstrap 10.0.0.5:9092\n  \
    shoal diagnose-connection --bootstrap kafka.example.com:9093 --tls --client-id 'app,shoal_az=us-east-1a'")]
pub struct DiagnoseCmd {
    #[command(flatten)]
    pub conn: ConnectArgs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// The printed report; counts failures.
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn line(&mut self, v: Verdict, what: &str, detail: &str, fix: Option<&str>) {
        let tag = match v {
            Verdict::Ok => "[ OK ]",
            Verdict::Warn => {
                self.warned += 1;
                "[WARN]"
            }
            Verdict::Fail => {
                self.failed += 1;
                "[FAIL]"
            }
        };
        println!("{tag} {what}: {detail}");
        if let Some(fix) = fix {
            println!("       fix: {fix}");
        }
    }
}

/// APIs a client needs, named as Kafka names them.
const KEY_APIS: &[(ApiKey, &str)] = &[
    (ApiKey::ApiVersions, "ApiVersions"),
    (ApiKey::Metadata, "Metadata"),
    (ApiKey::Produce, "Produce"),
    (ApiKey::Fetch, "Fetch"),
    (ApiKey::ListOffsets, "ListOffsets"),
    (ApiKey::FindCoordinator, "FindCoordinator"),
    (ApiKey::JoinGroup, "JoinGroup"),
    (ApiKey::OffsetCommit, "OffsetCommit"),
    (ApiKey::InitProducerId, "InitProducerId"),
];

fn api_versions(c: &mut Conn) -> anyhow::Result<ApiVersionsResponse> {
    c.call(
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shoal-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
        3,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn run(cmd: &DiagnoseCmd) -> anyhow::Result<()> {
    let args = &cmd.conn;
    let boot = &args.bootstrap;
    let mut r = Report {
        failed: 0,
        warned: 0,
    };
    println!("diagnosing {boot} as client.id '{}'", args.client_id);
    // 1. TCP.
    let tcp_ok = tcp_check(&mut r, "TCP connect to bootstrap", boot, "is Shoal running there and listening on that address (its --listen)? is a firewall in the way? set --bootstrap");
    if !tcp_ok {
        return finish(&r);
    }
    // 2. Handshake and ApiVersions.
    let security = args.security()?;
    let mut c = match Conn::open_with(boot, &security) {
        Ok(c) => {
            let how = match (&security.tls, &security.sasl) {
                (None, None) => "plaintext".to_string(),
                (Some(_), None) => "TLS".to_string(),
                (None, Some(s)) => format!("SASL {} as {}", s.mechanism.name(), s.username),
                (Some(_), Some(s)) => {
                    format!("TLS, SASL {} as {}", s.mechanism.name(), s.username)
                }
            };
            r.line(Verdict::Ok, "Kafka handshake", &how, None);
            c
        }
        Err(e) => {
            r.line(
                Verdict::Fail,
                "Kafka handshake",
                &format!("{e:#}"),
                Some("match the listener's protocol: --tls (and --tls-ca) for SSL listeners, --sasl-mechanism/--sasl-username/--sasl-password for SASL ones"),
            );
            return finish(&r);
        }
    };
    let mut times = Vec::new();
    let mut versions = None;
    for _ in 0..PINGS {
        let t = Instant::now();
        match api_versions(&mut c) {
            Ok(v) => {
                times.push(t.elapsed());
                versions = Some(v);
            }
            Err(e) => {
                r.line(
                    Verdict::Fail,
                    "ApiVersions",
                    &format!("{e:#}"),
                    Some("the server at that address does not answer Kafka requests; is it a Kafka listener (not the console or metrics port)?"),
                );
                return finish(&r);
            }
        }
    }
    let v = versions.expect("at least one answer");
    if v.error_code != 0 {
        r.line(
            Verdict::Fail,
            "ApiVersions",
            &super::code_name(v.error_code),
            Some("upgrade the agent, or check that the address is a Kafka listener"),
        );
    } else {
        let mut missing = Vec::new();
        let listed: Vec<String> = KEY_APIS
            .iter()
            .map(
                |(key, name)| match v.api_keys.iter().find(|k| k.api_key == *key as i16) {
                    Some(k) => format!("{name} {}-{}", k.min_version, k.max_version),
                    None => {
                        missing.push(*name);
                        format!("{name} missing")
                    }
                },
            )
            .collect();
        let (verdict, fix) = if missing.is_empty() {
            (Verdict::Ok, None)
        } else {
            (
                Verdict::Fail,
                Some("this server lacks APIs clients need; is it a Shoal (or Kafka) agent of a current version?"),
            )
        };
        r.line(
            verdict,
            "ApiVersions",
            &format!("{} APIs; {}", v.api_keys.len(), listed.join(", ")),
            fix,
        );
    }
    times.sort();
    let (min, p50, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    let slow = p50 > Duration::from_millis(100);
    r.line(
        if slow { Verdict::Warn } else { Verdict::Ok },
        "round-trip latency",
        &format!("{PINGS} ApiVersions: min {}, p50 {}, max {}", ms(min), ms(p50), ms(max)),
        slow.then_some("over 100 ms to the agent: run clients in the agents' region, or check the network path"),
    );
    // 4. Advertised addresses.
    let md = match metadata(&mut c, Some(&[])) {
        Ok(md) => md,
        Err(e) => {
            r.line(
                Verdict::Fail,
                "Metadata",
                &format!("{e:#}"),
                Some("the agent could not list the cluster; check its logs"),
            );
            return finish(&r);
        }
    };
    if md.brokers.is_empty() {
        r.line(
            Verdict::Fail,
            "Metadata",
            "no agents listed for this client",
            Some("check that agents of this agent group have the produce or fetch role"),
        );
    }
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    for b in &brokers {
        let addr = format!("{}:{}", b.host.as_str(), b.port);
        let what = format!("agent {} advertised as {addr}", b.node_id.0);
        let resolved = match addr.to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                r.line(
                    Verdict::Fail,
                    &what,
                    &format!("does not resolve from here: {e}"),
                    Some("start that agent with an --advertise (or --advertised-listeners) name this machine can resolve"),
                );
                continue;
            }
        };
        let t = Instant::now();
        match Conn::open_with(&addr, &security).and_then(|mut c| api_versions(&mut c)) {
            Ok(_) => r.line(
                Verdict::Ok,
                &what,
                &format!(
                    "resolves to {}, answers ApiVersions in {}",
                    resolved
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    ms(t.elapsed())
                ),
                None,
            ),
            Err(e) => r.line(
                Verdict::Fail,
                &what,
                &format!("unreachable from here: {e:#}"),
                Some("clients connect to advertised addresses: set that agent's --advertise to an address reachable from the clients' network (or open the firewall)"),
            ),
        }
    }
    // 5. Zones.
    let zone = shoal_agent::cluster::client_zone(&args.client_id);
    let zone_of = |b: &&kafka_protocol::messages::metadata_response::MetadataResponseBroker| {
        b.rack
            .as_ref()
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty())
    };
    let seen: Vec<String> = brokers
        .iter()
        .map(|b| {
            format!(
                "{} ({})",
                b.node_id.0,
                zone_of(b).unwrap_or_else(|| "no zone".into())
            )
        })
        .collect();
    let zones: Vec<String> = brokers.iter().filter_map(zone_of).collect();
    match zone {
        Some(z) if zones.iter().any(|x| x == z) => {
            let stray = brokers.iter().filter(|b| zone_of(b).as_deref() != Some(z)).count();
            if stray == 0 {
                r.line(
                    Verdict::Ok,
                    "zone routing",
                    &format!("client.id names zone {z}; the client sees only agents of {z}: {}", seen.join(", ")),
                    None,
                );
            } else {
                r.line(
                    Verdict::Warn,
                    "zone routing",
                    &format!("client.id names zone {z}, but the client also sees agents of other zones: {}", seen.join(", ")),
                    Some("agents prefer the client's zone when they know it; check the agents' --az settings"),
                );
            }
        }
        Some(z) => r.line(
            Verdict::Warn,
            "zone routing",
            &format!(
                "client.id names zone {z}, but no agent listed is in it, so the client is sent to all: {}",
                seen.join(", ")
            ),
            Some(&format!(
                "start agents with --az {z} in that zone, or correct the client's shoal_az= (agents' zones: {})",
                if zones.is_empty() { "none set".to_string() } else { zones.join(", ") }
            )),
        ),
        None if !zones.is_empty() => r.line(
            Verdict::Warn,
            "zone routing",
            &format!("client.id names no zone; the client sees every agent: {}", seen.join(", ")),
            Some("add shoal_az=ZONE to the client's client.id (e.g. client.id=app,shoal_az=us-east-1a) to keep its traffic in its zone"),
        ),
        None => r.line(
            Verdict::Ok,
            "zone routing",
            &format!("no zones in use (client.id names none, agents have none); the client sees: {}", seen.join(", ")),
            None,
        ),
    }
    finish(&r)
}

/// Connects to `addr` over TCP and reports it; true when it connected.
fn tcp_check(r: &mut Report, what: &str, addr: &str, fix: &str) -> bool {
    let addrs = match addr.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => {
            r.line(
                Verdict::Fail,
                what,
                &format!("{addr} does not resolve: {e}"),
                Some("give --bootstrap as host:port with a host this machine can resolve"),
            );
            return false;
        }
    };
    let mut errors = Vec::new();
    for a in &addrs {
        let t = Instant::now();
        match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
            Ok(_) => {
                r.line(
                    Verdict::Ok,
                    what,
                    &format!("connected to {a} in {}", ms(t.elapsed())),
                    None,
                );
                return true;
            }
            Err(e) => errors.push(format!("{a}: {e}")),
        }
    }
    r.line(
        Verdict::Fail,
        what,
        &format!("cannot connect to {addr} ({})", errors.join("; ")),
        Some(fix),
    );
    false
}

fn finish(r: &Report) -> anyhow::Result<()> {
    if r.failed > 0 {
        println!(
            "verdict: {} check(s) failed, {} warning(s)",
            r.failed, r.warned
        );
        anyhow::bail!(
            "{} connection check(s) failed (see the fixes above)",
            r.failed
        );
    }
    println!(
        "verdict: a client here can use this cluster ({} warning(s))",
        r.warned
    );
    Ok(())
}
