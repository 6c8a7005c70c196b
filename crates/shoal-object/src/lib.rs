//! Shoal's object file format and the in-memory chunk cache that sits in front of it.
//!
//! An object is written once per flush by one agent and never modified. It holds the
//! record batches of many partitions, grouped so each partition's batches are one
//! contiguous byte range (a *segment*), followed by an index of those segments and a
//! fixed-size footer. See [`format`] for the exact layout.
//!
//! Offsets are not in the object: the metadata commit assigns them and the read path
//! patches each batch's `baseOffset` on the way out. The object's own index exists so
//! that compaction, GC and operators can understand an object without the metadata
//! store.
//!
//! With the `testkit` feature, the `testkit` module has a faulty object store for tests;
//! with `latency`, the `latency` module has a store wrapper that adds S3-like latency
//! for benchmarks.

pub mod cache;
pub mod format;
#[cfg(any(test, feature = "latency"))]
pub mod latency;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use cache::ChunkCache;
pub use format::{ObjectBuilder, ObjectError, ObjectIndex, SegmentInfo};
