//! Consume side: a tailing consumer during the produce phase and a catch-up read after it.
//!
//! The tailing consumer ([`run_tail`]) starts at the partitions' latest offsets before any
//! record is produced and long-polls each leader (`max_wait_ms` 500) over a few
//! connections per leader (one connection alone fell hundreds of milliseconds behind a
//! 4-producer load on Apache Kafka, which measured its own lag rather than the server's
//! latency). It decodes every batch with the `kafka-protocol` decoder and, for each record,
//! subtracts the send time stamped at the front of the value from the time the Fetch
//! response arrived: end-to-end latency. It stops once it has seen as many records as were
//! acknowledged, or a grace period after the produce phase ends.
//!
//! The catch-up read ([`run_catch_up`]) then fetches everything written during the run as
//! fast as it can: several partitions per request, 50 MiB per response, a few connections
//! per leader. It never decodes records; it only walks the v2 batch headers
//! ([`walk_batches`]: base offset, length, attributes, last offset delta) to count records
//! and find the next offset, so it measures the server rather than this client. Neither
//! consumer uses fetch sessions (session id 0, epoch -1), consumer groups or offset
//! commits; both read uncommitted. The group phase ([`crate::group`]) reuses the Fetch
//! and batch-walking pieces.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{describe_error, is_retriable, Connection, ResponseFuture};
use crate::cluster::Cluster;
use crate::produce::{stamp_of, Clock};
use crate::report::new_histogram;

/// The catch-up read asks for big responses: throughput is all that matters there.
pub const CATCH_UP_LIMITS: FetchLimits = FetchLimits {
    max_wait_ms: 500,
    max_bytes: 50 << 20,
    partition_max_bytes: 8 << 20,
};
/// The tail long-polls; it asks for as much as the catch-up so a lagging tail can recover.
const TAIL_LIMITS: FetchLimits = FetchLimits {
    max_wait_ms: 500,
    max_bytes: 50 << 20,
    partition_max_bytes: 8 << 20,
};
/// How long the tail may keep reading after the last acknowledgement.
const TAIL_GRACE: Duration = Duration::from_secs(10);
/// How long the catch-up read tolerates a partition making no progress below its high watermark.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before asking again for a partition that answered with a retriable error.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const RECORD_BATCH_OVERHEAD: usize = 12;
const BATCH_HEADER_LEN: usize = 61;
const CONTROL_FLAG: i16 = 0x20;
const TRANSACTIONAL_FLAG: i16 = 0x10;

/// What a walk over a partition's fetched bytes found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchWalk {
    /// Complete batches seen.
    pub batches: u64,
    /// Data records at or after the fetch offset (control batches are not counted).
    pub records: u64,
    /// Bytes of the complete batches.
    pub bytes: u64,
    /// Length of the prefix made of complete batches; a fetch may end with a partial one.
    pub complete_len: usize,
    /// Offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
}

/// Spreads each leader's partitions round-robin over up to `per_leader` new connections.
async fn open_lanes(cluster: &Cluster, per_leader: usize) -> Result<Vec<(Connection, Vec<i32>)>> {
    let all: Vec<i32> = (0..cluster.partitions()).collect();
    let mut lanes = Vec::new();
    for (leader, partitions) in cluster.group_by_leader(&all) {
        for group in split_round_robin(&partitions, per_leader) {
            lanes.push((cluster.connect(leader).await?, group));
        }
    }
    Ok(lanes)
}

/// `items` dealt into at most `n` non-empty groups.
fn split_round_robin(items: &[i32], n: usize) -> Vec<Vec<i32>> {
    let n = n.clamp(1, items.len().max(1));
    let mut groups: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for (i, &item) in items.iter().enumerate() {
        groups.entry(i % n).or_default().push(item);
    }
    groups.into_values().collect()
}

/// Walks v2 record batch headers without decoding records.
pub fn walk_batches(data: &[u8], fetch_offset: i64) -> Result<BatchWalk> {
    let mut walk = BatchWalk::default();
    let mut headers = batch_headers(data);
    for header in headers.by_ref() {
        let header = header?;
        if !header.is_control() {
            walk.records += header.records_from(fetch_offset);
        }
        walk.batches += 1;
        walk.bytes += header.len as u64;
        walk.next_offset = Some(header.last_offset + 1);
    }
    walk.complete_len = headers.position();
    Ok(walk)
}

/// The fields of a v2 record batch header that the readers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub last_offset: i64,
    pub attributes: i16,
    pub producer_id: i64,
    /// Bytes of the whole batch, offset and length fields included.
    pub len: usize,
}

impl BatchHeader {
    /// A transaction marker (attributes bit 5): no records for consumers.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// Written inside a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Records (offsets) of the batch at or after `fetch_offset`.
    pub fn records_from(&self, fetch_offset: i64) -> u64 {
        if self.last_offset < fetch_offset {
            return 0;
        }
        (self.last_offset - self.base_offset.max(fetch_offset) + 1) as u64
    }
}

/// The complete batches at the front of fetched bytes, in order; a fetch may end with a
/// partial batch, which is left out ([`BatchHeaders::position`] says where it starts).
pub fn batch_headers(data: &[u8]) -> BatchHeaders<'_> {
    BatchHeaders {
        data,
        pos: 0,
        failed: false,
    }
}

pub struct BatchHeaders<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl BatchHeaders<'_> {
    /// Length of the complete batches returned so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn parse(&self) -> Result<Option<BatchHeader>> {
        let (data, pos) = (self.data, self.pos);
        if data.len() - pos < RECORD_BATCH_OVERHEAD {
            return Ok(None);
        }
        let base_offset = read_i64(data, pos);
        let length = read_i32(data, pos + 8);
        if length < (BATCH_HEADER_LEN - RECORD_BATCH_OVERHEAD) as i32 {
            bail!("record batch at offset {base_offset} has invalid length {length}");
        }
        let len = RECORD_BATCH_OVERHEAD + length as usize;
        if data.len() - pos < len {
            return Ok(None);
        }
        let magic = data[pos + 16];
        if magic != 2 {
            bail!("record batch at offset {base_offset} has magic {magic}; only v2 batches are supported");
        }
        Ok(Some(BatchHeader {
            base_offset,
            last_offset: base_offset + read_i32(data, pos + 23) as i64,
            attributes: i16::from_be_bytes([data[pos + 21], data[pos + 22]]),
            producer_id: read_i64(data, pos + 43),
            len,
        }))
    }
}

impl Iterator for BatchHeaders<'_> {
    type Item = Result<BatchHeader>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.parse() {
            Ok(Some(header)) => {
                self.pos += header.len;
                Some(Ok(header))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn read_i64(data: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

fn read_i32(data: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Size and wait bounds of one kind of Fetch.
#[derive(Clone, Copy)]
pub struct FetchLimits {
    max_wait_ms: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
}

fn fetch_request(topic: &TopicName, positions: &[(i32, i64)], limits: FetchLimits) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic.clone();
    fetch_topic.partitions = positions
        .iter()
        .map(|&(partition, offset)| {
            let mut p = FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = offset;
            p.partition_max_bytes = limits.partition_max_bytes;
            p
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = limits.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = limits.max_bytes;
    request.topics = vec![fetch_topic];
    request
}

/// One partition's answer in a Fetch response.
pub struct PartitionAnswer {
    pub partition: i32,
    pub records: Bytes,
}

/// A Fetch written to the wire whose answer has not been read yet, so a caller can have
/// Fetches to several leaders in flight at once.
pub struct PendingFetch {
    response: ResponseFuture<FetchResponse>,
    addr: String,
    positions: Vec<(i32, i64)>,
}

/// Writes a Fetch for `positions` (partition, offset) of the benchmark topic.
pub async fn start_fetch(
    conn: &Connection,
    cluster: &Cluster,
    positions: &[(i32, i64)],
    limits: FetchLimits,
) -> Result<PendingFetch> {
    let topic = cluster.topic_name();
    let request = fetch_request(&topic, positions, limits);
    Ok(PendingFetch {
        response: conn.send(&request, cluster.versions.fetch).await?,
        addr: conn.addr().to_string(),
        positions: positions.to_vec(),
    })
}

impl PendingFetch {
    /// Waits for the answer and returns the partitions' answers and when it arrived.
    /// Partitions with a retriable error are left out after a short pause (the caller
    /// simply asks again); other errors stop the run.
    pub async fn finish(self, cluster: &Cluster) -> Result<(Vec<PartitionAnswer>, Instant)> {
        let timed = self.response.wait().await?;
        let response: FetchResponse = timed.response;
        if response.error_code != 0 {
            bail!(
                "Fetch from {} failed: {}",
                self.addr,
                describe_error(response.error_code, None)
            );
        }
        let mut answers = Vec::new();
        let mut retry_later = false;
        for t in response.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    if is_retriable(p.error_code) {
                        retry_later = true;
                        continue;
                    }
                    let offset = self
                        .positions
                        .iter()
                        .find(|(q, _)| *q == p.partition_index)
                        .map(|(_, o)| *o)
                        .unwrap_or(-1);
                    bail!(
                        "Fetch {}-{} at offset {offset} from {} failed: {}",
                        cluster.topic,
                        p.partition_index,
                        self.addr,
                        describe_error(p.error_code, None)
                    );
                }
                answers.push(PartitionAnswer {
                    partition: p.partition_index,
                    records: p.records.unwrap_or_default(),
                });
            }
        }
        if retry_later {
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        Ok((answers, timed.received))
    }
}

/// Sends a Fetch and waits for its answer (see [`PendingFetch::finish`]).
async fn fetch(
    conn: &Connection,
    cluster: &Cluster,
    positions: &[(i32, i64)],
    limits: FetchLimits,
) -> Result<(Vec<PartitionAnswer>, Instant)> {
    start_fetch(conn, cluster, positions, limits)
        .await?
        .finish(cluster)
        .await
}

/// What the tailing consumer saw.
pub struct TailStats {
    pub records: u64,
    pub payload_bytes: u64,
    /// End-to-end latency in microseconds, one sample per record.
    pub e2e_us: Histogram<u64>,
}

/// Tails every partition from `start` until `target` (the acknowledged count, sent when
/// the produce phase ends) is reached or the grace period runs out.
pub async fn run_tail(
    cluster: Arc<Cluster>,
    start: Vec<i64>,
    clock: Clock,
    target: watch::Receiver<Option<u64>>,
    connections_per_leader: usize,
) -> Result<TailStats> {
    let seen = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for (conn, partitions) in open_lanes(&cluster, connections_per_leader).await? {
        let positions: Vec<(i32, i64)> =
            partitions.iter().map(|&p| (p, start[p as usize])).collect();
        tasks.spawn(tail_lane(
            conn,
            cluster.clone(),
            positions,
            clock,
            target.clone(),
            seen.clone(),
        ));
    }
    let mut total = TailStats {
        records: 0,
        payload_bytes: 0,
        e2e_us: new_histogram(),
    };
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.context("tail consumer task panicked")??;
        total.records += stats.records;
        total.payload_bytes += stats.payload_bytes;
        total.e2e_us.add(&stats.e2e_us).expect("same bounds");
    }
    Ok(total)
}

async fn tail_lane(
    conn: Connection,
    cluster: Arc<Cluster>,
    mut positions: Vec<(i32, i64)>,
    clock: Clock,
    target: watch::Receiver<Option<u64>>,
    seen: Arc<AtomicU64>,
) -> Result<TailStats> {
    let mut stats = TailStats {
        records: 0,
        payload_bytes: 0,
        e2e_us: new_histogram(),
    };
    let mut produce_done_at: Option<Instant> = None;
    loop {
        if let Some(target) = *target.borrow() {
            let done_at = *produce_done_at.get_or_insert_with(Instant::now);
            if seen.load(Ordering::Relaxed) >= target || done_at.elapsed() > TAIL_GRACE {
                break;
            }
        }
        let (answers, received) = fetch(&conn, &cluster, &positions, TAIL_LIMITS).await?;
        let now_nanos = clock.at(received);
        for answer in answers {
            let Some(position) = positions.iter_mut().find(|(p, _)| *p == answer.partition) else {
                continue;
            };
            let walk = walk_batches(&answer.records, position.1)?;
            let mut complete = answer.records.slice(..walk.complete_len);
            while complete.has_remaining() {
                let set = RecordBatchDecoder::decode(&mut complete).with_context(|| {
                    format!("decode a batch of {}-{}", cluster.topic, answer.partition)
                })?;
                for record in set.records {
                    if record.control || record.offset < position.1 {
                        continue;
                    }
                    stats.records += 1;
                    let key_len = record.key.as_ref().map_or(0, Bytes::len);
                    let Some(value) = record.value else { continue };
                    stats.payload_bytes += (key_len + value.len()) as u64;
                    if let Some(sent) = stamp_of(&value) {
                        // Records not written by this run carry no plausible stamp.
                        if sent <= now_nanos && now_nanos - sent < 3_600_000_000_000 {
                            stats
                                .e2e_us
                                .saturating_record(((now_nanos - sent) / 1000).max(1));
                        }
                    }
                }
            }
            seen.fetch_add(walk.records, Ordering::Relaxed);
            if let Some(next) = walk.next_offset {
                position.1 = next;
            }
        }
    }
    Ok(stats)
}

/// What the catch-up read fetched.
pub struct CatchUpStats {
    pub records: u64,
    /// Record batch bytes as fetched.
    pub batch_bytes: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

/// Reads every partition from `start` up to `end` (the latest offsets once producing is
/// over) as fast as possible.
pub async fn run_catch_up(
    cluster: Arc<Cluster>,
    start: Vec<i64>,
    end: Vec<i64>,
    connections_per_leader: usize,
) -> Result<CatchUpStats> {
    let lanes = open_lanes(&cluster, connections_per_leader).await?;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (conn, partitions) in lanes {
        // Empty partitions are left out: a Fetch for them alone would wait max_wait_ms.
        let ranges: Vec<(i32, i64, i64)> = partitions
            .iter()
            .map(|&p| (p, start[p as usize], end[p as usize]))
            .filter(|&(_, from, to)| from < to)
            .collect();
        if !ranges.is_empty() {
            tasks.spawn(catch_up_lane(conn, cluster.clone(), ranges));
        }
    }
    let mut total = CatchUpStats {
        records: 0,
        batch_bytes: 0,
        requests: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.context("catch-up task panicked")??;
        total.records += stats.records;
        total.batch_bytes += stats.batch_bytes;
        total.requests += stats.requests;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Reads each (partition, next offset, end offset) until next reaches end.
async fn catch_up_lane(
    conn: Connection,
    cluster: Arc<Cluster>,
    mut ranges: Vec<(i32, i64, i64)>,
) -> Result<CatchUpStats> {
    let mut stats = CatchUpStats {
        records: 0,
        batch_bytes: 0,
        requests: 0,
        elapsed: Duration::ZERO,
    };
    let mut last_progress = Instant::now();
    while !ranges.is_empty() {
        let positions: Vec<(i32, i64)> = ranges.iter().map(|&(p, next, _)| (p, next)).collect();
        let (answers, _) = fetch(&conn, &cluster, &positions, CATCH_UP_LIMITS).await?;
        stats.requests += 1;
        let mut progressed = false;
        for answer in answers {
            let Some(range) = ranges.iter_mut().find(|(p, _, _)| *p == answer.partition) else {
                continue;
            };
            let walk = walk_batches(&answer.records, range.1).with_context(|| {
                format!("walk batches of {}-{}", cluster.topic, answer.partition)
            })?;
            stats.records += walk.records;
            stats.batch_bytes += walk.bytes;
            if let Some(next) = walk.next_offset {
                progressed |= next > range.1;
                range.1 = next;
            }
        }
        ranges.retain(|&(_, next, end)| next < end);
        if progressed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            bail!(
                "catch-up read from {} made no progress for {}s; (partition, offset, end): {:?}",
                conn.addr(),
                STALL_TIMEOUT.as_secs(),
                ranges
            );
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically valid v2 batch header with `payload` bytes of (fake) records.
    fn batch(base: i64, last_delta: i32, attributes: i16, payload: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&((BATCH_HEADER_LEN - 12 + payload) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // crc (not checked by the walk)
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&last_delta.to_be_bytes());
        b.extend_from_slice(&[0u8; 16]); // timestamps
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&(last_delta + 1).to_be_bytes());
        assert_eq!(b.len(), BATCH_HEADER_LEN);
        b.extend(std::iter::repeat_n(0xab, payload));
        b
    }

    #[test]
    fn walk_counts_records_and_stops_at_a_partial_batch() {
        let mut data = batch(0, 9, 0, 100);
        data.extend(batch(10, 4, 0, 30));
        let complete = data.len();
        let partial = batch(15, 4, 0, 30);
        data.extend_from_slice(&partial[..40]);
        let walk = walk_batches(&data, 0).unwrap();
        assert_eq!(walk.batches, 2);
        assert_eq!(walk.records, 15);
        assert_eq!(walk.bytes, complete as u64);
        assert_eq!(walk.complete_len, complete);
        assert_eq!(walk.next_offset, Some(15));
    }

    #[test]
    fn walk_skips_records_before_the_fetch_offset_and_control_batches() {
        let mut data = batch(0, 9, 0, 10);
        data.extend(batch(10, 0, CONTROL_FLAG, 10));
        data.extend(batch(11, 1, 0, 10));
        let walk = walk_batches(&data, 4).unwrap();
        assert_eq!(walk.records, 6 + 2);
        assert_eq!(walk.next_offset, Some(13));
    }

    #[test]
    fn walk_of_nothing_or_a_fragment_finds_nothing() {
        assert_eq!(walk_batches(&[], 0).unwrap(), BatchWalk::default());
        let walk = walk_batches(&batch(0, 0, 0, 0)[..11], 0).unwrap();
        assert_eq!(walk.next_offset, None);
        assert_eq!(walk.complete_len, 0);
    }

    #[test]
    fn walk_rejects_garbage() {
        let mut old = batch(0, 0, 0, 0);
        old[16] = 1;
        assert!(walk_batches(&old, 0)
            .unwrap_err()
            .to_string()
            .contains("magic 1"));
        let mut short = batch(0, 0, 0, 0);
        short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(walk_batches(&short, 0).is_err());
    }

    #[test]
    fn fetch_request_names_partitions_and_limits() {
        let topic = TopicName(kafka_protocol::protocol::StrBytes::from_static_str("t"));
        let r = fetch_request(&topic, &[(0, 5), (3, 7)], CATCH_UP_LIMITS);
        assert_eq!(r.max_bytes, 50 << 20);
        assert_eq!(r.max_wait_ms, 500);
        assert_eq!(r.session_epoch, -1);
        assert_eq!(r.replica_id.0, -1);
        let parts = &r.topics[0].partitions;
        assert_eq!((parts[1].partition, parts[1].fetch_offset), (3, 7));
        assert_eq!(parts[0].partition_max_bytes, 8 << 20);
    }

    #[test]
    fn partitions_split_over_connections() {
        assert_eq!(
            split_round_robin(&[0, 1, 2, 3, 4], 2),
            vec![vec![0, 2, 4], vec![1, 3]]
        );
        assert_eq!(split_round_robin(&[7], 4), vec![vec![7]]);
        assert_eq!(split_round_robin(&[1, 2], 0), vec![vec![1, 2]]);
        assert!(split_round_robin(&[], 3).is_empty());
    }
}
