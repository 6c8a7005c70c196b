//! CreateAcls: stores ACL bindings (needs Alter on the cluster).
//!
//! Valid bindings of one request are stored in one call; each creation gets its own
//! result, so one bad binding fails alone. An identical binding is not stored twice.
//! The bindings are stored whatever `--authorizer` says (so ACLs can be prepared and
//! listed on a playground) and enforced only with `--authorizer acl`. The agent's copy
//! is reloaded at once; other agents see them within a second.

use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{AclOperation, AclResourceType};

use super::acl_codec::{binding, WireBinding};
use super::sb;
use crate::errors::{denied_code, meta_code};
use crate::security::acl::{Caller, CLUSTER_NAME};
use crate::Shared;

fn failed(code: i16, message: String) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
}

pub async fn handle(
    shared: &Arc<Shared>,
    who: &Caller,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let rt = AclResourceType::Cluster;
    if !shared
        .authorizer
        .authorize(who, AclOperation::Alter, rt, CLUSTER_NAME)
    {
        let results = req
            .creations
            .iter()
            .map(|_| failed(denied_code(rt), "Alter on the cluster is needed".into()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<shoal_meta::AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            binding(&WireBinding {
                resource_type: c.resource_type,
                resource_name: &c.resource_name,
                pattern_type: c.resource_pattern_type,
                principal: &c.principal,
                host: &c.host,
                operation: c.operation,
                permission: c.permission_type,
            })
        })
        .collect();
    let valid: Vec<_> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .cloned()
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        shared.meta.create_acls(&valid).await
    };
    if stored.is_ok() && !valid.is_empty() {
        if let Err(e) = crate::reload_acls(shared).await {
            tracing::warn!(error = %e, "could not reload ACLs after CreateAcls; the next periodic reload will");
        }
        tracing::info!(principal = %who.principal, count = valid.len(), "created ACLs");
    }
    let results = checked
        .into_iter()
        .map(|c| match (c, &stored) {
            (Err(why), _) => failed(ResponseError::InvalidRequest.code(), why),
            (Ok(_), Err(e)) => failed(meta_code(e), e.to_string()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
