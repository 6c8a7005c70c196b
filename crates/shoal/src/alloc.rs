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
//! Only requests of at least [`HUGE`] bytes take this path; no legitimate allocation in
//! Shoal comes near it (frames and cache chunks are far smaller).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations this large or larger are mapped lazily.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct LazyHuge;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from
// an anonymous private mapping of at least `layout.size()` bytes, page-aligned (so any
// alignment up to a page holds), and unmapped with the same size.
unsafe impl GlobalAlloc for LazyHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc(layout);
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
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
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
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
    }
}
