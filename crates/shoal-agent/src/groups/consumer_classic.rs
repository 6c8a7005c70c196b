//! Classic members inside a consumer group, and the conversions between the two kinds
//! of group: KIP-848's online upgrade and downgrade, as Kafka 4.x does them.
//!
//! - **Upgrade.** A ConsumerGroupHeartbeat that joins a running classic group of the
//!   consumer embedded protocol turns it into a consumer group ([`ConsumerGroups::adopt`]):
//!   its members stay, as *classic members*, with the subscriptions of their JoinGroup
//!   metadata and the partitions of their last assignment, at the classic generation as
//!   their member epoch. The new member's join then bumps the group epoch and the
//!   server-side assignor moves partitions as for any member.
//! - **Classic members** keep speaking JoinGroup, SyncGroup, Heartbeat and LeaveGroup.
//!   A heartbeat answers REBALANCE_IN_PROGRESS when the member must move towards its
//!   target (the group epoch passed its epoch, it must revoke, or partitions it waits
//!   for are free); its next JoinGroup is answered at once, without a leader or the
//!   other members, at its member epoch as the generation, after reconciling it against
//!   the partitions its subscription says it still owns; SyncGroup hands it its
//!   partitions in the consumer protocol's assignment format. A classic member that must
//!   revoke is given only what it keeps: a cooperative client revokes the rest and
//!   rejoins, an eager one has revoked everything before joining. So no partition is
//!   ever owned twice, across both kinds of member.
//! - **Downgrade.** When the last consumer-protocol member leaves (or times out) and
//!   classic members remain, the group goes back to being a classic group
//!   ([`ConsumerGroups::take_downgrades`] hands it to the classic coordinator), which
//!   starts a rebalance: the members rejoin and their leader assigns as before.
//!
//! Offsets commits from classic members must carry their generation (member epoch)
//! exactly, as in a classic group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{ClassicMeta, ConsumerGroups, Group, Member, MemberState, TopicMeta, Tp};
use crate::groups::embedded::{decode_assignment, decode_subscription, encode_assignment};
use crate::groups::state::{JoinArgs, JoinOutcome, SyncOutcome};

/// The consumer embedded protocol's type, the only one a consumer group takes in.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group's members as the classic protocol knows them: what moves between the two
/// coordinators when a group changes protocol.
#[derive(Debug, Clone, Default)]
pub struct ClassicRoster {
    pub generation: i32,
    pub members: Vec<ClassicSeat>,
}

/// One classic member of a [`ClassicRoster`].
#[derive(Debug, Clone)]
pub struct ClassicSeat {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// JoinGroup's protocols with their metadata (the subscription), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Its last assignment, in the consumer protocol's format (may be empty).
    pub assignment: Bytes,
}

fn sync_error(code: ResponseError) -> SyncOutcome {
    SyncOutcome {
        error: code.code(),
        ..Default::default()
    }
}

/// Partitions by name, resolved against `topics`; unknown topics and partitions out of
/// range are dropped.
fn resolve(topics: &HashMap<&str, &TopicMeta>, parts: &[(String, Vec<i32>)]) -> BTreeSet<Tp> {
    let mut out = BTreeSet::new();
    for (name, ps) in parts {
        if let Some(t) = topics.get(name.as_str()) {
            out.extend(
                ps.iter()
                    .filter(|p| (0..t.partitions).contains(*p))
                    .map(|p| (t.id, *p)),
            );
        }
    }
    out
}

impl Group {
    /// A member's partitions by topic name, encoded as its subscription's version.
    fn classic_assignment(&self, m: &Member) -> Bytes {
        let names: HashMap<uuid::Uuid, &str> = self
            .topics
            .iter()
            .map(|(n, t)| (t.id, n.as_str()))
            .collect();
        let mut by_name: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &m.assigned {
            if let Some(n) = names.get(t) {
                by_name.entry(n).or_default().push(*p);
            }
        }
        let version = m
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .and_then(|(_, meta)| decode_subscription(meta))
            .map_or(0, |s| s.version);
        let parts: Vec<(String, Vec<i32>)> = by_name
            .into_iter()
            .map(|(n, ps)| (n.to_string(), ps))
            .collect();
        encode_assignment(version, &parts)
    }

    /// Whether a classic member must rejoin to move on: the group epoch passed it, it
    /// must revoke, or the partitions it waits for are free now.
    fn classic_must_rejoin(&self, id: &str) -> bool {
        let Some(m) = self.members.get(id) else {
            return false;
        };
        match m.state {
            MemberState::UnrevokedPartitions => true,
            MemberState::UnreleasedPartitions => {
                let held = self.held_by_others(id);
                let target = self.target.get(id).cloned().unwrap_or_default();
                target.difference(&m.assigned).all(|tp| !held.contains(tp))
            }
            MemberState::Stable => m.epoch < self.epoch,
        }
    }

    /// Finds a classic member by id, checking its instance id as Kafka does.
    fn classic_member(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&mut Member, i16> {
        if let Some(inst) = instance_id {
            match self.static_ids.get(inst) {
                None => return Err(ResponseError::UnknownMemberId.code()),
                Some(id) if id != member_id => return Err(ResponseError::FencedInstanceId.code()),
                Some(_) => {}
            }
        }
        match self.members.get_mut(member_id) {
            Some(m) if m.classic.is_some() => Ok(m),
            _ => Err(ResponseError::UnknownMemberId.code()),
        }
    }

    /// The group as the classic coordinator will take it back.
    fn roster(&self) -> ClassicRoster {
        ClassicRoster {
            generation: self.epoch,
            members: self
                .members
                .iter()
                .filter_map(|(id, m)| {
                    let c = m.classic.as_ref()?;
                    Some(ClassicSeat {
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout: c.session_timeout,
                        rebalance_timeout: m.rebalance_timeout,
                        protocols: c.protocols.clone(),
                        assignment: self.classic_assignment(m),
                    })
                })
                .collect(),
        }
    }
}

impl ConsumerGroups {
    /// Sets a group aside for the classic coordinator: only classic members are left.
    pub(super) fn downgrade(&self, name: &str, g: Group) {
        tracing::info!(group = %name, members = g.members.len(), epoch = g.epoch, "only classic members are left; the consumer group goes back to the classic protocol");
        let roster = g.roster();
        self.downgrades
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), roster));
    }

    /// Groups that went back to the classic protocol since the last call, for the
    /// classic coordinator to take in.
    pub fn take_downgrades(&self) -> Vec<(String, ClassicRoster)> {
        std::mem::take(&mut *self.downgrades.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether `group_id` is a consumer group with members here.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.lock()
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Takes in a running classic group (the online upgrade). Fails, changing nothing,
    /// if a member's metadata is no consumer-protocol subscription.
    pub fn adopt(
        &self,
        group_id: &str,
        roster: ClassicRoster,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
        now: Instant,
    ) -> Result<(), String> {
        let listed = all_topics();
        let by_name: HashMap<&str, &TopicMeta> =
            listed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let generation = roster.generation;
        let mut g = Group {
            epoch: generation,
            assignment_epoch: generation,
            ..Default::default()
        };
        for seat in roster.members {
            let sub = seat
                .protocols
                .first()
                .and_then(|(_, meta)| decode_subscription(meta))
                .ok_or_else(|| {
                    format!(
                        "member {} has no readable consumer subscription",
                        seat.member_id
                    )
                })?;
            let given = decode_assignment(&seat.assignment)
                .ok_or_else(|| format!("member {} has an unreadable assignment", seat.member_id))?;
            let mut m = Member::new(now);
            m.instance_id = seat.instance_id.clone();
            m.client_id = seat.client_id;
            m.client_host = seat.client_host;
            m.rebalance_timeout = seat.rebalance_timeout;
            m.rack_id = sub.rack_id.clone();
            m.topics = sub.topics.iter().cloned().collect();
            m.epoch = generation;
            m.previous_epoch = generation;
            // What it was given and what it says it still owns: it may hold either.
            m.assigned = resolve(&by_name, &given);
            m.assigned.extend(resolve(&by_name, &sub.owned));
            m.assigned_at = m.assigned.iter().map(|tp| (*tp, generation)).collect();
            m.classic = Some(ClassicMeta {
                session_timeout: seat.session_timeout,
                protocols: seat.protocols,
                rejoin_asked: None,
            });
            g.target.insert(seat.member_id.clone(), m.assigned.clone());
            if let Some(inst) = seat.instance_id {
                g.static_ids.insert(inst, seat.member_id.clone());
            }
            g.members.insert(seat.member_id, m);
        }
        g.topics = g.subscribed(&|| listed.clone());
        tracing::info!(group = %group_id, members = g.members.len(), epoch = generation, "classic group upgraded to the consumer protocol");
        self.lock().insert(group_id.to_string(), g);
        Ok(())
    }

    /// A classic JoinGroup to a consumer group with members; `None` if `a.group_id` is
    /// none here. Answered at once (see the module doc).
    pub fn classic_join(
        &self,
        a: &JoinArgs,
        all_topics: &dyn Fn() -> Vec<(String, TopicMeta)>,
        now: Instant,
    ) -> Option<JoinOutcome> {
        let mut groups = self.lock();
        let g = groups
            .get_mut(&a.group_id)
            .filter(|g| !g.members.is_empty())?;
        let refuse = |code: ResponseError| {
            Some(JoinOutcome {
                error: code.code(),
                generation: -1,
                member_id: a.member_id.clone(),
                ..Default::default()
            })
        };
        let sub = a
            .protocols
            .first()
            .and_then(|(_, meta)| decode_subscription(meta));
        let (true, Some(sub)) = (a.protocol_type == CONSUMER_PROTOCOL_TYPE, sub) else {
            return refuse(ResponseError::InconsistentGroupProtocol);
        };
        let mut member_id = a.member_id.clone();
        if member_id.is_empty() {
            member_id = uuid::Uuid::new_v4().to_string();
            if a.require_known_member_id && a.instance_id.is_none() {
                return Some(JoinOutcome {
                    error: ResponseError::MemberIdRequired.code(),
                    generation: -1,
                    member_id,
                    ..Default::default()
                });
            }
        }
        if let Some(inst) = &a.instance_id {
            if let Some(old) = g.static_ids.get(inst).cloned().filter(|o| *o != member_id) {
                if !a.member_id.is_empty() {
                    return refuse(ResponseError::FencedInstanceId);
                }
                // The same instance restarted: the new member id takes the old one's
                // place, partitions and target.
                let target = g.target.remove(&old);
                if let Some(m) = g.remove(&old) {
                    g.members.insert(member_id.clone(), m);
                }
                if let Some(t) = target {
                    g.target.insert(member_id.clone(), t);
                }
                tracing::info!(group = %a.group_id, member = %member_id, instance = %inst, replaced = %old, "static classic member rejoined the consumer group");
            }
            g.static_ids.insert(inst.clone(), member_id.clone());
        }
        let mut changed = !g.members.contains_key(&member_id);
        let m = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member::new(now));
        let session = Duration::from_millis(a.session_timeout_ms.max(0) as u64);
        m.last_seen = now;
        m.client_id = a.client_id.clone();
        m.client_host = a.client_host.clone();
        m.instance_id = a.instance_id.clone();
        m.rebalance_timeout = if a.rebalance_timeout_ms > 0 {
            Duration::from_millis(a.rebalance_timeout_ms as u64)
        } else {
            session
        };
        if sub.rack_id.is_some() {
            m.rack_id = sub.rack_id.clone();
        }
        m.classic = Some(ClassicMeta {
            session_timeout: session,
            protocols: a.protocols.clone(),
            rejoin_asked: None,
        });
        let topics: BTreeSet<String> = sub.topics.iter().cloned().collect();
        if topics != m.topics || m.regex.is_some() || m.assignor.is_some() {
            m.topics = topics;
            m.regex = None;
            m.assignor = None;
            changed = true;
        }
        let subscribed = g.subscribed(all_topics);
        if changed || subscribed != g.topics {
            g.rebalance(subscribed);
            tracing::info!(group = %a.group_id, epoch = g.epoch, members = g.members.len(), "consumer group epoch bumped by a classic member's join; new target assignment");
        }
        let by_name: HashMap<&str, &TopicMeta> =
            g.topics.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let owned = resolve(&by_name, &sub.owned);
        g.reconcile(&member_id, Some(&owned), now);
        let m = &g.members[&member_id];
        tracing::debug!(group = %a.group_id, member = %member_id, epoch = m.epoch, state = ?m.state, owns = m.assigned.len(), "classic member joined the consumer group");
        Some(JoinOutcome {
            error: 0,
            generation: m.epoch,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: a.protocols.first().map(|(n, _)| n.clone()),
            leader: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        })
    }

    /// A classic SyncGroup to a consumer group; `None` if `group_id` is none here.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        now: Instant,
    ) -> Option<SyncOutcome> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id)?;
        let epoch = g.epoch;
        let m = match g.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(code) => {
                return Some(SyncOutcome {
                    error: code,
                    ..Default::default()
                })
            }
        };
        if generation != m.epoch {
            return Some(sync_error(ResponseError::IllegalGeneration));
        }
        let protocols = &m.classic.as_ref().expect("a classic member").protocols;
        if protocol_type.is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || protocol_name.is_some_and(|n| !protocols.iter().any(|(x, _)| x == n))
        {
            return Some(sync_error(ResponseError::InconsistentGroupProtocol));
        }
        let name = protocol_name
            .map(str::to_string)
            .or_else(|| protocols.first().map(|(n, _)| n.clone()));
        m.last_seen = now;
        if epoch > m.epoch && m.state != MemberState::UnrevokedPartitions {
            let c = m.classic.as_mut().expect("a classic member");
            c.rejoin_asked.get_or_insert(now);
            return Some(sync_error(ResponseError::RebalanceInProgress));
        }
        let m = &g.members[member_id];
        Some(SyncOutcome {
            error: 0,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: name,
            assignment: g.classic_assignment(m),
        })
    }

    /// A classic Heartbeat to a consumer group; `None` if `group_id` is none here.
    pub fn classic_heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Option<i16> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id)?;
        let m = match g.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(code) => return Some(code),
        };
        if generation != m.epoch {
            return Some(ResponseError::IllegalGeneration.code());
        }
        m.last_seen = now;
        if !g.classic_must_rejoin(member_id) {
            return Some(0);
        }
        let m = g.members.get_mut(member_id).expect("found above");
        m.classic
            .as_mut()
            .expect("a classic member")
            .rejoin_asked
            .get_or_insert(now);
        Some(ResponseError::RebalanceInProgress.code())
    }

    /// A classic LeaveGroup to a consumer group, members by id and/or instance id; `None`
    /// if `group_id` is none here. Per-member codes in order.
    pub fn classic_leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Option<Vec<i16>> {
        let mut groups = self.lock();
        let g = groups.get_mut(group_id)?;
        let mut codes = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let id = match crate::groups::leaving_member(
                &g.static_ids,
                member_id,
                instance_id.as_deref(),
            ) {
                Ok(id) => id,
                Err(code) => {
                    codes.push(code);
                    continue;
                }
            };
            if g.members.get(&id).is_none_or(|m| m.classic.is_none()) {
                codes.push(ResponseError::UnknownMemberId.code());
                continue;
            }
            g.remove(&id);
            removed = true;
            tracing::info!(group = %group_id, member = %id, "classic member left the consumer group");
            codes.push(0);
        }
        if removed {
            let known: Vec<(String, TopicMeta)> = g
                .topics
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let topics = g.subscribed(&|| known.clone());
            g.rebalance(topics);
        }
        Some(codes)
    }
}
