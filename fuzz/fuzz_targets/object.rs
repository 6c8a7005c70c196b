//! The object reader (`shoal_object::format`): footer and index (`read_index_only`),
//! the whole-object check (`read`, adding the data CRC), and reading segments out of an
//! object as the read path and compaction do (the segment's byte range, then the
//! batches in it with `shoal_wire::batch::walk`). Whatever the index accepts must lie
//! inside the object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_object::ObjectIndex;
use shoal_wire::batch::walk;

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with the footer's checksums (and index length) made right reach
    // the index parsing and the segments behind them.
    check(&shoal_fuzz::with_object_crcs(data));
});

fn check(data: &[u8]) {
    let full = ObjectIndex::read(data);
    let index = match ObjectIndex::read_index_only(data) {
        Ok(index) => index,
        Err(e) => {
            assert_eq!(full, Err(e), "read fails where read_index_only does");
            return;
        }
    };
    if let Ok(full) = &full {
        assert_eq!(full, &index);
    }
    assert!(index.data_len <= data.len() as u64);
    for s in &index.segments {
        let end = s.data_offset + s.data_len;
        assert!(end <= index.data_len, "segment inside the data region");
        let segment = &data[s.data_offset as usize..end as usize];
        let mut span = 0i64;
        for b in walk(segment) {
            assert!(b.range.end <= segment.len());
            span = span.saturating_add(b.header.offset_span());
        }
        let _ = span;
    }
}
