//! clusterfunk: a Raft-plus-gossip cluster coordinator for sharded services.
//!
//! Link it into a sharded service: [`Cluster::start`] with a [`Config`]
//! joins (or bootstraps) the cluster, publishes the service's endpoints as
//! gossip tags and delivers committed shard maps; [`Cluster::is_serving`]
//! tells whether this node may serve a shard right now.
//!
//! Modules: [`shards`] (pure shard maps), [`gossip`] (SWIM membership),
//! [`liveness`] (UDP echo failure detection), [`raft`] (openraft with sled),
//! [`discovery`] (mDNS), [`metrics`] (Prometheus and status page),
//! [`cluster`] (the coordinator that joins them), [`management`] (the
//! operators' gRPC API and its client), [`routing`] (key -> local or
//! forward, for sharded services; see `examples/kv`).

mod actor;
pub mod agent;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod gossip;
pub mod liveness;
pub mod local;
pub mod management;
pub mod metrics;
pub mod raft;
pub mod routing;
pub mod shards;

pub use agent::Agent;
pub use cluster::{Cluster, ClusterError, ClusterEvent, NodeState, Role};
pub use config::Config;
