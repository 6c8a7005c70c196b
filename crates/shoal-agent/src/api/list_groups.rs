//! ListGroups: groups coordinated here plus groups known only by their committed
//! offsets (shown as Empty), with the v4+ state filter and the v5+ type filter (classic
//! or consumer, the KIP-848 groups). Like a Kafka broker, an agent
//! lists only the groups it coordinates; admin clients ask every broker and merge.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::sb;
use crate::cluster::ClusterView;
use crate::errors::meta_code;
use crate::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let view = ClusterView::of(shared);
    // id → (state, protocol type, group type)
    let mut groups: BTreeMap<String, (String, String, &str)> = BTreeMap::new();
    match shared.meta.offset_groups().await {
        Ok(names) => {
            for n in names.into_iter().filter(|n| view.coordinates(n)) {
                groups.insert(n, ("Empty".into(), String::new(), "classic"));
            }
        }
        Err(e) => return ListGroupsResponse::default().with_error_code(meta_code(&e)),
    }
    for id in shared.groups.group_ids() {
        if !view.coordinates(&id) {
            continue;
        }
        if let Some(d) = shared.groups.describe(&id) {
            groups.insert(id, (d.state.to_string(), d.protocol_type, "classic"));
        } else if let Some(d) = shared.groups.consumer.describe(&id) {
            groups.insert(id, (d.state.to_string(), "consumer".into(), "consumer"));
        }
    }
    let wanted = |state: &str, kind: &str| {
        (version < 4
            || req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state)))
            && (version < 5
                || req.types_filter.is_empty()
                || req
                    .types_filter
                    .iter()
                    .any(|t| t.as_str().eq_ignore_ascii_case(kind)))
    };
    let listed = groups
        .into_iter()
        .filter(|(_, (state, _, kind))| wanted(state, kind))
        .map(|(id, (state, ptype, kind))| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(ptype));
            if version >= 4 {
                g = g.with_group_state(sb(state));
            }
            if version >= 5 {
                g = g.with_group_type(sb(kind));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
