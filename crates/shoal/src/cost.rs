//! `shoal cost`: a month of Shoal beside a month of a three-zone Apache Kafka cluster for
//! the same workload, at a cloud's list prices (`prices.json`, editable), with the
//! arithmetic of every line shown so a reader can check it or redo it with other numbers.
//!
//! Shoal's object-store requests come from a model of what the agents do (one PUT per
//! agent per flush; compaction reading each flushed object once and writing 64 MiB
//! objects; at most one GET per 4 MiB chunk per zone for reads), or, with `--metrics`,
//! from what running agents *measured*: their PUTs and GETs per MB produced, scaled to
//! the workload. Kafka's bill is inter-zone replication and client traffic plus
//! replicated disks. A month is 30 days; GB and MB are 10^9 and 10^6 bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The list prices shipped with the binary.
pub const DEFAULT_PRICES: &str = include_str!("prices.json");

const MONTH_S: f64 = 30.0 * 24.0 * 3600.0;
const MONTH_H: f64 = 30.0 * 24.0;
const MB: f64 = 1e6;
/// Shoal's default largest flush object (`--batch-max-bytes`, 8 MiB).
const FLUSH_MAX: f64 = 8.0 * 1048576.0;
/// Compaction's default target object size (`--compaction-target-bytes`, 64 MiB).
const COMPACTED: f64 = 64.0 * 1048576.0;
/// The read path's chunk (one GET each).
const CHUNK: f64 = 4.0 * 1048576.0;

/// One cloud's prices (US dollars).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prices {
    pub object_store: String,
    pub put_per_1000: f64,
    pub get_per_1000: f64,
    pub storage_gb_month: f64,
    pub inter_zone_gb: f64,
    #[serde(default)]
    pub inter_zone_note: String,
    pub disk: String,
    pub disk_gb_month: f64,
    pub instance: String,
    pub instance_hour: f64,
}

/// The object-store request prices the agents' web console estimates with: the
/// built-in AWS S3 list prices.
pub fn console_prices() -> Option<shoal_agent::console::RequestPrices> {
    let all = parse_prices(DEFAULT_PRICES).ok()?;
    let aws = all.get("aws")?;
    Some(shoal_agent::console::RequestPrices {
        label: format!("AWS {} list prices", aws.object_store),
        put_per_1000: aws.put_per_1000,
        get_per_1000: aws.get_per_1000,
    })
}

/// Every cloud of a price file, by name.
pub fn parse_prices(text: &str) -> anyhow::Result<BTreeMap<String, Prices>> {
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).context("the price file is not a JSON object")?;
    let mut out = BTreeMap::new();
    for (name, v) in raw {
        if name.starts_with('_') {
            continue;
        }
        let p: Prices = serde_json::from_value(v)
            .with_context(|| format!("prices for '{name}': every field of the shipped file (shoal cost --print-prices) is needed"))?;
        out.insert(name, p);
    }
    Ok(out)
}

/// What the cluster does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// MB/s produced (as the clients send it, after their compression).
    pub write_mb_s: f64,
    /// How many consumer groups read each byte.
    pub fan_out: f64,
    pub retention: Duration,
    pub partitions: u64,
    pub zones: u64,
    pub agents: u64,
    pub batch_timeout: Duration,
    pub kafka_brokers: u64,
    pub replication: u64,
}

/// Object-store requests per MB produced, measured by running agents.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub puts_per_mb: f64,
    pub gets_per_mb: f64,
    /// Where the figures came from, for the report.
    pub source: String,
}

/// One line of a bill: what, how it was computed, and dollars a month.
#[derive(Debug, Clone)]
pub struct Line {
    pub what: String,
    pub arithmetic: String,
    pub dollars: f64,
}

#[derive(Debug, Clone)]
pub struct Estimate {
    pub shoal: Vec<Line>,
    pub kafka: Vec<Line>,
    /// Kafka's inter-zone traffic, which Shoal's zone-aware clients do not cause.
    pub inter_zone_avoided: f64,
}

impl Estimate {
    pub fn shoal_total(&self) -> f64 {
        self.shoal.iter().map(|l| l.dollars).sum()
    }
    pub fn kafka_total(&self) -> f64 {
        self.kafka.iter().map(|l| l.dollars).sum()
    }
}

fn line(what: impl Into<String>, arithmetic: String, dollars: f64) -> Line {
    Line {
        what: what.into(),
        arithmetic,
        dollars,
    }
}

/// Dollars, rounded to cents, with thousands separators.
pub fn usd(x: f64) -> String {
    let cents = (x * 100.0).round() as i64;
    let (whole, frac) = (cents / 100, (cents % 100).abs());
    let digits = whole.abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}${grouped}.{frac:02}")
}

/// A whole number with thousands separators.
fn count(x: f64) -> String {
    let d = usd(x.round());
    d.trim_start_matches('$')
        .trim_end_matches(".00")
        .to_string()
}

/// A number with up to `decimals` decimals, trailing zeros dropped.
fn num(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A month of `per_s` object-store requests of kind `op` at `per_1000` dollars.
fn requests(store: &str, op: &str, per_s: f64, how: &str, per_1000: f64) -> Line {
    let month = per_s * MONTH_S;
    line(
        format!("{store} {op}s"),
        format!(
            "{} {op}/s ({how}) x 2,592,000 s = {} {op}s x ${}/1000",
            num(per_s, 2),
            count(month),
            num(per_1000, 6)
        ),
        month / 1000.0 * per_1000,
    )
}

/// The month of both systems for `w` at prices `p`.
pub fn estimate(w: &Workload, p: &Prices, measured: Option<&Measured>) -> Estimate {
    let write = w.write_mb_s;
    let written_gb_month = write * MB * MONTH_S / 1e9;
    let retained_gb = write * MB * w.retention.as_secs_f64() / 1e9;
    let zones = w.zones.max(1) as f64;
    let agents = w.agents.max(1) as f64;

    let mut shoal = Vec::new();
    let (puts_s, gets_s, how_puts, how_gets) = match measured {
        Some(m) => (
            m.puts_per_mb * write,
            m.gets_per_mb * write,
            format!("measured: {}", m.source),
            "measured, as above".to_string(),
        ),
        None => {
            let per_agent = write * MB / agents;
            let flushes = (1.0 / w.batch_timeout.as_secs_f64()).max(per_agent / FLUSH_MAX);
            let flush_puts = agents * flushes;
            let compaction_puts = write * MB / COMPACTED;
            // Compaction reads each flushed object once; readers get each 4 MiB chunk
            // at most once per zone (the agents of a zone share their caches).
            let read_gets = zones * write * MB / CHUNK;
            (
                flush_puts + compaction_puts,
                flush_puts + read_gets,
                format!(
                    "{} agents x {} flushes/s, + {} MB/s / 64 MiB compacted",
                    num(agents, 0),
                    num(flushes, 2),
                    num(write, 2),
                ),
                format!(
                    "compaction reads the {} flushed objects/s, + {} zones x {} MB/s / 4 MiB chunks",
                    num(flush_puts, 2),
                    num(zones, 0),
                    num(write, 2),
                ),
            )
        }
    };
    shoal.push(requests(
        &p.object_store,
        "PUT",
        puts_s,
        &how_puts,
        p.put_per_1000,
    ));
    shoal.push(requests(
        &p.object_store,
        "GET",
        gets_s,
        &how_gets,
        p.get_per_1000,
    ));
    shoal.push(line(
        format!("{} storage", p.object_store),
        format!(
            "{} MB/s x {} s retention = {} GB (one copy; the store replicates) x ${}/GB-month",
            num(write, 2),
            count(w.retention.as_secs_f64()),
            count(retained_gb),
            num(p.storage_gb_month, 4)
        ),
        retained_gb * p.storage_gb_month,
    ));
    shoal.push(line(
        "agents",
        format!(
            "{} x {} at ${}/h x 720 h",
            num(agents, 0),
            p.instance,
            num(p.instance_hour, 4)
        ),
        agents * p.instance_hour * MONTH_H,
    ));
    shoal.push(line(
        "inter-zone traffic",
        "none: clients name their zone (client.id shoal_az=...) and use that zone's agents; \
         the object store is regional"
            .to_string(),
        0.0,
    ));

    let mut kafka = Vec::new();
    let rf = w.replication.max(1) as f64;
    let cross = (zones - 1.0) / zones;
    let produce_gb = written_gb_month * cross;
    let replicate_gb = written_gb_month * (rf - 1.0);
    let consume_gb = written_gb_month * w.fan_out * cross;
    let inter_zone = (produce_gb + replicate_gb + consume_gb) * p.inter_zone_gb;
    kafka.push(line(
        "inter-zone: producers to leaders",
        format!(
            "{} GB written x {}/{} of leaders in another zone = {} GB x ${}/GB",
            count(written_gb_month),
            num(zones - 1.0, 0),
            num(zones, 0),
            count(produce_gb),
            num(p.inter_zone_gb, 4)
        ),
        produce_gb * p.inter_zone_gb,
    ));
    kafka.push(line(
        "inter-zone: replication",
        format!(
            "{} GB written x {} followers in other zones = {} GB x ${}/GB",
            count(written_gb_month),
            num(rf - 1.0, 0),
            count(replicate_gb),
            num(p.inter_zone_gb, 4)
        ),
        replicate_gb * p.inter_zone_gb,
    ));
    kafka.push(line(
        "inter-zone: consumers from leaders",
        format!(
            "{} GB x fan-out {} x {}/{} in another zone = {} GB x ${}/GB (no follower fetching)",
            count(written_gb_month),
            num(w.fan_out, 2),
            num(zones - 1.0, 0),
            num(zones, 0),
            count(consume_gb),
            num(p.inter_zone_gb, 4)
        ),
        consume_gb * p.inter_zone_gb,
    ));
    let disk_gb = retained_gb * rf;
    kafka.push(line(
        format!("{} disks", p.disk),
        format!(
            "{} GB retained x {} replicas = {} GB x ${}/GB-month (no free-space headroom)",
            count(retained_gb),
            num(rf, 0),
            count(disk_gb),
            num(p.disk_gb_month, 4)
        ),
        disk_gb * p.disk_gb_month,
    ));
    kafka.push(line(
        "brokers",
        format!(
            "{} x {} at ${}/h x 720 h",
            w.kafka_brokers,
            p.instance,
            num(p.instance_hour, 4)
        ),
        w.kafka_brokers as f64 * p.instance_hour * MONTH_H,
    ));
    Estimate {
        shoal,
        kafka,
        inter_zone_avoided: inter_zone,
    }
}

/// The report `shoal cost` prints.
pub fn render(cloud: &str, w: &Workload, p: &Prices, e: &Estimate) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Workload: {} MB/s written, fan-out {}, retention {}, {} partitions, {} zones; \
         Shoal: {} agents, {} batch timeout; Kafka: {} brokers, replication {}.\n",
        num(w.write_mb_s, 2),
        num(w.fan_out, 2),
        humantime(w.retention),
        w.partitions,
        w.zones,
        w.agents,
        humantime(w.batch_timeout),
        w.kafka_brokers,
        w.replication
    ));
    out.push_str(&format!(
        "Prices: {cloud} ({}, {}, {}); a month is 30 days.\n\n",
        p.object_store, p.disk, p.instance
    ));
    let width = e
        .shoal
        .iter()
        .chain(&e.kafka)
        .map(|l| l.what.len())
        .max()
        .unwrap_or(0);
    for (title, lines, total) in [
        ("Shoal", &e.shoal, e.shoal_total()),
        ("Apache Kafka, 3 zones", &e.kafka, e.kafka_total()),
    ] {
        out.push_str(&format!("{title}, per month\n"));
        for l in lines.iter() {
            out.push_str(&format!(
                "  {:<width$}  {:>12}   {}\n",
                l.what,
                usd(l.dollars),
                l.arithmetic
            ));
        }
        out.push_str(&format!("  {:<width$}  {:>12}\n\n", "total", usd(total)));
    }
    out.push_str(&format!(
        "Inter-zone traffic avoided: {} a month{}.\n",
        usd(e.inter_zone_avoided),
        if p.inter_zone_note.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.inter_zone_note)
        }
    ));
    let (s, k) = (e.shoal_total(), e.kafka_total());
    if s > 0.0 {
        out.push_str(&format!(
            "Shoal costs {} of Kafka's bill ({} vs {}).\n",
            format_args!("{:.0}%", 100.0 * s / k.max(f64::MIN_POSITIVE)),
            usd(s),
            usd(k)
        ));
    }
    out.push_str(&format!(
        "Partitions ({}) change neither bill here: Shoal writes one object per agent per \
         flush, whatever the partitions.\n",
        w.partitions
    ));
    out
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// Sums `series{labels}` samples of a Prometheus text page: by exact label text.
fn samples(page: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for l in page.lines() {
        if l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.rsplit_once(' ') {
            if let Ok(v) = v.trim().parse::<f64>() {
                *out.entry(k.trim().to_string()).or_default() += v;
            }
        }
    }
    out
}

/// Requests per MB produced from agents' metrics pages (summed over the agents).
pub fn measured_from_pages(pages: &[(String, String)]) -> anyhow::Result<Measured> {
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for (_, page) in pages {
        for (k, v) in samples(page) {
            *total.entry(k).or_default() += v;
        }
    }
    let get = |k: &str| total.get(k).copied().unwrap_or(0.0);
    let produced_mb = get("shoal_produced_bytes_total") / MB;
    if produced_mb < 1.0 {
        bail!(
            "the agents have produced {} MB so far; run some load through them first \
             (shoal_produced_bytes_total), or leave out --metrics to use the model",
            num(produced_mb, 3)
        );
    }
    let puts = get("shoal_object_store_requests_total{op=\"put\"}")
        + get("shoal_compaction_total{what=\"puts\"}");
    let gets = get("shoal_object_store_requests_total{op=\"get\"}")
        + get("shoal_compaction_total{what=\"gets\"}");
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    Ok(Measured {
        puts_per_mb: puts / produced_mb,
        gets_per_mb: gets / produced_mb,
        source: format!(
            "{} PUTs and {} GETs per MB over {} MB at {}",
            num(puts / produced_mb, 3),
            num(gets / produced_mb, 3),
            num(produced_mb, 0),
            names.join(", ")
        ),
    })
}

/// GETs `url` (`http://host:port/path`) and returns the body.
pub fn http_get(url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--metrics {url}: give an http:// URL of an agent's --metrics-listen, e.g. http://127.0.0.1:9100/metrics"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let mut s = std::net::TcpStream::connect(hostport).with_context(|| {
        format!("connect to {hostport} for {url}: is an agent's --metrics-listen there?")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.take(64 << 20).read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        bail!("{url} answered '{status}' (a metrics token is given with --metrics-token)");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws() -> Prices {
        parse_prices(DEFAULT_PRICES).unwrap()["aws"].clone()
    }

    fn workload() -> Workload {
        Workload {
            write_mb_s: 10.0,
            fan_out: 2.0,
            retention: Duration::from_secs(7 * 86400),
            partitions: 100,
            zones: 3,
            agents: 3,
            batch_timeout: Duration::from_millis(250),
            kafka_brokers: 3,
            replication: 3,
        }
    }

    fn find<'a>(lines: &'a [Line], what: &str) -> &'a Line {
        lines.iter().find(|l| l.what.contains(what)).unwrap()
    }

    fn cents(x: f64) -> i64 {
        (x * 100.0).round() as i64
    }

    /// The hand-computed example of docs/operations.md ("What it costs").
    #[test]
    fn the_documented_example_by_hand() {
        let e = estimate(&workload(), &aws(), None);
        // 3 agents x 4 flushes/s = 12 PUT/s, + 10 MB/s / 64 MiB = 0.149 PUT/s of
        // compaction: 12.149 x 2,592,000 = 31,490,238 PUTs x $0.005/1000 = $157.45.
        assert_eq!(cents(find(&e.shoal, "PUTs").dollars), 15745);
        // GETs: 12 (compaction) + 3 zones x 10 MB/s / 4 MiB (7.153) = 19.153/s
        // x 2,592,000 = 49,643,429 x $0.0004/1000 = $19.86.
        assert_eq!(cents(find(&e.shoal, "GETs").dollars), 1986);
        // 10 MB/s x 604,800 s = 6,048 GB x $0.023 = $139.10.
        assert_eq!(cents(find(&e.shoal, "storage").dollars), 13910);
        // 3 x $0.096 x 720 = $207.36.
        assert_eq!(cents(find(&e.shoal, "agents").dollars), 20736);
        assert_eq!(find(&e.shoal, "inter-zone").dollars, 0.0);
        // Kafka: 25,920 GB written a month. Producers 2/3: 17,280 GB; replication x2:
        // 51,840 GB; consumers 25,920 x 2 x 2/3 = 34,560 GB; at $0.02/GB.
        assert_eq!(cents(find(&e.kafka, "producers").dollars), 34560);
        assert_eq!(cents(find(&e.kafka, "replication").dollars), 103680);
        assert_eq!(cents(find(&e.kafka, "consumers").dollars), 69120);
        // Disks: 6,048 GB x 3 = 18,144 GB x $0.08 = $1,451.52.
        assert_eq!(cents(find(&e.kafka, "disks").dollars), 145152);
        assert_eq!(cents(find(&e.kafka, "brokers").dollars), 20736);
        assert_eq!(cents(e.inter_zone_avoided), 34560 + 103680 + 69120);
        assert_eq!(cents(e.shoal_total()), 15745 + 1986 + 13910 + 20736);
        let text = render("aws", &workload(), &aws(), &e);
        assert!(text.contains("$1,451.52"), "{text}");
        assert!(
            text.contains("Inter-zone traffic avoided: $2,073.60"),
            "{text}"
        );
    }

    #[test]
    fn a_busy_agent_flushes_by_size() {
        // 300 MB/s on 3 agents: 100 MB/s each fills 8 MiB objects 11.9 times a second,
        // more often than the 4 batch timeouts.
        let w = Workload {
            write_mb_s: 300.0,
            ..workload()
        };
        let e = estimate(&w, &aws(), None);
        let flushes = 100.0 * MB / FLUSH_MAX;
        let puts = (3.0 * flushes + 300.0 * MB / COMPACTED) * MONTH_S;
        assert_eq!(
            cents(find(&e.shoal, "PUTs").dollars),
            cents(puts / 1000.0 * 0.005)
        );
    }

    #[test]
    fn measured_requests_replace_the_model() {
        let page = "# HELP x\nshoal_produced_bytes_total 500000000\n\
                    shoal_object_store_requests_total{op=\"put\"} 600\n\
                    shoal_object_store_requests_total{op=\"get\"} 100\n\
                    shoal_compaction_total{what=\"puts\"} 10\n\
                    shoal_compaction_total{what=\"gets\"} 300\n";
        let m = measured_from_pages(&[
            ("a".into(), page.to_string()),
            ("b".into(), page.to_string()),
        ])
        .unwrap();
        // 1,220 PUTs and 800 GETs over 1,000 MB.
        assert_eq!(m.puts_per_mb, 1.22);
        assert_eq!(m.gets_per_mb, 0.8);
        let e = estimate(&workload(), &aws(), Some(&m));
        // 12.2 PUT/s x 2,592,000 = 31,622,400 x $0.005/1000 = $158.11.
        assert_eq!(cents(find(&e.shoal, "PUTs").dollars), 15811);
        let idle = "shoal_produced_bytes_total 10\n";
        let err = measured_from_pages(&[("a".into(), idle.into())]).unwrap_err();
        assert!(err.to_string().contains("run some load"), "{err}");
    }

    #[test]
    fn prices_files_are_checked() {
        let all = parse_prices(DEFAULT_PRICES).unwrap();
        assert_eq!(
            all.keys().map(String::as_str).collect::<Vec<_>>(),
            ["aws", "azure", "gcp"]
        );
        let err = parse_prices(r#"{"mine": {"put_per_1000": 1}}"#).unwrap_err();
        assert!(format!("{err:#}").contains("prices for 'mine'"), "{err:#}");
        assert!(parse_prices("[1]").is_err());
    }

    #[test]
    fn dollars_read_well() {
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(1234567.891), "$1,234,567.89");
        assert_eq!(usd(999.999), "$1,000.00");
        assert_eq!(usd(12.3), "$12.30");
    }
}
