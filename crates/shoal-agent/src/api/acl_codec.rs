//! What CreateAcls, DescribeAcls and DeleteAcls share: checking the bindings and
//! filters clients send (Kafka's wire codes into [`shoal_meta`]'s types) and the one
//! authorization all three need, on the cluster.
//!
//! A binding is refused (INVALID_REQUEST) for an unknown or ANY code, an empty resource
//! name, a cluster resource not named `kafka-cluster`, a principal not `Type:name`, or
//! a host neither `*` nor an IP address. Filters accept ANY (and MATCH for the pattern
//! type) and null names.

use std::net::IpAddr;

use shoal_meta::{
    AclBinding, AclFilter, AclOperation, AclPatternFilter, AclPatternType, AclPermission,
    AclResourceType, ACL_ANY, WILDCARD_HOST,
};

use crate::security::acl::CLUSTER_NAME;
use crate::security::Principal;

/// The wire fields of one binding, as CreateAcls sends it.
pub struct WireBinding<'a> {
    pub resource_type: i8,
    pub resource_name: &'a str,
    pub pattern_type: i8,
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: i8,
    pub permission: i8,
}

/// Checks one binding a client wants created.
pub fn binding(w: &WireBinding<'_>) -> Result<AclBinding, String> {
    let resource_type = AclResourceType::from_code(w.resource_type)
        .ok_or_else(|| format!("invalid resource type {}", w.resource_type))?;
    let pattern_type = AclPatternType::from_code(w.pattern_type).ok_or_else(|| {
        format!(
            "invalid pattern type {} (LITERAL or PREFIXED)",
            w.pattern_type
        )
    })?;
    let operation = AclOperation::from_code(w.operation)
        .ok_or_else(|| format!("invalid operation {}", w.operation))?;
    let permission = AclPermission::from_code(w.permission)
        .ok_or_else(|| format!("invalid permission type {} (ALLOW or DENY)", w.permission))?;
    if w.resource_name.is_empty() {
        return Err("the resource name must not be empty".into());
    }
    if resource_type == AclResourceType::Cluster && w.resource_name != CLUSTER_NAME {
        return Err(format!(
            "the only valid name for the cluster resource is {CLUSTER_NAME}"
        ));
    }
    if Principal::parse(w.principal).is_none() {
        return Err(format!(
            "invalid principal '{}' (want Type:name, e.g. User:alice)",
            w.principal
        ));
    }
    if w.host != WILDCARD_HOST && w.host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "invalid host '{}' (want * or an IP address)",
            w.host
        ));
    }
    Ok(AclBinding {
        resource_type,
        resource_name: w.resource_name.to_string(),
        pattern_type,
        principal: w.principal.to_string(),
        host: w.host.to_string(),
        operation,
        permission,
    })
}

/// The wire fields of one filter, as DescribeAcls and DeleteAcls send it.
pub struct WireFilter<'a> {
    pub resource_type: i8,
    pub resource_name: Option<&'a str>,
    pub pattern_type: i8,
    pub principal: Option<&'a str>,
    pub host: Option<&'a str>,
    pub operation: i8,
    pub permission: i8,
}

/// Checks one filter.
pub fn filter(w: &WireFilter<'_>) -> Result<AclFilter, String> {
    fn any_or<T>(code: i8, what: &str, f: fn(i8) -> Option<T>) -> Result<Option<T>, String> {
        if code == ACL_ANY {
            return Ok(None);
        }
        f(code)
            .map(Some)
            .ok_or_else(|| format!("invalid {what} {code} in filter"))
    }
    Ok(AclFilter {
        resource_type: any_or(w.resource_type, "resource type", AclResourceType::from_code)?,
        resource_name: w.resource_name.map(str::to_string),
        pattern: AclPatternFilter::from_code(w.pattern_type)
            .ok_or_else(|| format!("invalid pattern type {} in filter", w.pattern_type))?,
        principal: w.principal.map(str::to_string),
        host: w.host.map(str::to_string),
        operation: any_or(w.operation, "operation", AclOperation::from_code)?,
        permission: any_or(w.permission, "permission type", AclPermission::from_code)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire<'a>(rt: i8, name: &'a str, principal: &'a str, host: &'a str) -> WireBinding<'a> {
        WireBinding {
            resource_type: rt,
            resource_name: name,
            pattern_type: 3,
            principal,
            host,
            operation: 3,
            permission: 3,
        }
    }

    #[test]
    fn bindings_are_checked() {
        let ok = binding(&wire(2, "t", "User:alice", "*")).unwrap();
        assert_eq!(ok.resource_type, AclResourceType::Topic);
        assert_eq!(ok.operation, AclOperation::Read);
        assert!(binding(&wire(2, "t", "User:alice", "10.1.2.3")).is_ok());
        assert!(binding(&wire(4, "kafka-cluster", "User:alice", "*")).is_ok());
        assert!(binding(&wire(4, "other", "User:alice", "*")).is_err());
        assert!(
            binding(&wire(1, "t", "User:alice", "*")).is_err(),
            "ANY type"
        );
        assert!(binding(&wire(2, "", "User:alice", "*")).is_err());
        assert!(binding(&wire(2, "t", "alice", "*")).is_err());
        assert!(binding(&wire(2, "t", "User:alice", "host.example")).is_err());
        let mut w = wire(2, "t", "User:a", "*");
        w.pattern_type = 2;
        assert!(binding(&w).is_err(), "MATCH is for filters");
        w.pattern_type = 3;
        w.operation = 1;
        assert!(binding(&w).is_err(), "ANY operation");
        w.operation = 3;
        w.permission = 0;
        assert!(binding(&w).is_err());
    }

    #[test]
    fn filters_take_any_and_match() {
        let f = filter(&WireFilter {
            resource_type: 1,
            resource_name: None,
            pattern_type: 2,
            principal: Some("User:bob"),
            host: None,
            operation: 1,
            permission: 1,
        })
        .unwrap();
        assert_eq!(f.resource_type, None);
        assert_eq!(f.pattern, AclPatternFilter::Match);
        assert_eq!(f.principal.as_deref(), Some("User:bob"));
        let bad = WireFilter {
            resource_type: 0,
            resource_name: None,
            pattern_type: 1,
            principal: None,
            host: None,
            operation: 1,
            permission: 1,
        };
        assert!(filter(&bad).is_err());
    }
}
