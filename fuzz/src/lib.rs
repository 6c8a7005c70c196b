//! Shared pieces of Shoal's fuzz targets: the process allocator and the input formats.
//!
//! Every target installs the allocator the `shoal` binary installs
//! (`crates/shoal/src/alloc.rs`, re-exported here as [`LazyHuge`]), the same way:
//! `#[global_allocator] static ALLOCATOR: LazyHuge = LazyHuge;`. The `kafka-protocol`
//! decoders reserve `Vec` capacity from counts a client claims; in the binary such
//! reservations become lazily-mapped, never-touched mappings, and the decoder then fails
//! on the short frame. The fuzzers must see the same behaviour, or that known and handled
//! case would be reported as an out-of-memory crash and hide real ones. (Each target
//! names it itself: a `#[global_allocator]` in this library would not be linked into a
//! target that uses nothing else from it.)

#[path = "../../crates/shoal/src/alloc.rs"]
mod alloc;

pub use alloc::LazyHuge;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use shoal_agent::api::SUPPORTED;

/// The frame bound the `request` target splits with (the agent's is configurable; what
/// matters is that the check runs).
pub const FRAME_LIMIT: usize = 1 << 20;

/// First byte of a `request` input that means "the rest is a raw byte stream".
pub const RAW_STREAM: u8 = 0xff;

/// Turns a `request` input into the bytes a client would send.
///
/// `[RAW_STREAM, stream...]`: the stream as is (any number of frames, any API key, any
/// size prefix). Otherwise `[api, version, rest...]`: one frame for the advertised API
/// `SUPPORTED[api % len]` at version `min + version % (max - min + 1)`, whose body is
/// the key, the version and then `rest` (correlation id, the rest of the header, the
/// request). The second form makes every input reach a decoder Shoal actually runs.
pub fn request_stream(data: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    match data {
        [RAW_STREAM, stream @ ..] => out.extend_from_slice(stream),
        [api, version, rest @ ..] => {
            let (key, min, max) = SUPPORTED[*api as usize % SUPPORTED.len()];
            let span = (max - min + 1) as u16;
            let version = min + (u16::from(*version) % span) as i16;
            let mut frame = Vec::with_capacity(4 + rest.len());
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(rest);
            shoal_wire::frame::write_frame(&mut out, &frame);
        }
        _ => {}
    }
    out
}

/// The `request` input that [`request_stream`] turns into one frame for `key` at
/// `version` with `rest` after the version (`None` if Shoal does not advertise it).
pub fn request_input(key: ApiKey, version: i16, rest: &[u8]) -> Option<Vec<u8>> {
    let at = SUPPORTED.iter().position(|(k, _, _)| *k == key)?;
    let (_, min, max) = SUPPORTED[at];
    if !(min..=max).contains(&version) {
        return None;
    }
    let mut input = vec![at as u8, (version - min) as u8];
    input.extend_from_slice(rest);
    Some(input)
}

/// `data` with each batch's CRC32C recomputed (batches as `shoal_wire::batch::walk`
/// finds them), so that mutated inputs get past the checksum to the checks behind it.
pub fn with_batch_crcs(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let ranges: Vec<_> = shoal_wire::batch::walk(data).map(|b| b.range).collect();
    for r in ranges {
        let crc = crc32c::crc32c(&out[r.start + 21..r.end]);
        out[r.start + 17..r.start + 21].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// `object` with its footer's index and data CRCs recomputed where the footer's index
/// location makes sense, so that mutated inputs get past the checksums to the index.
pub fn with_object_crcs(object: &[u8]) -> Vec<u8> {
    let mut out = object.to_vec();
    let footer_len = shoal_object::format::FOOTER_LEN;
    let Some(body_len) = out.len().checked_sub(footer_len) else {
        return out;
    };
    let footer = &out[body_len..];
    let index_offset = u64::from_be_bytes(footer[..8].try_into().expect("8 bytes"));
    let Ok(index_offset) = usize::try_from(index_offset) else {
        return out;
    };
    if index_offset > body_len {
        return out;
    }
    let index_crc = crc32c::crc32c(&out[index_offset..body_len]);
    let data_crc = crc32c::crc32c(&out[..index_offset]);
    out[body_len + 8..body_len + 12]
        .copy_from_slice(&((body_len - index_offset) as u32).to_be_bytes());
    out[body_len + 12..body_len + 16].copy_from_slice(&index_crc.to_be_bytes());
    out[body_len + 16..body_len + 20].copy_from_slice(&data_crc.to_be_bytes());
    out
}
