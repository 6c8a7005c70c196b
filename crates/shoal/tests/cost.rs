//! `shoal cost` through the real binary: the documented example, an edited price file,
//! the error texts for bad input, and requests measured by a live agent.

mod common;

use std::process::{Command, Output};

use common::{record, Agent};

fn cost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("cost")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run shoal cost")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "shoal cost failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "shoal cost was expected to fail");
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The example of docs/operations.md, computed by hand there.
#[test]
fn the_documented_example() {
    let text = stdout(&cost(&["--write-mbps", "10", "--fan-out", "2"]));
    for want in [
        "S3 Standard PUTs                         $157.45",
        "31,490,238 PUTs x $0.005/1000",
        "$19.86",
        "6,048 GB (one copy; the store replicates) x $0.023/GB-month",
        "$139.10",
        "$207.36",
        "25,920 GB written x 2 followers in other zones = 51,840 GB x $0.02/GB",
        "$1,036.80",
        "$1,451.52",
        "Inter-zone traffic avoided: $2,073.60 a month",
        "Shoal costs 14% of Kafka's bill ($523.77 vs $3,732.48)",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
}

#[test]
fn an_edited_price_file_is_used_and_bad_input_is_named() {
    let prices = stdout(&cost(&["--print-prices"]));
    let edited = prices.replacen("\"put_per_1000\": 0.005,", "\"put_per_1000\": 0.01,", 1);
    assert_ne!(edited, prices, "the AWS PUT price is in the file");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, edited).unwrap();
    let text = stdout(&cost(&["--prices", path.to_str().unwrap()]));
    assert!(text.contains("$314.90"), "twice the PUT price:\n{text}");

    let err = stderr(&cost(&["--cloud", "nope"]));
    assert!(
        err.contains("no prices for cloud 'nope'; the price file has: aws, azure, gcp"),
        "{err}"
    );
    std::fs::write(&path, "{\"mine\": {\"put_per_1000\": 1}}").unwrap();
    let err = stderr(&cost(&["--prices", path.to_str().unwrap()]));
    assert!(err.contains("prices for 'mine'"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/metrics");
    let err = stderr(&cost(&["--metrics", &url]));
    assert!(
        err.contains("is an agent's --metrics-listen there?"),
        "{err}"
    );
    let err = stderr(&cost(&["--metrics", "127.0.0.1:9100"]));
    assert!(err.contains("give an http:// URL"), "{err}");
}

#[test]
fn requests_measured_by_a_live_agent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let agent = Agent::start(&["--metrics-listen", &metrics]);
    let url = format!("http://{metrics}/metrics");
    // Nothing produced yet: the model is the way, and the error says so.
    let err = stderr(&cost(&["--metrics", &url]));
    assert!(err.contains("run some load through them first"), "{err}");

    let mut c = agent.connect();
    c.create_topic("cost", 1, &[]);
    let value = vec![7u8; 400_000];
    for _ in 0..5 {
        let (code, _) = c.produce("cost", 0, &[record(None, Some(&value))]);
        assert_eq!(code, 0);
    }
    let text = stdout(&cost(&["--metrics", &url]));
    assert!(text.contains("(measured: "), "{text}");
    assert!(text.contains("PUTs and "), "{text}");
    assert!(text.contains(&format!("MB at {url}")), "{text}");
}
