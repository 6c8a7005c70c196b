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
//! name for it. By default records are not idempotent (producer id -1): a retried batch may
//! be stored twice, which the catch-up count would report.
//!
//! With idempotence (`--idempotent`) every lane first gets a producer id of its own
//! (InitProducerId without a transactional id, before the clock starts) and stamps each
//! batch with that id, its epoch and a base sequence per partition that grows by the
//! batch's record count ([`next_sequence`], wrapping like Kafka). A request carries at most
//! one batch per partition, so the `max_in_flight` cap (at most 5 when idempotent, Kafka's
//! limit) is also the number of batches in flight per producer id and partition. After a
//! retriable failure an idempotent lane stops sending, lets its other requests come back
//! (later batches of the failed partition then fail with OUT_OF_ORDER_SEQUENCE_NUMBER,
//! which is expected there and nowhere else), and re-sends the failed batches in sequence
//! order, one request at a time, unchanged. DUPLICATE_SEQUENCE_NUMBER counts as an
//! acknowledgement only for a batch that was sent before; every other error ends the run.

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
use crate::txn_client::{
    init_idempotent, next_sequence, Producer, DUPLICATE_SEQUENCE_NUMBER,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
};

const MAX_ATTEMPTS: u32 = 10;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
pub const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Kafka's limit of batches in flight per producer id and partition for idempotence.
pub const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

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
    /// The InitProducerId version to get each lane a producer id with; `None` for plain
    /// (non-idempotent) producers.
    pub init_producer_id: Option<i16>,
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
    /// Producer ids the lanes got (0 without idempotence).
    pub producer_ids: u64,
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
            producer_ids: 0,
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
        self.producer_ids += other.producer_ids;
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
    // Connect every lane (and get its producer id) before the clock starts so that setup
    // is not measured.
    let mut lanes = Vec::new();
    for partitions in assign_partitions(producers, cluster.partitions()) {
        for (leader, partitions) in cluster.group_by_leader(&partitions) {
            let conn = cluster.connect(leader).await?;
            let producer = match settings.init_producer_id {
                Some(version) => Some(
                    init_idempotent(&conn, version)
                        .await
                        .with_context(|| format!("producer id from {}", conn.addr()))?,
                ),
                None => None,
            };
            lanes.push((conn, partitions, producer));
        }
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (conn, partitions, producer) in lanes {
        let lane = Lane {
            conn,
            topic: cluster.topic_name(),
            next_sequences: vec![0; partitions.len()],
            partitions,
            producer,
            next_ordinal: 0,
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
    /// Base sequence in the batch (-1 without idempotence), for error messages.
    sequence: i32,
    /// Position in the lane's send order (first sends only; a re-send keeps it).
    ordinal: u64,
}

/// One producer's connection to one leader and the partitions it writes there.
struct Lane {
    conn: Connection,
    topic: TopicName,
    partitions: Vec<i32>,
    /// The lane's producer id and epoch when idempotent.
    producer: Option<Producer>,
    /// Base sequence of the next new batch, per entry of `partitions`.
    next_sequences: Vec<i32>,
    /// Ordinal of the next new batch: batches made so far.
    next_ordinal: u64,
    settings: Arc<ProduceSettings>,
    budget: Arc<Budget>,
    clock: Clock,
    filler: Bytes,
}

impl Lane {
    async fn run(mut self) -> Result<ProduceStats> {
        let mut stats = ProduceStats::new();
        stats.producer_ids = u64::from(self.producer.is_some());
        let mut in_flight: VecDeque<(ResponseFuture<ProduceResponse>, Vec<Batch>)> =
            VecDeque::new();
        let mut retry: Vec<Batch> = Vec::new();
        let idempotent = self.producer.is_some();
        let mut backoff = false;
        loop {
            while in_flight.len() < self.settings.max_in_flight {
                // Idempotent re-sends wait until nothing else is in flight and then go one
                // request at a time, so the server sees every partition's sequences in order.
                if idempotent && !retry.is_empty() && !in_flight.is_empty() {
                    break;
                }
                let batches = if retry.is_empty() {
                    self.new_batches()?
                } else {
                    first_per_partition(&mut retry)
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
            backoff |= self.settle(&timed.response, batches, &mut stats, &mut retry)?;
            // Pause once after failures, before the re-sends (an idempotent lane re-sends
            // only when nothing is in flight any more).
            if backoff && !retry.is_empty() && (!idempotent || in_flight.is_empty()) {
                tokio::time::sleep(RETRY_BACKOFF).await;
                backoff = false;
            }
        }
        Ok(stats)
    }

    /// Claims records from the budget and encodes one batch per partition of this lane.
    fn new_batches(&mut self) -> Result<Vec<Batch>> {
        let mut batches = Vec::with_capacity(self.partitions.len());
        for (i, &partition) in self.partitions.iter().enumerate() {
            let n = self.budget.claim(self.settings.batch_records as u64);
            if n == 0 {
                break;
            }
            let writer = match self.producer {
                Some(p) => BatchProducer::idempotent(p, self.next_sequences[i]),
                None => BatchProducer::NONE,
            };
            let data = encode_batch(
                n as usize,
                self.settings.record_size,
                self.clock.now_nanos(),
                &self.filler,
                self.settings.compression,
                writer,
            )?;
            if self.producer.is_some() {
                self.next_sequences[i] = next_sequence(self.next_sequences[i], n as i32);
            }
            batches.push(Batch {
                partition,
                records: n,
                data,
                attempts: 0,
                sequence: writer.sequence,
                ordinal: self.next_ordinal,
            });
            self.next_ordinal += 1;
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
    /// An idempotent lane also queues batches refused as out of order behind an earlier
    /// batch of their partition that failed and waits to be re-sent. Returns whether it
    /// queued any.
    fn settle(
        &self,
        response: &ProduceResponse,
        batches: Vec<Batch>,
        stats: &mut ProduceStats,
        retry: &mut Vec<Batch>,
    ) -> Result<bool> {
        let queued = retry.len();
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
            let code = answer.error_code;
            let idempotent = self.producer.is_some();
            // A re-sent batch that the server already has: its first write succeeded.
            let duplicate = idempotent && code == DUPLICATE_SEQUENCE_NUMBER && batch.attempts > 0;
            if code == 0 || duplicate {
                self.acknowledge(&batch, stats);
                continue;
            }
            let behind_a_failure = idempotent
                && code == OUT_OF_ORDER_SEQUENCE_NUMBER
                && retry
                    .iter()
                    .any(|r| r.partition == batch.partition && r.ordinal < batch.ordinal);
            let error = describe_error(code, answer.error_message.as_deref());
            batch.attempts += 1;
            if !(is_retriable(code) || behind_a_failure) || batch.attempts >= MAX_ATTEMPTS {
                let producer = match self.producer {
                    Some(p) => format!(
                        " (producer id {}, epoch {}, base sequence {}, {} records)",
                        p.id, p.epoch, batch.sequence, batch.records
                    ),
                    None => String::new(),
                };
                bail!(
                    "produce to {}-{} at {} failed after {} attempt(s): {error}{producer}",
                    self.topic.0,
                    batch.partition,
                    self.conn.addr(),
                    batch.attempts
                );
            }
            stats.retried_batches += 1;
            retry.push(batch);
        }
        Ok(retry.len() > queued)
    }
}

/// Takes the earliest sent batch of each partition out of `retry`: the next request of
/// re-sends. For an idempotent producer that is each partition's lowest outstanding
/// sequence, even when a re-sent batch failed again and was queued behind later ones.
fn first_per_partition(retry: &mut Vec<Batch>) -> Vec<Batch> {
    retry.sort_by_key(|b| b.ordinal);
    let mut next = Vec::new();
    let mut rest = Vec::new();
    for batch in retry.drain(..) {
        if next.iter().any(|b: &Batch| b.partition == batch.partition) {
            rest.push(batch);
        } else {
            next.push(batch);
        }
    }
    *retry = rest;
    next
}

/// Who writes a record batch: the header's producer id, epoch and base sequence (all -1
/// for a plain producer) and whether the batch is part of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub id: i64,
    pub epoch: i16,
    pub sequence: i32,
    pub transactional: bool,
}

impl BatchProducer {
    pub const NONE: Self = Self {
        id: -1,
        epoch: -1,
        sequence: -1,
        transactional: false,
    };

    pub fn idempotent(producer: Producer, sequence: i32) -> Self {
        Self {
            id: producer.id,
            epoch: producer.epoch,
            sequence,
            transactional: false,
        }
    }

    pub fn transactional(producer: Producer, sequence: i32) -> Self {
        Self {
            transactional: true,
            ..Self::idempotent(producer, sequence)
        }
    }
}

/// Capital letters from a fixed xorshift sequence, long enough to take record values from
/// at many offsets.
pub fn filler(record_size: usize) -> Bytes {
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

/// Encodes `n` records of `record_size` bytes whose values start with `stamp_nanos`, as
/// one batch written by `producer`.
pub fn encode_batch(
    n: usize,
    record_size: usize,
    stamp_nanos: u64,
    filler: &Bytes,
    compression: Compression,
    producer: BatchProducer,
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
                transactional: producer.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer.id,
                producer_epoch: producer.epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is
                // constant (in wrapping i32 arithmetic) and writes the first record's
                // sequence as the batch's base sequence; only that one goes on the wire.
                sequence: producer.sequence.wrapping_add(i as i32),
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
    use std::collections::BTreeMap;

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
            let data = encode_batch(
                50,
                100,
                123_456_789,
                &filler,
                compression,
                BatchProducer::NONE,
            )
            .unwrap();
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
    fn idempotent_batches_carry_producer_and_base_sequence() {
        let filler = filler(100);
        let producer = Producer { id: 4242, epoch: 3 };
        // A batch that wraps past i32::MAX is still one batch with its base sequence.
        let base = i32::MAX - 2;
        let writer = BatchProducer::idempotent(producer, base);
        for compression in [Compression::None, Compression::Zstd] {
            let data = encode_batch(10, 100, 1, &filler, compression, writer).unwrap();
            assert_eq!(
                walk_batches(&data, 0).unwrap().batches,
                1,
                "{compression:?}"
            );
            assert_eq!(&data[21..23], &(compression as i16).to_be_bytes()); // not transactional
            assert_eq!(&data[43..51], &4242i64.to_be_bytes());
            assert_eq!(&data[51..53], &3i16.to_be_bytes());
            assert_eq!(&data[53..57], &base.to_be_bytes());
            assert_eq!(&data[57..61], &10i32.to_be_bytes());
            let mut buf = data.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 10);
            assert!(set
                .records
                .iter()
                .all(|r| r.producer_id == 4242 && r.producer_epoch == 3 && !r.transactional));
        }
        assert_eq!(next_sequence(base, 10), 7);
        let txn = BatchProducer::transactional(producer, 5);
        assert!(txn.transactional && txn.sequence == 5 && txn.id == 4242);
    }

    fn batch(partition: i32, ordinal: u64) -> Batch {
        Batch {
            partition,
            records: 1,
            data: Bytes::new(),
            attempts: 1,
            sequence: ordinal as i32,
            ordinal,
        }
    }

    #[test]
    fn resends_go_one_batch_per_partition_in_send_order() {
        let mut retry = vec![
            batch(0, 1),
            batch(1, 2),
            batch(0, 3),
            batch(0, 5),
            batch(1, 4),
        ];
        let order = |batches: &[Batch]| -> Vec<(i32, u64)> {
            batches.iter().map(|b| (b.partition, b.ordinal)).collect()
        };
        assert_eq!(order(&first_per_partition(&mut retry)), [(0, 1), (1, 2)]);
        assert_eq!(order(&first_per_partition(&mut retry)), [(0, 3), (1, 4)]);
        assert_eq!(order(&first_per_partition(&mut retry)), [(0, 5)]);
        assert!(first_per_partition(&mut retry).is_empty());
    }

    /// A broker that checks sequences as Kafka does and refuses the first batch of
    /// partition 0 once with NOT_LEADER_OR_FOLLOWER: the later batches of partition 0
    /// already in flight come back OUT_OF_ORDER_SEQUENCE_NUMBER, and the lane must re-send
    /// all of them in order without losing or doubling a record. Returns the next expected
    /// sequence per partition and the error codes it answered.
    async fn sequence_checking_broker(
        listener: tokio::net::TcpListener,
    ) -> (BTreeMap<i32, i32>, Vec<i16>) {
        use kafka_protocol::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use kafka_protocol::messages::{ApiKey, ResponseHeader};
        use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut stream, _) = listener.accept().await.unwrap();
        let mut expected: BTreeMap<i32, i32> = BTreeMap::new();
        let mut codes = Vec::new();
        let mut refused = false;
        while let Ok(len) = stream.read_u32().await {
            let mut frame = vec![0u8; len as usize];
            stream.read_exact(&mut frame).await.unwrap();
            let mut buf = Bytes::from(frame);
            let header = decode_request_header_from_buffer(&mut buf).unwrap();
            let version = header.request_api_version;
            let request = ProduceRequest::decode(&mut buf, version).unwrap();
            let mut topic = TopicProduceResponse::default();
            topic.name = request.topic_data[0].name.clone();
            for data in &request.topic_data[0].partition_data {
                let records = data.records.as_ref().unwrap();
                assert_eq!(&records[43..51], &77i64.to_be_bytes());
                let sequence = i32::from_be_bytes(records[53..57].try_into().unwrap());
                let count = i32::from_be_bytes(records[57..61].try_into().unwrap());
                let next = expected.entry(data.index).or_insert(0);
                let code = if data.index == 0 && sequence == 0 && !refused {
                    refused = true;
                    6
                } else if sequence == *next {
                    *next = next_sequence(sequence, count);
                    0
                } else {
                    OUT_OF_ORDER_SEQUENCE_NUMBER
                };
                codes.push(code);
                let mut answer = PartitionProduceResponse::default();
                answer.index = data.index;
                answer.error_code = code;
                topic.partition_responses.push(answer);
            }
            let mut response = ProduceResponse::default();
            response.responses = vec![topic];
            let mut reply = header_bytes(header.correlation_id, version);
            response.encode(&mut reply, version).unwrap();
            stream.write_u32(reply.len() as u32).await.unwrap();
            stream.write_all(&reply).await.unwrap();
        }
        return (expected, codes);

        fn header_bytes(correlation_id: i32, version: i16) -> BytesMut {
            let mut header = ResponseHeader::default();
            header.correlation_id = correlation_id;
            let mut buf = BytesMut::new();
            let header_version = ApiKey::Produce.response_header_version(version);
            header.encode(&mut buf, header_version).unwrap();
            buf
        }
    }

    #[tokio::test]
    async fn idempotent_lane_resends_in_sequence_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let broker = tokio::spawn(sequence_checking_broker(listener));
        let lane = Lane {
            conn: Connection::connect(&addr, "test").await.unwrap(),
            topic: TopicName(kafka_protocol::protocol::StrBytes::from_static_str("t")),
            partitions: vec![0, 1],
            producer: Some(Producer { id: 77, epoch: 0 }),
            next_sequences: vec![0, 0],
            next_ordinal: 0,
            settings: Arc::new(ProduceSettings {
                version: 9,
                record_size: 16,
                batch_records: 4,
                max_in_flight: 5,
                acks: -1,
                compression: Compression::None,
                init_producer_id: Some(4),
            }),
            budget: Arc::new(Budget::new(Some(80), None)),
            clock: Clock::new(),
            filler: filler(16),
        };
        let stats = lane.run().await.unwrap();
        assert_eq!(stats.acked_records, 80);
        assert_eq!(stats.producer_ids, 1);
        let (expected, codes) = broker.await.unwrap();
        // Ten batches of four records per partition, each taken exactly once.
        assert_eq!(expected, BTreeMap::from([(0, 40), (1, 40)]));
        assert_eq!(codes.iter().filter(|&&c| c == 6).count(), 1);
        let out_of_order = codes
            .iter()
            .filter(|&&c| c == OUT_OF_ORDER_SEQUENCE_NUMBER)
            .count();
        assert_eq!(out_of_order, 4, "{codes:?}");
        assert_eq!(stats.retried_batches, 5);
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
