//! What a newcomer sees first: `shoal --version` and the playground's startup banner.

mod common;

use std::process::Command;

use common::Agent;

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("--version")
        .output()
        .expect("run shoal --version");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected_start = format!("shoal {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start), "{text:?}");
    let commit = text[expected_start.len()..]
        .trim_end()
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("{text:?} ends with the commit in parentheses"));
    // Built from a git checkout (as every test run is), it is that checkout's HEAD.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git is on PATH wherever the tests build from a clone");
    assert!(head.status.success(), "the tests run in a git checkout");
    assert_eq!(commit, String::from_utf8(head.stdout).unwrap().trim());
}

#[test]
fn playground_says_how_to_connect() {
    let agent = Agent::start(&[]);
    // The banner's first line is what `start` waits for; the rest follows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agent.log().contains("Stop with Ctrl-C") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = agent.log();
    let addr = agent.addr.to_string();
    for line in [
        format!("bootstrap address   {addr}"),
        format!("bootstrap.servers={addr}"),
        format!("kcat -b {addr} -L"),
        format!("kafka-topics.sh --bootstrap-server {addr} --create"),
    ] {
        assert!(log.contains(&line), "the banner has {line:?}:\n{log}");
    }
    assert!(log.contains(env!("CARGO_PKG_VERSION")), "{log}");
}
