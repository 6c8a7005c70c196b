//! The classic consumer-group requests, as one member sends them to its coordinator.
//!
//! [`GroupVersions`] picks the versions of FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit and OffsetFetch inside what the server advertised and what
//! this client handles (we stop below the versions that batch several groups or keys into
//! one request). [`GroupApi`] wraps one connection to the coordinator and builds each
//! request from the few values that change; it returns Kafka's answers with their error
//! codes untouched, because which codes mean "rejoin", "find the coordinator again" or
//! "give up" is the member's decision ([`crate::group`]), not this module's. The only
//! retries here are [`find_coordinator`] and [`ready_coordinator`] waiting for a
//! coordinator to exist and serve (Kafka creates its offsets topic on the first
//! FindCoordinator, then loads it).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{describe_error, pick_version, Connection};
use crate::consumer_protocol::{PROTOCOL_TYPE, RANGE};

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const MEMBER_ID_REQUIRED: i16 = 79;

/// Codes after which the member must look the coordinator up again (or wait for it).
pub fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// How long a member may stay silent before the coordinator drops it.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for known members to rejoin during a rebalance.
pub const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// How long [`find_coordinator`] waits for a coordinator to become available.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(60);
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);

/// The group APIs' versions, fixed for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupVersions {
    pub find_coordinator: i16,
    pub join_group: i16,
    pub sync_group: i16,
    pub heartbeat: i16,
    pub leave_group: i16,
    pub offset_commit: i16,
    pub offset_fetch: i16,
}

/// (API, lowest we can use, highest we want, what we use without ApiVersions). The
/// highest are versions Apache Kafka 3.x and Shoal both accept; FindCoordinator v4 and
/// OffsetFetch v8 batch several keys/groups, which one member never needs.
const WANTED: [(ApiKey, i16, i16, i16); 7] = [
    (ApiKey::FindCoordinator, 1, 3, 3),
    (ApiKey::JoinGroup, 1, 5, 5),
    (ApiKey::SyncGroup, 0, 3, 3),
    (ApiKey::Heartbeat, 0, 3, 3),
    (ApiKey::LeaveGroup, 0, 3, 3),
    (ApiKey::OffsetCommit, 2, 7, 7),
    (ApiKey::OffsetFetch, 1, 7, 7),
];

impl GroupVersions {
    /// The highest common versions, or our fixed choice when ApiVersions was not read.
    pub fn negotiate(advertised: Option<&[(i16, i16, i16)]>) -> Result<Self> {
        let mut v = [0i16; 7];
        for (slot, &(key, lo, hi, fallback)) in v.iter_mut().zip(WANTED.iter()) {
            *slot = match advertised {
                Some(advertised) => pick_version(advertised, key, lo, hi)?,
                None => fallback,
            };
        }
        Ok(Self {
            find_coordinator: v[0],
            join_group: v[1],
            sync_group: v[2],
            heartbeat: v[3],
            leave_group: v[4],
            offset_commit: v[5],
            offset_fetch: v[6],
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "FindCoordinator v{}, JoinGroup v{}, SyncGroup v{}, Heartbeat v{}, LeaveGroup v{}, \
             OffsetCommit v{}, OffsetFetch v{}",
            self.find_coordinator,
            self.join_group,
            self.sync_group,
            self.heartbeat,
            self.leave_group,
            self.offset_commit,
            self.offset_fetch
        )
    }
}

/// Asks `conn` (any broker) which broker coordinates `group` and returns its `host:port`,
/// waiting while the answer is retriable (the coordinator is still loading or its
/// offsets topic does not exist yet).
pub async fn find_coordinator(conn: &Connection, version: i16, group: &str) -> Result<String> {
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let deadline = Instant::now() + COORDINATOR_TIMEOUT;
    loop {
        let response = conn
            .call(&request, version)
            .await
            .with_context(|| format!("FindCoordinator for group {group}"))?;
        if response.error_code == 0 {
            return Ok(format!("{}:{}", response.host, response.port));
        }
        let error = describe_error(response.error_code, response.error_message.as_deref());
        if !is_coordinator_error(response.error_code) {
            bail!(
                "FindCoordinator for group {group} at {}: {error}",
                conn.addr()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "FindCoordinator for group {group} at {}: still {error} after {}s",
                conn.addr(),
                COORDINATOR_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(COORDINATOR_BACKOFF).await;
    }
}

/// Finds the coordinator of `group` and waits until it serves the group: an OffsetFetch
/// for partition 0 of `topic` answers without a coordinator error (Kafka answers
/// COORDINATOR_LOAD_IN_PROGRESS while it loads a new offsets topic partition). Returns the
/// coordinator's `host:port`.
pub async fn ready_coordinator(
    bootstrap: &Connection,
    versions: GroupVersions,
    client_id: &str,
    group: &str,
    topic: &str,
) -> Result<String> {
    let deadline = Instant::now() + COORDINATOR_TIMEOUT;
    loop {
        let addr = find_coordinator(bootstrap, versions.find_coordinator, group).await?;
        let api = GroupApi::connect(&addr, client_id, versions, group).await?;
        let answer = api.committed(topic, &[0]).await?;
        let code = std::iter::once(answer.error_code)
            .chain(answer.partitions.iter().map(|p| p.2))
            .find(|&c| c != 0)
            .unwrap_or(0);
        if !is_coordinator_error(code) {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!(
                "coordinator {addr} of group {group} still answers OffsetFetch with {} after {}s",
                describe_error(code, None),
                COORDINATOR_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(COORDINATOR_BACKOFF).await;
    }
}

/// Per-partition answer of OffsetFetch: (partition, committed offset or -1, error code).
pub struct CommittedOffsets {
    /// The request's own error (v2+), e.g. a coordinator that moved.
    pub error_code: i16,
    pub partitions: Vec<(i32, i64, i16)>,
}

/// One connection to a group's coordinator.
pub struct GroupApi {
    conn: Connection,
    versions: GroupVersions,
    group: GroupId,
}

impl GroupApi {
    pub async fn connect(
        addr: &str,
        client_id: &str,
        versions: GroupVersions,
        group: &str,
    ) -> Result<Self> {
        Ok(Self {
            conn: Connection::connect(addr, client_id).await?,
            versions,
            group: GroupId(StrBytes::from_string(group.to_string())),
        })
    }

    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// JoinGroup offering the range strategy with `metadata` (a consumer subscription).
    pub async fn join(&self, member_id: &str, metadata: &Bytes) -> Result<JoinGroupResponse> {
        let request = JoinGroupRequest::default()
            .with_group_id(self.group.clone())
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(RANGE))
                .with_metadata(metadata.clone())]);
        self.conn
            .call(&request, self.versions.join_group)
            .await
            .with_context(|| format!("JoinGroup {} at {}", self.group.0, self.addr()))
    }

    /// SyncGroup; only the leader sends `assignments` (member id, assignment bytes).
    pub async fn sync(
        &self,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncGroupResponse> {
        let mut request = SyncGroupRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, bytes)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(member))
                            .with_assignment(bytes)
                    })
                    .collect(),
            );
        if self.versions.sync_group >= 5 {
            request = request
                .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
                .with_protocol_name(Some(StrBytes::from_static_str(RANGE)));
        }
        self.conn
            .call(&request, self.versions.sync_group)
            .await
            .with_context(|| format!("SyncGroup {} at {}", self.group.0, self.addr()))
    }

    /// Heartbeat; returns its error code.
    pub async fn heartbeat(&self, generation: i32, member_id: &str) -> Result<i16> {
        let request = HeartbeatRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        let response = self
            .conn
            .call(&request, self.versions.heartbeat)
            .await
            .with_context(|| format!("Heartbeat {} at {}", self.group.0, self.addr()))?;
        Ok(response.error_code)
    }

    /// LeaveGroup for one member; returns the first error code of the request or member.
    pub async fn leave(&self, member_id: &str) -> Result<i16> {
        let member_id = StrBytes::from_string(member_id.to_string());
        let request = if self.versions.leave_group >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_members(vec![MemberIdentity::default().with_member_id(member_id)])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(self.group.clone())
                .with_member_id(member_id)
        };
        let response = self
            .conn
            .call(&request, self.versions.leave_group)
            .await
            .with_context(|| format!("LeaveGroup {} at {}", self.group.0, self.addr()))?;
        Ok(std::iter::once(response.error_code)
            .chain(response.members.iter().map(|m| m.error_code))
            .find(|&c| c != 0)
            .unwrap_or(0))
    }

    /// OffsetCommit of `offsets` (partition, next offset to read) of `topic`; returns the
    /// (partition, error code) pairs of the answer.
    pub async fn commit(
        &self,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<Vec<(i32, i16)>> {
        let request = OffsetCommitRequest::default()
            .with_group_id(self.group.clone())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(partition, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                        })
                        .collect(),
                )]);
        let response = self
            .conn
            .call(&request, self.versions.offset_commit)
            .await
            .with_context(|| format!("OffsetCommit {} at {}", self.group.0, self.addr()))?;
        Ok(response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.error_code))
            .collect())
    }

    /// OffsetFetch of `partitions` of `topic`.
    pub async fn committed(&self, topic: &str, partitions: &[i32]) -> Result<CommittedOffsets> {
        let request = OffsetFetchRequest::default()
            .with_group_id(self.group.clone())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_indexes(partitions.to_vec())]));
        let response = self
            .conn
            .call(&request, self.versions.offset_fetch)
            .await
            .with_context(|| format!("OffsetFetch {} at {}", self.group.0, self.addr()))?;
        let partitions = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            .collect();
        Ok(CommittedOffsets {
            error_code: response.error_code,
            partitions,
        })
    }
}

/// The committed offset of every partition `0..count`, or why not: asks OffsetFetch and
/// fails on any error code, naming it.
pub async fn committed_offsets(api: &GroupApi, topic: &str, count: i32) -> Result<Vec<i64>> {
    let all: Vec<i32> = (0..count).collect();
    let answer = api.committed(topic, &all).await?;
    if answer.error_code != 0 {
        bail!(
            "OffsetFetch at {}: {}",
            api.addr(),
            describe_error(answer.error_code, None)
        );
    }
    let mut offsets = vec![None; count as usize];
    for (partition, offset, code) in answer.partitions {
        if code != 0 {
            bail!(
                "OffsetFetch {topic}-{partition} at {}: {}",
                api.addr(),
                describe_error(code, None)
            );
        }
        if let Some(slot) = offsets.get_mut(partition as usize) {
            *slot = Some(offset);
        }
    }
    offsets
        .into_iter()
        .enumerate()
        .map(|(p, o)| o.ok_or_else(|| anyhow!("OffsetFetch did not answer for {topic}-{p}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_stay_inside_both_ranges() {
        // Apache Kafka 3.9's ranges for the group APIs.
        let kafka_39 = [
            (10, 0, 5),
            (11, 0, 9),
            (14, 0, 5),
            (12, 0, 4),
            (13, 0, 5),
            (8, 0, 9),
            (9, 0, 9),
        ];
        let v = GroupVersions::negotiate(Some(&kafka_39)).unwrap();
        assert_eq!(v, GroupVersions::negotiate(None).unwrap());
        assert_eq!(
            v.describe(),
            "FindCoordinator v3, JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v3, \
             OffsetCommit v7, OffsetFetch v7"
        );
        let old = [
            (10, 0, 2),
            (11, 0, 3),
            (14, 0, 2),
            (12, 0, 2),
            (13, 0, 2),
            (8, 0, 6),
            (9, 0, 5),
        ];
        let v = GroupVersions::negotiate(Some(&old)).unwrap();
        assert_eq!((v.join_group, v.leave_group, v.offset_fetch), (3, 2, 5));
        let err = GroupVersions::negotiate(Some(&old[1..])).unwrap_err();
        assert!(err.to_string().contains("FindCoordinator"), "{err}");
    }

    #[test]
    fn coordinator_errors() {
        assert!(is_coordinator_error(NOT_COORDINATOR));
        assert!(is_coordinator_error(COORDINATOR_LOAD_IN_PROGRESS));
        assert!(!is_coordinator_error(REBALANCE_IN_PROGRESS));
    }
}
