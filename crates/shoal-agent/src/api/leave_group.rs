//! LeaveGroup: one member (v0–v2) or a batch by member or instance id (v3+, KIP-345).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;

use crate::cluster;
use crate::Shared;

pub fn handle(shared: &Shared, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    if !cluster::coordinates(shared, group) {
        return LeaveGroupResponse::default().with_error_code(ResponseError::NotCoordinator.code());
    }
    if version < 3 {
        let code = match shared
            .groups
            .leave(group, &[(req.member_id.as_str().to_string(), None)])
        {
            Ok(codes) => codes[0],
            Err(code) => code,
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str().to_string(),
                m.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
            )
        })
        .collect();
    match shared.groups.leave(group, &members) {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(codes) => LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(codes)
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code)
                })
                .collect(),
        ),
    }
}
