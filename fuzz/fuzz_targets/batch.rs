//! The batch header view (`shoal_wire::batch`): `BatchHeader::parse`,
//! `validate_batches` (the produce path: lengths, magic, CRC32C, counts, uncompressed
//! record framing), `walk` (the read path over stored data) and the in-place patches
//! (`set_base_offset`, `set_log_append_time`) on what they accept. Accepted batches
//! must tile the input and survive patching with their CRC intact; transaction markers
//! Shoal builds (`control_batch`) must pass its own validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_wire::batch::{
    add_sequence, control_batch, read_varint, set_base_offset, set_log_append_time,
    validate_batches, walk, BatchHeader, HEADER_LEN,
};

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fuzz_target!(|data: &[u8]| {
    // Batches Shoal writes itself (transaction markers) pass its own validation.
    if let Some(f) = data.get(..23) {
        let i64_at = |at: usize| i64::from_be_bytes(f[at..at + 8].try_into().unwrap());
        let marker = control_batch(
            i64_at(0),
            i16::from_be_bytes([f[8], f[9]]),
            f[10] & 1 == 1,
            i32::from_be_bytes(f[11..15].try_into().unwrap()),
            i64_at(15),
        );
        let infos = validate_batches(&marker).expect("a marker is a valid batch");
        assert!(infos.len() == 1 && infos[0].header.is_control());
        let seq = i32::from_be_bytes(f[..4].try_into().unwrap());
        let delta = i32::from_be_bytes(f[4..8].try_into().unwrap());
        let _ = add_sequence(seq, delta);
    }
    if let Ok(h) = BatchHeader::parse(data) {
        let _ = (
            h.total_len(),
            h.offset_span(),
            h.compression(),
            h.is_control(),
        );
    }
    let _ = read_varint(data);
    check(data);
    // The same bytes with every batch's CRC made right reach the checks behind the CRC.
    check(&shoal_fuzz::with_batch_crcs(data));
});

fn check(data: &[u8]) {
    let mut end = 0;
    for b in walk(data) {
        assert_eq!(b.range.start, end, "walk hands out adjacent batches");
        assert!(b.range.end <= data.len() && b.range.len() >= HEADER_LEN);
        end = b.range.end;
    }
    if let Ok(batches) = validate_batches(data) {
        let mut copy = data.to_vec();
        let mut at = 0;
        for b in &batches {
            assert_eq!(b.range.start, at, "validated batches tile the input");
            at = b.range.end;
            let batch = &mut copy[b.range.clone()];
            // The base offset is outside the CRC; log-append time updates it.
            set_base_offset(batch, 42);
            set_log_append_time(batch, 1_700_000_000_000);
        }
        assert_eq!(at, data.len());
        let again = validate_batches(&copy).expect("patched batches stay valid");
        assert_eq!(again.len(), batches.len());
        // What the produce path accepts, the read path walks the same way.
        let walked: Vec<_> = walk(data).map(|b| b.range).collect();
        let validated: Vec<_> = batches.iter().map(|b| b.range.clone()).collect();
        assert_eq!(walked, validated);
    }
}
