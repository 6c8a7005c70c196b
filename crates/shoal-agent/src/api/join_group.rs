//! JoinGroup: enter the group's next generation (see [`crate::groups`]).

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{sb, Reply};
use crate::cluster;
use crate::groups::{JoinArgs, JoinOutcome};
use crate::Shared;

fn response(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let members = o
        .members
        .into_iter()
        .map(|(id, inst, meta)| {
            JoinGroupResponseMember::default()
                .with_member_id(sb(id))
                .with_group_instance_id(if version >= 5 { inst.map(sb) } else { None })
                .with_metadata(meta)
        })
        .collect();
    let mut r = JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_leader(sb(o.leader))
        .with_member_id(sb(o.member_id))
        .with_members(members);
    // protocol_name is non-nullable before v7.
    r = r.with_protocol_name(match o.protocol_name {
        Some(n) => Some(sb(n)),
        None if version < 7 => Some(sb("")),
        None => None,
    });
    if version >= 7 {
        r = r.with_protocol_type(o.protocol_type.map(sb));
    }
    if version >= 9 {
        r = r.with_skip_assignment(o.skip_assignment);
    }
    r
}

pub async fn handle(
    shared: &Arc<Shared>,
    header_client_id: Option<&str>,
    peer: SocketAddr,
    req: JoinGroupRequest,
    version: i16,
) -> Reply {
    let args = JoinArgs {
        group_id: req.group_id.0.as_str().to_string(),
        member_id: req.member_id.as_str().to_string(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_string()),
        client_id: header_client_id.unwrap_or_default().to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            -1
        },
        protocol_type: req.protocol_type.as_str().to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let not_coordinator = move |member_id| {
        response(
            JoinOutcome {
                error: ResponseError::NotCoordinator.code(),
                generation: -1,
                member_id,
                ..Default::default()
            },
            version,
        )
    };
    if !cluster::coordinates(shared, &args.group_id) {
        return Reply::now(not_coordinator(args.member_id));
    }
    // Generations are made only by the holder of the group's role: two agents that both
    // think they coordinate the group (one with a stale view) never run two rebalances
    // that each hand out every partition. Claimed before the next request on this
    // connection is read, so the join is registered in request order.
    if let Err(e) = cluster::roles::group_fence(shared, &args.group_id).await {
        tracing::debug!(group = %args.group_id, error = %e, "join refused: role not held");
        return Reply::now(not_coordinator(args.member_id));
    }
    // Classic members of a consumer group (KIP-848's mixed groups) are assigned by the
    // coordinator, which resolves their subscriptions against the topics (a cached
    // snapshot; the group may become a consumer group at any moment, so always taken).
    let snapshot = match shared.topics.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(group = %args.group_id, error = %e, "join: topics unavailable");
            return Reply::now(response(
                JoinOutcome {
                    error: ResponseError::CoordinatorNotAvailable.code(),
                    generation: -1,
                    member_id: args.member_id,
                    ..Default::default()
                },
                version,
            ));
        }
    };
    let all_topics = || snapshot.group_topics();
    match shared.groups.join(args, &all_topics) {
        Err(o) => Reply::now(response(*o, version)),
        Ok(rx) => Reply::Later(Box::pin(async move {
            let o = rx.await.unwrap_or_else(|_| JoinOutcome {
                error: ResponseError::RebalanceInProgress.code(),
                generation: -1,
                ..Default::default()
            });
            Some(Box::new(ResponseKind::JoinGroup(response(o, version))))
        })),
    }
}
