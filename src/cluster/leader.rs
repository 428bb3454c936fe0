//! The leader's rules, as pure state: no I/O, no awaits, no clock.
//!
//! Every node holds one [`Leader`]; it acts only while the node leads
//! ([`became_leader`](Leader::became_leader) to
//! [`lost_leadership`](Leader::lost_leadership)). Inputs are what the node
//! task observes (gossip members and events, the Raft membership, the
//! replicated state, liveness reports, acknowledgements, finished writes,
//! operator requests, a tick), each with the time `now`; outputs are
//! [`Action`]s the node task carries out in order. The rules:
//!
//! - Owners: every Raft member that gossip shows alive, liveness has not
//!   found dead, not removed by an operator and not excluded for a missed
//!   acknowledgement; a member gossip does not know yet keeps its place in
//!   the newest map (a restarted leader drops nobody).
//! - A new map is proposed, after `reshard_debounce`, only when the owners or
//!   their weights differ from the newest map (so a restart or a leader
//!   change moves nothing), placed from the committed map by the configured
//!   [`Placement`](crate::shards::Placement) (default: weighted, minimal
//!   moves); a map the strategy gets wrong is refused and the built-in
//!   places it instead.
//! - Hand-over: the owners in the new map and every live owner losing shards
//!   must acknowledge; a losing owner that is not live has its serving lease
//!   waited out ([`Tracker`]). Silent owners are excluded after
//!   `ack_timeout` and a new map follows without them.
//! - After an election the previous leader is treated as dead until it
//!   answers a liveness probe; after a hand-over (step-down) it is not.
//! - Membership: new Raft-capable members join as learners once they pass
//!   the admission check ([`Admission`]), at most
//!   `max_voters` vote, spread over zones; members gone for `removal_grace`
//!   (or removed by an operator) leave Raft.
//! - The cluster id is written before any map.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use super::admission::Admission;
use super::ids::raft_id;
use super::reshard::{Step, Tracker};
use super::tags::{self, NodeTags};
pub(super) use super::voters::MembershipChange;
use super::{voters, ClusterError, ClusterEvent};
use crate::config::Config;
use crate::gossip::{Member, MemberEvent, MemberEventKind};
use crate::liveness::LivenessEvent;
use crate::raft::{AdmitError, ClusterState, Membership, NodeId, RaftNodeInfo, Response};
use crate::shards::ShardMap;

/// How long after an election the first map waits (see `became_leader`).
pub(super) const FIRST_MAP_AFTER: Duration = Duration::from_millis(15);
/// How often the leader re-checks membership with no other trigger.
pub(super) const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed leader write before trying again.
pub(super) const RETRY_AFTER: Duration = Duration::from_millis(50);

/// What the leader's rules read, borrowed from the node task for one call.
pub(super) struct Inputs<'a> {
    /// Gossip members (any status), this node included.
    pub members: &'a [Member],
    /// The Raft membership, once this node is in Raft.
    pub membership: Option<&'a Membership>,
    /// The newest replicated state (registry weights, last epoch, id).
    pub state: Option<&'a ClusterState>,
    /// The committed map this node applied.
    pub committed: Option<&'a ShardMap>,
    /// The pending proposal this node applied.
    pub pending: Option<&'a ShardMap>,
    /// The cluster id this node applied.
    pub cluster_id: Option<&'a str>,
    /// Until when a node may still serve under a lease this leader granted
    /// (`RaftNode::lease_bound`); `None` when unknown.
    pub lease_bound: &'a dyn Fn(NodeId) -> Option<Instant>,
}

/// A leader write in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    ClusterId,
    Propose(u64),
    Commit(u64),
}

/// What the leader asks the node task to do.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Append `SetClusterId` (the answer comes back as [`Write::ClusterId`]).
    SetClusterId(String),
    /// Append `Propose{epoch, map}`.
    Propose { epoch: u64, map: ShardMap },
    /// Append `Commit{epoch}`.
    Commit(u64),
    /// Change the Raft membership in a background job.
    ChangeMembership(MembershipChange),
    /// Run the admission check of a node to add, in a background job (the
    /// answer comes back through [`Leader::on_admitted`]).
    Admit {
        info: RaftNodeInfo,
        cluster_id: Option<String>,
    },
    /// Stop probing every liveness target.
    ClearLiveness,
    /// Probe this node at this address.
    Watch(String, SocketAddr),
    /// Stop probing this node.
    Unwatch(String),
    /// Publish an event.
    Emit(ClusterEvent),
    /// A map committed `took` after it was proposed, moving `moved` shards.
    RecordReshard { took: Duration, moved: u64 },
    /// A liveness transition (`true`: alive again).
    RecordLiveness(bool),
}

/// The leader's counters (part of [`NodeStats`](super::NodeStats)).
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    pub proposals: u64,
    pub commits: u64,
    pub ack_timeouts: u64,
    pub write_failures: u64,
    pub membership_failures: u64,
    pub placement_refused: u64,
}

/// The leader's state and rules.
pub(super) struct Leader {
    cfg: Config,
    me: String,
    active: bool,
    /// The last leader other than this node (the suspect after an election).
    last_leader: Option<String>,
    tracker: Tracker,
    dirty_at: Option<Instant>,
    last_reconcile: Instant,
    write_busy: bool,
    commit_wanted: Option<u64>,
    /// When [`tick`](Self::tick) last ran.
    last_tick: Option<Instant>,
    membership_busy: bool,
    targets: BTreeMap<String, SocketAddr>,
    dead_since: BTreeMap<String, Instant>,
    /// Previous leaders treated as dead until they answer a probe.
    suspected: BTreeSet<String>,
    /// When this node took over, and the members its liveness checker has
    /// heard from since: a member not heard from yet (still restarting
    /// after a full-cluster restart, say) found dead within `voter_grace`
    /// of the take-over keeps its shards until then (`unheard`), so a
    /// restart does not move maps. A member this leader has heard from is
    /// dropped as soon as it dies.
    led_since: Option<Instant>,
    heard: BTreeSet<String>,
    unheard: BTreeMap<String, Instant>,
    gone_since: BTreeMap<String, Instant>,
    removed: BTreeSet<String>,
    proposed_at: BTreeMap<u64, Instant>,
    admission: Admission,
    pub(super) counts: Counters,
}

impl Leader {
    pub fn new(cfg: Config, now: Instant) -> Leader {
        Leader {
            me: cfg.node_id.clone(),
            cfg,
            active: false,
            last_leader: None,
            tracker: Tracker::default(),
            dirty_at: None,
            last_reconcile: now,
            write_busy: false,
            commit_wanted: None,
            last_tick: None,
            membership_busy: false,
            targets: BTreeMap::new(),
            dead_since: BTreeMap::new(),
            suspected: BTreeSet::new(),
            led_since: None,
            heard: BTreeSet::new(),
            unheard: BTreeMap::new(),
            gone_since: BTreeMap::new(),
            removed: BTreeSet::new(),
            proposed_at: BTreeMap::new(),
            admission: Admission::default(),
            counts: Counters::default(),
        }
    }

    /// Whether this node leads (between `became_leader` and
    /// `lost_leadership`).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether a previous leader is suspected (the tick then wants to know
    /// who answers liveness probes).
    #[cfg(test)]
    pub fn has_suspects(&self) -> bool {
        !self.suspected.is_empty()
    }

    /// When the leader next needs a tick.
    pub fn next_wake(&self) -> Option<Instant> {
        // A deadline the last tick already saw can only be acted on after
        // an event (a write done, an ack), and every event ticks: waking
        // for it again would spin the node loop (a leader whose write
        // hangs without a quorum: for good).
        let debounce = self.dirty_at.map(|d| d + self.cfg.reshard_debounce);
        [debounce, self.tracker.next_deadline()]
            .into_iter()
            .chain(self.unheard.values().map(|t| Some(*t)))
            .flatten()
            .filter(|t| self.last_tick.is_none_or(|l| *t > l))
            .min()
    }

    /// The Raft leader is now `leader` (as this node sees it).
    pub fn on_leader(&mut self, leader: Option<&str>) {
        if let Some(l) = leader.filter(|l| *l != self.me) {
            self.last_leader = Some(l.to_string());
        }
    }

    /// Something changed that may call for a new map or membership.
    pub fn mark_dirty(&mut self, now: Instant) {
        if self.active && self.dirty_at.is_none() {
            self.dirty_at = Some(now);
        }
    }

    /// This node just became leader. `handed_over`: the previous leader
    /// asked for this election (step-down), so it is alive.
    pub fn became_leader(&mut self, ins: &Inputs, now: Instant, handed_over: bool) -> Vec<Action> {
        info!(previous = ?self.last_leader, "became leader");
        self.active = true;
        self.tracker.reset();
        self.dead_since.clear();
        self.suspected.clear();
        self.led_since = Some(now);
        self.heard.clear();
        self.unheard.clear();
        // An election means the previous leader went quiet: treat it as dead
        // until it answers a liveness probe, instead of waiting for
        // `retries` missed probes. A false suspicion costs one extra map.
        // A hand-over (step-down) says the previous leader is alive: then a
        // leader change moves no shard.
        if let Some(prev) = self.last_leader.clone().filter(|_| !handed_over) {
            self.dead_since.insert(prev.clone(), now);
            self.suspected.insert(prev);
        }
        self.targets.clear();
        self.write_busy = false;
        self.commit_wanted = None;
        self.membership_busy = false;
        self.admission.reset();
        let mut out = vec![Action::ClearLiveness];
        self.sync_targets(ins, &mut out);
        // The first map waits a moment: a suspected previous leader that is
        // alive (a step-down without the hint, a leader stalled under load)
        // accepts this leader's first AppendEntries within a round trip,
        // which clears the suspicion before anything moves.
        self.dirty_at = Some(now + FIRST_MAP_AFTER);
        out
    }

    /// This node no longer leads.
    pub fn lost_leadership(&mut self) -> Vec<Action> {
        info!("no longer leader");
        self.active = false;
        self.tracker.reset();
        self.dirty_at = None;
        self.targets.clear();
        self.dead_since.clear();
        self.suspected.clear();
        vec![Action::ClearLiveness]
    }

    /// A gossip member event: events for the application, and when members
    /// went away (for `removal_grace`).
    pub fn on_member_event(&mut self, ev: &MemberEvent, now: Instant) -> Vec<Action> {
        let name = ev.member.name.clone();
        if name == self.me || ev.member.tags.get(tags::CLUSTER) != Some(&self.cfg.cluster_name) {
            return Vec::new();
        }
        let out = match ev.kind {
            MemberEventKind::Join => {
                self.gone_since.remove(&name);
                Some(ClusterEvent::MemberJoined(name))
            }
            MemberEventKind::Leave => {
                self.gone_since.insert(name.clone(), now);
                Some(ClusterEvent::MemberLeft(name))
            }
            MemberEventKind::Failed => {
                self.gone_since.insert(name.clone(), now);
                Some(ClusterEvent::MemberFailed(name))
            }
            MemberEventKind::Updated => Some(ClusterEvent::MemberUpdated(name)),
            MemberEventKind::AliveAgain => {
                self.gone_since.remove(&name);
                Some(ClusterEvent::MemberAlive(name))
            }
            MemberEventKind::Suspect => None,
        };
        match out {
            Some(ev) => {
                self.mark_dirty(now);
                vec![Action::Emit(ev)]
            }
            None => Vec::new(),
        }
    }

    /// A liveness verdict from the checker.
    pub fn on_liveness(&mut self, ev: LivenessEvent, now: Instant) -> Vec<Action> {
        let out = match ev {
            LivenessEvent::Dead(id)
                if !self.heard.contains(&id)
                    && self
                        .led_since
                        .is_some_and(|t| now < t + self.cfg.voter_grace) =>
            {
                let until = self.led_since.map_or(now, |t| t + self.cfg.voter_grace);
                info!(peer = %id, "liveness: not heard from since the take-over; waiting");
                self.unheard.insert(id, until);
                return Vec::new();
            }
            LivenessEvent::Dead(id) => {
                warn!(peer = %id, "liveness: dead");
                self.dead_since.entry(id.clone()).or_insert(now);
                vec![
                    Action::RecordLiveness(false),
                    Action::Emit(ClusterEvent::MemberFailed(id)),
                ]
            }
            LivenessEvent::Alive(id) => {
                info!(peer = %id, "liveness: alive again");
                self.unheard.remove(&id);
                self.heard.insert(id.clone());
                self.dead_since.remove(&id);
                self.suspected.remove(&id);
                self.tracker.readmit(&id);
                vec![
                    Action::RecordLiveness(true),
                    Action::Emit(ClusterEvent::MemberAlive(id)),
                ]
            }
        };
        self.mark_dirty(now);
        out
    }

    /// An operator asks to (re)admit `node`, which gossip must know.
    pub fn add_node(
        &mut self,
        ins: &Inputs,
        node: String,
        now: Instant,
    ) -> Result<(), ClusterError> {
        if !ins.members.iter().any(|m| m.name == node) {
            return Err(ClusterError::UnknownNode(node));
        }
        self.removed.remove(&node);
        self.mark_dirty(now);
        Ok(())
    }

    /// An operator asks to remove `node`, which must be in Raft, from Raft
    /// and from the shard map.
    pub fn remove_node(
        &mut self,
        ins: &Inputs,
        node: String,
        now: Instant,
    ) -> Result<(), ClusterError> {
        let known = ins
            .membership
            .is_some_and(|m| m.get_node(&raft_id(&node)).is_some());
        if !known {
            return Err(ClusterError::UnknownNode(node));
        }
        self.removed.insert(node);
        self.mark_dirty(now);
        Ok(())
    }

    /// `node` acknowledged the proposal of `epoch`.
    pub fn on_ack(&mut self, node: &str, epoch: u64, now: Instant) -> Vec<Action> {
        if !self.active {
            return Vec::new();
        }
        debug!(from = node, epoch, "ack");
        if self.tracker.is_excluded(node, now) {
            // It reaches the leader again (see `Follower::ready_ack`): no
            // need to wait out the rest of its back-off, nor for a probe
            // answer.
            info!(node, "an excluded node acknowledges again; readmitting it");
            self.tracker.readmit(node);
            self.heard.insert(node.to_string());
            self.mark_dirty(now);
        }
        match self.tracker.on_ack(node, epoch, now) {
            Step::Commit(e) => self.commit(e),
            _ => Vec::new(),
        }
    }

    /// This node applied the commit of `epoch`, which moved `moved` shards.
    pub fn on_committed(&mut self, epoch: u64, moved: u32, now: Instant) -> Vec<Action> {
        if !self.active {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.tracker.committed(epoch);
        if let Some(at) = self.proposed_at.remove(&epoch) {
            out.push(Action::RecordReshard {
                took: now.saturating_duration_since(at),
                moved: u64::from(moved),
            });
        }
        self.proposed_at.retain(|e, _| *e > epoch);
        out
    }

    /// A leader write finished.
    pub fn on_write_done(
        &mut self,
        what: Write,
        result: &Result<Response, String>,
        now: Instant,
    ) -> Vec<Action> {
        self.write_busy = false;
        match (&what, result) {
            (Write::Propose(e), Ok(Response::Proposed { .. })) => {
                self.counts.proposals += 1;
                info!(epoch = e, "proposed shard map");
            }
            (Write::Commit(e), Ok(Response::Committed { .. })) => {
                self.counts.commits += 1;
                debug!(epoch = e, "commit written");
            }
            (_, Ok(Response::ProposalRejected { epoch, last_epoch })) => {
                warn!(epoch, last_epoch, "proposal rejected; proposing again");
                self.tracker.reset();
                self.retry_later(now);
            }
            (_, Ok(Response::PatchRefused { .. })) => {
                self.tracker.reset();
                self.retry_later(now);
            }
            (_, Ok(_)) => {}
            (what, Err(e)) => {
                self.counts.write_failures += 1;
                warn!(?what, error = %e, "leader write failed");
                if matches!(what, Write::Propose(_)) {
                    self.tracker.reset();
                }
                self.retry_later(now);
            }
        }
        match self.commit_wanted.take() {
            Some(e) => self.commit(e),
            None => Vec::new(),
        }
    }

    /// A membership change job finished.
    pub fn on_membership_done(&mut self, result: Result<(), String>, now: Instant) {
        self.membership_busy = false;
        if let Err(e) = result {
            self.counts.membership_failures += 1;
            debug!(error = %e, "membership change failed");
            self.retry_later(now);
        }
    }

    /// The admission check of `info` finished.
    pub fn on_admitted(
        &mut self,
        info: &RaftNodeInfo,
        result: &Result<(), AdmitError>,
        now: Instant,
    ) {
        self.admission.on_result(info, result, now);
        if result.is_ok() {
            self.mark_dirty(now);
        }
    }

    /// The periodic step. `answering(name)`: the liveness checker has a
    /// reply from `name` (clears a suspected previous leader).
    pub fn tick(
        &mut self,
        ins: &Inputs,
        now: Instant,
        answering: &dyn Fn(&str) -> bool,
    ) -> Vec<Action> {
        self.last_tick = Some(now);
        let back: Vec<String> = self
            .suspected
            .iter()
            .filter(|n| answering(n))
            .cloned()
            .collect();
        for n in back {
            info!(peer = %n, "previous leader answers; no longer suspected");
            self.suspected.remove(&n);
            self.dead_since.remove(&n);
            self.mark_dirty(now);
        }
        let mut out = Vec::new();
        if !self.active {
            return out;
        }
        let mut newly_heard = false;
        for n in self.targets.keys() {
            if answering(n) {
                newly_heard |= self.heard.insert(n.clone());
            }
        }
        if newly_heard {
            // A member left out until heard from may join the map now.
            self.mark_dirty(now);
        }
        self.unheard.retain(|n, _| !self.heard.contains(n));
        let due: Vec<String> = self
            .unheard
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            self.unheard.remove(&n);
            out.extend(self.on_liveness(LivenessEvent::Dead(n), now));
        }
        match self.tracker.on_tick(now, self.cfg.exclude_backoff) {
            Step::Commit(e) => out.extend(self.commit(e)),
            Step::Repropose(silent) => {
                self.counts.ack_timeouts += 1;
                warn!(silent = ?silent, "no acknowledgement in time; dropping them");
                self.dirty_at = Some(now);
            }
            Step::Readmit(back) => {
                info!(back = ?back, "exclusion over; proposing with them again");
                self.dirty_at = Some(now);
            }
            Step::Wait => {}
        }
        if now.duration_since(self.last_reconcile) >= RECONCILE_EVERY {
            self.mark_dirty(now);
        }
        if self
            .dirty_at
            .is_some_and(|d| now >= d + self.cfg.reshard_debounce)
            && !self.write_busy
        {
            self.dirty_at = None;
            self.last_reconcile = now;
            self.sync_targets(ins, &mut out);
            self.reconcile_membership(ins, now, &mut out);
            self.leader_writes(ins, now, &mut out);
        }
        out
    }

    fn retry_later(&mut self, now: Instant) {
        if self.active {
            self.dirty_at = Some(now + RETRY_AFTER);
        }
    }

    fn commit(&mut self, epoch: u64) -> Vec<Action> {
        if self.write_busy {
            self.commit_wanted = Some(epoch);
            return Vec::new();
        }
        self.write_busy = true;
        vec![Action::Commit(epoch)]
    }

    /// The leader's liveness targets: every Raft member but itself.
    fn sync_targets(&mut self, ins: &Inputs, out: &mut Vec<Action>) {
        let mut want = BTreeMap::new();
        if let Some(ms) = ins.membership {
            for (_, info) in ms.nodes() {
                if info.name == self.me {
                    continue;
                }
                let addr = ins
                    .members
                    .iter()
                    .find(|m| m.name == info.name)
                    .and_then(|m| NodeTags::parse(&m.tags).liveness_addr)
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    want.insert(info.name.clone(), addr);
                }
            }
        }
        for (name, addr) in &self.targets {
            if want.get(name) != Some(addr) {
                out.push(Action::Unwatch(name.clone()));
                self.dead_since.remove(name);
            }
        }
        for (name, addr) in &want {
            if self.targets.get(name) != Some(addr) {
                out.push(Action::Watch(name.clone(), *addr));
                // A fresh watch judges it afresh: a "dead" from before (a
                // verdict that arrived after the node was removed, say) would
                // otherwise keep a re-added node out of every map, since
                // only a dead-to-alive change clears it. A suspected
                // previous leader stays suspected until it answers.
                if !self.suspected.contains(name) {
                    self.dead_since.remove(name);
                }
            }
        }
        self.targets = want;
    }

    /// Whether `name` counts as healthy for voting and owning shards.
    fn healthy(&self, ins: &Inputs, name: &str, now: Instant, grace: Duration) -> bool {
        if name == self.me {
            return true;
        }
        // A member gossip does not know (yet: this node may have just
        // restarted) is not evidence of failure; only gossip's verdict or
        // the liveness checker's is.
        let gone = ins
            .members
            .iter()
            .any(|m| m.name == name && m.status.is_gone());
        let dead_long = self
            .dead_since
            .get(name)
            .is_some_and(|t| now.duration_since(*t) >= grace);
        !gone && !dead_long && !self.removed.contains(name)
    }

    /// Adds new Raft-capable members as learners, keeps the voter set and
    /// removes members gone for longer than `removal_grace` (see
    /// [`voters::plan`]), one change at a time.
    fn reconcile_membership(&mut self, ins: &Inputs, now: Instant, out: &mut Vec<Action>) {
        if self.membership_busy {
            return;
        }
        let Some(membership) = ins.membership else {
            return;
        };
        let healthy = |n: &str| self.healthy(ins, n, now, self.cfg.voter_grace);
        let gone_long = |n: &str| {
            self.gone_since
                .get(n)
                .is_some_and(|t| now.duration_since(*t) >= self.cfg.removal_grace)
        };
        let facts = voters::Facts {
            me: &self.me,
            cluster: &self.cfg.cluster_name,
            cluster_id: ins.cluster_id,
            members: ins.members,
            membership,
            max_voters: self.cfg.max_voters,
            removed: &self.removed,
            healthy: &healthy,
            gone_long: &gone_long,
        };
        let Some((mut change, voters)) = voters::plan(&facts) else {
            return;
        };
        // New members join only once they passed the admission check.
        let (ready, check) = self.admission.split(std::mem::take(&mut change.add), now);
        change.add = ready;
        for info in check {
            let cluster_id = ins.cluster_id.map(str::to_string);
            out.push(Action::Admit { info, cluster_id });
        }
        if change.is_empty() {
            return;
        }
        self.admission
            .added(change.add.iter().map(|(_, i)| i.name.as_str()));
        self.membership_busy = true;
        info!(
            add = change.add.len(),
            remove = change.remove.len(),
            readdressed = change.readdress.len(),
            voters = ?voters,
            "membership change"
        );
        out.push(Action::ChangeMembership(change));
    }
}

#[path = "leader_maps.rs"]
mod maps;

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
