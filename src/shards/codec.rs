//! Protobuf encoding (`proto/clusterfunk/v1/shards.proto`) and the serde form.

use prost::Message;
use serde::{Deserialize, Serialize};

use super::{NodeInfo, ShardMap, ShardMapError};

/// Generated types; plain `include!` rather than `tonic::include_proto!` so
/// this module depends on prost only (the file has no services).
pub(super) mod pb {
    include!(concat!(env!("OUT_DIR"), "/clusterfunk.v1.shards.rs"));
}

impl ShardMap {
    /// Protobuf encoding (`clusterfunk.v1.shards.ShardMap`). The encoding is
    /// canonical: equal maps give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        pb::ShardMap {
            epoch: self.epoch,
            shard_count: self.shard_count(),
            nodes: self.nodes.iter().map(pb::Node::from).collect(),
            owners: self.wire_owners(),
        }
        .encode_to_vec()
    }

    /// Decodes and checks a map written by [`ShardMap::encode`]. Any input,
    /// however malformed, yields an error, never a panic: bad protobuf, a
    /// shard count outside `1..=MAX_SHARD_COUNT`, more than `MAX_NODES`
    /// nodes, empty, duplicate or unsorted node ids, duplicate worker ids, an
    /// owner list whose length is not the shard count, or an owner index past
    /// the node list.
    pub fn decode(bytes: &[u8]) -> Result<ShardMap, ShardMapError> {
        let m = pb::ShardMap::decode(bytes)?;
        let nodes = m.nodes.into_iter().map(NodeInfo::from).collect();
        ShardMap::from_wire(m.epoch, m.shard_count, nodes, &m.owners)
    }
}

impl From<&NodeInfo> for pb::Node {
    fn from(n: &NodeInfo) -> Self {
        pb::Node {
            id: n.id.clone(),
            weight: n.weight,
            worker_id: n.worker_id,
        }
    }
}

impl From<pb::Node> for NodeInfo {
    fn from(n: pb::Node) -> Self {
        NodeInfo {
            id: n.id,
            weight: n.weight,
            worker_id: n.worker_id,
        }
    }
}

/// Serde form of a [`ShardMap`]: the same fields and owner convention as the
/// protobuf message (`owners[s]`: 0 = unassigned, k = `nodes[k - 1]`), checked
/// the same way on deserialisation.
#[derive(Serialize, Deserialize)]
pub(crate) struct ShardMapRepr {
    pub(crate) epoch: u64,
    pub(crate) shard_count: u32,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) owners: Vec<u32>,
}

/// Encodes a repr as is, unchecked: lets tests build invalid encodings.
#[cfg(test)]
pub(crate) fn encode_repr(r: &ShardMapRepr) -> Vec<u8> {
    pb::ShardMap {
        epoch: r.epoch,
        shard_count: r.shard_count,
        nodes: r
            .nodes
            .iter()
            .map(|n| pb::Node {
                id: n.id.clone(),
                weight: n.weight,
                worker_id: n.worker_id,
            })
            .collect(),
        owners: r.owners.clone(),
    }
    .encode_to_vec()
}

impl From<ShardMap> for ShardMapRepr {
    fn from(m: ShardMap) -> Self {
        ShardMapRepr {
            epoch: m.epoch,
            shard_count: m.shard_count(),
            owners: m.wire_owners(),
            nodes: m.nodes,
        }
    }
}

impl TryFrom<ShardMapRepr> for ShardMap {
    type Error = ShardMapError;

    fn try_from(r: ShardMapRepr) -> Result<Self, Self::Error> {
        ShardMap::from_wire(r.epoch, r.shard_count, r.nodes, &r.owners)
    }
}
