//! Where quotas meet requests: [`apply`] counts a handled request against its client's
//! quotas, writes the throttle time into the response and mutes the connection.
//!
//! Produce bytes are counted (and the connection muted) as soon as the request is taken
//! in, before its answer waits for the flush, so a storming producer is held back at
//! once; Fetch bytes and handler time are counted when the answer is ready.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{FetchRequest, FetchResponse, ProduceRequest, ResponseKind};
use tokio::time::Instant;

use super::{percent_seconds, QuotaType, Throttle, Timed, ANONYMOUS};
use crate::api::Reply;
use crate::metrics::Metrics;
use crate::Shared;

/// Record bytes a Produce request carries.
pub fn produce_bytes(req: &ProduceRequest) -> u64 {
    req.topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
        .sum()
}

/// Record bytes a Fetch response returns (what its records markers stand for).
fn fetch_bytes(resp: &FetchResponse) -> u64 {
    resp.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            p.records
                .as_ref()
                .map_or(0, |r| shoal_wire::segments::records_len(r) as u64)
        })
        .sum()
}

/// How many agents share a quota of `kind`: the live agents of this agent's group with
/// the role serving it (1 when alone or without a registry).
fn share(shared: &Shared, kind: QuotaType) -> usize {
    let live = shared.meta.live_agents();
    let n = live
        .iter()
        .filter(|a| a.group == shared.me.group)
        .filter(|a| kind.role().is_none_or(|r| a.roles.iter().any(|x| x == r)))
        .count();
    n.max(1)
}

/// Caps a Fetch's `max_bytes` to what its client's `consumer_byte_rate` allows over the
/// window, as Kafka does, so a throttled consumer gets modest responses, not one huge
/// one and a long wait. (The first batch is still returned whole, however large.)
pub fn cap_fetch(shared: &Shared, client_id: &str, req: &mut FetchRequest) {
    let kind = QuotaType::Fetch;
    let share = || share(shared, kind);
    if let Some(cap) = shared
        .quotas
        .max_per_request(kind, ANONYMOUS, client_id, share)
    {
        req.max_bytes = req.max_bytes.min(cap.clamp(1.0, i32::MAX as f64) as i32);
    }
}

/// What one request is counted as.
pub struct Usage<'a> {
    pub client_id: &'a str,
    /// Record bytes of a Produce request.
    pub produce_bytes: Option<u64>,
    /// Time the handler's synchronous part spent being polled.
    pub busy: Duration,
}

/// Counts `value` of `kind` for `client_id`; returns the wait, counted in metrics.
fn count(shared: &Shared, kind: QuotaType, client_id: &str, value: f64, now: Instant) -> Duration {
    let wait = shared.quotas.record(
        kind,
        ANONYMOUS,
        client_id,
        value,
        || share(shared, kind),
        now,
    );
    if !wait.is_zero() {
        let (n, ms) = match kind {
            QuotaType::Produce => (
                &shared.metrics.throttled_produce,
                &shared.metrics.throttled_produce_ms,
            ),
            QuotaType::Fetch => (
                &shared.metrics.throttled_fetch,
                &shared.metrics.throttled_fetch_ms,
            ),
            QuotaType::Request => (
                &shared.metrics.throttled_request,
                &shared.metrics.throttled_request_ms,
            ),
        };
        Metrics::add(n, 1);
        Metrics::add(ms, wait.as_millis() as u64);
    }
    wait
}

/// Counts the request against its client's quotas and throttles what is over them.
pub fn apply(
    shared: &Arc<Shared>,
    throttle: &Arc<Throttle>,
    usage: Usage<'_>,
    reply: Reply,
) -> Reply {
    if shared.quotas.table().is_empty() {
        return reply; // nothing to enforce: measure nothing
    }
    let now = Instant::now();
    let client_id = usage.client_id.to_string();
    let mut wait = Duration::ZERO;
    if let Some(bytes) = usage.produce_bytes {
        wait = count(shared, QuotaType::Produce, &client_id, bytes as f64, now);
    }
    match reply {
        Reply::Now(mut resp) => {
            let busy = percent_seconds(usage.busy);
            wait = wait.max(count(shared, QuotaType::Request, &client_id, busy, now));
            throttle_with(throttle, resp.as_deref_mut(), wait, now);
            Reply::Now(resp)
        }
        Reply::Later(answer) => {
            if !wait.is_zero() {
                throttle.extend(now + wait);
            }
            let (shared, throttle, busy) = (shared.clone(), throttle.clone(), usage.busy);
            Reply::Later(Box::pin(async move {
                let (mut resp, polled) = Timed::new(answer).await;
                let now = Instant::now();
                if let Some(ResponseKind::Fetch(r)) = resp.as_deref() {
                    let bytes = fetch_bytes(r) as f64;
                    wait = wait.max(count(&shared, QuotaType::Fetch, &client_id, bytes, now));
                }
                let busy = percent_seconds(busy + polled);
                wait = wait.max(count(&shared, QuotaType::Request, &client_id, busy, now));
                throttle_with(&throttle, resp.as_deref_mut(), wait, now);
                resp
            }))
        }
    }
}

/// Mutes the connection for `wait` and says so in the response.
fn throttle_with(
    throttle: &Throttle,
    resp: Option<&mut ResponseKind>,
    wait: Duration,
    now: Instant,
) {
    if wait.is_zero() {
        return;
    }
    throttle.extend(now + wait);
    if let Some(resp) = resp {
        set_throttle_time(resp, wait.as_millis().min(i32::MAX as u128) as i32);
    }
}

/// Raises a response's `throttle_time_ms` to `ms` (responses without one are left as
/// they are; versions without the field do not encode it).
pub fn set_throttle_time(resp: &mut ResponseKind, ms: i32) {
    macro_rules! raise {
        ($($kind:ident),* $(,)?) => {
            match resp {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                _ => {}
            }
        };
    }
    raise!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        DeleteRecords,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
    );
}
