//! `shoal users` against a playground's data directory, checked through the Kafka APIs
//! of a playground started on it: DescribeUserScramCredentials sees what the CLI wrote
//! (also while the agent runs), AlterUserScramCredentials changes it with Kafka's
//! per-user errors, and the CLI sees those changes in turn.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use common::{sb, Agent, Client};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

/// Runs `shoal users ARGS --data-dir DIR` with `stdin` as its standard input.
fn users(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("users")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SHOAL_METADATA")
        .env("SHOAL_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal users");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "shoal users failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `(user, error code, [(mechanism, iterations)])`.
type Described = (String, i16, Vec<(i8, i32)>);

/// Every user with credentials, as DescribeUserScramCredentials gives them.
fn describe_all(c: &mut Client) -> Vec<Described> {
    let resp: DescribeUserScramCredentialsResponse = c.send(
        &DescribeUserScramCredentialsRequest::default().with_users(None),
        0,
    );
    assert_eq!(resp.error_code, 0);
    resp.results
        .iter()
        .map(|r| {
            let infos = r
                .credential_infos
                .iter()
                .map(|i| (i.mechanism, i.iterations))
                .collect();
            (r.user.to_string(), r.error_code, infos)
        })
        .collect()
}

#[test]
fn users_cli_and_scram_apis_share_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Before any agent ever ran there: the CLI creates the database.
    let added = ok(users(
        dir,
        &[
            "add",
            "alice",
            "--mechanism",
            "SCRAM-SHA-256",
            "--iterations",
            "8192",
        ],
        "alice-secret\n",
    ));
    assert!(added.contains("SCRAM-SHA-256"), "{added}");
    let pw = dir.join("bob.pw");
    std::fs::write(&pw, "bob-secret\nignored second line\n").unwrap();
    ok(users(
        dir,
        &["add", "bob", "--password-file", pw.to_str().unwrap()],
        "",
    ));
    let refused = users(dir, &["add", "eve", "--iterations", "100"], "pw\n");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Too few iterations"));
    let empty = users(dir, &["add", "eve"], "\n");
    assert!(!empty.status.success(), "an empty password is refused");
    assert_eq!(
        ok(users(dir, &["list"], "")),
        "alice\tSCRAM-SHA-256\titerations=8192\n\
         bob\tSCRAM-SHA-256\titerations=8192\n\
         bob\tSCRAM-SHA-512\titerations=8192\n"
    );

    let agent = Agent::start_in(dir, &[]);
    let mut c = agent.connect();
    assert_eq!(
        describe_all(&mut c),
        [
            ("alice".to_string(), 0, vec![(1, 8192)]),
            ("bob".to_string(), 0, vec![(1, 8192), (2, 8192)]),
        ]
    );

    // Kafka's tools salt on the client and send salt + salted password.
    let upsert = ScramCredentialUpsertion::default()
        .with_name(sb("carol"))
        .with_mechanism(2)
        .with_iterations(4096)
        .with_salt(Bytes::from_static(b"carol-salt"))
        .with_salted_password(Bytes::from(vec![7u8; 64]));
    let delete = |name: &str, mechanism: i8| {
        ScramCredentialDeletion::default()
            .with_name(sb(name))
            .with_mechanism(mechanism)
    };
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![delete("alice", 2), delete("bob", 1)])
        .with_upsertions(vec![upsert]);
    let resp: AlterUserScramCredentialsResponse = c.send(&req, 0);
    let results: Vec<(String, i16)> = resp
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        results,
        [
            ("alice".to_string(), ResponseError::ResourceNotFound.code()),
            ("bob".to_string(), 0),
            ("carol".to_string(), 0),
        ]
    );
    assert_eq!(
        resp.results[0].error_message.as_deref(),
        Some("Attempt to delete a user credential that does not exist")
    );

    // The CLI sees the API's changes and changes the store under the running agent.
    assert_eq!(
        ok(users(dir, &["list"], "")),
        "alice\tSCRAM-SHA-256\titerations=8192\n\
         bob\tSCRAM-SHA-512\titerations=8192\n\
         carol\tSCRAM-SHA-512\titerations=4096\n"
    );
    ok(users(dir, &["delete", "bob"], ""));
    let again = users(dir, &["delete", "bob"], "");
    assert!(!again.status.success(), "nothing left to delete");
    assert_eq!(
        describe_all(&mut c),
        [
            ("alice".to_string(), 0, vec![(1, 8192)]),
            ("carol".to_string(), 0, vec![(2, 4096)]),
        ]
    );
}
