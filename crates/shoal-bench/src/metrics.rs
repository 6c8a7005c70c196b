//! Observing the server from outside: its Prometheus page and its resident memory.
//!
//! [`scrape`] fetches a Prometheus text page with one plain HTTP/1.0 GET over a tokio
//! `TcpStream` (no HTTP client crate: the page is small and the server is local), and
//! [`counter_sum`] adds up the samples of one counter whose labels match, so object-store
//! requests can be divided by the megabytes moved. [`RssSampler`] reads `VmRSS` from
//! `/proc/PID/status` every 200 ms in a background task and keeps the peak. Neither may
//! disturb the run: a failed scrape or a vanished process becomes "n/a" in the report,
//! never an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const RSS_INTERVAL: Duration = Duration::from_millis(200);

/// `host:port` and path of an `http://` URL; the path defaults to `/metrics`.
pub fn parse_http_url(url: &str) -> Result<(String, String)> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => bail!("metrics URL {url}: only http:// is supported, not {scheme}://"),
        None => url,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if authority.is_empty() {
        bail!("metrics URL {url} has no host");
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// GETs a Prometheus text page.
pub async fn scrape(url: &str) -> Result<String> {
    let (authority, path) = parse_http_url(url)?;
    let fetch = async {
        let mut stream = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("cannot connect to metrics endpoint {authority}"))?;
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h);
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_http_response(&raw)
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| anyhow!("metrics endpoint {url} did not answer within 10s"))?
        .with_context(|| format!("scrape {url}"))
}

/// The body of a 200 response, de-chunked if needed.
fn parse_http_response(raw: &[u8]) -> Result<String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("HTTP status {status_line:?}");
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).context("metrics page is not UTF-8")
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Sum of all samples of counter `name` whose labels include every pair in `labels`;
/// `None` when no sample matches.
pub fn counter_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in page.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((sample_name, sample_labels, value)) = parse_sample(line) else {
            continue;
        };
        if sample_name != name {
            continue;
        }
        let matches = labels
            .iter()
            .all(|(k, v)| sample_labels.iter().any(|(sk, sv)| sk == k && sv == v));
        if matches {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// `name{a="x",b="y"} value [timestamp]` → (name, labels, value).
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let mut chars = rest.char_indices().skip(1).peekable();
        let mut key = String::new();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    close = Some(i);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
        rest = &rest[close? + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value),
        Some("mB") => Some(value * 1024),
        Some(_) => None,
    }
}

/// Samples a process's resident memory in the background and remembers the peak.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/proc/{pid}/status");
        let task = {
            let peak_kib = peak_kib.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RSS_INTERVAL);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let Ok(status) = tokio::fs::read_to_string(&path).await else {
                        continue;
                    };
                    if let Some(kib) = parse_vm_rss_kib(&status) {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            peak_kib,
            stop,
            task,
        }
    }

    /// Takes one last sample and returns the peak in MiB, or `None` if none was read.
    pub async fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        match self.peak_kib.load(Ordering::Relaxed) {
            0 => None,
            kib => Some(kib as f64 / 1024.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP shoal_object_store_requests_total Object store requests.
# TYPE shoal_object_store_requests_total counter
shoal_object_store_requests_total{op="put",store="local"} 12
shoal_object_store_requests_total{op="get",store="local"} 30
shoal_object_store_requests_total{store="cache",op="get"} 5 1700000000000
shoal_object_store_requests_total_created{op="put"} 1.7e9
shoal_other{label="a \"quoted\" op=\"put\" value"} 99
"#;

    #[test]
    fn counters_are_summed_over_matching_labels() {
        let name = "shoal_object_store_requests_total";
        assert_eq!(counter_sum(PAGE, name, &[("op", "put")]), Some(12.0));
        assert_eq!(counter_sum(PAGE, name, &[("op", "get")]), Some(35.0));
        assert_eq!(counter_sum(PAGE, name, &[("op", "delete")]), None);
        assert_eq!(counter_sum(PAGE, "missing_total", &[]), None);
        assert_eq!(counter_sum(PAGE, "shoal_other", &[("op", "put")]), None);
        assert_eq!(
            counter_sum(
                PAGE,
                "shoal_other",
                &[("label", "a \"quoted\" op=\"put\" value")]
            ),
            Some(99.0)
        );
    }

    #[test]
    fn samples_without_labels_parse() {
        let (name, labels, value) = parse_sample("up 1").unwrap();
        assert_eq!((name, labels.len(), value), ("up", 0, 1.0));
        assert_eq!(parse_sample("x{a=\"1\"} +Inf").unwrap().2, f64::INFINITY);
        assert!(parse_sample("x{a=\"1\" 3").is_none());
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9100/metrics").unwrap(),
            ("127.0.0.1:9100".into(), "/metrics".into())
        );
        assert_eq!(
            parse_http_url("localhost:9100").unwrap(),
            ("localhost:9100".into(), "/metrics".into())
        );
        assert_eq!(
            parse_http_url("http://example/x?y=1").unwrap(),
            ("example:80".into(), "/x?y=1".into())
        );
        assert!(parse_http_url("https://example/").is_err());
    }

    #[test]
    fn http_bodies_parse_plain_and_chunked() {
        let plain = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nup 1\n";
        assert_eq!(parse_http_response(plain).unwrap(), "up 1\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nup \r\n2\r\n1\n\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), "up 1\n");
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\nnope";
        assert!(parse_http_response(missing)
            .unwrap_err()
            .to_string()
            .contains("404"));
    }

    #[test]
    fn vm_rss_parses() {
        let status = "Name:\tshoal\nVmPeak:\t  900 kB\nVmRSS:\t   123456 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss_kib(status), Some(123_456));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }
}
