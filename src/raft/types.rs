//! Plain data of the Raft layer: node info, commands, responses and the
//! replicated [`ClusterState`] with its pure apply logic.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::app_log::AppLog;
use super::{LogId, NodeId, StoredMembership};
use crate::shards::ShardMap;

/// What every Raft member publishes about itself in the membership config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNodeInfo {
    /// The node's name (its gossip name).
    pub name: String,
    /// The node's Raft gRPC address, `host:port`.
    pub addr: String,
}

impl RaftNodeInfo {
    /// Builds a node info.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

impl fmt::Display for RaftNodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// A command the coordinator writes to the Raft log.
///
/// On the wire and on disk a command is the protobuf message
/// `clusterfunk.v1.raft.Command`; serde is derived only because openraft's
/// `serde` feature requires it of every log payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set the cluster id minted at bootstrap. The first write wins; a later
    /// different id is rejected (see [`Response::ClusterId`]).
    SetClusterId {
        /// The cluster id.
        cluster_id: String,
    },
    /// Propose an encoded shard map. Rejected unless `epoch` is greater than
    /// every epoch proposed before; a newer proposal replaces a pending one.
    Propose {
        /// The proposal's epoch.
        epoch: u64,
        /// The encoded shard map (opaque here).
        #[serde(with = "bytes_serde")]
        map: Bytes,
    },
    /// Propose the map that `patch` (see [`ShardMap::encode_patch`]) makes of
    /// the committed map. Refused unless the committed map's epoch is
    /// `base_epoch`; otherwise the same as [`Command::Propose`] of the whole
    /// map, which is what the state keeps.
    ProposePatch {
        /// The proposal's epoch.
        epoch: u64,
        /// The epoch of the committed map the patch applies to.
        base_epoch: u64,
        /// The encoded patch.
        #[serde(with = "bytes_serde")]
        patch: Bytes,
    },
    /// Commit the pending proposal of `epoch`; ignored when the pending
    /// proposal has another epoch (or there is none).
    Commit {
        /// The epoch to commit.
        epoch: u64,
    },
    /// Register a member or update its weight and zone.
    SetMember {
        /// Member name.
        name: String,
        /// Shard weight (0 drains the member).
        weight: u32,
        /// Failure zone.
        zone: String,
    },
    /// Remove a member from the registry.
    RemoveMember {
        /// Member name.
        name: String,
    },
    /// Append an entry to the application log (see [`AppLog`]).
    AppendLog {
        /// The entry (opaque to the coordinator).
        #[serde(with = "bytes_serde")]
        data: Bytes,
    },
}

/// The state machine's answer to one applied log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A blank or membership entry: nothing for the application.
    Empty,
    /// Answer to [`Command::SetClusterId`].
    ClusterId {
        /// Whether the requested id is now (or already was) the cluster id.
        accepted: bool,
        /// The cluster id in force after the command.
        cluster_id: String,
    },
    /// The proposal is now pending.
    Proposed {
        /// Its epoch.
        epoch: u64,
    },
    /// The proposal was refused: its epoch was not above `last_epoch`.
    ProposalRejected {
        /// The refused epoch.
        epoch: u64,
        /// The highest epoch proposed so far.
        last_epoch: u64,
    },
    /// A [`Command::ProposePatch`] did not apply to the committed map and
    /// changed nothing; the leader proposes the whole map instead.
    PatchRefused {
        /// The refused epoch.
        epoch: u64,
        /// Why: another base epoch, or a malformed patch.
        reason: String,
    },
    /// The pending proposal of `epoch` is now the committed map.
    Committed {
        /// The committed epoch.
        epoch: u64,
    },
    /// The commit did not match the pending proposal and changed nothing.
    CommitIgnored {
        /// The epoch asked for.
        epoch: u64,
        /// The pending proposal's epoch, if any.
        pending: Option<u64>,
    },
    /// A member was registered or updated.
    MemberSet {
        /// Its previous record, if it was registered.
        previous: Option<MemberRecord>,
    },
    /// A member was removed.
    MemberRemoved {
        /// Whether it was registered.
        existed: bool,
    },
    /// The application log entry got this index.
    LogAppended {
        /// Its index in the application log.
        index: u64,
    },
    /// The application log entry was over [`MAX_ENTRY_BYTES`] and refused.
    ///
    /// [`MAX_ENTRY_BYTES`]: super::app_log::MAX_ENTRY_BYTES
    LogRefused {
        /// Its size in bytes.
        size: usize,
    },
}

/// A member registry record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Shard weight; 0 means drained.
    pub weight: u32,
    /// Failure zone.
    pub zone: String,
}

/// A node's acknowledgement that it applied the proposal of `epoch`,
/// received by the leader through the `Ack` RPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledging node's name.
    pub node: String,
    /// The applied proposal's epoch.
    pub epoch: u64,
}

/// The replicated state: everything the log has decided so far.
///
/// Published after every applied batch on a `watch` channel
/// ([`RaftNode::state`](super::RaftNode::state)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterState {
    /// The cluster id, once set.
    pub cluster_id: Option<String>,
    /// The pending proposal: epoch and encoded shard map.
    pub proposed: Option<(u64, Bytes)>,
    /// The last committed map: epoch and encoded shard map.
    pub committed: Option<(u64, Bytes)>,
    /// The highest epoch ever proposed (committed epochs included).
    pub last_epoch: u64,
    /// The member registry.
    pub members: BTreeMap<String, MemberRecord>,
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership config applied.
    pub membership: StoredMembership,
    /// The application log's retained window.
    pub app_log: AppLog,
}

impl ClusterState {
    /// Applies one command and says what it did. Pure: no I/O, no clock.
    pub fn apply(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::SetClusterId { cluster_id } => match &self.cluster_id {
                Some(existing) => Response::ClusterId {
                    accepted: *existing == cluster_id,
                    cluster_id: existing.clone(),
                },
                None => {
                    self.cluster_id = Some(cluster_id.clone());
                    Response::ClusterId {
                        accepted: true,
                        cluster_id,
                    }
                }
            },
            Command::Propose { epoch, map } => self.propose(epoch, map),
            Command::ProposePatch {
                epoch,
                base_epoch,
                patch,
            } => match self.patched(epoch, base_epoch, &patch) {
                Ok(map) => self.propose(epoch, map),
                Err(reason) => Response::PatchRefused { epoch, reason },
            },
            Command::Commit { epoch } => match self.proposed.take() {
                Some((pending, map)) if pending == epoch => {
                    self.committed = Some((pending, map));
                    Response::Committed { epoch }
                }
                other => {
                    let pending = other.as_ref().map(|(e, _)| *e);
                    self.proposed = other;
                    Response::CommitIgnored { epoch, pending }
                }
            },
            Command::SetMember { name, weight, zone } => {
                let previous = self.members.insert(name, MemberRecord { weight, zone });
                Response::MemberSet { previous }
            }
            Command::RemoveMember { name } => Response::MemberRemoved {
                existed: self.members.remove(&name).is_some(),
            },
            Command::AppendLog { data } => match self.app_log.push(data) {
                Ok(index) => Response::LogAppended { index },
                Err(size) => Response::LogRefused { size },
            },
        }
    }

    fn propose(&mut self, epoch: u64, map: Bytes) -> Response {
        if epoch <= self.last_epoch {
            return Response::ProposalRejected {
                epoch,
                last_epoch: self.last_epoch,
            };
        }
        self.last_epoch = epoch;
        self.proposed = Some((epoch, map));
        Response::Proposed { epoch }
    }

    /// The encoded map `patch` makes of the committed map of `base_epoch`.
    fn patched(&self, epoch: u64, base_epoch: u64, patch: &[u8]) -> Result<Bytes, String> {
        let base = match &self.committed {
            Some((e, map)) if *e == base_epoch => map,
            other => {
                return Err(format!(
                    "the patch is against epoch {base_epoch}, the committed map is {:?}",
                    other.as_ref().map(|(e, _)| *e)
                ))
            }
        };
        let base = ShardMap::decode(base).map_err(|e| format!("committed map: {e}"))?;
        let map = base
            .apply_patch(epoch, patch)
            .map_err(|e| format!("patch: {e}"))?;
        Ok(map.encode().into())
    }

    /// The committed map's epoch, if any.
    pub fn committed_epoch(&self) -> Option<u64> {
        self.committed.as_ref().map(|(e, _)| *e)
    }

    /// The pending proposal's epoch, if any.
    pub fn proposed_epoch(&self) -> Option<u64> {
        self.proposed.as_ref().map(|(e, _)| *e)
    }
}

/// serde for `Bytes` as a byte sequence (the `bytes` crate's own serde
/// feature is not enabled in this crate).
mod bytes_serde {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes::from)
    }
}

/// The last AppendEntries (or snapshot chunk) this node accepted from a
/// leader: when it arrived, in which term, from whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderContact {
    /// When the request arrived (before it was processed).
    pub at: Instant,
    /// The leader's term.
    pub term: u64,
    /// The leader's id.
    pub leader: Option<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn propose(epoch: u64, m: &'static [u8]) -> Command {
        Command::Propose {
            epoch,
            map: Bytes::from_static(m),
        }
    }

    #[test]
    fn cluster_id_first_write_wins() {
        let mut s = ClusterState::default();
        let set = |id: &str| Command::SetClusterId {
            cluster_id: id.into(),
        };
        assert_eq!(
            s.apply(set("a")),
            Response::ClusterId {
                accepted: true,
                cluster_id: "a".into()
            }
        );
        assert_eq!(
            s.apply(set("a")),
            Response::ClusterId {
                accepted: true,
                cluster_id: "a".into()
            }
        );
        assert_eq!(
            s.apply(set("b")),
            Response::ClusterId {
                accepted: false,
                cluster_id: "a".into()
            }
        );
        assert_eq!(s.cluster_id.as_deref(), Some("a"));
    }

    #[test]
    fn proposals_need_growing_epochs() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(propose(1, b"m1")), Response::Proposed { epoch: 1 });
        assert_eq!(
            s.apply(propose(1, b"again")),
            Response::ProposalRejected {
                epoch: 1,
                last_epoch: 1
            }
        );
        assert_eq!(s.apply(propose(3, b"m3")), Response::Proposed { epoch: 3 });
        // A pending proposal is replaced by a newer one.
        assert_eq!(s.proposed_epoch(), Some(3));
        assert_eq!(
            s.apply(propose(2, b"old")),
            Response::ProposalRejected {
                epoch: 2,
                last_epoch: 3
            }
        );
    }

    #[test]
    fn commit_must_match_pending() {
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(Command::Commit { epoch: 1 }),
            Response::CommitIgnored {
                epoch: 1,
                pending: None
            }
        );
        s.apply(propose(4, b"m4"));
        assert_eq!(
            s.apply(Command::Commit { epoch: 3 }),
            Response::CommitIgnored {
                epoch: 3,
                pending: Some(4)
            }
        );
        assert_eq!(s.proposed_epoch(), Some(4));
        assert_eq!(
            s.apply(Command::Commit { epoch: 4 }),
            Response::Committed { epoch: 4 }
        );
        assert_eq!(s.committed, Some((4, Bytes::from_static(b"m4"))));
        assert_eq!(s.proposed, None);
        // Committed epochs count as proposed: no going back.
        assert!(matches!(
            s.apply(propose(4, b"x")),
            Response::ProposalRejected { .. }
        ));
        // Committing twice is ignored.
        assert!(matches!(
            s.apply(Command::Commit { epoch: 4 }),
            Response::CommitIgnored { pending: None, .. }
        ));
    }

    #[test]
    fn a_patch_proposes_the_map_it_makes_of_the_committed_one() {
        use crate::shards::rebalance;
        let first = rebalance(&ShardMap::new(64).unwrap(), &[("a", 1), ("b", 1)])
            .unwrap()
            .with_epoch(1);
        let next = rebalance(&first, &[("a", 1), ("b", 1), ("c", 1)])
            .unwrap()
            .with_epoch(2);
        let patch = |base_epoch| Command::ProposePatch {
            epoch: 2,
            base_epoch,
            patch: next.encode_patch(&first).unwrap().into(),
        };
        let mut s = ClusterState::default();
        // No committed map yet: refused, nothing changes.
        assert!(matches!(
            s.apply(patch(1)),
            Response::PatchRefused { epoch: 2, .. }
        ));
        assert_eq!(s.last_epoch, 0);
        s.apply(Command::Propose {
            epoch: 1,
            map: first.encode().into(),
        });
        s.apply(Command::Commit { epoch: 1 });
        // Against another base: refused.
        assert!(matches!(s.apply(patch(0)), Response::PatchRefused { .. }));
        assert_eq!(s.proposed, None);
        // Malformed: refused.
        let bad = Command::ProposePatch {
            epoch: 2,
            base_epoch: 1,
            patch: Bytes::from_static(b"\xff\xff"),
        };
        assert!(matches!(s.apply(bad), Response::PatchRefused { .. }));
        // The right base: the pending proposal holds the whole new map.
        assert_eq!(s.apply(patch(1)), Response::Proposed { epoch: 2 });
        assert_eq!(s.proposed, Some((2, Bytes::from(next.encode()))));
        // Epochs still only grow.
        assert!(matches!(
            s.apply(patch(1)),
            Response::ProposalRejected { .. }
        ));
    }

    #[test]
    fn member_registry() {
        let mut s = ClusterState::default();
        let set = |w: u32| Command::SetMember {
            name: "n1".into(),
            weight: w,
            zone: "z".into(),
        };
        assert_eq!(s.apply(set(1)), Response::MemberSet { previous: None });
        assert_eq!(
            s.apply(set(0)),
            Response::MemberSet {
                previous: Some(MemberRecord {
                    weight: 1,
                    zone: "z".into()
                })
            }
        );
        assert_eq!(s.members["n1"].weight, 0);
        let rm = || Command::RemoveMember { name: "n1".into() };
        assert_eq!(s.apply(rm()), Response::MemberRemoved { existed: true });
        assert_eq!(s.apply(rm()), Response::MemberRemoved { existed: false });
        assert!(s.members.is_empty());
    }
}
