//! The management API: a gRPC service every node serves, and the client the
//! CLI uses.
//!
//! The service (`proto/clusterfunk/v1/management.proto`) answers reads from
//! the serving node's [`Cluster`](crate::Cluster) handle and carries out
//! writes through it; writes that only the leader does (add, remove, step
//! down) reaching a follower are forwarded to the leader's `ep.management`
//! endpoint. Next to it the server offers gRPC health (SERVING only while
//! the node is Operational) and server reflection, so stock gRPC tools can
//! list and call it. TLS (optionally mutual) and a shared bearer token are
//! set in [`AuthConfig`](crate::config::AuthConfig), whose certificate also
//! secures Raft. The [`Agent`](crate::Agent) starts the server beside the
//! cluster node and stops it after the node has left.
//!
//! Imports: `cluster` (the handle and the public types it re-exports),
//! `config` (TLS and token settings), `shards` (map accessors), `cidr`
//! (the listener's allow-list); never
//! `gossip` or `raft`. Generated protobuf types stay private to this
//! module; the client returns the plain types of
//! [`types`].

mod app_log;
mod auth;
mod client;
mod config;
mod convert;
mod error;
mod keys;
mod reflection;
mod server;
mod service;
pub mod types;
mod watch_map;

#[allow(clippy::all, missing_docs)]
mod pb {
    tonic::include_proto!("clusterfunk.v1.management");
}

pub use crate::cluster::{AppLogEntry, StatusView};
pub use app_log::LogEntries;
pub use client::{Client, EventStream};
pub use config::ClientTls;
pub use error::ManagementError;
pub use keys::NodeKeys;
pub use server::{ManagementServer, PreparedServer};
pub use types::{
    EndpointEntry, Event, EventKind, Health, NodeEntry, NodeFilter, ShardCount, ShardsInfo,
    WriteOutcome,
};
pub use watch_map::{Endpoints, MapUpdate, MapUpdates};

/// The gRPC service name, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "clusterfunk.v1.management.Management";

/// The management port the CLI uses when given no address (the agent's
/// documented default; gossip uses 7946).
pub const DEFAULT_PORT: u16 = 7947;

/// Metadata key a forwarding node sets, so a write is forwarded at most once.
const FORWARDED_HEADER: &str = "x-clusterfunk-forwarded";

/// Every protobuf file of the crate, for server reflection.
const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/clusterfunk_descriptor.bin"));
