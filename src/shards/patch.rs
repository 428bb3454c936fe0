//! A map written as its changes from a base map, so that a proposal
//! replicates what moved rather than every shard's owner.
//!
//! A patch holds the new map's node list in full (a few bytes per node) and
//! the new owner of every shard whose owner *id* differs from the base's
//! (protobuf `clusterfunk.v1.shards.ShardMapPatch`). Owners are compared by
//! id because node indexes shift when a node joins or leaves the sorted
//! list. After one of 100 nodes fails at 100,000 shards, about 1% of the
//! shards move and the patch is about 3 KiB where the full map is about
//! 99 KiB.
//!
//! Applying a patch to the same base always gives the same map, so every
//! Raft node that applies it to its committed map holds the same bytes.

use prost::Message;

use super::codec::pb;
use super::map::{check_nodes, NO_OWNER};
use super::{NodeInfo, ShardMap, ShardMapError};

impl ShardMap {
    /// Encodes `self` as a patch against `base` (same shard count; the
    /// epoch is not part of a patch). `base.apply_patch(epoch, &patch)`
    /// gives back `self` with `epoch`. Cost: O(shards + nodes).
    pub fn encode_patch(&self, base: &ShardMap) -> Result<Vec<u8>, ShardMapError> {
        if base.shard_count() != self.shard_count() {
            return Err(ShardMapError::ShardCountMismatch(
                base.shard_count(),
                self.shard_count(),
            ));
        }
        let remap = base.remap_to(&self.nodes);
        let mut shard_gaps = Vec::new();
        let mut owners = Vec::new();
        let mut prev = 0u32;
        for (shard, (&o, &n)) in base.owners.iter().zip(&self.owners).enumerate() {
            if carried(&remap, o) == n {
                continue;
            }
            let shard = shard as u32;
            shard_gaps.push(shard - prev);
            prev = shard;
            owners.push(if n == NO_OWNER { 0 } else { u32::from(n) + 1 });
        }
        Ok(pb::ShardMapPatch {
            shard_count: self.shard_count(),
            nodes: self.nodes.iter().map(pb::Node::from).collect(),
            shard_gaps,
            owners,
        }
        .encode_to_vec())
    }

    /// The map a patch written by [`ShardMap::encode_patch`] describes,
    /// applied to `self`, at `epoch`. Any input, however malformed, yields
    /// an error, never a panic: bad protobuf, another shard count, a node
    /// list [`ShardMap::decode`] would refuse, shards not strictly
    /// ascending or out of range, owner and shard lists of different
    /// lengths, or an owner index past the node list.
    pub fn apply_patch(&self, epoch: u64, patch: &[u8]) -> Result<ShardMap, ShardMapError> {
        let p = pb::ShardMapPatch::decode(patch)?;
        if p.shard_count != self.shard_count() {
            return Err(ShardMapError::ShardCountMismatch(
                self.shard_count(),
                p.shard_count,
            ));
        }
        if p.shard_gaps.len() != p.owners.len() {
            return Err(ShardMapError::PatchLengths {
                shards: p.shard_gaps.len(),
                owners: p.owners.len(),
            });
        }
        let nodes: Vec<NodeInfo> = p.nodes.into_iter().map(NodeInfo::from).collect();
        check_nodes(&nodes)?;
        let remap = self.remap_to(&nodes);
        let mut owners: Vec<u16> = self.owners.iter().map(|&o| carried(&remap, o)).collect();
        let count = self.shard_count();
        let mut shard = 0u64;
        for (i, (&gap, &o)) in p.shard_gaps.iter().zip(&p.owners).enumerate() {
            if i > 0 && gap == 0 {
                return Err(ShardMapError::PatchNotAscending(shard as u32));
            }
            shard += u64::from(gap);
            let slot = owners
                .get_mut(shard as usize)
                .ok_or(ShardMapError::ShardOutOfRange {
                    shard: u32::try_from(shard).unwrap_or(u32::MAX),
                    count,
                })?;
            *slot = match o {
                0 => NO_OWNER,
                // `nodes.len() <= MAX_NODES`, so `k - 1 < u16::MAX` fits.
                k if (k as usize) <= nodes.len() => (k - 1) as u16,
                k => {
                    return Err(ShardMapError::UnknownNodeIndex {
                        shard: shard as u32,
                        index: k,
                        nodes: nodes.len(),
                    })
                }
            };
        }
        Ok(ShardMap {
            epoch,
            nodes,
            owners,
        })
    }

    /// For each of this map's node indexes, the index of the same id in
    /// `nodes` (sorted by id), or `NO_OWNER` where it is absent.
    pub(super) fn remap_to(&self, nodes: &[NodeInfo]) -> Vec<u16> {
        self.nodes
            .iter()
            .map(|n| {
                nodes
                    .binary_search_by(|m| m.id.cmp(&n.id))
                    .map_or(NO_OWNER, |j| j as u16)
            })
            .collect()
    }
}

/// The index a base owner has in the new node list (`NO_OWNER` stays).
fn carried(remap: &[u16], owner: u16) -> u16 {
    remap.get(usize::from(owner)).copied().unwrap_or(NO_OWNER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::rebalance;

    fn map(nodes: &[(&str, u32)], shards: u32) -> ShardMap {
        rebalance(&ShardMap::new(shards).unwrap(), nodes).unwrap()
    }

    #[test]
    fn a_patch_gives_back_the_map_it_was_written_from() {
        let base = map(&[("a", 1), ("b", 1), ("c", 1)], 1000).with_epoch(4);
        let cases = [
            // a node leaves from the middle: every later index shifts
            rebalance(&base, &[("a", 1), ("c", 1)]).unwrap(),
            // a node joins before the others
            rebalance(&base, &[("0", 1), ("a", 1), ("b", 1), ("c", 1)]).unwrap(),
            // a weight change
            rebalance(&base, &[("a", 3), ("b", 1), ("c", 1)]).unwrap(),
            // nothing changes
            base.clone(),
            // every node goes: all shards unassigned
            ShardMap::new(1000).unwrap(),
        ];
        for new in cases {
            let new = new.with_epoch(9);
            let patch = new.encode_patch(&base).unwrap();
            let back = base.apply_patch(9, &patch).unwrap();
            assert_eq!(back, new);
            assert_eq!(back.encode(), new.encode());
        }
    }

    #[test]
    fn a_patch_is_small_when_few_shards_move() {
        let nodes: Vec<(String, u32)> = (0..100).map(|i| (format!("n{i:03}"), 1)).collect();
        let refs: Vec<(&str, u32)> = nodes.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        let base = map(&refs, 100_000);
        let new = rebalance(&base, &refs[1..]).unwrap();
        let patch = new.encode_patch(&base).unwrap();
        let full = new.encode();
        assert!(
            patch.len() * 10 < full.len(),
            "patch {} bytes, full map {}",
            patch.len(),
            full.len()
        );
    }

    #[test]
    fn a_patch_against_another_shard_count_is_refused() {
        let a = map(&[("a", 1)], 10);
        let b = map(&[("a", 1)], 11);
        assert!(matches!(
            b.encode_patch(&a),
            Err(ShardMapError::ShardCountMismatch(10, 11))
        ));
        let patch = a.encode_patch(&a).unwrap();
        assert!(matches!(
            b.apply_patch(1, &patch),
            Err(ShardMapError::ShardCountMismatch(11, 10))
        ));
    }

    #[test]
    fn malformed_patches_are_errors_not_panics() {
        let base = map(&[("a", 1), ("b", 1)], 8);
        let node = |id: &str| pb::Node {
            id: id.into(),
            weight: 1,
            worker_id: 0,
        };
        let enc = |gaps: Vec<u32>, owners: Vec<u32>| {
            pb::ShardMapPatch {
                shard_count: 8,
                nodes: vec![node("a")],
                shard_gaps: gaps,
                owners,
            }
            .encode_to_vec()
        };
        let bad = [
            (enc(vec![0, 0], vec![1, 1]), "not ascending"),
            (enc(vec![3, 5], vec![1, 1]), "out of range"),
            (enc(vec![u32::MAX, u32::MAX], vec![1, 1]), "overflow"),
            (enc(vec![1], vec![2]), "unknown index"),
            (enc(vec![1, 2], vec![1]), "lengths"),
            (vec![0xff, 0xff, 0xff], "bad protobuf"),
            (
                pb::ShardMapPatch {
                    shard_count: 8,
                    nodes: vec![node("b"), node("a")],
                    shard_gaps: vec![],
                    owners: vec![],
                }
                .encode_to_vec(),
                "unsorted nodes",
            ),
        ];
        for (patch, what) in bad {
            assert!(base.apply_patch(1, &patch).is_err(), "{what} was accepted");
        }
        // The first gap may be 0: shard 0 changed.
        assert!(base.apply_patch(1, &enc(vec![0, 1], vec![1, 0])).is_ok());
    }
}
