//! The agent's view of the cluster: which agents a client is shown, which of them
//! "leads" a partition, and which agent coordinates a consumer group or transactional id.
//!
//! Everything here is computed from the metadata store's registry of live agents
//! ([`MetaStore::live_agents`], kept current by the backend) and this agent's own
//! registration; nothing is stored. When the registry is empty (the SQLite backend, the
//! playground) the agent is alone and every answer is "this agent", exactly as before
//! cluster mode. Every agent computes the same answers from the same registry, because
//! the hashes ([`placement`]) are fixed functions (never `std`'s randomly seeded
//! `DefaultHasher`).
//!
//! - **Agents a client sees** ([`ClusterView::for_client`]): the live agents of this
//!   agent's agent group that serve clients (have `produce` or `fetch`; jobs-only agents
//!   are left out unless the group has nothing else). If the client names its zone in
//!   its `client.id` (`shoal_az=ZONE`) and some of those agents are in that zone, only
//!   those; otherwise all of them. Always sorted by node id.
//! - **Partition leaders** ([`placement::partition_leaders`]): bounded-load rendezvous
//!   hashing of a topic's partitions over the client's agents, so each agent leads
//!   ⌊N/M⌋ or ⌈N/M⌉ of the N partitions, and an agent leaving or joining moves little
//!   more than its share. Any agent can serve any partition; the leader only spreads
//!   load and keeps a client in its zone.
//! - **Coordinator** ([`ClusterView::coordinator`]): [`coordinator_for`] over *all* live
//!   agents of the agent group, not filtered by zone or role, so every client of the
//!   group finds the same coordinator whichever agent it asks.
//!
//! A coordinator must also be *this run* of the agent: with a registry, this agent
//! coordinates only while its standing is live ([`Standing::Live`]: its lease is certain
//! to be alive) and the registry shows its node id held by its own incarnation. An agent
//! whose lease lapsed, or whose id another agent took meanwhile, coordinates nothing,
//! whatever its last view says; and the store fences its writes anyway ([`roles`]).
//!
//! - **Departed agents** ([`Departures`]): an agent that drops out of the registry (its
//!   lease lapsed: cut off from the store, paused, killed) is still listed as a broker,
//!   leading nothing, for `--departed-agent-grace`. Clients decommission a broker that
//!   vanishes from Metadata and librdkafka then reports the produce requests still in
//!   flight there as *not persisted*, so an idempotent producer resends them under a
//!   new epoch; but the departed agent may still commit them (a commit needs no lease),
//!   and the records would be written twice. Listed, the broker keeps its connection and
//!   the client waits for the real answers of those requests before it moves on.
//!
//! This module must not call the metadata store over the network: it runs on every
//! request, and `live_agents` is a cached snapshot.

pub mod placement;
pub mod roles;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shoal_meta::{AgentInfo, Standing};
use tokio::time::Instant;

use crate::Shared;
use placement::coordinator_for;

/// What a client puts in its `client.id` to name its availability zone.
const ZONE_KEY: &str = "shoal_az=";

/// The live agents of this agent's group, as seen at one moment.
#[derive(Debug, Clone)]
pub struct ClusterView {
    me: i32,
    /// Live agents of this agent's group, sorted by node id, never empty.
    group: Vec<AgentInfo>,
    /// Whether this agent may coordinate anything at all (see the module doc).
    acting: bool,
}

impl ClusterView {
    /// The view from `me` given the registry's live agents (empty: no registry).
    /// If the registry shows no agent of `me`'s group (it has not caught up with this
    /// agent's registration yet), the group is `me` alone.
    pub fn new(me: &AgentInfo, live: Vec<AgentInfo>) -> ClusterView {
        let mut group: Vec<AgentInfo> = live.into_iter().filter(|a| a.group == me.group).collect();
        group.sort_by_key(|a| a.node_id);
        group.dedup_by_key(|a| a.node_id);
        if group.is_empty() {
            group.push(me.clone());
        }
        ClusterView {
            me: me.node_id,
            group,
            acting: true,
        }
    }

    /// The view from `me` with its standing in the registry: with a registry, `me`
    /// acts only while live and listed under its own incarnation.
    pub fn with_standing(me: &AgentInfo, live: Vec<AgentInfo>, standing: Standing) -> ClusterView {
        let mut view = ClusterView::new(me, live);
        view.acting = match standing {
            Standing::Alone => true,
            Standing::Lapsed => false,
            Standing::Live {
                node_id,
                incarnation,
            } => view
                .group
                .iter()
                .any(|a| a.node_id == node_id && a.incarnation == incarnation),
        };
        view
    }

    /// The current view of a running agent.
    pub fn of(shared: &Shared) -> ClusterView {
        ClusterView::with_standing(
            &shared.me,
            shared.meta.live_agents(),
            shared.meta.standing(),
        )
    }

    /// The live agents of this agent's group, by node id.
    pub fn group(&self) -> &[AgentInfo] {
        &self.group
    }

    /// The agents a client with this `client.id` should use, by node id; never empty.
    pub fn for_client(&self, client_id: Option<&str>) -> Vec<&AgentInfo> {
        let serving: Vec<&AgentInfo> = self.group.iter().filter(|a| serves_clients(a)).collect();
        let candidates = if serving.is_empty() {
            self.group.iter().collect()
        } else {
            serving
        };
        let Some(zone) = client_id.and_then(client_zone) else {
            return candidates;
        };
        let local: Vec<&AgentInfo> = candidates
            .iter()
            .copied()
            .filter(|a| a.az == zone)
            .collect();
        if local.is_empty() {
            candidates
        } else {
            local
        }
    }

    /// The agent that coordinates the group or transactional id `key`.
    pub fn coordinator(&self, key: &str) -> Option<&AgentInfo> {
        let ids: Vec<i32> = self.group.iter().map(|a| a.node_id).collect();
        let id = coordinator_for(key, &ids)?;
        self.group.iter().find(|a| a.node_id == id)
    }

    /// Whether this agent coordinates `key`.
    pub fn coordinates(&self, key: &str) -> bool {
        self.acting && self.coordinator(key).is_some_and(|a| a.node_id == self.me)
    }
}

/// Whether this agent coordinates the group or transactional id `key` right now.
/// Requests for keys it does not coordinate are answered NOT_COORDINATOR.
pub fn coordinates(shared: &Shared, key: &str) -> bool {
    ClusterView::of(shared).coordinates(key)
}

/// When each agent of this agent's group was last seen live, for listing departed agents
/// (see the module doc). Updated by every Metadata and DescribeCluster request.
#[derive(Debug, Default)]
pub struct Departures {
    seen: Mutex<HashMap<i32, (AgentInfo, Instant)>>,
}

impl Departures {
    /// The brokers a client is shown: `shown` (its live agents, from
    /// [`ClusterView::for_client`]) and, for `grace` after they were last seen live,
    /// departed agents that would have been shown to it; by node id. A node id that is
    /// live again is listed once, as the registry has it now.
    pub fn brokers(
        &self,
        view: &ClusterView,
        shown: &[&AgentInfo],
        client_id: Option<&str>,
        grace: Duration,
    ) -> Vec<AgentInfo> {
        let now = Instant::now();
        let mut out: Vec<AgentInfo> = shown.iter().map(|a| (*a).clone()).collect();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for a in view.group() {
            seen.insert(a.node_id, (a.clone(), now));
        }
        seen.retain(|_, (_, at)| now.duration_since(*at) <= grace);
        let zone = client_id
            .and_then(client_zone)
            .filter(|z| shown.iter().any(|a| a.az == *z));
        for (id, (a, _)) in seen.iter() {
            let live = view.group().iter().any(|g| g.node_id == *id);
            if !live && serves_clients(a) && zone.is_none_or(|z| a.az == z) {
                out.push(a.clone());
            }
        }
        out.sort_by_key(|a| a.node_id);
        out
    }
}

/// Agents with neither `produce` nor `fetch` only run jobs: clients are not sent there.
fn serves_clients(a: &AgentInfo) -> bool {
    a.roles.iter().any(|r| r == "produce" || r == "fetch")
}

/// The zone a client names in its `client.id` as `shoal_az=ZONE` (anywhere in the
/// string; the value ends at `,`, whitespace or the end). `None` if absent or empty.
pub fn client_zone(client_id: &str) -> Option<&str> {
    let start = client_id.find(ZONE_KEY)? + ZONE_KEY.len();
    let rest = &client_id[start..];
    let end = rest
        .find(|c: char| c == ',' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|z| !z.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(node_id: i32, az: &str, group: &str, roles: &[&str]) -> AgentInfo {
        AgentInfo {
            node_id,
            host: format!("agent-{node_id}"),
            port: 9092,
            az: az.to_string(),
            group: group.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            peer_addr: None,
            listeners: Vec::new(),
            incarnation: 0,
        }
    }

    const ALL: &[&str] = &["produce", "fetch", "jobs"];

    fn ids(agents: &[&AgentInfo]) -> Vec<i32> {
        agents.iter().map(|a| a.node_id).collect()
    }

    #[test]
    fn zone_from_client_id() {
        assert_eq!(client_zone("shoal_az=us-east-1a"), Some("us-east-1a"));
        assert_eq!(
            client_zone("app-7,shoal_az=eu-west-1b,x=y"),
            Some("eu-west-1b")
        );
        assert_eq!(client_zone("consumer shoal_az=z1 more"), Some("z1"));
        assert_eq!(client_zone("shoal_az=z\t"), Some("z"));
        assert_eq!(client_zone("shoal_az="), None);
        assert_eq!(client_zone("shoal_az=,x"), None);
        assert_eq!(client_zone("rdkafka"), None);
        assert_eq!(client_zone(""), None);
    }

    #[test]
    fn alone_without_a_registry() {
        let me = agent(0, "", "default", ALL);
        let view = ClusterView::new(&me, Vec::new());
        assert_eq!(ids(&view.for_client(Some("shoal_az=a"))), vec![0]);
        assert_eq!(ids(&view.for_client(None)), vec![0]);
        assert!(view.coordinates("any-group"));
        assert_eq!(
            placement::partition_leaders(&view.for_client(None), uuid::Uuid::nil(), 3),
            vec![0, 0, 0]
        );
    }

    #[test]
    fn clients_see_their_group_and_prefer_their_zone() {
        let me = agent(2, "a", "g1", ALL);
        let live = vec![
            agent(5, "b", "g1", ALL),
            agent(2, "a", "g1", ALL),
            agent(1, "a", "g2", ALL),
            agent(3, "a", "g1", ALL),
            agent(4, "b", "g1", &["jobs"]),
        ];
        let view = ClusterView::new(&me, live);
        // No zone: the whole group (serving agents only), by node id.
        assert_eq!(ids(&view.for_client(None)), vec![2, 3, 5]);
        assert_eq!(ids(&view.for_client(Some("plain-client"))), vec![2, 3, 5]);
        // A zone with agents: only those.
        assert_eq!(ids(&view.for_client(Some("shoal_az=a"))), vec![2, 3]);
        assert_eq!(ids(&view.for_client(Some("x,shoal_az=b"))), vec![5]);
        // A zone without agents of the group: fall back to all of it.
        assert_eq!(ids(&view.for_client(Some("shoal_az=c"))), vec![2, 3, 5]);
        // Coordinators come from every agent of the group, jobs-only included.
        assert_eq!(view.group().len(), 4);
    }

    /// An agent that drops out of the registry stays listed, leading nothing, for the
    /// grace period; a node id live again is listed once, as it is now.
    #[tokio::test(start_paused = true)]
    async fn departed_agents_stay_listed_for_the_grace() {
        let grace = Duration::from_secs(60);
        let me = agent(1, "a", "g", ALL);
        let all = vec![
            agent(1, "a", "g", ALL),
            agent(2, "a", "g", ALL),
            agent(3, "b", "g", ALL),
        ];
        let d = Departures::default();
        let listed = |view: &ClusterView, client: Option<&str>| {
            let shown = view.for_client(client);
            d.brokers(view, &shown, client, grace)
                .iter()
                .map(|a| a.node_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(&ClusterView::new(&me, all.clone()), None),
            vec![1, 2, 3]
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        // 2 and 3 leave: still brokers, but they lead nothing.
        let alone = ClusterView::new(&me, vec![agent(1, "a", "g", ALL)]);
        assert_eq!(listed(&alone, None), vec![1, 2, 3]);
        assert_eq!(
            placement::partition_leaders(&alone.for_client(None), uuid::Uuid::nil(), 4),
            vec![1, 1, 1, 1]
        );
        // A client of zone a that has live agents there is not shown b's departed agent.
        assert_eq!(listed(&alone, Some("shoal_az=a")), vec![1, 2]);
        // Last seen live at 0 s: listed until 60 s.
        tokio::time::advance(Duration::from_secs(49)).await;
        assert_eq!(listed(&alone, None), vec![1, 2, 3]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(listed(&alone, None), vec![1]);
        // Back with a new address: listed once, at the new one.
        let mut back = agent(2, "a", "g", ALL);
        back.port = 9999;
        let view = ClusterView::new(&me, vec![agent(1, "a", "g", ALL), back]);
        let shown = view.for_client(None);
        let brokers = d.brokers(&view, &shown, None, grace);
        assert_eq!(brokers.len(), 2);
        assert_eq!(brokers[1].port, 9999);
    }

    #[test]
    fn jobs_only_group_still_answers() {
        let me = agent(7, "", "workers", &["jobs"]);
        let view = ClusterView::new(&me, vec![agent(7, "", "workers", &["jobs"])]);
        assert_eq!(ids(&view.for_client(None)), vec![7]);
    }

    #[test]
    fn registry_without_me_yet() {
        // The registry has not caught up with this agent's registration.
        let me = agent(4, "", "g", ALL);
        let view = ClusterView::new(&me, vec![agent(1, "", "other", ALL)]);
        assert_eq!(ids(&view.for_client(None)), vec![4]);
        assert!(view.coordinates("x"));
        // Others of my group are known: this agent is not added behind their back.
        let view = ClusterView::new(&me, vec![agent(1, "", "g", ALL)]);
        assert_eq!(ids(&view.for_client(None)), vec![1]);
        assert!(!view.coordinates("x"));
    }

    /// Two agents with one node id (a lapsed agent and the newcomer that took its id)
    /// never both coordinate: only the incarnation the registry shows does, and a lapsed
    /// or unlisted agent coordinates nothing, not "everything" as an agent alone does.
    #[test]
    fn only_the_listed_incarnation_coordinates() {
        let me = agent(1, "", "g", ALL);
        let mut listed = agent(1, "", "g", ALL);
        listed.incarnation = 77;
        let live = vec![listed, agent(2, "", "g", ALL)];
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let mine = |standing| {
            let view = ClusterView::with_standing(&me, live.clone(), standing);
            keys.iter().filter(|k| view.coordinates(k)).count()
        };
        let holder = Standing::Live {
            node_id: 1,
            incarnation: 77,
        };
        let zombie = Standing::Live {
            node_id: 1,
            incarnation: 76,
        };
        assert!(
            mine(holder) > 0,
            "the listed incarnation coordinates its share"
        );
        assert_eq!(
            mine(zombie),
            0,
            "an old incarnation of the same id coordinates nothing"
        );
        assert_eq!(
            mine(Standing::Lapsed),
            0,
            "a lapsed agent coordinates nothing"
        );
        // Not yet in the registry: nothing, rather than everything.
        let view = ClusterView::with_standing(&me, Vec::new(), holder);
        assert!(!view.coordinates("k0"));
        let alone = ClusterView::with_standing(&me, Vec::new(), Standing::Alone);
        assert!(
            alone.coordinates("k0"),
            "an agent with no registry coordinates all"
        );
    }

    #[test]
    fn coordinator_ignores_zones_and_survives_unrelated_departures() {
        let me = agent(1, "a", "g", ALL);
        let live: Vec<AgentInfo> = (1..=5)
            .map(|i| agent(i, if i % 2 == 0 { "a" } else { "b" }, "g", ALL))
            .chain([agent(9, "a", "elsewhere", ALL)])
            .collect();
        let view = ClusterView::new(&me, live.clone());
        let keys: Vec<String> = (0..300).map(|i| format!("group-{i}")).collect();
        let before: Vec<i32> = keys
            .iter()
            .map(|k| view.coordinator(k).unwrap().node_id)
            .collect();
        assert!(
            !before.contains(&9),
            "agents of other groups never coordinate"
        );
        for id in 1..=5 {
            assert!(before.contains(&id), "agent {id} coordinates nothing");
        }
        // Agent 4 leaves: only the keys it coordinated move.
        let fewer: Vec<AgentInfo> = live.into_iter().filter(|a| a.node_id != 4).collect();
        let after = ClusterView::new(&me, fewer);
        for (k, b) in keys.iter().zip(&before) {
            let now = after.coordinator(k).unwrap().node_id;
            if *b != 4 {
                assert_eq!(now, *b, "{k} moved although its coordinator stayed");
            }
        }
        // Each agent agrees on who coordinates, and exactly one says it is itself.
        for k in &keys {
            let claimed = (1..=5)
                .filter(|&i| {
                    ClusterView::new(&agent(i, "", "g", ALL), view.group().to_vec()).coordinates(k)
                })
                .count();
            assert_eq!(claimed, 1, "{k}");
        }
    }
}

#[cfg(test)]
#[path = "../cluster_tests.rs"]
mod agent_tests;
