//! What changes between two maps, per node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::map::NO_OWNER;
use super::{ShardMap, ShardMapError};

/// Shards one node gains and loses between two maps (ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// Shards the node owns in the new map but not in the old one.
    pub gained: Vec<u32>,
    /// Shards the node owned in the old map but not in the new one.
    pub lost: Vec<u32>,
}

/// The difference between two maps of the same shard count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDelta {
    /// Per node, by id; only nodes that gain or lose at least one shard.
    pub nodes: BTreeMap<String, NodeDelta>,
    /// Number of shards whose owner differs, counting shards that become
    /// assigned or unassigned.
    pub moved: u32,
}

/// Compares owners shard by shard, by node id (node indexes differ between
/// maps). Fails if the shard counts differ. Cost: O(shards + nodes).
pub fn delta(old: &ShardMap, new: &ShardMap) -> Result<ShardDelta, ShardMapError> {
    if old.shard_count() != new.shard_count() {
        return Err(ShardMapError::ShardCountMismatch(
            old.shard_count(),
            new.shard_count(),
        ));
    }
    // Old index -> new index of the same id (NO_OWNER if absent), so that
    // "same owner" is one integer comparison per shard.
    let remap = old.remap_to(&new.nodes);
    let mut lost: Vec<Vec<u32>> = vec![Vec::new(); old.nodes.len()];
    let mut gained: Vec<Vec<u32>> = vec![Vec::new(); new.nodes.len()];
    let mut moved = 0;
    for (shard, (&o, &n)) in old.owners.iter().zip(&new.owners).enumerate() {
        let same_node = remap.get(usize::from(o)).copied().unwrap_or(NO_OWNER) == n;
        if same_node && (n != NO_OWNER || o == NO_OWNER) {
            continue;
        }
        moved += 1;
        if let Some(l) = lost.get_mut(usize::from(o)) {
            l.push(shard as u32);
        }
        if let Some(g) = gained.get_mut(usize::from(n)) {
            g.push(shard as u32);
        }
    }
    let mut nodes: BTreeMap<String, NodeDelta> = BTreeMap::new();
    for (node, lost) in old.nodes.iter().zip(lost) {
        if !lost.is_empty() {
            nodes.entry(node.id.clone()).or_default().lost = lost;
        }
    }
    for (node, gained) in new.nodes.iter().zip(gained) {
        if !gained.is_empty() {
            nodes.entry(node.id.clone()).or_default().gained = gained;
        }
    }
    Ok(ShardDelta { nodes, moved })
}
