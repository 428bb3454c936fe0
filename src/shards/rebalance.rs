//! Weighted assignment with the fewest possible moves.

use super::map::NO_OWNER;
use super::{NodeInfo, ShardMap, ShardMapError, MAX_NODES};

/// Marks an old node index that has no place in the new map.
const GONE: u16 = u16::MAX;

/// Computes the next map from `previous` for the `live` nodes, given as
/// `(node id, weight)` pairs.
///
/// - **Targets.** A node of weight `w` gets `S * w / W` shards (`S` the shard
///   count, `W` the total weight), rounded by the largest remainder method:
///   everyone gets the floor, and the shards left over go one each to the
///   nodes with the largest remainders; ties go to the node owning more
///   shards in `previous` (fewer moves), then to the smaller id. Every count
///   is therefore within one shard of the exact proportional share.
/// - **Moves.** Every node keeps as many of its current shards as its target
///   allows (its lowest-numbered ones). Only unassigned shards, shards of
///   departed or weight-0 nodes, and the surplus of nodes above target move;
///   they go, in shard order, to the nodes below target in id order. No
///   assignment with these targets moves fewer shards.
/// - **Nodes.** The new map lists exactly the live nodes (weight-0 ones
///   included, owning nothing). A node that was in `previous` keeps its
///   worker id; new nodes, in id order, take the lowest ids not in use.
/// - **No positive weight** (or no live node): every shard is unassigned.
/// - **Epoch**: `previous.epoch() + 1` (saturating); use
///   [`ShardMap::with_epoch`] to set another.
/// - **Deterministic**: the result depends only on `previous` and the set of
///   live nodes, not on their order in `live`.
///
/// Fails on an empty node id, on a node id given twice (rather than guess
/// which weight is meant) and on more than `MAX_NODES` nodes.
///
/// Cost: O(shards + nodes log nodes).
pub fn rebalance<S: AsRef<str>>(
    previous: &ShardMap,
    live: &[(S, u32)],
) -> Result<ShardMap, ShardMapError> {
    if live.len() > MAX_NODES {
        return Err(ShardMapError::TooManyNodes(live.len()));
    }
    let mut specs: Vec<(&str, u32)> = live.iter().map(|(id, w)| (id.as_ref(), *w)).collect();
    specs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if specs.first().is_some_and(|s| s.0.is_empty()) {
        return Err(ShardMapError::EmptyNodeId);
    }
    if let Some(pair) = specs.windows(2).find(|p| p[0].0 == p[1].0) {
        return Err(ShardMapError::DuplicateNode(pair[0].0.to_owned()));
    }

    // Old node index -> new node index (GONE if not live), by merging the
    // two sorted id lists; and the previous worker id of each live node.
    let mut remap = vec![GONE; previous.nodes.len()];
    let mut old_worker: Vec<Option<u32>> = vec![None; specs.len()];
    let (mut i, mut j) = (0, 0);
    while i < previous.nodes.len() && j < specs.len() {
        match previous.nodes[i].id.as_str().cmp(specs[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                remap[i] = j as u16;
                old_worker[j] = Some(previous.nodes[i].worker_id);
                i += 1;
                j += 1;
            }
        }
    }
    let nodes = assign_worker_ids(&specs, &old_worker);

    let n = specs.len();
    let mut held = vec![0u32; n];
    for &o in &previous.owners {
        if let Some(&m) = remap.get(usize::from(o)) {
            if m != GONE {
                held[usize::from(m)] += 1;
            }
        }
    }
    let weights: Vec<u32> = specs.iter().map(|s| s.1).collect();
    let targets = targets(previous.shard_count(), &weights, &held);

    // Keep what fits under each target; free the rest.
    let mut kept = vec![0u32; n];
    let mut free = Vec::new();
    let mut owners = Vec::with_capacity(previous.owners.len());
    for (shard, &o) in previous.owners.iter().enumerate() {
        let m = remap.get(usize::from(o)).copied().unwrap_or(GONE);
        if m != GONE && kept[usize::from(m)] < targets[usize::from(m)] {
            kept[usize::from(m)] += 1;
            owners.push(m);
        } else {
            free.push(shard);
            owners.push(NO_OWNER);
        }
    }
    // Hand the freed shards to the nodes below target. The targets sum to
    // the shard count (or to 0), so the free list never runs out early.
    let mut free = free.into_iter();
    for (m, (&k, &t)) in kept.iter().zip(&targets).enumerate() {
        for shard in free.by_ref().take((t - k) as usize) {
            owners[shard] = m as u16;
        }
    }

    Ok(ShardMap {
        epoch: previous.epoch.saturating_add(1),
        nodes,
        owners,
    })
}

/// Worker ids: kept for surviving nodes, lowest free ones for new nodes.
fn assign_worker_ids(specs: &[(&str, u32)], old_worker: &[Option<u32>]) -> Vec<NodeInfo> {
    let mut taken: Vec<u32> = old_worker.iter().flatten().copied().collect();
    taken.sort_unstable();
    let mut taken = taken.into_iter().peekable();
    let mut next = 0u32;
    specs
        .iter()
        .zip(old_worker)
        .map(|(&(id, weight), old)| {
            let worker_id = match *old {
                Some(w) => w,
                None => {
                    // Skip ids kept by surviving nodes; at most `specs.len()`
                    // ids are in use, so this ends below u32::MAX.
                    while taken.peek().is_some_and(|&t| t <= next) {
                        if taken.next() == Some(next) {
                            next += 1;
                        }
                    }
                    next += 1;
                    next - 1
                }
            };
            NodeInfo {
                id: id.to_owned(),
                weight,
                worker_id,
            }
        })
        .collect()
}

/// Largest-remainder targets for `shard_count` shards over `weights`;
/// `held[i]` (shards node `i` keeps from the previous map) breaks ties in
/// favour of fewer moves, then the lower index (= smaller id).
pub(crate) fn targets(shard_count: u32, weights: &[u32], held: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let s = u64::from(shard_count);
    // s <= 2^20 and w < 2^32, so s * w fits in u64.
    let mut targets = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut assigned = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        let p = s * u64::from(w);
        targets.push((p / total) as u32);
        assigned += p / total;
        if p % total != 0 {
            remainders.push((p % total, i));
        }
    }
    let left = (s - assigned) as usize;
    if left > 0 {
        // Largest remainder first, then more shards held, then lower index.
        let key = |&(r, i): &(u64, usize)| (std::cmp::Reverse(r), std::cmp::Reverse(held[i]), i);
        remainders.select_nth_unstable_by_key(left - 1, key);
        for &(_, i) in &remainders[..left] {
            targets[i] += 1;
        }
    }
    targets
}
