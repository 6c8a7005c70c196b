//! Kafka wire pieces that the `kafka-protocol` crate does not cover, with no async runtime.
//!
//! - [`frame`]: length-prefixed framing with a hard size bound, checked before any
//!   allocation for the body.
//! - [`batch`]: a zero-copy view of record batches (magic v2) as clients send them:
//!   structural and CRC32C validation on the way in, base-offset and log-append-time
//!   patching on the way out. Message schemas themselves come from `kafka-protocol`;
//!   this module exists because the write path must look at batch headers without
//!   decoding (or decompressing) the records, which the crate does not offer.
//! - [`records`]: the records inside a batch, streamed (decompressing if need be) and
//!   checked field by field, with nothing allocated from a count a client claims.
//! - [`request`]: what a request will cost once decoded, read from its bytes first.
//! - [`segments`]: answers encoded as slices, so Fetch records are written from cached
//!   chunks without a copy into a response buffer.
//!
//! Nothing here may panic on untrusted input: every accessor checks lengths first.

pub mod batch;
pub mod frame;
pub mod records;
pub mod request;
pub mod retain;
pub mod segments;
