//! Clients that hold connections without using them, against the real binary: many
//! idle sockets, connection caps, a first request that never comes, a request that
//! trickles in (slowloris), idleness. Each attack is followed by a well-behaved client
//! that must be served, and a look at the agent's memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Agent, Closed};

/// Generous bounds for the server's timers to act (they are set to 1-2 s below).
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

fn raw(agent: &Agent) -> TcpStream {
    let s = TcpStream::connect(agent.addr).expect("connect");
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    s
}

/// Whether the server closed `s` (EOF or reset) within the read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    }
}

/// The first attack of the hostile-client issue: 1,100 connections that never send a
/// byte once locked every new client out (the old cap was 1,024 and they were never
/// closed). Now a client is served while they are open, they cost little memory, and
/// the first-request timer closes them.
#[test]
fn idle_connections_neither_lock_clients_out_nor_stay_forever() {
    let agent = Agent::start(&["--first-request-timeout", "2s"]);
    let before = agent.memory_mib("VmRSS");
    let mut idle: Vec<TcpStream> = (0..1100).map(|_| raw(&agent)).collect();
    agent.connect().assert_healthy("served-beside-idle");
    let during = agent.memory_mib("VmRSS");
    assert!(
        during < before + 64,
        "1,100 idle connections took the agent from {before} to {during} MiB"
    );
    for (i, s) in idle.iter_mut().enumerate().step_by(100) {
        assert!(closed_by_server(s), "idle connection {i} was not closed");
    }
    agent.connect().assert_healthy("served-after-idle");
}

#[test]
fn a_connection_over_the_cap_is_closed_at_once_and_its_place_comes_back() {
    let agent = Agent::start(&["--max-connections", "5"]);
    let mut held: Vec<common::Client> = (0..5).map(|_| agent.connect()).collect();
    for c in &mut held {
        assert_eq!(c.api_versions().error_code, 0);
    }
    // The sixth is accepted and closed, not left hanging in the backlog.
    let mut extra = raw(&agent);
    assert!(
        closed_by_server(&mut extra),
        "a sixth connection is refused"
    );
    drop(held.pop());
    // The freed place is taken again (the server notices the close asynchronously).
    let deadline = std::time::Instant::now() + CLOSE_WITHIN;
    loop {
        let mut c = raw(&agent);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // ApiVersions v0: 4-byte size, key 18, version 0, correlation id 1, no client id.
        c.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
            .unwrap();
        let mut size = [0u8; 4];
        if c.read_exact(&mut size).is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.wait_for_log("--max-connections reached");
}

#[test]
fn per_ip_cap_refuses_the_extra_connection() {
    let agent = Agent::start(&["--max-connections-per-ip", "3"]);
    let held: Vec<common::Client> = (0..3).map(|_| agent.connect()).collect();
    let mut extra = raw(&agent);
    assert!(
        closed_by_server(&mut extra),
        "a fourth from 127.0.0.1 is refused"
    );
    drop(held);
    agent.wait_for_log("--max-connections-per-ip reached");
}

/// Slowloris (a request trickling in), a first request that never comes, and an idle
/// connection are each closed by their timer; a client using its connection is not.
#[test]
fn slow_silent_and_idle_connections_are_closed_by_their_timers() {
    let agent = Agent::start(&[
        "--first-request-timeout",
        "1s",
        "--request-read-timeout",
        "2s",
        "--connections-max-idle",
        "2s",
    ]);
    // Silent from the start.
    let mut silent = agent.connect();
    // Slowloris: a good request, then a 100-byte frame sent one byte every 300 ms.
    let mut s = raw(&agent);
    let trickle = std::thread::spawn(move || {
        // ApiVersions v0 first (size, key 18, version 0, correlation id 1, null client
        // id), so only the request-read timer applies; then the trickle.
        s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
            .unwrap();
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut answer = vec![0u8; u32::from_be_bytes(size) as usize];
        s.read_exact(&mut answer).unwrap();
        s.write_all(&[0, 0, 0, 100]).unwrap();
        for _ in 0..100 {
            if s.write_all(&[0]).is_err() {
                return true; // closed by the server
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        false
    });
    // Idle after one request.
    let mut idle = agent.connect();
    assert_eq!(idle.api_versions().error_code, 0);
    // Busy: one request a few times a second throughout.
    let mut busy = agent.connect();
    assert_eq!(busy.api_versions().error_code, 0);

    assert!(matches!(
        silent.expect_closed(CLOSE_WITHIN),
        Closed::Eof | Closed::Reset
    ));
    for _ in 0..20 {
        assert_eq!(busy.api_versions().error_code, 0, "a busy client is served");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(matches!(
        idle.expect_closed(CLOSE_WITHIN),
        Closed::Eof | Closed::Reset
    ));
    assert!(
        trickle.join().unwrap(),
        "the trickling connection was closed"
    );
    for why in [
        "--first-request-timeout",
        "--request-read-timeout",
        "--connections-max-idle",
    ] {
        agent.wait_for_log(why);
    }
    agent.connect().assert_healthy("after-timers");
}
