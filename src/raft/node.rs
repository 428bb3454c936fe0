//! [`RaftNode`]: one running Raft member, the handle the coordinator uses.
//!
//! It owns the openraft instance, the state machine's `watch`, the tonic
//! service (and optionally the server task), the serving lease (see
//! `lease`), and the elector: openraft's own election timer is off, and a
//! voter that has not heard from a leader for an election timeout first
//! asks the other voters (pre-vote) and starts an election only when a
//! quorum of them has not heard from one either. A node back from a pause
//! or a partition so never deposes a leader that still holds its quorum.
//! On the leader the same task sends a heartbeat every
//! `heartbeat_interval` (openraft's own timer, tied to its RPC timeout,
//! would be too slow to renew short serving leases).
//! [`RaftNode::shutdown`] stops and awaits all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::ServerState;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::auth::AuthService;
use super::error::{RaftApiError, RaftNodeError};
use super::lease::LeaseState;
use super::listener::{bounded_incoming, ListenerCounts, ListenerStats};
use super::network::{Forwarded, Network};
use super::server::{Handler, RaftService};
use super::store::{self, ClosedSignal, StateMachineStore, Storage};
use super::types::{Ack, ClusterState, Command, LeaderContact, RaftNodeInfo, Response};
use super::{NetError, NodeId, Raft, RaftConfig, RaftMetrics};

/// How long `shutdown` waits for the server and storage to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

struct ServerTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
    stats: Arc<ListenerStats>,
}

/// Where a routed write was applied: here (the state machine's answer) or
/// on the leader it was forwarded to (the application log index it gave).
#[derive(Debug)]
enum Routed {
    Local(Response),
    Remote(u64),
}

/// A running Raft member.
pub struct RaftNode {
    id: NodeId,
    info: RaftNodeInfo,
    pub(super) config: RaftConfig,
    raft: Raft,
    state: watch::Receiver<Arc<ClusterState>>,
    contact: Arc<watch::Sender<Option<LeaderContact>>>,
    lease: Arc<LeaseState>,
    handed_over: Arc<std::sync::atomic::AtomicBool>,
    /// Cleared while a hand-over lets the followers' leader lease run out.
    beating: Arc<std::sync::atomic::AtomicBool>,
    service: RaftService,
    network: Network,
    acks_dropped: Arc<AtomicU64>,
    server: Mutex<Option<ServerTask>>,
    elector: Mutex<Option<JoinHandle<()>>>,
    closed: Mutex<Option<ClosedSignal>>,
}

impl RaftNode {
    /// Opens `storage` and starts Raft as node `id`.
    ///
    /// `network` is how this node reaches its peers ([`Network::grpc`] or a
    /// [`Router`](super::Router) connector); its timing is taken from
    /// `config`. Acknowledgements received through the `Ack` RPC go to
    /// `acks` (dropped and counted when it is full or absent).
    ///
    /// The node does not listen by itself: mount [`service`](Self::service)
    /// on a tonic server or call [`serve`](Self::serve).
    pub async fn start(
        id: NodeId,
        info: RaftNodeInfo,
        config: RaftConfig,
        storage: Storage,
        mut network: Network,
        acks: Option<mpsc::Sender<Ack>>,
    ) -> Result<RaftNode, RaftNodeError> {
        let raft_config = Arc::new(config.to_openraft()?);
        let lease = Arc::new(LeaseState::new(id, config.serving_lease, config.vote_lease));
        network.configure(id, &config, Some(lease.clone()));
        match storage {
            Storage::Memory | Storage::Kept(_) => {
                let (log, sm) = match storage {
                    Storage::Kept(log) => (log, store::StateMachineStore::memory()),
                    _ => store::open_memory(),
                };
                Self::launch(
                    id,
                    info,
                    config,
                    raft_config,
                    network,
                    acks,
                    lease,
                    log,
                    sm,
                    None,
                )
                .await
            }
            Storage::Sled(path) => {
                let (log, sm, closed) = store::open_sled(&path, config.sled_cache_capacity)?;
                Self::launch(
                    id,
                    info,
                    config,
                    raft_config,
                    network,
                    acks,
                    lease,
                    log,
                    sm,
                    Some(closed),
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch<LS: RaftLogStorage<super::TypeConfig>>(
        id: NodeId,
        info: RaftNodeInfo,
        config: RaftConfig,
        raft_config: Arc<openraft::Config>,
        network: Network,
        acks: Option<mpsc::Sender<Ack>>,
        lease: Arc<LeaseState>,
        log: LS,
        sm: StateMachineStore,
        closed: Option<ClosedSignal>,
    ) -> Result<RaftNode, RaftNodeError> {
        let state = sm.subscribe();
        let raft = Raft::new(id, raft_config, network.clone(), log, sm).await?;
        lease.attach(raft.metrics());
        let (contact, _) = watch::channel(None);
        let contact = Arc::new(contact);
        let handed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let acks_dropped = Arc::new(AtomicU64::new(0));
        let handler = Handler {
            id,
            raft: raft.clone(),
            contact: contact.clone(),
            acks,
            acks_dropped: acks_dropped.clone(),
            lease: lease.clone(),
            vote_lease: config.vote_lease,
            handed_over: handed_over.clone(),
            state: state.clone(),
            name: info.name.clone(),
            cluster_name: config.cluster_name.clone(),
            auth: config.auth.as_ref().and(network.shared_auth()),
        };
        let service = RaftService::new(handler, config.max_message_size);
        let elector = tokio::spawn(elect_when_quiet(
            raft.clone(),
            network.clone(),
            contact.subscribe(),
            handed_over.clone(),
            beating.clone(),
            id,
            config.clone(),
        ));
        tracing::info!(node = id, name = %info.name, addr = %info.addr, "raft node started");
        Ok(RaftNode {
            id,
            info,
            config,
            raft,
            state,
            contact,
            lease,
            handed_over,
            beating,
            service,
            network,
            acks_dropped,
            server: Mutex::new(None),
            elector: Mutex::new(Some(elector)),
            closed: Mutex::new(closed),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name and Raft address.
    pub fn info(&self) -> &RaftNodeInfo {
        &self.info
    }

    /// The openraft handle, for anything this wrapper does not cover.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The replicated state, updated after every applied batch.
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// openraft's metrics (role, term, leader, log indexes, membership).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// The gRPC service to mount on a tonic server (cheap clone).
    pub fn service(&self) -> RaftService {
        self.service.clone()
    }

    /// The network this node uses to reach its peers.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Acknowledgements dropped because the queue was full or absent.
    pub fn acks_dropped(&self) -> u64 {
        self.acks_dropped.load(Ordering::Relaxed)
    }

    /// Initialises a new cluster with these voters (this node among them).
    /// Call on one node only, once; a second call fails with
    /// `InitializeNotAllowed`, which is harmless.
    pub async fn initialize(
        &self,
        members: BTreeMap<NodeId, RaftNodeInfo>,
    ) -> Result<(), RaftApiError> {
        Ok(self.raft.initialize(members).await?)
    }

    /// Adds a learner (leader only). With `blocking`, waits until it has
    /// caught up with the leader's log.
    pub async fn add_learner(
        &self,
        id: NodeId,
        info: RaftNodeInfo,
        blocking: bool,
    ) -> Result<(), RaftApiError> {
        self.raft.add_learner(id, info, blocking).await?;
        Ok(())
    }

    /// Makes `voters` the voter set (leader only). Nodes that stop being
    /// voters stay as learners when `retain` is set, else are removed.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<(), RaftApiError> {
        self.raft.change_membership(voters, retain).await?;
        Ok(())
    }

    /// Appends `cmd` to the log and returns the state machine's response
    /// once it is committed and applied. On a follower this fails with
    /// [`RaftApiError::ForwardToLeader`] naming the leader it knows.
    pub async fn client_write(&self, cmd: Command) -> Result<Response, RaftApiError> {
        Ok(self.raft.client_write(cmd).await?.data)
    }

    /// Whether this node currently believes it is the leader (from metrics;
    /// not a linearizable check).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The leader this node knows of, with its info from the membership.
    pub fn leader(&self) -> Option<(NodeId, RaftNodeInfo)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    /// The current term.
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// When this node last heard from a leader of the current term (an
    /// accepted AppendEntries or snapshot chunk), or granted a vote in it.
    pub fn last_leader_contact(&self) -> Option<Instant> {
        let term = self.current_term();
        self.contact
            .borrow()
            .filter(|c| c.term == term)
            .map(|c| c.at)
    }

    /// A receiver of every recorded leader contact.
    pub fn leader_contact(&self) -> watch::Receiver<Option<LeaderContact>> {
        self.contact.subscribe()
    }

    /// Whether this node's latest election was asked for by the previous
    /// leader handing over (rather than started because the leader went
    /// quiet): the previous leader is then alive, not a suspect.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }

    /// Until when this node may serve, if what it serves reflects the log
    /// up to index `applied`: the end of the newest serving lease (from a
    /// leader that a quorum confirmed, or its own quorum as leader) whose
    /// required index is at most `applied`. `None`: no lease holds now.
    pub fn serving_until(&self, applied: u64) -> Option<Instant> {
        self.lease.valid_until(applied)
    }

    /// On the leader: whether node `target` accepted an AppendEntries of
    /// this leader's term, i.e. it runs and follows this leader.
    pub fn responded_this_term(&self, target: NodeId) -> bool {
        self.lease.responded(target)
    }

    /// On the leader: the instant after which node `target` serves under
    /// no lease granted so far, by this leader or an earlier one (margin
    /// for clock drift included). `None` when this node does not lead.
    pub fn lease_bound(&self, target: NodeId) -> Option<Instant> {
        self.lease.bound(target)
    }

    /// Appends `cmd` on the leader wherever it is: locally when this node
    /// leads, else forwarded over the `Forward` RPC (following at most two
    /// redirects while leadership moves), each attempt bounded by
    /// [`RaftConfig::write_timeout`].
    pub async fn write_via_leader(&self, cmd: Command) -> Result<(), RaftApiError> {
        self.route(cmd).await.map(|_| ())
    }

    /// Appends `data` to the application log through the leader (as
    /// [`write_via_leader`](Self::write_via_leader)) and returns its index
    /// once a quorum has it and the leader applied it. An entry over
    /// [`MAX_ENTRY_BYTES`](super::app_log::MAX_ENTRY_BYTES) is refused
    /// ([`RaftApiError::Refused`]).
    pub async fn append_log(&self, data: bytes::Bytes) -> Result<u64, RaftApiError> {
        match self.route(Command::AppendLog { data }).await? {
            Routed::Local(Response::LogAppended { index }) => Ok(index),
            Routed::Local(Response::LogRefused { size }) => {
                Err(RaftApiError::Refused(super::server::log_refused(size)))
            }
            Routed::Remote(index) if index > 0 => Ok(index),
            other => Err(RaftApiError::Forward(format!(
                "unexpected answer to an application log append: {other:?}"
            ))),
        }
    }

    /// Each attempt is bounded by [`RaftConfig::write_timeout`]: a leader
    /// cut off from its quorum (which openraft 0.9 does not depose by
    /// itself until it hears a higher term) would otherwise hold the
    /// caller forever.
    async fn route(&self, cmd: Command) -> Result<Routed, RaftApiError> {
        let timeout = self.config.write_timeout();
        let local = tokio::time::timeout(timeout, self.client_write(cmd.clone()))
            .await
            .map_err(|_| RaftApiError::Timeout(timeout))?;
        let mut target = match local {
            Ok(r) => return Ok(Routed::Local(r)),
            Err(RaftApiError::ForwardToLeader {
                leader: Some(info), ..
            }) => info.addr,
            Err(e) => return Err(e),
        };
        for _ in 0..3 {
            match self.network.forward(&target, &cmd, timeout).await {
                Ok(Forwarded::Applied { app_index }) => return Ok(Routed::Remote(app_index)),
                Ok(Forwarded::Redirect(next)) => target = next,
                Err(NetError::Refused { reason, .. }) => return Err(RaftApiError::Refused(reason)),
                Err(e) => return Err(RaftApiError::Forward(e.to_string())),
            }
        }
        Err(RaftApiError::Forward("leadership kept moving".into()))
    }

    /// On the leader: hands leadership to the most up-to-date other voter
    /// and waits until it moved (about `vote_lease`). Returns the
    /// chosen voter's id.
    pub async fn hand_over(&self) -> Result<NodeId, RaftApiError> {
        let m = self.raft.metrics().borrow().clone();
        let Some(replication) = m.replication.as_ref() else {
            return Err(RaftApiError::Forward("not the leader".into()));
        };
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let best = replication
            .iter()
            .filter(|(id, _)| **id != self.id && voters.contains(*id))
            .max_by_key(|(id, log)| (log.map(|l| l.index), std::cmp::Reverse(**id)))
            .map(|(id, _)| *id);
        let Some(to) = best else {
            return Err(RaftApiError::Forward("no other voter".into()));
        };
        let Some(info) = m.membership_config.membership().get_node(&to).cloned() else {
            return Err(RaftApiError::Forward("voter without an address".into()));
        };
        // openraft 0.9 voters refuse to vote while they hold a leader lease,
        // which every heartbeat renews for `vote_lease`: stop the
        // heartbeats, let the lease run out, then ask the successor to run
        // before the other voters' own election timers fire.
        // (An AppendEntries already sent may still arrive up to its timeout
        // later.)
        self.raft.runtime_config().heartbeat(false);
        self.beating.store(false, Ordering::Relaxed);
        tokio::time::sleep(self.config.vote_lease + self.config.append_timeout).await;
        let asked = self
            .network
            .elect(&info.addr, self.config.election_timeout_max)
            .await
            .map_err(|e| RaftApiError::Forward(e.to_string()));
        let moved = match &asked {
            Ok(()) => self
                .raft
                .wait(Some(self.config.election_timeout_max * 4))
                .metrics(|m| m.current_leader != Some(self.id), "leadership moved")
                .await
                .is_ok(),
            Err(_) => false,
        };
        self.raft.runtime_config().heartbeat(true);
        self.beating.store(true, Ordering::Relaxed);
        asked?;
        if !moved {
            return Err(RaftApiError::Forward(format!(
                "node {to} was asked to take over but leadership did not move"
            )));
        }
        Ok(to)
    }

    /// Sends an acknowledgement of `epoch` from this node (by name) to the
    /// node at `addr`.
    pub async fn ack_to(&self, addr: &str, epoch: u64) -> Result<(), super::NetError> {
        self.network
            .ack(
                addr,
                &self.info.name,
                epoch,
                self.config.election_timeout_max,
            )
            .await
    }

    /// The credential this node sends and accepts now (`None` without one).
    pub fn auth(&self) -> Option<super::RaftAuth> {
        self.config.auth.as_ref()?;
        self.network.shared_auth().map(|a| a.get())
    }

    /// Replaces the credential for every later call, sent and received
    /// (rotation of the cluster secret). Does nothing on a node started
    /// without one: a credential cannot be switched on while running.
    pub fn set_auth(&self, auth: super::RaftAuth) {
        if self.config.auth.is_some() {
            if let Some(cell) = self.network.shared_auth() {
                cell.set(auth);
            }
        }
    }

    /// Serves the Raft gRPC service on `listener` in a task this node owns
    /// (stopped by [`shutdown`](Self::shutdown)). Returns the bound address.
    pub fn serve(&self, listener: TcpListener) -> Result<SocketAddr, RaftNodeError> {
        self.serve_tls(listener, None)
    }

    /// [`serve`](Self::serve), over TLS when `tls` is given.
    pub fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Result<SocketAddr, RaftNodeError> {
        let addr = listener.local_addr()?;
        let mut slot = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err(RaftNodeError::AlreadyServing);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let auth = self.config.auth.as_ref().and(self.network.shared_auth());
        let service = AuthService::shared(self.service(), auth);
        let stats = Arc::new(ListenerStats {
            unauthenticated: service.refused(),
            ..ListenerStats::default()
        });
        let limits = &self.config.listener;
        let incoming = bounded_incoming(listener, limits.clone(), stats.clone());
        let mut builder = limits.apply(tonic::transport::Server::builder());
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let handle = tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
        });
        *slot = Some(ServerTask {
            stop,
            handle,
            stats,
        });
        Ok(addr)
    }

    /// Counters of the listener started by [`serve_tls`](Self::serve_tls)
    /// (connections accepted, refused, evicted, timed out; calls refused
    /// for a missing credential).
    pub fn listener_counts(&self) -> Option<ListenerCounts> {
        let slot = self.server.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|s| s.stats.counts())
    }

    /// Stops Raft, the server task (if any) and the lease tracker, and
    /// waits until the storage is closed (a sled directory can then be
    /// opened again).
    pub async fn shutdown(&self) -> Result<(), RaftNodeError> {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, error = %e, "raft core task ended abnormally");
        }
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ServerTask {
            stop, mut handle, ..
        }) = server
        {
            let _ = stop.send(());
            match tokio::time::timeout(CLOSE_TIMEOUT, &mut handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(node = self.id, error = %e, "raft server failed"),
                Ok(Err(e)) => tracing::warn!(node = self.id, error = %e, "raft server task failed"),
                Err(_) => {
                    tracing::warn!(node = self.id, "raft server did not stop in time; aborting");
                    handle.abort();
                }
            }
        }
        let elector = self
            .elector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = elector {
            task.abort();
            let _ = task.await;
        }
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(closed) = closed {
            if tokio::time::timeout(CLOSE_TIMEOUT, closed.closed())
                .await
                .is_err()
            {
                tracing::warn!(node = self.id, "storage still open after shutdown");
            }
        }
        tracing::info!(node = self.id, "raft node stopped");
        Ok(())
    }
}

impl Drop for RaftNode {
    /// Best effort for a node dropped without [`shutdown`](RaftNode::shutdown):
    /// the tasks this wrapper owns are aborted. openraft's own tasks stop
    /// only through `shutdown`, so call it.
    fn drop(&mut self) {
        let server = self
            .server
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(ServerTask { handle, .. }) = server {
            handle.abort();
        }
        let elector = self
            .elector
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = elector {
            task.abort();
        }
    }
}

/// The elector (openraft's own election timer is off, see the module doc):
/// a voter that heard from no leader for `vote_lease` plus a random
/// election timeout asks the other voters whether they
/// would vote (pre-vote) and starts an election only with a quorum of yeses
/// in every voter configuration. On the leader it sends the heartbeats.
///
/// A leader whose process is gone (its Raft port refuses a call, see
/// [`Network::gone`]) is replaced sooner: once quiet for two heartbeats a
/// follower asks it something, and if it is gone the follower runs as soon
/// as the voters grant votes again, `vote_lease` after they last accepted
/// the leader, instead of after the random election timeout too. The
/// voters are staggered by their rank (one heartbeat each) so they do not
/// split the vote. This never elects sooner than the normal rule allows:
/// every voter, the candidate included, still waits `vote_lease` after it
/// last heard from the leader, which the serving lease relies on
/// (see `lease`); a forged refusal costs at most an early pre-vote.
async fn elect_when_quiet(
    raft: Raft,
    network: Network,
    contact: watch::Receiver<Option<LeaderContact>>,
    handed_over: Arc<std::sync::atomic::AtomicBool>,
    beating: Arc<std::sync::atomic::AtomicBool>,
    me: NodeId,
    config: RaftConfig,
) {
    let tick = config.heartbeat_interval / 2;
    let jitter = || {
        let (lo, hi) = (config.election_timeout_min, config.election_timeout_max);
        lo + (hi.saturating_sub(lo)).mul_f64(crate::rng::random::<f64>())
    };
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = Instant::now();
    let mut since = Instant::now();
    let mut wait = config.vote_lease + jitter();
    // The `since` for which the leader was asked whether it runs.
    let mut asked: Option<Instant> = None;
    loop {
        ticks.tick().await;
        let (state, membership, leader) = {
            let m = raft.metrics();
            let m = m.borrow();
            (
                m.state,
                m.membership_config.membership().clone(),
                m.current_leader,
            )
        };
        if state == ServerState::Leader {
            // Half a tick early: the ticks themselves come a little late.
            if beating.load(Ordering::Relaxed)
                && last_beat.elapsed() + tick / 2 >= config.heartbeat_interval
            {
                last_beat = Instant::now();
                if raft.trigger().heartbeat().await.is_err() {
                    return;
                }
            }
        }
        let voter = membership.voter_ids().any(|id| id == me);
        if !voter || matches!(state, ServerState::Leader | ServerState::Learner) {
            since = Instant::now();
            continue;
        }
        if let Some(c) = *contact.borrow() {
            if c.at > since {
                since = c.at;
                wait = config.vote_lease + jitter();
            }
        }
        let leader = leader
            .or_else(|| contact.borrow().and_then(|c| c.leader))
            .filter(|l| *l != me);
        if asked != Some(since) && since.elapsed() >= config.heartbeat_interval * 2 + tick {
            asked = Some(since);
            let addr = leader.and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
            if let (Some(leader), Some(addr)) = (leader, addr) {
                if network.gone(&addr, config.append_timeout).await {
                    let rank = membership
                        .voter_ids()
                        .filter(|id| *id != leader && *id < me)
                        .count() as u32;
                    let fast = config.vote_lease + tick + config.heartbeat_interval * rank;
                    tracing::debug!(node = me, leader, rank, "leader gone; electing sooner");
                    wait = wait.min(fast);
                }
            }
        }
        if since.elapsed() < wait {
            continue;
        }
        let last = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.last_applied, m.last_log_index.unwrap_or(0))
        };
        let asks = membership
            .voter_ids()
            .filter(|id| *id != me)
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .map(|(id, addr)| {
                let network = network.clone();
                async move {
                    let yes = network
                        .pre_vote(&addr, me, last, config.append_timeout)
                        .await;
                    (id, yes)
                }
            });
        let mut yes: BTreeSet<NodeId> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|(id, y)| y.then_some(id))
            .collect();
        yes.insert(me);
        let quorum = membership
            .get_joint_config()
            .iter()
            .all(|c| c.iter().filter(|id| yes.contains(id)).count() * 2 > c.len());
        // A leader that won while the pre-vote waited (a frozen voter holds
        // it up to its timeout) has been heard from: electing now would
        // depose it (and a voter that elects itself no longer refuses votes
        // for the leader it just accepted).
        let heard = contact.borrow().is_some_and(|c| c.at > since);
        let quorum = quorum && !heard;
        tracing::debug!(node = me, ?yes, quorum, heard, "pre-vote round");
        if quorum {
            handed_over.store(false, Ordering::Relaxed);
        }
        if quorum && raft.trigger().elect().await.is_err() {
            return;
        }
        since = Instant::now();
        asked = Some(since);
        wait = config.vote_lease + jitter();
    }
}
