//! Raft node ids: one stable `u64` per node name, the same on every machine,
//! so any node can name any other in Raft knowing only its gossip name.

use crate::shards;

/// Raft node id of a node name: stable on every machine.
pub(crate) fn raft_id(name: &str) -> u64 {
    shards::stable_hash64(name.as_bytes())
}
