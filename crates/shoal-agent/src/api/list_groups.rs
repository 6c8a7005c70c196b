//! ListGroups: groups coordinated here plus groups known only by their committed
//! offsets (shown as Empty), with the v4+ state filter. Like a Kafka broker, an agent
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
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    match shared.meta.offset_groups().await {
        Ok(names) => {
            for n in names.into_iter().filter(|n| view.coordinates(n)) {
                groups.insert(n, ("Empty".into(), String::new()));
            }
        }
        Err(e) => return ListGroupsResponse::default().with_error_code(meta_code(&e)),
    }
    for id in shared.groups.group_ids() {
        if !view.coordinates(&id) {
            continue;
        }
        if let Some(d) = shared.groups.describe(&id) {
            groups.insert(id, (d.state.to_string(), d.protocol_type));
        }
    }
    let wanted = |state: &str| {
        version < 4
            || req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state))
    };
    let listed = groups
        .into_iter()
        .filter(|(_, (state, _))| wanted(state))
        .map(|(id, (state, ptype))| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(ptype));
            if version >= 4 {
                g = g.with_group_state(sb(state));
            }
            if version >= 5 {
                g = g.with_group_type(sb("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
