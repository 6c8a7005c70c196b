//! ConsumerGroupDescribe (KIP-848): a consumer-protocol group's epochs, assignor and
//! members, with each member's current and target assignment. A group that is not a
//! consumer group here (classic, or unknown) gets GROUP_ID_NOT_FOUND, after which admin
//! clients describe it with DescribeGroups; groups another agent coordinates get
//! NOT_COORDINATOR.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::ResponseError;

use super::{sb, topic_name};
use crate::cluster::ClusterView;
use crate::groups::consumer::Tp;
use crate::topics::Snapshot;
use crate::Shared;

fn assignment(tps: &[Tp], topics: &Snapshot) -> Assignment {
    let mut by_topic: BTreeMap<uuid::Uuid, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(*t).or_default().push(*p);
    }
    Assignment::default().with_topic_partitions(
        by_topic
            .into_iter()
            .map(|(id, ps)| {
                let name = topics
                    .by_id
                    .get(&id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(topic_name(&name))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub async fn handle(
    shared: &Arc<Shared>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let view = ClusterView::of(shared);
    let topics = shared.topics.snapshot().await.unwrap_or_default();
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if !view.coordinates(id.0.as_str()) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(d) = shared.groups.consumer.describe(id.0.as_str()) else {
                return base
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(format!(
                        "group {} is not a consumer-protocol group here",
                        id.0.as_str()
                    ))));
            };
            base.with_group_state(sb(d.state))
                .with_group_epoch(d.epoch)
                .with_assignment_epoch(d.assignment_epoch)
                .with_assignor_name(sb(d.assignor))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            Member::default()
                                .with_member_id(sb(m.member_id))
                                .with_instance_id(m.instance_id.map(sb))
                                .with_rack_id(m.rack_id.map(sb))
                                .with_member_epoch(m.member_epoch)
                                // KIP-1099 (v1): 0 classic, 1 consumer protocol.
                                .with_member_type(if m.classic { 0 } else { 1 })
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_subscribed_topic_names(
                                    m.topics.iter().map(|t| topic_name(t)).collect(),
                                )
                                .with_subscribed_topic_regex(m.regex.map(sb))
                                .with_assignment(assignment(&m.assigned, &topics))
                                .with_target_assignment(assignment(&m.target, &topics))
                        })
                        .collect(),
                )
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
