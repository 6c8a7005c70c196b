//! Client quotas, enforced as Kafka enforces them: measure, then throttle.
//!
//! Quotas live in the metadata store (see [`shoal_meta::QuotaEntity`]); every agent keeps
//! a copy of the whole table ([`Quotas::set_table`]), reloaded every second and at once
//! after an AlterClientQuotas through this agent. A request's client is
//! `(user, client-id)`, the user being `ANONYMOUS` while Shoal has no authentication.
//! For each quota type the first entity of Kafka's documented order that sets it wins
//! ([`resolve`]): `/users/U/clients/C`, `/users/U/clients/<default>`, `/users/U`,
//! `/users/<default>/clients/C`, `/users/<default>/clients/<default>`,
//! `/users/<default>`, `/clients/C`, `/clients/<default>`. Clients that share the
//! winning entity share one measurement (a default entity gives each name its own).
//!
//! Measurement ([`Rate`]) is Kafka's sampled rate: `quota.window.num` samples (default
//! 11) of `quota.window.size.seconds` (default 1 s), the rate being the sum of the
//! retained samples over the time they span (at least `num - 1` windows). A request
//! that takes the rate over the bound is throttled for `(rate - bound) / bound × span`,
//! at most the whole window (`num × size`): its response carries `throttle_time_ms`
//! and its connection reads nothing more until then ([`Throttle`]); clients since
//! KIP-219 also wait by themselves. Produce counts record bytes received, Fetch record
//! bytes returned, `request_percentage` the time requests spend being polled on the
//! agent's executor (sync part and answer futures, not time spent waiting), as a
//! percentage of one core, like Kafka's share of one I/O thread. A Fetch's `max_bytes`
//! is capped to what the quota allows over `num - 1` windows, as Kafka caps it.
//!
//! Across agents, each agent enforces `quota / n`, where `n` is the number of live
//! agents of its agent group that serve that traffic (the `produce` role for
//! `producer_byte_rate`, `fetch` for `consumer_byte_rate`, all for
//! `request_percentage`), from the cluster registry. A client spreading over the agents
//! (as clients do: partition leaders are spread evenly) gets its whole quota; a client
//! using one agent gets `1/n` of it.
//!
//! Memory: one small measurement per throttled entity and type; measurements idle for a
//! whole window are dropped by [`Quotas::sweep`]. Nothing is measured for clients no
//! quota applies to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use shoal_meta::{ClientQuota, QuotaEntity, QuotaName};
use tokio::time::Instant;

pub mod enforce;

/// The user of every connection until Shoal authenticates clients (Kafka's principal
/// for PLAINTEXT).
pub const ANONYMOUS: &str = "ANONYMOUS";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Accepted and stored so Kafka tools work, but not enforced (Shoal does not throttle
/// CreateTopics, CreatePartitions or DeleteTopics).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// The keys a user or client-id entity accepts, and whether the value must be whole.
pub const KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// What a quota bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    Produce,
    Fetch,
    Request,
}

impl QuotaType {
    pub const ALL: [QuotaType; 3] = [QuotaType::Produce, QuotaType::Fetch, QuotaType::Request];

    /// The quota key that sets it.
    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The agent role whose agents share this quota (`None`: every agent).
    pub fn role(self) -> Option<&'static str> {
        match self {
            QuotaType::Produce => Some("produce"),
            QuotaType::Fetch => Some("fetch"),
            QuotaType::Request => None,
        }
    }

    /// Its label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }
}

/// One sample of a [`Rate`]: what was recorded from `start` on.
#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    value: f64,
}

/// Kafka's sampled rate (`org.apache.kafka.common.metrics.stats.Rate` over
/// `SampledStat`): up to `num` samples of `window` each; a sample begins at the first
/// record after the previous one is complete, and samples older than `num × window`
/// are discarded.
#[derive(Debug, Clone)]
pub struct Rate {
    samples: VecDeque<Sample>,
    window: Duration,
    num: usize,
}

impl Rate {
    pub fn new(window: Duration, num: usize) -> Rate {
        Rate {
            samples: VecDeque::new(),
            window: window.max(Duration::from_millis(1)),
            num: num.max(1),
        }
    }

    fn purge(&mut self, now: Instant) {
        let expire = self.window * self.num as u32;
        while self
            .samples
            .front()
            .is_some_and(|s| now.duration_since(s.start) >= expire)
        {
            self.samples.pop_front();
        }
    }

    pub fn record(&mut self, now: Instant, value: f64) {
        self.purge(now);
        match self.samples.back_mut() {
            Some(s) if now.duration_since(s.start) < self.window => s.value += value,
            _ => {
                self.samples.push_back(Sample { start: now, value });
                if self.samples.len() > self.num {
                    self.samples.pop_front();
                }
            }
        }
    }

    /// The time the rate is taken over: from the oldest sample's start to `now`, and at
    /// least `num - 1` whole windows (so a first burst is not measured over nothing).
    pub fn span(&mut self, now: Instant) -> Duration {
        self.purge(now);
        let mut elapsed = self
            .samples
            .front()
            .map(|s| now.duration_since(s.start))
            .unwrap_or_default();
        let full = (elapsed.as_nanos() / self.window.as_nanos()) as u32;
        let min_full = (self.num - 1) as u32;
        if full < min_full {
            elapsed += self.window * (min_full - full);
        }
        elapsed.max(Duration::from_millis(1))
    }

    /// Units per second.
    pub fn measure(&mut self, now: Instant) -> f64 {
        let span = self.span(now);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / span.as_secs_f64()
    }

    /// How long a client measured at this rate waits to come back to `bound`: zero
    /// when within it, else `(rate - bound) / bound × span`, at most `max`.
    pub fn throttle(&mut self, now: Instant, bound: f64, max: Duration) -> Duration {
        let rate = self.measure(now);
        if rate <= bound {
            return Duration::ZERO;
        }
        if bound <= 0.0 {
            return max;
        }
        let secs = (rate - bound) / bound * self.span(now).as_secs_f64();
        Duration::from_secs_f64(secs.min(max.as_secs_f64()))
    }
}

/// Whose measurement a request counts in: the quota type and the names of the parts of
/// the entity that set the quota (`None`: that part is not in the entity).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorKey {
    pub kind: QuotaType,
    pub user: Option<String>,
    pub client_id: Option<String>,
}

/// The quota of `kind` that applies to `(user, client_id)` and the measurement it is
/// counted in, by Kafka's precedence (see the module docs); `None` when no entity sets it.
pub fn resolve(
    table: &BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
    kind: QuotaType,
    user: &str,
    client_id: &str,
) -> Option<(f64, SensorKey)> {
    use QuotaName::{Default, Named};
    let u = || Some(Named(user.to_string()));
    let c = || Some(Named(client_id.to_string()));
    let order = [
        (u(), c()),
        (u(), Some(Default)),
        (u(), None),
        (Some(Default), c()),
        (Some(Default), Some(Default)),
        (Some(Default), None),
        (None, c()),
        (None, Some(Default)),
    ];
    for (user_part, client_part) in order {
        let entity = QuotaEntity {
            user: user_part,
            client_id: client_part,
        };
        if let Some(bound) = table.get(&entity).and_then(|v| v.get(kind.key())) {
            let key = SensorKey {
                kind,
                user: entity.user.is_some().then(|| user.to_string()),
                client_id: entity.client_id.is_some().then(|| client_id.to_string()),
            };
            return Some((*bound, key));
        }
    }
    None
}

/// Entity types as the protocol names them.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
/// Kafka's connection-rate quotas' entity type, which Shoal does not implement.
pub const IP: &str = "ip";

/// A quota entity from the protocol's `(entity_type, entity_name)` pairs (a `None` name
/// is the default entity), checked as Kafka checks it.
pub fn entity_of<'a>(
    parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<QuotaEntity, String> {
    let mut e = QuotaEntity {
        user: None,
        client_id: None,
    };
    for (kind, name) in parts {
        let slot = match kind {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => {
                return Err(
                    "ip quotas (connection_creation_rate) are not supported by Shoal".to_string(),
                )
            }
            other => return Err(format!("unknown client quota entity type '{other}'")),
        };
        let name = match name {
            Some(n) => QuotaName::Named(n.to_string()),
            None => QuotaName::Default,
        };
        if slot.replace(name).is_some() {
            return Err(format!("entity type '{kind}' appears twice in one entity"));
        }
    }
    if e.user.is_none() && e.client_id.is_none() {
        return Err("invalid empty client quota entity".to_string());
    }
    Ok(e)
}

/// The protocol's `(entity_type, entity_name)` pairs of an entity, user first.
pub fn entity_parts(e: &QuotaEntity) -> Vec<(&'static str, Option<String>)> {
    let name = |n: &QuotaName| match n {
        QuotaName::Default => None,
        QuotaName::Named(s) => Some(s.clone()),
    };
    let mut out = Vec::new();
    if let Some(u) = &e.user {
        out.push((USER, name(u)));
    }
    if let Some(c) = &e.client_id {
        out.push((CLIENT_ID, name(c)));
    }
    out
}

/// A measurement and when it was last used.
struct Sensor {
    rate: Rate,
    last: Instant,
}

/// The agent's quota table and measurements, shared by all connections.
pub struct Quotas {
    window: Duration,
    num: usize,
    table: RwLock<Arc<BTreeMap<QuotaEntity, BTreeMap<String, f64>>>>,
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
}

impl Quotas {
    pub fn new(window: Duration, num: usize) -> Quotas {
        Quotas {
            window,
            num: num.max(1),
            table: RwLock::new(Arc::new(BTreeMap::new())),
            sensors: Mutex::new(HashMap::new()),
        }
    }

    /// The longest throttle: one whole window.
    pub fn max_throttle(&self) -> Duration {
        self.window * self.num as u32
    }

    /// Replaces the table with what the metadata store holds.
    pub fn set_table(&self, quotas: Vec<ClientQuota>) {
        let table = quotas.into_iter().map(|q| (q.entity, q.values)).collect();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    pub fn table(&self) -> Arc<BTreeMap<QuotaEntity, BTreeMap<String, f64>>> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The most one request may take of a `kind` quota: what this agent's share of it
    /// allows over `num - 1` windows (Kafka caps a Fetch's `max_bytes` to it); `None`
    /// when no quota applies.
    pub fn max_per_request(
        &self,
        kind: QuotaType,
        user: &str,
        client_id: &str,
        share: impl FnOnce() -> usize,
    ) -> Option<f64> {
        let table = self.table();
        let (bound, _) = resolve(&table, kind, user, client_id)?;
        let windows = (self.num.max(2) - 1) as f64 * self.window.as_secs_f64();
        Some(bound / share().max(1) as f64 * windows)
    }

    /// Counts `value` for `(user, client_id)` against its `kind` quota, of which this
    /// agent enforces `1 / share()`; returns how long the client must wait (zero when
    /// within its quota or when it has none, in which case nothing is recorded).
    pub fn record(
        &self,
        kind: QuotaType,
        user: &str,
        client_id: &str,
        value: f64,
        share: impl FnOnce() -> usize,
        now: Instant,
    ) -> Duration {
        let table = self.table();
        if table.is_empty() {
            return Duration::ZERO;
        }
        let Some((bound, key)) = resolve(&table, kind, user, client_id) else {
            return Duration::ZERO;
        };
        let bound = bound / share().max(1) as f64;
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        let sensor = sensors.entry(key).or_insert_with(|| Sensor {
            rate: Rate::new(self.window, self.num),
            last: now,
        });
        sensor.last = now;
        sensor.rate.record(now, value);
        sensor.rate.throttle(now, bound, self.max_throttle())
    }

    /// Drops measurements unused for a whole window (all their samples have expired).
    pub fn sweep(&self, now: Instant) {
        let expire = self.max_throttle();
        self.sensors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| now.duration_since(s.last) < expire);
    }

    /// How many measurements are kept.
    pub fn sensors(&self) -> usize {
        self.sensors.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A connection's mute: while set in the future, the connection reads no request.
#[derive(Default)]
pub struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    /// Mutes until `until`, unless already muted for longer.
    pub fn extend(&self, until: Instant) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none_or(|t| t < until) {
            *t = Some(until);
        }
    }

    /// When the mute ends, if it is still on at `now`.
    pub fn until(&self, now: Instant) -> Option<Instant> {
        let t = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.filter(|t| *t > now)
    }
}

/// A future that adds up the time spent polling it (the work it does, not the time it
/// waits), for `request_percentage`.
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    pub busy: Duration,
}

impl<F: Future> Timed<F> {
    pub fn new(f: F) -> Timed<F> {
        Timed {
            inner: Box::pin(f),
            busy: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = std::time::Instant::now();
        let r = self.inner.as_mut().poll(cx);
        self.busy += started.elapsed();
        r.map(|out| (out, self.busy))
    }
}

/// `request_percentage` units for `busy` time: percent of one core, per second.
pub fn percent_seconds(busy: Duration) -> f64 {
    busy.as_secs_f64() * 100.0
}

#[cfg(test)]
mod tests;
