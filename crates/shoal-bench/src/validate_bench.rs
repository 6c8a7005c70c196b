//! What checking every record of a produced batch costs, per codec: the CPU time of
//! Shoal's produce validation (`shoal_wire::batch::validate_batches`, then
//! `shoal_wire::records::check_records` over every batch, decompressing as a bounded
//! stream) against the header-and-CRC check alone, which is all produce did before
//! records were validated ("pass-through").
//!
//!   shoal-validate-bench [--record-size 1024] [--records-per-batch 64] [--seconds 3]
//!
//! Prints one line per codec: wire MB/s of each way, record MB/s of full validation and
//! of decompression alone (what any broker that reads records pays), and the share of
//! one core full validation takes at 100 MB/s of records. Values are like
//! shoal-bench's (an 8-byte stamp, then pseudo-random capital letters), so compression
//! ratios match the end-to-end benchmark.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use shoal_wire::{batch, records};

#[derive(Parser)]
#[command(about = "CPU cost of full record validation on produce, per codec")]
struct Args {
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per batch (shoal-bench's default is 64).
    #[arg(long, default_value_t = 64)]
    records_per_batch: usize,
    /// How long each measurement runs.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

/// 64 different batches of the codec, as a producer would send them.
fn batches(args: &Args, compression: Compression) -> Vec<Bytes> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut letter = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        b'A' + (state % 26) as u8
    };
    (0..64)
        .map(|b| {
            let records: Vec<Record> = (0..args.records_per_batch)
                .map(|i| {
                    let mut value = BytesMut::with_capacity(args.record_size);
                    value.put_u64((b * 1000 + i) as u64);
                    value.extend((8..args.record_size).map(|_| letter()));
                    Record {
                        transactional: false,
                        control: false,
                        delete_horizon: false,
                        partition_leader_epoch: -1,
                        producer_id: -1,
                        producer_epoch: -1,
                        timestamp_type: TimestampType::Creation,
                        offset: i as i64,
                        // Kept constant against the offset, so the encoder writes one
                        // batch (base sequence -1: no producer id).
                        sequence: i as i32 - 1,
                        timestamp: 1_700_000_000_000,
                        key: None,
                        value: Some(value.freeze()),
                        headers: IndexMap::new(),
                    }
                })
                .collect();
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
            buf.freeze()
        })
        .collect()
}

/// Runs `check` over the batches for `seconds`; returns batches checked per second.
fn rate(seconds: f64, batches: &[Bytes], check: impl Fn(&[u8])) -> f64 {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        for b in batches {
            check(b);
        }
        done += batches.len() as u64;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    let limits = records::Limits {
        max_uncompressed: 64 << 20,
    };
    let record_bytes = (args.record_size * args.records_per_batch) as f64;
    println!(
        "record size {} B, {} records per batch, {} s per figure",
        args.record_size, args.records_per_batch, args.seconds
    );
    println!(
        "{:<7} {:>9} {:>16} {:>16} {:>16} {:>18} {:>14}",
        "codec",
        "ratio",
        "pass-through",
        "full",
        "full (records)",
        "inflate (records)",
        "core @100MB/s"
    );
    for (name, c) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let set = batches(&args, c);
        let wire = set.iter().map(|b| b.len()).sum::<usize>() as f64 / set.len() as f64;
        let pass = rate(args.seconds, &set, |b| {
            batch::validate_batches(b).expect("valid");
        });
        let full = rate(args.seconds, &set, |b| {
            for info in batch::validate_batches(b).expect("valid") {
                records::check_records(&b[info.range], limits).expect("valid records");
            }
        });
        let inflate = rate(args.seconds, &set, |b| {
            use std::io::Read;
            let h = batch::BatchHeader::parse(b).expect("a batch");
            let body = &b[batch::HEADER_LEN..h.total_len()];
            let mut out = Vec::with_capacity(record_bytes as usize * 2);
            match c {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(body)
                        .read_to_end(&mut out)
                        .expect("gzip");
                }
                Compression::Lz4 => {
                    lz4::Decoder::new(body)
                        .unwrap()
                        .read_to_end(&mut out)
                        .expect("lz4");
                }
                Compression::Zstd => {
                    let mut d = zstd::stream::read::Decoder::new(body).expect("zstd");
                    d.read_to_end(&mut out).expect("zstd");
                }
                _ => {}
            }
        });
        let mb = |batches_per_s: f64, bytes: f64| batches_per_s * bytes / 1e6;
        // Seconds of one core per second to validate 100 MB/s of records.
        let core = 100e6 / (full * record_bytes);
        // Decompression alone (read_to_end), for the codecs whose stream is read here.
        let inflated = if matches!(c, Compression::Gzip | Compression::Lz4 | Compression::Zstd) {
            format!("{:.0} MB/s", mb(inflate, record_bytes))
        } else {
            "-".to_string()
        };
        println!(
            "{name:<7} {:>8.2}x {:>11.0} MB/s {:>11.0} MB/s {:>11.0} MB/s {inflated:>18} {:>13.1}%",
            record_bytes / wire,
            mb(pass, wire),
            mb(full, wire),
            mb(full, record_bytes),
            core * 100.0
        );
        println!(
            "RESULT validate codec={name} wire_batch_bytes={wire:.0} pass_through_wire_mb_s={:.1} full_wire_mb_s={:.1} full_record_mb_s={:.1}",
            mb(pass, wire),
            mb(full, wire),
            mb(full, record_bytes)
        );
    }
}
