//! Group phase: N consumers in one classic consumer group read the whole topic.
//!
//! Runs after the catch-up read when `--group-consumers N` is given. The phase creates a
//! group with a fresh id, waits for its coordinator to exist (Apache Kafka creates its
//! offsets topic on the first FindCoordinator; that one-time wait is reported, not timed
//! as a rebalance), then starts N [`Member`] tasks at once. Each member does what a Java
//! consumer with the range assignor does: FindCoordinator, JoinGroup (again with the
//! member id the coordinator hands out on MEMBER_ID_REQUIRED), the leader computes a range
//! assignment ([`crate::consumer_protocol`]), SyncGroup, a heartbeat task every second on
//! its own connection (an answer other than NONE, e.g. REBALANCE_IN_PROGRESS, makes the
//! member commit and rejoin), OffsetFetch for its partitions (-1 = start at the earliest
//! offset), Fetch from the leaders and OffsetCommit of its progress every second.
//! Heartbeats of all members tick on one grid (every whole second since the members
//! started), so when a rebalance is noticed does not depend on when each member synced.
//!
//! Members report into one shared [`View`] (a `watch` channel): the generation and
//! partitions of their last SyncGroup, and which offsets of each partition anyone has
//! consumed. The orchestrator ([`run`]) drives the phase through [`Stage`]s and times it
//! from that view:
//! 1. rebalance: from starting all N members until all N completed SyncGroup in the same
//!    generation and together hold every partition;
//! 2. consume: from the first SyncGroup with partitions until the consumed offsets cover
//!    `earliest..end` of every partition (throughput counts each record once);
//! 3. leave rebalance (N > 1): one member commits and sends LeaveGroup; from that moment
//!    until the other N-1 hold every partition in a newer generation. They learn of the
//!    rebalance from their next heartbeat; the LeaveGroup is sent [`LEAVE_AFTER_TICK`]
//!    after a heartbeat tick, so the figure always includes about 0.9 s of waiting for
//!    the next one (printed apart) and differences between servers are their own;
//! 4. every member reads up to the end offsets, commits, and leaves; then an OffsetFetch
//!    checks that the committed offsets equal the end offsets.
//!
//! Members do not decode records: like the catch-up read they walk batch headers. A
//! member failing (an unexpected error code, a lost connection) ends the phase with that
//! error; nothing is retried beyond what the group protocol itself asks for.

use std::collections::{btree_map, BTreeMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::client::{describe_error, Connection};
use crate::cluster::Cluster;
use crate::consume::{start_fetch, walk_batches, PendingFetch, CATCH_UP_LIMITS};
use crate::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign,
};
use crate::group_client::{
    committed_offsets, find_coordinator, is_coordinator_error, ready_coordinator, GroupApi,
    GroupVersions, ILLEGAL_GENERATION, MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
};
use crate::report::{GroupFigures, LeaveFigures};

/// How often members heartbeat (Kafka's default is 3 s; 1 s bounds how late a member
/// learns of a rebalance).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Where in the heartbeat grid the leaving member sends LeaveGroup: just after the
/// others' heartbeats of one tick were answered.
const LEAVE_AFTER_TICK: Duration = Duration::from_millis(100);
/// How often members commit their progress while consuming (like auto-commit, faster).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a member may take to get through JoinGroup and SyncGroup.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the orchestrator waits for a rebalance or a stage to finish.
const STAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long consumption may make no progress before the phase gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// What the orchestrator asks of the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Join, consume, commit now and then, follow rebalances.
    Consume,
    /// This member commits and leaves; the others go on.
    LeaveOne(usize),
    /// Read up to the end offsets, commit them, then wait.
    CommitAll,
    /// Leave the group.
    LeaveAll,
}

/// Offsets consumed from one partition: sorted, disjoint, non-touching `[from, to)` ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage(Vec<(i64, i64)>);

impl Coverage {
    /// Adds `[from, to)`; true when that covered something new.
    pub fn insert(&mut self, from: i64, to: i64) -> bool {
        if from >= to || self.0.iter().any(|&(a, b)| a <= from && to <= b) {
            return false;
        }
        let (mut lo, mut hi) = (from, to);
        self.0.retain(|&(a, b)| {
            let touches = a <= hi && lo <= b;
            if touches {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            !touches
        });
        let at = self.0.partition_point(|&(a, _)| a < lo);
        self.0.insert(at, (lo, hi));
        true
    }

    /// The parts of `[from, to)` not covered.
    pub fn gaps(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let mut gaps = Vec::new();
        let mut next = from;
        for &(a, b) in &self.0 {
            if b <= next {
                continue;
            }
            if a >= to {
                break;
            }
            if a > next {
                gaps.push((next, a));
            }
            next = b;
        }
        if next < to {
            gaps.push((next, to));
        }
        gaps
    }
}

/// A member's last completed SyncGroup.
#[derive(Debug, Clone)]
struct Synced {
    generation: i32,
    partitions: Vec<i32>,
    at: Instant,
}

#[derive(Debug, Default, Clone)]
struct MemberView {
    /// `None` while the member is (re)joining.
    synced: Option<Synced>,
    /// Generation in which the member committed the end offsets (stage CommitAll).
    committed_end_in: Option<i32>,
    /// When a heartbeat last told the member to rejoin.
    told_at: Option<Instant>,
    left: bool,
}

/// What the members have told the orchestrator.
#[derive(Debug, Clone)]
struct View {
    members: Vec<MemberView>,
    coverage: Vec<Coverage>,
    /// When coverage last grew (or the phase began).
    progress_at: Instant,
    first_assignment_at: Option<Instant>,
    leave_sent_at: Option<Instant>,
}

impl View {
    fn new(members: usize, partitions: i32, now: Instant) -> Self {
        Self {
            members: vec![MemberView::default(); members],
            coverage: vec![Coverage::default(); partitions.max(0) as usize],
            progress_at: now,
            first_assignment_at: None,
            leave_sent_at: None,
        }
    }

    /// When all members that have not left completed SyncGroup in one generation newer
    /// than `after` and hold every partition exactly once: (generation, last SyncGroup).
    fn stable(&self, after: i32) -> Option<(i32, Instant)> {
        let active: Vec<&MemberView> = self.members.iter().filter(|m| !m.left).collect();
        let first = active.first()?.synced.as_ref()?;
        let generation = first.generation;
        if generation <= after {
            return None;
        }
        let mut held = Vec::new();
        let mut last = first.at;
        for member in &active {
            let synced = member.synced.as_ref()?;
            if synced.generation != generation {
                return None;
            }
            held.extend_from_slice(&synced.partitions);
            last = last.max(synced.at);
        }
        held.sort_unstable();
        (held == (0..self.coverage.len() as i32).collect::<Vec<_>>()).then_some((generation, last))
    }

    /// Whether the consumed offsets cover `earliest..end` of every partition.
    fn complete(&self, earliest: &[i64], end: &[i64]) -> bool {
        self.coverage
            .iter()
            .enumerate()
            .all(|(p, c)| c.gaps(earliest[p], end[p]).is_empty())
    }

    /// When the last member still in the group was told to rejoin, if all were told at
    /// or after `since`.
    fn last_told(&self, since: Instant) -> Option<Instant> {
        self.members
            .iter()
            .filter(|m| !m.left)
            .map(|m| m.told_at.filter(|&at| at >= since))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    fn newest_generation(&self) -> i32 {
        self.members
            .iter()
            .filter_map(|m| m.synced.as_ref().map(|s| s.generation))
            .max()
            .unwrap_or(-1)
    }

    /// One line per member and the partitions still short of `end`, for timeouts.
    fn describe(&self, earliest: &[i64], end: &[i64]) -> String {
        let mut text = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let state = match (&m.synced, m.left) {
                (_, true) => "left".to_string(),
                (None, _) => "joining".to_string(),
                (Some(s), _) => {
                    format!("generation {} partitions {:?}", s.generation, s.partitions)
                }
            };
            text.push_str(&format!("\n  member {i}: {state}"));
        }
        for (p, c) in self.coverage.iter().enumerate() {
            let gaps = c.gaps(earliest[p], end[p]);
            if !gaps.is_empty() {
                text.push_str(&format!("\n  partition {p}: not consumed {gaps:?}"));
            }
        }
        text
    }
}

/// What one member measured.
#[derive(Debug)]
struct MemberStats {
    started: Instant,
    first_record_at: Option<Instant>,
    records: u64,
    batch_bytes: u64,
    rejoins: u64,
    commits: u64,
}

/// (partition, start offset) and (partition, committed offset or -1), or the error code
/// that calls for a rejoin.
type Positions = std::result::Result<(Vec<(i32, i64)>, Vec<(i32, i64)>), i16>;

/// Why a member's consume loop ended.
enum Outcome {
    /// The group moved on (heartbeat or commit answered with this code): rejoin.
    Rejoin(i16),
    /// The stage says this member leaves.
    Leave,
}

/// Everything a member needs; shared by reference with its tasks.
struct Member {
    index: usize,
    cluster: Arc<Cluster>,
    versions: GroupVersions,
    group: String,
    client_id: String,
    earliest: Arc<Vec<i64>>,
    end: Arc<Vec<i64>>,
    view: Arc<watch::Sender<View>>,
    stage: watch::Receiver<Stage>,
    /// Heartbeats tick at this instant plus whole intervals.
    grid: Instant,
}

/// The member's two connections to the coordinator: requests, and heartbeats (Kafka
/// answers a connection's requests one at a time, so a heartbeat must not queue behind
/// a JoinGroup or a commit).
struct CoordinatorLink {
    api: GroupApi,
    heartbeats: Arc<GroupApi>,
}

/// Aborts the heartbeat task when the generation it beats for is over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Member {
    async fn run(mut self) -> Result<MemberStats> {
        let mut stats = MemberStats {
            started: Instant::now(),
            first_record_at: None,
            records: 0,
            batch_bytes: 0,
            rejoins: 0,
            commits: 0,
        };
        let bootstrap = Connection::connect(&self.cluster.bootstrap, &self.client_id).await?;
        let mut link = self.link(&bootstrap).await?;
        let metadata = encode_subscription(std::slice::from_ref(&self.cluster.topic))?;
        let mut member_id = String::new();
        let mut leaders: BTreeMap<i32, Connection> = BTreeMap::new();
        loop {
            let (generation, partitions) = self
                .join_and_sync(&mut link, &bootstrap, &mut member_id, &metadata, &mut stats)
                .await?;
            for leader in self.cluster.group_by_leader(&partitions).into_keys() {
                if let btree_map::Entry::Vacant(slot) = leaders.entry(leader) {
                    slot.insert(self.cluster.connect(leader).await?);
                }
            }
            let (tx, rejoin) = oneshot::channel();
            let heartbeat = AbortOnDrop(tokio::spawn(heartbeat_loop(
                link.heartbeats.clone(),
                generation,
                member_id.clone(),
                self.grid,
                tx,
            )));
            let outcome = self
                .consume(
                    &link.api,
                    generation,
                    &member_id,
                    &partitions,
                    &leaders,
                    rejoin,
                    &mut stats,
                )
                .await?;
            drop(heartbeat);
            self.view
                .send_modify(|v| v.members[self.index].synced = None);
            match outcome {
                Outcome::Rejoin(code) => {
                    stats.rejoins += 1;
                    if code == UNKNOWN_MEMBER_ID {
                        member_id.clear();
                    }
                    if is_coordinator_error(code) {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        link = self.link(&bootstrap).await?;
                    }
                }
                Outcome::Leave => {
                    if matches!(*self.stage.borrow(), Stage::LeaveOne(_)) {
                        let at = grid_point(self.grid, Instant::now(), LEAVE_AFTER_TICK);
                        tokio::time::sleep_until(at.into()).await;
                        self.view
                            .send_modify(|v| v.leave_sent_at = Some(Instant::now()));
                    }
                    let code = link.api.leave(&member_id).await?;
                    if code != 0 {
                        bail!(
                            "LeaveGroup {} (member {member_id}) at {}: {}",
                            self.group,
                            link.api.addr(),
                            describe_error(code, None)
                        );
                    }
                    self.view.send_modify(|v| v.members[self.index].left = true);
                    return Ok(stats);
                }
            }
        }
    }

    async fn link(&self, bootstrap: &Connection) -> Result<CoordinatorLink> {
        let addr = find_coordinator(bootstrap, self.versions.find_coordinator, &self.group).await?;
        let connect = || GroupApi::connect(&addr, &self.client_id, self.versions, &self.group);
        Ok(CoordinatorLink {
            api: connect().await?,
            heartbeats: Arc::new(connect().await?),
        })
    }

    /// JoinGroup and SyncGroup until both succeed; returns the generation and this
    /// member's partitions of the topic, and tells the view.
    async fn join_and_sync(
        &self,
        link: &mut CoordinatorLink,
        bootstrap: &Connection,
        member_id: &mut String,
        metadata: &Bytes,
        stats: &mut MemberStats,
    ) -> Result<(i32, Vec<i32>)> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let joined = link.api.join(member_id, metadata).await?;
            match joined.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    *member_id = joined.member_id.to_string();
                    continue;
                }
                code => {
                    last_error = format!("JoinGroup: {}", describe_error(code, None));
                    if !self.recover(code, link, bootstrap, member_id).await? {
                        bail!("{}", self.failed(&last_error, link, member_id));
                    }
                    stats.rejoins += 1;
                    continue;
                }
            }
            *member_id = joined.member_id.to_string();
            let generation = joined.generation_id;
            let assignments = if joined.leader == joined.member_id {
                self.assign(&joined.members)?
            } else {
                Vec::new()
            };
            let synced = link.api.sync(generation, member_id, assignments).await?;
            if synced.error_code != 0 {
                last_error = format!("SyncGroup: {}", describe_error(synced.error_code, None));
                if !self
                    .recover(synced.error_code, link, bootstrap, member_id)
                    .await?
                {
                    bail!("{}", self.failed(&last_error, link, member_id));
                }
                stats.rejoins += 1;
                continue;
            }
            let at = Instant::now();
            let mut partitions: Vec<i32> = decode_assignment(&synced.assignment)?
                .into_iter()
                .filter(|(topic, _)| *topic == self.cluster.topic)
                .flat_map(|(_, partitions)| partitions)
                .collect();
            partitions.sort_unstable();
            self.view.send_modify(|v| {
                if !partitions.is_empty() {
                    v.first_assignment_at.get_or_insert(at);
                }
                v.members[self.index].synced = Some(Synced {
                    generation,
                    partitions: partitions.clone(),
                    at,
                });
            });
            return Ok((generation, partitions));
        }
        bail!(
            "member {} of group {} did not get through JoinGroup and SyncGroup in {}s; last: {last_error}",
            self.index,
            self.group,
            JOIN_TIMEOUT.as_secs()
        )
    }

    /// Handles an error code of JoinGroup or SyncGroup the way the protocol says; false
    /// for codes that mean something is wrong.
    async fn recover(
        &self,
        code: i16,
        link: &mut CoordinatorLink,
        bootstrap: &Connection,
        member_id: &mut String,
    ) -> Result<bool> {
        match code {
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => Ok(true),
            UNKNOWN_MEMBER_ID => {
                member_id.clear();
                Ok(true)
            }
            code if is_coordinator_error(code) => {
                tokio::time::sleep(RETRY_BACKOFF).await;
                *link = self.link(bootstrap).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn failed(&self, error: &str, link: &CoordinatorLink, member_id: &str) -> String {
        format!(
            "{error} (group {}, member {} with id {member_id:?}, coordinator {})",
            self.group,
            self.index,
            link.api.addr()
        )
    }

    /// The leader's range assignment of every member's subscription.
    fn assign(&self, members: &[JoinGroupResponseMember]) -> Result<Vec<(String, Bytes)>> {
        let subscriptions = members
            .iter()
            .map(|m| Ok((m.member_id.to_string(), decode_subscription(&m.metadata)?)))
            .collect::<Result<Vec<_>>>()?;
        let counts = BTreeMap::from([(self.cluster.topic.clone(), self.cluster.partitions())]);
        range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(member, assignment)| Ok((member, encode_assignment(&assignment)?)))
            .collect()
    }

    /// Reads the member's partitions from their committed offsets until the group or
    /// the stage says otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn consume(
        &mut self,
        api: &GroupApi,
        generation: i32,
        member_id: &str,
        partitions: &[i32],
        leaders: &BTreeMap<i32, Connection>,
        mut rejoin: oneshot::Receiver<Told>,
        stats: &mut MemberStats,
    ) -> Result<Outcome> {
        let (mut positions, mut committed) = match self.positions(api, partitions).await? {
            Ok(found) => found,
            Err(code) => return Ok(Outcome::Rejoin(code)),
        };
        let mut committed_at = Instant::now();
        let by_leader = self.cluster.group_by_leader(partitions);
        loop {
            let stage = *self.stage.borrow_and_update();
            let caught_up = positions
                .iter()
                .all(|&(p, offset)| offset >= self.end[p as usize]);
            let leaving = match stage {
                Stage::LeaveOne(i) => i == self.index,
                Stage::LeaveAll => true,
                Stage::Consume | Stage::CommitAll => false,
            };
            let due = committed_at.elapsed() >= COMMIT_INTERVAL
                || leaving
                || (stage == Stage::CommitAll && caught_up);
            if due && positions != committed {
                let code = self.commit(api, generation, member_id, &positions).await?;
                if code != 0 {
                    return Ok(Outcome::Rejoin(code));
                }
                stats.commits += 1;
                committed = positions.clone();
                committed_at = Instant::now();
            }
            if leaving {
                return Ok(Outcome::Leave);
            }
            if stage == Stage::CommitAll && caught_up {
                self.view.send_if_modified(|v| {
                    let slot = &mut v.members[self.index].committed_end_in;
                    let changed = *slot != Some(generation);
                    *slot = Some(generation);
                    changed
                });
            }
            let idle = positions.is_empty() || (stage == Stage::CommitAll && caught_up);
            tokio::select! {
                biased;
                told = &mut rejoin => {
                    let (code, at) = told
                        .map_err(|_| anyhow!("heartbeat task ended"))?
                        .map_err(|e| anyhow!("heartbeat: {e}"))?;
                    self.view.send_modify(|v| {
                        v.members[self.index].synced = None;
                        v.members[self.index].told_at = Some(at);
                    });
                    if code == REBALANCE_IN_PROGRESS && positions != committed {
                        // Hand over progress, as a consumer does before it rejoins.
                        if self.commit(api, generation, member_id, &positions).await? == 0 {
                            stats.commits += 1;
                        }
                    }
                    return Ok(Outcome::Rejoin(code));
                }
                changed = self.stage.changed() => {
                    changed.context("the group phase ended")?;
                }
                round = fetch_round(&self.cluster, leaders, &by_leader, &positions), if !idle => {
                    let answers = round?;
                    self.absorb(answers, &mut positions, stats)?;
                }
            }
        }
    }

    /// Where to start reading `partitions` (the committed offset, or the earliest when
    /// it is -1) and what is committed, or the code that calls for a rejoin. Retriable
    /// codes are asked again.
    async fn positions(&self, api: &GroupApi, partitions: &[i32]) -> Result<Positions> {
        if partitions.is_empty() {
            return Ok(Ok((Vec::new(), Vec::new())));
        }
        let deadline = Instant::now() + STAGE_TIMEOUT;
        loop {
            let answer = api.committed(&self.cluster.topic, partitions).await?;
            let code = std::iter::once(answer.error_code)
                .chain(answer.partitions.iter().map(|p| p.2))
                .find(|&c| c != 0)
                .unwrap_or(0);
            if code == 0 {
                let mut positions = Vec::new();
                let mut committed_now = Vec::new();
                for &p in partitions {
                    let committed = answer
                        .partitions
                        .iter()
                        .find(|a| a.0 == p)
                        .map(|a| a.1)
                        .ok_or_else(|| anyhow!("OffsetFetch did not answer for partition {p}"))?;
                    let start = if committed < 0 {
                        self.earliest[p as usize]
                    } else {
                        committed
                    };
                    positions.push((p, start));
                    committed_now.push((p, committed));
                }
                return Ok(Ok((positions, committed_now)));
            }
            if is_coordinator_error(code) || matches!(code, UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION)
            {
                return Ok(Err(code));
            }
            if !crate::client::is_retriable(code) || Instant::now() > deadline {
                bail!(
                    "OffsetFetch {} at {}: {}",
                    self.group,
                    api.addr(),
                    describe_error(code, None)
                );
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }

    /// Commits `positions`; returns 0, or a code that calls for a rejoin.
    async fn commit(
        &self,
        api: &GroupApi,
        generation: i32,
        member_id: &str,
        positions: &[(i32, i64)],
    ) -> Result<i16> {
        let answer = api
            .commit(generation, member_id, &self.cluster.topic, positions)
            .await?;
        let code = answer
            .iter()
            .map(|&(_, c)| c)
            .find(|&c| c != 0)
            .unwrap_or(0);
        if answer.len() != positions.len() && code == 0 {
            bail!(
                "OffsetCommit answered for {} partitions, {} were sent",
                answer.len(),
                positions.len()
            );
        }
        if code == 0
            || is_coordinator_error(code)
            || matches!(
                code,
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID
            )
        {
            return Ok(code);
        }
        bail!(
            "OffsetCommit {} generation {generation} at {}: {}",
            self.group,
            api.addr(),
            describe_error(code, None)
        )
    }

    /// Walks fetched batches, moves positions and tells the view what was covered.
    fn absorb(
        &self,
        answers: Vec<(Vec<crate::consume::PartitionAnswer>, Instant)>,
        positions: &mut [(i32, i64)],
        stats: &mut MemberStats,
    ) -> Result<()> {
        let mut covered = Vec::new();
        for (answer, received) in answers
            .into_iter()
            .flat_map(|(a, at)| a.into_iter().map(move |answer| (answer, at)))
        {
            let Some(position) = positions.iter_mut().find(|(p, _)| *p == answer.partition) else {
                continue;
            };
            let walk = walk_batches(&answer.records, position.1).with_context(|| {
                format!(
                    "walk batches of {}-{}",
                    self.cluster.topic, answer.partition
                )
            })?;
            stats.records += walk.records;
            stats.batch_bytes += walk.bytes;
            if walk.records > 0 && stats.first_record_at.is_none() {
                stats.first_record_at = Some(received);
            }
            if let Some(next) = walk.next_offset.filter(|&n| n > position.1) {
                covered.push((answer.partition, position.1, next));
                position.1 = next;
            }
        }
        if !covered.is_empty() {
            self.view.send_if_modified(|v| {
                let mut grew = false;
                for &(p, from, to) in &covered {
                    grew |= v.coverage[p as usize].insert(from, to);
                }
                if grew {
                    v.progress_at = Instant::now();
                }
                grew
            });
        }
        Ok(())
    }
}

/// One Fetch per leader, all in flight at once; their answers.
async fn fetch_round(
    cluster: &Cluster,
    leaders: &BTreeMap<i32, Connection>,
    by_leader: &BTreeMap<i32, Vec<i32>>,
    positions: &[(i32, i64)],
) -> Result<Vec<(Vec<crate::consume::PartitionAnswer>, Instant)>> {
    let mut pending: Vec<PendingFetch> = Vec::new();
    for (leader, partitions) in by_leader {
        let conn = leaders
            .get(leader)
            .ok_or_else(|| anyhow!("no connection to broker {leader}"))?;
        let wanted: Vec<(i32, i64)> = positions
            .iter()
            .filter(|(p, _)| partitions.contains(p))
            .copied()
            .collect();
        pending.push(start_fetch(conn, cluster, &wanted, CATCH_UP_LIMITS).await?);
    }
    let mut answers = Vec::with_capacity(pending.len());
    for fetch in pending {
        answers.push(fetch.finish(cluster).await?);
    }
    Ok(answers)
}

/// What the heartbeat task reports: the error code that ended it and when it arrived,
/// or why heartbeats failed.
type Told = std::result::Result<(i16, Instant), String>;

/// The first instant at or after `now` that lies `offset` after a heartbeat tick of the
/// grid starting at `grid`.
fn grid_point(grid: Instant, now: Instant, offset: Duration) -> Instant {
    let period = HEARTBEAT_INTERVAL.as_nanos();
    let since = now.saturating_duration_since(grid + offset).as_nanos();
    let ticks = since.div_ceil(period);
    grid + offset + Duration::from_nanos((ticks * period) as u64)
}

/// Heartbeats at every tick of the grid until an answer is not NONE (sent back through
/// `tx`) or the connection fails (the reason is sent back).
async fn heartbeat_loop(
    api: Arc<GroupApi>,
    generation: i32,
    member_id: String,
    grid: Instant,
    tx: oneshot::Sender<Told>,
) {
    let first = grid_point(grid, Instant::now(), Duration::ZERO);
    let mut tick = tokio::time::interval_at(first.into(), HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        match api.heartbeat(generation, &member_id).await {
            Ok(0) => {}
            Ok(code) => {
                let _ = tx.send(Ok((code, Instant::now())));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(format!("{e:#}")));
                return;
            }
        }
    }
}

type MemberResult = (usize, Result<MemberStats>);

/// Members, the view they write and the stage they read, seen from the orchestrator.
struct Phase {
    tasks: JoinSet<MemberResult>,
    finished: Vec<Option<MemberStats>>,
    view: watch::Receiver<View>,
    stage: watch::Sender<Stage>,
    earliest: Arc<Vec<i64>>,
    end: Arc<Vec<i64>>,
}

impl Phase {
    /// Waits until `check` finds what it looks for in the view, a member fails, or
    /// `deadline` (read from the view) passes.
    async fn wait<T>(
        &mut self,
        what: &str,
        deadline: impl Fn(&View) -> Instant,
        mut check: impl FnMut(&View) -> Option<T>,
    ) -> Result<T> {
        loop {
            let (found, until) = {
                let view = self.view.borrow_and_update();
                (check(&view), deadline(&view))
            };
            if let Some(found) = found {
                return Ok(found);
            }
            tokio::select! {
                changed = self.view.changed() => changed.context("group view closed")?,
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    let (i, result) = joined
                        .expect("tasks is not empty")
                        .context("a group member panicked")?;
                    self.finished[i] = Some(result.with_context(|| format!("group member {i}"))?);
                }
                _ = tokio::time::sleep_until(until.into()) => {
                    let view = self.view.borrow();
                    bail!(
                        "timed out waiting for {what}:{}",
                        view.describe(&self.earliest, &self.end)
                    );
                }
            }
        }
    }

    /// Waits for every member task to end.
    async fn join_all(&mut self) -> Result<()> {
        let deadline = Instant::now() + STAGE_TIMEOUT;
        while let Some(joined) = tokio::time::timeout_at(deadline.into(), self.tasks.join_next())
            .await
            .map_err(|_| {
                anyhow!(
                    "group members did not leave within {}s",
                    STAGE_TIMEOUT.as_secs()
                )
            })?
        {
            let (i, result) = joined.context("a group member panicked")?;
            self.finished[i] = Some(result.with_context(|| format!("group member {i}"))?);
        }
        Ok(())
    }
}

/// Runs the group phase over `earliest..end` of every partition; `record_size` turns
/// records into bytes for the throughput figure.
pub async fn run(
    cluster: Arc<Cluster>,
    members: usize,
    earliest: Vec<i64>,
    end: Vec<i64>,
    record_size: usize,
) -> Result<GroupFigures> {
    let versions = GroupVersions::negotiate(cluster.advertised.as_deref())?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let group = format!("shoal-bench-{millis}-{}", std::process::id());
    let client_id = format!("{}-group", cluster.client_id);

    let looking = Instant::now();
    let bootstrap = Connection::connect(&cluster.bootstrap, &client_id).await?;
    let coordinator = ready_coordinator(&bootstrap, versions, &client_id, &group, &cluster.topic)
        .await
        .context("wait for a group coordinator")?;
    let coordinator_wait = looking.elapsed();
    eprintln!(
        "shoal-bench: group {group}: coordinator {coordinator} (ready in {} ms); {} consumer(s) joining; {}",
        coordinator_wait.as_millis(),
        members,
        versions.describe()
    );

    let started = Instant::now();
    let earliest = Arc::new(earliest);
    let end = Arc::new(end);
    let (view_tx, view_rx) = watch::channel(View::new(members, cluster.partitions(), started));
    let view_tx = Arc::new(view_tx);
    let (stage_tx, stage_rx) = watch::channel(Stage::Consume);
    let mut tasks = JoinSet::new();
    for index in 0..members {
        let member = Member {
            index,
            cluster: cluster.clone(),
            versions,
            group: group.clone(),
            client_id: format!("{client_id}-{index}"),
            earliest: earliest.clone(),
            end: end.clone(),
            view: view_tx.clone(),
            stage: stage_rx.clone(),
            grid: started,
        };
        tasks.spawn(async move { (index, member.run().await) });
    }
    let mut phase = Phase {
        tasks,
        finished: (0..members).map(|_| None).collect(),
        view: view_rx,
        stage: stage_tx,
        earliest: earliest.clone(),
        end: end.clone(),
    };

    let stage_deadline = |from: Instant| move |_: &View| from + STAGE_TIMEOUT;
    let (generation, synced_at) = phase
        .wait(
            &format!("all {members} members to hold assignments"),
            stage_deadline(started),
            |v| v.stable(-1),
        )
        .await?;
    let rebalance = synced_at.saturating_duration_since(started);
    eprintln!(
        "shoal-bench: group: {members} member(s) hold all partitions after {} ms (generation {generation})",
        rebalance.as_millis()
    );

    let (consumed_from, consumed_at) = phase
        .wait(
            "the group to consume every record",
            |v| v.progress_at + STALL_TIMEOUT,
            |v| {
                v.complete(&earliest, &end)
                    .then(|| (v.first_assignment_at.unwrap_or(started), v.progress_at))
            },
        )
        .await?;
    let elapsed = consumed_at.saturating_duration_since(consumed_from);
    eprintln!(
        "shoal-bench: group: every record consumed after {:.2} s",
        elapsed.as_secs_f64()
    );

    let mut leave = None;
    if members > 1 {
        let before = phase.view.borrow().newest_generation();
        let leaver = members - 1;
        phase.stage.send_replace(Stage::LeaveOne(leaver));
        let asked = Instant::now();
        let (generation, sent, synced_at, told_at) = phase
            .wait(
                &format!(
                    "the other {} members to take over member {leaver}'s partitions",
                    members - 1
                ),
                stage_deadline(asked),
                |v| {
                    let sent = v.leave_sent_at?;
                    let (generation, at) = v.stable(before)?;
                    Some((generation, sent, at, v.last_told(sent)))
                },
            )
            .await?;
        let took = synced_at.saturating_duration_since(sent);
        let told = told_at.map(|at| at.saturating_duration_since(sent));
        eprintln!(
            "shoal-bench: group: member {leaver} left; {} member(s) hold all partitions after {} ms (generation {generation})",
            members - 1,
            took.as_millis()
        );
        leave = Some(LeaveFigures {
            took,
            told,
            generation,
        });
    }

    phase.stage.send_replace(Stage::CommitAll);
    let asked = Instant::now();
    phase
        .wait(
            "the members to commit the end offsets",
            stage_deadline(asked),
            |v| {
                v.members
                    .iter()
                    .filter(|m| !m.left)
                    .all(|m| {
                        m.synced
                            .as_ref()
                            .is_some_and(|s| Some(s.generation) == m.committed_end_in)
                    })
                    .then_some(())
            },
        )
        .await?;
    phase.stage.send_replace(Stage::LeaveAll);
    phase.join_all().await?;

    let view = phase.view.borrow().clone();
    let api = GroupApi::connect(&coordinator, &client_id, versions, &group).await?;
    let committed = committed_offsets(&api, &cluster.topic, cluster.partitions())
        .await
        .context("read the group's final committed offsets")?;
    let problems = check(&cluster.topic, &view.coverage, &earliest, &end, &committed);

    let stats: Vec<MemberStats> = phase.finished.into_iter().flatten().collect();
    let records: u64 = earliest
        .iter()
        .zip(end.iter())
        .map(|(&from, &to)| (to - from).max(0) as u64)
        .sum();
    Ok(GroupFigures {
        members,
        group,
        coordinator,
        versions: versions.describe(),
        coordinator_wait,
        join_to_first_record: stats
            .iter()
            .filter_map(|s| {
                s.first_record_at
                    .map(|at| at.saturating_duration_since(s.started))
            })
            .collect(),
        rebalance,
        generation,
        leave,
        records,
        delivered: stats.iter().map(|s| s.records).sum(),
        payload_bytes: records * record_size as u64,
        batch_bytes: stats.iter().map(|s| s.batch_bytes).sum(),
        elapsed,
        rejoins: stats.iter().map(|s| s.rejoins).sum(),
        commits: stats.iter().map(|s| s.commits).sum(),
        problems,
    })
}

/// What is wrong with the group's result: offsets nobody consumed, and committed offsets
/// other than the end offsets. Empty when all is well.
fn check(
    topic: &str,
    coverage: &[Coverage],
    earliest: &[i64],
    end: &[i64],
    committed: &[i64],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (p, c) in coverage.iter().enumerate() {
        let gaps = c.gaps(earliest[p], end[p]);
        if !gaps.is_empty() {
            let missing: i64 = gaps.iter().map(|(a, b)| b - a).sum();
            problems.push(format!(
                "{topic}-{p}: {missing} offset(s) never consumed: {gaps:?} of [{}, {})",
                earliest[p], end[p]
            ));
        }
    }
    for (p, (&committed, &end)) in committed.iter().zip(end).enumerate() {
        if committed != end {
            problems.push(format!(
                "{topic}-{p}: committed offset {committed}, end offset {end}"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_merges_and_finds_gaps() {
        let mut c = Coverage::default();
        assert!(c.insert(10, 20));
        assert!(!c.insert(12, 15));
        assert!(!c.insert(5, 5));
        assert!(c.insert(30, 40));
        assert_eq!(c.gaps(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert!(c.insert(20, 30));
        assert_eq!(c, Coverage(vec![(10, 40)]));
        assert!(c.insert(0, 10));
        assert!(c.insert(35, 45));
        assert_eq!(c, Coverage(vec![(0, 45)]));
        assert!(c.gaps(0, 45).is_empty());
        assert!(c.gaps(3, 3).is_empty());
        assert_eq!(c.gaps(40, 50), vec![(45, 50)]);
        assert!(c.insert(100, 110));
        assert!(c.insert(50, 60));
        assert_eq!(c, Coverage(vec![(0, 45), (50, 60), (100, 110)]));
    }

    fn synced(generation: i32, partitions: &[i32], ms: u64, base: Instant) -> Option<Synced> {
        Some(Synced {
            generation,
            partitions: partitions.to_vec(),
            at: base + Duration::from_millis(ms),
        })
    }

    #[test]
    fn stable_needs_one_generation_and_every_partition() {
        let base = Instant::now();
        let mut v = View::new(2, 3, base);
        assert_eq!(v.stable(-1), None);
        v.members[0].synced = synced(1, &[0, 1, 2], 5, base);
        assert_eq!(v.stable(-1), None, "member 1 has not joined");
        v.members[1].synced = synced(2, &[2], 9, base);
        assert_eq!(v.stable(-1), None, "different generations");
        v.members[0].synced = synced(2, &[0, 1], 7, base);
        assert_eq!(v.stable(-1), Some((2, base + Duration::from_millis(9))));
        assert_eq!(v.stable(2), None, "not newer than generation 2");
        v.members[1].left = true;
        assert_eq!(v.stable(1), None, "partition 2 is not held");
        v.members[0].synced = synced(3, &[0, 1, 2], 20, base);
        assert_eq!(v.stable(2), Some((3, base + Duration::from_millis(20))));
        assert_eq!(v.newest_generation(), 3);
    }

    #[test]
    fn grid_points_follow_the_heartbeat_ticks() {
        let grid = Instant::now();
        let at = |ms: u64| grid + Duration::from_millis(ms);
        let off = Duration::from_millis(100);
        assert_eq!(grid_point(grid, grid, Duration::ZERO), grid);
        assert_eq!(grid_point(grid, at(1), Duration::ZERO), at(1000));
        assert_eq!(grid_point(grid, at(2000), Duration::ZERO), at(2000));
        assert_eq!(grid_point(grid, at(50), off), at(100));
        assert_eq!(grid_point(grid, at(150), off), at(1100));
        assert_eq!(grid_point(grid, at(3100), off), at(3100));
    }

    #[test]
    fn last_told_needs_every_remaining_member() {
        let base = Instant::now();
        let mut v = View::new(3, 1, base);
        let sent = base + Duration::from_millis(10);
        v.members[0].told_at = Some(base + Duration::from_millis(30));
        v.members[1].told_at = Some(base);
        v.members[2].left = true;
        assert_eq!(v.last_told(sent), None, "member 1 was told before");
        v.members[1].told_at = Some(base + Duration::from_millis(20));
        assert_eq!(v.last_told(sent), Some(base + Duration::from_millis(30)));
    }

    #[test]
    fn completeness_and_the_final_check() {
        let base = Instant::now();
        let mut v = View::new(1, 2, base);
        let (earliest, end) = (vec![0, 5], vec![10, 5]);
        assert!(!v.complete(&earliest, &end));
        v.coverage[0].insert(0, 4);
        v.coverage[0].insert(4, 10);
        assert!(v.complete(&earliest, &end), "partition 1 is empty");
        assert!(check("t", &v.coverage, &earliest, &end, &[10, 5]).is_empty());
        let problems = check("t", &v.coverage, &[0, 3], &end, &[9, 5]);
        assert_eq!(
            problems,
            vec![
                "t-1: 2 offset(s) never consumed: [(3, 5)] of [3, 5)".to_string(),
                "t-0: committed offset 9, end offset 10".to_string()
            ]
        );
        assert!(v
            .describe(&[0, 3], &end)
            .contains("partition 1: not consumed"));
    }
}
