//! ConsumerGroupHeartbeat (KIP-848): join, stay in, and leave a consumer-protocol group,
//! receiving the partitions the coordinator assigns (see [`crate::groups::consumer`]).
//!
//! Like JoinGroup for classic groups, a heartbeat that can change the group (a join, a
//! leave, a new subscription) is made only by the holder of the group's role in the
//! metadata store, so two agents with different views of the registry never both hand
//! out the group's partitions.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::ResponseError;

use super::sb;
use crate::cluster;
use crate::groups::consumer::{HeartbeatArgs, HeartbeatOutcome, Tp};
use crate::Shared;

fn response(o: HeartbeatOutcome, interval_ms: i32) -> ConsumerGroupHeartbeatResponse {
    let assignment = o.assignment.map(|tps| {
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> = Default::default();
        for (t, p) in tps {
            by_topic.entry(t).or_default().push(p);
        }
        Assignment::default().with_topic_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(t)
                        .with_partitions(ps)
                })
                .collect(),
        )
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(o.error)
        .with_error_message(o.message.map(sb))
        .with_member_id((!o.member_id.is_empty()).then(|| sb(o.member_id)))
        .with_member_epoch(o.member_epoch)
        .with_heartbeat_interval_ms(if o.error == 0 { interval_ms } else { 0 })
        .with_assignment(assignment)
}

pub async fn handle(
    shared: &Arc<Shared>,
    client_id: Option<&str>,
    peer: std::net::SocketAddr,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group = req.group_id.0.as_str().to_string();
    let refuse = |code: ResponseError, why: &str| {
        response(
            HeartbeatOutcome {
                error: code.code(),
                message: Some(why.to_string()),
                ..Default::default()
            },
            0, // an error answer carries no interval
        )
    };
    if !cluster::coordinates(shared, &group) {
        return refuse(
            ResponseError::NotCoordinator,
            "this agent does not coordinate the group",
        );
    }
    let own = shared.groups.configs.get(&*shared.meta, &group).await;
    let interval_ms = own
        .heartbeat
        .unwrap_or(shared.groups.consumer.heartbeat_interval)
        .as_millis() as i32;
    let changes = req.member_epoch <= 0
        || req.subscribed_topic_names.is_some()
        || req.subscribed_topic_regex.is_some()
        || req.server_assignor.is_some();
    if changes {
        if let Err(e) = cluster::roles::group_fence(shared, &group).await {
            tracing::debug!(group = %group, error = %e, "consumer group heartbeat refused: role not held");
            return refuse(
                ResponseError::NotCoordinator,
                "this agent does not hold the group's role",
            );
        }
    }
    let snapshot = match shared.topics.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(group = %group, error = %e, "consumer group heartbeat: topics unavailable");
            return refuse(
                ResponseError::CoordinatorNotAvailable,
                "topic metadata is unavailable; retry",
            );
        }
    };
    let all_topics = || snapshot.group_topics();
    let owned: Option<Vec<Tp>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
            .collect()
    });
    let args = HeartbeatArgs {
        group_id: group,
        member_id: req.member_id.as_str().to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.as_str().to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.as_str().to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.as_str().to_string()).collect()),
        subscribed_topic_regex: req
            .subscribed_topic_regex
            .as_ref()
            .map(|s| s.as_str().to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.as_str().to_string()),
        owned,
        client_id: client_id.unwrap_or_default().to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout: own.session,
    };
    let o = shared.groups.consumer_heartbeat(args, &all_topics);
    if o.error != 0 {
        tracing::debug!(group = %req.group_id.0.as_str(), member = %req.member_id.as_str(), epoch = req.member_epoch, code = o.error, message = ?o.message, "consumer group heartbeat refused");
    }
    response(o, interval_ms)
}
