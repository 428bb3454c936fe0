//! Errors of the discovery module.

use thiserror::Error;

/// Why an operation on a discovery handle failed.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// The announcement cannot be published (empty or over-long names,
    /// control characters, port 0, ...).
    #[error("invalid announcement: {0}")]
    InvalidAnnouncement(#[from] TxtError),

    /// The configuration is unusable (bad service type, zero capacity, ...).
    #[error("invalid discovery configuration: {0}")]
    InvalidConfig(String),

    /// The handle was shut down; nothing more can be announced or browsed.
    #[error("discovery handle is shut down")]
    Shutdown,

    /// This handle already has a browser running (one per handle).
    #[error("a browser is already running on this discovery handle")]
    AlreadyBrowsing,

    /// Browsing spawns a task and so needs a Tokio runtime.
    #[error("no Tokio runtime: browse() must be called from within a runtime")]
    NoRuntime,

    /// The mDNS daemon refused a command (its queue is full, it could not
    /// start, ...).
    #[error("mDNS daemon: {0}")]
    Mdns(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        match e {
            mdns_sd::Error::DaemonShutdown => DiscoveryError::Shutdown,
            other => DiscoveryError::Mdns(other.to_string()),
        }
    }
}

/// Why a TXT record (or an announcement about to become one) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxtError {
    /// A required key is absent.
    #[error("missing TXT key `{0}`")]
    MissingKey(&'static str),

    /// A required key is present without a value (`key` instead of `key=v`).
    #[error("TXT key `{0}` has no value")]
    NoValue(&'static str),

    /// A value is not UTF-8.
    #[error("TXT key `{0}` is not UTF-8")]
    NotUtf8(&'static str),

    /// A value is empty.
    #[error("TXT key `{0}` is empty")]
    Empty(&'static str),

    /// A value is longer than its limit.
    #[error("TXT key `{key}` is {len} bytes, limit {max}")]
    TooLong {
        /// The key.
        key: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },

    /// A value contains control characters or white space.
    #[error("TXT key `{0}` contains control characters or white space")]
    BadCharacters(&'static str),

    /// The gossip address does not parse as `host:port`.
    #[error("TXT key `gossip` is not a socket address: {0:?}")]
    BadAddress(String),

    /// The gossip address cannot be dialled (port 0, multicast, broadcast,
    /// or unspecified with no resolved address to stand in for it).
    #[error("gossip address {0} is not usable")]
    UnusableAddress(String),

    /// The protocol version is not a decimal `u32`.
    #[error("TXT key `proto` is not a version number: {0:?}")]
    BadVersion(String),
}
