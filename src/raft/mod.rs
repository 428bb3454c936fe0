//! Replicated cluster state on openraft 0.9: the type config, the state
//! machine holding the cluster id, shard-map proposals/commits and the member
//! registry, sled and in-memory storage, and a tonic network.
//!
//! Layout: [`types`] (commands, responses, the pure [`ClusterState`] apply
//! logic), [`config`] ([`RaftConfig`]), [`store`] (log + state machine on
//! sled or in memory), [`network`] (the client side: a [`Connector`] seam
//! with a tonic implementation and an in-process [`Router`] that can cut
//! links), a private gRPC server, [`auth`] (the cluster credential every
//! call carries without mutual TLS), [`admit`] (the admission check before
//! a node joins Raft), [`listener`] (the bounded accept loop
//! of the Raft port), and [`node`] ([`RaftNode`], the handle the
//! coordinator uses).
//!
//! Imports: std, openraft, tonic/prost, sled, tokio, serde, bytes, tracing,
//! the crate's leaf [`listener`] (shared with the management port) and the
//! plain `cidr` allow-list it checks. Nothing else from the rest of the
//! crate: shard maps are opaque
//! encoded bytes here and the coordinator encodes and decodes them.
//! Generated protobuf types stay private to this module; everything that
//! leaves it is a plain Rust type.

#![warn(missing_docs)]

pub mod admit;
pub mod app_log;
pub mod auth;
mod codec;
pub mod config;
pub mod error;
mod lease;
pub use crate::listener;
pub mod network;
pub mod node;
mod server;
pub mod store;
pub mod types;

pub use admit::AdmitError;
pub use app_log::{AppLog, Compacted};
pub use auth::{RaftAuth, SharedAuth, AUTH_HEADER};
pub use config::{RaftConfig, SnapshotPolicy};
pub use error::{ConfigError, NetError, RaftApiError, RaftNodeError, StoreError};
pub use listener::{ListenerCounts, ListenerLimits};
pub use network::{Connector, GrpcConnector, Network, RaftChannel, Router};
pub use node::RaftNode;
pub use server::RaftService;
pub use store::{MemDisks, Storage};
pub use types::{Ack, ClusterState, Command, LeaderContact, MemberRecord, RaftNodeInfo, Response};

// The openraft macro names `Cursor` unqualified for the snapshot data type.
use std::io::Cursor;

/// Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of clusterfunk: `u64` node ids,
    /// [`RaftNodeInfo`] nodes, [`Command`] log payloads and [`Response`]s.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = RaftNodeInfo,
);

/// The openraft handle type of this crate.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id with our node id type.
pub type LogId = openraft::LogId<NodeId>;
/// A stored membership with our node types.
pub type StoredMembership = openraft::StoredMembership<NodeId, RaftNodeInfo>;
/// A membership with our node types.
pub type Membership = openraft::Membership<NodeId, RaftNodeInfo>;
/// openraft metrics with our node types.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, RaftNodeInfo>;
/// A log entry of this type config.
pub type Entry = openraft::Entry<TypeConfig>;
