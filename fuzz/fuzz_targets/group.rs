//! The consumer-group embedded protocol: the coordinator's subscription parser
//! (`parse_subscription`, which reads the topics of JoinGroup metadata for static
//! members and OffsetDelete) and the client side's subscription and assignment decoders
//! (`crates/shoal-bench/src/consumer_protocol.rs`, on `kafka-protocol`'s schemas). The
//! two subscription readers must agree on what both accept.
#![no_main]

#[path = "../../crates/shoal-bench/src/consumer_protocol.rs"]
#[allow(dead_code)]
mod consumer_protocol;

use libfuzzer_sys::fuzz_target;

// The `shoal` binary's allocator (see shoal_fuzz).
#[global_allocator]
static ALLOCATOR: shoal_fuzz::LazyHuge = shoal_fuzz::LazyHuge;

fuzz_target!(|data: &[u8]| {
    let coordinator = shoal_agent::fuzzing::parse_subscription(data);
    if let Ok(topics) = consumer_protocol::decode_subscription(data) {
        assert_eq!(
            coordinator,
            Some(topics),
            "both readers see the same topics"
        );
    }
    let _ = consumer_protocol::decode_assignment(data);
});
