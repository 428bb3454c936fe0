//! Error types of the Raft layer.

use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, Fatal, InitializeError, RaftError};

use super::{NodeId, RaftNodeInfo};

/// An invalid [`RaftConfig`](super::RaftConfig).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `vote_lease` is not above `append_timeout` (by more than 1 ms).
    #[error(
        "vote lease {vote_lease:?} must exceed append timeout {append_timeout:?} by more than 1 ms"
    )]
    VoteLeaseTooShort {
        /// The vote lease.
        vote_lease: Duration,
        /// The append timeout.
        append_timeout: Duration,
    },
    /// A value that must be positive is zero (durations count in whole ms).
    #[error("{field} must be greater than zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// `election_timeout_min` is not below `election_timeout_max`.
    #[error("election timeout range is empty: min {min:?} >= max {max:?}")]
    ElectionTimeoutRange {
        /// The lower bound.
        min: Duration,
        /// The upper bound.
        max: Duration,
    },
    /// Heartbeats would not arrive before followers start elections.
    #[error("heartbeat interval {heartbeat:?} must be below election_timeout_min {election_timeout_min:?}")]
    HeartbeatTooSlow {
        /// The heartbeat interval.
        heartbeat: Duration,
        /// The election timeout lower bound.
        election_timeout_min: Duration,
    },
    /// openraft needs its RPC timeout below the election timeout.
    #[error("append timeout {append_timeout:?} must be below election_timeout_min {election_timeout_min:?}")]
    AppendTimeoutTooLong {
        /// The AppendEntries RPC timeout.
        append_timeout: Duration,
        /// The election timeout lower bound.
        election_timeout_min: Duration,
    },
    /// A snapshot chunk would not fit in one gRPC message.
    #[error("snapshot chunk of {chunk} bytes does not fit in max_message_size {max_message_size}")]
    ChunkTooLarge {
        /// The chunk size.
        chunk: u64,
        /// The message size limit.
        max_message_size: usize,
    },
    /// openraft refused the converted configuration.
    #[error("openraft rejected the configuration: {0}")]
    Openraft(String),
}

/// Opening or reading storage failed outside openraft's own calls.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt {what} in storage: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The data directory could not be opened as this node's Raft storage.
    #[error(
        "cannot use the Raft data dir {}: {problem} ({detail}). Restore it from a backup, \
         or, if the rest of the cluster is healthy, stop this node, remove its data dir \
         ({}) and start it again: it rejoins and copies the committed state from the leader",
        path.display(),
        path.display()
    )]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong, in words.
        problem: &'static str,
        /// The underlying error.
        detail: String,
    },
}

/// A peer RPC issued by the application (the `Ack` RPC) failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address could not be turned into a channel.
    #[error("bad peer address {addr}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer could not be reached (connection refused, link cut, stopped).
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("peer {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The address.
        addr: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The peer answered with an error status.
    #[error("peer {addr} failed the call: {status}")]
    Status {
        /// The address.
        addr: String,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The peer refused a forwarded command.
    #[error("peer {addr} refused the command: {reason}")]
    Refused {
        /// Peer address.
        addr: String,
        /// Its reason.
        reason: String,
    },
    /// The peer answered but had no room for the acknowledgement.
    #[error("peer {addr} dropped the acknowledgement (queue full or no receiver)")]
    Dropped {
        /// The address.
        addr: String,
    },
}

/// Starting, serving or stopping a [`RaftNode`](super::RaftNode) failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// openraft stopped (or could not start).
    #[error("raft fatal error: {0}")]
    Fatal(Box<Fatal<NodeId>>),
    /// The gRPC server failed.
    #[error("raft gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A socket operation failed.
    #[error("raft socket: {0}")]
    Io(#[from] std::io::Error),
    /// A server is already running for this node.
    #[error("the raft gRPC server is already running")]
    AlreadyServing,
}

/// A Raft API call (write, membership change, initialize) failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftApiError {
    /// This node is not the leader. `leader` names the leader this node
    /// knows of, if any; send the request there.
    #[error("not the leader; forward to {leader_id:?} ({leader:?})")]
    ForwardToLeader {
        /// The known leader's id.
        leader_id: Option<NodeId>,
        /// The known leader's info (name and Raft address).
        leader: Option<RaftNodeInfo>,
    },
    /// Forwarding to the leader (or handing leadership over) failed.
    #[error("forward to the leader: {0}")]
    Forward(String),
    /// The leader refused the command (e.g. an application log entry over
    /// the cluster's hard size limit).
    #[error("refused: {0}")]
    Refused(String),
    /// `initialize` on a node that already has a log or a vote.
    #[error("initialize not allowed: {0}")]
    InitializeNotAllowed(String),
    /// `initialize` with a member list that does not contain this node.
    #[error("initialize: {0}")]
    NotInMembers(String),
    /// A membership change was refused (another in progress, unknown
    /// learner, empty voter set).
    #[error("membership change refused: {0}")]
    ChangeMembership(#[from] ChangeMembershipError<NodeId>),
    /// The write was not committed in time (the leader may have lost its
    /// quorum). It may still be applied later: read the state back, or
    /// repeat it (registry writes set a value, so repeating is harmless).
    #[error("not committed within {0:?}; it may still be applied")]
    Timeout(Duration),
    /// The Raft node has stopped.
    #[error("raft stopped: {0}")]
    Fatal(Box<Fatal<NodeId>>),
}

impl From<Fatal<NodeId>> for RaftNodeError {
    fn from(f: Fatal<NodeId>) -> Self {
        RaftNodeError::Fatal(Box::new(f))
    }
}

impl From<Fatal<NodeId>> for RaftApiError {
    fn from(f: Fatal<NodeId>) -> Self {
        RaftApiError::Fatal(Box::new(f))
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, RaftNodeInfo>>> for RaftApiError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, RaftNodeInfo>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                RaftApiError::ForwardToLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                RaftApiError::ChangeMembership(c)
            }
            RaftError::Fatal(f) => RaftApiError::Fatal(Box::new(f)),
        }
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, RaftNodeInfo>>> for RaftApiError {
    fn from(e: RaftError<NodeId, InitializeError<NodeId, RaftNodeInfo>>) -> Self {
        match e {
            RaftError::APIError(InitializeError::NotAllowed(n)) => {
                RaftApiError::InitializeNotAllowed(n.to_string())
            }
            RaftError::APIError(InitializeError::NotInMembers(n)) => {
                RaftApiError::NotInMembers(n.to_string())
            }
            RaftError::Fatal(f) => RaftApiError::Fatal(Box::new(f)),
        }
    }
}
