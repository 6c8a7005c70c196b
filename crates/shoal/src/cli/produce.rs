//! `shoal produce TOPIC`: one record per line of stdin, like `kafka-console-producer.sh`
//! and `rpk topic produce`. A line may carry a key before `--key-separator`; `--header`
//! adds headers to every record. Records go to `--partition`, or by key hash (Kafka's
//! murmur2, so keyed records land where Java clients would put them), or round-robin per
//! chunk when unkeyed. Each chunk of lines is sent with acks=all to the partition's
//! leader; the command ends by printing how many records were acknowledged.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{check, parse_kv, partition_leaders, sb, topic_name, ConnectArgs, Progress};

/// Records per chunk sent at once.
const CHUNK_RECORDS: usize = 1000;
/// Bytes per chunk sent at once (about).
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    printf 'hello\\nworld\\n' | shoal produce greetings\n  \
    printf 'user1:clicked\\n' | shoal produce events --key-separator : --header source=cli\n  \
    shoal produce events --partition 2 < lines.txt")]
pub struct ProduceCmd {
    /// The topic to write to.
    pub topic: String,
    /// Split each line at the first SEP into key and value (a line without SEP has no
    /// key).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record, KEY=VALUE (repeat for more).
    #[arg(long = "header", short = 'H', value_parser = parse_kv)]
    pub headers: Vec<(String, String)>,
    /// Write every record to this partition [default: by key, or round-robin].
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    #[command(flatten)]
    pub conn: ConnectArgs,
}

pub fn run(cmd: &ProduceCmd) -> anyhow::Result<()> {
    let mut bootstrap = cmd.conn.open()?;
    let (leaders, mut conns) = partition_leaders(&mut bootstrap, &cmd.topic)?;
    let count = leaders.len() as i32;
    if let Some(p) = cmd.partition {
        if !leaders.contains_key(&p) {
            bail!(
                "topic {} has partitions 0..{count}; there is no partition {p}",
                cmd.topic
            );
        }
    }
    let headers: IndexMap<_, _> = cmd
        .headers
        .iter()
        .map(|(k, v)| (sb(k), Some(Bytes::from(v.clone()))))
        .collect();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut next_partition = 0i32;
    let mut acked = 0u64;
    let mut progress = Progress::new(&format!("produced to {}", cmd.topic));
    loop {
        // One chunk of lines, by partition.
        let mut chunk: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        let (mut n, mut bytes) = (0usize, 0usize);
        let mut ended = false;
        while n < CHUNK_RECORDS && bytes < CHUNK_BYTES {
            let Some(line) = lines.next() else {
                ended = true;
                break;
            };
            let line = line.context("read a line from stdin")?;
            let (key, value) = split(&line, cmd.key_separator.as_deref());
            let partition = match (cmd.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => key_partition(k, count),
                (None, None) => next_partition,
            };
            bytes += line.len();
            let list = chunk.entry(partition).or_default();
            list.push(record(list.len(), key, value, headers.clone()));
            n += 1;
        }
        next_partition = (next_partition + 1) % count.max(1);
        for (partition, records) in chunk {
            let leader = leaders.get(&partition).copied().unwrap_or(-1);
            let c = conns.conn(leader, &cmd.conn)?;
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )
            .context("encode a record batch")?;
            let r = c.call(
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic_name(&cmd.topic))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(buf.freeze()))])]),
                9,
            )?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .context("Produce answered no partition")?;
            check(
                p.error_code,
                p.error_message.as_ref(),
                &format!(
                    "produce to {}/{partition} ({acked} record(s) acknowledged before)",
                    cmd.topic
                ),
            )?;
            acked += records.len() as u64;
            progress.tick(acked, None);
        }
        if ended {
            break;
        }
    }
    progress.finish();
    println!("{acked} record(s) acknowledged by {}", cmd.topic);
    Ok(())
}

/// (key, value) of a line.
fn split(line: &str, sep: Option<&str>) -> (Option<Bytes>, Bytes) {
    match sep.and_then(|s| line.split_once(s)) {
        Some((k, v)) => (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string())),
        None => (None, Bytes::from(line.to_string())),
    }
}

fn record(
    index: usize,
    key: Option<Bytes>,
    value: Bytes,
    headers: IndexMap<kafka_protocol::protocol::StrBytes, Option<Bytes>>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        // Offset − sequence constant keeps a chunk in one batch; its base sequence is -1
        // (no idempotence).
        sequence: index as i32 - 1,
        timestamp: shoal_meta::clock::now_ms(),
        key,
        value: Some(value),
        headers,
    }
}

/// The partition Kafka's default partitioner picks for a key:
/// `toPositive(murmur2(key)) % partitions`.
fn key_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2 (as signed ints there).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn lines_split_at_the_first_separator() {
        let (k, v) = split("k:v:w", Some(":"));
        assert_eq!(k.as_deref(), Some(&b"k"[..]));
        assert_eq!(&v[..], b"v:w");
        let (k, v) = split("plain", Some(":"));
        assert!(k.is_none());
        assert_eq!(&v[..], b"plain");
        assert!(split("a:b", None).0.is_none());
    }
}
