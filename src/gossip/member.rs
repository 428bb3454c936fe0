//! Public views of members and membership events.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

/// A member's state as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Answering probes (or not yet suspected).
    Alive,
    /// Missed a probe; declared dead unless it refutes in time.
    Suspect,
    /// Failed: its suspicion timed out.
    Dead,
    /// Left gracefully.
    Left,
}

impl MemberStatus {
    /// `alive`, `suspect`, `dead` or `left`: the name in JSON, gRPC,
    /// metrics labels and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Dead => "dead",
            MemberStatus::Left => "left",
        }
    }

    /// Dead or Left.
    pub fn is_gone(self) -> bool {
        matches!(self, MemberStatus::Dead | MemberStatus::Left)
    }
}

/// One member of the cluster (the local node included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Unique node id.
    pub name: String,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Alive, Suspect, Dead or Left.
    pub status: MemberStatus,
    /// Raised by the member itself to refute suspicion or publish new tags.
    pub incarnation: u64,
    /// Published tags (endpoints are `ep.<name>`).
    pub tags: BTreeMap<String, String>,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberEventKind {
    /// First seen, or back after it had left or been forgotten.
    Join,
    /// Left gracefully.
    Leave,
    /// Declared dead after a suspicion timed out.
    Failed,
    /// Tags or address changed.
    Updated,
    /// Suspected of having failed.
    Suspect,
    /// Suspect or failed before, alive again (refuted, or healed partition).
    AliveAgain,
}

/// A membership change, as delivered by `Gossip::subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberEvent {
    /// What happened.
    pub kind: MemberEventKind,
    /// The member after the change.
    pub member: Member,
}

/// A Serf-style user event, as delivered by `Gossip::subscribe_user_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserEvent {
    /// Lamport time at which it was sent.
    pub ltime: u64,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Whether only the newest event of this name matters.
    pub coalesce: bool,
}
