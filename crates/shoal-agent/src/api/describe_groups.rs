//! DescribeGroups: state, protocol and members with their metadata and assignments.
//! Unknown groups are reported as Dead with no error, as Kafka does; groups another
//! agent coordinates get NOT_COORDINATOR.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::sb;
use crate::cluster::ClusterView;
use crate::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let view = ClusterView::of(shared);
    let mut out = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let base = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(i32::MIN);
        if !view.coordinates(id.0.as_str()) {
            out.push(base.with_error_code(ResponseError::NotCoordinator.code()));
            continue;
        }
        let described = match shared.groups.describe(id.0.as_str()) {
            Some(d) => base
                .with_group_state(sb(d.state))
                .with_protocol_type(sb(d.protocol_type))
                .with_protocol_data(sb(d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.instance_id.map(sb)
                                } else {
                                    None
                                })
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            // A consumer-protocol group is no classic group: Dead here, as Kafka answers;
            // ConsumerGroupDescribe describes it.
            None if shared.groups.consumer.contains(id.0.as_str()) => {
                base.with_group_state(sb("Dead"))
            }
            None => {
                let has_offsets = shared
                    .meta
                    .group_offsets(id.0.as_str())
                    .await
                    .map(|o| !o.is_empty())
                    .unwrap_or(false);
                base.with_group_state(sb(if has_offsets { "Empty" } else { "Dead" }))
            }
        };
        out.push(described);
    }
    DescribeGroupsResponse::default().with_groups(out)
}
