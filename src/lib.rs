//! clusterfunk: a Raft-plus-gossip cluster coordinator for sharded services.

pub mod discovery;
pub mod gossip;
pub mod liveness;
pub mod metrics;
pub mod raft;
pub mod shards;
