//! Request framing and decoding, as a connection does them: `split_frame` with a size
//! bound, then the connection's `decode` (API key and version checked against what
//! ApiVersions advertises, then header and body with `kafka-protocol`). Every advertised
//! API and version is reachable (see `shoal_fuzz::request_stream` for the input format).
//! For Produce, the element count the connection charges memory for
//! (`shoal_wire::request::produce_elements`) must cover what the decoder built.
#![no_main]

use kafka_protocol::messages::{ApiKey, RequestKind};
use libfuzzer_sys::fuzz_target;
use shoal_wire::frame::split_frame;

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fuzz_target!(|data: &[u8]| {
    let mut buf = shoal_fuzz::request_stream(data);
    {
        while let Ok(Some(frame)) = split_frame(&mut buf, shoal_fuzz::FRAME_LIMIT) {
            let prefix = frame.get(..4).map(|b| {
                (
                    i16::from_be_bytes([b[0], b[1]]),
                    i16::from_be_bytes([b[2], b[3]]),
                )
            });
            // What the connection charges a Produce request for its decoded elements.
            let elements = shoal_wire::request::produce_elements(&frame);
            match shoal_agent::fuzzing::decode_request(frame) {
                Ok(Some((header, request))) => {
                    if let RequestKind::Produce(r) = &request {
                        // Every Produce the decoder takes is walked (the connection
                        // refuses one that is not), and its count covers at least the
                        // topics and partitions it decodes to.
                        let decoded = r.topic_data.len()
                            + r.topic_data
                                .iter()
                                .map(|t| t.partition_data.len())
                                .sum::<usize>();
                        assert!(
                            elements.is_some_and(|e| e >= decoded),
                            "{elements:?} < {decoded}"
                        );
                    }
                    // The connection relies on these (`expect("checked in decode")`).
                    assert_eq!(
                        Some((header.request_api_key, header.request_api_version)),
                        prefix
                    );
                    assert!(ApiKey::try_from(header.request_api_key).is_ok());
                }
                Ok(None) => {}
                Err(_) => break, // the connection closes here
            }
        }
    }
});
