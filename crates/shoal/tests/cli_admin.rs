//! The admin CLI, run as a user runs it: the real `shoal` binary against a real
//! playground. Topics are created, described, altered and deleted; 100 keyed records
//! with headers go in through `shoal produce` and come back through `shoal consume`;
//! a group's offsets are committed, shown, reset and deleted; `agents` and
//! `diagnose-connection` report the playground; every command explains a wrong
//! address; and a `--secure` playground is reached over TLS with SCRAM and PLAIN.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::Agent;

/// Runs `shoal ARGS` with `stdin`; the environment cannot point it elsewhere.
fn shoal(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("SHOAL_BOOTSTRAP")
        .env_remove("SHOAL_TLS")
        .env_remove("SHOAL_TLS_CA")
        .env_remove("SHOAL_SASL_MECHANISM")
        .env_remove("SHOAL_SASL_USERNAME")
        .env_remove("SHOAL_SASL_PASSWORD")
        .env_remove("SHOAL_CLIENT_ID")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shoal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for shoal")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `shoal ARGS --bootstrap ADDR` and returns stdout, failing the test (with both
/// outputs) unless it succeeded.
fn ok(agent: &Agent, args: &[&str], stdin: &str) -> String {
    let addr = agent.addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--bootstrap", &addr]);
    let out = shoal(&all, stdin);
    assert!(
        out.status.success(),
        "shoal {all:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}\nagent log:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr),
        agent.log()
    );
    text(&out.stdout)
}

/// Runs `shoal ARGS --bootstrap ADDR` and returns (stdout, stderr), failing the test
/// unless it failed.
fn fails(agent: &Agent, args: &[&str], stdin: &str) -> (String, String) {
    let addr = agent.addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--bootstrap", &addr]);
    let out = shoal(&all, stdin);
    assert!(
        !out.status.success(),
        "shoal {all:?} should have failed:\n{}",
        text(&out.stdout)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn playground() -> Agent {
    Agent::start(&["--console-listen", "off"])
}

/// The rows of a `groups describe` table for `topic`: partition → committed offset
/// (-1 for none).
fn committed(describe: &str, topic: &str) -> BTreeMap<i32, i64> {
    describe
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(topic))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap_or(-1))
        })
        .collect()
}

/// The line of `topics describe` for `key` in its configs part.
fn config_line<'a>(describe: &'a str, key: &str) -> Option<&'a str> {
    describe
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{key}=")))
}

/// Rows of the partition table of `topics describe`.
fn partition_rows(describe: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("PARTITION"))
        .skip(1)
        .take_while(|l| !l.starts_with("configs:"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn topics_are_created_described_altered_and_deleted() {
    let agent = playground();
    let out = ok(
        &agent,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=123456",
            "--config",
            "max.message.bytes=200000",
        ],
        "",
    );
    assert!(
        out.contains("created topic orders with 3 partition(s)"),
        "{out}"
    );
    let list = ok(&agent, &["topics", "list"], "");
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("orders listed:\n{list}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "3", "{list}");

    let (_, err) = fails(&agent, &["topics", "create", "orders"], "");
    assert!(err.contains("topic orders already exists"), "{err}");

    let d = ok(&agent, &["topics", "describe", "orders"], "");
    assert!(d.contains("topic orders: 3 partition(s)"), "{d}");
    assert_eq!(partition_rows(&d).len(), 3, "{d}");
    assert_eq!(
        config_line(&d, "retention.ms"),
        Some("retention.ms=123456  (topic)"),
        "{d}"
    );
    assert_eq!(
        config_line(&d, "max.message.bytes"),
        Some("max.message.bytes=200000  (topic)"),
        "{d}"
    );

    let out = ok(
        &agent,
        &[
            "topics",
            "alter",
            "orders",
            "--set",
            "retention.ms=999000",
            "--delete",
            "max.message.bytes",
            "--partitions",
            "5",
        ],
        "",
    );
    assert!(out.contains("now 5 partition(s)"), "{out}");
    let d = ok(&agent, &["topics", "describe", "orders"], "");
    assert!(d.contains("topic orders: 5 partition(s)"), "{d}");
    assert_eq!(partition_rows(&d).len(), 5, "{d}");
    assert_eq!(
        config_line(&d, "retention.ms"),
        Some("retention.ms=999000  (topic)"),
        "{d}"
    );
    let mmb = config_line(&d, "max.message.bytes").unwrap_or("");
    assert!(
        !mmb.contains("200000") && !mmb.contains("(topic)"),
        "deleted config falls back to its default: {mmb}"
    );
    let (_, err) = fails(&agent, &["topics", "alter", "orders"], "");
    assert!(err.contains("nothing to change"), "{err}");

    let out = ok(&agent, &["topics", "delete", "orders"], "");
    assert!(out.contains("deleted topic orders"), "{out}");
    let list = ok(&agent, &["topics", "list"], "");
    assert!(!list.lines().any(|l| l.starts_with("orders ")), "{list}");
    let (_, err) = fails(&agent, &["topics", "describe", "orders"], "");
    assert!(err.contains("topic orders does not exist"), "{err}");
}

#[test]
fn produced_lines_come_back_with_keys_and_headers_and_groups_track_them() {
    let agent = playground();
    ok(
        &agent,
        &["topics", "create", "events", "--partitions", "3"],
        "",
    );
    let input: String = (0..100).map(|i| format!("key-{i}:value {i}\n")).collect();
    let out = ok(
        &agent,
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--header",
            "n=1",
        ],
        &input,
    );
    assert!(
        out.contains("100 record(s) acknowledged by events"),
        "{out}"
    );
    // Keyed records spread over the partitions by key hash.
    let d = ok(&agent, &["topics", "describe", "events"], "");
    let rows = partition_rows(&d);
    let total: i64 = rows.iter().map(|r| r[4].parse::<i64>().unwrap()).sum();
    assert_eq!(total, 100, "{d}");
    assert!(
        rows.iter().filter(|r| r[4] != "0").count() > 1,
        "more than one partition got records:\n{d}"
    );

    let got = ok(
        &agent,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "100",
            "--print-key",
            "--print-headers",
            "--timeout",
            "30s",
        ],
        "",
    );
    let mut got: Vec<&str> = got.lines().collect();
    let mut want: Vec<String> = (0..100)
        .map(|i| format!("source:cli,n:1\tkey-{i}\tvalue {i}"))
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // Without --from-beginning a consumer starts at the end: nothing within its timeout.
    let none = ok(&agent, &["consume", "events", "--timeout", "1s"], "");
    assert_eq!(none, "");

    // A group reads everything and commits where it stopped.
    let all = ok(
        &agent,
        &[
            "consume",
            "events",
            "--group",
            "audit",
            "--from-beginning",
            "--timeout",
            "2s",
        ],
        "",
    );
    assert_eq!(all.lines().count(), 100);
    let d = ok(&agent, &["groups", "describe", "audit"], "");
    let c = committed(&d, "events");
    assert_eq!(c.len(), 3, "{d}");
    assert_eq!(c.values().sum::<i64>(), 100, "{d}");
    assert!(d.contains("total lag 0"), "{d}");
    let list = ok(&agent, &["groups", "list"], "");
    assert!(list.lines().any(|l| l.starts_with("audit ")), "{list}");

    // A dry run shows the plan and changes nothing.
    let plan = ok(
        &agent,
        &[
            "groups",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-earliest",
        ],
        "",
    );
    assert!(plan.contains("dry run: nothing changed"), "{plan}");
    let d = ok(&agent, &["groups", "describe", "audit"], "");
    assert_eq!(committed(&d, "events").values().sum::<i64>(), 100, "{d}");

    let done = ok(
        &agent,
        &[
            "groups",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    assert!(
        done.contains("committed new offsets for 3 partition(s)"),
        "{done}"
    );
    let d = ok(&agent, &["groups", "describe", "audit"], "");
    assert!(committed(&d, "events").values().all(|o| *o == 0), "{d}");
    assert!(d.contains("total lag 100"), "{d}");

    // The group resumes from the reset offsets and commits exactly what it printed.
    let ten = ok(
        &agent,
        &[
            "consume",
            "events",
            "--group",
            "audit",
            "--max-messages",
            "10",
        ],
        "",
    );
    assert_eq!(ten.lines().count(), 10);
    let d = ok(&agent, &["groups", "describe", "audit"], "");
    assert_eq!(committed(&d, "events").values().sum::<i64>(), 10, "{d}");

    let plan = ok(
        &agent,
        &[
            "groups",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-offset",
            "1000000",
            "--execute",
        ],
        "",
    );
    assert!(plan.contains("committed new offsets"), "{plan}");
    let d = ok(&agent, &["groups", "describe", "audit"], "");
    assert!(
        d.contains("total lag 0"),
        "an offset past the end is clamped to it:\n{d}"
    );

    let out = ok(&agent, &["groups", "delete", "audit"], "");
    assert!(out.contains("deleted group audit"), "{out}");
    let list = ok(&agent, &["groups", "list"], "");
    assert!(!list.lines().any(|l| l.starts_with("audit ")), "{list}");
    let (_, err) = fails(&agent, &["groups", "delete", "audit"], "");
    assert!(err.contains("group audit does not exist"), "{err}");

    // Producing to a partition that does not exist says which ones do.
    let (_, err) = fails(&agent, &["produce", "events", "--partition", "7"], "x\n");
    assert!(err.contains("there is no partition 7"), "{err}");
    let (_, err) = fails(&agent, &["consume", "nosuch", "--timeout", "1s"], "");
    assert!(err.contains("topic nosuch does not exist"), "{err}");
}

#[test]
fn agents_and_diagnose_connection_report_the_playground() {
    let agent = playground();
    let addr = agent.addr.to_string();
    let out = ok(&agent, &["agents"], "");
    assert!(out.contains(&addr), "{out}");
    assert!(out.contains("controller 0"), "{out}");

    let out = ok(&agent, &["diagnose-connection"], "");
    for line in [
        "[ OK ] TCP connect to bootstrap",
        "[ OK ] Kafka handshake: plaintext",
        "[ OK ] ApiVersions",
        "[ OK ] round-trip latency",
        &format!("[ OK ] agent 0 advertised as {addr}"),
        "verdict: a client here can use this cluster",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(!out.contains("[FAIL]"), "{out}");
    // A client naming a zone no agent is in is warned, not failed.
    let out = ok(
        &agent,
        &["diagnose-connection", "--client-id", "app,shoal_az=zone-x"],
        "",
    );
    assert!(
        out.contains(
            "[WARN] zone routing: client.id names zone zone-x, but no agent listed is in it"
        ),
        "{out}"
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[test]
fn every_command_explains_a_wrong_address() {
    let addr = closed_port();
    let hint = format!("connect to {addr} (is Shoal running there? set --bootstrap)");
    let commands: &[&[&str]] = &[
        &["topics", "list"],
        &["topics", "create", "t"],
        &["topics", "describe", "t"],
        &["topics", "alter", "t", "--set", "retention.ms=1"],
        &["topics", "delete", "t"],
        &["produce", "t"],
        &["consume", "t", "--timeout", "1s"],
        &["groups", "list"],
        &["groups", "describe", "g"],
        &[
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
        ],
        &["groups", "delete", "g"],
        &["agents"],
        &[
            "partitions",
            "skip-corrupt",
            "--topic",
            "t",
            "--partition",
            "0",
        ],
    ];
    for args in commands {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", &addr]);
        let out = shoal(&all, "line\n");
        assert!(!out.status.success(), "{all:?} fails");
        let err = text(&out.stderr);
        assert!(err.contains(&hint), "{all:?}: {err}");
    }
    let out = shoal(&["diagnose-connection", "--bootstrap", &addr], "");
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "[FAIL] TCP connect to bootstrap: cannot connect to {addr}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("fix: is Shoal running there"), "{stdout}");
    assert!(stdout.contains("verdict: 1 check(s) failed"), "{stdout}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["topics", "list"][..],
        &["topics", "create"],
        &["topics", "describe"],
        &["topics", "alter"],
        &["topics", "delete"],
        &["produce"],
        &["consume"],
        &["groups", "list"],
        &["groups", "describe"],
        &["groups", "reset-offsets"],
        &["groups", "delete"],
        &["agents"],
        &["diagnose-connection"],
        &["partitions", "skip-corrupt"],
    ] {
        let mut all = args.to_vec();
        all.push("--help");
        let out = shoal(&all, "");
        assert!(out.status.success(), "{all:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Example"), "{all:?} has an example:\n{help}");
        assert!(help.contains("--bootstrap"), "{all:?}:\n{help}");
        assert!(help.contains("--sasl-mechanism"), "{all:?}:\n{help}");
    }
}

#[test]
fn a_secure_playground_is_reached_over_tls_with_scram_and_plain() {
    let agent = Agent::start(&["--console-listen", "off", "--secure"]);
    let dir = agent.data_dir.join("secure");
    let ca = dir.join("ca.pem");
    let password = std::fs::read_to_string(dir.join("admin.password"))
        .unwrap()
        .trim()
        .to_string();
    let ca = ca.to_str().unwrap();
    let scram = [
        "--tls-ca",
        ca,
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "admin",
        "--sasl-password",
        &password,
    ];
    let with = |cmd: &[&str], sec: &[&str]| -> Vec<String> {
        cmd.iter().chain(sec).map(|s| s.to_string()).collect()
    };
    let run_ok = |args: Vec<String>, stdin: &str| -> String {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&agent, &refs, stdin)
    };
    let out = run_ok(with(&["topics", "create", "sec", "-p", "2"], &scram), "");
    assert!(out.contains("created topic sec"), "{out}");
    let out = run_ok(with(&["produce", "sec"], &scram), "a\nb\nc\n");
    assert!(out.contains("3 record(s) acknowledged"), "{out}");
    // PLAIN checks the same password.
    let plain = [
        "--tls",
        "--tls-ca",
        ca,
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "admin",
        "--sasl-password",
        &password,
    ];
    let got = run_ok(
        with(
            &["consume", "sec", "--from-beginning", "--max-messages", "3"],
            &plain,
        ),
        "",
    );
    let mut got: Vec<&str> = got.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["a", "b", "c"]);
    let out = run_ok(with(&["diagnose-connection"], &scram), "");
    assert!(
        out.contains("[ OK ] Kafka handshake: TLS, SASL SCRAM-SHA-512 as admin"),
        "{out}"
    );

    // Wrong password, missing TLS, missing SASL: each says what to set.
    let wrong = [
        "--tls-ca",
        ca,
        "--sasl-mechanism",
        "SCRAM-SHA-256",
        "--sasl-username",
        "admin",
        "--sasl-password",
        "guess",
    ];
    let args = with(&["topics", "list"], &wrong);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, err) = fails(&agent, &refs, "");
    assert!(
        err.contains("SASL SCRAM-SHA-256 login")
            && err.contains("check --sasl-username and --sasl-password"),
        "{err}"
    );
    let (_, err) = fails(&agent, &["topics", "list"], "");
    assert!(err.contains("--tls"), "{err}");
    let args = with(&["topics", "list"], &["--tls-ca", ca]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, err) = fails(&agent, &refs, "");
    assert!(err.contains("--sasl-mechanism"), "{err}");
    // A CA that did not sign the certificate is refused.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let args = with(
        &["topics", "list"],
        &[
            "--tls-ca",
            other_ca.to_str().unwrap(),
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-username",
            "admin",
            "--sasl-password",
            &password,
        ],
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, err) = fails(&agent, &refs, "");
    assert!(err.contains("TLS handshake"), "{err}");
}
