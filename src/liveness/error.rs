//! Errors of the liveness module.

use std::net::SocketAddr;

use super::config::ConfigError;

/// What can go wrong when starting or talking to a checker or responder.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or inspecting the socket failed.
    #[error("liveness socket: {0}")]
    Io(#[from] std::io::Error),
    /// `spawn`/`bind` was called outside a tokio runtime.
    #[error("liveness tasks need a tokio runtime")]
    NoRuntime,
    /// The checker task has stopped; the handle is no longer usable.
    #[error("liveness checker has shut down")]
    Shutdown,
    /// A target address that cannot receive probes (port 0 or unspecified IP).
    #[error("liveness target {id} has unusable address {addr}")]
    InvalidAddress {
        /// The target id that was being added.
        id: String,
        /// The rejected address.
        addr: SocketAddr,
    },
    /// Another target already uses this address. Replies are attributed by
    /// source address, so one address can only stand for one target; remove
    /// the other one first.
    #[error("liveness address {addr} is already checked for target {existing}")]
    AddressInUse {
        /// The contested address.
        addr: SocketAddr,
        /// The id of the target that has it.
        existing: String,
    },
}
