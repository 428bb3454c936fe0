//! Pluggable placement: the strategy the leader asks for the next map
//! (funk's `NewCluster(params, shardManager)`), the built-in
//! [`WeightedRebalance`], and [`check_placement`], the rules every
//! strategy's map must meet before the leader proposes it.
//!
//! A strategy only decides *who owns what*. The coordinator keeps its own
//! guarantees whatever it returns: the map is proposed, every owner (and
//! every live owner losing shards) acknowledges, leases of silent owners
//! are waited out, and only then is it committed.

use std::collections::BTreeMap;
use std::fmt;

use super::{rebalance, ShardMap, ShardMapError};

/// A node the leader may give shards to: a Raft member that is alive,
/// not excluded or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: String,
    /// Shard weight (0: owns nothing, e.g. draining).
    pub weight: u32,
    /// Failure zone (the node's `zone` tag; empty when unset).
    pub zone: String,
    /// The node's gossip tags (empty when gossip does not know it yet).
    pub tags: BTreeMap<String, String>,
}

/// A placement strategy: the next shard map for a set of candidates.
///
/// Called on the leader, only when the candidates or their weights
/// changed, with the committed map (or an empty one) as `previous` and
/// the candidates sorted by id. It must be deterministic and quick (it
/// runs on the node task) and should move few shards: every move is a
/// hand-over. The returned map must pass [`check_placement`]; otherwise
/// the leader logs an error, counts it (`placement_refused` in the node
/// stats) and uses [`WeightedRebalance`] for that map instead, so a faulty
/// strategy never leaves shards without an owner.
///
/// ```
/// use clusterfunk::shards::{Candidate, Placement, ShardMap, ShardMapError, WeightedRebalance};
///
/// /// Shard 0 always on "hot-1" while it can own shards.
/// #[derive(Debug)]
/// struct PinShardZero;
///
/// impl Placement for PinShardZero {
///     fn place(&self, previous: &ShardMap, nodes: &[Candidate]) -> Result<ShardMap, ShardMapError> {
///         let map = WeightedRebalance.place(previous, nodes)?;
///         match nodes.iter().any(|n| n.id == "hot-1" && n.weight > 0) {
///             true => map.with_owner(0, "hot-1"),
///             false => Ok(map),
///         }
///     }
/// }
/// ```
pub trait Placement: Send + Sync + fmt::Debug {
    /// The next map from `previous` for `candidates`. Its epoch is set by
    /// the leader.
    fn place(
        &self,
        previous: &ShardMap,
        candidates: &[Candidate],
    ) -> Result<ShardMap, ShardMapError>;

    /// A short name for logs.
    fn name(&self) -> &str {
        "custom"
    }
}

/// The built-in strategy: shares proportional to weight with the fewest
/// possible moves ([`rebalance`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedRebalance;

impl Placement for WeightedRebalance {
    fn place(
        &self,
        previous: &ShardMap,
        candidates: &[Candidate],
    ) -> Result<ShardMap, ShardMapError> {
        let live: Vec<(&str, u32)> = candidates
            .iter()
            .map(|c| (c.id.as_str(), c.weight))
            .collect();
        rebalance(previous, &live)
    }

    fn name(&self) -> &str {
        "weighted"
    }
}

/// Why a strategy's map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The strategy itself failed.
    #[error("the strategy failed: {0}")]
    Failed(#[from] ShardMapError),
    /// The map has another shard count than the cluster.
    #[error("the map has {got} shards, the cluster {expected}")]
    ShardCount {
        /// The cluster's shard count.
        expected: u32,
        /// The map's.
        got: u32,
    },
    /// The map's nodes (with weights) are not exactly the candidates.
    #[error("the map's nodes {got:?} are not the candidates {expected:?}")]
    Nodes {
        /// The candidates as (id, weight).
        expected: Vec<(String, u32)>,
        /// The map's nodes as (id, weight).
        got: Vec<(String, u32)>,
    },
    /// A node that stays in the map got another worker id.
    #[error("node {node} changed worker id from {old} to {new}")]
    WorkerId {
        /// The node.
        node: String,
        /// Its worker id in the previous map.
        old: u32,
        /// Its worker id in the new map.
        new: u32,
    },
    /// A shard has no owner although some candidate can own shards.
    #[error("shard {0} has no owner")]
    Unassigned(u32),
    /// A shard is owned by a node of weight 0 (draining).
    #[error("shard {shard} is owned by {node}, whose weight is 0")]
    ZeroWeight {
        /// The shard.
        shard: u32,
        /// Its owner.
        node: String,
    },
}

/// Checks a strategy's `map` for `candidates` after `previous`:
/// - the same shard count as `previous`;
/// - exactly the candidates as nodes, with their weights (a node without
///   shards is still listed);
/// - worker ids kept for nodes that were in `previous`;
/// - every shard owned by a candidate of positive weight (when no
///   candidate has a positive weight, every shard is unassigned).
pub fn check_placement(
    previous: &ShardMap,
    candidates: &[Candidate],
    map: &ShardMap,
) -> Result<(), PlacementError> {
    if map.shard_count() != previous.shard_count() {
        return Err(PlacementError::ShardCount {
            expected: previous.shard_count(),
            got: map.shard_count(),
        });
    }
    let mut expected: Vec<(String, u32)> = candidates
        .iter()
        .map(|c| (c.id.clone(), c.weight))
        .collect();
    expected.sort();
    let got: Vec<(String, u32)> = map
        .nodes()
        .iter()
        .map(|n| (n.id.clone(), n.weight))
        .collect();
    if got != expected {
        return Err(PlacementError::Nodes { expected, got });
    }
    for n in map.nodes() {
        if let Some(old) = previous.node(&n.id) {
            if old.worker_id != n.worker_id {
                return Err(PlacementError::WorkerId {
                    node: n.id.clone(),
                    old: old.worker_id,
                    new: n.worker_id,
                });
            }
        }
    }
    let any_weight = candidates.iter().any(|c| c.weight > 0);
    for shard in 0..map.shard_count() {
        match map.owner_of(shard) {
            None if any_weight => return Err(PlacementError::Unassigned(shard)),
            Some(owner) if map.node(owner).is_none_or(|n| n.weight == 0) => {
                return Err(PlacementError::ZeroWeight {
                    shard,
                    node: owner.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(specs: &[(&str, u32)]) -> Vec<Candidate> {
        specs
            .iter()
            .map(|(id, w)| Candidate {
                id: id.to_string(),
                weight: *w,
                zone: String::new(),
                tags: BTreeMap::new(),
            })
            .collect()
    }

    #[test]
    fn the_builtin_passes_its_own_check() {
        let empty = ShardMap::new(16).unwrap();
        let c = cands(&[("a", 1), ("b", 2), ("c", 0)]);
        let m = WeightedRebalance.place(&empty, &c).unwrap();
        check_placement(&empty, &c, &m).unwrap();
        let c2 = cands(&[("a", 1), ("d", 1)]);
        let m2 = WeightedRebalance.place(&m, &c2).unwrap();
        check_placement(&m, &c2, &m2).unwrap();
        let none = cands(&[("a", 0)]);
        let m3 = WeightedRebalance.place(&m2, &none).unwrap();
        check_placement(&m2, &none, &m3).unwrap();
    }

    #[test]
    fn bad_maps_are_refused_with_the_reason() {
        let empty = ShardMap::new(8).unwrap();
        let c = cands(&[("a", 1), ("b", 1)]);
        let good = WeightedRebalance.place(&empty, &c).unwrap();
        // Another shard count.
        let other = WeightedRebalance
            .place(&ShardMap::new(4).unwrap(), &c)
            .unwrap();
        assert!(matches!(
            check_placement(&empty, &c, &other),
            Err(PlacementError::ShardCount { .. })
        ));
        // A node that is not a candidate (or a candidate left out).
        let extra = WeightedRebalance
            .place(&empty, &cands(&[("a", 1), ("b", 1), ("x", 1)]))
            .unwrap();
        assert!(matches!(
            check_placement(&empty, &c, &extra),
            Err(PlacementError::Nodes { .. })
        ));
        // A shard on a draining node.
        let drained = cands(&[("a", 1), ("b", 0)]);
        let m = WeightedRebalance
            .place(&empty, &drained)
            .unwrap()
            .with_owner(3, "b")
            .unwrap();
        assert_eq!(
            check_placement(&empty, &drained, &m),
            Err(PlacementError::ZeroWeight {
                shard: 3,
                node: "b".into()
            })
        );
        // An unassigned shard.
        assert!(matches!(
            check_placement(&empty, &c, &empty),
            Err(PlacementError::Nodes { .. })
        ));
        let half = WeightedRebalance
            .place(&empty, &cands(&[("a", 1)]))
            .unwrap();
        let c_a = cands(&[("a", 1)]);
        let mut unowned = half.clone();
        unowned.owners[5] = super::super::map::NO_OWNER;
        assert_eq!(
            check_placement(&empty, &c_a, &unowned),
            Err(PlacementError::Unassigned(5))
        );
        // Worker ids are kept.
        let renumbered = WeightedRebalance
            .place(&ShardMap::new(8).unwrap(), &cands(&[("b", 1)]))
            .unwrap();
        let c_b = cands(&[("b", 1)]);
        assert!(matches!(
            check_placement(&good, &c_b, &renumbered),
            Err(PlacementError::WorkerId { .. })
        ));
    }

    #[test]
    fn with_owner_moves_one_shard_and_refuses_unknowns() {
        let c = cands(&[("a", 1), ("b", 1)]);
        let m = WeightedRebalance
            .place(&ShardMap::new(4).unwrap(), &c)
            .unwrap();
        let m = m.with_owner(0, "b").unwrap();
        assert_eq!(m.owner_of(0), Some("b"));
        assert_eq!(
            m.clone().with_owner(0, "zz"),
            Err(ShardMapError::UnknownNode("zz".into()))
        );
        assert_eq!(
            m.with_owner(9, "a"),
            Err(ShardMapError::ShardOutOfRange { shard: 9, count: 4 })
        );
    }
}
