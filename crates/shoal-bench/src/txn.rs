//! Transaction phase (`--txn-commits N`): the commit latency of one transactional producer.
//!
//! Runs after the other phases, on the benchmark topic's first partition(s)
//! ([`TXN_PARTITIONS`]). It finds the coordinator of a fresh transactional id
//! (FindCoordinator with key type 1) and gets a producer id and epoch for it
//! (InitProducerId, retried while the coordinator is loading, busy or elsewhere; Apache
//! Kafka creates its transaction state topic on first use, so that wait is reported but
//! timed apart). Then, N times and strictly one after the other, as the Java producer does
//! for `beginTransaction(); send(); commitTransaction()`:
//! 1. AddPartitionsToTxn for the partitions it writes;
//! 2. one Produce per leader with one transactional batch of one record per partition
//!    (attributes bit 4, producer id, epoch, a sequence per partition that continues
//!    across transactions), acks=-1, carrying the transactional id;
//! 3. EndTxn(commit).
//!
//! Each transaction yields two samples: the EndTxn round trip and the whole transaction,
//! from sending AddPartitionsToTxn to the EndTxn answer. A coordinator still finishing the
//! previous commit answers AddPartitionsToTxn with CONCURRENT_TRANSACTIONS (Kafka writes
//! the markers after answering EndTxn); such answers are retried after 1, 2, 4 ... 32 ms
//! and counted, and their waiting is part of the whole-transaction figure, as it is for a
//! real client. Finally a read_committed Fetch (isolation level 1) reads the partitions
//! from where the phase started until no transaction is open (last stable offset = high
//! watermark); it must return exactly N records, all transactional ([`walk_committed`]:
//! control batches are markers, not records; batches of aborted transactions are left
//! out as a read_committed consumer does).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::client::{describe_error, is_retriable, Connection};
use crate::cluster::Cluster;
use crate::consume::batch_headers;
use crate::group_client::is_coordinator_error;
use crate::produce::{encode_batch, filler, BatchProducer, Clock, PRODUCE_TIMEOUT_MS};
use crate::report::{new_histogram, Latency, TxnFigures};
use crate::txn_client::{
    add_partitions, end_txn, find_txn_coordinator, init_producer_id, next_sequence, Producer,
    TxnVersions, CONCURRENT_TRANSACTIONS, TRANSACTION_TIMEOUT_MS,
};

/// How many partitions (from partition 0) each transaction writes one record to.
pub const TXN_PARTITIONS: i32 = 1;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// Backoff after a busy answer doubles from the first value up to the second.
const BUSY_BACKOFF: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(32));
/// How long one request may keep getting busy answers, and setup may take.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before asking a coordinator that is not ready again during setup.
const SETUP_BACKOFF: Duration = Duration::from_millis(100);
const MAX_PRODUCE_ATTEMPTS: u32 = 10;
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long the read_committed check waits for the last markers and reads.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const READ_MAX_WAIT_MS: i32 = 200;

/// Runs N transactions and the read_committed check; see the module documentation.
pub async fn run(
    cluster: Arc<Cluster>,
    commits: u64,
    record_size: usize,
    clock: Clock,
) -> Result<TxnFigures> {
    let versions = TxnVersions::negotiate(cluster.advertised.as_deref())?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let transactional_id = format!("shoal-bench-txn-{millis}-{}", std::process::id());
    let client_id = format!("{}-txn", cluster.client_id);
    let partitions: Vec<i32> = (0..cluster.partitions().min(TXN_PARTITIONS)).collect();
    let start = cluster
        .list_offsets(-1)
        .await
        .context("find the latest offsets before the transactions")?;

    let looking = Instant::now();
    let bootstrap = Connection::connect(&cluster.bootstrap, &client_id).await?;
    let (coordinator, producer) =
        init_transactional(&bootstrap, versions, &client_id, &transactional_id).await?;
    let setup = looking.elapsed();
    eprintln!(
        "shoal-bench: transactional id {transactional_id}: coordinator {} (ready in {} ms), \
         producer id {} epoch {}; {commits} transaction(s); {}",
        coordinator.addr(),
        setup.as_millis(),
        producer.id,
        producer.epoch,
        versions.describe()
    );
    let mut writers = Vec::new();
    for (leader, partitions) in cluster.group_by_leader(&partitions) {
        writers.push(Writer {
            conn: cluster.connect(leader).await?,
            version: cluster.versions.produce,
            sequences: vec![0; partitions.len()],
            partitions,
        });
    }
    let txn = Txn {
        coordinator: &coordinator,
        versions,
        id: &transactional_id,
        producer,
    };
    let topic = cluster.topic_name();
    let filler = filler(record_size);
    let mut commit_us = new_histogram();
    let mut whole_us = new_histogram();
    let mut busy_retries = 0u64;
    let started = Instant::now();
    for _ in 0..commits {
        let begin = Instant::now();
        busy_retries += txn.add(&topic, &partitions).await?;
        for writer in &mut writers {
            let stamp = clock.now_nanos();
            writer
                .produce(&txn, &topic, record_size, stamp, &filler)
                .await?;
        }
        let committing = Instant::now();
        busy_retries += txn.commit().await?;
        let done = Instant::now();
        commit_us.saturating_record(micros(done - committing));
        whole_us.saturating_record(micros(done - begin));
    }
    let elapsed = started.elapsed();

    eprintln!("shoal-bench: reading the transactions back with read_committed...");
    let read = read_committed(&cluster, &partitions, &start)
        .await
        .context("read_committed check")?;
    let expected = commits * partitions.len() as u64;
    Ok(TxnFigures {
        transactional_id,
        coordinator: coordinator.addr().to_string(),
        versions: versions.describe(),
        partitions,
        commits,
        setup,
        elapsed,
        commit: Latency::from_micros(&commit_us),
        transaction: Latency::from_micros(&whole_us),
        busy_retries,
        records_read: read.walk.records,
        transactional_read: read.walk.transactional_records,
        aborted_skipped: read.walk.aborted_records,
        markers: read.walk.control_batches,
        expected,
        problems: check_read(expected, &read),
    })
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Finds the coordinator and gets a producer id for `transactional_id`, looking the
/// coordinator up again when it moved or is not ready and waiting while it is busy.
async fn init_transactional(
    bootstrap: &Connection,
    versions: TxnVersions,
    client_id: &str,
    transactional_id: &str,
) -> Result<(Connection, Producer)> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let addr =
            find_txn_coordinator(bootstrap, versions.find_coordinator, transactional_id).await?;
        let conn = Connection::connect(&addr, client_id).await?;
        loop {
            let (code, producer) = init_producer_id(
                &conn,
                versions.init_producer_id,
                Some(transactional_id),
                TRANSACTION_TIMEOUT_MS,
            )
            .await?;
            if code == 0 {
                return Ok((conn, producer));
            }
            let error = describe_error(code, None);
            if !(is_coordinator_error(code) || code == CONCURRENT_TRANSACTIONS) {
                bail!("InitProducerId for transactional id {transactional_id} at {addr}: {error}");
            }
            if Instant::now() > deadline {
                bail!(
                    "InitProducerId for transactional id {transactional_id} at {addr}: \
                     still {error} after {}s",
                    BUSY_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(SETUP_BACKOFF).await;
            if code != CONCURRENT_TRANSACTIONS && code != COORDINATOR_LOAD_IN_PROGRESS {
                break; // NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: ask again where it is
            }
        }
    }
}

/// The transactional producer's identity and where its coordinator is.
struct Txn<'a> {
    coordinator: &'a Connection,
    versions: TxnVersions,
    id: &'a str,
    producer: Producer,
}

impl Txn<'_> {
    /// AddPartitionsToTxn; returns the busy answers it retried.
    async fn add(&self, topic: &TopicName, partitions: &[i32]) -> Result<u64> {
        let (conn, version, id, producer) = (
            self.coordinator,
            self.versions.add_partitions_to_txn,
            self.id,
            self.producer,
        );
        retry_busy("AddPartitionsToTxn", conn, move || {
            add_partitions(conn, version, id, producer, topic, partitions)
        })
        .await
    }

    /// EndTxn(commit); returns the busy answers it retried.
    async fn commit(&self) -> Result<u64> {
        let (conn, version, id, producer) = (
            self.coordinator,
            self.versions.end_txn,
            self.id,
            self.producer,
        );
        retry_busy("EndTxn", conn, move || {
            end_txn(conn, version, id, producer, true)
        })
        .await
    }

    fn transactional_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.id.to_string()))
    }
}

/// Sends `call` until it answers something other than CONCURRENT_TRANSACTIONS or
/// COORDINATOR_LOAD_IN_PROGRESS, with a doubling backoff; any other error ends the run.
/// Returns how many busy answers it got.
async fn retry_busy<F, Fut>(what: &str, conn: &Connection, mut call: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i16>>,
{
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut backoff = BUSY_BACKOFF.0;
    let mut busy = 0u64;
    loop {
        let code = call().await?;
        if code == 0 {
            return Ok(busy);
        }
        let error = describe_error(code, None);
        if code != CONCURRENT_TRANSACTIONS && code != COORDINATOR_LOAD_IN_PROGRESS {
            bail!("{what} at {}: {error}", conn.addr());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} at {}: still {error} after {}s",
                conn.addr(),
                BUSY_TIMEOUT.as_secs()
            );
        }
        busy += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BUSY_BACKOFF.1);
    }
}

/// A connection to one leader and the transaction's partitions there.
struct Writer {
    conn: Connection,
    /// The run's Produce version (transactional ids need v3+, which every one we use is).
    version: i16,
    partitions: Vec<i32>,
    /// Base sequence of the next batch, per entry of `partitions`.
    sequences: Vec<i32>,
}

impl Writer {
    /// Writes one transactional record to each partition and waits until all are
    /// acknowledged; retriable errors re-send the same batches (with the same sequences,
    /// so a partition that had taken its batch answers as for a duplicate, not twice).
    async fn produce(
        &mut self,
        txn: &Txn<'_>,
        topic: &TopicName,
        record_size: usize,
        stamp_nanos: u64,
        filler: &Bytes,
    ) -> Result<()> {
        let mut batches = Vec::with_capacity(self.partitions.len());
        for (&partition, &sequence) in self.partitions.iter().zip(&self.sequences) {
            let writer = BatchProducer::transactional(txn.producer, sequence);
            let data = encode_batch(
                1,
                record_size,
                stamp_nanos,
                filler,
                Compression::None,
                writer,
            )?;
            batches.push((partition, data));
        }
        let request = produce_request(txn.transactional_id(), topic, &batches);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let response = self.conn.call(&request, self.version).await?;
            let failure = response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.error_code != 0);
            let answered = response
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .count();
            match failure {
                None if answered >= batches.len() => break,
                None => bail!(
                    "transactional Produce to {} answered for {answered} of {} partitions",
                    self.conn.addr(),
                    batches.len()
                ),
                Some(p) if is_retriable(p.error_code) && attempts < MAX_PRODUCE_ATTEMPTS => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Some(p) => {
                    let sequence = self
                        .partitions
                        .iter()
                        .position(|&q| q == p.index)
                        .map_or(-1, |i| self.sequences[i]);
                    bail!(
                        "transactional produce to {}-{} at {} failed after {attempts} \
                         attempt(s): {} (producer id {}, epoch {}, sequence {sequence})",
                        topic.0,
                        p.index,
                        self.conn.addr(),
                        describe_error(p.error_code, p.error_message.as_deref()),
                        txn.producer.id,
                        txn.producer.epoch
                    );
                }
            }
        }
        for sequence in &mut self.sequences {
            *sequence = next_sequence(*sequence, 1);
        }
        Ok(())
    }
}

/// A Produce of one batch per partition inside the transaction, acks=-1.
fn produce_request(
    transactional_id: TransactionalId,
    topic: &TopicName,
    batches: &[(i32, Bytes)],
) -> ProduceRequest {
    let mut data = TopicProduceData::default();
    data.name = topic.clone();
    data.partition_data = batches
        .iter()
        .map(|(partition, records)| {
            let mut p = PartitionProduceData::default();
            p.index = *partition;
            p.records = Some(records.clone());
            p
        })
        .collect();
    let mut request = ProduceRequest::default();
    request.transactional_id = Some(transactional_id);
    request.acks = -1;
    request.timeout_ms = PRODUCE_TIMEOUT_MS;
    request.topic_data = vec![data];
    request
}

/// What the read_committed check read.
struct CommittedRead {
    walk: CommittedWalk,
    /// Why the read ended before every partition was stable and read, if it did.
    stalled: Option<String>,
}

/// Reads `partitions` from `start` with read_committed Fetches until each has no open
/// transaction (last stable offset = high watermark) and is read up to its end.
async fn read_committed(
    cluster: &Cluster,
    partitions: &[i32],
    start: &[i64],
) -> Result<CommittedRead> {
    let mut total = CommittedWalk::default();
    let mut stalled = None;
    for (leader, partitions) in cluster.group_by_leader(partitions) {
        let conn = cluster.connect(leader).await?;
        let mut positions: Vec<(i32, i64)> =
            partitions.iter().map(|&p| (p, start[p as usize])).collect();
        let deadline = Instant::now() + READ_TIMEOUT;
        while !positions.is_empty() {
            if Instant::now() > deadline {
                stalled = Some(format!(
                    "read_committed from {} did not reach a stable end within {}s; \
                     (partition, offset) still open: {positions:?}",
                    conn.addr(),
                    READ_TIMEOUT.as_secs()
                ));
                break;
            }
            let request = committed_fetch(&cluster.topic_name(), &positions);
            let response = conn.call(&request, cluster.versions.fetch).await?;
            if response.error_code != 0 {
                bail!(
                    "read_committed Fetch from {}: {}",
                    conn.addr(),
                    describe_error(response.error_code, None)
                );
            }
            let mut finished = Vec::new();
            for p in response.responses.iter().flat_map(|t| t.partitions.iter()) {
                let Some(position) = positions.iter_mut().find(|(q, _)| *q == p.partition_index)
                else {
                    continue;
                };
                if p.error_code != 0 {
                    if is_retriable(p.error_code) {
                        continue;
                    }
                    bail!(
                        "read_committed Fetch {}-{} at offset {} from {}: {}",
                        cluster.topic,
                        p.partition_index,
                        position.1,
                        conn.addr(),
                        describe_error(p.error_code, None)
                    );
                }
                let aborted: Vec<(i64, i64)> = p
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect();
                let data = p.records.clone().unwrap_or_default();
                let walk = walk_committed(&data, position.1, &aborted)?;
                total.add(&walk);
                if let Some(next) = walk.next_offset {
                    position.1 = next;
                }
                if position.1 >= p.high_watermark && p.last_stable_offset >= p.high_watermark {
                    finished.push(position.0);
                }
            }
            positions.retain(|(p, _)| !finished.contains(p));
        }
    }
    Ok(CommittedRead {
        walk: total,
        stalled,
    })
}

/// A Fetch with isolation level 1 (read_committed) for `positions` (partition, offset).
fn committed_fetch(topic: &TopicName, positions: &[(i32, i64)]) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic.clone();
    fetch_topic.partitions = positions
        .iter()
        .map(|&(partition, offset)| {
            let mut p = FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = offset;
            p.partition_max_bytes = 1 << 20;
            p
        })
        .collect();
    let mut request = FetchRequest::default();
    request.max_wait_ms = READ_MAX_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = 8 << 20;
    request.isolation_level = 1;
    request.topics = vec![fetch_topic];
    request
}

/// What a read_committed consumer gets out of one partition's fetched bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommittedWalk {
    /// Records it returns (at or after the fetch offset).
    pub records: u64,
    /// Of those, records in transactional batches.
    pub transactional_records: u64,
    /// Records of aborted transactions, left out.
    pub aborted_records: u64,
    /// Transaction markers (control batches), never records.
    pub control_batches: u64,
    /// Offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
}

impl CommittedWalk {
    fn add(&mut self, other: &CommittedWalk) {
        self.records += other.records;
        self.transactional_records += other.transactional_records;
        self.aborted_records += other.aborted_records;
        self.control_batches += other.control_batches;
    }
}

/// Walks batch headers as a read_committed consumer filters them: control batches are
/// skipped, and so are transactional batches of a producer from an `aborted`
/// (producer id, first offset) entry at or before the batch until that producer's next
/// marker. (Kafka's consumer ends the range at the ABORT marker only; in a valid log the
/// next marker of an aborted range is its ABORT marker, so reading the marker's type is
/// not needed.)
pub fn walk_committed(
    data: &[u8],
    fetch_offset: i64,
    aborted: &[(i64, i64)],
) -> Result<CommittedWalk> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|&(_, first)| std::cmp::Reverse(first));
    let mut open_aborted: Vec<i64> = Vec::new();
    let mut walk = CommittedWalk::default();
    for header in batch_headers(data) {
        let header = header?;
        walk.next_offset = Some(header.last_offset + 1);
        while let Some(&(producer, _)) = pending
            .last()
            .filter(|&&(_, first)| first <= header.last_offset)
        {
            open_aborted.push(producer);
            pending.pop();
        }
        let in_aborted = open_aborted.contains(&header.producer_id);
        if header.is_control() {
            walk.control_batches += 1;
            open_aborted.retain(|&p| p != header.producer_id);
            continue;
        }
        let records = header.records_from(fetch_offset);
        if header.is_transactional() && in_aborted {
            walk.aborted_records += records;
            continue;
        }
        walk.records += records;
        if header.is_transactional() {
            walk.transactional_records += records;
        }
    }
    Ok(walk)
}

/// What is wrong with the read_committed result, if anything.
fn check_read(expected: u64, read: &CommittedRead) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(stalled) = &read.stalled {
        problems.push(stalled.clone());
    }
    let w = &read.walk;
    if w.records != expected {
        problems.push(format!(
            "read_committed returned {} records, {expected} were committed",
            w.records
        ));
    }
    if w.transactional_records != w.records {
        problems.push(format!(
            "{} of the records read are not in transactional batches",
            w.records - w.transactional_records
        ));
    }
    if w.aborted_records > 0 {
        problems.push(format!(
            "{} records belong to aborted transactions, none were aborted",
            w.aborted_records
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    const PRODUCER: Producer = Producer { id: 7, epoch: 2 };

    /// A data batch of `n` records at `base`, rebased like the server does.
    fn data_batch(base: i64, n: usize, writer: BatchProducer) -> Vec<u8> {
        let filler = filler(16);
        let data = encode_batch(n, 16, 1, &filler, Compression::None, writer).unwrap();
        rebase(data.to_vec(), base)
    }

    /// A COMMIT (type 1) or ABORT (type 0) marker of `producer` at `offset`.
    fn marker(offset: i64, producer: i64, commit: bool) -> Vec<u8> {
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer,
            producer_epoch: 2,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1,
            key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: IndexMap::new(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [record].iter(), &options).unwrap();
        rebase(buf.to_vec(), offset)
    }

    fn rebase(mut batch: Vec<u8>, base: i64) -> Vec<u8> {
        batch[..8].copy_from_slice(&base.to_be_bytes());
        batch
    }

    #[test]
    fn transactional_batches_carry_the_producer_and_bit_4() {
        let data = data_batch(0, 3, BatchProducer::transactional(PRODUCER, 41));
        assert_eq!(data[21..23], [0, 0x10]);
        assert_eq!(data[43..51], 7i64.to_be_bytes());
        assert_eq!(data[51..53], 2i16.to_be_bytes());
        assert_eq!(data[53..57], 41i32.to_be_bytes());
        let mut buf = Bytes::from(data);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert!(set.records.iter().all(|r| r.transactional && !r.control));
    }

    #[test]
    fn committed_walk_skips_markers() {
        let writer = |seq| BatchProducer::transactional(PRODUCER, seq);
        let mut data = data_batch(10, 1, writer(0));
        data.extend(marker(11, 7, true));
        data.extend(data_batch(12, 1, writer(1)));
        data.extend(marker(13, 7, true));
        let walk = walk_committed(&data, 10, &[]).unwrap();
        assert_eq!(
            walk,
            CommittedWalk {
                records: 2,
                transactional_records: 2,
                aborted_records: 0,
                control_batches: 2,
                next_offset: Some(14),
            }
        );
        // From the middle: the first record is before the fetch offset.
        let walk = walk_committed(&data, 11, &[]).unwrap();
        assert_eq!((walk.records, walk.control_batches), (1, 2));
    }

    #[test]
    fn committed_walk_leaves_out_aborted_transactions() {
        let other = Producer { id: 9, epoch: 0 };
        let mut data = data_batch(0, 2, BatchProducer::transactional(other, 0));
        data.extend(data_batch(2, 1, BatchProducer::transactional(PRODUCER, 0)));
        data.extend(marker(3, 9, false));
        data.extend(marker(4, 7, true));
        data.extend(data_batch(5, 3, BatchProducer::transactional(other, 2)));
        data.extend(data_batch(8, 4, BatchProducer::NONE));
        let walk = walk_committed(&data, 0, &[(9, 0)]).unwrap();
        assert_eq!(walk.records, 1 + 3 + 4);
        assert_eq!(walk.transactional_records, 1 + 3);
        assert_eq!(walk.aborted_records, 2);
        assert_eq!(walk.control_batches, 2);
        assert_eq!(walk.next_offset, Some(12));
    }

    #[test]
    fn read_check_names_each_problem() {
        let read = |records, transactional, aborted| CommittedRead {
            walk: CommittedWalk {
                records,
                transactional_records: transactional,
                aborted_records: aborted,
                control_batches: records,
                next_offset: None,
            },
            stalled: None,
        };
        assert!(check_read(5, &read(5, 5, 0)).is_empty());
        let problems = check_read(5, &read(4, 4, 0));
        assert_eq!(
            problems,
            vec!["read_committed returned 4 records, 5 were committed".to_string()]
        );
        assert_eq!(check_read(5, &read(5, 3, 1)).len(), 2);
        let mut stalled = read(5, 5, 0);
        stalled.stalled = Some("stuck".into());
        assert_eq!(check_read(5, &stalled), vec!["stuck".to_string()]);
    }

    #[test]
    fn committed_fetch_reads_committed() {
        let topic = TopicName(StrBytes::from_static_str("t"));
        let r = committed_fetch(&topic, &[(0, 42)]);
        assert_eq!(r.isolation_level, 1);
        assert_eq!(r.topics[0].partitions[0].fetch_offset, 42);
        let p = produce_request(
            TransactionalId(StrBytes::from_static_str("x")),
            &topic,
            &[(0, Bytes::from_static(b"b"))],
        );
        assert_eq!(p.acks, -1);
        assert_eq!(p.transactional_id.unwrap().0.as_str(), "x");
    }
}
