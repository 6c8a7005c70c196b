//! What a request will cost once decoded, read from its bytes before it is decoded.
//!
//! The `kafka-protocol` decoders turn every array element into a struct of its own
//! (tens to a hundred bytes each, plus a map for tagged fields), so a request's decoded
//! form can be many times its frame. The connection charges a request's memory to its
//! budgets *before* decoding it. For Produce, whose frames are large and whose bytes are
//! nearly all record batches (which decode as zero-copy slices of the frame), the charge
//! is the frame plus a cost per element, counted here by walking the request's fixed
//! schema without allocating. Every other API is charged a fixed multiple of its frame.
//!
//! The walker trusts nothing: lengths are checked against the bytes present, and a
//! request that does not walk cleanly returns `None` (its decode will fail too).

/// Produce's API key.
pub const PRODUCE: i16 = 0;

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// An unsigned varint read exactly as `kafka-protocol` reads one: at most five
    /// bytes (a fifth byte's continuation bit ends it all the same), bits beyond 32
    /// dropped. Reading it any other way would count other fields than the decoder
    /// decodes.
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u32;
        for i in 0..5 {
            let byte = u32::from(*self.take(1)?.first()?);
            v |= (byte & 0x7f) << (i * 7);
            if byte < 0x80 {
                break;
            }
        }
        Some(u64::from(v))
    }

    /// A length or count: `i32` (classic, -1 null) or unsigned varint N+1 (compact, 0 null).
    fn len(&mut self, compact: bool) -> Option<usize> {
        if compact {
            Some(self.uvarint()?.saturating_sub(1) as usize)
        } else {
            Some(self.i32()?.max(0) as usize)
        }
    }

    /// A string or bytes field of either encoding (its length prefix, then the bytes).
    fn skip_bytes(&mut self, compact: bool, short: bool) -> Option<()> {
        let n = if short && !compact {
            self.i16()?.max(0) as usize
        } else {
            self.len(compact)?
        };
        self.skip(n)
    }

    /// A tagged-fields section; returns how many fields it held.
    fn tagged(&mut self) -> Option<usize> {
        let n = self.uvarint()? as usize;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.skip(size)?;
        }
        Some(n)
    }

    /// A count of elements that are each at least `min` bytes: refused if the bytes left
    /// cannot hold them, so no count is ever believed beyond what was sent.
    fn count(&mut self, compact: bool, min: usize) -> Option<usize> {
        let n = self.len(compact)?;
        (n.saturating_mul(min) <= self.b.len() - self.at).then_some(n)
    }
}

/// How many decoded elements a Produce request (header included, as it follows the
/// frame's size prefix) holds: topics, partitions and tagged fields. `None` when the
/// bytes are not a Produce request of a version Shoal accepts (3 to 12), or do not walk.
pub fn produce_elements(frame: &[u8]) -> Option<usize> {
    let mut c = Cursor { b: frame, at: 0 };
    if c.i16()? != PRODUCE {
        return None;
    }
    let version = c.i16()?;
    if !(3..=12).contains(&version) {
        return None;
    }
    let flexible = version >= 9;
    c.skip(4)?; // correlation id
    c.skip_bytes(false, true)?; // client id: a classic nullable string in every header
    let mut elements = 0usize;
    if flexible {
        elements += c.tagged()?;
    }
    c.skip_bytes(flexible, true)?; // transactional id
    c.skip(2 + 4)?; // acks, timeout
                    // A topic is at least a name length and a partition count; a partition at least an
                    // index and a records length.
    let topics = c.count(flexible, 2)?;
    elements += topics;
    for _ in 0..topics {
        c.skip_bytes(flexible, true)?;
        let partitions = c.count(flexible, 5)?;
        elements += partitions;
        for _ in 0..partitions {
            c.skip(4)?;
            c.skip_bytes(flexible, false)?;
            if flexible {
                elements += c.tagged()?;
            }
        }
        if flexible {
            elements += c.tagged()?;
        }
    }
    if flexible {
        elements += c.tagged()?;
    }
    Some(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn encode(req: &ProduceRequest, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(PRODUCE)
            .with_request_api_version(version)
            .with_correlation_id(9)
            .with_client_id(Some(StrBytes::from_static_str("c")))
            .encode(&mut out, ApiKey::Produce.request_header_version(version))
            .unwrap();
        req.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    fn request(topics: usize, partitions: usize) -> ProduceRequest {
        let topic = |t: usize| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                .with_partition_data(
                    (0..partitions)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p as i32)
                                .with_records(Some(Bytes::from(vec![1u8; 30])))
                        })
                        .collect(),
                )
        };
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data((0..topics).map(topic).collect())
    }

    #[test]
    fn counts_topics_and_partitions_in_every_version() {
        for version in 3..=12 {
            let bytes = encode(&request(3, 4), version);
            assert_eq!(produce_elements(&bytes), Some(3 + 3 * 4), "v{version}");
        }
    }

    #[test]
    fn every_truncation_is_refused_and_nothing_panics() {
        for version in [3, 8, 9, 11, 12] {
            let bytes = encode(&request(2, 3), version);
            for cut in 0..bytes.len() {
                assert_eq!(
                    produce_elements(&bytes[..cut]),
                    None,
                    "v{version} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_claimed_count_beyond_the_bytes_is_refused() {
        let mut bytes = encode(&request(1, 0), 8);
        // The topic count sits right after acks and timeout; claim 2^31 - 1 topics.
        let at = bytes.len() - (4 + 2 + 7 + 4); // count, name length, "topic-0", partitions
        bytes[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(produce_elements(&bytes), None);
    }

    #[test]
    fn varints_are_read_as_the_decoder_reads_them() {
        use kafka_protocol::messages::RequestKind;
        // v9: the header's tagged-field count as five bytes, all with the continuation
        // bit: the decoder stops after five and reads the next byte as the next field.
        let mut bytes = encode(&request(1, 2), 9);
        let at = 4 + 4 + 2 + 1; // key, version, correlation id, client id "c"
        assert_eq!(bytes[at], 0, "the header's empty tagged fields");
        bytes.splice(at..at + 1, [0x80, 0x80, 0x80, 0x80, 0x80]);
        let mut body = bytes::Bytes::from(bytes.clone());
        RequestHeader::decode(&mut body, 2).unwrap();
        let decoded = RequestKind::decode(ApiKey::Produce, &mut body, 9);
        assert!(decoded.is_ok(), "the decoder takes it: {decoded:?}");
        assert_eq!(produce_elements(&bytes), Some(1 + 2));
    }

    #[test]
    fn other_apis_and_versions_are_not_walked() {
        let mut bytes = encode(&request(1, 1), 8);
        bytes[1] = 1; // Fetch
        assert_eq!(produce_elements(&bytes), None);
        let mut bytes = encode(&request(1, 1), 8);
        bytes[3] = 12;
        assert_eq!(produce_elements(&bytes), None);
    }
}
