//! DescribeAcls: the stored bindings a filter selects (needs Describe on the cluster),
//! grouped by resource pattern as Kafka answers. Reads the metadata store, not the
//! agent's copy, so a describe right after a create through any agent sees it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::ResponseError;
use shoal_meta::{AclOperation, AclResourceType};

use super::acl_codec::{filter, WireFilter};
use super::sb;
use crate::errors::{denied_code, meta_code};
use crate::security::acl::{Caller, CLUSTER_NAME};
use crate::Shared;

fn error(code: i16, message: String) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
}

pub async fn handle(
    shared: &Arc<Shared>,
    who: &Caller,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let rt = AclResourceType::Cluster;
    if !shared
        .authorizer
        .authorize(who, AclOperation::Describe, rt, CLUSTER_NAME)
    {
        return error(denied_code(rt), "Describe on the cluster is needed".into());
    }
    let f = match filter(&WireFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_deref(),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_deref(),
        host: req.host_filter.as_deref(),
        operation: req.operation,
        permission: req.permission_type,
    }) {
        Ok(f) => f,
        Err(why) => return error(ResponseError::InvalidRequest.code(), why),
    };
    let acls = match shared.meta.acls().await {
        Ok(a) => a,
        Err(e) => return error(meta_code(&e), e.to_string()),
    };
    let mut by_resource: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for b in acls.into_iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(sb(b.principal))
                    .with_host(sb(b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(sb(name))
                .with_pattern_type(pt.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
