//! Placement: the hashes that decide which agent leads a partition, coordinates a group
//! or transactional id, or owns a cached chunk.
//!
//! Every function here is a pure function of its inputs: every agent computes the same
//! answer from the same registry, with no state and no communication. The hashes are
//! fixed functions (FNV-1a and SplitMix64 finalizers), never `std`'s randomly seeded
//! `DefaultHasher`, and they are part of the protocol between agents of different
//! versions: changing one is a compatibility decision, not a refactor.
//!
//! Groups, the peer cache and the cluster view depend on this module, not on each other.
//! It must stay free of I/O: it runs on every request.

use shoal_meta::AgentInfo;

/// The node id of the agent that leads `partition` of the topic `topic_id` among
/// `agents` (rendezvous hashing: the highest score of (partition, agent) wins), or
/// `None` when there are no agents.
pub fn partition_leader(
    agents: &[&AgentInfo],
    topic_id: uuid::Uuid,
    partition: i32,
) -> Option<i32> {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(topic_id.as_bytes());
    key[16..].copy_from_slice(&partition.to_be_bytes());
    let h = fnv1a(&key);
    agents.iter().map(|a| a.node_id).max_by_key(|&id| {
        (
            mix(h ^ (id as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            id,
        )
    })
}

/// The agent that coordinates `group` among `agents` (rendezvous hashing: the agent
/// with the highest hash of (agent, group) wins, so adding or removing an agent moves
/// only the groups it wins or owned).
pub fn coordinator_for(group: &str, agents: &[i32]) -> Option<i32> {
    agents
        .iter()
        .copied()
        .max_by_key(|a| fnv1a(format!("{a}/{group}").as_bytes()))
}

/// The agent that owns chunk `idx` of object `key` among `agents` (rendezvous hashing).
pub fn chunk_owner<'a>(agents: &[&'a AgentInfo], key: &str, idx: u64) -> Option<&'a AgentInfo> {
    agents.iter().copied().max_by_key(|a| {
        let mut bytes = Vec::with_capacity(key.len() + 12);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&idx.to_be_bytes());
        bytes.extend_from_slice(&a.node_id.to_be_bytes());
        (fnv1a(&bytes), a.node_id)
    })
}

/// FNV-1a with a final avalanche (FNV alone mixes its high bits poorly, and the
/// rendezvous comparisons are decided by them).
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

/// The SplitMix64 finalizer: a fixed, well-mixing 64-bit permutation.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(node_id: i32, az: &str) -> AgentInfo {
        AgentInfo {
            node_id,
            host: format!("agent-{node_id}"),
            port: 9092,
            az: az.to_string(),
            group: "g".to_string(),
            roles: vec!["produce".into(), "fetch".into(), "jobs".into()],
            peer_addr: Some(format!("agent-{node_id}:9093")),
        }
    }

    #[test]
    fn leaders_spread_evenly_and_stay_put() {
        let a = [agent(1, ""), agent(2, ""), agent(3, "")];
        let three: Vec<&AgentInfo> = a.iter().collect();
        let two: Vec<&AgentInfo> = a[..2].iter().collect();
        let topics = [uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(0xdead_beef)];
        let mut counts = [0usize; 4];
        for t in topics {
            for p in 0..1500 {
                let leader = partition_leader(&three, t, p).unwrap();
                counts[leader as usize] += 1;
                // Same inputs, same answer.
                assert_eq!(partition_leader(&three, t, p), Some(leader));
                // Agent 3 leaving moves only the partitions it led.
                let after = partition_leader(&two, t, p).unwrap();
                if leader != 3 {
                    assert_eq!(after, leader);
                }
            }
        }
        for (id, n) in counts.iter().enumerate().skip(1) {
            assert!((850..=1150).contains(n), "agent {id} leads {n} of 3000");
        }
        assert_eq!(partition_leader(&[], topics[0], 0), None);
    }

    #[test]
    fn leaders_are_fixed_across_versions() {
        // The hash is part of the protocol between agents of different versions: agents
        // must agree on leaders. Changing it is a compatibility decision, not a refactor.
        let a = [agent(1, ""), agent(2, ""), agent(3, "")];
        let three: Vec<&AgentInfo> = a.iter().collect();
        let t = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let leaders: Vec<i32> = (0..12)
            .map(|p| partition_leader(&three, t, p).unwrap())
            .collect();
        assert_eq!(leaders, LEADERS_FIXTURE);
    }

    const LEADERS_FIXTURE: [i32; 12] = [3, 2, 3, 1, 3, 1, 1, 3, 1, 3, 3, 3];

    #[test]
    fn coordinators_move_only_what_they_must() {
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

    #[test]
    fn chunk_owners_spread_and_only_move_from_a_leaving_agent() {
        let all = [agent(1, "a"), agent(2, "a"), agent(3, "a")];
        let three: Vec<&AgentInfo> = all.iter().collect();
        let mut counts = [0; 4];
        for idx in 0..300 {
            counts[chunk_owner(&three, "data/x", idx).unwrap().node_id as usize] += 1;
        }
        assert!(counts[1..].iter().all(|&c| c > 60), "{counts:?}");
        let two: Vec<&AgentInfo> = all[..2].iter().collect();
        for idx in 0..300 {
            let before = chunk_owner(&three, "data/x", idx).unwrap().node_id;
            let after = chunk_owner(&two, "data/x", idx).unwrap().node_id;
            if before != 3 {
                assert_eq!(before, after, "chunk {idx} moved though its owner stayed");
            }
        }
    }
}
