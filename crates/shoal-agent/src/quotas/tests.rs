use super::*;

const SEC: Duration = Duration::from_secs(1);

fn named(s: &str) -> Option<QuotaName> {
    Some(QuotaName::Named(s.to_string()))
}

#[tokio::test(start_paused = true)]
async fn a_first_burst_is_measured_over_num_minus_one_windows() {
    let mut r = Rate::new(SEC, 11);
    let t0 = Instant::now();
    r.record(t0, 10_000.0);
    assert_eq!(r.span(t0), 10 * SEC);
    assert_eq!(r.measure(t0), 1_000.0);
    // Twice the bound: wait (1000 - 500) / 500 × 10 s.
    assert_eq!(r.throttle(t0, 500.0, 11 * SEC), 10 * SEC);
    assert_eq!(
        r.throttle(t0, 1_000.0, 11 * SEC),
        Duration::ZERO,
        "at the bound"
    );
    assert_eq!(
        r.throttle(t0, 100.0, 11 * SEC),
        11 * SEC,
        "capped at the window"
    );
    assert_eq!(
        r.throttle(t0, 0.0, 11 * SEC),
        11 * SEC,
        "a zero quota waits the most"
    );
}

#[tokio::test(start_paused = true)]
async fn a_steady_rate_is_measured_as_itself_and_expires() {
    let mut r = Rate::new(SEC, 11);
    let t0 = Instant::now();
    for i in 0..30u32 {
        r.record(t0 + SEC * i, 100.0);
    }
    let now = t0 + SEC * 29 + Duration::from_millis(500);
    let rate = r.measure(now);
    assert!((95.0..=110.0).contains(&rate), "{rate}");
    assert_eq!(r.throttle(now, 200.0, 11 * SEC), Duration::ZERO);
    let wait = r.throttle(now, 50.0, 11 * SEC);
    assert!(wait > 9 * SEC && wait <= 11 * SEC, "{wait:?}");
    // Eleven idle windows later every sample has expired.
    assert_eq!(r.measure(now + 11 * SEC), 0.0);
}

#[tokio::test(start_paused = true)]
async fn throttling_to_the_bound_keeps_the_rate_near_it() {
    // A client that always waits as told and then sends 1000 units: its average rate
    // converges to the bound of 2000/s.
    let mut r = Rate::new(SEC, 11);
    let start = Instant::now();
    let mut sent = 0.0;
    while Instant::now() < start + 60 * SEC {
        let now = Instant::now();
        r.record(now, 1_000.0);
        sent += 1_000.0;
        let wait = r.throttle(now, 2_000.0, 11 * SEC);
        tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
    }
    let avg = sent / 60.0;
    assert!((1_800.0..=2_600.0).contains(&avg), "{avg}");
}

#[test]
fn precedence_is_kafkas() {
    use QuotaName::Default;
    let levels = [
        (named("ANONYMOUS"), named("app")),
        (named("ANONYMOUS"), Some(Default)),
        (named("ANONYMOUS"), None),
        (Some(Default), named("app")),
        (Some(Default), Some(Default)),
        (Some(Default), None),
        (None, named("app")),
        (None, Some(Default)),
    ];
    let mut table = BTreeMap::new();
    for (i, (user, client_id)) in levels.iter().enumerate() {
        table.insert(
            QuotaEntity {
                user: user.clone(),
                client_id: client_id.clone(),
            },
            BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), i as f64)]),
        );
    }
    for (i, (user, client_id)) in levels.iter().enumerate() {
        let (bound, key) = resolve(&table, QuotaType::Produce, ANONYMOUS, "app").unwrap();
        assert_eq!(bound, i as f64, "level {i} wins over those below it");
        // The measurement is keyed by the real names of the entity's parts.
        assert_eq!(key.user.as_deref(), user.as_ref().map(|_| ANONYMOUS));
        assert_eq!(key.client_id.as_deref(), client_id.as_ref().map(|_| "app"));
        table.remove(&QuotaEntity {
            user: user.clone(),
            client_id: client_id.clone(),
        });
    }
    assert!(resolve(&table, QuotaType::Produce, ANONYMOUS, "app").is_none());
}

#[test]
fn each_quota_type_resolves_on_its_own() {
    let table = BTreeMap::from([
        (
            QuotaEntity {
                user: None,
                client_id: named("app"),
            },
            BTreeMap::from([(CONSUMER_BYTE_RATE.to_string(), 5.0)]),
        ),
        (
            QuotaEntity {
                user: None,
                client_id: Some(QuotaName::Default),
            },
            BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), 7.0)]),
        ),
    ]);
    assert_eq!(
        resolve(&table, QuotaType::Fetch, ANONYMOUS, "app")
            .unwrap()
            .0,
        5.0
    );
    assert_eq!(
        resolve(&table, QuotaType::Produce, ANONYMOUS, "app")
            .unwrap()
            .0,
        7.0
    );
    assert!(resolve(&table, QuotaType::Request, ANONYMOUS, "app").is_none());
    assert!(resolve(&table, QuotaType::Fetch, ANONYMOUS, "other").is_none());
}

#[tokio::test(start_paused = true)]
async fn quotas_split_across_agents_share_defaults_per_name_and_forget_idle_clients() {
    let q = Quotas::new(SEC, 11);
    let now = Instant::now();
    assert_eq!(
        q.record(QuotaType::Produce, ANONYMOUS, "a", 1e9, || 1, now),
        Duration::ZERO,
        "no quota: never throttled"
    );
    assert_eq!(q.sensors(), 0, "and nothing measured");
    q.set_table(vec![ClientQuota {
        entity: QuotaEntity {
            user: None,
            client_id: Some(QuotaName::Default),
        },
        values: BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), 2_000.0)]),
    }]);
    // 10 000 bytes over the 10 s span is 1000/s: within 2000/s on one agent...
    assert_eq!(
        q.record(QuotaType::Produce, ANONYMOUS, "a", 10_000.0, || 1, now),
        Duration::ZERO
    );
    // ...but "b" on an agent that is one of four enforces 500/s: (1000-500)/500 × 10 s.
    assert_eq!(
        q.record(QuotaType::Produce, ANONYMOUS, "b", 10_000.0, || 4, now),
        10 * SEC
    );
    assert_eq!(q.sensors(), 2, "a default quota is per client id");
    q.sweep(now + 5 * SEC);
    assert_eq!(q.sensors(), 2);
    q.sweep(now + 11 * SEC);
    assert_eq!(q.sensors(), 0, "idle for a whole window: forgotten");
}

#[tokio::test(start_paused = true)]
async fn a_throttle_only_grows_and_ends() {
    let t = Throttle::default();
    let now = Instant::now();
    assert_eq!(t.until(now), None);
    t.extend(now + 2 * SEC);
    t.extend(now + SEC);
    assert_eq!(t.until(now), Some(now + 2 * SEC));
    assert_eq!(t.until(now + 2 * SEC), None, "over at its end");
}

#[test]
fn one_request_may_take_the_window_minus_one_sample() {
    let q = Quotas::new(SEC, 11);
    let kind = QuotaType::Fetch;
    assert_eq!(q.max_per_request(kind, ANONYMOUS, "r", || 1), None);
    q.set_table(vec![ClientQuota {
        entity: QuotaEntity {
            user: None,
            client_id: named("r"),
        },
        values: BTreeMap::from([(CONSUMER_BYTE_RATE.to_string(), 1_000.0)]),
    }]);
    assert_eq!(
        q.max_per_request(kind, ANONYMOUS, "r", || 1),
        Some(10_000.0)
    );
    assert_eq!(q.max_per_request(kind, ANONYMOUS, "r", || 2), Some(5_000.0));
    assert_eq!(
        q.max_per_request(QuotaType::Produce, ANONYMOUS, "r", || 1),
        None
    );
}
