//! The process allocator: the system allocator, except that very large requests are
//! served by lazily-backed anonymous mappings.
//!
//! Why: the `kafka-protocol` decoders reserve `Vec` capacity from the element count a
//! client announces, before checking the frame holds that many elements. A 12-byte
//! request announcing 2^31 topics asks for ~150 GB; the system allocator refuses and
//! Rust aborts the whole agent. Mapping such requests with `MAP_NORESERVE` makes the
//! reservation free (no page is touched), the decoder then fails on the short frame, and
//! the mapping is released: the connection is closed with a log line, nothing else
//! happens. Real memory stays bounded by what the (size-limited) frame can fill.
//!
//! Only requests of at least [`HUGE`] bytes are mapped without reserve; no legitimate
//! allocation in Shoal comes near it (frames and cache chunks are far smaller).
//!
//! Buffers of [`MMAP_MIN`] bytes or more (request frames, objects, fetch responses) are
//! also mapped directly rather than taken from malloc's arenas, and grown with `mremap`.
//! glibc would otherwise raise its mmap threshold after the first few frees and serve
//! such buffers from per-thread arenas that keep the memory after it is freed, so the
//! agent's resident size would track its past peaks instead of what it holds.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations this large or larger are mapped lazily.
const HUGE: usize = 1 << 30;
/// Allocations this large or larger are mapped directly.
const MMAP_MIN: usize = 1 << 20;
const PAGE: usize = 4096;

pub struct LazyHuge;

fn is_mapped(layout: &Layout) -> bool {
    layout.size() >= MMAP_MIN && layout.align() <= PAGE
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from
// an anonymous private mapping of exactly `layout.size()` bytes, page-aligned (so any
// alignment up to a page holds), resized only with `mremap` (which keeps the contents
// and page alignment) and unmapped with the size of the layout it was last given.
unsafe impl GlobalAlloc for LazyHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_mapped(&layout) {
            return System.alloc(layout);
        }
        let noreserve = if layout.size() >= HUGE {
            libc::MAP_NORESERVE
        } else {
            0
        };
        let p = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | noreserve,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_mapped(&layout) {
            // Fresh anonymous mappings are zero-filled.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_mapped(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (is_mapped(&layout), is_mapped(&new_layout)) {
            (false, false) => return System.realloc(ptr, layout, new_size),
            (true, true) if (layout.size() >= HUGE) == (new_size >= HUGE) => {
                let p = libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE);
                return if p == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    p.cast()
                };
            }
            _ => {}
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_reservations_cost_nothing_until_touched() {
        // 64 GiB: far beyond this machine's memory; must not abort.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(1);
        assert_eq!(v[0], 1);
        drop(v);
        let mut small = vec![0u8; 100];
        small.resize(200, 1);
        assert_eq!(small[199], 1);
        // Growing across the mapping threshold and within it keeps the contents.
        let mut grow: Vec<u8> = (0..=255).cycle().take(900_000).collect();
        grow.resize(3 << 20, 7);
        grow.resize(9 << 20, 8);
        assert_eq!(grow[255], 255);
        assert_eq!(grow[(3 << 20) - 1], 7);
        grow.truncate(1000);
        grow.shrink_to_fit();
        assert_eq!(grow[999], (999 % 256) as u8);
    }
}
