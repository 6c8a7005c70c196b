//! Admin commands that talk to a running agent over the Kafka protocol, like Kafka's
//! own CLI tools: `shoal groups list` and `shoal groups describe GROUP` (committed
//! offsets, end offsets and lag per partition, and which member owns each partition).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest,
    OffsetFetchRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// A blocking connection to one agent.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn open(bootstrap: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(bootstrap).with_context(|| {
            format!("connect to {bootstrap} (is Shoal running there? set --bootstrap)")
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            stream,
            correlation: 0,
        })
    }

    fn call<R: Request>(&mut self, req: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("shoal-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("read the response size")?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 << 20).contains(&len) {
            bail!("implausible response size {len}");
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .context("read the response")?;
        let mut bytes = bytes::Bytes::from(buf);
        let h = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))?;
        if h.correlation_id != self.correlation {
            bail!(
                "response for request {} arrived for {}",
                h.correlation_id,
                self.correlation
            );
        }
        let resp = R::Response::decode(&mut bytes, version)?;
        Ok(resp)
    }
}

/// Prints every group with its state.
pub fn list_groups(bootstrap: &str) -> anyhow::Result<()> {
    let mut c = Conn::open(bootstrap)?;
    let r = c.call(&ListGroupsRequest::default(), 4)?;
    if r.error_code != 0 {
        bail!("ListGroups failed with error code {}", r.error_code);
    }
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for g in r.groups {
        println!(
            "{:<40} {:<20} {}",
            g.group_id.0.as_str(),
            g.group_state.as_str(),
            g.protocol_type.as_str()
        );
    }
    Ok(())
}

/// Topic → partitions in a consumer-protocol assignment (version, [topic, [partition]]).
fn parse_assignment(mut b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    take(&mut b, 2)?;
    let topics = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..topics.clamp(0, 100_000) {
        let len = i16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
        let name = String::from_utf8_lossy(take(&mut b, usize::try_from(len).ok()?)?).into_owned();
        let n = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        let mut parts = Vec::new();
        for _ in 0..n.clamp(0, 1_000_000) {
            parts.push(i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?));
        }
        out.push((name, parts));
    }
    Some(out)
}

/// Prints a group's state, members, and per-partition committed offset, end offset and lag.
pub fn describe_group(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let mut c = Conn::open(bootstrap)?;
    let d = c.call(
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
        5,
    )?;
    let Some(desc) = d.groups.first() else {
        bail!("no answer for group {group}")
    };
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &desc.members {
        for (topic, parts) in parse_assignment(&m.member_assignment).unwrap_or_default() {
            for p in parts {
                owner.insert((topic.clone(), p), m.member_id.as_str().to_string());
            }
        }
    }
    let f = c.call(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(None)]),
        8,
    )?;
    let fg = f.groups.first().context("no offsets answer")?;
    if fg.error_code != 0 {
        bail!("OffsetFetch failed with error code {}", fg.error_code);
    }
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in &fg.topics {
        for p in &t.partitions {
            committed.insert(
                (t.name.0.as_str().to_string(), p.partition_index),
                p.committed_offset,
            );
        }
    }
    for key in owner.keys() {
        committed.entry(key.clone()).or_insert(-1);
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in committed.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let lo = c.call(
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        5,
    )?;
    let mut end: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in lo.topics {
        for p in t.partitions {
            end.insert(
                (t.name.0.as_str().to_string(), p.partition_index),
                if p.error_code == 0 { p.offset } else { -1 },
            );
        }
    }
    println!(
        "group {group}: state {}, protocol {}, {} member(s)",
        desc.group_state.as_str(),
        if desc.protocol_data.is_empty() {
            "-"
        } else {
            desc.protocol_data.as_str()
        },
        desc.members.len()
    );
    println!(
        "{:<30} {:>9} {:>14} {:>14} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    let mut total = 0i64;
    for ((topic, p), off) in &committed {
        let e = end.get(&(topic.clone(), *p)).copied().unwrap_or(-1);
        let lag = if e >= 0 { e - (*off).max(0) } else { 0 };
        total += lag.max(0);
        let show = |v: i64| {
            if v < 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        println!(
            "{:<30} {:>9} {:>14} {:>14} {:>10}  {}",
            topic,
            p,
            show(*off),
            show(e),
            lag,
            owner
                .get(&(topic.clone(), *p))
                .map(String::as_str)
                .unwrap_or("-")
        );
    }
    println!("total lag {total}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_assignments() {
        // v0, one topic "t" with partitions 1 and 3, empty user data.
        let b = [
            0u8, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 255, 255, 255, 255,
        ];
        assert_eq!(
            parse_assignment(&b).unwrap(),
            vec![("t".to_string(), vec![1, 3])]
        );
        assert!(parse_assignment(&[0, 0, 0, 0, 0, 5]).is_none());
    }
}
