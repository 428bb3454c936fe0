//! The node task: owns the coordinator's state and carries out what the
//! rules decide.
//!
//! Inputs arrive on channels (gossip members and events, Raft metrics and
//! replicated state, liveness events, acknowledgements, handle requests,
//! finished background jobs) and a tick. The decisions are made by two pure
//! engines, [`Leader`](super::leader::Leader) and
//! [`Follower`](super::follower::Follower), which take each input with the
//! time and return what to do; this task does it: Raft writes and
//! membership changes run as jobs it owns (the loop never waits on the
//! network), liveness targets, gossip tags, `watch` channels and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn, Instrument};

use super::bootstrap::Settle;
use super::follower::{Follower, StateInputs};
use super::ids::raft_id;
use super::jobs::{self, Done};
use super::leader::{Action, Inputs, Leader, MembershipChange, Write};
use super::restore::{self, DrainMark};
use super::serving::ServingSet;
use super::tags;
use super::view;
use super::{ClusterEvent, NodeInfo, NodeState, Role, ToNode};
use crate::config::Config;
use crate::discovery::{Discovery, DiscoveryEvent};
use crate::gossip::{Gossip, Member, MemberEvent};
use crate::liveness::{Checker, LivenessEvent, Responder, TargetStatus};
use crate::metrics::{Metrics, StatusView};
use crate::raft::{
    Ack, AdmitError, ClusterState, Command, Membership, RaftMetrics, RaftNode, RaftNodeInfo,
};
use crate::shards::ShardMap;

/// How often the node task wakes up with nothing else to do.
const TICK: Duration = Duration::from_millis(50);
/// How often the status view and metrics are refreshed.
pub(super) const STATUS_EVERY: Duration = Duration::from_millis(500);
/// Pause before bootstrapping again after a failed attempt.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(1);

/// Counters of the coordinator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStats {
    /// Maps this node proposed as leader.
    pub proposals: u64,
    /// Maps this node committed as leader.
    pub commits: u64,
    /// Proposals abandoned because some node did not acknowledge in time.
    pub ack_timeouts: u64,
    /// Acknowledgements this node sent.
    pub acks_sent: u64,
    /// Acknowledgements that could not be delivered.
    pub acks_failed: u64,
    /// Leader writes that failed.
    pub write_failures: u64,
    /// Membership changes that failed.
    pub membership_failures: u64,
    /// Maps the configured placement strategy got wrong (refused; the
    /// built-in weighted rebalance placed them instead).
    pub placement_refused: u64,
    /// Events published while nobody subscribed (lagging subscribers see
    /// `RecvError::Lagged` instead).
    pub events_without_receivers: u64,
    /// Hand-off events the service's queue refused.
    pub handoff_dropped: u64,
    /// Hand-off releases that ran past their deadline.
    pub handoff_release_timeouts: u64,
}

/// The node task's state; built by [`startup`](super::startup).
pub(super) struct Node {
    pub(super) cfg: Config,
    pub(super) me: String,
    pub(super) gossip: Gossip,
    pub(super) raft: Option<Arc<RaftNode>>,
    pub(super) checker: Option<(Checker, mpsc::Receiver<LivenessEvent>)>,
    pub(super) responder: Option<Responder>,
    pub(super) acks: mpsc::Receiver<Ack>,
    pub(super) member_events: mpsc::Receiver<MemberEvent>,
    pub(super) discovery: Option<(Box<dyn Discovery>, mpsc::Receiver<DiscoveryEvent>)>,
    pub(super) metrics: Metrics,
    pub(super) requests: mpsc::Receiver<ToNode>,
    pub(super) events: broadcast::Sender<ClusterEvent>,
    pub(super) state_tx: watch::Sender<NodeState>,
    pub(super) role_tx: watch::Sender<Role>,
    pub(super) leader_tx: watch::Sender<Option<String>>,
    pub(super) map_tx: watch::Sender<Option<Arc<ShardMap>>>,
    pub(super) serving_tx: watch::Sender<Arc<ServingSet>>,
    pub(super) status_tx: watch::Sender<StatusView>,
    pub(super) done_tx: mpsc::Sender<Done>,
    pub(super) done_rx: mpsc::Receiver<Done>,
    pub(super) jobs: JoinSet<()>,

    pub(super) members_rx: watch::Receiver<Arc<Vec<Member>>>,
    pub(super) members: Arc<Vec<Member>>,
    pub(super) raft_metrics: Option<watch::Receiver<RaftMetrics>>,
    pub(super) cluster_state: Option<watch::Receiver<Arc<ClusterState>>>,
    pub(super) tags: BTreeMap<String, String>,
    pub(super) membership: Option<Membership>,
    pub(super) leader: Option<String>,
    pub(super) boot: Settle,
    pub(super) bootstrapping: bool,

    /// The leader's rules (acting while this node leads).
    pub(super) lead: Leader,
    /// This node's view of the maps.
    pub(super) follow: Follower,
    /// Where a graceful stop records its drain (see `restore`).
    pub(super) drain_mark: Option<DrainMark>,
    /// A previous stop's drain still to undo (the registry weight before
    /// it) and when to try next.
    pub(super) undo_drain: Option<(Option<u32>, Instant)>,

    pub(super) last_status: Instant,
    pub(super) started: Instant,
    /// The runtime's own counters (`acks_failed`, `events_without_receivers`);
    /// the engines keep the rest.
    pub(super) stats: NodeStats,
    /// The service's hand-off hooks, when one registered.
    pub(super) handoff: Option<super::handoff::Hooks>,
    /// The state machine refused the last patch: propose the whole map next.
    pub(super) whole_map_next: bool,
}

impl Node {
    pub(super) async fn run(mut self) {
        self.set_state(NodeState::Joining);
        // The state loaded from disk (a restart) is the starting point: the
        // watch announces only later changes.
        self.on_raft_metrics().await;
        self.on_cluster_state().await;
        self.start_join();
        let mut stop_reply = None;
        let mut stop_by = None;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                req = self.requests.recv() => match req {
                    Some(ToNode::Stop(reply)) => {
                        stop_reply = Some(reply);
                        stop_by = Some(self.begin_stop());
                    }
                    Some(ToNode::Request(req)) => self.on_request(req).await,
                    Some(ToNode::Crash(reply)) => {
                        self.serving_tx.send_replace(Arc::new(ServingSet::default()));
                        self.teardown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => break,
                },
                changed = self.members_rx.changed() => {
                    if changed.is_err() { break; }
                    self.on_members();
                }
                Some(ev) = self.member_events.recv() => {
                    let actions = self.lead.on_member_event(&ev, Instant::now());
                    self.execute(actions).await;
                }
                Some(()) = changed(&mut self.raft_metrics) => self.on_raft_metrics().await,
                Some(()) = changed(&mut self.cluster_state) => self.on_cluster_state().await,
                Some(ev) = recv(self.checker.as_mut().map(|c| &mut c.1)) => {
                    let actions = self.lead.on_liveness(ev, Instant::now());
                    self.execute(actions).await;
                }
                Some(ack) = self.acks.recv() => {
                    let actions = self.lead.on_ack(&ack.node, ack.epoch, Instant::now());
                    self.execute(actions).await;
                }
                Some(done) = self.done_rx.recv() => self.on_done(done).await,
                Some(ev) = recv(self.discovery.as_mut().map(|d| &mut d.1)) => self.on_discovered(ev),
                Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_tick().await;
            if let Some(deadline) = stop_by {
                // Without a leader nothing can move our shards: don't wait.
                if self.follow.drained() || self.leader.is_none() {
                    break;
                }
                if Instant::now() >= deadline {
                    warn!("drain did not finish in time");
                    break;
                }
            }
        }
        self.shutdown().await;
        if let Some(reply) = stop_reply {
            let _ = reply.send(());
        }
    }

    fn next_wake(&self) -> Instant {
        let wake = Instant::now() + TICK;
        self.lead.next_wake().map_or(wake, |w| wake.min(w))
    }

    /// Runs `f` on the leader engine with what it reads from this node.
    pub(super) fn with_leader<R>(&mut self, f: impl FnOnce(&mut Leader, &Inputs<'_>) -> R) -> R {
        let state = self.cluster_state.as_ref().map(|rx| rx.borrow().clone());
        let raft = self.raft.clone();
        let lease_bound = move |id| raft.as_ref().and_then(|r| r.lease_bound(id));
        let ins = Inputs {
            members: &self.members,
            membership: self.membership.as_ref(),
            state: state.as_deref(),
            committed: self.follow.committed().map(Arc::as_ref),
            pending: self.follow.pending().map(Arc::as_ref),
            cluster_id: self.follow.cluster_id(),
            lease_bound: &lease_bound,
        };
        f(&mut self.lead, &ins)
    }

    /// Carries out the leader's actions, in order.
    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SetClusterId(cluster_id) => {
                    self.write(Write::ClusterId, Command::SetClusterId { cluster_id })
                }
                Action::Propose { epoch, map } => {
                    let cmd = self.proposal(epoch, &map);
                    self.write(Write::Propose(epoch), cmd)
                }
                Action::Commit(epoch) => {
                    self.write(Write::Commit(epoch), Command::Commit { epoch })
                }
                Action::ChangeMembership(change) => self.change_membership(change),
                Action::Admit { info, cluster_id } => {
                    if let Some(raft) = self.raft.clone() {
                        self.spawn(jobs::admit(raft, info, cluster_id));
                    }
                }
                Action::ClearLiveness => {
                    if let Some((c, _)) = &self.checker {
                        let _ = c.clear().await;
                    }
                }
                Action::Watch(name, addr) => {
                    if let Some((c, _)) = &self.checker {
                        let _ = c.add(name, addr).await;
                    }
                }
                Action::Unwatch(name) => {
                    if let Some((c, _)) = &self.checker {
                        let _ = c.remove(name).await;
                    }
                }
                Action::Emit(ev) => self.emit(ev),
                Action::RecordReshard { took, moved } => self.metrics.record_reshard(took, moved),
                Action::RecordLiveness(alive) => self.metrics.record_liveness_transition(alive),
            }
        }
    }

    fn emit(&mut self, ev: ClusterEvent) {
        if self.events.send(ev).is_err() {
            self.stats.events_without_receivers += 1;
        }
    }

    pub(super) fn set_state(&mut self, s: NodeState) {
        if self
            .state_tx
            .send_if_modified(|cur| std::mem::replace(cur, s) != s)
        {
            info!(state = %s, "state changed");
            self.metrics.set_node_state(s.as_str());
            // Publish the new state in /status and /healthz at the next tick.
            self.last_status = Instant::now() - STATUS_EVERY;
            self.emit(ClusterEvent::StateChanged(s));
        }
    }

    fn set_role(&mut self, r: Role) {
        if self
            .role_tx
            .send_if_modified(|cur| std::mem::replace(cur, r) != r)
        {
            info!(role = %r, "role changed");
            self.metrics.set_node_role(r.as_str());
            self.emit(ClusterEvent::RoleChanged(r));
        }
    }

    pub(super) fn spawn<F>(&mut self, fut: F)
    where
        F: std::future::Future<Output = Done> + Send + 'static,
    {
        let tx = self.done_tx.clone();
        self.jobs.spawn(
            async move {
                let done = fut.await;
                let _ = tx.send(done).await;
            }
            .in_current_span(),
        );
    }

    /// Joins the configured seeds in the background.
    fn start_join(&mut self) {
        if !self.cfg.join.is_empty() {
            self.spawn(jobs::join_seeds(
                self.gossip.clone(),
                self.cfg.join.clone(),
                self.cfg.retry_join_interval,
                self.cfg.retry_join_max,
            ));
        }
    }

    fn on_discovered(&mut self, ev: DiscoveryEvent) {
        if let DiscoveryEvent::Found(peer) = ev {
            let known = self
                .members
                .iter()
                .any(|m| m.name == peer.node_id && !m.status.is_gone());
            if !known {
                debug!(peer = %peer.node_id, addr = %peer.gossip_addr, "found over mDNS");
                self.spawn(jobs::join_peer(self.gossip.clone(), peer.gossip_addr));
            }
        }
    }

    fn on_members(&mut self) {
        self.members = self.members_rx.borrow_and_update().clone();
        self.bootstrap_check();
        self.lead.mark_dirty(Instant::now());
        self.update_state();
    }

    /// Consul-style bootstrap: see [`bootstrap`](super::bootstrap).
    fn bootstrap_check(&mut self) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        if self.bootstrapping || self.initialized() {
            return;
        }
        let c = &self.cfg;
        let (expect, settle) = (c.bootstrap_expect, c.bootstrap_settle);
        let now = Instant::now();
        let init = self.boot.check(
            &self.me,
            &c.cluster_name,
            expect,
            settle,
            &self.members,
            now,
        );
        if let Some(members) = init {
            self.bootstrapping = true;
            self.spawn(jobs::bootstrap(raft, members, expect));
        }
    }

    fn initialized(&self) -> bool {
        self.membership
            .as_ref()
            .is_some_and(|m| m.voter_ids().next().is_some())
    }

    async fn on_raft_metrics(&mut self) {
        let Some(rx) = self.raft_metrics.as_mut() else {
            return;
        };
        let m = rx.borrow_and_update().clone();
        let membership = m.membership_config.membership().clone();
        let my_id = raft_id(&self.me);
        let leader = m
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|n| n.name.clone()));
        let was_leader = self.lead.is_active();
        // A leader restarted from disk briefly believes it still leads: act
        // as leader only while a quorum acknowledged us within the lease.
        let is_leader = m.current_leader == Some(my_id)
            && m.state == openraft::ServerState::Leader
            && self.any_lease();
        let role = if is_leader {
            Role::Leader
        } else if membership.voter_ids().any(|id| id == my_id) {
            Role::Voter
        } else if membership.learner_ids().any(|id| id == my_id) {
            Role::Learner
        } else {
            Role::NonMember
        };
        self.membership = Some(membership);
        self.set_role(role);
        self.metrics.raft_term.set(m.current_term as i64);
        self.metrics
            .raft_last_log_index
            .set(m.last_log_index.unwrap_or(0) as i64);
        self.metrics
            .raft_applied_index
            .set(m.last_applied.map(|l| l.index).unwrap_or(0) as i64);
        self.lead.on_leader(leader.as_deref());
        if leader != self.leader {
            info!(leader = ?leader, term = m.current_term, "leader changed");
            self.leader = leader.clone();
            self.leader_tx.send_replace(leader.clone());
            self.metrics.record_leader(leader.as_deref());
            self.emit(ClusterEvent::LeaderChanged(leader.clone()));
            self.set_tag(tags::LEADER, leader.unwrap_or_default()).await;
        }
        let now = Instant::now();
        if is_leader && !was_leader {
            let handed_over = self.raft.as_ref().is_some_and(|r| r.handed_over());
            let actions = self.with_leader(|l, ins| l.became_leader(ins, now, handed_over));
            self.execute(actions).await;
        } else if !is_leader && was_leader {
            let actions = self.lead.lost_leadership();
            self.execute(actions).await;
        }
        self.lead.mark_dirty(now);
        self.update_state();
    }

    pub(super) async fn set_tag(&mut self, key: &str, value: String) {
        let changed = if value.is_empty() {
            self.tags.remove(key).is_some()
        } else {
            self.tags.insert(key.to_string(), value.clone()) != Some(value)
        };
        if changed {
            if let Err(e) = self.gossip.set_tags(self.tags.clone()).await {
                warn!(error = %e, key, "could not publish tags");
            }
        }
    }

    async fn on_cluster_state(&mut self) {
        let Some(rx) = self.cluster_state.as_mut() else {
            return;
        };
        let st = rx.borrow_and_update().clone();
        let previous = self.follow.committed().cloned();
        let applied = self.follow.apply(&st);
        if let Some(id) = applied.cluster_id {
            self.set_tag(tags::CLUSTER_ID, id).await;
        }
        let now = Instant::now();
        if let Some(c) = applied.committed {
            let epoch = c.map.epoch();
            self.metrics.committed_epoch.set(epoch as i64);
            self.metrics.shards.set(i64::from(c.map.shard_count()));
            self.metrics.shards_owned.set(c.mine as i64);
            self.handoff_committed(previous.as_deref(), &c.map);
            self.map_tx.send_replace(Some(c.map));
            let actions = self.lead.on_committed(epoch, c.moved, now);
            self.execute(actions).await;
            self.emit(ClusterEvent::MapCommitted {
                epoch,
                moved: c.moved,
            });
        }
        // Every applied batch: the set names the index it reflects, which
        // lets leases granted for that index count. It is in force before
        // the acknowledgement leaves.
        self.serving_tx.send_if_modified(|cur| {
            if **cur != applied.serving {
                *cur = Arc::new(applied.serving);
                true
            } else {
                false
            }
        });
        if let Some(epoch) = applied.ack {
            self.ack_after_release(epoch).await;
        }
        self.lead.mark_dirty(now);
        self.update_state();
    }

    /// Whether a serving lease holds for the state this node serves from.
    fn serving_lease(&self) -> bool {
        let applied = self.serving_tx.borrow().applied();
        self.raft
            .as_ref()
            .is_some_and(|r| r.serving_until(applied).is_some())
    }

    /// Whether any serving lease holds (as leader: a quorum confirmed this
    /// node within the lease), whatever state it was granted for.
    fn any_lease(&self) -> bool {
        self.raft
            .as_ref()
            .is_some_and(|r| r.serving_until(u64::MAX).is_some())
    }

    /// Sends the acknowledgement of `epoch` to the leader (to the engine
    /// directly when this node leads).
    async fn send_ack(&mut self, epoch: u64) {
        if self.lead.is_active() {
            let me = self.me.clone();
            let actions = self.lead.on_ack(&me, epoch, Instant::now());
            self.execute(actions).await;
            return;
        }
        let Some(raft) = self.raft.clone() else {
            return;
        };
        self.spawn(jobs::ack(raft, epoch));
    }

    /// The command that proposes `map`: a patch against the committed map
    /// when that is smaller than the whole map (the usual case: a failover
    /// or a weight change moves a small share of the shards), else the
    /// whole map. The state machine turns a patch back into the whole map.
    fn proposal(&mut self, epoch: u64, map: &ShardMap) -> Command {
        let whole = map.encode();
        let committed = self
            .cluster_state
            .as_ref()
            .and_then(|rx| rx.borrow().committed.clone());
        if let (false, Some((base_epoch, base))) =
            (std::mem::take(&mut self.whole_map_next), committed)
        {
            let patch = ShardMap::decode(&base).and_then(|base| map.encode_patch(&base));
            if let Some(patch) = patch.ok().filter(|p| p.len() < whole.len()) {
                return Command::ProposePatch {
                    epoch,
                    base_epoch,
                    patch: patch.into(),
                };
            }
        }
        Command::Propose {
            epoch,
            map: whole.into(),
        }
    }

    fn write(&mut self, what: Write, cmd: Command) {
        if let Some(raft) = self.raft.clone() {
            self.spawn(jobs::write(raft, what, cmd));
        }
    }

    /// A restart after a graceful stop gives the node its weight back, once
    /// it is in Raft and a leader is known.
    fn undo_drain_if_due(&mut self, now: Instant) {
        let Some((before, at)) = self.undo_drain else {
            return;
        };
        let stopping = *self.state_tx.borrow() == NodeState::Stopping;
        let in_raft = self
            .membership
            .as_ref()
            .is_some_and(|m| m.get_node(&raft_id(&self.me)).is_some());
        let Some(raft) = self.raft.clone() else {
            return;
        };
        if now < at || stopping || !in_raft || self.leader.is_none() {
            return;
        }
        self.undo_drain = Some((before, now + Duration::from_secs(1)));
        info!(weight = ?before, "undoing the drain of the last graceful stop");
        let cmd = restore::undo(&self.me, before, &self.cfg.zone);
        self.spawn(jobs::undo_drain(raft, cmd));
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::DrainUndone(ok) => {
                if ok {
                    self.undo_drain = None;
                    if let Some(Err(e)) = self.drain_mark.as_ref().map(DrainMark::clear) {
                        warn!(error = %e, "could not remove the drain mark");
                    }
                }
            }
            Done::Write(what, result) => {
                if let Ok(crate::raft::Response::PatchRefused { epoch, reason }) = &result {
                    warn!(epoch, %reason, "patch refused; proposing the whole map next");
                    self.whole_map_next = true;
                }
                let actions = self.lead.on_write_done(what, &result, Instant::now());
                self.execute(actions).await;
            }
            Done::Membership(r) => self.lead.on_membership_done(r, Instant::now()),
            Done::Admitted(info, r) => self.admitted(&info, r),
            Done::Bootstrap(r, refused) => {
                self.bootstrapping = false;
                // Refusals are logged once and counted like the leader's.
                let logged = !refused.is_empty();
                for (info, e) in refused {
                    self.admitted(&info, Err(e));
                }
                if let Err(e) = r {
                    if logged {
                        debug!(error = %e, "bootstrap waits for admitted nodes");
                    } else {
                        warn!(error = %e, "bootstrap failed");
                    }
                    self.boot.retry_after(Instant::now() + BOOTSTRAP_RETRY);
                }
            }
            Done::Joined(Ok(n)) => info!(answered = n, "joined gossip"),
            Done::Joined(Err(e)) => warn!(error = %e, "could not join any seed"),
            Done::Released { epoch, in_time } => self.on_released(epoch, in_time).await,
            Done::Acked(ok) => {
                if !ok {
                    self.stats.acks_failed += 1;
                }
            }
        }
    }

    /// An admission check finished (the leader's, or the bootstrap's).
    fn admitted(&mut self, info: &RaftNodeInfo, r: Result<(), AdmitError>) {
        if let Err(e) = &r {
            self.metrics
                .raft_admission_refusals
                .with_label_values(&[e.as_str()])
                .inc();
        }
        self.lead.on_admitted(info, &r, Instant::now());
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        // Leadership also ends when the quorum lease runs out, which no
        // metrics change announces.
        if self.lead.is_active() && !self.any_lease() {
            self.on_raft_metrics().await;
        }
        if !self.initialized() {
            self.bootstrap_check();
        }
        self.undo_drain_if_due(now);
        if self.raft.is_some() && !self.lead.is_active() {
            if let Some(epoch) = self.follow.ready_ack(now, self.cfg.ack_timeout) {
                self.send_ack(epoch).await;
            }
        }
        let snapshot = match &self.checker {
            Some((c, _)) if self.lead.is_active() => Some(c.watch().borrow().clone()),
            _ => None,
        };
        // Alive: it answers liveness probes, or it accepted this leader's
        // AppendEntries (which a restarted or deposed leader does within a
        // round trip of the election, long before a probe round).
        let raft = self.raft.clone();
        let answering = |n: &str| {
            snapshot.as_ref().and_then(|s| s.status(n)) == Some(TargetStatus::Alive)
                || raft
                    .as_ref()
                    .is_some_and(|r| r.responded_this_term(raft_id(n)))
        };
        let actions = self.with_leader(|l, ins| l.tick(ins, now, &answering));
        self.execute(actions).await;
        self.update_state();
        if now.duration_since(self.last_status) >= STATUS_EVERY {
            self.last_status = now;
            self.refresh_status().await;
        }
    }

    /// Runs a membership change the leader decided, as a job.
    fn change_membership(&mut self, change: MembershipChange) {
        if let Some(raft) = self.raft.clone() {
            self.spawn(jobs::change_membership(raft, change));
        }
    }

    fn update_state(&mut self) {
        if *self.state_tx.borrow() == NodeState::Stopping {
            return;
        }
        let in_raft = self
            .membership
            .as_ref()
            .is_some_and(|m| m.get_node(&raft_id(&self.me)).is_some());
        // The lease is looked up only when it decides the state.
        let serving_lease =
            self.cfg.member && in_raft && self.follow.committed().is_some() && self.serving_lease();
        let s = self.follow.state(&StateInputs {
            member: self.cfg.member,
            members: &self.members,
            in_raft,
            serving_lease,
        });
        self.set_state(s);
    }

    pub(super) fn node_infos(&self) -> Vec<NodeInfo> {
        view::node_infos(self.view_input())
    }
}

async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

async fn recv<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[path = "node_status.rs"]
mod status;

#[path = "node_handoff.rs"]
mod handoff_glue;

impl Drop for Node {
    fn drop(&mut self) {
        self.jobs.abort_all();
    }
}
