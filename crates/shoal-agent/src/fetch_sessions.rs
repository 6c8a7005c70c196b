//! Incremental fetch sessions (KIP-227). A consumer of many partitions sends them all
//! once; the agent remembers them under a session id, and later requests carry only the
//! partitions whose position changed (plus those to forget), while answers carry only
//! the partitions with records, an error, or a changed high watermark, last stable
//! offset or log start. The agent still reads every partition of the session.
//!
//! What the session id and epoch of a request mean, as in Kafka:
//! - epoch -1: no session (the one named, if any, is closed); answered in full, id 0;
//! - epoch 0: a new session (the one named, if any, is closed first); answered in full
//!   with the new id, or with id 0 when the cache has no room (the client then keeps
//!   sending full requests);
//! - epoch > 0: the next request of session `id`: FETCH_SESSION_ID_NOT_FOUND if there is
//!   no such session (evicted, or held by another agent), INVALID_FETCH_SESSION_EPOCH if
//!   the epoch is not the one expected, FETCH_SESSION_TOPIC_ID_ERROR if the session
//!   named topics by id and this request by name or the other way round. Clients answer
//!   all three with a full request.
//!
//! The cache is the agent's, bounded by `--fetch-session-cache-slots` sessions (Kafka's
//! `max.incremental.fetch.session.cache.slots`) and `--fetch-session-cache-partitions`
//! partitions over all sessions; a new session evicts the least recently used ones to
//! fit, and one larger than the partition bound is not cached at all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::metrics::Metrics;

/// A partition as a session keys it: topic id (v13+) or name (before), and index.
type Key = (Uuid, String, i32);

/// What was last sent for a partition: high watermark, last stable offset, log start.
type Sent = (i64, i64, i64);

struct Session {
    uses_ids: bool,
    next_epoch: i32,
    /// The session's partitions in the order they were added.
    topics: Vec<FetchTopic>,
    sent: HashMap<Key, Sent>,
    last_used: Instant,
}

impl Session {
    fn partitions(&self) -> usize {
        self.topics.iter().map(|t| t.partitions.len()).sum()
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<i32, Session>,
    partitions: usize,
}

/// How a fetch request is to be answered.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// No session: read the request's partitions, answer in full with id 0.
    Sessionless,
    /// A new session: read the request's partitions, answer in full with this id.
    New(i32),
    /// The next request of a session: read these partitions (the whole session),
    /// answer only what changed.
    Incremental { id: i32, topics: Vec<FetchTopic> },
    /// Answer with this top-level error.
    Error(i16),
}

pub struct FetchSessions {
    inner: Mutex<Inner>,
    slots: usize,
    max_partitions: usize,
}

fn key(topic_id: Uuid, name: &str, partition: i32) -> Key {
    (topic_id, name.to_string(), partition)
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    pub fn new(slots: usize, max_partitions: usize) -> Self {
        FetchSessions {
            inner: Mutex::new(Inner::default()),
            slots,
            max_partitions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions cached now.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(inner: &mut Inner, id: i32) {
        if let Some(s) = inner.sessions.remove(&id) {
            inner.partitions -= s.partitions();
        }
    }

    /// Decides how `req` (of a version that names topics by id when `uses_ids`) is
    /// answered, updating the session it belongs to. Fetch versions before 7 have no
    /// session fields (epoch -1) and are always sessionless.
    pub fn begin(&self, req: &FetchRequest, uses_ids: bool, metrics: &Metrics) -> Plan {
        let mut inner = self.lock();
        let now = Instant::now();
        match req.session_epoch {
            -1 => {
                if req.session_id != 0 {
                    Self::remove(&mut inner, req.session_id);
                }
                Metrics::add(&metrics.fetch_full, 1);
                Plan::Sessionless
            }
            0 => {
                if req.session_id != 0 {
                    Self::remove(&mut inner, req.session_id);
                }
                Metrics::add(&metrics.fetch_full, 1);
                let size: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
                if self.slots == 0 || size > self.max_partitions {
                    return Plan::Sessionless;
                }
                while inner.sessions.len() >= self.slots
                    || inner.partitions + size > self.max_partitions
                {
                    let Some(oldest) = inner
                        .sessions
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(id, _)| *id)
                    else {
                        break;
                    };
                    Self::remove(&mut inner, oldest);
                    Metrics::add(&metrics.fetch_session_evictions, 1);
                }
                let id = loop {
                    let id = (rand_u32() & 0x7fff_ffff) as i32;
                    if id != 0 && !inner.sessions.contains_key(&id) {
                        break id;
                    }
                };
                inner.partitions += size;
                inner.sessions.insert(
                    id,
                    Session {
                        uses_ids,
                        next_epoch: 1,
                        topics: req.topics.clone(),
                        sent: HashMap::new(),
                        last_used: now,
                    },
                );
                Metrics::add(&metrics.fetch_session_new, 1);
                Plan::New(id)
            }
            epoch if epoch < -1 => Plan::Error(ResponseError::InvalidFetchSessionEpoch.code()),
            epoch => {
                let inner = &mut *inner;
                let Some(s) = inner.sessions.get_mut(&req.session_id) else {
                    return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
                };
                if epoch != s.next_epoch {
                    return Plan::Error(ResponseError::InvalidFetchSessionEpoch.code());
                }
                if s.uses_ids != uses_ids {
                    return Plan::Error(ResponseError::FetchSessionTopicIdError.code());
                }
                let before = s.partitions();
                for f in &req.forgotten_topics_data {
                    if let Some(t) = s
                        .topics
                        .iter_mut()
                        .find(|t| t.topic_id == f.topic_id && t.topic == f.topic)
                    {
                        t.partitions
                            .retain(|p| !f.partitions.contains(&p.partition));
                    }
                    for p in &f.partitions {
                        s.sent.remove(&key(f.topic_id, f.topic.0.as_str(), *p));
                    }
                }
                for rt in &req.topics {
                    let idx = match s
                        .topics
                        .iter()
                        .position(|t| t.topic_id == rt.topic_id && t.topic == rt.topic)
                    {
                        Some(i) => i,
                        None => {
                            s.topics.push(
                                FetchTopic::default()
                                    .with_topic(rt.topic.clone())
                                    .with_topic_id(rt.topic_id),
                            );
                            s.topics.len() - 1
                        }
                    };
                    let t = &mut s.topics[idx];
                    for p in &rt.partitions {
                        upsert(&mut t.partitions, p);
                    }
                }
                s.topics.retain(|t| !t.partitions.is_empty());
                let after = s.partitions();
                inner.partitions = inner.partitions + after - before;
                if inner.partitions > self.max_partitions {
                    // Grown past the bound: forgotten, so the client starts over with a
                    // full request (cached again only if it fits).
                    Self::remove(inner, req.session_id);
                    Metrics::add(&metrics.fetch_session_evictions, 1);
                    return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
                }
                let s = inner
                    .sessions
                    .get_mut(&req.session_id)
                    .expect("looked up above");
                s.next_epoch = next_epoch(epoch);
                s.last_used = now;
                Metrics::add(&metrics.fetch_incremental, 1);
                Plan::Incremental {
                    id: req.session_id,
                    topics: s.topics.clone(),
                }
            }
        }
    }

    /// Records what `resp` tells the client of session `id` and, for an incremental
    /// answer, drops the partitions that have nothing new for it.
    pub fn finish(&self, id: i32, incremental: bool, resp: &mut FetchResponse) {
        resp.session_id = id;
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(&id) else {
            // Evicted meanwhile: a full answer is still a correct one.
            return;
        };
        for t in &mut resp.responses {
            t.partitions.retain(|p| {
                let now: Sent = (p.high_watermark, p.last_stable_offset, p.log_start_offset);
                let k = key(t.topic_id, t.topic.0.as_str(), p.partition_index);
                let changed = s.sent.insert(k, now) != Some(now);
                !incremental
                    || changed
                    || p.error_code != 0
                    || p.records.as_ref().is_some_and(|r| !r.is_empty())
            });
        }
        if incremental {
            resp.responses.retain(|t| !t.partitions.is_empty());
        }
    }
}

fn upsert(partitions: &mut Vec<FetchPartition>, p: &FetchPartition) {
    match partitions.iter_mut().find(|x| x.partition == p.partition) {
        Some(x) => *x = p.clone(),
        None => partitions.push(p.clone()),
    }
}

fn rand_u32() -> u32 {
    Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    const T: Uuid = Uuid::from_u128(7);

    /// The `fetch_*` counters this module keeps.
    fn counts(m: &Metrics) -> (u64, u64, u64) {
        (
            m.fetch_full.load(Ordering::Relaxed),
            m.fetch_session_new.load(Ordering::Relaxed),
            m.fetch_incremental.load(Ordering::Relaxed),
        )
    }

    fn part(p: i32, offset: i64) -> FetchPartition {
        FetchPartition::default()
            .with_partition(p)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1024)
    }

    fn req(id: i32, epoch: i32, parts: Vec<FetchPartition>) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(if parts.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default()
                    .with_topic_id(T)
                    .with_partitions(parts)]
            })
    }

    fn resp(hws: &[(i32, i64, bool)]) -> FetchResponse {
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic_id(T)
            .with_partitions(
                hws.iter()
                    .map(|(p, hw, data)| {
                        PartitionData::default()
                            .with_partition_index(*p)
                            .with_high_watermark(*hw)
                            .with_records(Some(if *data {
                                bytes::Bytes::from_static(b"x")
                            } else {
                                bytes::Bytes::new()
                            }))
                    })
                    .collect(),
            )])
    }

    fn partitions_of(r: &FetchResponse) -> Vec<i32> {
        r.responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    #[test]
    fn a_session_answers_only_what_changed() {
        let m = Metrics::default();
        let s = FetchSessions::new(10, 100);
        let Plan::New(id) = s.begin(
            &req(0, 0, vec![part(0, 0), part(1, 0), part(2, 0)]),
            true,
            &m,
        ) else {
            panic!("a session")
        };
        let mut r = resp(&[(0, 5, true), (1, 0, false), (2, 0, false)]);
        s.finish(id, false, &mut r);
        assert_eq!((r.session_id, partitions_of(&r)), (id, vec![0, 1, 2]));
        // Next: partition 0 moved on; the session reads all three.
        let Plan::Incremental { topics, .. } = s.begin(&req(id, 1, vec![part(0, 5)]), true, &m)
        else {
            panic!("incremental")
        };
        assert_eq!(topics[0].partitions.len(), 3);
        assert_eq!(topics[0].partitions[0].fetch_offset, 5);
        // Only partition 2 has news (its high watermark moved).
        let mut r = resp(&[(0, 5, false), (1, 0, false), (2, 3, false)]);
        s.finish(id, true, &mut r);
        assert_eq!(partitions_of(&r), vec![2]);
        // Forgetting partition 1; a stale epoch; an unknown id; names instead of ids.
        let mut forget = req(id, 2, vec![]);
        forget.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic_id(T)
            .with_partitions(vec![1])];
        let Plan::Incremental { topics, .. } = s.begin(&forget, true, &m) else {
            panic!("incremental")
        };
        assert_eq!(topics[0].partitions.len(), 2);
        assert_eq!(
            s.begin(&req(id, 2, vec![]), true, &m),
            Plan::Error(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            s.begin(&req(id + 1, 1, vec![]), true, &m),
            Plan::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        assert_eq!(
            s.begin(&req(id, 3, vec![]), false, &m),
            Plan::Error(ResponseError::FetchSessionTopicIdError.code())
        );
        // Epoch -1 with the id closes it and reads sessionless, in full.
        assert_eq!(
            s.begin(&req(id, -1, vec![part(0, 0)]), true, &m),
            Plan::Sessionless
        );
        assert!(s.is_empty());
        assert_eq!(counts(&m), (2, 1, 2));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let m = Metrics::default();
        let s = FetchSessions::new(2, 5);
        let new = |n: i32| match s.begin(&req(0, 0, (0..n).map(|p| part(p, 0)).collect()), true, &m)
        {
            Plan::New(id) => Some(id),
            _ => None,
        };
        let a = new(2).unwrap();
        let b = new(2).unwrap();
        // Use a, so b is the least recently used.
        assert!(matches!(
            s.begin(&req(a, 1, vec![]), true, &m),
            Plan::Incremental { .. }
        ));
        let c = new(2).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.begin(&req(b, 1, vec![]), true, &m),
            Plan::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        // Partitions bound: a session of 4 more evicts both others; one of 6 is never cached.
        let d = new(4).unwrap();
        assert_eq!(s.len(), 1);
        assert!(new(6).is_none());
        assert_ne!(c, d);
        assert_eq!(m.fetch_session_evictions.load(Ordering::Relaxed), 3);
    }
}
