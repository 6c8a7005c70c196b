//! `shoal-bench`: a load generator for any Kafka bootstrap address (Apache Kafka or Shoal).
//!
//! It speaks the Kafka protocol itself (see [`client`]) so the same binary measures both
//! systems the same way: discover the cluster and create the topic ([`cluster`]), produce
//! with pipelined requests while a tailing consumer measures end-to-end latency
//! ([`produce`], [`consume`]), read everything back as fast as possible and check the count,
//! optionally consume everything again through a consumer group of N members
//! ([`group`], `--group-consumers N`), optionally time N transactional commits and read
//! them back with read_committed ([`txn`], `--txn-commits N`), optionally watch the
//! server's object-store counters and memory ([`metrics`]), then print a block of figures
//! and one `RESULT` line ([`report`]). With `--idempotent` the producers get producer ids
//! and write sequence numbers ([`produce`], [`txn_client`]). The exit status is 0 for a
//! clean run, 1 for an error, 2 when the records read back differ from those acknowledged,
//! the group missed records or committed offsets other than the end offsets, or the
//! read_committed read did not return exactly the committed records. With
//! `--after-compaction` (needs `--metrics-url`) it waits after the catch-up read until the
//! server's background compaction has settled, measuring it ([`compaction`]), and repeats
//! the catch-up read over the merged objects (a mismatch there also exits 2).
//!
//! ```text
//! shoal-bench --bootstrap 127.0.0.1:9092 --records 500000 --record-size 1024 \
//!     --metrics-url http://127.0.0.1:9100/metrics --pid "$SERVER_PID" --label shoal
//! ```
//!
//! Every flag can also be given as an environment variable `SHOAL_BENCH_<FLAG>`
//! (e.g. `SHOAL_BENCH_BOOTSTRAP`). This process shares the machine with the server it
//! measures when both run locally: on small machines, its figures include that contention.

mod client;
mod cluster;
mod compaction;
mod consume;
mod consumer_protocol;
mod group;
mod group_client;
mod metrics;
mod produce;
mod report;
mod txn;
mod txn_client;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use kafka_protocol::records::Compression;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::metrics::{counter_sum, scrape, RssSampler};
use crate::produce::{Budget, Clock, ProduceSettings, MAX_IDEMPOTENT_IN_FLIGHT};
use crate::report::{
    AfterCompactionFigures, ConsumeFigures, Latency, ObjectStoreFigures, ProduceFigures, Report,
};
use crate::txn_client::TxnVersions;

const DEFAULT_RECORDS: u64 = 1_000_000;
const DEFAULT_BATCH_BYTES: usize = 64 * 1024;
const OBJECT_STORE_COUNTER: &str = "shoal_object_store_requests_total";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Produce, tail and read back records through the Kafka protocol and print the figures.
#[derive(Debug, Parser)]
#[command(name = "shoal-bench", version)]
struct Args {
    /// Any broker or agent of the cluster, HOST:PORT.
    #[arg(long, env = "SHOAL_BENCH_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to create (or reuse); default: a new unique name.
    #[arg(long, env = "SHOAL_BENCH_TOPIC")]
    topic: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long, env = "SHOAL_BENCH_PARTITIONS", default_value_t = 8,
          value_parser = clap::value_parser!(i32).range(1..=100_000))]
    partitions: i32,
    /// Bytes of each record value (the first 8 carry the send time).
    #[arg(long, env = "SHOAL_BENCH_RECORD_SIZE", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(8..=(16 << 20)))]
    record_size: u32,
    /// Records to produce in total [default: 1000000 unless --duration is given].
    #[arg(long, env = "SHOAL_BENCH_RECORDS")]
    records: Option<u64>,
    /// Produce for this many seconds (with --records: whichever ends first).
    #[arg(long, env = "SHOAL_BENCH_DURATION")]
    duration: Option<f64>,
    /// Concurrent producers, each with its own connection per leader.
    #[arg(long, env = "SHOAL_BENCH_PRODUCERS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    producers: u32,
    /// Records per record batch (one batch per partition per request).
    #[arg(long, env = "SHOAL_BENCH_BATCH_RECORDS")]
    batch_records: Option<usize>,
    /// Bytes of record values per record batch [default: 65536 unless --batch-records is given].
    #[arg(long, env = "SHOAL_BENCH_BATCH_BYTES")]
    batch_bytes: Option<usize>,
    /// Produce requests in flight per connection (at most 5 with --idempotent).
    #[arg(long, env = "SHOAL_BENCH_MAX_IN_FLIGHT", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_in_flight: u32,
    /// Acknowledgements: -1 (all), 1 (leader) or 0 (none, no latency figures).
    #[arg(long, env = "SHOAL_BENCH_ACKS", default_value = "-1", allow_hyphen_values = true,
          value_parser = parse_acks)]
    acks: i16,
    /// Record batch compression.
    #[arg(
        long,
        env = "SHOAL_BENCH_COMPRESSION",
        value_enum,
        default_value = "none"
    )]
    compression: CompressionArg,
    /// Prometheus page of the server, scraped before and after for object-store requests.
    #[arg(long, env = "SHOAL_BENCH_METRICS_URL")]
    metrics_url: Option<String>,
    /// Server process whose peak resident memory to report.
    #[arg(long, env = "SHOAL_BENCH_PID")]
    pid: Option<u32>,
    /// Text naming this run in the report.
    #[arg(long, env = "SHOAL_BENCH_LABEL", default_value = "shoal-bench")]
    label: String,
    /// Connections per leader for the tailing consumer.
    #[arg(long, env = "SHOAL_BENCH_TAIL_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    tail_connections: u32,
    /// Connections per leader for the catch-up read.
    #[arg(long, env = "SHOAL_BENCH_CATCH_UP_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    catch_up_connections: u32,
    /// Consumers in one consumer group that read the topic once more after the catch-up
    /// read, timing joins, rebalances and throughput (0 = no group phase).
    #[arg(long, env = "SHOAL_BENCH_GROUP_CONSUMERS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    group_consumers: u32,
    /// Idempotent producers: a producer id per connection (InitProducerId) and a sequence
    /// number per partition in every batch. Needs acks=-1.
    #[arg(long, env = "SHOAL_BENCH_IDEMPOTENT")]
    idempotent: bool,
    /// Transactions to commit one after the other after the other phases, timing EndTxn
    /// and the whole transaction, then read back with read_committed (0 = no such phase).
    #[arg(long, env = "SHOAL_BENCH_TXN_COMMITS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    txn_commits: u64,
    /// After the catch-up read, wait until the server's compaction has settled
    /// (shoal_compaction_total on the metrics page), measure it, and read everything
    /// again. Needs --metrics-url.
    #[arg(long, env = "SHOAL_BENCH_AFTER_COMPACTION")]
    after_compaction: bool,
    /// Seconds --after-compaction waits at most for compaction to settle.
    #[arg(long, env = "SHOAL_BENCH_COMPACTION_WAIT", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    compaction_wait: u64,
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(format!("acks must be -1 (all), 0 or 1, not {other}")),
    }
}

/// Produce requests in flight per connection: idempotence needs acks=-1 and allows at
/// most [`MAX_IDEMPOTENT_IN_FLIGHT`] batches per partition, and every request carries at
/// most one batch per partition.
fn in_flight_limit(args: &Args) -> Result<usize> {
    let asked = args.max_in_flight as usize;
    if !args.idempotent {
        return Ok(asked);
    }
    if args.acks != -1 {
        bail!("--idempotent needs --acks -1 (all), not {}", args.acks);
    }
    if asked > MAX_IDEMPOTENT_IN_FLIGHT {
        eprintln!(
            "note: --idempotent allows at most {MAX_IDEMPOTENT_IN_FLIGHT} requests in flight \
             per connection (one batch per partition each); using {MAX_IDEMPOTENT_IN_FLIGHT}, \
             not {asked}"
        );
        return Ok(MAX_IDEMPOTENT_IN_FLIGHT);
    }
    Ok(asked)
}

/// Records per batch from the two limits; bytes alone default to 64 KiB.
fn records_per_batch(
    record_size: usize,
    batch_records: Option<usize>,
    batch_bytes: Option<usize>,
) -> usize {
    let by_bytes = |bytes: usize| (bytes / record_size).max(1);
    match (batch_records, batch_bytes) {
        (Some(r), Some(b)) => r.max(1).min(by_bytes(b)),
        (Some(r), None) => r.max(1),
        (None, Some(b)) => by_bytes(b),
        (None, None) => by_bytes(DEFAULT_BATCH_BYTES),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            print!("{}", report.human());
            println!("{}", report.result_line());
            let mut clean = true;
            if !report.consume.matches() {
                eprintln!(
                    "MISMATCH: read back {} records but {} were acknowledged",
                    report.consume.records, report.consume.expected
                );
                clean = false;
            }
            if let Some(after) = report
                .after_compaction
                .as_ref()
                .filter(|a| !a.consume.matches())
            {
                eprintln!(
                    "MISMATCH: after compaction, read back {} records but {} were acknowledged",
                    after.consume.records, after.consume.expected
                );
                clean = false;
            }
            if let Some(group) = report.group.as_ref().filter(|g| !g.matches()) {
                for problem in &group.problems {
                    eprintln!("MISMATCH: consumer group {}: {problem}", group.group);
                }
                clean = false;
            }
            if let Some(txn) = report.txn.as_ref().filter(|t| !t.matches()) {
                for problem in &txn.problems {
                    eprintln!(
                        "MISMATCH: transactional id {}: {problem}",
                        txn.transactional_id
                    );
                }
                clean = false;
            }
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Report> {
    let record_size = args.record_size as usize;
    let records = match (args.records, args.duration) {
        (None, None) => Some(DEFAULT_RECORDS),
        (records, _) => records,
    };
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let max_in_flight = in_flight_limit(&args)?;
    if args.after_compaction && args.metrics_url.is_none() {
        bail!(
            "--after-compaction needs --metrics-url: it watches the server's \
             shoal_compaction_total counter to know when compaction has settled"
        );
    }
    let batch_records = records_per_batch(record_size, args.batch_records, args.batch_bytes);
    if batch_records * record_size > 1_000_000 {
        eprintln!(
            "warning: batches of {} bytes exceed Kafka's default 1 MB message.max.bytes",
            batch_records * record_size
        );
    }
    let topic = args.topic.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("shoal-bench-{secs}-{}", std::process::id())
    });
    let client_id = format!("shoal-bench-{}", std::process::id());

    let cluster =
        Arc::new(Cluster::discover(&args.bootstrap, &client_id, &topic, args.partitions).await?);
    eprintln!(
        "shoal-bench: {} partitions of {} on {} broker(s); {}{}",
        cluster.partitions(),
        cluster.topic,
        cluster.brokers.len(),
        cluster.versions.describe(),
        if cluster.versions_negotiated {
            ""
        } else {
            " (not negotiated)"
        }
    );
    let start_offsets = cluster
        .list_offsets(-1)
        .await
        .context("find the latest offsets before producing")?;

    let sampler = args.pid.map(RssSampler::start);
    let scrape_before = scrape_optional(args.metrics_url.as_deref()).await;

    // Tailing consumer first, so it is already waiting when the first record lands.
    let clock = Clock::new();
    let (target_tx, target_rx) = watch::channel(None);
    let tail = tokio::spawn(consume::run_tail(
        cluster.clone(),
        start_offsets.clone(),
        clock,
        target_rx,
        args.tail_connections as usize,
    ));

    let init_producer_id = if args.idempotent {
        Some(TxnVersions::init_producer_id(
            cluster.advertised.as_deref(),
        )?)
    } else {
        None
    };
    let settings = Arc::new(ProduceSettings {
        version: cluster.versions.produce,
        record_size,
        batch_records,
        max_in_flight,
        acks: args.acks,
        compression: args.compression.into(),
        init_producer_id,
    });
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let budget = Arc::new(Budget::new(records, deadline));
    eprintln!(
        "shoal-bench: producing {} with {} producer(s)...",
        match (records, args.duration) {
            (Some(n), None) => format!("{n} records"),
            (None, Some(d)) => format!("for {d} s"),
            (Some(n), Some(d)) => format!("{n} records or for {d} s"),
            (None, None) => unreachable!("records default when no duration"),
        },
        args.producers
    );
    let progress = tokio::spawn(report_progress(budget.clone(), record_size));
    let produced = produce::run(
        cluster.clone(),
        settings,
        budget.clone(),
        args.producers as usize,
        clock,
    )
    .await;
    progress.abort();
    let produced = produced.context("produce phase")?;
    target_tx.send_replace(Some(produced.acked_records));
    let tail = tail
        .await
        .context("tail consumer panicked")?
        .context("tailing consumer")?;
    let scrape_middle = scrape_optional(args.metrics_url.as_deref()).await;

    let end_offsets = cluster
        .list_offsets(-1)
        .await
        .context("find the latest offsets after producing")?;
    eprintln!("shoal-bench: reading everything back...");
    let caught_up = consume::run_catch_up(
        cluster.clone(),
        start_offsets.clone(),
        end_offsets.clone(),
        args.catch_up_connections as usize,
    )
    .await
    .context("catch-up consume phase")?;
    let scrape_after = scrape_optional(args.metrics_url.as_deref()).await;
    let after_compaction = match args.metrics_url.as_deref() {
        Some(url) if args.after_compaction => Some(
            read_after_compaction(
                &args,
                url,
                &cluster,
                &start_offsets,
                &end_offsets,
                scrape_before.as_ref().and_then(|s| s.as_deref().ok()),
                produced.acked_records,
            )
            .await?,
        ),
        _ => None,
    };
    let group = if args.group_consumers > 0 {
        let earliest = cluster
            .list_offsets(-2)
            .await
            .context("find the earliest offsets for the consumer group")?;
        Some(
            group::run(
                cluster.clone(),
                args.group_consumers as usize,
                earliest,
                end_offsets.clone(),
                record_size,
            )
            .await
            .context("consumer group phase")?,
        )
    } else {
        None
    };
    let txn = if args.txn_commits > 0 {
        eprintln!(
            "shoal-bench: committing {} transaction(s)...",
            args.txn_commits
        );
        Some(
            txn::run(cluster.clone(), args.txn_commits, record_size, clock)
                .await
                .context("transaction phase")?,
        )
    } else {
        None
    };
    let peak_rss_mib = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };

    let consume_payload = caught_up.records * record_size as u64;
    let object_store = args.metrics_url.as_ref().map(|url| {
        object_store_figures(
            url,
            [&scrape_before, &scrape_middle, &scrape_after],
            produced.payload_bytes,
            consume_payload + tail.payload_bytes,
        )
    });

    Ok(Report {
        label: args.label.clone(),
        bootstrap: args.bootstrap.clone(),
        topic: cluster.topic.clone(),
        topic_created: cluster.topic_created,
        partitions: cluster.partitions(),
        brokers: cluster.brokers.len(),
        versions: cluster.versions.describe(),
        workload: format!(
            "{} records of {} B, {} producer(s), {} records/batch, {} in flight, acks={}, \
             compression={}, {} tail + {} catch-up connection(s) per leader{}{}{}{}",
            produced.acked_records,
            record_size,
            args.producers,
            batch_records,
            max_in_flight,
            args.acks,
            format!("{:?}", args.compression).to_lowercase(),
            args.tail_connections,
            args.catch_up_connections,
            match args.group_consumers {
                0 => String::new(),
                n => format!(", {n} group consumer(s)"),
            },
            if args.idempotent { ", idempotent" } else { "" },
            match args.txn_commits {
                0 => String::new(),
                n => format!(", {n} transaction(s)"),
            },
            if args.after_compaction {
                ", read again after compaction"
            } else {
                ""
            }
        ),
        produce: ProduceFigures {
            records: produced.acked_records,
            payload_bytes: produced.payload_bytes,
            batch_bytes: produced.batch_bytes,
            requests: produced.requests,
            retried_batches: produced.retried_batches,
            elapsed: produced.elapsed,
            latency: Latency::from_micros(&produced.latency_us),
            idempotence: init_producer_id.map(|version| {
                format!(
                    "{} producer id(s), one per connection (InitProducerId v{version}), \
                     base sequences per partition, acks={}, at most {max_in_flight} batches \
                     in flight per partition",
                    produced.producer_ids, args.acks
                )
            }),
        },
        e2e: Latency::from_micros(&tail.e2e_us),
        tail_records: tail.records,
        consume: ConsumeFigures {
            records: caught_up.records,
            expected: produced.acked_records,
            payload_bytes: consume_payload,
            batch_bytes: caught_up.batch_bytes,
            requests: caught_up.requests,
            elapsed: caught_up.elapsed,
        },
        object_store,
        after_compaction,
        group,
        txn,
        pid: args.pid,
        peak_rss_mib,
    })
}

/// `--after-compaction`: waits for compaction to settle, then repeats the catch-up read
/// with the same offsets and connections per leader, counting its GETs.
async fn read_after_compaction(
    args: &Args,
    url: &str,
    cluster: &Arc<Cluster>,
    start_offsets: &[i64],
    end_offsets: &[i64],
    run_start: Option<&str>,
    expected: u64,
) -> Result<AfterCompactionFigures> {
    eprintln!(
        "shoal-bench: waiting for compaction to settle (at most {} s)...",
        args.compaction_wait
    );
    let wait = compaction::wait_for_settle(
        url,
        args.pid,
        Duration::from_secs(args.compaction_wait),
        run_start,
    )
    .await;
    if let Some(note) = &wait.note {
        eprintln!("shoal-bench: compaction wait: {note}");
    }
    eprintln!("shoal-bench: reading everything back again after compaction...");
    let before = scrape(url).await.map_err(|e| format!("{e:#}"));
    let read = consume::run_catch_up(
        cluster.clone(),
        start_offsets.to_vec(),
        end_offsets.to_vec(),
        args.catch_up_connections as usize,
    )
    .await
    .context("catch-up consume after compaction")?;
    let after = scrape(url).await.map_err(|e| format!("{e:#}"));
    if let Some(e) = before.as_ref().err().or(after.as_ref().err()) {
        eprintln!("shoal-bench: no GET count for the read after compaction: {e}");
    }
    let gets = |page: &Result<String, String>| {
        counter_sum(page.as_ref().ok()?, OBJECT_STORE_COUNTER, &[("op", "get")])
    };
    let gets = gets(&after).zip(gets(&before)).map(|(a, b)| a - b);
    Ok(AfterCompactionFigures {
        wait,
        consume: ConsumeFigures {
            records: read.records,
            expected,
            payload_bytes: read.records * args.record_size as u64,
            batch_bytes: read.batch_bytes,
            requests: read.requests,
            elapsed: read.elapsed,
        },
        gets,
    })
}

/// Scrapes the metrics page if there is one; a failure is kept as text for the report.
async fn scrape_optional(url: Option<&str>) -> Option<Result<String, String>> {
    let url = url?;
    Some(scrape(url).await.map_err(|e| format!("{e:#}")))
}

fn object_store_figures(
    url: &str,
    scrapes: [&Option<Result<String, String>>; 3],
    produced_bytes: u64,
    consumed_bytes: u64,
) -> ObjectStoreFigures {
    let count = |page: &Option<Result<String, String>>, op: &str| -> Option<f64> {
        let page = page.as_ref()?.as_ref().ok()?;
        counter_sum(page, OBJECT_STORE_COUNTER, &[("op", op)])
    };
    let delta = |from: &Option<Result<String, String>>, to: &Option<Result<String, String>>, op| {
        Some(count(to, op)? - count(from, op)?)
    };
    let [before, middle, after] = scrapes;
    let failure = scrapes
        .iter()
        .find_map(|s| s.as_ref().and_then(|r| r.as_ref().err()))
        .map(|e| format!("a scrape failed: {e}"));
    let missing = after
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .filter(|page| counter_sum(page, OBJECT_STORE_COUNTER, &[]).is_none())
        .map(|_| format!("{OBJECT_STORE_COUNTER} is not on the page"));
    ObjectStoreFigures {
        url: url.to_string(),
        puts: delta(before, after, "put"),
        gets: delta(before, after, "get"),
        catch_up_gets: delta(middle, after, "get"),
        produced_bytes,
        consumed_bytes,
        note: failure.or(missing),
    }
}

/// Prints a progress line every two seconds while producing.
async fn report_progress(budget: Arc<Budget>, record_size: usize) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    let mut last = 0u64;
    loop {
        tick.tick().await;
        let acked = budget.acked.load(Ordering::Relaxed);
        let rate = (acked - last) as f64 / 2.0;
        last = acked;
        eprintln!(
            "  {:>6.1} s  {acked} records acked  ({:.0} records/s, {:.1} MB/s)",
            started.elapsed().as_secs_f64(),
            rate,
            rate * record_size as f64 / (1u64 << 20) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_follows_the_tighter_limit() {
        assert_eq!(records_per_batch(1024, None, None), 64);
        assert_eq!(records_per_batch(1024, Some(100), None), 100);
        assert_eq!(records_per_batch(1024, None, Some(16 * 1024)), 16);
        assert_eq!(records_per_batch(1024, Some(100), Some(16 * 1024)), 16);
        assert_eq!(records_per_batch(1 << 20, None, None), 1);
        assert_eq!(records_per_batch(8, Some(0), None), 1);
    }

    #[test]
    fn acks_parse() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn cli_reads_flags() {
        let args = Args::try_parse_from([
            "shoal-bench",
            "--bootstrap",
            "localhost:1",
            "--acks",
            "-1",
            "--compression",
            "zstd",
            "--duration",
            "5",
        ])
        .unwrap();
        assert_eq!(args.acks, -1);
        assert!(matches!(args.compression, CompressionArg::Zstd));
        assert_eq!(args.records, None);
        assert_eq!(args.group_consumers, 0);
        assert!(!args.after_compaction);
        assert_eq!(args.compaction_wait, 600);
        let args = Args::try_parse_from([
            "shoal-bench",
            "--after-compaction",
            "--compaction-wait",
            "30",
        ])
        .unwrap();
        assert!(args.after_compaction);
        assert_eq!(args.compaction_wait, 30);
        assert!(Args::try_parse_from(["shoal-bench", "--compaction-wait", "0"]).is_err());
        let args = Args::try_parse_from(["shoal-bench", "--group-consumers", "3"]).unwrap();
        assert_eq!(args.group_consumers, 3);
        assert!(Args::try_parse_from(["shoal-bench", "--record-size", "4"]).is_err());
    }

    #[test]
    fn idempotence_caps_in_flight_and_needs_acks_all() {
        let args = Args::try_parse_from(["shoal-bench", "--max-in-flight", "20"]).unwrap();
        assert!(!args.idempotent);
        assert_eq!(args.txn_commits, 0);
        assert_eq!(in_flight_limit(&args).unwrap(), 20);
        let args = Args::try_parse_from([
            "shoal-bench",
            "--idempotent",
            "--max-in-flight",
            "20",
            "--txn-commits",
            "50",
        ])
        .unwrap();
        assert!(args.idempotent);
        assert_eq!(args.txn_commits, 50);
        assert_eq!(in_flight_limit(&args).unwrap(), 5);
        let args =
            Args::try_parse_from(["shoal-bench", "--idempotent", "--max-in-flight", "2"]).unwrap();
        assert_eq!(in_flight_limit(&args).unwrap(), 2);
        let args = Args::try_parse_from(["shoal-bench", "--idempotent", "--acks", "1"]).unwrap();
        let err = in_flight_limit(&args).unwrap_err().to_string();
        assert!(err.contains("--acks -1"), "{err}");
    }

    #[test]
    fn object_store_deltas() {
        let page = |put: u32, get: u32| {
            Some(Ok(format!(
                "{OBJECT_STORE_COUNTER}{{op=\"put\"}} {put}\n{OBJECT_STORE_COUNTER}{{op=\"get\"}} {get}\n"
            )))
        };
        let f = object_store_figures(
            "u",
            [&page(1, 2), &page(11, 4), &page(11, 24)],
            10 << 20,
            20 << 20,
        );
        assert_eq!(f.puts, Some(10.0));
        assert_eq!(f.gets, Some(22.0));
        assert_eq!(f.catch_up_gets, Some(20.0));
        assert_eq!(f.puts_per_mb(), Some(1.0));
        assert_eq!(f.note, None);
        let empty = Some(Ok("other 1\n".to_string()));
        let f = object_store_figures("u", [&empty, &empty, &empty], 1, 1);
        assert_eq!(f.puts, None);
        assert!(f.note.unwrap().contains("not on the page"));
        let failed = Some(Err("refused".to_string()));
        let f = object_store_figures("u", [&failed, &page(0, 0), &page(0, 0)], 1, 1);
        assert_eq!(f.puts, None);
        assert!(f.note.unwrap().contains("refused"));
    }
}
