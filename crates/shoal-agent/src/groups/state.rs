//! Group state and the transitions between states. All state sits behind one mutex:
//! group operations are small and rare next to produce and fetch. Waiting JoinGroup and
//! SyncGroup requests hold a oneshot receiver; the transition that completes them sends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::consumer::{
    ClassicRoster, ClassicSeat, ConsumerGroups, HeartbeatArgs, HeartbeatOutcome, TopicMeta, Tp,
};

const MIN_SESSION: Duration = Duration::from_millis(1000);
const MAX_SESSION: Duration = Duration::from_secs(30 * 60);
const MAX_REBALANCE: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a JoinGroup request is answered with.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: a returning static leader gets the roster but must not reassign.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    fn error(code: i16, member_id: &str) -> Self {
        JoinOutcome {
            error: code,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup request is answered with.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(code: i16) -> Self {
        SyncOutcome {
            error: code,
            ..Default::default()
        }
    }
}

/// A JoinGroup request, decoded.
pub struct JoinArgs {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: v4+ clients must first obtain a member id.
    pub require_known_member_id: bool,
    /// KIP-814 (v9+): the client understands `skip_assignment`.
    pub supports_skip_assignment: bool,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    last_seen: Instant,
    join: Option<oneshot::Sender<JoinOutcome>>,
    sync: Option<oneshot::Sender<SyncOutcome>>,
    assignment: Bytes,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pending: HashMap<String, Instant>,
    /// Static membership: instance id → current member id.
    static_ids: HashMap<String, String>,
    /// End of the current rebalance (Preparing) or of waiting for the leader's sync.
    deadline: Option<Instant>,
    /// The current rebalance started from an empty group.
    initial: bool,
}

impl Group {
    fn new() -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_ids: HashMap::new(),
            deadline: None,
            initial: false,
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(10))
            .min(MAX_REBALANCE)
    }

    fn remove_member(&mut self, id: &str, code: i16) {
        if let Some(m) = self.members.remove(id) {
            if let Some(tx) = m.join {
                let _ = tx.send(JoinOutcome::error(code, id));
            }
            if let Some(tx) = m.sync {
                let _ = tx.send(SyncOutcome::error(code));
            }
            if let Some(inst) = m.instance_id {
                if self.static_ids.get(&inst).map(String::as_str) == Some(id) {
                    self.static_ids.remove(&inst);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(tx) = m.sync.take() {
                    let _ = tx.send(SyncOutcome::error(
                        ResponseError::RebalanceInProgress.code(),
                    ));
                }
            }
        }
        self.initial = self.state == State::Empty;
        let wait = if self.initial {
            initial_delay
        } else {
            self.max_rebalance_timeout()
        };
        self.state = State::PreparingRebalance;
        self.deadline = Some(now + wait);
    }

    /// Completes the join phase if every member rejoined or the deadline passed.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some());
        if !all_joined && self.deadline.is_some_and(|d| now < d) {
            return;
        }
        // The first rebalance of an empty group waits out the initial delay for others.
        if self.initial && self.deadline.is_some_and(|d| now < d) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, ResponseError::UnknownMemberId.code());
        }
        self.generation += 1;
        self.deadline = None;
        self.initial = false;
        if self.members.is_empty() {
            // The protocol type stays, as in Kafka: a consumer group whose members all
            // left is still a consumer group (admin tools would call it "simple").
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        let Some(protocol) = self.choose_protocol() else {
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in ids {
                self.remove_member(&id, ResponseError::InconsistentGroupProtocol.code());
            }
            self.state = State::Empty;
            return;
        };
        self.protocol = Some(protocol.clone());
        self.protocol_type = self
            .members
            .values()
            .next()
            .map(|m| m.protocol_type.clone());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let roster = self.roster();
        self.state = State::CompletingRebalance;
        self.deadline = Some(now + self.max_rebalance_timeout());
        let (generation, ptype) = (self.generation, self.protocol_type.clone());
        for (id, m) in self.members.iter_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(tx) = m.join.take() {
                let _ = tx.send(JoinOutcome {
                    error: 0,
                    generation,
                    protocol_type: ptype.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    skip_assignment: false,
                    members: if *id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Every member with its metadata for the chosen protocol.
    fn roster(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect()
    }

    /// The protocol every member supports with the most first-choice votes.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; ties go to the earlier preference of the first member.
        let best = votes.iter().map(|(v, _)| *v).max()?;
        votes
            .into_iter()
            .find(|(v, _)| *v == best)
            .map(|(_, c)| c.clone())
    }

    /// Checks (member, instance, generation) of a request against the group.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: Option<i32>,
    ) -> Result<(), i16> {
        if let Some(inst) = instance_id {
            if let Some(current) = self.static_ids.get(inst) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId.code());
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId.code());
        }
        if let Some(g) = generation {
            if g != self.generation {
                return Err(ResponseError::IllegalGeneration.code());
            }
        }
        Ok(())
    }
}

impl Group {
    /// Whether every member speaks the consumer embedded protocol (so the group can be
    /// upgraded to the consumer protocol).
    fn uses_consumer_protocol(&self) -> bool {
        self.members
            .values()
            .all(|m| m.protocol_type == super::consumer::CONSUMER_PROTOCOL_TYPE)
    }

    /// The members as the consumer protocol's coordinator takes them in an upgrade.
    fn roster_for_upgrade(&self) -> ClassicRoster {
        ClassicRoster {
            generation: self.generation,
            members: self
                .members
                .iter()
                .map(|(id, m)| ClassicSeat {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Answers every waiting JoinGroup and SyncGroup with `code`.
    fn fail_waiters(&mut self, code: i16) {
        for (id, m) in self.members.iter_mut() {
            if let Some(tx) = m.join.take() {
                let _ = tx.send(JoinOutcome::error(code, id));
            }
            if let Some(tx) = m.sync.take() {
                let _ = tx.send(SyncOutcome::error(code));
            }
        }
    }

    /// A classic group made from a consumer group whose consumer-protocol members all
    /// left (the online downgrade): a rebalance starts at once, so the members rejoin
    /// and their leader assigns.
    fn from_roster(roster: ClassicRoster, now: Instant) -> Group {
        let mut g = Group::new();
        g.generation = roster.generation;
        g.protocol_type = Some(super::consumer::CONSUMER_PROTOCOL_TYPE.to_string());
        for seat in roster.members {
            g.protocol = g
                .protocol
                .or_else(|| seat.protocols.first().map(|(n, _)| n.clone()));
            if let Some(inst) = &seat.instance_id {
                g.static_ids.insert(inst.clone(), seat.member_id.clone());
            }
            g.members.insert(
                seat.member_id,
                Member {
                    instance_id: seat.instance_id,
                    client_id: seat.client_id,
                    client_host: seat.client_host,
                    session_timeout: seat.session_timeout,
                    rebalance_timeout: seat.rebalance_timeout,
                    protocol_type: super::consumer::CONSUMER_PROTOCOL_TYPE.to_string(),
                    protocols: seat.protocols,
                    last_seen: now,
                    join: None,
                    sync: None,
                    assignment: seat.assignment,
                },
            );
        }
        g.state = State::Stable;
        g.prepare_rebalance(now, Duration::ZERO);
        g
    }
}

/// One member as DescribeGroups shows it.
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as ListGroups/DescribeGroups show it.
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

/// All groups this agent coordinates: classic ones here, those of the consumer protocol
/// (KIP-848) in [`ConsumerGroups`]. A group id is one kind or the other; an empty group
/// of one kind gives way to a member of the other.
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    initial_delay: Duration,
    /// Whether a running classic group may be upgraded to the consumer protocol (Kafka's
    /// `group.consumer.migration.policy` allowing upgrades); the downgrade's switch is
    /// [`ConsumerGroups::online_downgrade`].
    online_upgrade: bool,
    pub consumer: ConsumerGroups,
    /// Consumer-protocol groups' own timeouts, read from the metadata store.
    pub configs: super::configs::GroupConfigCache,
}

fn new_member_id(client_id: &str) -> String {
    let prefix: String = client_id.chars().take(64).collect();
    format!(
        "{}-{}",
        if prefix.is_empty() { "member" } else { &prefix },
        uuid::Uuid::new_v4()
    )
}

impl Coordinator {
    /// `initial_delay` is how long a group that was empty waits for more members before
    /// its first rebalance completes (Kafka's `group.initial.rebalance.delay.ms`).
    pub fn new(initial_delay: Duration) -> Self {
        Coordinator {
            groups: Mutex::new(HashMap::new()),
            initial_delay,
            online_upgrade: true,
            consumer: ConsumerGroups::new(Duration::from_secs(45), Duration::from_secs(5)),
            configs: Default::default(),
        }
    }

    /// Which online conversions between the classic and the consumer protocol are
    /// allowed: the upgrade of a running classic group, the downgrade back.
    pub fn with_migration(mut self, upgrade: bool, downgrade: bool) -> Self {
        self.online_upgrade = upgrade;
        self.consumer.online_downgrade = downgrade;
        self
    }

    /// Sets the consumer protocol's session timeout and heartbeat interval (Kafka's
    /// `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`).
    pub fn with_consumer_timeouts(mut self, session: Duration, heartbeat: Duration) -> Self {
        let downgrade = self.consumer.online_downgrade;
        self.consumer = ConsumerGroups::new(session, heartbeat);
        self.consumer.online_downgrade = downgrade;
        self
    }

    /// Handles a ConsumerGroupHeartbeat (see [`ConsumerGroups::heartbeat`]). A member
    /// joining a classic group of consumers upgrades it to the consumer protocol, its
    /// members staying as classic members (see `consumer_classic.rs`); other classic
    /// groups with members keep their id and the heartbeat gets GROUP_ID_NOT_FOUND. An
    /// empty classic group is replaced.
    pub fn consumer_heartbeat(
        &self,
        a: HeartbeatArgs,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
    ) -> HeartbeatOutcome {
        let now = Instant::now();
        let mut groups = self.lock();
        if let Some(g) = groups.get(&a.group_id) {
            if !g.members.is_empty() {
                let refused = |why: String| HeartbeatOutcome {
                    error: ResponseError::GroupIdNotFound.code(),
                    message: Some(why),
                    ..Default::default()
                };
                if a.member_epoch != 0 {
                    return refused(format!(
                        "group {} is a classic group; join it with epoch 0 to upgrade it",
                        a.group_id
                    ));
                }
                if !self.online_upgrade || !g.uses_consumer_protocol() {
                    return refused(format!(
                        "group {} is a classic group with members that cannot be upgraded (not all of them use the consumer embedded protocol, or --group-migration-policy allows no upgrade); its consumers use group.protocol=classic",
                        a.group_id
                    ));
                }
                let mut g = groups.remove(&a.group_id).expect("just seen");
                let roster = g.roster_for_upgrade();
                if let Err(e) = self.consumer.adopt(&a.group_id, roster, all_topics, now) {
                    groups.insert(a.group_id.clone(), g);
                    return refused(format!("group {} cannot be upgraded: {e}", a.group_id));
                }
                g.fail_waiters(ResponseError::RebalanceInProgress.code());
            } else if a.member_epoch == 0 {
                groups.remove(&a.group_id);
            }
        }
        let out = self.consumer.heartbeat(a, all_topics, now);
        self.take_downgrades(&mut groups, now);
        out
    }

    /// Takes in the consumer groups that went back to the classic protocol.
    fn take_downgrades(&self, groups: &mut HashMap<String, Group>, now: Instant) {
        for (name, roster) in self.consumer.take_downgrades() {
            groups.insert(name, Group::from_roster(roster, now));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a JoinGroup: an immediate answer (errors, MEMBER_ID_REQUIRED, a static
    /// member's return to a stable group) or a receiver completed when the rebalance's
    /// join phase ends.
    ///
    /// `all_topics` lists every topic; it is called only when the group is a consumer
    /// group that takes the member in as a classic member.
    pub fn join(
        &self,
        a: JoinArgs,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
    ) -> Result<oneshot::Receiver<JoinOutcome>, Box<JoinOutcome>> {
        let now = Instant::now();
        if a.group_id.is_empty() {
            return Err(Box::new(JoinOutcome::error(
                ResponseError::InvalidGroupId.code(),
                &a.member_id,
            )));
        }
        let session = Duration::from_millis(a.session_timeout_ms.max(0) as u64);
        if session < MIN_SESSION || session > MAX_SESSION {
            return Err(Box::new(JoinOutcome::error(
                ResponseError::InvalidSessionTimeout.code(),
                &a.member_id,
            )));
        }
        if a.protocol_type.is_empty() || a.protocols.is_empty() {
            return Err(Box::new(JoinOutcome::error(
                ResponseError::InconsistentGroupProtocol.code(),
                &a.member_id,
            )));
        }
        let mut groups = self.lock();
        // A consumer-protocol group with members takes classic members in; an empty one
        // gives way to a classic group.
        if let Some(o) = self.consumer.classic_join(&a, all_topics, now) {
            return Err(Box::new(o));
        }
        self.consumer.remove_if_empty(&a.group_id);
        let rebalance = if a.rebalance_timeout_ms > 0 {
            Duration::from_millis(a.rebalance_timeout_ms as u64)
        } else {
            session // v0 has no rebalance timeout: Kafka uses the session timeout
        };
        let g = groups.entry(a.group_id.clone()).or_insert_with(Group::new);
        // A joining member must share the protocol type and at least one protocol with
        // every other member.
        {
            let others: Vec<&Member> = g
                .members
                .iter()
                .filter(|(id, m)| {
                    **id != a.member_id
                        && (a.instance_id.is_none() || m.instance_id != a.instance_id)
                })
                .map(|(_, m)| m)
                .collect();
            let same_type = others.iter().all(|m| m.protocol_type == a.protocol_type);
            let common = others.is_empty()
                || a.protocols.iter().any(|(n, _)| {
                    others
                        .iter()
                        .all(|m| m.protocols.iter().any(|(x, _)| x == n))
                });
            if !same_type || !common {
                return Err(Box::new(JoinOutcome::error(
                    ResponseError::InconsistentGroupProtocol.code(),
                    &a.member_id,
                )));
            }
        }
        let member_id = if a.member_id.is_empty() {
            match &a.instance_id {
                Some(inst) => {
                    let new_id = new_member_id(&a.client_id);
                    if let Some(old) = g.static_ids.get(inst).cloned() {
                        // The same instance restarted: fence the old member id.
                        if let Some(mut m) = g.members.remove(&old) {
                            if let Some(tx) = m.join.take() {
                                let _ = tx.send(JoinOutcome::error(
                                    ResponseError::FencedInstanceId.code(),
                                    &old,
                                ));
                            }
                            if let Some(tx) = m.sync.take() {
                                let _ = tx.send(SyncOutcome::error(
                                    ResponseError::FencedInstanceId.code(),
                                ));
                            }
                            let was_leader = g.leader.as_deref() == Some(old.as_str());
                            if was_leader {
                                g.leader = Some(new_id.clone());
                            }
                            // KIP-345: a follower that comes back unchanged to a stable
                            // group keeps its assignment without a rebalance.
                            // "Unchanged": the same protocols and subscribed topics; the
                            // rest of the metadata (owned partitions, generation)
                            // naturally differs after a restart.
                            let topics = |b: &Bytes| {
                                let mut t = parse_subscription(b).unwrap_or_default();
                                t.sort();
                                t
                            };
                            let unchanged = m.protocols.len() == a.protocols.len()
                                && m.protocols
                                    .iter()
                                    .zip(&a.protocols)
                                    .all(|(x, y)| x.0 == y.0 && topics(&x.1) == topics(&y.1));
                            let skip = was_leader && a.supports_skip_assignment;
                            if g.state == State::Stable && (!was_leader || skip) && unchanged {
                                m.last_seen = now;
                                m.session_timeout = session;
                                m.rebalance_timeout = rebalance;
                                g.members.insert(new_id.clone(), m);
                                g.static_ids.insert(inst.clone(), new_id.clone());
                                tracing::info!(group = %a.group_id, instance = %inst, "static member rejoined without a rebalance");
                                return Err(Box::new(JoinOutcome {
                                    error: 0,
                                    generation: g.generation,
                                    protocol_type: g.protocol_type.clone(),
                                    protocol_name: g.protocol.clone(),
                                    leader: g.leader.clone().unwrap_or_default(),
                                    members: if skip { g.roster() } else { Vec::new() },
                                    member_id: new_id,
                                    skip_assignment: skip,
                                }));
                            }
                            tracing::info!(group = %a.group_id, instance = %inst, was_leader, unchanged, "static member rejoined; rebalancing");
                            g.members.insert(new_id.clone(), m);
                        }
                    }
                    g.static_ids.insert(inst.clone(), new_id.clone());
                    new_id
                }
                None if a.require_known_member_id => {
                    let new_id = new_member_id(&a.client_id);
                    g.pending.insert(new_id.clone(), now + session);
                    return Err(Box::new(JoinOutcome::error(
                        ResponseError::MemberIdRequired.code(),
                        &new_id,
                    )));
                }
                None => new_member_id(&a.client_id),
            }
        } else {
            if let Some(inst) = &a.instance_id {
                match g.static_ids.get(inst) {
                    Some(current) if *current != a.member_id => {
                        return Err(Box::new(JoinOutcome::error(
                            ResponseError::FencedInstanceId.code(),
                            &a.member_id,
                        )));
                    }
                    None => {
                        return Err(Box::new(JoinOutcome::error(
                            ResponseError::UnknownMemberId.code(),
                            &a.member_id,
                        )));
                    }
                    _ => {}
                }
            }
            if !g.members.contains_key(&a.member_id) && g.pending.remove(&a.member_id).is_none() {
                return Err(Box::new(JoinOutcome::error(
                    ResponseError::UnknownMemberId.code(),
                    &a.member_id,
                )));
            }
            a.member_id.clone()
        };
        let (tx, rx) = oneshot::channel();
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: a.instance_id.clone(),
                client_id: a.client_id.clone(),
                client_host: a.client_host.clone(),
                session_timeout: session,
                rebalance_timeout: rebalance,
                protocol_type: a.protocol_type.clone(),
                protocols: Vec::new(),
                last_seen: now,
                join: None,
                sync: None,
                assignment: Bytes::new(),
            });
        member.session_timeout = session;
        member.rebalance_timeout = rebalance;
        member.protocol_type = a.protocol_type.clone();
        member.protocols = a.protocols;
        member.client_id = a.client_id;
        member.client_host = a.client_host;
        member.last_seen = now;
        if let Some(old) = member.join.replace(tx) {
            let _ = old.send(JoinOutcome::error(
                ResponseError::RebalanceInProgress.code(),
                &member_id,
            ));
        }
        if g.state != State::PreparingRebalance {
            g.prepare_rebalance(now, self.initial_delay);
        }
        g.try_complete_join(now);
        Ok(rx)
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<oneshot::Receiver<SyncOutcome>, SyncOutcome> {
        let now = Instant::now();
        if let Some(o) = self.consumer.classic_sync(
            group_id,
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol_name,
            now,
        ) {
            return Err(o);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Err(SyncOutcome::error(ResponseError::UnknownMemberId.code()));
        };
        g.check_member(member_id, instance_id, Some(generation))
            .map_err(SyncOutcome::error)?;
        if protocol_type.is_some_and(|t| Some(t) != g.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != g.protocol.as_deref())
        {
            return Err(SyncOutcome::error(
                ResponseError::InconsistentGroupProtocol.code(),
            ));
        }
        let done = |g: &Group, a: Bytes| SyncOutcome {
            error: 0,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment: a,
        };
        match g.state {
            State::Empty => Err(SyncOutcome::error(ResponseError::UnknownMemberId.code())),
            State::PreparingRebalance => Err(SyncOutcome::error(
                ResponseError::RebalanceInProgress.code(),
            )),
            State::Stable => {
                let m = &g.members[member_id];
                Err(done(g, m.assignment.clone()))
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                {
                    let m = g.members.get_mut(member_id).expect("checked");
                    m.last_seen = now;
                    m.sync = Some(tx);
                }
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    g.state = State::Stable;
                    g.deadline = None;
                    let (ptype, proto) = (g.protocol_type.clone(), g.protocol.clone());
                    for m in g.members.values_mut() {
                        if let Some(tx) = m.sync.take() {
                            let _ = tx.send(SyncOutcome {
                                error: 0,
                                protocol_type: ptype.clone(),
                                protocol_name: proto.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Ok(rx)
            }
        }
    }

    /// Handles a Heartbeat; returns the error code.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let now = Instant::now();
        if let Some(code) =
            self.consumer
                .classic_heartbeat(group_id, generation, member_id, instance_id, now)
        {
            return code;
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        if let Err(code) = g.check_member(member_id, instance_id, Some(generation)) {
            return code;
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_seen = now;
        }
        match g.state {
            State::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            State::Empty => ResponseError::UnknownMemberId.code(),
            _ => 0,
        }
    }

    /// Handles a LeaveGroup for members given by id and/or instance id; returns the
    /// per-member error codes in order.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let now = Instant::now();
        if let Some(codes) = self.consumer.classic_leave(group_id, members) {
            return Ok(codes);
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let id = match super::leaving_member(&g.static_ids, member_id, instance_id.as_deref()) {
                Ok(id) => id,
                Err(code) => {
                    codes.push(code);
                    continue;
                }
            };
            if !g.members.contains_key(&id) {
                codes.push(ResponseError::UnknownMemberId.code());
                continue;
            }
            g.remove_member(&id, ResponseError::UnknownMemberId.code());
            removed = true;
            codes.push(0);
        }
        if removed {
            match g.state {
                State::Stable | State::CompletingRebalance => {
                    g.prepare_rebalance(now, Duration::ZERO)
                }
                _ => {}
            }
            g.try_complete_join(now);
        }
        Ok(codes)
    }

    /// Checks whether an OffsetCommit (`transactional` false) or a TxnOffsetCommit may be
    /// applied; refreshes the member's liveness. A TxnOffsetCommit (KIP-447) that names a
    /// member or generation must come from a current member of the current generation,
    /// like an OffsetCommit; one that names neither (a transactional producer outside any
    /// group's protocol, or a request older than v3) is accepted whatever the group's
    /// state.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        transactional: bool,
        partitions: &[Tp],
    ) -> Result<(), i16> {
        let anonymous = generation < 0 && member_id.is_empty();
        if transactional && anonymous && instance_id.is_none() {
            return Ok(());
        }
        if let Some(r) =
            self.consumer
                .check_commit(group_id, generation, member_id, transactional, partitions)
        {
            return r;
        }
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            // No live group: only commits from outside any group (simple consumers).
            return if generation < 0 && !transactional {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration.code())
            };
        };
        if anonymous && !transactional {
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        }
        g.check_member(member_id, instance_id, Some(generation))?;
        if g.state == State::CompletingRebalance && !transactional {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        if let Some(m) = g.members.get_mut(member_id) {
            m.last_seen = Instant::now();
        }
        Ok(())
    }

    /// A group's current shape, if this coordinator knows it.
    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        let show_data = matches!(g.state, State::Stable | State::CompletingRebalance);
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupSummary {
            state: g.state.name(),
            protocol_type: g
                .protocol_type
                .clone()
                .or_else(|| g.members.values().next().map(|m| m.protocol_type.clone()))
                .unwrap_or_default(),
            protocol: if show_data {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSummary {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if show_data {
                        m.protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if g.state == State::Stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// Names of the groups held in memory, of both kinds.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.extend(self.consumer.group_ids());
        ids
    }

    /// Forgets an empty group. Errors with NON_EMPTY_GROUP if it has members.
    pub fn remove_if_empty(&self, group_id: &str) -> Result<bool, i16> {
        if let Some(r) = self.consumer.remove_if_empty(group_id) {
            return r.map(|()| true);
        }
        let mut groups = self.lock();
        match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(ResponseError::NonEmptyGroup.code()),
            Some(_) => {
                groups.remove(group_id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether the group has members on this agent, of either protocol.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.subscribed_topics(group_id).is_some()
    }

    /// Topics that a group's members subscribe to (consumer protocol), or None if the
    /// group has no members.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<Vec<String>> {
        if self.consumer.contains(group_id) {
            return self.consumer.subscribed_topics(group_id);
        }
        let groups = self.lock();
        let g = groups.get(group_id)?;
        if g.members.is_empty() {
            return None;
        }
        let mut topics = Vec::new();
        for m in g.members.values() {
            for (_, meta) in &m.protocols {
                topics.extend(parse_subscription(meta).unwrap_or_default());
            }
        }
        Some(topics)
    }

    /// Drops every group `keep` rejects: those another agent coordinates now that the
    /// registry changed, as a Kafka broker unloads the groups of a partition it stops
    /// leading. Members waiting in JoinGroup or SyncGroup get NOT_COORDINATOR at once
    /// and look for the new coordinator; and if a group comes back here later it starts
    /// afresh rather than waiting for members that went elsewhere. Returns the ids.
    pub fn release(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut gone = self.consumer.release(&keep);
        let mut groups = self.lock();
        let classic: Vec<String> = groups.keys().filter(|g| !keep(g)).cloned().collect();
        for name in &classic {
            if let Some(mut g) = groups.remove(name) {
                let ids: Vec<String> = g.members.keys().cloned().collect();
                for id in ids {
                    g.remove_member(&id, ResponseError::NotCoordinator.code());
                }
                tracing::info!(group = %name, "group moved to another coordinator; its state here is dropped");
            }
        }
        gone.extend(classic);
        gone
    }

    /// Expires silent members and overdue rebalances. Call periodically.
    pub fn tick(&self) {
        self.tick_at(Instant::now())
    }

    /// [`Coordinator::tick`] as of `now` (tests move time forward with it).
    pub fn tick_at(&self, now: Instant) {
        let mut groups = self.lock();
        self.consumer.tick_at(now);
        self.take_downgrades(&mut groups, now);
        for (name, g) in groups.iter_mut() {
            g.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join.is_none()
                        && m.sync.is_none()
                        && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %name, member = %id, "member session expired");
                g.remove_member(id, ResponseError::UnknownMemberId.code());
            }
            if !expired.is_empty() && matches!(g.state, State::Stable | State::CompletingRebalance)
            {
                g.prepare_rebalance(now, Duration::ZERO);
            }
            if g.state == State::CompletingRebalance && g.deadline.is_some_and(|d| now >= d) {
                tracing::info!(group = %name, "leader did not send assignments in time; rebalancing");
                g.prepare_rebalance(now, Duration::ZERO);
            }
            g.try_complete_join(now);
        }
    }
}

/// Topics in a consumer-protocol subscription (version i16, then an array of strings).
pub(crate) fn parse_subscription(meta: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let count = i32::from_be_bytes(meta.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let mut out = Vec::new();
    for _ in 0..count.clamp(0, 100_000) {
        let len = i16::from_be_bytes(meta.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        out.push(String::from_utf8_lossy(meta.get(at..at + len)?).into_owned());
        at += len;
    }
    Some(out)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "migration_tests.rs"]
mod migration_tests;
