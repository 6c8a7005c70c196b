//! Producer ids and the transaction requests, as one producer sends them.
//!
//! [`TxnVersions`] picks the versions of InitProducerId, FindCoordinator,
//! AddPartitionsToTxn and EndTxn inside what the server advertised and what this client
//! handles: FindCoordinator stops at v3 (v4 batches keys), AddPartitionsToTxn at v3 (v4+
//! batch transactions and are meant for brokers) and EndTxn at v4 (v5 belongs to
//! transaction protocol v2, where every commit bumps the epoch). [`next_sequence`] is
//! Kafka's sequence arithmetic. The request helpers return Kafka's error codes untouched
//! where the caller decides what they mean ([`init_producer_id`], [`add_partitions`],
//! [`end_txn`]); the only waiting done here is [`init_idempotent`] and
//! [`find_txn_coordinator`] riding out a coordinator that is still being created or loaded.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{describe_error, is_retriable, pick_version, Connection};
use crate::group_client::is_coordinator_error;

pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
/// What AddPartitionsToTxn answers for the partitions it skipped after another failed.
const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// FindCoordinator key type of a transactional id.
const TRANSACTION_KEY_TYPE: i8 = 1;
/// How long to wait for a coordinator or a producer id before giving up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const SETUP_BACKOFF: Duration = Duration::from_millis(100);
/// The Java producer's default `transaction.timeout.ms`, sent by idempotent producers too.
pub const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// A producer id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
}

/// The base sequence after a batch of `records` starting at `sequence`: Kafka wraps from
/// `i32::MAX` to 0 (`DefaultRecordBatch.incrementSequence`).
pub fn next_sequence(sequence: i32, records: i32) -> i32 {
    if sequence > i32::MAX - records {
        records - (i32::MAX - sequence) - 1
    } else {
        sequence + records
    }
}

/// The transaction APIs' versions, fixed for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnVersions {
    pub init_producer_id: i16,
    pub find_coordinator: i16,
    pub add_partitions_to_txn: i16,
    pub end_txn: i16,
}

/// (API, lowest we can use, highest we want, what we use without ApiVersions).
const WANTED: [(ApiKey, i16, i16, i16); 4] = [
    (ApiKey::InitProducerId, 0, 5, 1),
    (ApiKey::FindCoordinator, 1, 3, 3),
    (ApiKey::AddPartitionsToTxn, 0, 3, 1),
    (ApiKey::EndTxn, 0, 4, 1),
];

impl TxnVersions {
    /// The highest common versions, or our fixed choice when ApiVersions was not read.
    pub fn negotiate(advertised: Option<&[(i16, i16, i16)]>) -> Result<Self> {
        let mut v = [0i16; 4];
        for (slot, &(key, lo, hi, fallback)) in v.iter_mut().zip(WANTED.iter()) {
            *slot = match advertised {
                Some(advertised) => pick_version(advertised, key, lo, hi)?,
                None => fallback,
            };
        }
        Ok(Self {
            init_producer_id: v[0],
            find_coordinator: v[1],
            add_partitions_to_txn: v[2],
            end_txn: v[3],
        })
    }

    /// Only the InitProducerId version, for idempotent producers without transactions.
    pub fn init_producer_id(advertised: Option<&[(i16, i16, i16)]>) -> Result<i16> {
        let (key, lo, hi, fallback) = WANTED[0];
        match advertised {
            Some(advertised) => pick_version(advertised, key, lo, hi),
            None => Ok(fallback),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "InitProducerId v{}, FindCoordinator v{}, AddPartitionsToTxn v{}, EndTxn v{}",
            self.init_producer_id, self.find_coordinator, self.add_partitions_to_txn, self.end_txn
        )
    }
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// One InitProducerId: the error code and, when it is 0, the producer.
pub async fn init_producer_id(
    conn: &Connection,
    version: i16,
    transactional_id: Option<&str>,
    transaction_timeout_ms: i32,
) -> Result<(i16, Producer)> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_transaction_timeout_ms(transaction_timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn
        .call(&request, version)
        .await
        .with_context(|| format!("InitProducerId to {}", conn.addr()))?;
    Ok((
        response.error_code,
        Producer {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        },
    ))
}

/// A producer id for an idempotent producer (no transactional id), waiting while the
/// server answers with a retriable or coordinator error.
pub async fn init_idempotent(conn: &Connection, version: i16) -> Result<Producer> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let (code, producer) =
            init_producer_id(conn, version, None, TRANSACTION_TIMEOUT_MS).await?;
        if code == 0 {
            if producer.id < 0 || producer.epoch < 0 {
                bail!(
                    "InitProducerId at {} gave producer id {} epoch {}",
                    conn.addr(),
                    producer.id,
                    producer.epoch
                );
            }
            return Ok(producer);
        }
        let error = describe_error(code, None);
        if !(is_retriable(code) || is_coordinator_error(code)) {
            bail!("InitProducerId at {}: {error}", conn.addr());
        }
        if Instant::now() > deadline {
            bail!(
                "InitProducerId at {}: still {error} after {}s",
                conn.addr(),
                SETUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(SETUP_BACKOFF).await;
    }
}

/// Asks `conn` (any broker) which broker coordinates `transactional_id` and returns its
/// `host:port`, waiting while the answer is a coordinator error (Kafka creates its
/// transaction state topic on the first such question).
pub async fn find_txn_coordinator(
    conn: &Connection,
    version: i16,
    transactional_id: &str,
) -> Result<String> {
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(transactional_id.to_string()))
        .with_key_type(TRANSACTION_KEY_TYPE);
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let response = conn
            .call(&request, version)
            .await
            .with_context(|| format!("FindCoordinator for transaction {transactional_id}"))?;
        if response.error_code == 0 {
            return Ok(format!("{}:{}", response.host, response.port));
        }
        let error = describe_error(response.error_code, response.error_message.as_deref());
        if !is_coordinator_error(response.error_code) {
            bail!(
                "FindCoordinator for transaction {transactional_id} at {}: {error}",
                conn.addr()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "FindCoordinator for transaction {transactional_id} at {}: still {error} after {}s",
                conn.addr(),
                SETUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(SETUP_BACKOFF).await;
    }
}

/// Adds `partitions` of `topic` to the open transaction; returns the first partition error
/// (OPERATION_NOT_ATTEMPTED only if nothing else failed), or 0.
pub async fn add_partitions(
    conn: &Connection,
    version: i16,
    transactional_id: &str,
    producer: Producer,
    topic: &TopicName,
    partitions: &[i32],
) -> Result<i16> {
    let wanted = AddPartitionsToTxnTopic::default()
        .with_name(topic.clone())
        .with_partitions(partitions.to_vec());
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(transactional_id))
        .with_v3_and_below_producer_id(ProducerId(producer.id))
        .with_v3_and_below_producer_epoch(producer.epoch)
        .with_v3_and_below_topics(vec![wanted]);
    let response = conn
        .call(&request, version)
        .await
        .with_context(|| format!("AddPartitionsToTxn to {}", conn.addr()))?;
    let codes: Vec<i16> = response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter())
        .map(|p| p.partition_error_code)
        .collect();
    if codes.len() < partitions.len() {
        bail!(
            "AddPartitionsToTxn at {} answered for {} of {} partitions",
            conn.addr(),
            codes.len(),
            partitions.len()
        );
    }
    Ok(first_error(&codes))
}

/// The code that explains a failed AddPartitionsToTxn best.
fn first_error(codes: &[i16]) -> i16 {
    codes
        .iter()
        .copied()
        .find(|&c| c != 0 && c != OPERATION_NOT_ATTEMPTED)
        .or_else(|| codes.iter().copied().find(|&c| c != 0))
        .unwrap_or(0)
}

/// Commits (or aborts) the open transaction; returns the error code.
pub async fn end_txn(
    conn: &Connection,
    version: i16,
    transactional_id: &str,
    producer: Producer,
    commit: bool,
) -> Result<i16> {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(transactional_id))
        .with_producer_id(ProducerId(producer.id))
        .with_producer_epoch(producer.epoch)
        .with_committed(commit);
    let response = conn
        .call(&request, version)
        .await
        .with_context(|| format!("EndTxn to {}", conn.addr()))?;
    Ok(response.error_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(next_sequence(0, 1), 1);
        assert_eq!(next_sequence(10, 64), 74);
        assert_eq!(next_sequence(i32::MAX - 5, 5), i32::MAX);
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 5), 3);
        assert_eq!(next_sequence(i32::MAX - 63, 64), 0);
    }

    #[test]
    fn versions_stay_below_broker_only_and_batched_forms() {
        let kafka_39 = [(10, 0, 6), (22, 0, 5), (24, 0, 5), (26, 0, 4)];
        let v = TxnVersions::negotiate(Some(&kafka_39)).unwrap();
        assert_eq!(
            v,
            TxnVersions {
                init_producer_id: 5,
                find_coordinator: 3,
                add_partitions_to_txn: 3,
                end_txn: 4
            }
        );
        let shoal = [(10, 0, 4), (22, 0, 4), (24, 0, 3), (26, 0, 3)];
        let v = TxnVersions::negotiate(Some(&shoal)).unwrap();
        assert_eq!((v.init_producer_id, v.end_txn), (4, 3));
        assert_eq!(TxnVersions::init_producer_id(Some(&shoal)).unwrap(), 4);
        assert_eq!(TxnVersions::init_producer_id(None).unwrap(), 1);
        let no_txn = [(10, 0, 4), (22, 0, 4)];
        let err = TxnVersions::negotiate(Some(&no_txn)).unwrap_err();
        assert!(err.to_string().contains("AddPartitionsToTxn"), "{err}");
        assert!(TxnVersions::negotiate(None)
            .unwrap()
            .describe()
            .starts_with("InitProducerId v1, FindCoordinator v3"));
    }

    #[test]
    fn add_partitions_error_prefers_the_cause() {
        assert_eq!(first_error(&[0, 0]), 0);
        assert_eq!(first_error(&[55, 51]), 51);
        assert_eq!(first_error(&[55]), 55);
    }
}
