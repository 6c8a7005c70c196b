//! The records inside one batch: `shoal_wire::records::for_each_record` (and
//! `check_records`, the produce-side check) over arbitrary batch bytes, with a small
//! decompression limit so inflation bombs are cut off quickly. The fields handed out
//! must agree with the bytes: a record's key and value fit in the batch's limit.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use shoal_wire::records::{check_records, for_each_record, Limits};

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

const LIMITS: Limits = Limits {
    max_uncompressed: 256 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let checked = check_records(data, LIMITS);
    let mut seen = 0i32;
    let walked = for_each_record(data, LIMITS, |index, r| {
        assert_eq!(index, seen, "records are handed out in order");
        assert_eq!(r.offset_delta, index);
        assert!(r.key_len >= -1 && r.value_len >= -1 && r.headers >= 0);
        assert!(
            i64::from(r.key_len) + i64::from(r.value_len)
                <= LIMITS.max_uncompressed as i64 + data.len() as i64
        );
        seen += 1;
        Ok(ControlFlow::Continue(()))
    });
    assert_eq!(
        checked, walked,
        "check_records is for_each_record doing nothing"
    );
    // Stopping early never reads further than the first record.
    let _ = for_each_record(data, LIMITS, |_, _| Ok(ControlFlow::Break(())));
});
