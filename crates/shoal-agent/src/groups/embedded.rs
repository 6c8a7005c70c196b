//! The consumer embedded protocol of classic groups: the subscription a member puts in
//! its JoinGroup metadata and the assignment a SyncGroup carries back (Kafka's
//! `ConsumerProtocolSubscription` v0–3 and `ConsumerProtocolAssignment` v0–3, each
//! prefixed by its version).
//!
//! A classic coordinator never looks inside these bytes, but a consumer group that also
//! holds classic members (KIP-848's online upgrade) must: it reads what a classic member
//! subscribes to and owns, and writes the partitions the server-side assignor gave it.
//!
//! Written by hand rather than with the `kafka-protocol` schemas because those size
//! their vectors from the counts in the bytes; here every count is bounded by the bytes
//! present, so a hostile member's metadata costs at most its own length.

use bytes::{BufMut, Bytes, BytesMut};

/// The newest version of either message this module knows; newer ones only append
/// fields, which are ignored.
pub const NEWEST: i16 = 3;

/// A decoded subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// Partitions the member still owns (v1+; cooperative members keep some across a
    /// rebalance, eager ones have revoked everything and list none).
    pub owned: Vec<(String, Vec<i32>)>,
    pub rack_id: Option<String>,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A count of elements each at least `min` bytes long, checked against what is left.
    fn count(&mut self, min: usize) -> Option<usize> {
        let n = self.i32()?;
        let n = usize::try_from(n.max(0)).ok()?;
        (n.checked_mul(min)? <= self.b.len() - self.at).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        Some(Some(
            String::from_utf8_lossy(self.take(n as usize)?).into_owned(),
        ))
    }

    fn skip_nullable_bytes(&mut self) -> Option<()> {
        let n = self.i32()?;
        if n >= 0 {
            self.take(n as usize)?;
        }
        Some(())
    }

    fn topic_partitions(&mut self) -> Option<Vec<(String, Vec<i32>)>> {
        let topics = self.count(6)?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let name = self.string()?;
            let n = self.count(4)?;
            let mut ps = Vec::new();
            for _ in 0..n {
                ps.push(self.i32()?);
            }
            out.push((name, ps));
        }
        Some(out)
    }
}

/// Decodes a subscription; `None` if the bytes are not one.
pub fn decode_subscription(meta: &[u8]) -> Option<Subscription> {
    let mut c = Cursor { b: meta, at: 0 };
    let version = c.i16()?;
    if version < 0 {
        return None;
    }
    let n = c.count(2)?;
    let mut topics = Vec::new();
    for _ in 0..n {
        topics.push(c.string()?);
    }
    c.skip_nullable_bytes()?;
    let mut s = Subscription {
        version,
        topics,
        ..Default::default()
    };
    if version >= 1 {
        s.owned = c.topic_partitions()?;
    }
    if version >= 2 {
        c.i32()?; // generation id
    }
    if version >= 3 {
        s.rack_id = c.nullable_string()?;
    }
    Some(s)
}

/// Decodes an assignment's partitions; `None` if the bytes are not one. Empty bytes are
/// an empty assignment (a member SyncGroup gave nothing).
pub fn decode_assignment(b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut c = Cursor { b, at: 0 };
    if c.i16()? < 0 {
        return None;
    }
    c.topic_partitions()
}

/// Encodes an assignment of `partitions` (by topic name) at `version` (capped at
/// [`NEWEST`]; the member's own subscription version, as Kafka answers).
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version.clamp(0, NEWEST));
    b.put_i32(partitions.len() as i32);
    for (topic, ps) in partitions {
        b.put_i16(topic.len() as i16);
        b.put_slice(topic.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1); // no user data
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn subscription_bytes(version: i16) -> Vec<u8> {
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("bb"),
            ])
            .with_user_data(Some(Bytes::from_static(b"xyz")))
            .with_owned_partitions(vec![TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![0, 2])])
            .with_generation_id(7)
            .with_rack_id(Some(StrBytes::from_static_str("r1")));
        let mut b = BytesMut::new();
        b.put_i16(version);
        s.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    #[test]
    fn reads_every_version_the_java_client_writes() {
        for v in 0..=3 {
            let s = decode_subscription(&subscription_bytes(v)).unwrap();
            assert_eq!(s.version, v);
            assert_eq!(s.topics, ["a", "bb"]);
            if v >= 1 {
                assert_eq!(s.owned, vec![("a".to_string(), vec![0, 2])]);
            } else {
                assert!(s.owned.is_empty());
            }
            assert_eq!(s.rack_id.as_deref(), (v >= 3).then_some("r1"));
        }
    }

    #[test]
    fn assignments_round_trip_through_the_kafka_schema() {
        let parts = vec![("a".to_string(), vec![1, 3]), ("bb".to_string(), vec![0])];
        for v in 0..=3 {
            let b = encode_assignment(v, &parts);
            assert_eq!(decode_assignment(&b).unwrap(), parts);
            let mut body = b.slice(2..);
            let a = ConsumerProtocolAssignment::decode(&mut body, v).unwrap();
            assert_eq!(a.assigned_partitions.len(), 2);
            assert_eq!(a.assigned_partitions[0].partitions, vec![1, 3]);
        }
        assert_eq!(decode_assignment(&[]).unwrap(), vec![]);
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        // A subscription claiming 2^31-1 topics in 6 bytes.
        assert!(decode_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_none());
        // An assignment claiming 2^31-1 partitions of one topic.
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x7f, 0xff, 0xff, 0xff];
        assert!(decode_assignment(&b).is_none());
        b.truncate(3);
        assert!(decode_assignment(&b).is_none());
        assert!(decode_subscription(&[]).is_none());
        assert!(decode_subscription(&[0xff, 0xff]).is_none());
        for cut in 0..subscription_bytes(3).len() {
            let _ = decode_subscription(&subscription_bytes(3)[..cut]);
        }
    }
}
