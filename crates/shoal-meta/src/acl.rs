//! Kafka ACL bindings as the store keeps them, and the one place filters are matched.
//!
//! A binding says "principal P from host H is allowed (denied) operation O on the
//! resources matching pattern R". The enums carry Kafka's wire codes
//! (`AclResourceType`, `AclPatternType`, `AclOperation`, `AclPermissionType`), so the
//! agent converts without tables of its own and the backends can store them as small
//! integers. Filters ([`AclFilter`]) are what DescribeAcls and DeleteAcls send; their
//! `MATCH` pattern type finds every binding that would apply to one resource name
//! (literal equal, literal `*`, prefixed prefix), as Kafka's `ResourcePatternFilter`.

use serde::{Deserialize, Serialize};

/// The literal resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The host that matches every client address.
pub const WILDCARD_HOST: &str = "*";

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($v),* }

        impl $name {
            /// Every value, in wire-code order.
            pub const ALL: &'static [$name] = &[$($name::$v),*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$v => $code),* }
            }

            /// The value with wire code `code`, if it names one (not ANY or UNKNOWN).
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$v),)* _ => None }
            }

            /// The name Kafka's tools print (`Topic`, `PREFIXED`, `DescribeConfigs`).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $text),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// What kind of resource a binding protects. (Delegation tokens are left out.)
    AclResourceType {
        Topic = 2, "Topic";
        Group = 3, "Group";
        Cluster = 4, "Cluster";
        TransactionalId = 5, "TransactionalId";
    }
);

wire_enum!(
    /// How a binding's resource name is matched.
    AclPatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    /// What a binding allows or denies.
    AclOperation {
        All = 2, "All";
        Read = 3, "Read";
        Write = 4, "Write";
        Create = 5, "Create";
        Delete = 6, "Delete";
        Alter = 7, "Alter";
        Describe = 8, "Describe";
        ClusterAction = 9, "ClusterAction";
        DescribeConfigs = 10, "DescribeConfigs";
        AlterConfigs = 11, "AlterConfigs";
        IdempotentWrite = 12, "IdempotentWrite";
    }
);

wire_enum!(
    /// Whether a binding allows or denies.
    AclPermission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

/// Wire code of ANY in every ACL enum.
pub const ACL_ANY: i8 = 1;
/// Wire code of MATCH in the pattern-type enum (filters only).
pub const ACL_PATTERN_MATCH: i8 = 2;

/// One ACL binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: AclResourceType,
    /// A resource name, a prefix (PREFIXED), or `*` (LITERAL: every resource).
    pub resource_name: String,
    pub pattern_type: AclPatternType,
    /// `Type:name`, e.g. `User:alice`, or `User:*` for every user.
    pub principal: String,
    /// A client IP address, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// Whether this binding's resource pattern covers the resource `name` of type `rt`.
    pub fn applies_to(&self, rt: AclResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern_type {
                AclPatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
                }
                AclPatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

/// How a filter matches a binding's pattern type and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclPatternFilter {
    /// Any pattern type; a name, if given, must equal the binding's.
    Any,
    /// Bindings that would apply to the filter's name: literal equal, literal `*`, or a
    /// prefix of it. Without a name, any binding.
    Match,
    /// Only this pattern type; a name, if given, must equal the binding's.
    Exactly(AclPatternType),
}

impl AclPatternFilter {
    /// From Kafka's wire code (ANY, MATCH, LITERAL, PREFIXED).
    pub fn from_code(code: i8) -> Option<AclPatternFilter> {
        match code {
            ACL_ANY => Some(AclPatternFilter::Any),
            ACL_PATTERN_MATCH => Some(AclPatternFilter::Match),
            c => AclPatternType::from_code(c).map(AclPatternFilter::Exactly),
        }
    }
}

/// What DescribeAcls and DeleteAcls select by. `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<AclResourceType>,
    pub resource_name: Option<String>,
    pub pattern: AclPatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// The filter that matches every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: AclPatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// The filter that matches exactly `b`.
    pub fn exact(b: &AclBinding) -> AclFilter {
        AclFilter {
            resource_type: Some(b.resource_type),
            resource_name: Some(b.resource_name.clone()),
            pattern: AclPatternFilter::Exactly(b.pattern_type),
            principal: Some(b.principal.clone()),
            host: Some(b.host.clone()),
            operation: Some(b.operation),
            permission: Some(b.permission),
        }
    }

    /// Whether `b` is selected, with Kafka's rules (principal and host compare as
    /// strings: a filter for `User:alice` does not select a `User:*` binding).
    pub fn matches(&self, b: &AclBinding) -> bool {
        fn eq<T: PartialEq>(want: &Option<T>, got: &T) -> bool {
            want.as_ref().is_none_or(|w| w == got)
        }
        eq(&self.resource_type, &b.resource_type)
            && self.matches_pattern(b)
            && eq(&self.principal, &b.principal)
            && eq(&self.host, &b.host)
            && eq(&self.operation, &b.operation)
            && eq(&self.permission, &b.permission)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if let AclPatternFilter::Exactly(t) = self.pattern {
            if t != b.pattern_type {
                return false;
            }
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        match self.pattern {
            AclPatternFilter::Any | AclPatternFilter::Exactly(_) => *name == b.resource_name,
            AclPatternFilter::Match => b.applies_to(b.resource_type, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: AclResourceType, name: &str, pt: AclPatternType) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }

    #[test]
    fn wire_codes_round_trip_and_reject_any() {
        for op in AclOperation::ALL {
            assert_eq!(AclOperation::from_code(op.code()), Some(*op));
        }
        assert_eq!(AclOperation::from_code(ACL_ANY), None);
        assert_eq!(AclResourceType::from_code(0), None);
        assert_eq!(
            AclResourceType::from_code(6),
            None,
            "delegation tokens are left out"
        );
        assert_eq!(AclPermission::from_code(3), Some(AclPermission::Allow));
        assert_eq!(
            AclPatternFilter::from_code(2),
            Some(AclPatternFilter::Match)
        );
        assert_eq!(AclPatternFilter::from_code(0), None);
        assert_eq!(AclOperation::DescribeConfigs.to_string(), "DescribeConfigs");
    }

    #[test]
    fn match_filters_find_every_binding_that_applies_to_a_name() {
        use AclPatternType::*;
        use AclResourceType::*;
        let exact = binding(Topic, "orders", Literal);
        let wildcard = binding(Topic, "*", Literal);
        let prefix = binding(Topic, "ord", Prefixed);
        let other_prefix = binding(Topic, "pay", Prefixed);
        let other_literal = binding(Topic, "orders-dlq", Literal);
        let group = binding(Group, "orders", Literal);
        let f = AclFilter {
            resource_type: Some(Topic),
            resource_name: Some("orders".into()),
            pattern: AclPatternFilter::Match,
            ..AclFilter::any()
        };
        assert!(f.matches(&exact));
        assert!(f.matches(&wildcard));
        assert!(f.matches(&prefix));
        assert!(!f.matches(&other_prefix));
        assert!(!f.matches(&other_literal));
        assert!(!f.matches(&group));

        // ANY with a name compares names exactly, whatever the pattern type.
        let any = AclFilter {
            pattern: AclPatternFilter::Any,
            ..f.clone()
        };
        assert!(any.matches(&exact));
        assert!(!any.matches(&wildcard));
        assert!(!any.matches(&prefix));
        assert!(any.matches(&binding(Topic, "orders", Prefixed)));

        // A specific pattern type selects only that type, names exactly.
        let pre = AclFilter {
            resource_name: Some("ord".into()),
            pattern: AclPatternFilter::Exactly(Prefixed),
            ..f.clone()
        };
        assert!(pre.matches(&prefix));
        assert!(!pre.matches(&binding(Topic, "ord", Literal)));
        assert!(!pre.matches(&exact));
    }

    #[test]
    fn entry_fields_compare_as_given() {
        let b = binding(AclResourceType::Topic, "t", AclPatternType::Literal);
        assert!(AclFilter::any().matches(&b));
        assert!(AclFilter::exact(&b).matches(&b));
        let star = AclFilter {
            principal: Some("User:*".into()),
            ..AclFilter::any()
        };
        assert!(
            !star.matches(&b),
            "User:* in a filter is a string, not a wildcard"
        );
        let deny = AclFilter {
            permission: Some(AclPermission::Deny),
            ..AclFilter::any()
        };
        assert!(!deny.matches(&b));
        let host = AclFilter {
            host: Some("10.0.0.1".into()),
            ..AclFilter::any()
        };
        assert!(!host.matches(&b));
        let write = AclFilter {
            operation: Some(AclOperation::Write),
            ..AclFilter::any()
        };
        assert!(!write.matches(&b));
    }

    #[test]
    fn prefixed_bindings_apply_to_names_they_start() {
        let p = binding(AclResourceType::Group, "app-", AclPatternType::Prefixed);
        assert!(p.applies_to(AclResourceType::Group, "app-1"));
        assert!(p.applies_to(AclResourceType::Group, "app-"));
        assert!(!p.applies_to(AclResourceType::Group, "app"));
        assert!(!p.applies_to(AclResourceType::Topic, "app-1"));
    }
}
