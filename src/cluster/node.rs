//! The node task: owns the coordinator's state and runs its rules.
//!
//! Inputs arrive on channels (gossip members and events, Raft metrics and
//! replicated state, liveness events, acknowledgements, handle requests,
//! finished background jobs) and a tick; Raft writes and membership changes
//! run as jobs the task owns, so the loop never waits on the network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn, Instrument};

use super::bootstrap::{self, Candidate, Decision};
use super::ids::raft_id;
use super::reshard::{Step, Tracker};
use super::serving::ServingSet;
use super::tags::{self, NodeTags};
use super::{view, voters};
use super::{ClusterError, ClusterEvent, NodeInfo, NodeState, Request, Role, ToNode};
use crate::config::Config;
use crate::discovery::{Discovery, DiscoveryEvent};
use crate::gossip::{endpoint_key, Gossip, Member, MemberEvent, MemberEventKind};
use crate::liveness::{Checker, LivenessEvent, Responder};
use crate::metrics::{Metrics, StatusView};
use crate::raft::{
    Ack, ClusterState, Command, Membership, RaftMetrics, RaftNode, RaftNodeInfo, Response,
};
use crate::shards::{self, ShardMap};

/// How often the node task wakes up with nothing else to do.
const TICK: Duration = Duration::from_millis(50);
/// How often the leader re-checks membership with no other trigger.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Pause after a failed leader write before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(50);
/// How often the status view and metrics are refreshed.
pub(super) const STATUS_EVERY: Duration = Duration::from_millis(500);

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
    /// Events published while nobody subscribed (lagging subscribers see
    /// `RecvError::Lagged` instead).
    pub events_without_receivers: u64,
}

pub(super) enum Done {
    Write(Write, Result<Response, String>),
    Membership(Result<(), String>),
    Bootstrap(Result<(), String>),
    Joined(Result<usize, String>),
    Acked(bool),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Write {
    ClusterId,
    Propose(u64),
    Commit(u64),
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
    /// The last leader other than this node (the suspect after an election).
    pub(super) last_leader: Option<String>,
    pub(super) is_leader: bool,
    pub(super) cluster_id: Option<String>,
    pub(super) committed: Option<Arc<ShardMap>>,
    pub(super) pending: Option<Arc<ShardMap>>,
    /// Highest epoch this node acknowledged.
    pub(super) acked: u64,
    /// Raft log index of the replicated state last seen.
    pub(super) applied: u64,
    pub(super) boot_seen: Option<(Vec<String>, Instant)>,
    pub(super) bootstrapping: bool,

    // Leader state.
    pub(super) tracker: Tracker,
    pub(super) dirty_at: Option<Instant>,
    pub(super) last_reconcile: Instant,
    pub(super) write_busy: bool,
    pub(super) commit_wanted: Option<u64>,
    pub(super) membership_busy: bool,
    pub(super) targets: BTreeMap<String, SocketAddr>,
    pub(super) dead_since: BTreeMap<String, Instant>,
    /// Previous leaders treated as dead until they answer a probe.
    pub(super) suspected: BTreeSet<String>,
    pub(super) gone_since: BTreeMap<String, Instant>,
    pub(super) removed: BTreeSet<String>,
    pub(super) proposed_at: BTreeMap<u64, Instant>,

    pub(super) last_status: Instant,
    pub(super) started: Instant,
    pub(super) stats: NodeStats,
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
                    None => break,
                },
                changed = self.members_rx.changed() => {
                    if changed.is_err() { break; }
                    self.on_members().await;
                }
                Some(ev) = self.member_events.recv() => self.on_member_event(ev),
                Some(()) = changed(&mut self.raft_metrics) => self.on_raft_metrics().await,
                Some(()) = changed(&mut self.cluster_state) => self.on_cluster_state().await,
                Some(ev) = recv(self.checker.as_mut().map(|c| &mut c.1)) => self.on_liveness(ev),
                Some(ack) = self.acks.recv() => self.on_ack(&ack.node, ack.epoch),
                Some(done) = self.done_rx.recv() => self.on_done(done),
                Some(ev) = recv(self.discovery.as_mut().map(|d| &mut d.1)) => self.on_discovered(ev),
                Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_tick().await;
            if let Some(deadline) = stop_by {
                // Without a leader nothing can move our shards: don't wait.
                if self.drained() || self.leader.is_none() {
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
        let mut wake = Instant::now() + TICK;
        if let Some(d) = self.dirty_at {
            wake = wake.min(d + self.cfg.reshard_debounce);
        }
        if let Some(d) = self.tracker.next_deadline() {
            wake = wake.min(d);
        }
        wake
    }

    fn emit(&mut self, ev: ClusterEvent) {
        if self.events.send(ev).is_err() {
            self.stats.events_without_receivers += 1;
        }
    }

    fn set_state(&mut self, s: NodeState) {
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

    fn mark_dirty(&mut self) {
        if self.is_leader && self.dirty_at.is_none() {
            self.dirty_at = Some(Instant::now());
        }
    }

    fn spawn<F>(&mut self, fut: F)
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

    /// Joins the configured seeds in the background, retrying until one
    /// answers (a seed may start later than this node).
    fn start_join(&mut self) {
        if self.cfg.join.is_empty() {
            return;
        }
        let seeds = self.cfg.join.clone();
        let gossip = self.gossip.clone();
        self.spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let mut addrs = Vec::new();
                for s in &seeds {
                    if let Ok(found) = tokio::net::lookup_host(s.as_str()).await {
                        addrs.extend(found);
                    }
                }
                match gossip.join(&addrs).await {
                    Ok(n) => return Done::Joined(Ok(n)),
                    Err(e) if delay > Duration::from_secs(5) => {
                        return Done::Joined(Err(e.to_string()))
                    }
                    Err(e) => debug!(error = %e, "join failed; retrying"),
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        });
    }

    fn on_discovered(&mut self, ev: DiscoveryEvent) {
        if let DiscoveryEvent::Found(peer) = ev {
            let known = self
                .members
                .iter()
                .any(|m| m.name == peer.node_id && !m.status.is_gone());
            if known {
                return;
            }
            debug!(peer = %peer.node_id, addr = %peer.gossip_addr, "found over mDNS");
            let gossip = self.gossip.clone();
            self.spawn(async move {
                Done::Joined(
                    gossip
                        .join(&[peer.gossip_addr])
                        .await
                        .map_err(|e| e.to_string()),
                )
            });
        }
    }

    async fn on_members(&mut self) {
        self.members = self.members_rx.borrow_and_update().clone();
        self.bootstrap_check();
        self.mark_dirty();
        self.update_state();
    }

    fn on_member_event(&mut self, ev: MemberEvent) {
        let name = ev.member.name.clone();
        if name == self.me || ev.member.tags.get(tags::CLUSTER) != Some(&self.cfg.cluster_name) {
            return;
        }
        let now = Instant::now();
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
        if let Some(ev) = out {
            self.emit(ev);
            self.mark_dirty();
        }
    }

    /// Consul-style bootstrap: see [`bootstrap::decide`].
    fn bootstrap_check(&mut self) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        if self.bootstrapping || self.initialized() {
            return;
        }
        let visible: Vec<Candidate> = self
            .members
            .iter()
            .filter(|m| m.status == crate::gossip::MemberStatus::Alive)
            .filter_map(|m| {
                let t = NodeTags::parse(&m.tags);
                (t.cluster == self.cfg.cluster_name && t.raft_capable()).then(|| Candidate {
                    name: m.name.clone(),
                    cluster_id: t.cluster_id,
                    leader: t.leader,
                })
            })
            .collect();
        match bootstrap::decide(&self.me, self.cfg.bootstrap_expect, &visible) {
            Decision::Initialize(names) => {
                let now = Instant::now();
                match &self.boot_seen {
                    Some((seen, since)) if *seen == names => {
                        if now.duration_since(*since) < self.cfg.bootstrap_settle {
                            return;
                        }
                    }
                    _ => {
                        self.boot_seen = Some((names, now));
                        return;
                    }
                }
                let mut members = BTreeMap::new();
                for m in self.members.iter().filter(|m| names.contains(&m.name)) {
                    if let Some(addr) = NodeTags::parse(&m.tags).raft_addr {
                        members.insert(raft_id(&m.name), RaftNodeInfo::new(m.name.clone(), addr));
                    }
                }
                info!(voters = ?names, "bootstrapping a new cluster");
                self.bootstrapping = true;
                self.spawn(async move {
                    Done::Bootstrap(raft.initialize(members).await.map_err(|e| e.to_string()))
                });
            }
            Decision::Wait | Decision::JoinExisting => self.boot_seen = None,
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
        let was_leader = self.is_leader;
        // A leader restarted from disk briefly believes it still leads: act
        // as leader only while a quorum acknowledged us within the lease.
        self.is_leader = m.current_leader == Some(my_id)
            && m.state == openraft::ServerState::Leader
            && self.any_lease();
        let role = if self.is_leader {
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
        if let Some(l) = &leader {
            if *l != self.me {
                self.last_leader = Some(l.clone());
            }
        }
        if leader != self.leader {
            info!(leader = ?leader, term = m.current_term, "leader changed");
            self.leader = leader.clone();
            self.leader_tx.send_replace(leader.clone());
            self.metrics.record_leader(leader.as_deref());
            self.emit(ClusterEvent::LeaderChanged(leader.clone()));
            self.set_tag(tags::LEADER, leader.unwrap_or_default()).await;
        }
        if self.is_leader && !was_leader {
            self.became_leader().await;
        } else if !self.is_leader && was_leader {
            self.lost_leadership().await;
        }
        if self.is_leader {
            self.mark_dirty();
        }
        self.update_state();
    }

    async fn became_leader(&mut self) {
        info!(previous = ?self.last_leader, "became leader");
        self.tracker.reset();
        self.dead_since.clear();
        self.suspected.clear();
        // An election means the previous leader went quiet: treat it as dead
        // until it answers a liveness probe, instead of waiting for
        // `retries` missed probes. A false suspicion costs one extra map.
        // A hand-over (step-down) says the previous leader is alive: then a
        // leader change moves no shard.
        let handed_over = self.raft.as_ref().is_some_and(|r| r.handed_over());
        if let Some(prev) = self.last_leader.clone().filter(|_| !handed_over) {
            self.dead_since.insert(prev.clone(), Instant::now());
            self.suspected.insert(prev);
        }
        self.targets.clear();
        self.write_busy = false;
        self.commit_wanted = None;
        self.membership_busy = false;
        if let Some((c, _)) = &self.checker {
            let _ = c.clear().await;
        }
        self.sync_targets().await;
        self.dirty_at = Some(Instant::now());
    }

    async fn lost_leadership(&mut self) {
        info!("no longer leader");
        self.tracker.reset();
        self.dirty_at = None;
        self.targets.clear();
        self.dead_since.clear();
        self.suspected.clear();
        if let Some((c, _)) = &self.checker {
            let _ = c.clear().await;
        }
    }

    async fn set_tag(&mut self, key: &str, value: String) {
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
        self.applied = st.last_applied.map_or(0, |l| l.index);
        if st.cluster_id != self.cluster_id {
            self.cluster_id = st.cluster_id.clone();
            if let Some(id) = st.cluster_id.clone() {
                info!(cluster_id = %id, "cluster id set");
                self.set_tag(tags::CLUSTER_ID, id).await;
            }
        }
        let committed_epoch = self.committed.as_ref().map(|m| m.epoch());
        if let Some((epoch, bytes)) = &st.committed {
            if Some(*epoch) != committed_epoch {
                match ShardMap::decode(bytes) {
                    Ok(map) => self.on_committed(map.with_epoch(*epoch)),
                    Err(e) => warn!(epoch, error = %e, "undecodable committed map"),
                }
            }
        }
        match &st.proposed {
            Some((epoch, bytes)) if self.pending.as_ref().map(|m| m.epoch()) != Some(*epoch) => {
                match ShardMap::decode(bytes) {
                    Ok(map) => {
                        self.pending = Some(Arc::new(map.with_epoch(*epoch)));
                        // Stop serving what it takes away, then acknowledge.
                        self.update_serving();
                        self.acknowledge(*epoch);
                    }
                    Err(e) => warn!(epoch, error = %e, "undecodable proposed map"),
                }
            }
            Some(_) => {}
            None => {
                self.pending = None;
            }
        }
        // Every applied batch: the set names the index it reflects, which
        // lets leases granted for that index count.
        self.update_serving();
        if self.is_leader {
            self.mark_dirty();
        }
        self.update_state();
    }

    fn on_committed(&mut self, map: ShardMap) {
        let epoch = map.epoch();
        let shard_count = map.shard_count();
        let moved = match &self.committed {
            Some(old) => shards::delta(old, &map).map(|d| d.moved).unwrap_or(0),
            None => map.shard_count() - map.unassigned(),
        };
        let mine = map.shards_of(&self.me).len();
        info!(epoch, moved, mine, "committed shard map");
        let map = Arc::new(map);
        self.committed = Some(map.clone());
        if self.pending.as_ref().is_some_and(|p| p.epoch() <= epoch) {
            self.pending = None;
        }
        self.map_tx.send_replace(Some(map));
        self.metrics.committed_epoch.set(epoch as i64);
        self.metrics.shards.set(i64::from(shard_count));
        self.metrics.shards_owned.set(mine as i64);
        if self.is_leader {
            self.tracker.committed(epoch);
            if let Some(at) = self.proposed_at.remove(&epoch) {
                self.metrics.record_reshard(at.elapsed(), u64::from(moved));
            }
            self.proposed_at.retain(|e, _| *e > epoch);
        }
        self.emit(ClusterEvent::MapCommitted { epoch, moved });
    }

    fn update_serving(&mut self) {
        let set = ServingSet::compute(
            &self.me,
            self.committed.as_deref(),
            self.pending.as_deref(),
            self.applied,
        );
        self.serving_tx.send_if_modified(|cur| {
            if **cur != set {
                *cur = Arc::new(set);
                true
            } else {
                false
            }
        });
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

    /// Acknowledges a proposal this node applied (after it stopped serving
    /// what the proposal takes away).
    fn acknowledge(&mut self, epoch: u64) {
        let involved =
            |m: &Option<Arc<ShardMap>>| m.as_ref().is_some_and(|m| m.node(&self.me).is_some());
        if epoch <= self.acked || !(involved(&self.pending) || involved(&self.committed)) {
            return;
        }
        self.acked = epoch;
        self.stats.acks_sent += 1;
        if self.is_leader {
            let me = self.me.clone();
            self.on_ack(&me, epoch);
            return;
        }
        let Some(raft) = self.raft.clone() else {
            return;
        };
        self.spawn(async move {
            // The leader may be unknown for a moment right after an
            // election; a few quick attempts cover that, and a proposal that
            // never hears from us is replaced after ack_timeout anyway.
            for _ in 0..5 {
                if let Some((_, info)) = raft.leader() {
                    if raft.ack_to(&info.addr, epoch).await.is_ok() {
                        return Done::Acked(true);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Done::Acked(false)
        });
    }

    fn on_ack(&mut self, node: &str, epoch: u64) {
        if !self.is_leader {
            return;
        }
        debug!(from = node, epoch, "ack");
        if let Step::Commit(e) = self.tracker.on_ack(node, epoch, Instant::now()) {
            self.commit(e);
        }
    }

    fn commit(&mut self, epoch: u64) {
        if self.write_busy {
            self.commit_wanted = Some(epoch);
            return;
        }
        self.write(Write::Commit(epoch), Command::Commit { epoch });
    }

    fn write(&mut self, what: Write, cmd: Command) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        self.write_busy = true;
        self.spawn(async move {
            let result = raft.client_write(cmd).await.map_err(|e| e.to_string());
            if result.is_ok() {
                // Followers learn the new commit index now rather than at the
                // next heartbeat, so they apply (and acknowledge) sooner.
                let _ = raft.raft().trigger().heartbeat().await;
            }
            Done::Write(what, result)
        });
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Write(what, result) => {
                self.write_busy = false;
                match (&what, &result) {
                    (Write::Propose(e), Ok(Response::Proposed { .. })) => {
                        self.stats.proposals += 1;
                        info!(epoch = e, "proposed shard map");
                    }
                    (Write::Commit(e), Ok(Response::Committed { .. })) => {
                        self.stats.commits += 1;
                        debug!(epoch = e, "commit written");
                    }
                    (_, Ok(Response::ProposalRejected { epoch, last_epoch })) => {
                        warn!(epoch, last_epoch, "proposal rejected; proposing again");
                        self.tracker.reset();
                        self.retry_later();
                    }
                    (_, Ok(_)) => {}
                    (what, Err(e)) => {
                        self.stats.write_failures += 1;
                        warn!(?what, error = %e, "leader write failed");
                        if matches!(what, Write::Propose(_)) {
                            self.tracker.reset();
                        }
                        self.retry_later();
                    }
                }
                if let Some(e) = self.commit_wanted.take() {
                    self.commit(e);
                }
            }
            Done::Membership(r) => {
                self.membership_busy = false;
                if let Err(e) = r {
                    self.stats.membership_failures += 1;
                    debug!(error = %e, "membership change failed");
                    self.retry_later();
                }
            }
            Done::Bootstrap(r) => {
                self.bootstrapping = false;
                if let Err(e) = r {
                    warn!(error = %e, "bootstrap failed");
                }
            }
            Done::Joined(Ok(n)) => info!(answered = n, "joined gossip"),
            Done::Joined(Err(e)) => warn!(error = %e, "could not join any seed"),
            Done::Acked(ok) => {
                if !ok {
                    self.stats.acks_failed += 1;
                }
            }
        }
    }

    fn retry_later(&mut self) {
        if self.is_leader {
            self.dirty_at = Some(Instant::now() + RETRY_AFTER);
        }
    }

    fn on_liveness(&mut self, ev: LivenessEvent) {
        let now = Instant::now();
        match ev {
            LivenessEvent::Dead(id) => {
                warn!(peer = %id, "liveness: dead");
                self.metrics.record_liveness_transition(false);
                self.dead_since.entry(id.clone()).or_insert(now);
                self.emit(ClusterEvent::MemberFailed(id));
            }
            LivenessEvent::Alive(id) => {
                info!(peer = %id, "liveness: alive again");
                self.metrics.record_liveness_transition(true);
                self.dead_since.remove(&id);
                self.suspected.remove(&id);
                self.tracker.readmit(&id);
                self.emit(ClusterEvent::MemberAlive(id));
            }
        }
        self.mark_dirty();
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        // Leadership also ends when the quorum lease runs out, which no
        // metrics change announces.
        if self.is_leader && !self.any_lease() {
            self.on_raft_metrics().await;
        }
        if !self.suspected.is_empty() {
            if let Some((c, _)) = &self.checker {
                let snap = c.watch().borrow().clone();
                let back: Vec<String> = self
                    .suspected
                    .iter()
                    .filter(|n| snap.status(n) == Some(crate::liveness::TargetStatus::Alive))
                    .cloned()
                    .collect();
                for n in back {
                    info!(peer = %n, "previous leader answers; no longer suspected");
                    self.suspected.remove(&n);
                    self.dead_since.remove(&n);
                    self.mark_dirty();
                }
            }
        }
        if !self.initialized() {
            self.bootstrap_check();
        }
        if self.is_leader {
            match self.tracker.on_tick(now, self.cfg.exclude_backoff) {
                Step::Commit(e) => self.commit(e),
                Step::Repropose(silent) => {
                    self.stats.ack_timeouts += 1;
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
                self.mark_dirty();
            }
            if self
                .dirty_at
                .is_some_and(|d| now >= d + self.cfg.reshard_debounce)
                && !self.write_busy
            {
                self.dirty_at = None;
                self.last_reconcile = now;
                self.sync_targets().await;
                self.reconcile_membership();
                self.leader_writes(now);
            }
        }
        self.update_state();
        if now.duration_since(self.last_status) >= STATUS_EVERY {
            self.last_status = now;
            self.refresh_status().await;
        }
    }

    /// The leader's liveness targets: every Raft member but itself.
    async fn sync_targets(&mut self) {
        let Some((checker, _)) = &self.checker else {
            return;
        };
        let mut want = BTreeMap::new();
        if let Some(ms) = &self.membership {
            for (_, info) in ms.nodes() {
                if info.name == self.me {
                    continue;
                }
                let addr = self
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
                let _ = checker.remove(name.clone()).await;
                self.dead_since.remove(name);
            }
        }
        for (name, addr) in &want {
            if self.targets.get(name) != Some(addr) {
                let _ = checker.add(name.clone(), *addr).await;
            }
        }
        self.targets = want;
    }

    /// Whether `name` counts as healthy for voting and owning shards.
    fn healthy(&self, name: &str, now: Instant, grace: Duration) -> bool {
        if name == self.me {
            return true;
        }
        // A member gossip does not know (yet: this node may have just
        // restarted) is not evidence of failure; only gossip's verdict or
        // the liveness checker's is.
        let gone = self
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
    /// removes members gone for longer than `removal_grace`.
    fn reconcile_membership(&mut self) {
        if self.membership_busy {
            return;
        }
        let (Some(raft), Some(ms)) = (self.raft.clone(), self.membership.clone()) else {
            return;
        };
        let now = Instant::now();
        let in_raft: BTreeMap<String, u64> =
            ms.nodes().map(|(id, n)| (n.name.clone(), *id)).collect();
        let mut add = Vec::new();
        for m in self.members.iter() {
            let t = NodeTags::parse(&m.tags);
            let compatible = t.cluster == self.cfg.cluster_name
                && t.raft_capable()
                && (t.cluster_id.is_none() || t.cluster_id == self.cluster_id);
            if compatible
                && !m.status.is_gone()
                && !in_raft.contains_key(&m.name)
                && !self.removed.contains(&m.name)
            {
                if let Some(addr) = t.raft_addr {
                    add.push((raft_id(&m.name), RaftNodeInfo::new(m.name.clone(), addr)));
                }
            }
        }
        // A member restarted on new ports: point Raft at its new address.
        let mut moved = BTreeMap::new();
        for (id, info) in ms.nodes() {
            let now_at = self
                .members
                .iter()
                .find(|m| m.name == info.name && !m.status.is_gone())
                .and_then(|m| NodeTags::parse(&m.tags).raft_addr);
            if let Some(addr) = now_at.filter(|a| *a != info.addr) {
                moved.insert(*id, RaftNodeInfo::new(info.name.clone(), addr));
            }
        }
        let mut remove = BTreeSet::new();
        for (name, id) in &in_raft {
            if name == &self.me {
                continue;
            }
            let gone_long = self
                .gone_since
                .get(name)
                .is_some_and(|t| now.duration_since(*t) >= self.cfg.removal_grace);
            let left = self
                .members
                .iter()
                .any(|m| &m.name == name && m.status == crate::gossip::MemberStatus::Left);
            if gone_long || left || self.removed.contains(name) {
                remove.insert(*id);
            }
        }
        let current: BTreeSet<String> = ms
            .voter_ids()
            .filter_map(|id| ms.get_node(&id).map(|n| n.name.clone()))
            .collect();
        let healthy: BTreeMap<String, String> = in_raft
            .keys()
            .filter(|n| self.healthy(n, now, self.cfg.voter_grace))
            .filter(|n| !remove.contains(&raft_id(n)))
            .map(|n| {
                let zone = self
                    .members
                    .iter()
                    .find(|m| &m.name == n)
                    .map(|m| NodeTags::parse(&m.tags).zone)
                    .unwrap_or_default();
                (n.clone(), zone)
            })
            .collect();
        let voters = voters::choose(&current, &healthy, self.cfg.max_voters, &self.me);
        let voter_ids: BTreeSet<u64> = voters.iter().map(|n| raft_id(n)).collect();
        let change_voters = voters != current;
        if add.is_empty() && remove.is_empty() && moved.is_empty() && !change_voters {
            return;
        }
        self.membership_busy = true;
        info!(
            add = add.len(),
            remove = remove.len(),
            readdressed = moved.len(),
            voters = ?voters,
            "membership change"
        );
        self.spawn(async move {
            let r = async {
                if !moved.is_empty() {
                    raft.raft()
                        .change_membership(openraft::ChangeMembers::SetNodes(moved), true)
                        .await
                        .map_err(crate::raft::RaftApiError::from)?;
                }
                for (id, info) in add {
                    raft.add_learner(id, info, false).await?;
                }
                if change_voters {
                    raft.change_membership(voter_ids, true).await?;
                }
                if !remove.is_empty() {
                    raft.raft()
                        .change_membership(openraft::ChangeMembers::RemoveNodes(remove), false)
                        .await
                        .map_err(crate::raft::RaftApiError::from)?;
                }
                Ok::<(), crate::raft::RaftApiError>(())
            }
            .await;
            Done::Membership(r.map_err(|e| e.to_string()))
        });
    }

    /// The owners the next map should have, with their weights.
    fn live_owners(&self, st: &ClusterState, now: Instant) -> Vec<(String, u32)> {
        let Some(ms) = &self.membership else {
            return Vec::new();
        };
        let mut owners = Vec::new();
        for (_, info) in ms.nodes() {
            let name = &info.name;
            if self.removed.contains(name) || self.tracker.is_excluded(name, now) {
                continue;
            }
            let weight = match self.members.iter().find(|m| &m.name == name) {
                Some(m) => {
                    let t = NodeTags::parse(&m.tags);
                    let alive = name == &self.me
                        || (!m.status.is_gone() && !self.dead_since.contains_key(name));
                    if !t.member || t.cluster != self.cfg.cluster_name || !alive {
                        continue;
                    }
                    st.members.get(name).map(|r| r.weight).unwrap_or(t.weight)
                }
                // Not in gossip (yet): keep it as the newest map has it, so
                // a leader that just restarted does not drop everyone.
                None => {
                    let newest = self.pending.as_ref().or(self.committed.as_ref());
                    match newest.and_then(|m| m.node(name)) {
                        Some(n) if !self.dead_since.contains_key(name) => {
                            st.members.get(name).map(|r| r.weight).unwrap_or(n.weight)
                        }
                        _ => continue,
                    }
                }
            };
            owners.push((name.clone(), weight));
        }
        owners.sort();
        owners
    }

    /// The leader's writes: the cluster id, then a new map when the live
    /// owner set differs from the newest map (or a proposal of an earlier
    /// leader is pending).
    fn leader_writes(&mut self, now: Instant) {
        let Some(rx) = &self.cluster_state else {
            return;
        };
        let st = rx.borrow().clone();
        if st.cluster_id.is_none() {
            let id = format!("{:016x}", rand::random::<u64>());
            self.write(Write::ClusterId, Command::SetClusterId { cluster_id: id });
            return;
        }
        let owners = self.live_owners(&st, now);
        if owners.is_empty() {
            return;
        }
        let newest = match (&self.pending, &self.committed) {
            (Some(p), _) => Some(p.clone()),
            (None, c) => c.clone(),
        };
        let orphan = st
            .proposed
            .as_ref()
            .is_some_and(|(e, _)| self.tracker.pending().map(|p| p.epoch) != Some(*e));
        let same = newest.as_ref().is_some_and(|m| {
            let have: Vec<(String, u32)> =
                m.nodes().iter().map(|n| (n.id.clone(), n.weight)).collect();
            have == owners
        });
        if same && !orphan {
            return;
        }
        let base = match &self.committed {
            Some(c) => (**c).clone(),
            None => match ShardMap::new(self.cfg.shard_count) {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "cannot make an empty map");
                    return;
                }
            },
        };
        let epoch = st.last_epoch + 1;
        let map = match shards::rebalance(&base, &owners) {
            Ok(m) => m.with_epoch(epoch),
            Err(e) => {
                warn!(error = %e, "rebalance failed");
                return;
            }
        };
        let (expected, lapse) = self.who_must_ack(&map, &owners, now);
        info!(
            epoch,
            owners = owners.len(),
            waiting = expected.len(),
            lapsing = lapse.len(),
            "proposing shard map"
        );
        self.tracker
            .proposed(epoch, expected, lapse, now, self.cfg.ack_timeout);
        self.proposed_at.insert(epoch, now);
        self.emit(ClusterEvent::MapProposed { epoch });
        self.write(
            Write::Propose(epoch),
            Command::Propose {
                epoch,
                map: map.encode().into(),
            },
        );
    }

    /// The complete hand-over: every owner in the new map must acknowledge,
    /// and so must every live owner of the committed map that loses a shard
    /// (it confirms it stopped serving it). A losing owner that is not live
    /// (gone, dead, excluded, removed) is not waited for, but the commit
    /// waits until its lease has certainly ended.
    fn who_must_ack(
        &self,
        map: &ShardMap,
        owners: &[(String, u32)],
        now: Instant,
    ) -> (BTreeSet<String>, BTreeMap<String, Instant>) {
        let mut expected: BTreeSet<String> = owners.iter().map(|(n, _)| n.clone()).collect();
        let mut lapse = BTreeMap::new();
        let Some(committed) = &self.committed else {
            return (expected, lapse);
        };
        for node in committed.nodes() {
            let name = &node.id;
            if expected.contains(name) {
                continue;
            }
            let loses = committed
                .shards_of(name)
                .iter()
                .any(|s| map.owner_of(*s) != Some(name.as_str()));
            if !loses {
                continue;
            }
            if self.is_live(name, now) {
                expected.insert(name.clone());
            } else {
                let bound = self
                    .raft
                    .as_ref()
                    .and_then(|r| r.lease_bound(raft_id(name)))
                    .unwrap_or(now + self.cfg.lease * 2);
                lapse.insert(name.clone(), bound);
            }
        }
        (expected, lapse)
    }

    /// Whether `name` is believed to be running: known to gossip and not
    /// gone there, not found dead by liveness, not excluded or removed.
    fn is_live(&self, name: &str, now: Instant) -> bool {
        name == self.me
            || (self
                .members
                .iter()
                .any(|m| m.name == name && !m.status.is_gone())
                && !self.dead_since.contains_key(name)
                && !self.tracker.is_excluded(name, now)
                && !self.removed.contains(name))
    }

    fn update_state(&mut self) {
        if *self.state_tx.borrow() == NodeState::Stopping {
            return;
        }
        let s = if !self.cfg.member {
            if self
                .members
                .iter()
                .any(|m| m.name != self.me && !m.status.is_gone())
            {
                NodeState::Operational
            } else {
                NodeState::Joining
            }
        } else if self
            .membership
            .as_ref()
            .is_none_or(|m| m.get_node(&raft_id(&self.me)).is_none())
        {
            NodeState::Joining
        } else if self.committed.is_none() || !self.serving_lease() {
            // No map yet, or no leader within the lease: not serving.
            NodeState::Voting
        } else if self.pending.is_some() {
            NodeState::Resharding
        } else {
            NodeState::Operational
        };
        self.set_state(s);
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::SetEndpoint(name, addr, reply) => {
                self.set_tag(&endpoint_key(&name), addr).await;
                let _ = reply.send(Ok(()));
            }
            Request::SetWeight(node, weight, reply) => match self.weight_command(node, weight) {
                Ok(cmd) => self.write_via_leader(cmd, Some(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::AddNode(node, reply) => {
                let r = if !self.is_leader {
                    Err(ClusterError::NotLeader(self.leader.clone()))
                } else if !self.members.iter().any(|m| m.name == node) {
                    Err(ClusterError::UnknownNode(node))
                } else {
                    self.removed.remove(&node);
                    self.mark_dirty();
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Request::RemoveNode(node, reply) => {
                let known = self
                    .membership
                    .as_ref()
                    .is_some_and(|m| m.get_node(&raft_id(&node)).is_some());
                let r = if !self.is_leader {
                    Err(ClusterError::NotLeader(self.leader.clone()))
                } else if !known {
                    Err(ClusterError::UnknownNode(node))
                } else {
                    self.removed.insert(node);
                    self.mark_dirty();
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Request::StepDown(reply) => {
                // The hand-over takes an election timeout: don't hold up the
                // node task for it.
                match (self.is_leader, self.raft.clone()) {
                    (true, Some(raft)) => {
                        self.jobs.spawn(
                            async move {
                                let r = raft
                                    .hand_over()
                                    .await
                                    .map(|to| info!(to, "handed leadership over"))
                                    .map_err(ClusterError::from);
                                let _ = reply.send(r);
                            }
                            .in_current_span(),
                        );
                    }
                    _ => {
                        let _ = reply.send(Err(ClusterError::NotLeader(self.leader.clone())));
                    }
                }
            }
            Request::Nodes(reply) => {
                let _ = reply.send(self.node_infos());
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.stats.clone());
            }
        }
    }

    /// The registry write that sets `node`'s weight.
    fn weight_command(&self, node: String, weight: u32) -> Result<Command, ClusterError> {
        let zone = self
            .members
            .iter()
            .find(|m| m.name == node)
            .map(|m| NodeTags::parse(&m.tags).zone)
            .ok_or_else(|| ClusterError::UnknownNode(node.clone()))?;
        Ok(Command::SetMember {
            name: node,
            weight,
            zone,
        })
    }

    /// Appends `cmd` through the leader in a job; the reply goes to `reply`.
    fn write_via_leader(
        &mut self,
        cmd: Command,
        reply: Option<oneshot::Sender<Result<(), ClusterError>>>,
    ) {
        let Some(raft) = self.raft.clone() else {
            if let Some(r) = reply {
                let _ = r.send(Err(ClusterError::NotMember));
            }
            return;
        };
        self.jobs.spawn(
            async move {
                let r = raft.write_via_leader(cmd).await.map_err(|e| match e {
                    crate::raft::RaftApiError::ForwardToLeader { leader: None, .. } => {
                        ClusterError::NoLeader
                    }
                    e => ClusterError::from(e),
                });
                if let Err(e) = &r {
                    warn!(error = %e, "registry write failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            .in_current_span(),
        );
    }

    async fn step_down(&mut self) -> Result<(), ClusterError> {
        if !self.is_leader {
            return Err(ClusterError::NotLeader(self.leader.clone()));
        }
        let raft = self.raft.clone().ok_or(ClusterError::NotMember)?;
        let to = raft.hand_over().await.map_err(ClusterError::from)?;
        info!(to, "handed leadership over");
        Ok(())
    }

    /// Starts a graceful stop: drains this node's shards (weight 0) when it
    /// owns any and other members can take them. Returns the deadline.
    fn begin_stop(&mut self) -> Instant {
        self.set_state(NodeState::Stopping);
        let now = Instant::now();
        let others = self
            .members
            .iter()
            .any(|m| m.name != self.me && !m.status.is_gone() && NodeTags::parse(&m.tags).member);
        if self.drained() || !others {
            return now;
        }
        match self.weight_command(self.me.clone(), 0) {
            Ok(cmd) => {
                info!("draining before leaving");
                self.write_via_leader(cmd, None);
                now + self.cfg.drain_timeout
            }
            Err(_) => now,
        }
    }

    /// Whether this node owns no shard in the committed or pending map.
    fn drained(&self) -> bool {
        let none =
            |m: &Option<Arc<ShardMap>>| m.as_ref().is_none_or(|m| m.shards_of(&self.me).is_empty());
        none(&self.committed) && none(&self.pending)
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        view::node_infos(self.view_input())
    }

    fn view_input(&self) -> view::Input<'_> {
        let live = self
            .checker
            .as_ref()
            .map(|(c, _)| c.watch().borrow().clone());
        view::Input {
            me: &self.me,
            cluster: &self.cfg.cluster_name,
            members: &self.members,
            membership: self.membership.as_ref(),
            leader: self.leader.as_deref(),
            is_leader: self.is_leader,
            liveness: live,
            committed: self.committed.as_deref(),
            registry: self
                .cluster_state
                .as_ref()
                .map(|s| s.borrow().members.clone())
                .unwrap_or_default(),
        }
    }

    async fn refresh_status(&mut self) {
        let infos = self.node_infos();
        let role = *self.role_tx.borrow();
        let state = *self.state_tx.borrow();
        let view = view::status(
            &self.cfg,
            &infos,
            self.cluster_id.clone(),
            self.leader.clone(),
            role,
            state,
            self.committed.as_deref(),
            self.started.elapsed(),
        );
        view::update_metrics(
            &self.metrics,
            &self.members,
            self.membership.as_ref(),
            &infos,
            self.is_leader,
        );
        if let Ok(stats) = self.gossip.stats().await {
            view::gossip_metrics(&self.metrics, &stats);
        }
        let mut liveness_bad = self.responder.as_ref().map_or(0, |r| r.stats().bad);
        if let Some((c, _)) = &self.checker {
            liveness_bad += c.stats().await.map_or(0, |s| s.bad_packets);
        }
        self.metrics
            .liveness_bad_packets
            .observe_total(liveness_bad);
        if let Some(c) = self.raft.as_ref().and_then(|r| r.listener_counts()) {
            self.metrics
                .raft_unauthenticated_calls
                .observe_total(c.unauthenticated);
            self.metrics.raft_connections_closed.observe_totals([
                ("refused", c.refused),
                ("evicted", c.evicted),
                ("timed_out", c.timed_out),
            ]);
        }
        self.status_tx.send_replace(view);
    }

    async fn shutdown(&mut self) {
        self.set_state(NodeState::Stopping);
        if self.is_leader {
            let _ = self.step_down().await;
        }
        if let Some((d, _)) = self.discovery.take() {
            let _ = d.withdraw();
            d.shutdown().await;
        }
        if let Err(e) = self.gossip.leave(Duration::from_secs(1)).await {
            debug!(error = %e, "gossip leave");
        }
        self.jobs.shutdown().await;
        if let Some(raft) = self.raft.take() {
            if let Err(e) = raft.shutdown().await {
                warn!(error = %e, "raft shutdown");
            }
        }
        if let Some((c, _)) = self.checker.take() {
            c.shutdown().await;
        }
        if let Some(r) = self.responder.take() {
            r.shutdown().await;
        }
        let _ = self.gossip.shutdown().await;
        info!("stopped");
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

impl Drop for Node {
    fn drop(&mut self) {
        self.jobs.abort_all();
    }
}
