//! clusterfunk: a Raft-plus-gossip cluster coordinator for sharded services.
//!
//! Link it into a sharded service: [`Cluster::start`] with a [`Config`]
//! joins (or bootstraps) the cluster, publishes the service's endpoints as
//! gossip tags and delivers committed shard maps; [`Cluster::is_serving`]
//! tells whether this node may serve a shard right now. [`Agent::start`]
//! does the same and serves the operators' management API and `/metrics`
//! beside the node.
//!
//! What a service author uses: [`cluster`] (the [`Cluster`] handle, its
//! [`ClusterEvent`]s, [`NodeState`], [`Role`] and [`ClusterError`]),
//! [`config`] ([`Config`] with presets), [`routing`] ([`Routes`]: key ->
//! serve here or forward), [`shards`] ([`ShardMap`] and key -> shard
//! hashing), [`agent`], [`management`] (the gRPC API's [`Client`]) and
//! [`metrics`] (the per-node registry and status view), [`client`]
//! ([`ClusterClient`]: owner and endpoint lookups for programs that are
//! not members) and the hand-off hooks in [`cluster::handoff`](mod@cluster::handoff).
//!
//! The layers below (gossip, liveness, Raft, mDNS discovery) and the
//! harness that runs local clusters of agent processes stay out of the
//! documented API: they are public only so the binary, the tests and the
//! benchmarks can drive them directly.
//!
//! [`Client`]: management::Client

#![warn(missing_docs)]

mod actor;
pub mod agent;
pub mod cidr;
pub mod client;
pub mod cluster;
pub mod config;
pub mod management;
pub mod metrics;
pub mod routing;
pub mod shards;

// Building blocks and harnesses: reachable for the binary, tests and
// benches, not part of the documented API.
#[doc(hidden)]
pub mod discovery;
#[doc(hidden)]
pub mod gossip;
#[doc(hidden)]
pub mod listener;
#[doc(hidden)]
pub mod liveness;
#[doc(hidden)]
pub mod local;
#[doc(hidden)]
pub mod raft;
#[doc(hidden)]
pub mod rng;

pub use agent::Agent;
pub use client::ClusterClient;
pub use cluster::{Cluster, ClusterError, ClusterEvent, NodeState, Role};
pub use config::Config;
pub use routing::{Route, Routes};
pub use shards::ShardMap;
