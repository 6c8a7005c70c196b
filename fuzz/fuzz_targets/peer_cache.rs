//! The peer-cache protocol (`shoal_agent::peer_cache`), both sides: the serving agent's
//! request reader (version, key length bound, key, object size, chunk index, timestamp,
//! nonce, MAC; the MAC checked with a fixed secret; then the check that the chunk lies in
//! the object) and the asking agent's answer reader (status, length bounded by the object
//! size, body, MAC). The first input byte picks the side.
#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use shoal_agent::fuzzing::{
    peer_chunk_in_object, peer_read_answer, peer_read_request, PEER_FUZZ_SECRET,
};

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fuzz_target!(|data: &[u8]| {
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    if side & 1 == 0 {
        // Serving side. The chunk size is the agent's (any non-zero size).
        if let Ok(((key, size, idx), _verified)) =
            block_on(peer_read_request(rest, Some(PEER_FUZZ_SECRET)))
        {
            assert!(!key.is_empty() && key.len() <= 1024);
            for chunk_size in [1u64, 4 << 20, u64::MAX] {
                if peer_chunk_in_object(idx, chunk_size, size) {
                    assert!(idx
                        .checked_mul(chunk_size)
                        .is_some_and(|start| start < size));
                }
            }
        }
    } else {
        // Asking side: the object size it asked about, then the peer's answer.
        let Some((size, answer)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let size = u64::from_be_bytes(*size);
        if let Ok(chunk) = block_on(peer_read_answer(answer, size)) {
            assert!(chunk.len() as u64 <= size);
            assert!(chunk.len() + 5 + 32 <= answer.len());
        }
    }
});
