//! ACLs against the real binary: CreateAcls, DescribeAcls and DeleteAcls as Kafka
//! answers them, and enforcement with `--authorizer acl`. Without SASL every connection
//! is `User:ANONYMOUS`, so refusals come from DENY bindings on `User:*` while
//! `--allow-everyone-if-no-acl-found` keeps resources without bindings open.

mod common;

use common::{record, sb, Agent, Client, FETCH_V, METADATA_V};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, GroupId, InitProducerIdRequest, JoinGroupRequest,
    MetadataRequest, TransactionalId,
};
use kafka_protocol::ResponseError;

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TXN_ID: i8 = 5;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn creation(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(sb(name))
        .with_resource_pattern_type(pt)
        .with_principal(sb(principal))
        .with_host(sb("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

fn create(c: &mut Client, creations: Vec<AclCreation>) -> Vec<i16> {
    let resp: CreateAclsResponse =
        c.send(&CreateAclsRequest::default().with_creations(creations), 3);
    resp.results.iter().map(|r| r.error_code).collect()
}

/// Every binding as `(type, name, pattern, principal, op, permission)`.
fn describe_all(c: &mut Client) -> Vec<(i8, String, i8, String, i8, i8)> {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let resp: DescribeAclsResponse = c.send(&req, 3);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    let mut out = Vec::new();
    for r in resp.resources {
        for a in r.acls {
            out.push((
                r.resource_type,
                r.resource_name.to_string(),
                r.pattern_type,
                a.principal.to_string(),
                a.operation,
                a.permission_type,
            ));
        }
    }
    out.sort();
    out
}

fn join(c: &mut Client, group: &str) -> i16 {
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(""))
        .with_protocol_type(sb("consumer"));
    let resp = c.send(&req, 5);
    resp.error_code
}

fn init_txn(c: &mut Client, id: &str) -> i16 {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(sb(id))))
        .with_transaction_timeout_ms(10_000);
    c.send(&req, 4).error_code
}

#[test]
fn acls_are_created_listed_deleted_and_enforced() {
    let agent = Agent::start(&["--authorizer", "acl", "--allow-everyone-if-no-acl-found"]);
    let mut c = agent.connect();
    for t in ["open", "secret"] {
        c.create_topic(t, 1, &[]);
    }
    let hidden_id = c.create_topic_raw("hidden", 1, &[]).topics[0].topic_id;
    assert!(!hidden_id.is_nil());
    let (err, _) = c.produce("secret", 0, &[record(Some(b"k"), Some(b"classified"))]);
    assert_eq!(err, 0);
    c.produce("open", 0, &[record(Some(b"k"), Some(b"public"))]);

    let everyone = "User:*";
    let codes = create(
        &mut c,
        vec![
            // Once a binding applies to a topic, --allow-everyone-if-no-acl-found no
            // longer opens it (as in Kafka), so every topic gets an ALLOW first.
            creation(TOPIC, "*", LITERAL, everyone, ALL, ALLOW),
            creation(TOPIC, "secret", LITERAL, everyone, READ, DENY),
            creation(TOPIC, "hidden", LITERAL, everyone, DESCRIBE, DENY),
            creation(GROUP, "blocked", PREFIXED, everyone, READ, DENY),
            creation(TXN_ID, "tx-denied", LITERAL, everyone, WRITE, DENY),
            // Invalid ones fail alone: the cluster has one name, principals have a type.
            creation(CLUSTER, "other", LITERAL, everyone, DESCRIBE, ALLOW),
            creation(TOPIC, "t", LITERAL, "alice", READ, ALLOW),
        ],
    );
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(codes, vec![0, 0, 0, 0, 0, invalid, invalid]);
    // Creating one again does not duplicate it.
    assert_eq!(
        create(
            &mut c,
            vec![creation(TOPIC, "secret", LITERAL, everyone, READ, DENY)]
        ),
        vec![0]
    );
    let all = describe_all(&mut c);
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all.contains(&(
        GROUP,
        "blocked".into(),
        PREFIXED,
        everyone.into(),
        READ,
        DENY
    )));

    // A MATCH filter finds the bindings that apply to one topic.
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(TOPIC)
        .with_resource_name_filter(Some(sb("secret")))
        .with_pattern_type_filter(MATCH)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let resp: DescribeAclsResponse = c.send(&req, 3);
    let names: Vec<&str> = resp
        .resources
        .iter()
        .map(|r| r.resource_name.as_str())
        .collect();
    assert_eq!(names, vec!["*", "secret"]);

    // Fetch of the denied topic: TOPIC_AUTHORIZATION_FAILED and not one record byte.
    let denied = ResponseError::TopicAuthorizationFailed.code();
    // (A long max_wait: refused partitions are answered at once, not long-polled.)
    let p = c.fetch("secret", 0, 0, 60_000, 1 << 20);
    assert_eq!(p.error_code, denied);
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    assert!(!String::from_utf8_lossy(&c_fetch_raw(&mut c, "secret")).contains("classified"));
    let p = c.fetch("open", 0, 0, 0, 1 << 20);
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
    // DENY Read beats the ALLOW All for Read only.
    assert_eq!(c.produce("secret", 0, &[record(None, Some(b"more"))]).0, 0);

    // Metadata hides the topic denied Describe, and refuses it by name.
    let all_topics = c.metadata(None);
    let names: Vec<String> = all_topics
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    assert!(names.contains(&"open".to_string()) && names.contains(&"secret".to_string()));
    assert!(!names.contains(&"hidden".to_string()), "{names:?}");
    let by_name = c.metadata(Some(&["hidden"]));
    assert_eq!(by_name.topics.len(), 1);
    assert_eq!(by_name.topics[0].error_code, denied);
    assert!(by_name.topics[0].partitions.is_empty());
    // By id: refused too, and the name is not given away.
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_topic_id(hidden_id)
        .with_name(None)]));
    let by_id = c.send(&req, METADATA_V);
    assert_eq!(by_id.topics.len(), 1);
    assert_eq!(by_id.topics[0].error_code, denied);
    assert_eq!(by_id.topics[0].name, None);

    // A prefixed group DENY refuses JoinGroup; other groups join.
    assert_eq!(
        join(&mut c, "blocked-1"),
        ResponseError::GroupAuthorizationFailed.code()
    );
    assert_ne!(
        join(&mut c, "fine"),
        ResponseError::GroupAuthorizationFailed.code()
    );

    // A denied transactional id cannot get a producer id; another one can.
    assert_eq!(
        init_txn(&mut c, "tx-denied"),
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(init_txn(&mut c, "tx-ok"), 0);

    // Deleting the DENY Read opens the topic at once (this agent reloads).
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(TOPIC)
        .with_resource_name_filter(Some(sb("secret")))
        .with_pattern_type_filter(LITERAL)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let nothing = DeleteAclsFilter::default()
        .with_resource_type_filter(GROUP)
        .with_resource_name_filter(Some(sb("no-such")))
        .with_pattern_type_filter(ANY)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let resp: DeleteAclsResponse = c.send(
        &DeleteAclsRequest::default().with_filters(vec![filter, nothing]),
        3,
    );
    assert_eq!(resp.filter_results.len(), 2);
    assert_eq!(resp.filter_results[0].error_code, 0);
    assert_eq!(resp.filter_results[0].matching_acls.len(), 1);
    assert_eq!(
        resp.filter_results[0].matching_acls[0]
            .resource_name
            .as_str(),
        "secret"
    );
    assert!(resp.filter_results[1].matching_acls.is_empty());
    assert_eq!(describe_all(&mut c).len(), 4);
    let p = c.fetch("secret", 0, 0, 0, 1 << 20);
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
}

/// The raw bytes of a Fetch answer for one topic (to check no record bytes leak).
fn c_fetch_raw(c: &mut Client, topic: &str) -> Vec<u8> {
    use kafka_protocol::protocol::Encodable;
    let req = common::fetch_request(topic, 0, 0, 0, 1 << 20);
    let resp = c.send(&req, FETCH_V);
    let mut buf = bytes::BytesMut::new();
    resp.encode(&mut buf, FETCH_V).unwrap();
    buf.to_vec()
}

#[test]
fn without_acls_only_super_users_pass_and_super_users_pass_any_deny() {
    // Not open when no ACL is found: ANONYMOUS may not even create a topic or list one.
    let closed = Agent::start(&["--authorizer", "acl"]);
    let mut c = closed.connect();
    let resp = c.create_topic_raw("t", 1, &[]);
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let codes = create(
        &mut c,
        vec![creation(TOPIC, "t", LITERAL, "User:*", READ, ALLOW)],
    );
    assert_eq!(
        codes,
        vec![ResponseError::ClusterAuthorizationFailed.code()]
    );
    drop(closed);

    let admin = Agent::start(&["--authorizer", "acl", "--super-users", "User:ANONYMOUS"]);
    let mut c = admin.connect();
    c.create_topic("t", 1, &[]);
    let codes = create(
        &mut c,
        vec![creation(TOPIC, "t", LITERAL, "User:*", READ, DENY)],
    );
    assert_eq!(codes, vec![0]);
    c.produce("t", 0, &[record(None, Some(b"v"))]);
    assert_eq!(
        c.fetch("t", 0, 0, 0, 1 << 20).error_code,
        0,
        "super users pass a DENY"
    );
}

#[test]
fn with_authorizer_none_acls_are_stored_but_not_enforced() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect();
    c.create_topic("t", 1, &[]);
    let codes = create(
        &mut c,
        vec![creation(TOPIC, "*", LITERAL, "User:*", READ, DENY)],
    );
    assert_eq!(codes, vec![0]);
    assert_eq!(describe_all(&mut c).len(), 1);
    c.produce("t", 0, &[record(None, Some(b"v"))]);
    assert_eq!(c.fetch("t", 0, 0, 0, 1 << 20).error_code, 0);
}
