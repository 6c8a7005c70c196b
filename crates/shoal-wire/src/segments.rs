//! Answers written as a list of byte slices, so record bytes go from cached object chunks
//! to the socket without being copied into a response buffer.
//!
//! A Fetch answer is mostly record batches that already sit in memory (slices of cached
//! chunks). `kafka-protocol` encodes a message into one contiguous buffer, which would
//! copy every record byte once more. Rather than hand-write the Fetch schema, the records
//! of a partition travel through the message as a *marker*: a 16-byte [`Bytes`] made by
//! [`marker`], whose [`Segments`] wait in a process-wide table until the marker's last
//! clone is dropped. [`SegmentedBuf`] is a `ByteBufMut` that `kafka-protocol` encodes
//! into; when it is handed a marker as a bytes field, it replaces the length prefix just
//! written with the real one and appends the marker's segments by reference. Everything
//! else of the message is encoded by `kafka-protocol` as usual, and the concatenated
//! segments are byte for byte what it would have written for the real records
//! (`segmented_encoding_equals_the_plain_one` checks every Fetch version).
//!
//! A marker can never be mistaken for records: real records are whole v2 batches, at
//! least 61 bytes each, and a marker is 16. A 16-byte field that merely looks like a
//! marker (a topic id, say) is written as it is, because its id is not in the table or
//! the bytes before it are not the length prefix of a 16-byte field.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record bytes as slices, in order; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    parts: Vec<Bytes>,
    len: usize,
}

impl Segments {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a slice (empty ones are skipped).
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push(b);
        }
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The bytes in one piece (a copy unless there is at most one slice).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in parts {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }
}

impl From<Bytes> for Segments {
    fn from(b: Bytes) -> Self {
        let mut s = Segments::new();
        s.push(b);
        s
    }
}

const MARKER_LEN: usize = 16;
/// The first half of every marker. Byte 6 is zero, so no version-4 UUID (topic ids)
/// starts like this.
const MAGIC: [u8; 8] = *b"SHOAL\x01\x00\xfe";

/// Markers alive, by id: what each stands for.
static TABLE: LazyLock<Mutex<HashMap<u64, Arc<Segments>>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn table() -> std::sync::MutexGuard<'static, HashMap<u64, Arc<Segments>>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Owns a marker's bytes; its drop (that of the marker's last clone) frees the entry.
struct Marker {
    bytes: [u8; MARKER_LEN],
    id: u64,
}

impl AsRef<[u8]> for Marker {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        table().remove(&self.id);
    }
}

/// A stand-in for `records` inside a message; [`SegmentedBuf`] writes the segments in
/// its place. Empty records need no marker and get an empty [`Bytes`].
pub fn marker(records: Segments) -> Bytes {
    if records.is_empty() {
        return Bytes::new();
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; MARKER_LEN];
    bytes[..8].copy_from_slice(&MAGIC);
    bytes[8..].copy_from_slice(&id.to_be_bytes());
    table().insert(id, Arc::new(records));
    Bytes::from_owner(Marker { bytes, id })
}

/// What a marker made by [`marker`] stands for, if `b` is one that is still alive.
pub fn resolve(b: &[u8]) -> Option<Arc<Segments>> {
    if b.len() != MARKER_LEN || b[..8] != MAGIC {
        return None;
    }
    let id = u64::from_be_bytes(b[8..].try_into().ok()?);
    table().get(&id).cloned()
}

/// The length of the records a bytes field carries: a marker's segments, or the field.
pub fn records_len(b: &Bytes) -> usize {
    resolve(b).map_or(b.len(), |s| s.len())
}

/// The records a bytes field carries, in one piece (for tests and inspection).
pub fn records_bytes(b: &Bytes) -> Bytes {
    resolve(b).map_or_else(|| b.clone(), |s| s.to_bytes())
}

impl From<BytesMut> for SegmentedBuf {
    /// A message already encoded whole.
    fn from(cur: BytesMut) -> Self {
        SegmentedBuf {
            done: Vec::new(),
            cur,
            done_len: 0,
            markers: false,
            compact: false,
        }
    }
}

/// A `ByteBufMut` collecting an encoded message as slices: small fields in its own
/// buffer, marked records by reference.
pub struct SegmentedBuf {
    done: Vec<Bytes>,
    cur: BytesMut,
    /// Bytes in `done`.
    done_len: usize,
    /// Whether markers are looked for: only Fetch answers carry them.
    markers: bool,
    /// Whether the message's bytes fields are compact (flexible versions: an unsigned
    /// varint of length + 1) rather than prefixed by an `i32` length.
    compact: bool,
}

impl SegmentedBuf {
    /// For a Fetch answer, whose records may be markers; `compact` as the field says.
    pub fn for_fetch(compact: bool) -> Self {
        SegmentedBuf {
            markers: true,
            ..Self::plain()
        }
        .with_compact(compact)
    }

    /// For any other message: everything is written as it is.
    pub fn plain() -> Self {
        SegmentedBuf {
            done: Vec::new(),
            cur: BytesMut::with_capacity(1024),
            done_len: 0,
            markers: false,
            compact: false,
        }
    }

    fn with_compact(mut self, compact: bool) -> Self {
        self.compact = compact;
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message as one Kafka frame: a 4-byte size, then its slices.
    pub fn into_frame(mut self) -> Result<Vec<Bytes>, String> {
        let size = i32::try_from(self.len()).map_err(|_| "answer exceeds 2 GiB".to_string())?;
        let head = Bytes::copy_from_slice(&size.to_be_bytes());
        let mut out = Vec::with_capacity(self.done.len() + 2);
        out.push(head);
        out.append(&mut self.done);
        if !self.cur.is_empty() {
            out.push(self.cur.freeze());
        }
        Ok(out)
    }

    /// Takes the length prefix of a 16-byte bytes field off the end of `cur`, if that is
    /// what the last bytes written are.
    fn take_marker_prefix(&mut self) -> bool {
        let prefix: &[u8] = if self.compact {
            &[MARKER_LEN as u8 + 1]
        } else {
            &[0, 0, 0, MARKER_LEN as u8]
        };
        if !self.cur.ends_with(prefix) {
            return false;
        }
        self.cur.truncate(self.cur.len() - prefix.len());
        true
    }

    fn put_records(&mut self, records: &Segments) {
        let n = records.len();
        if self.compact {
            let mut v = n as u64 + 1;
            while v >= 0x80 {
                self.cur.put_u8((v as u8) | 0x80);
                v >>= 7;
            }
            self.cur.put_u8(v as u8);
        } else {
            self.cur.put_i32(n as i32);
        }
        if !self.cur.is_empty() {
            let head = self.cur.split().freeze();
            self.done_len += head.len();
            self.done.push(head);
        }
        for p in records.parts() {
            self.done_len += p.len();
            self.done.push(p.clone());
        }
    }
}

// `kafka-protocol` encodes into a `ByteBufMut`, which must be a `BufMut`: an unsafe
// trait, so this is the crate's one unsafe item.
// SAFETY: every method forwards to the `BytesMut` being written, which upholds
// `BufMut`'s contract; `put_slice` only adds a check before forwarding or appending.
#[allow(unsafe_code)]
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    #[allow(unsafe_code)]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise about `cnt` is about `cur`'s chunk.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(records) = resolve(src).filter(|_| self.markers) {
            let fits = records.len() <= i32::MAX as usize;
            if fits && self.take_marker_prefix() {
                self.put_records(&records);
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    /// Only within the bytes not yet handed over as slices (no generated message seeks).
    fn seek(&mut self, offset: usize) {
        let at = offset
            .checked_sub(self.done_len)
            .expect("SegmentedBuf cannot seek into written slices");
        self.cur.resize(at, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let base = self.done_len;
        &mut self.cur[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, ProducerId, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// A response in `version` with records of several slices in two partitions, an
    /// empty one, a partition without records, and (v13+) a 16-byte topic id that
    /// starts like a marker.
    fn response(version: i16, records: impl Fn(usize) -> Bytes) -> FetchResponse {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&MAGIC);
        let part = |i: i32, r: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(100 + i as i64)
                .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                    .with_producer_id(ProducerId(7))
                    .with_first_offset(3)]))
                .with_records(r)
        };
        FetchResponse::default()
            .with_session_id(if version >= 7 { 9 } else { 0 })
            .with_responses(vec![FetchableTopicResponse::default()
                .with_topic(if version < 13 {
                    TopicName(StrBytes::from_static_str("t"))
                } else {
                    TopicName::default()
                })
                .with_topic_id(if version >= 13 {
                    uuid::Uuid::from_bytes(id)
                } else {
                    uuid::Uuid::nil()
                })
                .with_partitions(vec![
                    part(0, Some(records(0))),
                    part(1, Some(Bytes::new())),
                    part(2, None),
                    part(3, Some(records(1))),
                ])])
    }

    fn pieces(i: usize) -> Segments {
        let mut s = Segments::new();
        // Large enough that a compact length takes three varint bytes.
        s.push(Bytes::from(vec![b'a' + i as u8; 20_000]));
        s.push(Bytes::from_static(b"12345678"));
        s.push(Bytes::from(vec![b'z'; 300 + i]));
        s
    }

    #[test]
    fn segmented_encoding_equals_the_plain_one() {
        for version in 4..=16 {
            let mut plain = BytesMut::new();
            response(version, |i| pieces(i).to_bytes())
                .encode(&mut plain, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            let marked = response(version, |i| marker(pieces(i)));
            let mut seg = SegmentedBuf::for_fetch(version >= 12);
            marked.encode(&mut seg, version).unwrap();
            let frame = seg.into_frame().unwrap();
            let joined: Vec<u8> = frame.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(&joined[..4], &(plain.len() as i32).to_be_bytes());
            assert_eq!(&joined[4..], &plain[..], "Fetch v{version}");
            assert!(frame.len() > 4, "records went by reference");
        }
    }

    #[test]
    fn markers_resolve_until_dropped_and_report_their_length() {
        let m = marker(pieces(0));
        let copy = m.clone();
        assert_eq!(records_len(&m), 20_308);
        assert_eq!(records_bytes(&m), pieces(0).to_bytes());
        let raw = m.to_vec();
        drop(m);
        assert!(resolve(&copy).is_some(), "a clone keeps it alive");
        drop(copy);
        assert!(resolve(&raw).is_none(), "the last drop frees the entry");
        assert_eq!(marker(Segments::new()), Bytes::new());
        let plain = Bytes::from_static(b"not a marker");
        assert_eq!(records_len(&plain), plain.len());
    }

    #[test]
    fn a_dropped_marker_is_written_as_plain_bytes() {
        let m = marker(pieces(1));
        let raw = m.to_vec();
        drop(m);
        let mut seg = SegmentedBuf::for_fetch(false);
        seg.put_i32(16);
        seg.put_slice(&raw);
        let frame = seg.into_frame().unwrap();
        assert_eq!(frame.len(), 2);
        assert_eq!(&frame[1][4..], &raw[..]);
    }
}
