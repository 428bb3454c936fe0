//! clusterfunk: a Raft-plus-gossip cluster coordinator for sharded services.

pub mod gossip;
