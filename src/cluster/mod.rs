//! The coordinator: joins gossip, Raft, liveness and shard maps into one
//! node, and the [`Cluster`] handle applications use.
//!
//! This is the only module that decides "member, alive and in Raft". One
//! task (`node::Node`) owns every piece of mutable state; the handle reads
//! `watch` channels and sends commands over a bounded channel. The leader
//! adds nodes it sees in gossip to Raft, keeps at most `max_voters` voters
//! spread over zones, probes every owner with the liveness checker, and on
//! every change of the live owner set proposes a rebalanced map, waits for
//! every owner's acknowledgement and commits it. Every node serves its
//! shards only under a lease from the leader.
//!
//! Files: `startup.rs` binds the sockets (or their seams), reads TLS and
//! starts transports and discovery; `seams.rs` lets the in-memory network
//! carry liveness; `node.rs` is the node task; `view.rs` derives node
//! lists, the status view and gauges; `ids.rs` maps node names to Raft ids;
//! the rest are the coordinator's rules.
//!
//! Imports: `config`, `gossip`, `raft`, `liveness`, `shards`, `discovery`,
//! `metrics` (the registry and the status view, never its server). It never
//! imports `management`: the [`Agent`](crate::Agent) composes the servers.

mod admission;
mod app_log;
mod bootstrap;
mod error;
mod follower;
pub mod handoff;
mod ids;
mod jobs;
mod keys;
mod leader;
mod node;
mod ops;
mod requests;
mod reshard;
mod restore;
mod seams;
mod serving;
mod startup;
mod tags;
mod view;
mod voters;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::Config;
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use crate::raft::RaftNode;
use crate::shards::ShardMap;

pub use crate::discovery::MemoryRegistry;
pub use crate::gossip::KeyOp;
pub use crate::gossip::{MemNetwork, Member, MemberStatus, UserEvent};
pub use crate::metrics::{Liveness, NodeView, RaftRole, StatusView};
pub use crate::raft::{MemDisks, Router};
pub use app_log::{AppLogEntry, AppLogWatch};
pub use error::ClusterError;
pub use handoff::{
    handoff, Committed, Gate, Handoff, HandoffEvent, HandoffEvents, HandoffSettings, Proposed,
    ShardMove,
};
pub use keys::KeyringState;
pub use node::NodeStats;
pub use serving::ServingSet;
pub use tags::{EP_GOSSIP, EP_LIVENESS, EP_MANAGEMENT, EP_METRICS, EP_RAFT};

/// Where a node is in its life. Its name ([`as_str`](Self::as_str)) is the
/// same in logs, metrics labels, `/status`, gRPC and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Binding sockets.
    Starting,
    /// Looking for the cluster (gossip join, bootstrap, waiting to be added).
    Joining,
    /// In Raft, waiting for the first committed shard map.
    Voting,
    /// A proposed map is waiting for acknowledgements.
    Resharding,
    /// Serving under a committed map.
    Operational,
    /// Leaving.
    Stopping,
}

/// The node's part in Raft. Its name ([`as_str`](Self::as_str)) is the same
/// in logs, metrics labels, `/status`, gRPC and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The Raft leader.
    Leader,
    /// A voting follower.
    Voter,
    /// A non-voting member (owns shards, replicates the log).
    Learner,
    /// Not in Raft: a client, or a member not yet added.
    NonMember,
}

impl NodeState {
    /// Every state, in life order.
    pub const ALL: [NodeState; 6] = [
        NodeState::Starting,
        NodeState::Joining,
        NodeState::Voting,
        NodeState::Resharding,
        NodeState::Operational,
        NodeState::Stopping,
    ];

    /// `starting`, `joining`, `voting`, `resharding`, `operational` or
    /// `stopping`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Joining => "joining",
            NodeState::Voting => "voting",
            NodeState::Resharding => "resharding",
            NodeState::Operational => "operational",
            NodeState::Stopping => "stopping",
        }
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Leader, Role::Voter, Role::Learner, Role::NonMember];

    /// `leader`, `voter`, `learner` or `non_member`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::NonMember => "non_member",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened, as seen by this node. Serialized with the
/// same snake_case kinds as the management API's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterEvent {
    /// This node's state changed.
    StateChanged(NodeState),
    /// This node's role changed.
    RoleChanged(Role),
    /// The Raft leader changed (`None`: no leader right now).
    LeaderChanged(Option<String>),
    /// A node joined gossip.
    MemberJoined(String),
    /// A node left gracefully.
    MemberLeft(String),
    /// A node failed (gossip), or stopped answering liveness probes.
    MemberFailed(String),
    /// A node's tags changed.
    MemberUpdated(String),
    /// A failed node answers again.
    MemberAlive(String),
    /// A map was proposed.
    MapProposed {
        /// Its epoch.
        epoch: u64,
    },
    /// A map was committed.
    MapCommitted {
        /// Its epoch.
        epoch: u64,
        /// Shards that changed owner from the previous committed map.
        moved: u32,
    },
    /// This node's gossip view lost every lighthouse (`valid: false`: it
    /// may be cut off from the cluster) or holds one again.
    ViewValidity {
        /// Whether a lighthouse is alive in the view (or none is known).
        valid: bool,
        /// Lighthouses alive or suspect in the view.
        lighthouses_alive: u64,
    },
}

/// Networks a node can use instead of real sockets, so tests can cut and
/// delay links. Each seam that is set replaces one kind of socket; with all
/// four set a node binds none (the agent's management and metrics servers
/// are not the cluster's). Clone one `Seams` for every node of a test: the
/// networks inside are shared handles.
#[derive(Clone, Default)]
pub struct Seams {
    /// Gossip over this in-memory network instead of UDP+TCP.
    pub gossip: Option<MemNetwork>,
    /// Raft RPCs (and acknowledgements) through this router instead of
    /// gRPC over TCP. No Raft listener is bound: the node's Raft address
    /// is a synthetic one from [`Router::reserve_addr`].
    pub raft: Option<Router>,
    /// Liveness echo (the responder, and the checker on members) over this
    /// in-memory network instead of UDP. It may be the gossip network
    /// itself or a separate one; either way liveness gets addresses of its
    /// own, so it can be cut while gossip stays up.
    pub liveness: Option<MemNetwork>,
    /// Zero-conf discovery through this in-memory registry instead of
    /// mDNS. As with mDNS, it runs only when `Config::zero_conf` is on.
    pub discovery: Option<MemoryRegistry>,
    /// Raft logs of nodes with [`StorageConfig::Memory`](crate::config::StorageConfig)
    /// kept here across restarts of a node id (simulated disks).
    pub disks: Option<MemDisks>,
}

/// This node's view of Raft, for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RaftStatus {
    /// Current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied log entry.
    pub last_applied: u64,
    /// Voters by node id, sorted.
    pub voters: Vec<String>,
    /// Learners by node id, sorted.
    pub learners: Vec<String>,
}

/// One node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// Gossip status (alive, suspect, dead, left).
    pub gossip_status: String,
    /// Role in Raft.
    pub role: Role,
    /// The leader's liveness view: `Some(true)` alive, `Some(false)` dead,
    /// `None` not probed (or this node is not the leader).
    pub live: Option<bool>,
    /// Endpoints (`ep.` tags without the prefix).
    pub endpoints: BTreeMap<String, String>,
    /// All gossip tags.
    pub tags: BTreeMap<String, String>,
    /// Zone.
    pub zone: String,
    /// Effective shard weight.
    pub weight: u32,
    /// Shards owned in the committed map.
    pub shards: u32,
}

/// Commands from handles to the node task.
pub(crate) enum Request {
    SetEndpoint(String, String, oneshot::Sender<Result<(), ClusterError>>),
    SetWeight(String, u32, oneshot::Sender<Result<(), ClusterError>>),
    AddNode(String, oneshot::Sender<Result<(), ClusterError>>),
    RemoveNode(String, oneshot::Sender<Result<(), ClusterError>>),
    StepDown(oneshot::Sender<Result<(), ClusterError>>),
    Nodes(oneshot::Sender<Vec<NodeInfo>>),
    Stats(oneshot::Sender<NodeStats>),
}

/// What handles send to the node task: a request it answers at once, or
/// the stop it answers once it has left.
pub(crate) enum ToNode {
    Request(Request),
    Stop(oneshot::Sender<()>),
    /// Stop at once, as a killed process would: nothing drained, handed
    /// over or announced.
    Crash(oneshot::Sender<()>),
}

struct Shared {
    node_id: String,
    cluster_name: String,
    shard_count: u32,
    app_log_max_entry: usize,
    requests: mpsc::Sender<ToNode>,
    events: broadcast::Sender<ClusterEvent>,
    state: watch::Receiver<NodeState>,
    role: watch::Receiver<Role>,
    leader: watch::Receiver<Option<String>>,
    map: watch::Receiver<Option<Arc<ShardMap>>>,
    serving: watch::Receiver<Arc<ServingSet>>,
    /// Shards a hand-off withholds until the service has their data.
    gate: Option<Gate>,
    status: watch::Receiver<StatusView>,
    gossip: Gossip,
    raft: Option<Arc<RaftNode>>,
    metrics: Metrics,
    addrs: BTreeMap<String, SocketAddr>,
    started: std::time::Instant,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A running node: a cheap, cloneable handle.
///
/// ```no_run
/// # async fn demo() -> Result<(), clusterfunk::cluster::ClusterError> {
/// use clusterfunk::{Cluster, Config};
/// let mut config = Config::local("node-1");
/// config.join = vec!["10.0.0.2:7946".into()]; // any member's gossip address
/// let cluster = Cluster::start(config).await?;
/// cluster.set_endpoint("kv", "10.0.0.1:9000").await?;
/// let mut maps = cluster.shard_map();
/// while maps.changed().await.is_ok() {
///     let mine = cluster.local_shards();
///     println!("epoch {:?}: I own {} shards", cluster.epoch(), mine.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Validates `config`, binds every socket, joins and starts the node.
    /// Returns once the node runs; the cluster forms in the background
    /// (watch [`state`](Self::state) or [`shard_map`](Self::shard_map)).
    ///
    /// The node serves neither the management API nor `/metrics`: an
    /// [`Agent`](crate::Agent) starts those beside it.
    pub async fn start(config: Config) -> Result<Cluster, ClusterError> {
        Cluster::start_with(config, Seams::default()).await
    }

    /// [`start`](Self::start) with replaced networks (tests, simulations).
    pub async fn start_with(config: Config, seams: Seams) -> Result<Cluster, ClusterError> {
        startup::start(config.validate()?, seams, None).await
    }

    /// [`start_with`](Self::start_with) for a stateful service that takes
    /// part in shard moves through `handoff` (see [`handoff`](mod@handoff)).
    pub async fn start_with_handoff(
        config: Config,
        seams: Seams,
        handoff: Handoff,
    ) -> Result<Cluster, ClusterError> {
        startup::start(config.validate()?, seams, Some(handoff)).await
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.shared.cluster_name
    }

    /// Bound local addresses by endpoint name (`gossip`, `raft`, `liveness`,
    /// `management`, `metrics`), as advertised to other nodes.
    pub fn local_endpoints(&self) -> &BTreeMap<String, SocketAddr> {
        &self.shared.addrs
    }

    /// The node's state now.
    pub fn state(&self) -> NodeState {
        *self.shared.state.borrow()
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<NodeState> {
        self.shared.state.clone()
    }

    /// The node's Raft role now.
    pub fn role(&self) -> Role {
        *self.shared.role.borrow()
    }

    /// The leader's node id, if there is one.
    pub fn leader(&self) -> Option<String> {
        self.shared.leader.borrow().clone()
    }

    /// A receiver of leader changes.
    pub fn watch_leader(&self) -> watch::Receiver<Option<String>> {
        self.shared.leader.clone()
    }

    /// Events from now on. A receiver that falls more than 1,024 events
    /// behind loses the oldest (`RecvError::Lagged` tells how many).
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// Publishes an endpoint of this node as gossip tag `ep.<name>`.
    pub async fn set_endpoint(
        &self,
        name: &str,
        addr: impl Into<String>,
    ) -> Result<(), ClusterError> {
        self.call(|r| Request::SetEndpoint(name.to_string(), addr.into(), r))
            .await?
    }

    /// Node ids of every alive gossip member of this cluster.
    pub fn nodes(&self) -> Vec<String> {
        self.cluster_members()
            .into_iter()
            .filter(|m| !m.status.is_gone())
            .map(|m| m.name)
            .collect()
    }

    /// Every node with role, liveness, endpoints and shard count.
    pub async fn node_infos(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        self.call(Request::Nodes).await
    }

    /// Endpoint `name` of node `node` (from its gossip tags).
    pub fn endpoint(&self, node: &str, name: &str) -> Option<String> {
        let key = crate::gossip::endpoint_key(name);
        self.shared
            .gossip
            .watch()
            .borrow()
            .iter()
            .find(|m| m.name == node)
            .and_then(|m| m.tags.get(&key).cloned())
    }

    /// Gossip members of this cluster name (any status).
    pub fn cluster_members(&self) -> Vec<Member> {
        let name = &self.shared.cluster_name;
        self.shared
            .gossip
            .members()
            .into_iter()
            .filter(|m| m.tags.get(tags::CLUSTER) == Some(name))
            .collect()
    }

    /// The committed shard map (routing uses only committed maps).
    pub fn shard_map(&self) -> watch::Receiver<Option<Arc<ShardMap>>> {
        self.shared.map.clone()
    }

    /// The committed epoch, if a map was committed.
    pub fn epoch(&self) -> Option<u64> {
        self.shared.map.borrow().as_ref().map(|m| m.epoch())
    }

    /// The shard of `key` (stable XXH64, see [`crate::shards`]).
    pub fn shard_for(&self, key: &[u8]) -> u32 {
        crate::shards::shard_for_bytes(key, self.shard_count())
    }

    /// Shards in this cluster (from the committed map once there is one).
    pub fn shard_count(&self) -> u32 {
        self.shared
            .map
            .borrow()
            .as_ref()
            .map(|m| m.shard_count())
            .unwrap_or(self.shared.shard_count)
    }

    /// The owner of `key` in the committed map.
    pub fn owner_of(&self, key: &[u8]) -> Option<String> {
        let shard = self.shard_for(key);
        self.shared
            .map
            .borrow()
            .as_ref()
            .and_then(|m| m.owner_of(shard).map(str::to_string))
    }

    /// This node's shards in the committed map.
    pub fn local_shards(&self) -> Vec<u32> {
        self.shared
            .map
            .borrow()
            .as_ref()
            .map(|m| m.shards_of(&self.shared.node_id))
            .unwrap_or_default()
    }

    /// Whether this node may serve `shard` now: it owns it in the committed
    /// map, no applied proposal takes it away, and a serving lease holds
    /// that a leader confirmed by a quorum granted for this very state (see
    /// `raft::lease`); with a hand-off registered, also only once the
    /// service marked the shard ready after acquiring it. Cheap: a `watch`
    /// borrow and one or two short locks.
    pub fn is_serving(&self, shard: u32) -> bool {
        let set = self.shared.serving.borrow().clone();
        set.contains(shard)
            && !self
                .shared
                .gate
                .as_ref()
                .is_some_and(|g| g.is_withheld(shard))
            && self.lease_valid(set.applied())
    }

    /// A receiver of the set of shards this node may serve before the
    /// lease check that [`is_serving`](Self::is_serving) adds (for probes
    /// that sample every shard cheaply).
    #[doc(hidden)]
    pub fn watch_serving(&self) -> watch::Receiver<Arc<ServingSet>> {
        self.shared.serving.clone()
    }

    fn lease_valid(&self, applied: u64) -> bool {
        self.shared
            .raft
            .as_ref()
            .is_some_and(|r| r.serving_until(applied).is_some())
    }

    /// Sets `node`'s shard weight (0 drains it) in the replicated registry,
    /// through the leader; the leader then proposes a new map.
    pub async fn set_weight(&self, node: &str, weight: u32) -> Result<(), ClusterError> {
        self.call(|r| Request::SetWeight(node.to_string(), weight, r))
            .await?
    }

    /// Adds a node seen in gossip to Raft (leader only; normally automatic).
    pub async fn add_node(&self, node: &str) -> Result<(), ClusterError> {
        self.call(|r| Request::AddNode(node.to_string(), r)).await?
    }

    /// Removes a node from Raft and the shard map (leader only).
    pub async fn remove_node(&self, node: &str) -> Result<(), ClusterError> {
        self.call(|r| Request::RemoveNode(node.to_string(), r))
            .await?
    }

    /// Asks the leader (this node) to hand leadership to another voter.
    pub async fn step_down(&self) -> Result<(), ClusterError> {
        self.call(Request::StepDown).await?
    }

    /// Counters of the coordinator.
    pub async fn stats(&self) -> Result<NodeStats, ClusterError> {
        self.call(Request::Stats).await
    }

    /// The status snapshot the node task refreshes twice a second (served
    /// on `/status` and `/`); see [`status_now`](Self::status_now).
    pub fn status(&self) -> watch::Receiver<StatusView> {
        self.shared.status.clone()
    }

    /// The status as of now: the latest snapshot with its state, role,
    /// leader, map and member counts read afresh, plus this node's Raft
    /// term and log indexes (what the management API's GetStatus sends).
    pub fn status_now(&self) -> StatusView {
        let mut v = self.shared.status.borrow().clone();
        let state = self.state();
        v.cluster_id = self.cluster_id();
        v.leader = self.leader();
        v.role = self.role().as_str().to_string();
        v.state = state.as_str().to_string();
        v.operational = state == NodeState::Operational;
        v.shard_count = self.shard_count();
        if let Some(map) = self.shared.map.borrow().as_ref() {
            v.epoch = map.epoch();
            v.shards_owned = map.counts().get(self.node_id()).copied().unwrap_or(0);
            v.shards_unassigned = map.unassigned();
        }
        v.members_by_status.clear();
        for m in self.cluster_members() {
            *v.members_by_status
                .entry(m.status.as_str().to_string())
                .or_insert(0) += 1;
        }
        if let Some(r) = self.raft_status() {
            v.raft_term = r.term;
            v.raft_last_log_index = r.last_log_index;
            v.raft_last_applied = r.last_applied;
            (v.voters, v.learners) = (r.voters, r.learners);
        }
        v.uptime_ms = self.shared.started.elapsed().as_millis() as u64;
        v
    }

    /// This node's Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Sends a Serf-style user event to every node over gossip. With
    /// `coalesce`, a newer event of the same name replaces an older one
    /// not yet delivered.
    pub async fn send_user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ClusterError> {
        self.shared
            .gossip
            .user_event(name, payload, coalesce)
            .await
            .map_err(ClusterError::from_gossip)
    }

    /// User events from now on (bounded: a reader that falls behind loses
    /// the newest, as gossip would).
    pub async fn user_events(&self) -> Result<mpsc::Receiver<UserEvent>, ClusterError> {
        self.shared
            .gossip
            .subscribe_user_events()
            .await
            .map_err(ClusterError::from_gossip)
    }

    /// The cluster id made at bootstrap, once this node knows it.
    pub fn cluster_id(&self) -> Option<String> {
        self.shared
            .raft
            .as_ref()
            .and_then(|r| r.state().borrow().cluster_id.clone())
            .or_else(|| self.shared.status.borrow().cluster_id.clone())
    }

    /// This node's view of Raft (`None` on a node that is not a member).
    pub fn raft_status(&self) -> Option<RaftStatus> {
        let raft = self.shared.raft.as_ref()?;
        let metrics = raft.metrics().borrow().clone();
        Some(view::raft_status(&metrics))
    }

    /// The service endpoint `name` of every alive node that publishes it,
    /// by node id.
    pub fn endpoints(&self, name: &str) -> BTreeMap<String, String> {
        let key = crate::gossip::endpoint_key(name);
        self.cluster_members()
            .into_iter()
            .filter(|m| !m.status.is_gone())
            .filter_map(|m| m.tags.get(&key).map(|a| (m.name.clone(), a.clone())))
            .collect()
    }

    /// Graceful stop: drains this node's shards, hands leadership over,
    /// leaves gossip with a leave intent, then stops every task.
    pub async fn stop(&self) {
        self.end(ToNode::Stop).await;
    }

    /// Ends the node as `kill -9` ends a process: it stops serving at once
    /// and every task ends with nothing drained, handed over or announced
    /// (the deterministic simulation's crash).
    #[doc(hidden)]
    pub async fn crash(&self) {
        self.end(ToNode::Crash).await;
    }

    /// Asks the node task to end (`Stop` or `Crash`) and waits for it.
    async fn end(&self, how: fn(oneshot::Sender<()>) -> ToNode) {
        // An error only means the node task has already ended.
        let _ = crate::actor::call(&self.shared.requests, how).await;
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, ClusterError> {
        crate::actor::call(&self.shared.requests, |r| ToNode::Request(make(r)))
            .await
            .map_err(|_| ClusterError::Stopped)
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.shared.node_id)
            .field("cluster", &self.shared.cluster_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{GOSSIP_STATUSES, NODE_ROLES, NODE_STATES};

    /// Metrics labels, `/status`, gRPC and the CLI use one name per value.
    #[test]
    fn one_name_per_state_role_and_status() {
        assert_eq!(NodeState::ALL.map(NodeState::as_str), NODE_STATES);
        assert_eq!(Role::ALL.map(Role::as_str), NODE_ROLES);
        let statuses = [
            MemberStatus::Alive,
            MemberStatus::Suspect,
            MemberStatus::Dead,
            MemberStatus::Left,
        ];
        assert_eq!(statuses.map(MemberStatus::as_str), GOSSIP_STATUSES);
        for s in NodeState::ALL {
            let json = serde_json::to_string(&s).expect("json");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(s.to_string(), s.as_str());
        }
        for r in Role::ALL {
            let json = serde_json::to_string(&r).expect("json");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        let ev =
            serde_json::to_value(ClusterEvent::MapCommitted { epoch: 3, moved: 1 }).expect("json");
        assert_eq!(ev["map_committed"]["epoch"], 3);
    }
}
