//! DeleteAcls: removes the bindings each filter selects (needs Alter on the cluster)
//! and reports, per filter, what it removed. Valid filters are applied in one atomic
//! store call; an invalid filter fails alone. The agent's copy is reloaded at once.

use std::sync::Arc;

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{AclFilter, AclOperation, AclResourceType};

use super::acl_codec::{filter, WireFilter};
use super::sb;
use crate::errors::{denied_code, meta_code};
use crate::security::acl::{Caller, CLUSTER_NAME};
use crate::Shared;

fn failed(code: i16, message: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
}

pub async fn handle(
    shared: &Arc<Shared>,
    who: &Caller,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let rt = AclResourceType::Cluster;
    if !shared
        .authorizer
        .authorize(who, AclOperation::Alter, rt, CLUSTER_NAME)
    {
        let results = req
            .filters
            .iter()
            .map(|_| failed(denied_code(rt), "Alter on the cluster is needed".into()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let checked: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(&WireFilter {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_deref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_deref(),
                host: f.host_filter.as_deref(),
                operation: f.operation,
                permission: f.permission_type,
            })
        })
        .collect();
    let valid: Vec<AclFilter> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .cloned()
        .collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        shared.meta.delete_acls(&valid).await
    };
    if let Ok(d) = &deleted {
        let count: usize = d.iter().map(Vec::len).sum();
        if count > 0 {
            if let Err(e) = crate::reload_acls(shared).await {
                tracing::warn!(error = %e, "could not reload ACLs after DeleteAcls; the next periodic reload will");
            }
            tracing::info!(principal = %who.principal, count, "deleted ACLs");
        }
    }
    let mut per_valid = match &deleted {
        Ok(d) => d.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &deleted) {
            (Err(why), _) => failed(ResponseError::InvalidRequest.code(), why),
            (Ok(_), Err(e)) => failed(meta_code(e), e.to_string()),
            (Ok(_), Ok(_)) => {
                let matched = per_valid.next().unwrap_or_default();
                let acls = matched
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(sb(b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(sb(b.principal))
                            .with_host(sb(b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(acls)
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
