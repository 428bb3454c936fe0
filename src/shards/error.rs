//! Errors of the shard map module.

use thiserror::Error;

/// Why a shard map could not be built, decoded or compared.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardMapError {
    /// The shard count is outside `1..=MAX_SHARD_COUNT`.
    #[error("invalid shard count {0} (allowed: 1..={max})", max = super::MAX_SHARD_COUNT)]
    InvalidShardCount(u64),
    /// More nodes than `MAX_NODES`.
    #[error("too many nodes: {0} (at most {max})", max = super::MAX_NODES)]
    TooManyNodes(usize),
    /// A node id is the empty string.
    #[error("empty node id")]
    EmptyNodeId,
    /// The same node id appears twice.
    #[error("duplicate node id {0:?}")]
    DuplicateNode(String),
    /// Two nodes share a worker id.
    #[error("duplicate worker id {0}")]
    DuplicateWorkerId(u32),
    /// Encoded nodes are not sorted by id (the encoding is canonical).
    #[error("nodes are not sorted by id: {0:?} follows {1:?}")]
    NodesNotSorted(String, String),
    /// The owner list does not have one entry per shard.
    #[error("owner list has {found} entries, expected one per shard ({expected})")]
    OwnersLength {
        /// The shard count.
        expected: u32,
        /// The number of owner entries found.
        found: usize,
    },
    /// An owner entry points past the node list.
    #[error("shard {shard} names node index {index}, but the map has {nodes} nodes")]
    UnknownNodeIndex {
        /// The shard whose owner is bad.
        shard: u32,
        /// The owner entry as encoded (0 = unassigned, k = node k-1).
        index: u32,
        /// Number of nodes in the map.
        nodes: usize,
    },
    /// A node id that is not in the map.
    #[error("node {0:?} is not in the map")]
    UnknownNode(String),
    /// A shard number at or past the shard count.
    #[error("shard {shard} is out of range (the map has {count} shards)")]
    ShardOutOfRange {
        /// The shard asked for.
        shard: u32,
        /// The map's shard count.
        count: u32,
    },
    /// Two maps with different shard counts cannot be compared.
    #[error("shard counts differ: {0} vs {1}")]
    ShardCountMismatch(u32, u32),
    /// A patch lists more or fewer owners than changed shards.
    #[error("patch lists {shards} changed shards but {owners} owners")]
    PatchLengths {
        /// Changed shards listed.
        shards: usize,
        /// Owners listed.
        owners: usize,
    },
    /// A patch lists a shard twice or out of order.
    #[error("patch shards are not ascending after shard {0}")]
    PatchNotAscending(u32),
    /// The bytes are not a valid protobuf `ShardMap`.
    #[error("malformed shard map encoding: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Why a [`simulate`](super::simulate) run could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SimulateError {
    /// `weights` must give one weight per initial node.
    #[error("{found} weights given for {expected} nodes")]
    WeightsLength {
        /// Number of initial nodes.
        expected: u32,
        /// Number of weights given.
        found: usize,
    },
    /// Cannot remove more nodes than there are.
    #[error("cannot remove {remove} of {nodes} nodes")]
    RemoveTooMany {
        /// Nodes asked to be removed.
        remove: u32,
        /// Initial nodes.
        nodes: u32,
    },
    /// The shard map refused the setup (shard count, node count).
    #[error(transparent)]
    Map(#[from] ShardMapError),
}
