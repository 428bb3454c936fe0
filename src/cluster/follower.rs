//! Every node's side of the shard-map protocol, as pure state: no I/O, no
//! awaits, no clock.
//!
//! [`Follower::apply`] takes each replicated [`ClusterState`] the node
//! applies and says what follows from it: a cluster id learned, a newly
//! committed map (with how many shards it moved), the set of shards this
//! node may serve, and which proposal to acknowledge. The serving set drops
//! what a pending proposal takes away before the acknowledgement leaves, so
//! the leader never hears "done" from a node still serving a lost shard.
//! [`Follower::state`] derives the node's life state, and the drain rules
//! decide whether a stop must first move this node's shards away.

use std::sync::Arc;

use tracing::{info, warn};

use super::serving::ServingSet;
use super::tags::NodeTags;
use super::NodeState;
use crate::gossip::Member;
use crate::raft::ClusterState;
use crate::shards::{self, ShardMap};

/// A map this node just saw committed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NewCommit {
    pub map: Arc<ShardMap>,
    /// Shards whose owner changed from the previous committed map (every
    /// assigned shard for the first map).
    pub moved: u32,
    /// Shards this node owns in it.
    pub mine: usize,
}

/// What applying one replicated state means for this node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Applied {
    /// The cluster id, when it is new to this node.
    pub cluster_id: Option<String>,
    /// A newly committed map.
    pub committed: Option<NewCommit>,
    /// The shards this node may serve now (under a lease).
    pub serving: ServingSet,
    /// The proposal to acknowledge, once `serving` is in force.
    pub ack: Option<u64>,
}

/// What the node's life state depends on besides the maps.
pub(super) struct StateInputs<'a> {
    /// Whether this node may join Raft and own shards.
    pub member: bool,
    /// Gossip members, this node included.
    pub members: &'a [Member],
    /// Whether this node is in the Raft membership.
    pub in_raft: bool,
    /// Whether a serving lease holds for the state this node serves from.
    pub serving_lease: bool,
}

/// Every node's view of the maps.
#[derive(Debug, Default)]
pub(super) struct Follower {
    me: String,
    committed: Option<Arc<ShardMap>>,
    pending: Option<Arc<ShardMap>>,
    /// Highest epoch this node acknowledged.
    acked: u64,
    /// Raft log index of the replicated state last applied.
    applied: u64,
    cluster_id: Option<String>,
    /// Acknowledgements decided (part of `NodeStats::acks_sent`).
    pub(super) acks_sent: u64,
    /// When this node last said it is ready (see [`Follower::ready_ack`]).
    last_ready: Option<tokio::time::Instant>,
}

impl Follower {
    pub fn new(me: impl Into<String>) -> Follower {
        Follower {
            me: me.into(),
            ..Follower::default()
        }
    }

    /// The committed map this node applied.
    pub fn committed(&self) -> Option<&Arc<ShardMap>> {
        self.committed.as_ref()
    }

    /// The pending proposal this node applied.
    pub fn pending(&self) -> Option<&Arc<ShardMap>> {
        self.pending.as_ref()
    }

    /// The cluster id this node applied.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Applies the replicated state `st`.
    pub fn apply(&mut self, st: &ClusterState) -> Applied {
        self.applied = st.last_applied.map_or(0, |l| l.index);
        let mut cluster_id = None;
        if st.cluster_id != self.cluster_id {
            self.cluster_id = st.cluster_id.clone();
            if let Some(id) = st.cluster_id.clone() {
                info!(cluster_id = %id, "cluster id set");
                cluster_id = Some(id);
            }
        }
        let mut committed = None;
        let committed_epoch = self.committed.as_ref().map(|m| m.epoch());
        if let Some((epoch, bytes)) = &st.committed {
            if Some(*epoch) != committed_epoch {
                match ShardMap::decode(bytes) {
                    Ok(map) => committed = Some(self.on_committed(map.with_epoch(*epoch))),
                    Err(e) => warn!(epoch, error = %e, "undecodable committed map"),
                }
            }
        }
        let mut ack = None;
        match &st.proposed {
            Some((epoch, bytes)) if self.pending.as_ref().map(|m| m.epoch()) != Some(*epoch) => {
                match ShardMap::decode(bytes) {
                    Ok(map) => {
                        self.pending = Some(Arc::new(map.with_epoch(*epoch)));
                        // The serving set below stops serving what it takes
                        // away; the acknowledgement follows it.
                        ack = self.acknowledge(*epoch);
                    }
                    Err(e) => warn!(epoch, error = %e, "undecodable proposed map"),
                }
            }
            Some(_) => {}
            None => self.pending = None,
        }
        Applied {
            cluster_id,
            committed,
            serving: self.serving(),
            ack,
        }
    }

    fn on_committed(&mut self, map: ShardMap) -> NewCommit {
        let epoch = map.epoch();
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
        NewCommit { map, moved, mine }
    }

    /// A node left out of the committed map (excluded for not
    /// acknowledging, or not added yet) says it is ready by acknowledging
    /// the committed epoch, at most every `every`: the leader readmits an
    /// excluded node on it at once instead of after its back-off. Returns
    /// the epoch to acknowledge, if it is time.
    pub fn ready_ack(
        &mut self,
        now: tokio::time::Instant,
        every: std::time::Duration,
    ) -> Option<u64> {
        let committed = self.committed.as_ref()?;
        let in_map = |m: &ShardMap| m.node(&self.me).is_some();
        if in_map(committed) || self.pending.as_deref().is_some_and(in_map) {
            return None;
        }
        if self.last_ready.is_some_and(|t| now < t + every) {
            return None;
        }
        self.last_ready = Some(now);
        Some(committed.epoch())
    }

    /// Whether to acknowledge the proposal of `epoch` just applied: once,
    /// and only by a node in it or in the committed map.
    fn acknowledge(&mut self, epoch: u64) -> Option<u64> {
        let involved =
            |m: &Option<Arc<ShardMap>>| m.as_ref().is_some_and(|m| m.node(&self.me).is_some());
        if epoch <= self.acked || !(involved(&self.pending) || involved(&self.committed)) {
            return None;
        }
        self.acked = epoch;
        self.acks_sent += 1;
        Some(epoch)
    }

    /// The shards this node may serve, for the state last applied.
    pub fn serving(&self) -> ServingSet {
        ServingSet::compute(
            &self.me,
            self.committed.as_deref(),
            self.pending.as_deref(),
            self.applied,
        )
    }

    /// The node's life state (the caller keeps `Stopping` once entered).
    pub fn state(&self, i: &StateInputs) -> NodeState {
        if !i.member {
            if i.members
                .iter()
                .any(|m| m.name != self.me && !m.status.is_gone())
            {
                NodeState::Operational
            } else {
                NodeState::Joining
            }
        } else if !i.in_raft {
            NodeState::Joining
        } else if self.committed.is_none() || !i.serving_lease {
            // No map yet, or no leader within the lease: not serving.
            NodeState::Voting
        } else if self.pending.is_some() {
            NodeState::Resharding
        } else {
            NodeState::Operational
        }
    }

    /// Whether this node owns no shard in the committed or pending map.
    pub fn drained(&self) -> bool {
        let none =
            |m: &Option<Arc<ShardMap>>| m.as_ref().is_none_or(|m| m.shards_of(&self.me).is_empty());
        none(&self.committed) && none(&self.pending)
    }

    /// Whether a graceful stop must first drain this node (weight 0): it
    /// owns shards and another member can take them.
    pub fn must_drain(&self, members: &[Member]) -> bool {
        let others = members
            .iter()
            .any(|m| m.name != self.me && !m.status.is_gone() && NodeTags::parse(&m.tags).member);
        !self.drained() && others
    }
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
