//! [`ClusterError`]: why a cluster call failed. "This request failed"
//! (`NoLeader`, `NotLeader`, `Raft`, `Gossip`, ...) stays apart from "this
//! node has stopped" (`Stopped`), and errors of other layers are kept as
//! sources, not strings.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::gossip::GossipError;
use crate::raft::RaftApiError;

/// Why a cluster call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A component failed to start.
    #[error("start {what}: {source}")]
    Start {
        /// Which component.
        what: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// There is no leader right now.
    #[error("no leader")]
    NoLeader,
    /// Only the leader does this; it names the leader it knows.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<String>),
    /// The node is not known to the cluster.
    #[error("unknown node {0}")]
    UnknownNode(String),
    /// The operation needs a Raft member.
    #[error("this node is not a Raft member")]
    NotMember,
    /// A Raft request failed (and may be retried); a stopped Raft node is
    /// [`Stopped`](Self::Stopped), a known leader elsewhere
    /// [`NotLeader`](Self::NotLeader), no leader [`NoLeader`](Self::NoLeader).
    #[error("raft: {0}")]
    Raft(#[source] RaftApiError),
    /// Gossip refused the request (e.g. a user event over the size limit).
    #[error("gossip: {0}")]
    Gossip(#[source] GossipError),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// Force-leave is only for failed members (or, with prune, left ones).
    #[error("{node} is {} in gossip, not failed: only a failed node can be forced to leave", .status.as_str())]
    NotFailed {
        /// The node.
        node: String,
        /// Its gossip status here.
        status: crate::gossip::MemberStatus,
    },
    /// A hand-off's release deadline must leave the leader time to hear
    /// the acknowledgement: it must be below `ack_timeout`.
    #[error("hand-off release deadline {deadline:?} is not below ack_timeout {ack_timeout:?}")]
    ReleaseDeadline {
        /// The service's release deadline.
        deadline: std::time::Duration,
        /// The cluster's ack timeout.
        ack_timeout: std::time::Duration,
    },
    /// An application log entry over this node's
    /// [`app_log_max_entry`](crate::Config::app_log_max_entry) (nothing
    /// was written).
    #[error("application log entry of {size} bytes is over the limit of {limit} bytes (app_log_max_entry)")]
    EntryTooLarge {
        /// The entry's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A read of the application log started before its retained window.
    #[error(transparent)]
    Compacted(#[from] crate::raft::Compacted),
    /// None of the addresses to join resolved.
    #[error("no address of {} resolves", .0.join(", "))]
    Unresolved(Vec<String>),
}

impl From<RaftApiError> for ClusterError {
    /// Splits "this request failed" from "this node has stopped".
    fn from(e: RaftApiError) -> ClusterError {
        match e {
            RaftApiError::ForwardToLeader { leader: None, .. } => ClusterError::NoLeader,
            RaftApiError::ForwardToLeader {
                leader: Some(l), ..
            } => ClusterError::NotLeader(Some(l.name)),
            RaftApiError::Fatal(_) => ClusterError::Stopped,
            e => ClusterError::Raft(e),
        }
    }
}

impl ClusterError {
    /// A stopped gossip layer means a stopped node.
    pub(super) fn from_gossip(e: GossipError) -> ClusterError {
        match e {
            GossipError::Shutdown => ClusterError::Stopped,
            e => ClusterError::Gossip(e),
        }
    }
}
