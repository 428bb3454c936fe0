//! Shard maps: which node owns each of a fixed number of shards, weighted
//! assignment with the fewest possible moves, key → shard hashing, deltas
//! between maps, patches (a map as its changes from another) and their protobuf encoding (`proto/clusterfunk/v1/shards.proto`).
//!
//! Pure code: no async, no I/O, no global state. It may import only std,
//! prost, serde, thiserror and xxhash-rust (XXH64). Everything here is deterministic (no
//! randomness, no hash-map iteration), because the Raft leader computes a map
//! that every node must read the same way.
//!
//! ```
//! use clusterfunk::shards::{rebalance, ShardMap};
//!
//! let empty = ShardMap::new(12)?;
//! let first = rebalance(&empty, &[("a", 1), ("b", 2)])?;
//! assert_eq!(first.shards_of("b").len(), 8);
//! let next = rebalance(&first, &[("a", 1), ("b", 2), ("c", 1)])?;
//! let moved = clusterfunk::shards::delta(&first, &next)?.moved;
//! assert_eq!(moved, 3); // only what c needs: 3 of 12
//! assert_eq!(ShardMap::decode(&next.encode())?, next);
//! # Ok::<(), clusterfunk::shards::ShardMapError>(())
//! ```

mod codec;
mod delta;
mod error;
mod hash;
mod map;
mod patch;
mod placement;
mod rebalance;
mod simulate;

pub use delta::{delta, NodeDelta, ShardDelta};
pub use error::{ShardMapError, SimulateError};
pub use hash::{shard_for_bytes, shard_for_u64, stable_hash64};
pub use map::{NodeInfo, ShardMap};
pub use placement::{check_placement, Candidate, Placement, PlacementError, WeightedRebalance};
pub use rebalance::rebalance;
pub use simulate::{simulate, SimulateParams, SimulateReport, SimulateRow};

/// Shard count of a new cluster unless configured otherwise.
pub const DEFAULT_SHARD_COUNT: u32 = 10_000;

/// Largest shard count a map may have (2^20).
pub const MAX_SHARD_COUNT: u32 = 1 << 20;

/// Most nodes a map may hold (owners are stored as `u16` indexes, with
/// `u16::MAX` meaning unassigned).
pub const MAX_NODES: usize = 65_535;

#[cfg(test)]
mod tests;
