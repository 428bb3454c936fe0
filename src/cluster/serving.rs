//! Which shards a node may serve: owned in the committed map and not taken
//! away by a pending proposal. Gains wait for the commit; losses take effect
//! when the proposal is applied, before the node acknowledges it, so that at
//! no instant two nodes serve one shard.
//!
//! Each set names the Raft log index its state reflects: a serving lease
//! counts for it only when the lease's required index is at most that
//! (`RaftNode::serving_until`), so a lease granted after a proposal was
//! appended never lets a set from before the proposal serve.

use serde::Serialize;

use crate::shards::ShardMap;

/// A set of shard numbers as a bitmap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServingSet {
    bits: Vec<u64>,
    len: u32,
    applied: u64,
}

impl ServingSet {
    /// Shards `node` owns in `committed` and keeps in `pending` (if any),
    /// from the replicated state as of log index `applied`.
    pub(crate) fn compute(
        node: &str,
        committed: Option<&ShardMap>,
        pending: Option<&ShardMap>,
        applied: u64,
    ) -> Self {
        let mut set = ServingSet {
            applied,
            ..ServingSet::default()
        };
        let Some(committed) = committed else {
            return set;
        };
        let n = committed.shard_count() as usize;
        set.bits = vec![0; n.div_ceil(64)];
        for shard in committed.shards_of(node) {
            let keep = pending.is_none_or(|p| {
                p.shard_count() == committed.shard_count() && p.owner_of(shard) == Some(node)
            });
            if keep {
                set.bits[shard as usize / 64] |= 1 << (shard % 64);
                set.len += 1;
            }
        }
        set
    }

    /// The Raft log index whose state this set reflects.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Whether `shard` is in the set.
    pub fn contains(&self, shard: u32) -> bool {
        self.bits
            .get(shard as usize / 64)
            .is_some_and(|w| w & (1 << (shard % 64)) != 0)
    }

    /// How many shards are in the set.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shards in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, w)| {
            (0..64u32).filter_map(move |b| (w & (1 << b) != 0).then_some(i as u32 * 64 + b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::rebalance;

    #[test]
    fn losses_apply_at_proposal_gains_at_commit() {
        let empty = ShardMap::new(100).expect("map");
        let committed = rebalance(&empty, &[("a", 1), ("b", 1)]).expect("map");
        let pending = rebalance(&committed, &[("a", 1), ("b", 1), ("c", 1)]).expect("map");
        let a = ServingSet::compute("a", Some(&committed), Some(&pending), 0);
        let a_kept = pending.shards_of("a");
        assert_eq!(a.len() as usize, a_kept.len());
        assert!(a_kept.iter().all(|s| a.contains(*s)));
        let c = ServingSet::compute("c", Some(&committed), Some(&pending), 0);
        assert!(c.is_empty(), "c gains nothing before the commit");
        let c = ServingSet::compute("c", Some(&pending), None, 0);
        assert_eq!(c.iter().collect::<Vec<_>>(), pending.shards_of("c"));
        assert!(ServingSet::compute("a", None, None, 0).is_empty());
    }

    #[test]
    fn no_shard_is_served_by_two_nodes_during_a_proposal() {
        let empty = ShardMap::new(64).expect("map");
        let m1 = rebalance(&empty, &[("a", 1), ("b", 1), ("c", 1)]).expect("map");
        let m2 = rebalance(&m1, &[("a", 1), ("c", 3)]).expect("map");
        for shard in 0..64 {
            let servers = ["a", "b", "c"]
                .iter()
                .filter(|n| ServingSet::compute(n, Some(&m1), Some(&m2), 0).contains(shard))
                .count();
            assert!(servers <= 1);
        }
    }
}
