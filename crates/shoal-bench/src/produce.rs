//! Produce phase: N producers push record batches as fast as the server acknowledges them.
//!
//! The topic's partitions are dealt out to the producers ([`assign_partitions`]); each
//! producer opens one connection per leader of its partitions (a "lane") and keeps up to
//! `max_in_flight` Produce requests outstanding on it, each carrying one record batch per
//! partition of that lane. Records come from a shared [`Budget`] (a record count, a
//! deadline, or both), so the run stops at exactly the requested count. Every record value
//! starts with the send time as big-endian nanoseconds since the UNIX epoch ([`Clock`]),
//! followed by pseudo-random capital letters (like kafka-producer-perf-test), which lets the
//! tailing consumer measure end-to-end latency. Request latency is measured from the write
//! of the request to the read of its response, per request. Batches failing with a
//! retriable error are sent again a few times; any other error stops the run with Kafka's
//! name for it. Records are not idempotent (producer id -1): a retried batch may be stored
//! twice, which the catch-up count would report.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::task::JoinSet;

use crate::client::{describe_error, is_retriable, Connection, ResponseFuture};
use crate::cluster::Cluster;
use crate::report::new_histogram;

const MAX_ATTEMPTS: u32 = 10;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// Wall-clock nanoseconds derived from one monotonic clock, shared by producers and the
/// tailing consumer so their difference is immune to wall-clock steps during the run.
#[derive(Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_nanos: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_unix_nanos,
        }
    }

    pub fn now_nanos(&self) -> u64 {
        self.at(Instant::now())
    }

    pub fn at(&self, t: Instant) -> u64 {
        self.base_unix_nanos + t.saturating_duration_since(self.base).as_nanos() as u64
    }
}

/// How the produce phase shapes its requests.
pub struct ProduceSettings {
    pub version: i16,
    pub record_size: usize,
    pub batch_records: usize,
    pub max_in_flight: usize,
    pub acks: i16,
    pub compression: Compression,
}

/// The records still to be sent, shared by all producers; empty once the count is used up
/// or the deadline has passed.
pub struct Budget {
    remaining: AtomicU64,
    deadline: Option<Instant>,
    /// Acknowledged so far, for progress lines while the phase runs.
    pub acked: AtomicU64,
}

impl Budget {
    pub fn new(records: Option<u64>, deadline: Option<Instant>) -> Self {
        Self {
            remaining: AtomicU64::new(records.unwrap_or(u64::MAX)),
            deadline,
            acked: AtomicU64::new(0),
        }
    }

    /// Takes up to `want` records; 0 means the phase is over.
    pub fn claim(&self, want: u64) -> u64 {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        let mut current = self.remaining.load(Ordering::Relaxed);
        loop {
            let take = current.min(want);
            if take == 0 {
                return 0;
            }
            match self.remaining.compare_exchange_weak(
                current,
                current - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => current = now,
            }
        }
    }
}

/// What the producers achieved, summed over all of them.
pub struct ProduceStats {
    pub acked_records: u64,
    /// Record keys + values acknowledged.
    pub payload_bytes: u64,
    /// Record batch bytes acknowledged (after compression, with batch and record headers).
    pub batch_bytes: u64,
    pub requests: u64,
    pub retried_batches: u64,
    /// Produce request latency in microseconds.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
}

impl ProduceStats {
    fn new() -> Self {
        Self {
            acked_records: 0,
            payload_bytes: 0,
            batch_bytes: 0,
            requests: 0,
            retried_batches: 0,
            latency_us: new_histogram(),
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: &ProduceStats) {
        self.acked_records += other.acked_records;
        self.payload_bytes += other.payload_bytes;
        self.batch_bytes += other.batch_bytes;
        self.requests += other.requests;
        self.retried_batches += other.retried_batches;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
    }
}

/// Deals partitions to producers: round-robin when there are enough partitions, otherwise
/// several producers share one partition so every producer has work.
pub fn assign_partitions(producers: usize, partitions: i32) -> Vec<Vec<i32>> {
    let n = partitions as usize;
    (0..producers)
        .map(|i| {
            if producers <= n {
                (0..partitions)
                    .filter(|p| *p as usize % producers == i)
                    .collect()
            } else {
                vec![(i % n) as i32]
            }
        })
        .collect()
}

/// Runs the produce phase to completion and returns the summed figures.
pub async fn run(
    cluster: Arc<Cluster>,
    settings: Arc<ProduceSettings>,
    budget: Arc<Budget>,
    producers: usize,
    clock: Clock,
) -> Result<ProduceStats> {
    let filler = filler(settings.record_size);
    // Connect every lane before the clock starts so connection setup is not measured.
    let mut lanes = Vec::new();
    for partitions in assign_partitions(producers, cluster.partitions()) {
        for (leader, partitions) in cluster.group_by_leader(&partitions) {
            let conn = cluster.connect(leader).await?;
            lanes.push((conn, partitions));
        }
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (conn, partitions) in lanes {
        let lane = Lane {
            conn,
            topic: cluster.topic_name(),
            partitions,
            settings: settings.clone(),
            budget: budget.clone(),
            clock,
            filler: filler.clone(),
        };
        tasks.spawn(lane.run());
    }
    let mut total = ProduceStats::new();
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.context("producer task panicked")??;
        total.merge(&stats);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One record batch for one partition, kept until acknowledged so it can be re-sent.
struct Batch {
    partition: i32,
    records: u64,
    data: Bytes,
    attempts: u32,
}

/// One producer's connection to one leader and the partitions it writes there.
struct Lane {
    conn: Connection,
    topic: TopicName,
    partitions: Vec<i32>,
    settings: Arc<ProduceSettings>,
    budget: Arc<Budget>,
    clock: Clock,
    filler: Bytes,
}

impl Lane {
    async fn run(self) -> Result<ProduceStats> {
        let mut stats = ProduceStats::new();
        let mut in_flight: VecDeque<(ResponseFuture<ProduceResponse>, Vec<Batch>)> =
            VecDeque::new();
        let mut retry: Vec<Batch> = Vec::new();
        loop {
            while in_flight.len() < self.settings.max_in_flight {
                let batches = if retry.is_empty() {
                    self.new_batches()?
                } else {
                    std::mem::take(&mut retry)
                };
                if batches.is_empty() {
                    break;
                }
                let request = self.request(&batches);
                if self.settings.acks == 0 {
                    self.conn
                        .send_oneway(&request, self.settings.version)
                        .await?;
                    stats.requests += 1;
                    for b in &batches {
                        self.acknowledge(b, &mut stats);
                    }
                    continue;
                }
                let response = self.conn.send(&request, self.settings.version).await?;
                stats.requests += 1;
                in_flight.push_back((response, batches));
            }
            let Some((response, batches)) = in_flight.pop_front() else {
                break;
            };
            let timed = response.wait().await?;
            let micros = timed.received.duration_since(timed.sent).as_micros() as u64;
            stats.latency_us.saturating_record(micros.max(1));
            self.settle(&timed.response, batches, &mut stats, &mut retry)?;
            if !retry.is_empty() {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
        Ok(stats)
    }

    /// Claims records from the budget and encodes one batch per partition of this lane.
    fn new_batches(&self) -> Result<Vec<Batch>> {
        let mut batches = Vec::with_capacity(self.partitions.len());
        for &partition in &self.partitions {
            let n = self.budget.claim(self.settings.batch_records as u64);
            if n == 0 {
                break;
            }
            let data = encode_batch(
                n as usize,
                self.settings.record_size,
                self.clock.now_nanos(),
                &self.filler,
                self.settings.compression,
            )?;
            batches.push(Batch {
                partition,
                records: n,
                data,
                attempts: 0,
            });
        }
        Ok(batches)
    }

    fn request(&self, batches: &[Batch]) -> ProduceRequest {
        let mut topic = TopicProduceData::default();
        topic.name = self.topic.clone();
        topic.partition_data = batches
            .iter()
            .map(|b| {
                let mut p = PartitionProduceData::default();
                p.index = b.partition;
                p.records = Some(b.data.clone());
                p
            })
            .collect();
        let mut request = ProduceRequest::default();
        request.acks = self.settings.acks;
        request.timeout_ms = PRODUCE_TIMEOUT_MS;
        request.topic_data = vec![topic];
        request
    }

    fn acknowledge(&self, batch: &Batch, stats: &mut ProduceStats) {
        stats.acked_records += batch.records;
        stats.payload_bytes += batch.records * self.settings.record_size as u64;
        stats.batch_bytes += batch.data.len() as u64;
        self.budget
            .acked
            .fetch_add(batch.records, Ordering::Relaxed);
    }

    /// Books acknowledged batches and queues retriable failures; other errors end the run.
    fn settle(
        &self,
        response: &ProduceResponse,
        batches: Vec<Batch>,
        stats: &mut ProduceStats,
        retry: &mut Vec<Batch>,
    ) -> Result<()> {
        for mut batch in batches {
            let answer = response
                .responses
                .iter()
                .filter(|t| t.name == self.topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == batch.partition);
            let Some(answer) = answer else {
                bail!(
                    "Produce response from {} has no answer for {}-{}",
                    self.conn.addr(),
                    self.topic.0,
                    batch.partition
                );
            };
            if answer.error_code == 0 {
                self.acknowledge(&batch, stats);
                continue;
            }
            let error = describe_error(answer.error_code, answer.error_message.as_deref());
            batch.attempts += 1;
            if !is_retriable(answer.error_code) || batch.attempts >= MAX_ATTEMPTS {
                bail!(
                    "produce to {}-{} at {} failed after {} attempt(s): {error}",
                    self.topic.0,
                    batch.partition,
                    self.conn.addr(),
                    batch.attempts
                );
            }
            stats.retried_batches += 1;
            retry.push(batch);
        }
        Ok(())
    }
}

/// Capital letters from a fixed xorshift sequence, long enough to take record values from
/// at many offsets.
fn filler(record_size: usize) -> Bytes {
    let len = (record_size * 2).max(64 * 1024);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Encodes `n` records of `record_size` bytes whose values start with `stamp_nanos`.
fn encode_batch(
    n: usize,
    record_size: usize,
    stamp_nanos: u64,
    filler: &Bytes,
    compression: Compression,
) -> Result<Bytes> {
    let timestamp_ms = (stamp_nanos / 1_000_000) as i64;
    let span = filler.len() - record_size;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut value = BytesMut::with_capacity(record_size);
            value.put_u64(stamp_nanos);
            let start = (i * 7919 + stamp_nanos as usize) % span;
            value.extend_from_slice(&filler[start..start + record_size - 8]);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is
                // constant; this makes the batch's base sequence -1 (no idempotence).
                sequence: i as i32 - 1,
                timestamp: timestamp_ms,
                key: None,
                value: Some(value.freeze()),
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::with_capacity(n * (record_size + 16) + 128);
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .context("encode record batch")?;
    Ok(buf.freeze())
}

/// The send time a producer wrote at the front of a record value.
pub fn stamp_of(value: &[u8]) -> Option<u64> {
    value
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::walk_batches;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(
            assign_partitions(4, 8),
            vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]]
        );
        assert_eq!(assign_partitions(3, 2), vec![vec![0], vec![1], vec![0]]);
        assert_eq!(assign_partitions(1, 3), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn budget_stops_at_the_count() {
        let budget = Budget::new(Some(10), None);
        assert_eq!(budget.claim(4), 4);
        assert_eq!(budget.claim(4), 4);
        assert_eq!(budget.claim(4), 2);
        assert_eq!(budget.claim(4), 0);
        let expired = Budget::new(None, Some(Instant::now()));
        assert_eq!(expired.claim(4), 0);
    }

    #[test]
    fn encoded_batch_is_one_batch_with_stamped_values() {
        let filler = filler(100);
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let data = encode_batch(50, 100, 123_456_789, &filler, compression).unwrap();
            let walk = walk_batches(&data, 0).unwrap();
            assert_eq!(walk.batches, 1, "{compression:?}");
            assert_eq!(walk.records, 50);
            assert_eq!(walk.next_offset, Some(50));
            assert_eq!(walk.complete_len, data.len());
            let mut buf = data.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 50);
            for r in &set.records {
                let v = r.value.as_ref().unwrap();
                assert_eq!(v.len(), 100);
                assert_eq!(stamp_of(v), Some(123_456_789));
                assert!(v[8..].iter().all(u8::is_ascii_uppercase));
            }
            // Base sequence -1: not an idempotent batch.
            assert_eq!(&data[53..57], &(-1i32).to_be_bytes());
        }
    }

    #[test]
    fn clock_is_monotonic_and_near_wall_time() {
        let clock = Clock::new();
        let a = clock.now_nanos();
        let b = clock.now_nanos();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(a) < 5_000_000_000);
    }
}
