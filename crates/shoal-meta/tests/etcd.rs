//! The etcd backend against a real etcd server (the `etcd` binary on PATH, started on
//! loopback ports in a temporary directory): the conformance suite, concurrent commits
//! from separate clients, the agent registry and commit notifications.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_meta::conformance::{run_all, segment};
use shoal_meta::*;

struct Etcd {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd: install it (Debian package etcd-server; scripts/install-test-deps.sh does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client_port)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Etcd {
            child,
            client_port,
            _dir: dir,
        }
    }

    /// A plain etcd client, for looking under the store's feet.
    fn raw_client(&self) -> shoal_etcd::Client {
        let endpoint = format!("127.0.0.1:{}", self.client_port);
        shoal_etcd::Client::connect(&[endpoint], &shoal_etcd::ConnectOptions::default()).unwrap()
    }

    fn url(&self, prefix: &str) -> String {
        format!("etcd://127.0.0.1:{}/{prefix}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend() {
    let etcd = Etcd::start();

    // The whole conformance suite, with etcd's default transaction limit...
    let store = EtcdStore::connect(&etcd.url("conf")).await.unwrap();
    run_all(Arc::new(store)).await;
    // ...and with a tiny one, so flushes and offsets are split over many transactions.
    let small = EtcdStore::connect(&format!("{}?max-txn-ops=16", etcd.url("small")))
        .await
        .unwrap();
    run_all(Arc::new(small.clone())).await;
    let t = small
        .create_topic(TopicSpec {
            name: "wide".into(),
            partitions: 40,
            configs: Default::default(),
        })
        .await
        .unwrap();
    let segs: Vec<SegmentAppend> = (0..80)
        .map(|i| segment(t.id, i % 40, i as u64 * 100, 5, 2))
        .collect();
    let out = shoal_meta::conformance::flush(
        &small,
        &ObjectRef {
            key: "wide-1".into(),
            size: 8000,
        },
        &segs,
    )
    .await
    .unwrap();
    for (i, o) in out.iter().enumerate() {
        let base = if i < 40 { 0 } else { 2 };
        assert_eq!(
            *o,
            SegmentOutcome::Committed {
                base_offset: base,
                log_start_offset: 0
            },
            "segment {i}"
        );
    }
    let entries = small.object_entries("wide-1").await.unwrap();
    assert_eq!(
        entries.len(),
        80,
        "two entries per partition (not adjacent in the object)"
    );

    concurrent_agents_never_share_an_offset(&etcd).await;
    registry_and_commit_notifications(&etcd).await;
    history_is_compacted_once_old_enough(&etcd).await;
}

/// History compaction discards only revisions noted at least `keep` ago.
async fn history_is_compacted_once_old_enough(etcd: &Etcd) {
    let store = EtcdStore::connect(&etcd.url("hist")).await.unwrap();
    let raw = etcd.raw_client();
    let put = |v: &'static str| {
        let raw = raw.clone();
        async move { raw.put("hist-probe", v, None).await.unwrap() }
    };
    let first = put("1").await;
    // Nothing noted yet, then nothing noted 500 ms before "now".
    assert_eq!(store.compact_history(1_000, 500).await.unwrap(), None);
    let second = put("2").await;
    let compacted = store
        .compact_history(2_000, 500)
        .await
        .unwrap()
        .expect("the revision noted at 1000 is due at 2000");
    assert!(
        compacted >= first && compacted < second,
        "compacted to the revision the first pass noted ({first} <= {compacted} < {second})"
    );
    let old = raw
        .get(
            "hist-probe",
            Some(shoal_etcd::GetOptions::new().with_revision(compacted - 1)),
        )
        .await;
    assert!(
        old.unwrap_err().to_string().contains("compacted"),
        "revisions before it are gone"
    );
    let kept = raw
        .get(
            "hist-probe",
            Some(shoal_etcd::GetOptions::new().with_revision(second)),
        )
        .await
        .unwrap();
    assert_eq!(kept.kvs[0].value(), b"2", "newer revisions are kept");
    // Not again for the same revision; a backend without history never compacts.
    assert_eq!(store.compact_history(2_100, 500).await.unwrap(), None);
    let sqlite = SqliteStore::in_memory().unwrap();
    assert_eq!(sqlite.compact_history(9_000, 0).await.unwrap(), None);
}

/// Four clients (as four agents would) commit to the same two partitions at once.
async fn concurrent_agents_never_share_an_offset(etcd: &Etcd) {
    let url = etcd.url("race");
    let first = EtcdStore::connect(&url).await.unwrap();
    let t = first
        .create_topic(TopicSpec {
            name: "race".into(),
            partitions: 2,
            configs: Default::default(),
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for agent in 0..4 {
        let store = EtcdStore::connect(&url).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for n in 0..25 {
                let key = format!("a{agent}-{n}");
                let segs = [segment(t.id, 0, 0, 1, 3), segment(t.id, 1, 100, 1, 2)];
                let out =
                    shoal_meta::conformance::flush(&store, &ObjectRef { key, size: 300 }, &segs)
                        .await
                        .unwrap();
                got.push(out);
            }
            got
        }));
    }
    let mut p0 = Vec::new();
    let mut p1 = Vec::new();
    for task in tasks {
        for out in task.await.unwrap() {
            let SegmentOutcome::Committed {
                base_offset: b0, ..
            } = out[0]
            else {
                panic!("{out:?}")
            };
            let SegmentOutcome::Committed {
                base_offset: b1, ..
            } = out[1]
            else {
                panic!("{out:?}")
            };
            p0.push(b0);
            p1.push(b1);
        }
    }
    p0.sort();
    p1.sort();
    assert_eq!(p0, (0..100).map(|i| i * 3).collect::<Vec<_>>());
    assert_eq!(p1, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    let idx = first.index_from(t.id, 0, 0, 1000).await.unwrap();
    assert_eq!(idx.len(), 100);
    for w in idx.windows(2) {
        assert_eq!(w[0].end_offset, w[1].base_offset, "no gaps, no overlaps");
    }
    assert_eq!(
        first
            .partition_offsets(t.id, 0)
            .await
            .unwrap()
            .high_watermark,
        300
    );
}

fn agent(node_id: i32, port: i32) -> AgentInfo {
    AgentInfo {
        node_id,
        host: "127.0.0.1".into(),
        port,
        az: "a".into(),
        group: "default".into(),
        roles: vec!["produce".into(), "fetch".into(), "jobs".into()],
        peer_addr: None,
        listeners: Vec::new(),
        incarnation: 0,
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn registry_and_commit_notifications(etcd: &Etcd) {
    let url = etcd.url("reg");
    let a = EtcdStore::connect(&url).await.unwrap();
    let b = EtcdStore::connect(&url).await.unwrap();
    let id_a = a.register_agent(&agent(-1, 9001)).await.unwrap();
    let id_b = b.register_agent(&agent(-1, 9002)).await.unwrap();
    assert_ne!(id_a, id_b, "automatic node ids are distinct");
    let c = EtcdStore::connect(&url).await.unwrap();
    assert!(
        c.register_agent(&agent(id_a, 9003)).await.is_err(),
        "an explicit id a live agent holds is refused"
    );
    eventually("both agents listed", || {
        let live: Vec<i32> = c.live_agents().iter().map(|a| a.node_id).collect();
        live.contains(&id_a) && live.contains(&id_b)
    })
    .await;
    b.deregister_agent().await.unwrap();
    eventually("b gone", || {
        c.live_agents().iter().all(|x| x.node_id != id_b)
    })
    .await;
    assert!(a
        .live_agents()
        .iter()
        .any(|x| x.node_id == id_a && x.port == 9001));

    lapsed_lease_never_takes_over_a_reused_id(etcd, &a, id_a, &c).await;

    // A commit through one client wakes watchers on another.
    let mut seen = c.commit_notifications().expect("etcd notifies");
    let mut topics = c
        .topic_notifications()
        .expect("etcd notifies topic changes");
    topics.borrow_and_update();
    let t = a
        .create_topic(TopicSpec {
            name: "notify".into(),
            partitions: 1,
            configs: Default::default(),
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), topics.changed())
        .await
        .expect("woken by another client's topic creation")
        .unwrap();
    shoal_meta::conformance::flush(
        &a,
        &ObjectRef {
            key: "n1".into(),
            size: 10,
        },
        &[segment(t.id, 0, 0, 1, 1)],
    )
    .await
    .unwrap();
    // Reports name the partitions that changed: the topic's creation wrote its
    // partition state, the commit writes it again. Both are (t, 0) and nothing else.
    let mut reports = 0;
    tokio::time::timeout(Duration::from_secs(5), async {
        while reports < 2 {
            if let Some(parts) = seen.recv().await.unwrap() {
                assert_eq!(&parts[..], &[(t.id, 0)]);
                reports += 1;
            }
        }
    })
    .await
    .expect("woken by the creation and by another client's commit, naming the partition");
}

/// `a`'s lease lapses (revoked here, as etcd would after an outage longer than the
/// lease) and another agent registers `a`'s id meanwhile: `a` must not overwrite that
/// entry when it registers again, and takes its id back once the other agent is gone.
async fn lapsed_lease_never_takes_over_a_reused_id(
    etcd: &Etcd,
    a: &EtcdStore,
    id_a: i32,
    watcher: &EtcdStore,
) {
    let raw = etcd.raw_client();
    let key = format!("reg/agents/{id_a:010}");
    let got = raw.get(key.as_str(), None).await.unwrap();
    let lease = got.kvs.first().expect("a is registered").lease();
    assert_ne!(lease, 0, "the registry entry lives under a lease");
    raw.lease_revoke(lease).await.unwrap();
    let d = EtcdStore::connect(&etcd.url("reg")).await.unwrap();
    d.register_agent(&agent(id_a, 9004)).await.unwrap();
    let port_of_id = || {
        watcher
            .live_agents()
            .iter()
            .find(|x| x.node_id == id_a)
            .map(|x| x.port)
    };
    // a's keeper checks every 3 s; give it two rounds to (wrongly) write its entry.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        port_of_id(),
        Some(9004),
        "the agent that registered the free id keeps it"
    );
    d.deregister_agent().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while port_of_id() != Some(9001) {
        assert!(
            Instant::now() < deadline,
            "a takes its id back once it is free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.live_agents().iter().any(|x| x.port == 9001));
}

/// The lease of `store`'s registry entry for `node_id`, read from etcd itself.
async fn entry_lease(raw: &shoal_etcd::Client, prefix: &str, node_id: i32) -> i64 {
    let key = format!("{prefix}/agents/{node_id:010}");
    let got = raw.get(key.as_str(), None).await.unwrap();
    got.kvs.first().map_or(0, |kv| kv.lease())
}

fn offset(o: i64) -> GroupOffset {
    GroupOffset {
        topic: "t".into(),
        partition: 0,
        offset: o,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp: 1,
    }
}

/// Roles and jobs belong to one incarnation of one agent: another agent cannot claim
/// them while it lives, gets them once its lease is gone, and the old holder's writes
/// are then refused by etcd itself (before fencing, an agent whose lease had lapsed
/// went on committing offsets with unconditional puts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_jobs_are_fenced_by_the_holders_lease() {
    let etcd = Etcd::start();
    let raw = etcd.raw_client();
    let url = etcd.url("fence");
    let a = EtcdStore::connect(&url).await.unwrap();
    let b = EtcdStore::connect(&url).await.unwrap();
    let id_a = a.register_agent(&agent(-1, 9001)).await.unwrap();
    b.register_agent(&agent(-1, 9002)).await.unwrap();
    let Standing::Live { incarnation, .. } = a.standing() else {
        panic!("a registered agent is live: {:?}", a.standing());
    };
    assert_eq!(incarnation, entry_lease(&raw, "fence", id_a).await);
    assert!(
        a.live_agents()
            .iter()
            .any(|x| x.node_id == id_a && x.incarnation == incarnation),
        "registration returns once the registry shows this incarnation"
    );

    let fa = a.claim_role("group:g").await.unwrap().expect("a free role");
    assert_eq!(b.claim_role("group:g").await.unwrap(), None, "a holds it");
    a.commit_group_offsets("g", &[offset(10)], &fa)
        .await
        .unwrap();
    assert!(a.claim_job("gc", "node-a", 0, 1).await.unwrap());
    assert!(
        !b.claim_job("gc", "node-b", i64::MAX / 2, 1).await.unwrap(),
        "however late b's clock says it is"
    );

    // a's lease lapses (as after an outage or a pause longer than the lease).
    raw.lease_revoke(incarnation).await.unwrap();
    let fb = b
        .claim_role("group:g")
        .await
        .unwrap()
        .expect("free once a's lease is gone");
    assert!(fb.epoch > fa.epoch);
    b.commit_group_offsets("g", &[offset(20)], &fb)
        .await
        .unwrap();
    let stale = a.commit_group_offsets("g", &[offset(11)], &fa).await;
    assert!(matches!(stale, Err(MetaError::Fenced(_))), "{stale:?}");
    assert_eq!(
        b.group_offsets("g").await.unwrap(),
        vec![offset(20)],
        "offsets never go back"
    );
    assert!(
        b.claim_job("gc", "node-b", 0, 1).await.unwrap(),
        "the job is free with a's lease"
    );

    // a notices, registers again as a new incarnation, and holds nothing it held before.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Standing::Live {
            incarnation: now, ..
        } = a.standing()
        {
            if now != incarnation {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "a registers again: {:?}",
            a.standing()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.claim_role("group:g").await.unwrap(), None);
    assert!(!a.claim_job("gc", "node-a", 0, 1).await.unwrap());

    // etcd stops answering (SIGSTOP): before etcd could expire the lease, the agent
    // stops counting itself live; once etcd answers again, it is live again.
    let pid = etcd.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} etcd");
    };
    signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.standing() != Standing::Lapsed {
        if Instant::now() > deadline {
            signal("-CONT");
            panic!("an agent that cannot renew its lease must lapse");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a.claim_role("group:h").await.unwrap(),
        None,
        "a lapsed agent claims nothing"
    );
    signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(a.standing(), Standing::Live { .. }) {
        assert!(Instant::now() < deadline, "live again after etcd returns");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent killed with -9 leaves its entry under a lease etcd keeps for the lease's
/// TTL. Restarted at once with the same --node-id, it waits that out and takes its id
/// back, instead of exiting (which an orchestrator turns into a crash loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_waits_out_its_old_lease() {
    let etcd = Etcd::start();
    let raw = etcd.raw_client();
    // The killed run: an entry under a live lease nobody keeps alive any more.
    let lease = raw.lease_grant(4).await.unwrap();
    raw.put(
        "restart/agents/0000000007",
        r#"{"node_id":7,"host":"127.0.0.1","port":9001,"az":"","group":"default","roles":[],"peer_addr":null}"#,
        Some(shoal_etcd::PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    let again = EtcdStore::connect(&etcd.url("restart")).await.unwrap();
    let id = again
        .register_agent(&agent(7, 9001))
        .await
        .expect("the id is taken back once the old lease ends");
    assert_eq!(id, 7);
    let now = entry_lease(&raw, "restart", 7).await;
    assert!(now != 0 && now != lease, "held under the new run's lease");
}
