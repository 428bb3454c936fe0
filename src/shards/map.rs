//! The `ShardMap` type: owners of a fixed number of shards, plus accessors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ShardMapError, MAX_NODES, MAX_SHARD_COUNT};

/// In-memory owner entry for an unassigned shard (`owners` holds `u16`
/// indexes into the sorted node list; `MAX_NODES` keeps real indexes below it).
pub(crate) const NO_OWNER: u16 = u16::MAX;

/// One node of a [`ShardMap`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name, unique within the map and never empty.
    pub id: String,
    /// Relative share of the shards; 0 owns nothing (e.g. draining).
    pub weight: u32,
    /// Small integer, unique within the map, kept while the node stays in
    /// successive maps (see [`rebalance`](super::rebalance)).
    pub worker_id: u32,
}

/// Which node owns each of a fixed number of shards, as proposed at `epoch`.
///
/// Nodes are kept sorted by id; the owner of each shard is stored as a `u16`
/// index into that list, so a 10,000-shard map holds 20 KB of owners.
/// Build one with [`ShardMap::new`] (all shards unassigned), then
/// [`rebalance`](super::rebalance), or [`ShardMap::decode`] one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    into = "super::codec::ShardMapRepr",
    try_from = "super::codec::ShardMapRepr"
)]
pub struct ShardMap {
    pub(crate) epoch: u64,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) owners: Vec<u16>,
}

impl Default for ShardMap {
    /// An empty map of [`DEFAULT_SHARD_COUNT`](super::DEFAULT_SHARD_COUNT) shards.
    fn default() -> Self {
        Self::empty(super::DEFAULT_SHARD_COUNT)
    }
}

impl ShardMap {
    /// A map of `shard_count` shards at epoch 0 with no nodes: every shard is
    /// unassigned. Fails unless `1 <= shard_count <= MAX_SHARD_COUNT`.
    pub fn new(shard_count: u32) -> Result<Self, ShardMapError> {
        check_shard_count(u64::from(shard_count))?;
        Ok(Self::empty(shard_count))
    }

    fn empty(shard_count: u32) -> Self {
        ShardMap {
            epoch: 0,
            nodes: Vec::new(),
            owners: vec![NO_OWNER; shard_count as usize],
        }
    }

    /// Builds a map from parts in wire form (`owners[s]`: 0 = unassigned,
    /// k = `nodes[k - 1]`), checking every invariant. Shared by the protobuf
    /// decoder and serde.
    pub(crate) fn from_wire(
        epoch: u64,
        shard_count: u32,
        nodes: Vec<NodeInfo>,
        owners: &[u32],
    ) -> Result<Self, ShardMapError> {
        check_shard_count(u64::from(shard_count))?;
        check_nodes(&nodes)?;
        if owners.len() != shard_count as usize {
            return Err(ShardMapError::OwnersLength {
                expected: shard_count,
                found: owners.len(),
            });
        }
        let n = nodes.len();
        let mut out = Vec::with_capacity(owners.len());
        for (shard, &o) in owners.iter().enumerate() {
            out.push(match o {
                0 => NO_OWNER,
                // `n <= MAX_NODES`, so `o - 1 < u16::MAX` fits.
                k if (k as usize) <= n => (k - 1) as u16,
                k => {
                    return Err(ShardMapError::UnknownNodeIndex {
                        shard: shard as u32,
                        index: k,
                        nodes: n,
                    })
                }
            });
        }
        Ok(ShardMap {
            epoch,
            nodes,
            owners: out,
        })
    }

    /// The same map with `shard` owned by `node`, which must be in it (for
    /// a [`Placement`](super::Placement) that adjusts another's map, e.g.
    /// pins a shard).
    pub fn with_owner(mut self, shard: u32, node: &str) -> Result<Self, ShardMapError> {
        let count = self.shard_count();
        let slot = self
            .owners
            .get_mut(shard as usize)
            .ok_or(ShardMapError::ShardOutOfRange { shard, count })?;
        let index = self
            .nodes
            .binary_search_by(|n| n.id.as_str().cmp(node))
            .map_err(|_| ShardMapError::UnknownNode(node.to_string()))?;
        // `index < MAX_NODES < u16::MAX`.
        *slot = index as u16;
        Ok(self)
    }

    /// Owners in wire form: 0 = unassigned, k = `nodes()[k - 1]`.
    pub(crate) fn wire_owners(&self) -> Vec<u32> {
        self.owners
            .iter()
            .map(|&o| if o == NO_OWNER { 0 } else { u32::from(o) + 1 })
            .collect()
    }

    /// Number of shards (fixed for the lifetime of a cluster).
    pub fn shard_count(&self) -> u32 {
        self.owners.len() as u32
    }

    /// Epoch the map was proposed in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The same map with another epoch.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The nodes of the map sorted by id, including weight-0 nodes.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `id`, if it is in the map.
    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.index_of(id).map(|i| &self.nodes[i])
    }

    pub(crate) fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.id.as_str().cmp(id)).ok()
    }

    /// Owner of `shard`; `None` if it is unassigned or out of range.
    pub fn owner_of(&self, shard: u32) -> Option<&str> {
        match *self.owners.get(shard as usize)? {
            NO_OWNER => None,
            i => Some(self.nodes[usize::from(i)].id.as_str()),
        }
    }

    /// Shards owned by `node`, ascending; empty if it owns none or is absent.
    pub fn shards_of(&self, node: &str) -> Vec<u32> {
        let Some(i) = self.index_of(node) else {
            return Vec::new();
        };
        let i = i as u16;
        (0..self.shard_count())
            .filter(|&s| self.owners[s as usize] == i)
            .collect()
    }

    /// Number of shards each node owns, for every node of the map (0 for a
    /// node that owns none).
    pub fn counts(&self) -> BTreeMap<&str, u32> {
        let per_index = self.index_counts();
        self.nodes
            .iter()
            .zip(per_index)
            .map(|(n, c)| (n.id.as_str(), c))
            .collect()
    }

    /// Number of unassigned shards.
    pub fn unassigned(&self) -> u32 {
        self.owners.iter().filter(|&&o| o == NO_OWNER).count() as u32
    }

    /// True if both maps have the same nodes (ids, weights, worker ids) and
    /// owners, whatever their epochs: a new proposal would change nothing.
    pub fn same_assignment(&self, other: &ShardMap) -> bool {
        self.nodes == other.nodes && self.owners == other.owners
    }

    /// Shards owned per node index.
    pub(crate) fn index_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.nodes.len()];
        for &o in &self.owners {
            if let Some(c) = counts.get_mut(usize::from(o)) {
                *c += 1;
            }
        }
        counts
    }
}

pub(crate) fn check_shard_count(shard_count: u64) -> Result<(), ShardMapError> {
    if shard_count == 0 || shard_count > u64::from(MAX_SHARD_COUNT) {
        return Err(ShardMapError::InvalidShardCount(shard_count));
    }
    Ok(())
}

/// Checks the node list of a map: bounded length, non-empty ids strictly
/// ascending, unique worker ids.
pub(crate) fn check_nodes(nodes: &[NodeInfo]) -> Result<(), ShardMapError> {
    if nodes.len() > MAX_NODES {
        return Err(ShardMapError::TooManyNodes(nodes.len()));
    }
    if nodes.iter().any(|n| n.id.is_empty()) {
        return Err(ShardMapError::EmptyNodeId);
    }
    for pair in nodes.windows(2) {
        match pair[0].id.cmp(&pair[1].id) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                return Err(ShardMapError::DuplicateNode(pair[1].id.clone()))
            }
            std::cmp::Ordering::Greater => {
                return Err(ShardMapError::NodesNotSorted(
                    pair[1].id.clone(),
                    pair[0].id.clone(),
                ))
            }
        }
    }
    let mut workers: Vec<u32> = nodes.iter().map(|n| n.worker_id).collect();
    workers.sort_unstable();
    if let Some(pair) = workers.windows(2).find(|p| p[0] == p[1]) {
        return Err(ShardMapError::DuplicateWorkerId(pair[0]));
    }
    Ok(())
}
