//! The classic consumer-group coordinator: membership, generations and assignments in
//! memory, committed offsets in the metadata store.
//!
//! Which agent coordinates a group is decided by rendezvous hashing over the live agents
//! ([`coordinator_for`](crate::cluster::placement::coordinator_for)); with one agent it
//! is always this one. The coordinator keeps no state another agent could not rebuild:
//! if it goes away, members get NOT_COORDINATOR, find the new one and rejoin, and
//! committed offsets are in the store.
//! An agent that stops coordinating a group while running (another agent joined and
//! won it) drops the group's state ([`Coordinator::release`]).
//!
//! Protocol in brief (KIP-62, KIP-345, KIP-394):
//! - JoinGroup puts the group in `PreparingRebalance`; the join completes when every
//!   known member has rejoined or the rebalance timeout passes (members that did not
//!   rejoin are dropped). The generation is bumped, a protocol all members support is
//!   chosen, and the leader receives every member's metadata.
//! - SyncGroup from the leader carries the assignments; followers wait for it.
//! - Heartbeats keep members alive; a member silent for its session timeout is removed
//!   and the group rebalances. Static members (`group.instance.id`) keep their place
//!   across restarts; a new member id for the same instance fences the old one.
//!
//! The broker never looks inside assignments, so any client-side assignor works (range,
//! round-robin, sticky, cooperative-sticky). A `tick` task drives timeouts.
//!
//! Groups of the consumer protocol (KIP-848, `group.protocol=consumer`), where the
//! coordinator assigns partitions itself, are in [`consumer`]. A running classic group
//! of consumers is upgraded to one when a consumer-protocol member joins it, keeps its
//! classic members, and goes back to a classic group when the last consumer-protocol
//! member leaves (`consumer_classic.rs`).

pub mod configs;
pub mod consumer;
mod embedded;
mod state;

pub(crate) use state::parse_subscription;
pub use state::{Coordinator, GroupSummary, JoinArgs, JoinOutcome, MemberSummary, SyncOutcome};

/// Which member a LeaveGroup entry names, in a group of either kind: by instance id
/// (its current member, if the entry's member id is empty or matches, else
/// FENCED_INSTANCE_ID; UNKNOWN_MEMBER_ID if no member has it), else by member id.
fn leaving_member(
    static_ids: &std::collections::HashMap<String, String>,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<String, i16> {
    use kafka_protocol::ResponseError;
    match instance_id {
        Some(inst) => match static_ids.get(inst) {
            Some(current) if member_id.is_empty() || current == member_id => Ok(current.clone()),
            Some(_) => Err(ResponseError::FencedInstanceId.code()),
            None => Err(ResponseError::UnknownMemberId.code()),
        },
        None => Ok(member_id.to_string()),
    }
}
