//! Request memory: what requests may hold while they are read, decoded, handled and
//! answered, bounded per connection and across the agent (Kafka's
//! `queued.max.request.bytes`).
//!
//! Each request is charged *before* its body is read or decoded, in request order, by
//! the connection's read loop ([`Budgets::admit`]): first against the connection's
//! budget (`--max-request-bytes-per-connection`), then against the agent's
//! (`--queued-max-request-bytes`). A connection whose charge does not fit waits and
//! reads nothing meanwhile; the charge is returned when the request's answer has been
//! written. The charge ([`charge`]) covers the frame and its decoded form: for Produce,
//! the frame plus [`ELEMENT_COST`] per topic, partition and tagged field (counted by
//! [`shoal_wire::request::produce_elements`] without decoding); for every other API,
//! [`AMPLIFICATION`] times the frame, the most a `kafka-protocol` decode can grow a
//! frame of empty array elements. A non-Produce frame whose charge exceeds the
//! connection's budget is refused outright, so no decode can outgrow its budget.
//!
//! Handlers may add to a request's charge for the memory of its answer
//! ([`Reservation::try_take`], used by Fetch). Those additions never wait: answers are
//! written in request order, so a handler waiting for memory held by a later request's
//! answer on its own connection would wait forever. A fetch that cannot get memory
//! reads less, down to nothing (the client fetches again).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Charged per decoded element of a Produce request: a partition's struct, its share of
/// the vectors' growth, and a tagged field's map node all fit in it.
pub const ELEMENT_COST: usize = 256;
/// A non-Produce request is charged this many times its frame: an array of empty
/// strings decodes 1-byte elements into 32-byte `Bytes` handles.
pub const AMPLIFICATION: usize = 32;

/// One budget of bytes, shared by the requests it covers.
#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub fn new(total: usize) -> Budget {
        let total = total
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        Budget {
            sem: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not charged to any request now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Waits for `bytes` (at most the whole budget; at least 1).
    async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes.clamp(1, self.total) as u32;
        self.sem
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("budgets are never closed")
    }

    /// Takes up to `bytes` of what is free now, without waiting.
    fn try_take_upto(&self, bytes: usize) -> Option<(OwnedSemaphorePermit, usize)> {
        let n = bytes.min(self.available()).min(self.total);
        if n == 0 {
            return None;
        }
        let p = self.sem.clone().try_acquire_many_owned(n as u32).ok()?;
        Some((p, n))
    }
}

/// The agent's budget and one connection's.
pub struct Budgets {
    pub agent: Budget,
    pub connection: Budget,
}

/// What a request is charged before it is read; `Err` says why it is refused.
pub fn charge(api_key: i16, frame_len: usize, connection_total: usize) -> Result<usize, String> {
    if api_key == shoal_wire::request::PRODUCE {
        // The element cost is added once the body is there (see `Budgets::add`).
        return Ok(frame_len);
    }
    let bytes = frame_len.saturating_mul(AMPLIFICATION);
    if bytes > connection_total {
        return Err(format!(
            "a {frame_len}-byte request (API key {api_key}) could decode to {bytes} bytes, more \
             than --max-request-bytes-per-connection ({connection_total}); only Produce \
             requests may be that large"
        ));
    }
    Ok(bytes)
}

/// What a Produce request of `frame_len` bytes holding `elements` decoded elements is
/// charged beyond its frame; `Err` when the whole would exceed the connection's budget
/// (a frame of millions of empty partitions, not a real producer's request).
pub fn produce_extra(
    frame_len: usize,
    elements: usize,
    connection_total: usize,
) -> Result<usize, String> {
    let extra = elements.saturating_mul(ELEMENT_COST);
    if frame_len.saturating_add(extra) > connection_total.max(frame_len) {
        return Err(format!(
            "a {frame_len}-byte Produce request of {elements} topics, partitions and tagged \
             fields would decode to more than --max-request-bytes-per-connection \
             ({connection_total})"
        ));
    }
    Ok(extra)
}

impl Budgets {
    /// Waits until `bytes` are charged to the connection and then to the agent.
    pub async fn admit(&self, bytes: usize) -> Arc<Reservation> {
        let r = Arc::new(Reservation {
            permits: Mutex::new(Vec::with_capacity(2)),
            agent: self.agent.clone(),
            connection: self.connection.clone(),
        });
        self.add(&r, bytes).await;
        r
    }

    /// Waits until `bytes` more are charged to `r` (in request order, like `admit`).
    pub async fn add(&self, r: &Reservation, bytes: usize) {
        let c = self.connection.take(bytes).await;
        let a = self.agent.take(bytes).await;
        let mut held = r.permits.lock().unwrap_or_else(|e| e.into_inner());
        held.push(c);
        held.push(a);
    }
}

/// What one request holds until its answer is written.
pub struct Reservation {
    permits: Mutex<Vec<OwnedSemaphorePermit>>,
    agent: Budget,
    connection: Budget,
}

/// Memory a handler took for an answer; returned when dropped unless [`Reservation::keep`]
/// ties it to the request.
pub struct Taken {
    permits: Vec<OwnedSemaphorePermit>,
    pub bytes: usize,
}

impl Reservation {
    /// Takes up to `bytes` for an answer from what both budgets have free now; never
    /// waits. `None` when nothing is free.
    pub fn try_take(&self, bytes: usize) -> Option<Taken> {
        let (c, n) = self.connection.try_take_upto(bytes)?;
        let (a, n) = self.agent.try_take_upto(n)?;
        let mut permits = vec![a, c];
        if permits[1].num_permits() > n {
            // The agent had less free than the connection: give the difference back.
            let extra = permits[1].num_permits() - n;
            drop(permits[1].split(extra));
        }
        permits.shrink_to_fit();
        Some(Taken { permits, bytes: n })
    }

    /// Holds `taken` until this request's answer is written.
    pub fn keep(&self, taken: Taken) {
        let mut held = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(taken.permits);
    }

    /// Bytes charged to this request now (each charge is taken from both budgets alike,
    /// as long as it is below both totals; tests keep it so).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let held = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().map(|p| p.num_permits()).sum::<usize>() / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(agent: usize, connection: usize) -> Budgets {
        Budgets {
            agent: Budget::new(agent),
            connection: Budget::new(connection),
        }
    }

    #[tokio::test]
    async fn a_charge_waits_until_earlier_answers_return_theirs() {
        let b = budgets(100, 1000);
        let first = b.admit(80).await;
        let second = tokio::spawn({
            let b = Budgets {
                agent: b.agent.clone(),
                connection: b.connection.clone(),
            };
            async move { b.admit(50).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "80 + 50 do not fit in 100");
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(second.bytes(), 50);
        assert_eq!(b.agent.available(), 50);
        assert_eq!(b.connection.available(), 950);
    }

    #[tokio::test]
    async fn a_charge_larger_than_the_budget_takes_all_of_it() {
        let b = budgets(100, 1000);
        let r = b.admit(5000).await;
        assert_eq!(b.agent.available(), 0);
        drop(r);
        assert_eq!(b.agent.available(), 100);
    }

    #[tokio::test]
    async fn answers_take_what_is_free_without_waiting() {
        let b = budgets(100, 60);
        let r = b.admit(10).await;
        let t = r.try_take(500).expect("some memory is free");
        assert_eq!(t.bytes, 50, "the connection had 50 left");
        assert_eq!(b.agent.available(), 40);
        assert!(r.try_take(1).is_none(), "the connection is used up");
        r.keep(t);
        assert_eq!(r.bytes(), 60);
        drop(r);
        assert_eq!(b.agent.available(), 100);
        assert_eq!(b.connection.available(), 60);
        // A taken answer not kept is returned when dropped.
        let r = b.admit(1).await;
        drop(r.try_take(30).unwrap());
        assert_eq!(b.agent.available(), 99);
    }

    #[test]
    fn produce_is_charged_its_frame_and_others_a_multiple_or_refused() {
        assert_eq!(charge(0, 1 << 20, 1 << 10), Ok(1 << 20));
        assert_eq!(charge(1, 1000, 1 << 20), Ok(32_000));
        assert!(charge(3, 1 << 20, 1 << 24).is_err());
        assert_eq!(produce_extra(1000, 10, 1 << 20), Ok(2560));
        assert!(produce_extra(1 << 20, 1 << 20, 1 << 24).is_err());
        // A frame alone may fill the budget (--max-frame-bytes bounds it).
        assert_eq!(produce_extra(1 << 20, 0, 1 << 10), Ok(0));
    }
}
