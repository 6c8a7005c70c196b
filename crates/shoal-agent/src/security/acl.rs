//! The ACL authorizer: may this principal, from this host, do this operation on this
//! resource? Kafka's `StandardAuthorizer` rules, over a copy of the store's bindings.
//!
//! Lifecycle: the agent builds one [`Authorizer`] from its config, loads the bindings at
//! start and reloads them every second (so a binding created through any agent is
//! enforced by every agent within about a second); CreateAcls and DeleteAcls reload at
//! once on the agent that served them. With `--authorizer none` (the default) every
//! check passes and the bindings are only stored and listed.
//!
//! Rules, as Kafka's: super users may do anything; a DENY binding that matches wins over
//! any ALLOW; an ALLOW for Read, Write, Delete or Alter implies Describe, AlterConfigs
//! implies DescribeConfigs, All implies everything (DENY bindings imply nothing beyond
//! All); `User:*` matches every user and host `*` every address; a LITERAL `*` resource
//! name matches every resource of its type, a PREFIXED name every resource it starts.
//! A resource no binding applies to at all is open only with
//! `--allow-everyone-if-no-acl-found`, otherwise only to super users.
//!
//! Nothing here reads the store or the network: [`Authorizer::set_acls`] takes what was
//! read, so the rules are tested without either.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use shoal_meta::{
    AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType, WILDCARD_HOST,
    WILDCARD_RESOURCE,
};

use super::Principal;

/// The one name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The principal of ACLs that apply to every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// `--authorizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthorizerMode {
    /// Everything is allowed; ACLs are stored and listed but not enforced.
    #[default]
    None,
    /// ACLs are enforced.
    Acl,
}

impl std::str::FromStr for AuthorizerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AuthorizerMode::None),
            "acl" => Ok(AuthorizerMode::Acl),
            _ => Err(format!("unknown authorizer '{s}' (none or acl)")),
        }
    }
}

impl std::fmt::Display for AuthorizerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthorizerMode::None => "none",
            AuthorizerMode::Acl => "acl",
        })
    }
}

/// How the authorizer decides (`--authorizer`, `--super-users`,
/// `--allow-everyone-if-no-acl-found`).
#[derive(Debug, Clone, Default)]
pub struct AuthorizerConfig {
    pub mode: AuthorizerMode,
    /// Principals every check allows, whatever the bindings say.
    pub super_users: Vec<Principal>,
    /// Whether a resource with no binding at all is open to everyone (Kafka's
    /// `allow.everyone.if.no.acl.found`); otherwise only super users may use it.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses `--super-users`: principals separated by `;` (Kafka's `super.users`).
    pub fn parse_super_users(s: &str) -> Result<Vec<Principal>, String> {
        s.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                Principal::parse(p).ok_or_else(|| format!("bad super user '{p}' (want User:name)"))
            })
            .collect()
    }
}

/// Who is asking: a connection's principal and address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub host: IpAddr,
}

/// The ACL authorizer of one agent. Cheap to consult: one read lock and a scan of the
/// bindings of one resource type.
pub struct Authorizer {
    config: AuthorizerConfig,
    /// The store's bindings as last read, by resource type.
    acls: RwLock<Arc<BTreeMap<AclResourceType, Vec<AclBinding>>>>,
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig) -> Authorizer {
        Authorizer {
            config,
            acls: RwLock::default(),
        }
    }

    /// Whether ACLs are enforced (`--authorizer acl`).
    pub fn enabled(&self) -> bool {
        self.config.mode == AuthorizerMode::Acl
    }

    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// Replaces the bindings with what the metadata store holds.
    pub fn set_acls(&self, bindings: Vec<AclBinding>) {
        let mut by_type: BTreeMap<AclResourceType, Vec<AclBinding>> = BTreeMap::new();
        for b in bindings {
            by_type.entry(b.resource_type).or_default().push(b);
        }
        *self.acls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(by_type);
    }

    fn snapshot(&self) -> Arc<BTreeMap<AclResourceType, Vec<AclBinding>>> {
        self.acls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_super_user(&self, p: &Principal) -> bool {
        self.config.super_users.contains(p)
    }

    /// May `who` do `op` on the resource `name` of type `rt`?
    pub fn authorize(
        &self,
        who: &Caller,
        op: AclOperation,
        rt: AclResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled() || self.is_super_user(&who.principal) {
            return true;
        }
        let acls = self.snapshot();
        let principal = who.principal.to_string();
        let host = host_string(who.host);
        let mut found_any = false;
        let mut allowed = false;
        for b in acls.get(&rt).into_iter().flatten() {
            if !b.applies_to(rt, name) {
                continue;
            }
            found_any = true;
            if !principal_matches(b, &principal) || !host_matches(b, &host) {
                continue;
            }
            match b.permission {
                AclPermission::Deny if b.operation == op || b.operation == AclOperation::All => {
                    return false;
                }
                AclPermission::Deny => {}
                AclPermission::Allow => allowed |= implies(b.operation, op),
            }
        }
        if found_any {
            allowed
        } else {
            self.config.allow_everyone_if_no_acl_found
        }
    }

    /// Whether `who` may do `op` on at least one resource of type `rt` (Kafka's
    /// `authorizeByResourceType`, which InitProducerId uses for "Write on any topic"):
    /// some ALLOW for exactly `op` (or All) that no DENY covers entirely.
    pub fn authorize_any(&self, who: &Caller, op: AclOperation, rt: AclResourceType) -> bool {
        // A name no binding can be about: super users, and with
        // --allow-everyone-if-no-acl-found everyone, pass here.
        if self.authorize(who, op, rt, "\u{0}shoal-any-resource") {
            return true;
        }
        let acls = self.snapshot();
        let principal = who.principal.to_string();
        let host = host_string(who.host);
        let relevant = acls.get(&rt).into_iter().flatten().filter(|b| {
            principal_matches(b, &principal)
                && host_matches(b, &host)
                && (b.operation == op || b.operation == AclOperation::All)
        });
        let (deny, allow): (Vec<&AclBinding>, Vec<&AclBinding>) =
            relevant.partition(|b| b.permission == AclPermission::Deny);
        let denied_all = deny.iter().any(|d| match d.pattern_type {
            AclPatternType::Literal => d.resource_name == WILDCARD_RESOURCE,
            AclPatternType::Prefixed => d.resource_name.is_empty(),
        });
        if denied_all {
            return false;
        }
        let covered_by_deny_prefix = |name: &str| {
            deny.iter().any(|d| {
                d.pattern_type == AclPatternType::Prefixed && name.starts_with(&d.resource_name)
            })
        };
        allow.iter().any(|a| match a.pattern_type {
            AclPatternType::Literal => {
                let literal_denied = deny.iter().any(|d| {
                    d.pattern_type == AclPatternType::Literal && d.resource_name == a.resource_name
                });
                !literal_denied && !covered_by_deny_prefix(&a.resource_name)
            }
            AclPatternType::Prefixed => !covered_by_deny_prefix(&a.resource_name),
        })
    }

    /// Kafka's authorized-operations bit field for one resource: bit `code` set for every
    /// operation `who` may do on it (operations that exist for the resource type only).
    pub fn authorized_operations(&self, who: &Caller, rt: AclResourceType, name: &str) -> i32 {
        operations_of(rt)
            .iter()
            .filter(|op| self.authorize(who, **op, rt, name))
            .fold(0, |bits, op| bits | 1 << op.code())
    }
}

/// The operations Kafka defines for each resource type (for authorized-operations bits).
fn operations_of(rt: AclResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match rt {
        AclResourceType::Topic => &[
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        AclResourceType::Group => &[Read, Describe, Delete],
        AclResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        AclResourceType::TransactionalId => &[Describe, Write],
    }
}

/// Whether an ALLOW for `granted` allows `wanted`.
fn implies(granted: AclOperation, wanted: AclOperation) -> bool {
    use AclOperation::*;
    granted == wanted
        || granted == All
        || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && granted == AlterConfigs)
}

fn principal_matches(b: &AclBinding, principal: &str) -> bool {
    b.principal == principal || b.principal == WILDCARD_PRINCIPAL
}

fn host_matches(b: &AclBinding, host: &str) -> bool {
    b.host == WILDCARD_HOST || b.host == host
}

/// An address as ACLs name it (IPv4-mapped IPv6 addresses as plain IPv4).
fn host_string(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation::*;
    use AclResourceType::*;

    fn bind(
        rt: AclResourceType,
        name: &str,
        pt: AclPatternType,
        principal: &str,
        host: &str,
        op: AclOperation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission: perm,
        }
    }

    fn allow(rt: AclResourceType, name: &str, principal: &str, op: AclOperation) -> AclBinding {
        bind(
            rt,
            name,
            AclPatternType::Literal,
            principal,
            "*",
            op,
            AclPermission::Allow,
        )
    }

    fn deny(rt: AclResourceType, name: &str, principal: &str, op: AclOperation) -> AclBinding {
        bind(
            rt,
            name,
            AclPatternType::Literal,
            principal,
            "*",
            op,
            AclPermission::Deny,
        )
    }

    fn authorizer(acls: Vec<AclBinding>, open: bool) -> Authorizer {
        let a = Authorizer::new(AuthorizerConfig {
            mode: AuthorizerMode::Acl,
            super_users: vec![Principal::user("admin")],
            allow_everyone_if_no_acl_found: open,
        });
        a.set_acls(acls);
        a
    }

    fn caller(name: &str) -> Caller {
        Caller {
            principal: Principal::user(name),
            host: "10.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn mode_none_allows_everything() {
        let a = Authorizer::new(AuthorizerConfig::default());
        a.set_acls(vec![deny(Topic, "*", "User:*", All)]);
        assert!(!a.enabled());
        assert!(a.authorize(&caller("bob"), Read, Topic, "t"));
    }

    #[test]
    fn no_acl_found_is_closed_unless_configured_open() {
        let closed = authorizer(vec![], false);
        assert!(!closed.authorize(&caller("bob"), Read, Topic, "t"));
        assert!(
            closed.authorize(&caller("admin"), Read, Topic, "t"),
            "super user"
        );
        let open = authorizer(vec![allow(Topic, "other", "User:carol", Read)], true);
        assert!(open.authorize(&caller("bob"), Read, Topic, "t"));
        // Once any binding applies to the resource, only bindings decide.
        let open = authorizer(vec![allow(Topic, "t", "User:carol", Read)], true);
        assert!(!open.authorize(&caller("bob"), Read, Topic, "t"));
        assert!(open.authorize(&caller("carol"), Read, Topic, "t"));
    }

    #[test]
    fn deny_beats_allow_and_super_users_beat_deny() {
        let a = authorizer(
            vec![
                allow(Topic, "t", "User:bob", All),
                deny(Topic, "t", "User:*", Read),
                deny(Topic, "t", "User:admin", All),
            ],
            false,
        );
        assert!(!a.authorize(&caller("bob"), Read, Topic, "t"));
        assert!(a.authorize(&caller("bob"), Write, Topic, "t"));
        assert!(
            a.authorize(&caller("bob"), Describe, Topic, "t"),
            "a DENY Read does not deny Describe"
        );
        assert!(a.authorize(&caller("admin"), Read, Topic, "t"));
    }

    #[test]
    fn allows_imply_describe_and_describe_configs() {
        let a = authorizer(
            vec![
                allow(Topic, "r", "User:bob", Read),
                allow(Topic, "w", "User:bob", Write),
                allow(Topic, "d", "User:bob", Delete),
                allow(Topic, "a", "User:bob", Alter),
                allow(Topic, "ac", "User:bob", AlterConfigs),
                allow(Topic, "c", "User:bob", Create),
            ],
            false,
        );
        let bob = caller("bob");
        for t in ["r", "w", "d", "a"] {
            assert!(a.authorize(&bob, Describe, Topic, t), "{t}");
        }
        assert!(
            !a.authorize(&bob, Describe, Topic, "c"),
            "Create implies nothing"
        );
        assert!(!a.authorize(&bob, Describe, Topic, "ac"));
        assert!(a.authorize(&bob, DescribeConfigs, Topic, "ac"));
        assert!(
            !a.authorize(&bob, Write, Topic, "r"),
            "Read does not imply Write"
        );
        assert!(!a.authorize(&bob, Read, Topic, "w"));
    }

    #[test]
    fn wildcards_prefixes_and_hosts() {
        let a = authorizer(
            vec![
                allow(Group, "*", "User:*", Read),
                bind(
                    Topic,
                    "app-",
                    AclPatternType::Prefixed,
                    "User:bob",
                    "*",
                    Write,
                    AclPermission::Allow,
                ),
                bind(
                    Topic,
                    "local",
                    AclPatternType::Literal,
                    "User:bob",
                    "127.0.0.1",
                    Read,
                    AclPermission::Allow,
                ),
            ],
            false,
        );
        let bob = caller("bob");
        assert!(a.authorize(&caller("anyone"), Read, Group, "g1"));
        assert!(a.authorize(&bob, Write, Topic, "app-orders"));
        assert!(!a.authorize(&bob, Write, Topic, "ap"));
        assert!(!a.authorize(&bob, Read, Topic, "local"), "wrong host");
        let from_loopback = Caller {
            host: "127.0.0.1".parse().unwrap(),
            ..bob.clone()
        };
        assert!(a.authorize(&from_loopback, Read, Topic, "local"));
        let mapped = Caller {
            host: "::ffff:127.0.0.1".parse().unwrap(),
            ..bob
        };
        assert!(
            a.authorize(&mapped, Read, Topic, "local"),
            "v4-mapped is v4"
        );
    }

    #[test]
    fn authorize_any_finds_an_allow_not_covered_by_a_deny() {
        let bob = caller("bob");
        let a = authorizer(vec![allow(Topic, "t", "User:bob", Write)], false);
        assert!(a.authorize_any(&bob, Write, Topic));
        assert!(!a.authorize_any(&bob, Read, Topic));
        assert!(!a.authorize_any(&caller("carol"), Write, Topic));
        let a = authorizer(
            vec![
                allow(Topic, "t", "User:bob", Write),
                bind(
                    Topic,
                    "",
                    AclPatternType::Prefixed,
                    "User:*",
                    "*",
                    Write,
                    AclPermission::Deny,
                ),
            ],
            false,
        );
        assert!(
            !a.authorize_any(&bob, Write, Topic),
            "an empty DENY prefix covers all"
        );
        let a = authorizer(
            vec![
                bind(
                    Topic,
                    "app-",
                    AclPatternType::Prefixed,
                    "User:bob",
                    "*",
                    Write,
                    AclPermission::Allow,
                ),
                bind(
                    Topic,
                    "app",
                    AclPatternType::Prefixed,
                    "User:bob",
                    "*",
                    Write,
                    AclPermission::Deny,
                ),
            ],
            false,
        );
        assert!(!a.authorize_any(&bob, Write, Topic));
        assert!(a.authorize_any(&caller("admin"), Write, Topic));
        assert!(authorizer(vec![], true).authorize_any(&bob, Write, Topic));
    }

    #[test]
    fn authorized_operations_sets_the_bits_of_allowed_operations() {
        let a = authorizer(vec![allow(Topic, "t", "User:bob", Read)], false);
        let bits = a.authorized_operations(&caller("bob"), Topic, "t");
        assert_eq!(bits, 1 << Read.code() | 1 << Describe.code());
    }

    #[test]
    fn super_users_parse() {
        let users = AuthorizerConfig::parse_super_users("User:a; User:b;").unwrap();
        assert_eq!(users, vec![Principal::user("a"), Principal::user("b")]);
        assert!(AuthorizerConfig::parse_super_users("alice").is_err());
        assert!(AuthorizerConfig::parse_super_users("").unwrap().is_empty());
    }
}
