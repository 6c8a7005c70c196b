//! Request framing and decoding, as a connection does them: `split_frame` with a size
//! bound, then the connection's `decode` (API key and version checked against what
//! ApiVersions advertises, then header and body with `kafka-protocol`). Every advertised
//! API and version is reachable (see `shoal_fuzz::request_stream` for the input format).
#![no_main]

use std::sync::OnceLock;

use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use shoal_wire::frame::split_frame;

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut buf = shoal_fuzz::request_stream(data);
    // ApiVersions at an unsupported version is answered from a spawned task: decode
    // inside the runtime, which runs such tasks on the next `block_on`.
    runtime().block_on(async {
        while let Ok(Some(frame)) = split_frame(&mut buf, shoal_fuzz::FRAME_LIMIT) {
            let prefix = frame.get(..4).map(|b| {
                (
                    i16::from_be_bytes([b[0], b[1]]),
                    i16::from_be_bytes([b[2], b[3]]),
                )
            });
            match shoal_agent::fuzzing::decode_request(frame) {
                Ok(Some((header, _request))) => {
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
    });
});
