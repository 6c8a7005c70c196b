//! Consumer groups of the KIP-848 protocol (`group.protocol=consumer`): the coordinator
//! assigns partitions itself and members reconcile towards that target one heartbeat at
//! a time. State is in memory, like classic groups: a coordinator that goes away loses
//! it, its members are fenced by the next one and rejoin, and committed offsets are in
//! the metadata store.
//!
//! In brief, as in Kafka's group coordinator:
//! - The **group epoch** is bumped whenever what the assignment depends on changes: a
//!   member joins or leaves, a subscription or assignor changes, or a subscribed topic is
//!   created, deleted or grows. A new **target assignment** is then computed at once with
//!   the group's server-side assignor (`uniform`, the default, or `range`).
//! - Each member has a **member epoch** and the partitions it was told it owns. On every
//!   heartbeat it moves towards its target: partitions it must give up are revoked first
//!   (it stays at its epoch, `UNREVOKED_PARTITIONS`, until a heartbeat no longer lists
//!   them); then it takes the target epoch and the partitions no other member still holds
//!   (`UNRELEASED_PARTITIONS` while some are held elsewhere). So no partition is ever
//!   owned by two members.
//! - Heartbeats carry the member epoch: a greater one, or a smaller one that is not the
//!   previous epoch with a subset of the assignment (a lost response), is
//!   FENCED_MEMBER_EPOCH; the member drops its partitions and rejoins with epoch 0.
//! - A member silent for the session timeout, or that does not revoke within its
//!   rebalance timeout, is removed. A static member (`group.instance.id`) that leaves with
//!   epoch -2 keeps its partitions for the session timeout, so its restart takes them
//!   back without a rebalance.
//! - Subscriptions name topics or give a regular expression matched against every topic
//!   name (whole-name match; the Rust `regex` syntax, which covers RE2/J's).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

#[path = "consumer_classic.rs"]
mod classic;
pub(crate) use classic::{ClassicRoster, ClassicSeat, CONSUMER_PROTOCOL_TYPE};

/// A partition, by topic id.
pub type Tp = (Uuid, i32);

/// The server-side assignors, the first being the default (Kafka's
/// `group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Upper bound on a compiled subscription regex (bytes of the regex crate's program).
const MAX_REGEX_PROGRAM: usize = 1 << 20;

/// Where a member stands against its target assignment (ConsumerGroupDescribe shows it
/// through the epochs; logs name it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

/// A topic as assignments see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatArgs {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Vec<Tp>>,
    pub client_id: String,
    pub client_host: String,
    /// The group's own session timeout (its `consumer.session.timeout.ms` group config),
    /// if it has one; else the agent's.
    pub session_timeout: Option<Duration>,
}

/// What a ConsumerGroupHeartbeat is answered with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's partitions, when it needs to be told them.
    pub assignment: Option<Vec<Tp>>,
}

impl HeartbeatOutcome {
    fn error(code: ResponseError, message: impl Into<String>) -> Self {
        HeartbeatOutcome {
            error: code.code(),
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    rebalance_timeout: Duration,
    topics: BTreeSet<String>,
    regex: Option<String>,
    assignor: Option<String>,
    assigned: BTreeSet<Tp>,
    /// The member epoch at which each partition it holds (assigned or revoking) was
    /// given to it (KIP-1251's assignment epochs), for commits from an older epoch.
    assigned_at: HashMap<Tp, i32>,
    revoking: BTreeSet<Tp>,
    /// When the current revocation was asked for.
    revoking_since: Option<Instant>,
    last_seen: Instant,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup,
    /// Heartbeat) in this group: one that was in the classic group this group was
    /// upgraded from, or that joined with a classic client since.
    classic: Option<ClassicMeta>,
}

/// What a classic member has that a consumer-protocol one does not.
struct ClassicMeta {
    /// Its own session timeout (JoinGroup's), in place of the group's.
    session_timeout: Duration,
    /// The protocols of its last JoinGroup, metadata included, for a downgrade back to
    /// a classic group and to answer in the form it asked for.
    protocols: Vec<(String, bytes::Bytes)>,
    /// When it was first told to rejoin (REBALANCE_IN_PROGRESS) and has not yet; it is
    /// removed if it does not within its rebalance timeout.
    rejoin_asked: Option<Instant>,
}

impl Member {
    fn new(now: Instant) -> Self {
        Member {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout: Duration::from_secs(300),
            topics: BTreeSet::new(),
            regex: None,
            assignor: None,
            assigned: BTreeSet::new(),
            assigned_at: HashMap::new(),
            revoking: BTreeSet::new(),
            revoking_since: None,
            last_seen: now,
            classic: None,
        }
    }

    fn session_timeout(&self, group_default: Duration) -> Duration {
        self.classic
            .as_ref()
            .map_or(group_default, |c| c.session_timeout)
    }

    /// Whether this static member left with epoch -2 and may be replaced.
    fn left_static(&self) -> bool {
        self.epoch == -2
    }
}

#[derive(Default)]
struct Group {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    /// Target assignment of `assignment_epoch`, by member id.
    target: HashMap<String, BTreeSet<Tp>>,
    /// The subscribed topics the target was computed from.
    topics: BTreeMap<String, TopicMeta>,
    /// Static membership: instance id → member id.
    static_ids: HashMap<String, String>,
    /// The group's own session timeout (a group config), as of its last heartbeat.
    session_timeout: Option<Duration>,
}

/// A consumer group as ConsumerGroupDescribe and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// A classic-protocol member (ConsumerGroupDescribe v1's member type).
    pub classic: bool,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assigned: Vec<Tp>,
    pub target: Vec<Tp>,
}

/// The consumer groups this agent coordinates.
pub struct ConsumerGroups {
    groups: Mutex<HashMap<String, Group>>,
    /// Groups just taken out because only classic members are left, for the classic
    /// coordinator to take in ([`ConsumerGroups::take_downgrades`]).
    downgrades: Mutex<Vec<(String, ClassicRoster)>>,
    /// Whether a group whose consumer-protocol members all left goes back to the
    /// classic protocol (Kafka's migration policy allowing downgrades); if not, its
    /// classic members stay in a consumer group.
    pub online_downgrade: bool,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
}

/// Compiles a subscription regex to match whole topic names, bounded in size.
pub fn compile_regex(re: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(MAX_REGEX_PROGRAM)
        .build()
        .map_err(|e| e.to_string())
}

impl Group {
    fn assignor(&self) -> &'static str {
        // The assignor most members ask for; ties and none go to the default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes.iter().max_by_key(|(_, n)| **n).map(|(a, _)| *a);
        ASSIGNORS
            .iter()
            .copied()
            .find(|a| Some(*a) == best)
            .unwrap_or(ASSIGNORS[0])
    }

    /// The topics the members subscribe to, with their metadata, from `lookup`.
    fn subscribed(
        &self,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
    ) -> BTreeMap<String, TopicMeta> {
        let regexes: Vec<regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_deref().and_then(|r| compile_regex(r).ok()))
            .collect();
        all_topics()
            .into_iter()
            .filter(|(name, _)| {
                self.members.values().any(|m| m.topics.contains(name))
                    || regexes.iter().any(|r| r.is_match(name))
            })
            .collect()
    }

    /// Bumps the group epoch and computes the target assignment for it.
    fn rebalance(&mut self, topics: BTreeMap<String, TopicMeta>) {
        self.epoch += 1;
        self.topics = topics;
        let members: Vec<(String, Vec<&str>)> = self
            .members
            .iter()
            .map(|(id, m)| {
                let re = m.regex.as_deref().and_then(|r| compile_regex(r).ok());
                let wants = self
                    .topics
                    .keys()
                    .filter(|t| m.topics.contains(*t) || re.as_ref().is_some_and(|r| r.is_match(t)))
                    .map(String::as_str)
                    .collect();
                (id.clone(), wants)
            })
            .collect();
        self.target = match self.assignor() {
            "range" => range(&members, &self.topics),
            _ => uniform(&members, &self.topics, &self.target),
        };
        self.assignment_epoch = self.epoch;
    }

    /// The partitions other members than `except` hold now (assigned or not yet
    /// revoked).
    fn held_by_others(&self, except: &str) -> BTreeSet<Tp> {
        let mut out = BTreeSet::new();
        for (id, m) in &self.members {
            if id != except {
                out.extend(m.assigned.iter().chain(&m.revoking).copied());
            }
        }
        out
    }

    /// Moves member `id` towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(&mut self, id: &str, owned: Option<&BTreeSet<Tp>>, now: Instant) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let held = self.held_by_others(id);
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        let still_owns = |revoking: &BTreeSet<Tp>| match owned {
            None => true,
            Some(o) => revoking.iter().any(|tp| o.contains(tp)),
        };
        let epoch = match m.state {
            MemberState::Stable if m.epoch == target_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => m.epoch,
            MemberState::UnrevokedPartitions => {
                if still_owns(&m.revoking) {
                    return;
                }
                m.epoch + 1
            }
        };
        let assigned: BTreeSet<Tp> = m.assigned.intersection(&target).copied().collect();
        let revoking: BTreeSet<Tp> = m.assigned.difference(&assigned).copied().collect();
        let mut unreleased = false;
        let mut pending = Vec::new();
        for tp in target.difference(&assigned) {
            if held.contains(tp) {
                unreleased = true;
            } else {
                pending.push(*tp);
            }
        }
        if !revoking.is_empty() && still_owns(&revoking) {
            m.state = MemberState::UnrevokedPartitions;
            set_epoch(m, epoch);
            m.assigned = assigned;
            m.revoking = revoking;
            m.revoking_since = Some(now);
            return;
        }
        m.assigned = assigned;
        for tp in &pending {
            m.assigned_at.insert(*tp, target_epoch);
        }
        m.assigned.extend(pending);
        m.assigned_at.retain(|tp, _| m.assigned.contains(tp));
        m.revoking.clear();
        m.revoking_since = None;
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        set_epoch(m, target_epoch);
    }

    fn remove(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(inst) = &m.instance_id {
            if self.static_ids.get(inst).is_some_and(|x| x == id) {
                self.static_ids.remove(inst);
            }
        }
        self.target.remove(id);
        Some(m)
    }

    /// Whether every member left is a classic one (and some are): the group goes back
    /// to the classic protocol (KIP-848's online downgrade) rather than rebalancing.
    fn only_classic(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }
}

fn set_epoch(m: &mut Member, epoch: i32) {
    if m.epoch != epoch {
        m.previous_epoch = m.epoch;
        m.epoch = epoch;
    }
}

fn partitions_of(topics: &BTreeMap<String, TopicMeta>, name: &str) -> Vec<Tp> {
    topics
        .get(name)
        .map(|t| (0..t.partitions.max(0)).map(|p| (t.id, p)).collect())
        .unwrap_or_default()
}

/// The `uniform` assignor: every subscribed partition to one member, spread as evenly
/// as the subscriptions allow, and members keep what they had where balance permits.
fn uniform(
    members: &[(String, Vec<&str>)],
    topics: &BTreeMap<String, TopicMeta>,
    prior: &HashMap<String, BTreeSet<Tp>>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    // Who may take each partition.
    let mut eligible: BTreeMap<Tp, Vec<&str>> = BTreeMap::new();
    for (id, wants) in members {
        for t in wants {
            for tp in partitions_of(topics, t) {
                eligible.entry(tp).or_default().push(id.as_str());
            }
        }
    }
    let total = eligible.len();
    let quota = total / members.len();
    let mut extra = total % members.len();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // Sticky pass: each member keeps up to its share of what it had.
    for (id, _) in members {
        let Some(had) = prior.get(id) else { continue };
        let mine = out.get_mut(id).expect("every member has an entry");
        for tp in had {
            let ok = eligible.get(tp).is_some_and(|e| e.contains(&id.as_str()));
            if !ok || taken.contains(tp) {
                continue;
            }
            if mine.len() < quota || (mine.len() == quota && extra > 0) {
                if mine.len() == quota {
                    extra -= 1;
                }
                mine.insert(*tp);
                taken.insert(*tp);
            }
        }
    }
    // The rest, each to the least-loaded member that may take it.
    for (tp, who) in &eligible {
        if taken.contains(tp) {
            continue;
        }
        let best = who
            .iter()
            .min_by_key(|id| (out[**id].len(), **id))
            .expect("eligible lists are never empty");
        out.get_mut(*best).expect("member").insert(*tp);
    }
    out
}

/// The `range` assignor: per topic, the members subscribed to it in member-id order
/// each take a contiguous run of partitions, the first ones one more than the rest.
fn range(
    members: &[(String, Vec<&str>)],
    topics: &BTreeMap<String, TopicMeta>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeSet::new()))
        .collect();
    for name in topics.keys() {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|(_, w)| w.contains(&name.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        subs.sort_unstable();
        if subs.is_empty() {
            continue;
        }
        let parts = partitions_of(topics, name);
        let (each, more) = (parts.len() / subs.len(), parts.len() % subs.len());
        let mut at = 0;
        for (i, id) in subs.iter().enumerate() {
            let n = each + usize::from(i < more);
            out.get_mut(*id).expect("member").extend(&parts[at..at + n]);
            at += n;
        }
    }
    out
}

impl ConsumerGroups {
    pub fn new(session_timeout: Duration, heartbeat_interval: Duration) -> Self {
        ConsumerGroups {
            groups: Mutex::new(HashMap::new()),
            downgrades: Mutex::new(Vec::new()),
            online_downgrade: true,
            session_timeout,
            heartbeat_interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `group_id` is a consumer group here.
    pub fn contains(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
    }

    /// Handles a ConsumerGroupHeartbeat. `all_topics` lists every topic (called only
    /// when the group's subscriptions must be resolved again).
    pub fn heartbeat(
        &self,
        a: HeartbeatArgs,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
        now: Instant,
    ) -> HeartbeatOutcome {
        if let Some(e) = validate(&a) {
            return e;
        }
        let mut groups = self.lock();
        if a.member_epoch < 0 {
            let Some(g) = groups.get_mut(&a.group_id) else {
                return HeartbeatOutcome::error(
                    ResponseError::UnknownMemberId,
                    format!("group {} has no member {}", a.group_id, a.member_id),
                );
            };
            let out = leave(g, &a, all_topics, self.online_downgrade);
            if self.online_downgrade && g.only_classic() {
                let g = groups.remove(&a.group_id).expect("just seen");
                self.downgrade(&a.group_id, g);
            }
            return out;
        }
        if a.member_epoch > 0 && !groups.contains_key(&a.group_id) {
            return HeartbeatOutcome::error(
                ResponseError::UnknownMemberId,
                format!(
                    "group {} is not known here (its coordinator may have moved); rejoin",
                    a.group_id
                ),
            );
        }
        let g = groups.entry(a.group_id.clone()).or_default();
        g.session_timeout = a.session_timeout;
        let member_id = if a.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            a.member_id.clone()
        };
        let mut changed = false;
        if a.member_epoch == 0 {
            match join(g, &member_id, &a, now) {
                Ok(c) => changed |= c,
                Err(e) => return e,
            }
        } else if let Err(e) = check_epoch(g, &member_id, &a) {
            return e;
        }
        let m = g
            .members
            .get_mut(&member_id)
            .expect("joined or checked above");
        let before = (m.epoch, m.assigned.clone());
        m.last_seen = now;
        m.client_id = a.client_id.clone();
        m.client_host = a.client_host.clone();
        if a.rack_id.is_some() {
            m.rack_id = a.rack_id.clone();
        }
        if a.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout = Duration::from_millis(a.rebalance_timeout_ms as u64);
        }
        if let Some(names) = &a.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.topics {
                m.topics = names;
                changed = true;
            }
        }
        if let Some(re) = &a.subscribed_topic_regex {
            let re = (!re.is_empty()).then(|| re.clone());
            if re != m.regex {
                m.regex = re;
                changed = true;
            }
        }
        if let Some(assignor) = &a.server_assignor {
            if m.assignor.as_ref() != Some(assignor) {
                m.assignor = Some(assignor.clone());
                changed = true;
            }
        }
        let topics = g.subscribed(all_topics);
        if changed || topics != g.topics {
            g.rebalance(topics);
            tracing::info!(group = %a.group_id, epoch = g.epoch, members = g.members.len(), "consumer group epoch bumped; new target assignment");
        }
        let owned: Option<BTreeSet<Tp>> = a.owned.as_ref().map(|o| o.iter().copied().collect());
        g.reconcile(&member_id, owned.as_ref(), now);
        let m = &g.members[&member_id];
        let full = a.member_epoch == 0
            || (a.rebalance_timeout_ms != -1
                && a.subscribed_topic_names.is_some()
                && a.owned.is_some());
        let assignment = (full || before != (m.epoch, m.assigned.clone()))
            .then(|| m.assigned.iter().copied().collect::<Vec<Tp>>());
        tracing::debug!(group = %a.group_id, member = %member_id, sent_epoch = a.member_epoch, epoch = m.epoch, state = ?m.state, owns = m.assigned.len(), revoking = m.revoking.len(), target = g.target.get(&member_id).map_or(0, |t| t.len()), told = ?assignment.as_ref().map(|a| a.len()), "consumer group heartbeat");
        HeartbeatOutcome {
            error: 0,
            message: None,
            member_id,
            member_epoch: m.epoch,
            assignment,
        }
    }

    /// Checks an OffsetCommit or TxnOffsetCommit of `partitions` against a consumer
    /// group; `None` if `group_id` is no consumer group here. A member commits at its
    /// current epoch, or at an older one for partitions it has held since that epoch or
    /// before (KIP-1251: a commit sent before the member learnt of its new epoch is
    /// still its own); otherwise STALE_MEMBER_EPOCH. Anonymous commits (no member,
    /// epoch -1) only while the group is empty.
    pub fn check_commit(
        &self,
        group_id: &str,
        epoch: i32,
        member_id: &str,
        transactional: bool,
        partitions: &[Tp],
    ) -> Option<Result<(), i16>> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id)?;
        if epoch < 0 && member_id.is_empty() {
            return Some(if transactional || g.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            });
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Some(Err(ResponseError::UnknownMemberId.code()));
        };
        if m.classic.is_some() {
            // Classic clients know generations, not member epochs: theirs must match.
            return Some(if epoch == m.epoch {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration.code())
            });
        }
        let held_since_then = |tp: &Tp| m.assigned_at.get(tp).is_some_and(|at| *at <= epoch);
        if epoch > m.epoch || (epoch < m.epoch && !partitions.iter().all(held_since_then)) {
            return Some(Err(ResponseError::StaleMemberEpoch.code()));
        }
        Some(Ok(()))
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        Some(GroupView {
            state: g.state(),
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor().to_string(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    classic: m.classic.is_some(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    regex: m.regex.clone(),
                    assigned: m.assigned.iter().copied().collect(),
                    target: g
                        .target
                        .get(id)
                        .map(|t| t.iter().copied().collect())
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Topics a group's members subscribe to by name or that their regexes matched,
    /// or None if the group has no members.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<Vec<String>> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        if g.members.is_empty() {
            return None;
        }
        let mut out: BTreeSet<String> = g.topics.keys().cloned().collect();
        for m in g.members.values() {
            out.extend(m.topics.iter().cloned());
        }
        Some(out.into_iter().collect())
    }

    /// Forgets an empty group: `Some(Ok)` removed, `Some(Err)` NON_EMPTY_GROUP, `None`
    /// not a consumer group here.
    pub fn remove_if_empty(&self, group_id: &str) -> Option<Result<(), i16>> {
        let mut groups = self.lock();
        let g = groups.get(group_id)?;
        if !g.members.is_empty() {
            return Some(Err(ResponseError::NonEmptyGroup.code()));
        }
        groups.remove(group_id);
        Some(Ok(()))
    }

    /// Drops every group `keep` rejects (their coordinator is now another agent); their
    /// members are fenced by it and rejoin there.
    pub fn release(&self, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut groups = self.lock();
        let gone: Vec<String> = groups.keys().filter(|g| !keep(g)).cloned().collect();
        for name in &gone {
            groups.remove(name);
            tracing::info!(group = %name, "consumer group moved to another coordinator; its state here is dropped");
        }
        gone
    }

    /// Removes members silent past the session timeout, or that did not revoke within
    /// their rebalance timeout; empty groups with no committed state stay (they are
    /// listed as Empty) until deleted.
    pub fn tick_at(&self, now: Instant) {
        let mut groups = self.lock();
        let mut downgrade = Vec::new();
        for (name, g) in groups.iter_mut() {
            let expired: Vec<(String, &'static str)> = g
                .members
                .iter()
                .filter_map(|(id, m)| {
                    let rejoin_overdue = m
                        .classic
                        .as_ref()
                        .and_then(|c| c.rejoin_asked)
                        .is_some_and(|t| now.saturating_duration_since(t) > m.rebalance_timeout);
                    if now.saturating_duration_since(m.last_seen)
                        > m.session_timeout(g.session_timeout.unwrap_or(self.session_timeout))
                    {
                        Some((id.clone(), "session timeout"))
                    } else if rejoin_overdue {
                        Some((id.clone(), "did not rejoin within its rebalance timeout"))
                    } else if m
                        .revoking_since
                        .is_some_and(|t| now.saturating_duration_since(t) > m.rebalance_timeout)
                    {
                        Some((
                            id.clone(),
                            "did not revoke its partitions within its rebalance timeout",
                        ))
                    } else {
                        None
                    }
                })
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut consumer_left = false;
            for (id, why) in &expired {
                tracing::info!(group = %name, member = %id, "consumer group member removed: {why}");
                consumer_left |= g.remove(id).is_some_and(|m| m.classic.is_none());
            }
            if consumer_left && self.online_downgrade && g.only_classic() {
                downgrade.push(name.clone());
                continue;
            }
            let topics = g.subscribed(&|| {
                g.topics
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            });
            g.rebalance(topics);
        }
        for name in downgrade {
            let g = groups.remove(&name).expect("listed above");
            self.downgrade(&name, g);
        }
    }
}

fn validate(a: &HeartbeatArgs) -> Option<HeartbeatOutcome> {
    let bad = |m: &str| Some(HeartbeatOutcome::error(ResponseError::InvalidRequest, m));
    if a.group_id.is_empty() {
        return bad("the group id is empty");
    }
    if a.member_epoch != 0 && a.member_id.is_empty() {
        return bad("the member id is empty");
    }
    if a.member_epoch < -2 {
        return bad("member epoch below -2");
    }
    if a.member_epoch == 0 {
        if a.rebalance_timeout_ms < 0 {
            return bad("a joining member must give its rebalance timeout");
        }
        if a.subscribed_topic_names.is_none() && a.subscribed_topic_regex.is_none() {
            return bad("a joining member must give its subscription (topic names or a regex)");
        }
    }
    if let Some(assignor) = &a.server_assignor {
        if !ASSIGNORS.contains(&assignor.as_str()) {
            return Some(HeartbeatOutcome::error(
                ResponseError::UnsupportedAssignor,
                format!(
                    "assignor {assignor} is not supported; use one of {}",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    if let Some(re) = a
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = compile_regex(re) {
            return Some(HeartbeatOutcome::error(
                ResponseError::InvalidRegularExpression,
                format!("subscription regex {re:?}: {e}"),
            ));
        }
    }
    None
}

/// A member joins (epoch 0): new, rejoining after being fenced, or a static member
/// taking its instance's place. Returns whether the group's membership changed.
fn join(
    g: &mut Group,
    id: &str,
    a: &HeartbeatArgs,
    now: Instant,
) -> Result<bool, HeartbeatOutcome> {
    if let Some(inst) = &a.instance_id {
        if let Some(old_id) = g.static_ids.get(inst).cloned() {
            if old_id != id {
                let old = &g.members[&old_id];
                if !old.left_static() {
                    return Err(HeartbeatOutcome::error(
                        ResponseError::UnreleasedInstanceId,
                        format!("instance {inst} is still held by member {old_id}; it must leave first, or wait for its session to time out"),
                    ));
                }
                // The returning instance takes the old member's place and partitions.
                let target = g.target.remove(&old_id);
                let mut m = g.remove(&old_id).expect("listed");
                set_epoch(&mut m, 0);
                m.previous_epoch = 0;
                m.state = MemberState::Stable;
                m.last_seen = now;
                if let Some(t) = target {
                    g.target.insert(id.to_string(), t);
                }
                g.members.insert(id.to_string(), m);
                g.static_ids.insert(inst.clone(), id.to_string());
                tracing::info!(group = %a.group_id, member = %id, instance = %inst, replaced = %old_id, "static member rejoined");
                return Ok(false);
            }
        }
    }
    let rejoin = g.members.contains_key(id);
    let m = g
        .members
        .entry(id.to_string())
        .or_insert_with(|| Member::new(now));
    // A joining member owns nothing: whatever it had, it dropped when it was fenced.
    m.assigned.clear();
    m.assigned_at.clear();
    m.revoking.clear();
    m.revoking_since = None;
    set_epoch(m, 0);
    m.state = MemberState::Stable;
    m.instance_id = a.instance_id.clone();
    if let Some(inst) = &a.instance_id {
        g.static_ids.insert(inst.clone(), id.to_string());
    }
    tracing::info!(group = %a.group_id, member = %id, rejoin, "member joins the consumer group");
    Ok(!rejoin)
}

fn check_epoch(g: &Group, id: &str, a: &HeartbeatArgs) -> Result<(), HeartbeatOutcome> {
    let Some(m) = g.members.get(id) else {
        return Err(HeartbeatOutcome::error(
            ResponseError::UnknownMemberId,
            format!("group {} has no member {id}; rejoin", a.group_id),
        ));
    };
    if let Some(inst) = &a.instance_id {
        if g.static_ids.get(inst).is_some_and(|x| x != id) {
            return Err(HeartbeatOutcome::error(
                ResponseError::FencedInstanceId,
                format!("instance {inst} now belongs to another member"),
            ));
        }
    }
    let fenced = if a.member_epoch > m.epoch {
        true
    } else if a.member_epoch < m.epoch {
        let subset = a
            .owned
            .as_ref()
            .is_some_and(|o| o.iter().all(|tp| m.assigned.contains(tp)));
        a.member_epoch != m.previous_epoch || !subset
    } else {
        false
    };
    if fenced {
        return Err(HeartbeatOutcome::error(
            ResponseError::FencedMemberEpoch,
            format!(
                "member epoch {} does not match the coordinator's {}; the member must give up its partitions and rejoin",
                a.member_epoch, m.epoch
            ),
        ));
    }
    Ok(())
}

/// A member leaves: epoch -1 removes it; -2 (a static member) keeps its partitions for
/// the session timeout, for its restart.
fn leave(
    g: &mut Group,
    a: &HeartbeatArgs,
    all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
    downgrade: bool,
) -> HeartbeatOutcome {
    let id = match &a.instance_id {
        Some(inst) => match g.static_ids.get(inst) {
            Some(id) if *id != a.member_id => {
                return HeartbeatOutcome::error(
                    ResponseError::FencedInstanceId,
                    format!("instance {inst} now belongs to another member"),
                )
            }
            Some(id) => id.clone(),
            None => a.member_id.clone(),
        },
        None => a.member_id.clone(),
    };
    let Some(m) = g.members.get_mut(&id) else {
        return HeartbeatOutcome::error(
            ResponseError::UnknownMemberId,
            format!("group {} has no member {id}", a.group_id),
        );
    };
    if a.member_epoch == -2 && m.instance_id.is_some() {
        m.previous_epoch = m.epoch;
        m.epoch = -2;
        m.revoking.clear();
        m.revoking_since = None;
        tracing::info!(group = %a.group_id, member = %id, "static member left for now; its partitions wait for its return");
    } else {
        g.remove(&id);
        if !(downgrade && g.only_classic()) {
            let topics = g.subscribed(all_topics);
            g.rebalance(topics);
        }
        tracing::info!(group = %a.group_id, member = %id, epoch = g.epoch, "member left the consumer group");
    }
    HeartbeatOutcome {
        member_id: id,
        member_epoch: a.member_epoch,
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
