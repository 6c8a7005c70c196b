//! The web console's JSON endpoints and pages against a real playground: what they
//! report must be what was produced and committed through the Kafka protocol.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{record, sb, topic_name, Agent};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
use serde_json::Value;

/// `web console         http://ADDR/` in the banner → ADDR, once the whole banner is
/// in the log (the harness returns at its first line).
fn console_addr(agent: &Agent) -> Option<SocketAddr> {
    agent.wait_for_log("Stop with Ctrl-C");
    agent.log().lines().find_map(|l| {
        let rest = l.split("web console").nth(1)?.trim();
        rest.strip_prefix("http://")?
            .trim_end_matches('/')
            .parse()
            .ok()
    })
}

/// Status code and body of `GET path`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the console");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn the_console_reports_what_clients_did() {
    let agent = Agent::start(&["--console-listen", "127.0.0.1:0"]);
    let console = console_addr(&agent).expect("the banner names the console");

    let mut c = agent.connect();
    c.create_topic("watched", 2, &[("retention.ms", "3600000")]);
    for (partition, n) in [(0, 3), (1, 5)] {
        for i in 0..n {
            let v = format!("value {i}");
            let (code, _) = c.produce("watched", partition, &[record(None, Some(v.as_bytes()))]);
            assert_eq!(code, 0);
        }
    }
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb("watchers")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(sb(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("watched"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_leader_epoch(-1)])]);
    let r = c.send(&commit, 8);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    let agents = json(console, "/api/agents");
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["this_agent"], true);
    assert_eq!(agents[0]["address"], agent.addr.to_string());
    assert!(agents[0]["uptime_s"].is_u64() && agents[0]["version"].is_string());

    let topics = json(console, "/api/topics");
    let t = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "watched")
        .expect("the topic is listed");
    let hwms: Vec<i64> = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert_eq!(hwms, vec![3, 5]);
    assert!(t["partitions"][1]["bytes"].as_u64().unwrap() > 5 * "value 0".len() as u64);
    assert_eq!(t["configs"]["retention.ms"], "3600000");

    let groups = json(console, "/api/groups");
    let g = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "watchers")
        .expect("the group is listed");
    assert_eq!(g["partitions"][0]["committed"], 1);
    assert_eq!(g["partitions"][0]["end"], 3);
    assert_eq!(g["partitions"][0]["lag"], 2);
    assert_eq!(g["total_lag"], 2);

    // The sampler runs once a second: wait (bounded) for an interval that saw the produce.
    let deadline = Instant::now() + Duration::from_secs(20);
    let throughput = loop {
        let t = json(console, "/api/throughput");
        let produced = t["samples"].as_array().unwrap().iter().any(|s| {
            s["produce_bytes_s"].as_f64().unwrap() > 0.0 && s["puts_s"].as_f64().unwrap() > 0.0
        });
        if produced {
            break t;
        }
        assert!(Instant::now() < deadline, "no sample saw the produce: {t}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let cost = &throughput["cost"];
    assert!(cost["label"].as_str().unwrap().contains("AWS"), "{cost}");
    assert!(cost["dollars_month"].as_f64().unwrap() > 0.0, "{cost}");

    let (status, html) = get(console, "/groups");
    assert_eq!(status, 200);
    assert!(html.contains("data-group=\"watchers\""), "{html}");
    assert!(html.contains("<td class=\"lag-value\">2</td>"), "{html}");
    let (status, js) = get(console, "/console.js");
    assert_eq!(status, 200);
    assert!(js.contains("/api/throughput"));
    assert_eq!(get(console, "/nothing-here").0, 404);
}

#[test]
fn the_playground_serves_the_console_unless_told_off() {
    let on = Agent::start(&[]);
    let addr = console_addr(&on).expect("a console by default");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(get(addr, "/agents").0, 200);
    let off = Agent::start(&["--console-listen", "off"]);
    assert_eq!(console_addr(&off), None, "{}", off.log());
}

#[test]
fn a_bad_console_address_is_refused_with_the_flag_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["agent", "--metadata", "sqlite:///nonexistent/x.db"])
        .args([
            "--object-store",
            "memory://",
            "--console-listen",
            "everywhere",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--console-listen") && err.contains("nor off"),
        "{err}"
    );
}
