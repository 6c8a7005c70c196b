//! Who a connection is and what it may do: the principal of a connection (from SASL or
//! a client certificate), SASL mechanisms, TLS, and the ACL authorizer.
//!
//! Nothing here reads the network itself: the connection hands bytes in and acts on the
//! answers, so every decision is testable without a socket.

pub mod acl;

use std::fmt;

pub mod listeners;
pub mod sasl;
pub mod scram;
pub mod tls;

/// A Kafka principal, `User:alice`. Connections that did not authenticate are
/// `User:ANONYMOUS`, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The principal type; always `User` for principals Shoal makes.
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// Parses `Type:name` (the form ACLs and `--super-users` use).
    pub fn parse(s: &str) -> Option<Principal> {
        let (kind, name) = s.split_once(':')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Principal {
            kind: kind.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_print_as_kafka_writes_them() {
        let p = Principal::parse("User:alice").unwrap();
        assert_eq!(p, Principal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!(Principal::parse("User:CN=a,O=b").unwrap().name, "CN=a,O=b");
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse("User:").is_none());
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
    }
}
