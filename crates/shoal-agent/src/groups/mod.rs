//! The classic consumer-group coordinator: membership, generations and assignments in
//! memory, committed offsets in the metadata store.
//!
//! Which agent coordinates a group is decided by rendezvous hashing over the live agents
//! ([`coordinator_for`]); with one agent it is always this one. The coordinator keeps no
//! state another agent could not rebuild: if it goes away, members get
//! NOT_COORDINATOR, find the new one and rejoin, and committed offsets are in the store.
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

mod state;

pub use state::{Coordinator, GroupSummary, JoinArgs, JoinOutcome, MemberSummary, SyncOutcome};

/// The agent that coordinates `group` among `agents` (rendezvous hashing: the agent
/// with the highest hash of (agent, group) wins, so adding or removing an agent moves
/// only the groups it wins or owned).
pub fn coordinator_for(group: &str, agents: &[i32]) -> Option<i32> {
    agents
        .iter()
        .copied()
        .max_by_key(|a| fnv1a(format!("{a}/{group}").as_bytes()))
}

/// FNV-1a with a final avalanche (FNV alone mixes its high bits poorly, and the
/// comparison above is decided by them).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_what_it_must() {
        assert_eq!(coordinator_for("g", &[]), None);
        assert_eq!(coordinator_for("g", &[7]), Some(7));
        let agents = [1, 2, 3, 4];
        let groups: Vec<String> = (0..200).map(|i| format!("group-{i}")).collect();
        let before: Vec<_> = groups
            .iter()
            .map(|g| coordinator_for(g, &agents).unwrap())
            .collect();
        // Every agent coordinates some groups.
        for a in agents {
            assert!(before.contains(&a));
        }
        // Removing agent 4 moves only the groups it had.
        for (g, b) in groups.iter().zip(&before) {
            let after = coordinator_for(g, &[1, 2, 3]).unwrap();
            if *b != 4 {
                assert_eq!(after, *b);
            }
        }
    }
}
