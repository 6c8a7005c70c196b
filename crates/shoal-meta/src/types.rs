//! Plain data carried across the [`crate::MetaStore`] trait.

use std::collections::BTreeMap;
use uuid::Uuid;

/// Errors a metadata backend reports. Callers tell these apart.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic {topic_id} does not exist")]
    UnknownPartition { topic_id: Uuid, partition: i32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A compare-and-swap lost: the record changed since it was read. Re-read and retry.
    #[error("conflict: {0} changed concurrently")]
    Conflict(String),
    /// The backend failed (I/O, lost connection, corrupt file); may succeed if retried.
    #[error("metadata backend failed: {0}")]
    Backend(String),
    /// A write made under a coordination role ([`Fence`]) this agent no longer holds: its
    /// claim lapsed with its lease, or another agent holds the role now. Stop acting for
    /// the role; retrying the same write can never succeed.
    #[error("fenced: this agent no longer holds {0}")]
    Fenced(String),
    /// A write whose outcome is unknown: it may or may not have been applied (a timeout
    /// after the request was sent, and the read-back that would tell failed too).
    #[error("metadata write of unknown outcome (it may have been applied): {0}")]
    Ambiguous(String),
}

impl MetaError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, MetaError::Backend(_) | MetaError::Ambiguous(_))
    }
}

/// What a client asked for when creating a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Only the configs set explicitly; defaults are the agent's business.
    pub configs: BTreeMap<String, String>,
}

/// The flushed object a commit refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Key of the object in the object store (relative to the store's prefix).
    pub key: String,
    pub size: u64,
}

/// One partition's contiguous byte range in a flushed object, to be given offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentAppend {
    pub topic_id: Uuid,
    pub partition: i32,
    pub data_offset: u64,
    pub data_len: u64,
    /// Number of offsets the segment occupies.
    pub offset_span: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Set for a batch that carries a producer id (idempotent or transactional data, or a
    /// transaction marker): the commit checks and records its sequence. Such a segment
    /// holds exactly that one batch.
    pub producer: Option<ProducerBatch>,
}

/// The producer fields of one batch, checked inside the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence of the first record (-1 for markers).
    pub first_sequence: i32,
    /// Sequence of the last record (`first + count - 1`, wrapping at `i32::MAX`).
    pub last_sequence: i32,
    pub kind: BatchKind,
}

/// What a producer batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Ordinary records; `transactional` when written inside a transaction.
    Data { transactional: bool },
    /// A control batch ending the producer's transaction on the partition.
    Marker { commit: bool },
}

/// Why a commit refused a producer batch. Nothing was written for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRefusal {
    /// The sequence does not follow the last one written (a gap, or a duplicate older
    /// than the remembered batches).
    OutOfOrderSequence,
    /// The epoch is older than the partition's (a fenced zombie).
    InvalidProducerEpoch,
    /// A transactional batch for a partition not in an ongoing transaction of that producer.
    InvalidTxnState,
}

/// What a commit did with one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Committed; the segment's first batch has this base offset.
    Committed {
        base_offset: i64,
        log_start_offset: i64,
    },
    /// The partition does not exist (any more); nothing was committed for it.
    UnknownPartition,
    /// A retry of a batch already written: nothing new was written; the original batch
    /// starts at `base_offset`.
    Duplicate {
        base_offset: i64,
        log_start_offset: i64,
    },
    /// The producer checks refused the batch.
    Refused(ProducerRefusal),
    /// Not committed: the flush commit needed several backend transactions and an
    /// earlier one failed. `unknown` when that failure's outcome could not be resolved
    /// (the segment may have been committed after all), else definitely not committed.
    NotCommitted { unknown: bool },
}

/// An object's record while it is being written and not yet committed
/// ([`crate::MetaStore::add_pending_object`]), or its tombstone once GC fenced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingObject {
    pub key: String,
    /// Tells this record apart from an earlier or later one of the same key.
    pub instance: u64,
    /// GC fenced the object ([`crate::MetaStore::fence_object`]): no commit may use it.
    pub fenced: bool,
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
    /// Last stable offset: the first offset of the oldest open transaction, else the
    /// high watermark. read_committed consumers see only offsets below it.
    pub last_stable: i64,
}

/// A transaction aborted on a partition: records of `producer_id` in
/// `[first_offset, last_offset]` are hidden from read_committed consumers
/// (`last_offset` is the abort marker's offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A producer's state on one partition, as DescribeProducers shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence of the last record written, or -1.
    pub last_sequence: i32,
    /// When the producer last wrote (ms since the epoch).
    pub last_timestamp: i64,
    /// First offset of its open transaction on this partition, or -1.
    pub txn_start_offset: i64,
}

/// Where a transaction is in its life (Kafka's coordinator states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's admin APIs use.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn parse(s: &str) -> Option<TxnState> {
        [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// A partition taking part in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TxnPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// The coordinator's record of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// When the current transaction began (ms), or -1.
    pub started_ms: i64,
    /// When the record last changed (ms).
    pub updated_ms: i64,
    pub partitions: Vec<TxnPartition>,
    /// Consumer groups whose offsets the transaction commits.
    pub groups: Vec<String>,
    /// Transactions v2 (KIP-890): the producer id the end under way switches to because
    /// the epoch is exhausted, allocated when the end was decided (-1: none).
    pub next_producer_id: i64,
    /// Transactions v2: the producer id before the last switch, so that a retried end
    /// from it is recognised (-1: none).
    pub previous_producer_id: i64,
    /// Bumped by the store on every save; saves compare it (optimistic concurrency).
    pub version: u64,
}

/// Where a run of offsets lives: `[base_offset, end_offset)` in `object` at
/// `data_offset..data_offset + data_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub base_offset: i64,
    pub end_offset: i64,
    pub object_key: String,
    /// Size of the whole object, so readers never ask for bytes past its end.
    pub object_size: u64,
    pub data_offset: u64,
    pub data_len: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

/// An index entry of one partition, as compaction reads and replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    pub topic_id: Uuid,
    pub partition: i32,
    pub entry: IndexEntry,
}

/// A consumer group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp: i64,
}

/// A live agent, as the registry shows it to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub node_id: i32,
    /// Host and port Kafka clients connect to.
    pub host: String,
    pub port: i32,
    /// Availability zone (`--az`); empty when not given.
    pub az: String,
    /// Agent group (`--agent-group`): Metadata lists only agents of the client's group.
    pub group: String,
    /// What this agent does: any of `produce`, `fetch`, `jobs`.
    pub roles: Vec<String>,
    /// `host:port` of the internal endpoint peers use to read cached chunks, if any.
    pub peer_addr: Option<String>,
    /// The advertised address of each named listener (`--listeners`); `host`/`port` are
    /// the first one's. Empty for agents that predate named listeners.
    pub listeners: Vec<ListenerAddr>,
    /// Which run of the agent holds this registry entry: the etcd lease it was written
    /// under, unique for the cluster's life. A node id alone is not an identity: an agent
    /// whose lease lapsed and a newcomer that took its id have the same node id but never
    /// the same incarnation. 0 where there is no registry.
    pub incarnation: i64,
}

/// Proof that this agent holds a coordination role (a consumer group, a transactional
/// id): the role and the epoch of the claim (etcd: the claim key's create revision,
/// which no later claim of the same role can have). Every write made for the role
/// carries it and is refused with [`MetaError::Fenced`] once the claim is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub role: String,
    pub epoch: i64,
}

impl Fence {
    /// The fence of a backend with no registry (one agent holds every role).
    pub fn sole(role: &str) -> Fence {
        Fence {
            role: role.to_string(),
            epoch: 0,
        }
    }
}

/// This agent's standing in the registry at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No registry (SQLite): this agent is the whole cluster and holds every role.
    Alone,
    /// Registered under `incarnation`, and the lease cannot have expired yet: the last
    /// keep-alive was answered recently enough, by this process's monotonic clock, to
    /// leave a safety margin before etcd could drop the entry.
    Live { node_id: i32, incarnation: i64 },
    /// Not registered, or the lease may have lapsed (the store was out of reach, or the
    /// process was paused): coordinate nothing until registered again.
    Lapsed,
}

/// Where clients of one named listener reach an agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerAddr {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl AgentInfo {
    /// The address to give a client that connected through `listener`: that listener's
    /// on this agent, else (an agent without it) the agent's first listener.
    pub fn endpoint(&self, listener: &str) -> (&str, i32) {
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or((self.host.as_str(), self.port), |l| {
                (l.host.as_str(), l.port)
            })
    }
}

/// One report of a backend's commit watch: the (topic id, partition) pairs whose state
/// changed, or `None` when the watch may have missed changes and any may have.
pub type ChangedPartitions = Option<std::sync::Arc<[(Uuid, i32)]>>;

/// One part of a client-quota entity: a name, or the default for every name without a
/// quota of its own (Kafka's `<default>`, a null name in the protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaName {
    Default,
    Named(String),
}

/// What a client quota applies to, as Kafka's `/config/users/<user>/clients/<client-id>`:
/// a user, a client id, or both. At least one is present.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<QuotaName>,
    pub client_id: Option<QuotaName>,
}

impl QuotaEntity {
    /// The entity as one string, for backends to key by: `u=NAME`, `u*` (default user),
    /// `c=NAME`, `c*`, joined by `/` (user first). Names have `%` and `/` escaped, so
    /// the form is unambiguous and [`QuotaEntity::decode`] reverses it.
    pub fn encode(&self) -> String {
        let part = |tag: char, n: &QuotaName| match n {
            QuotaName::Default => format!("{tag}*"),
            QuotaName::Named(s) => format!("{tag}={}", s.replace('%', "%25").replace('/', "%2F")),
        };
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(part('u', u));
        }
        if let Some(c) = &self.client_id {
            parts.push(part('c', c));
        }
        parts.join("/")
    }

    /// Reverses [`QuotaEntity::encode`]; `None` for anything it does not produce.
    pub fn decode(s: &str) -> Option<QuotaEntity> {
        let mut e = QuotaEntity {
            user: None,
            client_id: None,
        };
        for part in s.split('/') {
            let name = match part.get(1..2)? {
                "*" if part.len() == 2 => QuotaName::Default,
                "=" => QuotaName::Named(part[2..].replace("%2F", "/").replace("%25", "%")),
                _ => return None,
            };
            let slot = match &part[..1] {
                "u" if e.client_id.is_none() => &mut e.user,
                "c" => &mut e.client_id,
                _ => return None,
            };
            if slot.replace(name).is_some() {
                return None;
            }
        }
        (e.user.is_some() || e.client_id.is_some()).then_some(e)
    }
}

/// The quotas set on one entity: `producer_byte_rate`, `consumer_byte_rate`,
/// `request_percentage` (the store keeps whatever keys it is given; the agent checks
/// them).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: BTreeMap<String, f64>,
}

/// A SCRAM mechanism a credential is for (RFC 5802 with SHA-256 or SHA-512, RFC 7677).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL name, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name (exact, as Kafka matches it).
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mechanism's number in Kafka's SCRAM admin APIs (1 and 2; 0 is "unknown").
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == t)
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One user's SCRAM credential for one mechanism, as Kafka stores it: what the server
/// needs to check a proof and prove itself (RFC 5802 section 3), never the password.
/// `stored_key` is `H(HMAC(SaltedPassword, "Client Key"))`, `server_key` is
/// `HMAC(SaltedPassword, "Server Key")`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    /// Keys are left out, so a credential in a log or a failed assertion gives nothing away.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Refuses an alteration naming one `(user, mechanism)` twice, which backends would
/// apply in some order (etcd refuses a transaction touching a key twice).
pub(crate) fn check_scram_alteration(
    upserts: &[ScramCredential],
    deletions: &[(String, ScramMechanism)],
) -> Result<(), MetaError> {
    let mut seen = std::collections::BTreeSet::new();
    let pairs = upserts
        .iter()
        .map(|c| (c.user.as_str(), c.mechanism))
        .chain(deletions.iter().map(|(u, m)| (u.as_str(), *m)));
    for (user, m) in pairs {
        if !seen.insert((user, m)) {
            return Err(MetaError::Invalid(format!(
                "the {m} credential of user '{user}' is changed twice in one call"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_entities_round_trip() {
        let named = |s: &str| Some(QuotaName::Named(s.to_string()));
        for e in [
            QuotaEntity {
                user: named("ANONYMOUS"),
                client_id: None,
            },
            QuotaEntity {
                user: None,
                client_id: Some(QuotaName::Default),
            },
            QuotaEntity {
                user: Some(QuotaName::Default),
                client_id: named("a/b%2F*"),
            },
            QuotaEntity {
                user: named(""),
                client_id: named("="),
            },
        ] {
            let s = e.encode();
            assert_eq!(QuotaEntity::decode(&s), Some(e.clone()), "{s}");
        }
        assert_eq!(
            QuotaEntity {
                user: Some(QuotaName::Default),
                client_id: named("x")
            }
            .encode(),
            "u*/c=x"
        );
        for bad in ["", "x=1", "u", "u*x", "c=a/u=b", "u=a/u=b"] {
            assert_eq!(QuotaEntity::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn scram_mechanisms_have_kafka_names_and_numbers() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
            assert_eq!(ScramMechanism::from_kafka_type(m.kafka_type()), Some(m));
        }
        assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
        assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
    }
}
