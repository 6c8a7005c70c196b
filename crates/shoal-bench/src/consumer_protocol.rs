//! The "consumer" embedded protocol of classic consumer groups, and the range assignor.
//!
//! The group coordinator never looks inside JoinGroup metadata or SyncGroup assignments;
//! consumers agree among themselves on their format. Members send a *subscription*
//! (`version: i16`, then the topics they want, then opaque user data) and the leader hands
//! back one *assignment* per member (`version: i16`, then `(topic, [partition])` pairs,
//! then user data, null here). The bodies are the `kafka-protocol` crate's
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`; this module only adds the
//! version prefix, which those schemas leave to the caller. We write version 0 (what the
//! range assignor needs) and read any version, decoding newer ones with the newest schema
//! we know, as Kafka's own `ConsumerProtocol` does: later versions only append fields.
//!
//! [`range_assign`] is Kafka's `RangeAssignor`: for each topic, members subscribed to it
//! sorted by member id, and each takes a contiguous run of partitions, the first
//! `partitions % members` of them one more than the rest. Pure functions, no I/O.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The JoinGroup protocol type of consumers.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The one assignment strategy our members offer.
pub const RANGE: &str = "range";
/// The version we write for both messages.
const WRITE_VERSION: i16 = 0;

/// Subscription metadata for JoinGroup: these topics, no user data.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let body = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&body)
}

/// The topics a member's JoinGroup metadata subscribes to.
pub fn decode_subscription(metadata: &[u8]) -> Result<Vec<String>> {
    let body: ConsumerProtocolSubscription =
        decode_versioned(metadata).context("decode a consumer subscription")?;
    Ok(body.topics.iter().map(|t| t.to_string()).collect())
}

/// An assignment for SyncGroup: `(topic, partitions)` pairs, null user data.
pub fn encode_assignment(assignment: &[(String, Vec<i32>)]) -> Result<Bytes> {
    let body = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    encode_versioned(&body)
}

/// The `(topic, partitions)` pairs of a SyncGroup answer. Empty bytes mean "nothing
/// assigned" (a leader may send no assignment for a member at all).
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body: ConsumerProtocolAssignment =
        decode_versioned(bytes).context("decode a consumer assignment")?;
    Ok(body
        .assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions))
        .collect())
}

fn encode_versioned<M: Encodable>(body: &M) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(2 + body.compute_size(WRITE_VERSION)?);
    buf.put_i16(WRITE_VERSION);
    body.encode(&mut buf, WRITE_VERSION)?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable + Message>(bytes: &[u8]) -> Result<M> {
    let mut buf = bytes;
    if buf.remaining() < 2 {
        bail!("{} bytes are too short for a version", bytes.len());
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("negative version {version}");
    }
    M::decode(&mut buf, version.min(M::VERSIONS.max))
}

/// Kafka's range assignment. `subscriptions` holds (member id, topics); `partitions`
/// holds each known topic's partition count (topics it does not name are skipped). Every
/// member gets an entry, possibly empty; partitions are listed in ascending order.
pub fn range_assign(
    subscriptions: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, Vec<i32>)>> {
    let mut out: BTreeMap<String, Vec<(String, Vec<i32>)>> = subscriptions
        .iter()
        .map(|(member, _)| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        members.sort();
        members.dedup();
        let n = members.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        for (i, member) in members.into_iter().enumerate() {
            let i = i as i32;
            let start = i * per_member + i.min(extra);
            let len = per_member + i32::from(i < extra);
            if len > 0 {
                out.get_mut(member)
                    .expect("every subscriber has an entry")
                    .push((topic.clone(), (start..start + len).collect()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subscription_bytes_are_kafkas() {
        let bytes = encode_subscription(&strings(&["ab"])).unwrap();
        // version 0 | topics: [len 1 | "ab"] | user data: null
        assert_eq!(
            bytes.as_ref(),
            &[0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(decode_subscription(&bytes).unwrap(), strings(&["ab"]));
    }

    #[test]
    fn newer_subscriptions_decode() {
        // A Java client's v3 subscription: topics, user data, owned partitions,
        // generation, rack; plus a field from a future version that we ignore.
        let mut body = BytesMut::new();
        body.put_i16(4);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(7)
            .with_rack_id(Some(StrBytes::from_static_str("r1")))
            .encode(&mut body, 3)
            .unwrap();
        body.put_i32(99);
        assert_eq!(decode_subscription(&body).unwrap(), strings(&["t"]));
        assert!(decode_subscription(&[0]).is_err());
        assert!(decode_subscription(&[0xff, 0xff]).is_err());
        assert!(decode_subscription(&[0, 0, 0, 0, 0, 5]).is_err());
    }

    #[test]
    fn assignment_bytes_are_kafkas() {
        let assignment = vec![("t".to_string(), vec![0, 2])];
        let bytes = encode_assignment(&assignment).unwrap();
        // version 0 | [len 1 | topic "t" | partitions [len 2 | 0 | 2]] | user data: null
        assert_eq!(
            bytes.as_ref(),
            &[
                0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff,
                0xff
            ]
        );
        assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
        assert_eq!(decode_assignment(&[]).unwrap(), Vec::new());
        let none = encode_assignment(&[]).unwrap();
        assert_eq!(decode_assignment(&none).unwrap(), Vec::new());
        assert!(decode_assignment(&bytes[..10]).is_err());
    }

    #[test]
    fn range_gives_the_first_members_one_more() {
        let subs = vec![
            ("m-c".to_string(), strings(&["t"])),
            ("m-a".to_string(), strings(&["t"])),
            ("m-b".to_string(), strings(&["t"])),
        ];
        let counts = BTreeMap::from([("t".to_string(), 8)]);
        let got = range_assign(&subs, &counts);
        let parts = |m: &str| got[m][0].1.clone();
        assert_eq!(parts("m-a"), vec![0, 1, 2]);
        assert_eq!(parts("m-b"), vec![3, 4, 5]);
        assert_eq!(parts("m-c"), vec![6, 7]);
    }

    #[test]
    fn range_with_more_members_than_partitions_and_other_topics() {
        let subs = vec![
            ("a".to_string(), strings(&["t", "u"])),
            ("b".to_string(), strings(&["t"])),
            ("c".to_string(), strings(&["t", "unknown"])),
        ];
        let counts = BTreeMap::from([("t".to_string(), 2), ("u".to_string(), 3)]);
        let got = range_assign(&subs, &counts);
        assert_eq!(
            got["a"],
            vec![("t".to_string(), vec![0]), ("u".to_string(), vec![0, 1, 2])]
        );
        assert_eq!(got["b"], vec![("t".to_string(), vec![1])]);
        assert_eq!(got["c"], Vec::new());
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn range_covers_every_partition_once() {
        for members in 1..=7usize {
            for count in 0..=20i32 {
                let subs: Vec<(String, Vec<String>)> = (0..members)
                    .map(|m| (format!("member-{m:02}"), strings(&["t"])))
                    .collect();
                let got = range_assign(&subs, &BTreeMap::from([("t".to_string(), count)]));
                let mut all: Vec<i32> = got
                    .values()
                    .flat_map(|a| a.iter().flat_map(|(_, p)| p.clone()))
                    .collect();
                all.sort();
                assert_eq!(all, (0..count).collect::<Vec<_>>(), "{members} members");
                let sizes: Vec<usize> = got
                    .values()
                    .map(|a| a.iter().map(|(_, p)| p.len()).sum())
                    .collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
            }
        }
    }
}
