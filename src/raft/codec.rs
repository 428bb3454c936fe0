//! Conversions between openraft/domain types and the protobuf messages of
//! `raft.proto`. The same messages are used on the wire and on disk.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, LeaderId, SnapshotMeta, SnapshotSegmentId, Vote};
use prost::Message;

use super::app_log::AppLog;
use super::lease::{Grant, Stamp};
use super::types::{ClusterState, Command, MemberRecord, RaftNodeInfo};
use super::{Entry, LogId, Membership, NodeId, StoredMembership, TypeConfig};

/// Generated protobuf types; private to the raft module.
pub(crate) mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("clusterfunk.v1.raft");
}

/// A protobuf message was malformed or lacked a required field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub(crate) struct DecodeError {
    pub(crate) what: &'static str,
    pub(crate) reason: String,
}

impl DecodeError {
    fn missing(what: &'static str, field: &str) -> Self {
        Self {
            what,
            reason: format!("missing field `{field}`"),
        }
    }

    pub(crate) fn prost(what: &'static str, e: prost::DecodeError) -> Self {
        Self {
            what,
            reason: e.to_string(),
        }
    }
}

type DResult<T> = Result<T, DecodeError>;

fn required<T>(v: Option<T>, what: &'static str, field: &str) -> DResult<T> {
    v.ok_or_else(|| DecodeError::missing(what, field))
}

// ---- primitives -------------------------------------------------------------

pub(crate) fn log_id_to_pb(l: &LogId) -> pb::LogId {
    pb::LogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

pub(crate) fn log_id_from_pb(l: pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(l.term, l.node_id), l.index)
}

fn opt_log_id_to_pb(l: &Option<LogId>) -> Option<pb::LogId> {
    l.as_ref().map(log_id_to_pb)
}

fn opt_log_id_from_pb(l: Option<pb::LogId>) -> Option<LogId> {
    l.map(log_id_from_pb)
}

pub(crate) fn vote_to_pb(v: &Vote<NodeId>) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub(crate) fn vote_from_pb(v: pb::Vote) -> Vote<NodeId> {
    Vote {
        leader_id: LeaderId {
            term: v.term,
            node_id: v.node_id,
        },
        committed: v.committed,
    }
}

fn node_to_pb(n: &RaftNodeInfo) -> pb::NodeInfo {
    pb::NodeInfo {
        name: n.name.clone(),
        addr: n.addr.clone(),
    }
}

fn node_from_pb(n: pb::NodeInfo) -> RaftNodeInfo {
    RaftNodeInfo {
        name: n.name,
        addr: n.addr,
    }
}

pub(crate) fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::NodeIdSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m.nodes().map(|(id, n)| (*id, node_to_pb(n))).collect(),
    }
}

pub(crate) fn membership_from_pb(m: pb::Membership) -> Membership {
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .into_iter()
        .map(|s| s.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<NodeId, RaftNodeInfo> = m
        .nodes
        .into_iter()
        .map(|(id, n)| (id, node_from_pb(n)))
        .collect();
    Membership::new(configs, nodes)
}

pub(crate) fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub(crate) fn stored_membership_from_pb(m: pb::StoredMembership) -> StoredMembership {
    StoredMembership::new(
        opt_log_id_from_pb(m.log_id),
        m.membership.map(membership_from_pb).unwrap_or_default(),
    )
}

// ---- commands and entries ---------------------------------------------------

pub(crate) fn command_to_pb(c: &Command) -> pb::Command {
    use pb::command::Kind;
    let kind = match c {
        Command::SetClusterId { cluster_id } => Kind::SetClusterId(pb::SetClusterId {
            cluster_id: cluster_id.clone(),
        }),
        Command::Propose { epoch, map } => Kind::Propose(pb::Propose {
            epoch: *epoch,
            map: map.to_vec(),
        }),
        Command::ProposePatch {
            epoch,
            base_epoch,
            patch,
        } => Kind::ProposePatch(pb::ProposePatch {
            epoch: *epoch,
            base_epoch: *base_epoch,
            patch: patch.to_vec(),
        }),
        Command::Commit { epoch } => Kind::Commit(pb::Commit { epoch: *epoch }),
        Command::SetMember { name, weight, zone } => Kind::SetMember(pb::SetMember {
            name: name.clone(),
            weight: *weight,
            zone: zone.clone(),
        }),
        Command::RemoveMember { name } => {
            Kind::RemoveMember(pb::RemoveMember { name: name.clone() })
        }
        Command::AppendLog { data } => Kind::AppendLog(pb::AppendLog {
            data: data.to_vec(),
        }),
    };
    pb::Command { kind: Some(kind) }
}

pub(crate) fn command_from_pb(c: pb::Command) -> DResult<Command> {
    use pb::command::Kind;
    Ok(match required(c.kind, "Command", "kind")? {
        Kind::SetClusterId(s) => Command::SetClusterId {
            cluster_id: s.cluster_id,
        },
        Kind::Propose(p) => Command::Propose {
            epoch: p.epoch,
            map: Bytes::from(p.map),
        },
        Kind::ProposePatch(p) => Command::ProposePatch {
            epoch: p.epoch,
            base_epoch: p.base_epoch,
            patch: Bytes::from(p.patch),
        },
        Kind::Commit(c) => Command::Commit { epoch: c.epoch },
        Kind::SetMember(s) => Command::SetMember {
            name: s.name,
            weight: s.weight,
            zone: s.zone,
        },
        Kind::RemoveMember(r) => Command::RemoveMember { name: r.name },
        Kind::AppendLog(a) => Command::AppendLog {
            data: Bytes::from(a.data),
        },
    })
}

pub(crate) fn entry_to_pb(e: &Entry) -> pb::Entry {
    use pb::entry::Payload;
    let payload = match &e.payload {
        EntryPayload::Blank => Payload::Blank(pb::Empty {}),
        EntryPayload::Normal(c) => Payload::Normal(command_to_pb(c)),
        EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

pub(crate) fn entry_from_pb(e: pb::Entry) -> DResult<Entry> {
    use pb::entry::Payload;
    let log_id = log_id_from_pb(required(e.log_id, "Entry", "log_id")?);
    let payload = match required(e.payload, "Entry", "payload")? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(c) => EntryPayload::Normal(command_from_pb(c)?),
        Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(m)),
    };
    Ok(Entry { log_id, payload })
}

/// Encodes a log entry for storage.
pub(crate) fn encode_entry(e: &Entry) -> Vec<u8> {
    entry_to_pb(e).encode_to_vec()
}

/// Decodes a stored log entry.
pub(crate) fn decode_entry(b: &[u8]) -> DResult<Entry> {
    entry_from_pb(pb::Entry::decode(b).map_err(|e| DecodeError::prost("Entry", e))?)
}

// ---- RPC messages -----------------------------------------------------------

pub(crate) fn append_request_to_pb(
    r: &AppendEntriesRequest<TypeConfig>,
) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: opt_log_id_to_pb(&r.prev_log_id),
        entries: r.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(&r.leader_commit),
        lease: None,
    }
}

pub(crate) fn append_request_from_pb(
    r: pb::AppendEntriesRequest,
) -> DResult<AppendEntriesRequest<TypeConfig>> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(required(r.vote, "AppendEntriesRequest", "vote")?),
        prev_log_id: opt_log_id_from_pb(r.prev_log_id),
        entries: r
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<DResult<Vec<_>>>()?,
        leader_commit: opt_log_id_from_pb(r.leader_commit),
    })
}

pub(crate) fn append_response_to_pb(
    r: &AppendEntriesResponse<NodeId>,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match r {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(pb::PartialSuccess {
            matching: opt_log_id_to_pb(m),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Empty {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
        stamp: None,
    }
}

pub(crate) fn append_response_from_pb(
    r: pb::AppendEntriesResponse,
) -> DResult<AppendEntriesResponse<NodeId>> {
    use pb::append_entries_response::Result as R;
    Ok(
        match required(r.result, "AppendEntriesResponse", "result")? {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(p) => {
                AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(p.matching))
            }
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(v) => AppendEntriesResponse::HigherVote(vote_from_pb(v)),
        },
    )
}

pub(crate) fn vote_request_to_pb(r: &VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: opt_log_id_to_pb(&r.last_log_id),
    }
}

pub(crate) fn vote_request_from_pb(r: pb::VoteRequest) -> DResult<VoteRequest<NodeId>> {
    Ok(VoteRequest {
        vote: vote_from_pb(required(r.vote, "VoteRequest", "vote")?),
        last_log_id: opt_log_id_from_pb(r.last_log_id),
    })
}

pub(crate) fn vote_response_to_pb(r: &VoteResponse<NodeId>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_to_pb(&r.last_log_id),
    }
}

pub(crate) fn vote_response_from_pb(r: pb::VoteResponse) -> DResult<VoteResponse<NodeId>> {
    Ok(VoteResponse {
        vote: vote_from_pb(required(r.vote, "VoteResponse", "vote")?),
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_from_pb(r.last_log_id),
    })
}

pub(crate) fn snapshot_meta_to_pb(m: &SnapshotMeta<NodeId, RaftNodeInfo>) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(&m.last_log_id),
        last_membership: Some(stored_membership_to_pb(&m.last_membership)),
        snapshot_id: m.snapshot_id.clone(),
    }
}

pub(crate) fn snapshot_meta_from_pb(m: pb::SnapshotMeta) -> SnapshotMeta<NodeId, RaftNodeInfo> {
    SnapshotMeta {
        last_log_id: opt_log_id_from_pb(m.last_log_id),
        last_membership: m
            .last_membership
            .map(stored_membership_from_pb)
            .unwrap_or_default(),
        snapshot_id: m.snapshot_id,
    }
}

pub(crate) fn install_request_to_pb(
    r: &InstallSnapshotRequest<TypeConfig>,
) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(&r.vote)),
        meta: Some(snapshot_meta_to_pb(&r.meta)),
        offset: r.offset,
        data: r.data.clone(),
        done: r.done,
    }
}

pub(crate) fn install_request_from_pb(
    r: pb::InstallSnapshotRequest,
) -> DResult<InstallSnapshotRequest<TypeConfig>> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_pb(required(r.vote, "InstallSnapshotRequest", "vote")?),
        meta: snapshot_meta_from_pb(required(r.meta, "InstallSnapshotRequest", "meta")?),
        offset: r.offset,
        data: r.data,
        done: r.done,
    })
}

fn segment_to_pb(s: &SnapshotSegmentId) -> pb::SnapshotSegmentId {
    pb::SnapshotSegmentId {
        id: s.id.clone(),
        offset: s.offset,
    }
}

fn segment_from_pb(s: Option<pb::SnapshotSegmentId>) -> SnapshotSegmentId {
    let s = s.unwrap_or_default();
    SnapshotSegmentId {
        id: s.id,
        offset: s.offset,
    }
}

/// The outcome of an InstallSnapshot call as seen by the caller.
pub(crate) type InstallOutcome = Result<InstallSnapshotResponse<NodeId>, InstallSnapshotError>;

pub(crate) fn install_response_to_pb(r: &InstallOutcome) -> pb::InstallSnapshotResponse {
    match r {
        Ok(resp) => pb::InstallSnapshotResponse {
            vote: Some(vote_to_pb(&resp.vote)),
            mismatch: None,
        },
        Err(InstallSnapshotError::SnapshotMismatch(m)) => pb::InstallSnapshotResponse {
            vote: None,
            mismatch: Some(pb::SnapshotMismatch {
                expect: Some(segment_to_pb(&m.expect)),
                got: Some(segment_to_pb(&m.got)),
            }),
        },
    }
}

pub(crate) fn install_response_from_pb(r: pb::InstallSnapshotResponse) -> DResult<InstallOutcome> {
    if let Some(m) = r.mismatch {
        return Ok(Err(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect: segment_from_pb(m.expect),
                got: segment_from_pb(m.got),
            },
        )));
    }
    Ok(Ok(InstallSnapshotResponse {
        vote: vote_from_pb(required(r.vote, "InstallSnapshotResponse", "vote")?),
    }))
}

// ---- state machine and snapshots --------------------------------------------

/// The state as protobuf; with `entries` false the application log's
/// entries are left out (the sled store keeps them in a tree of their own).
pub(crate) fn state_to_pb(s: &ClusterState, entries: bool) -> pb::ClusterState {
    let epoch_map = |v: &Option<(u64, Bytes)>| {
        v.as_ref().map(|(epoch, map)| pb::EpochMap {
            epoch: *epoch,
            map: map.to_vec(),
        })
    };
    pb::ClusterState {
        cluster_id: s.cluster_id.clone(),
        proposed: epoch_map(&s.proposed),
        committed: epoch_map(&s.committed),
        last_epoch: s.last_epoch,
        members: s
            .members
            .iter()
            .map(|(name, r)| pb::MemberRecord {
                name: name.clone(),
                weight: r.weight,
                zone: r.zone.clone(),
            })
            .collect(),
        last_applied: opt_log_id_to_pb(&s.last_applied),
        membership: Some(stored_membership_to_pb(&s.membership)),
        app_log: Some(pb::AppLogWindow {
            compacted: s.app_log.compacted(),
            count: s.app_log.len() as u64,
            entries: if entries {
                s.app_log.entries().map(|e| e.to_vec()).collect()
            } else {
                Vec::new()
            },
        }),
    }
}

/// The state from protobuf. When the application log's entries were left
/// out, the window comes back empty and the second value says which
/// indexes to load (`compacted`, `count`).
pub(crate) fn state_from_pb(mut s: pb::ClusterState) -> (ClusterState, Option<(u64, u64)>) {
    let epoch_map = |v: Option<pb::EpochMap>| v.map(|m| (m.epoch, Bytes::from(m.map)));
    let window = s.app_log.take().unwrap_or_default();
    let missing = (window.entries.len() as u64) < window.count;
    let app_log = AppLog::from_parts(
        window.compacted,
        window.entries.into_iter().map(Bytes::from).collect(),
    );
    let state = ClusterState {
        cluster_id: s.cluster_id,
        proposed: epoch_map(s.proposed),
        committed: epoch_map(s.committed),
        last_epoch: s.last_epoch,
        members: s
            .members
            .into_iter()
            .map(|m| {
                (
                    m.name,
                    MemberRecord {
                        weight: m.weight,
                        zone: m.zone,
                    },
                )
            })
            .collect(),
        last_applied: opt_log_id_from_pb(s.last_applied),
        membership: s
            .membership
            .map(stored_membership_from_pb)
            .unwrap_or_default(),
        app_log,
    };
    (state, missing.then_some((window.compacted, window.count)))
}

/// Encodes the whole state machine (a snapshot payload).
pub(crate) fn encode_state(s: &ClusterState) -> Vec<u8> {
    state_to_pb(s, true).encode_to_vec()
}

/// Encodes the state machine without the application log's entries (the
/// sled `sm` value).
pub(crate) fn encode_state_head(s: &ClusterState) -> Vec<u8> {
    state_to_pb(s, false).encode_to_vec()
}

/// Decodes a state machine; the second value is as in [`state_from_pb`].
pub(crate) fn decode_state_head(b: &[u8]) -> DResult<(ClusterState, Option<(u64, u64)>)> {
    Ok(state_from_pb(
        pb::ClusterState::decode(b).map_err(|e| DecodeError::prost("ClusterState", e))?,
    ))
}

/// Decodes a whole state machine (a snapshot payload): the application
/// log's entries must all be there.
pub(crate) fn decode_state(b: &[u8]) -> DResult<ClusterState> {
    match decode_state_head(b)? {
        (s, None) => Ok(s),
        (_, Some((_, count))) => Err(DecodeError {
            what: "ClusterState",
            reason: format!("application log window lacks entries (count {count})"),
        }),
    }
}

pub(crate) fn encode_vote(v: &Vote<NodeId>) -> Vec<u8> {
    vote_to_pb(v).encode_to_vec()
}

pub(crate) fn decode_vote(b: &[u8]) -> DResult<Vote<NodeId>> {
    Ok(vote_from_pb(
        pb::Vote::decode(b).map_err(|e| DecodeError::prost("Vote", e))?,
    ))
}

pub(crate) fn encode_log_id(l: &LogId) -> Vec<u8> {
    log_id_to_pb(l).encode_to_vec()
}

pub(crate) fn decode_log_id(b: &[u8]) -> DResult<LogId> {
    Ok(log_id_from_pb(
        pb::LogId::decode(b).map_err(|e| DecodeError::prost("LogId", e))?,
    ))
}

/// Encodes a stored snapshot (meta + payload).
pub(crate) fn encode_snapshot(meta: &SnapshotMeta<NodeId, RaftNodeInfo>, data: &[u8]) -> Vec<u8> {
    pb::StoredSnapshot {
        meta: Some(snapshot_meta_to_pb(meta)),
        data: data.to_vec(),
    }
    .encode_to_vec()
}

/// Decodes a stored snapshot.
pub(crate) fn decode_snapshot(b: &[u8]) -> DResult<(SnapshotMeta<NodeId, RaftNodeInfo>, Vec<u8>)> {
    let s = pb::StoredSnapshot::decode(b).map_err(|e| DecodeError::prost("StoredSnapshot", e))?;
    let meta = snapshot_meta_from_pb(required(s.meta, "StoredSnapshot", "meta")?);
    Ok((meta, s.data))
}

pub(crate) fn stamp_to_pb(s: &Stamp) -> pb::LeaseStamp {
    pb::LeaseStamp {
        incarnation: s.incarnation,
        micros: s.micros,
    }
}

pub(crate) fn stamp_from_pb(s: &pb::LeaseStamp) -> Stamp {
    Stamp {
        incarnation: s.incarnation,
        micros: s.micros,
    }
}

pub(crate) fn grant_to_pb(g: &Grant) -> pb::LeaseGrant {
    pb::LeaseGrant {
        echo: Some(stamp_to_pb(&g.echo)),
        remaining_micros: g.remaining.as_micros() as u64,
        required_index: g.required,
    }
}

/// A grant without an echo is no grant.
pub(crate) fn grant_from_pb(g: &pb::LeaseGrant) -> Option<Grant> {
    Some(Grant {
        echo: stamp_from_pb(g.echo.as_ref()?),
        remaining: std::time::Duration::from_micros(g.remaining_micros),
        required: g.required_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn members() -> Membership {
        let mut nodes = BTreeMap::new();
        nodes.insert(1, RaftNodeInfo::new("a", "127.0.0.1:1"));
        nodes.insert(2, RaftNodeInfo::new("b", "127.0.0.1:2"));
        nodes.insert(3, RaftNodeInfo::new("c", "127.0.0.1:3"));
        Membership::new(
            vec![[1, 2].into_iter().collect(), [2].into_iter().collect()],
            nodes,
        )
    }

    #[test]
    fn entries_round_trip() {
        let cmds = [
            Command::SetClusterId {
                cluster_id: "cid".into(),
            },
            Command::Propose {
                epoch: 7,
                map: Bytes::from_static(b"\x01\x02map"),
            },
            Command::ProposePatch {
                epoch: 8,
                base_epoch: 7,
                patch: Bytes::from_static(b"\x03patch"),
            },
            Command::Commit { epoch: 7 },
            Command::SetMember {
                name: "n".into(),
                weight: 3,
                zone: "z1".into(),
            },
            Command::RemoveMember { name: "n".into() },
            Command::AppendLog {
                data: Bytes::from_static(b"fact"),
            },
        ];
        let mut entries: Vec<Entry> = cmds
            .into_iter()
            .enumerate()
            .map(|(i, c)| Entry {
                log_id: log_id(2, 0, i as u64 + 1),
                payload: EntryPayload::Normal(c),
            })
            .collect();
        entries.push(Entry {
            log_id: log_id(3, 0, 10),
            payload: EntryPayload::Blank,
        });
        entries.push(Entry {
            log_id: log_id(3, 0, 11),
            payload: EntryPayload::Membership(members()),
        });
        for e in entries {
            let back = decode_entry(&encode_entry(&e)).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn state_round_trips_through_snapshot_encoding() {
        let mut s = ClusterState::default();
        s.apply(Command::SetClusterId {
            cluster_id: "c".into(),
        });
        s.apply(Command::Propose {
            epoch: 1,
            map: Bytes::from_static(b"one"),
        });
        s.apply(Command::Commit { epoch: 1 });
        s.apply(Command::Propose {
            epoch: 2,
            map: Bytes::from_static(b"two"),
        });
        s.apply(Command::SetMember {
            name: "x".into(),
            weight: 2,
            zone: "z".into(),
        });
        s.apply(Command::AppendLog {
            data: Bytes::from_static(b"a"),
        });
        s.apply(Command::AppendLog {
            data: Bytes::from_static(b"b"),
        });
        s.last_applied = Some(log_id(4, 0, 9));
        s.membership = StoredMembership::new(Some(log_id(1, 0, 1)), members());
        assert_eq!(decode_state(&encode_state(&s)).unwrap(), s);
        // Without its entries the window says which ones to load, and is
        // refused as a snapshot payload.
        let (head, missing) = decode_state_head(&encode_state_head(&s)).unwrap();
        assert_eq!(missing, Some((0, 2)));
        assert!(head.app_log.is_empty());
        assert!(decode_state(&encode_state_head(&s)).is_err());
    }

    #[test]
    fn votes_and_rpcs_round_trip() {
        let v = Vote::new_committed(5, 2);
        assert_eq!(decode_vote(&encode_vote(&v)).unwrap(), v);
        let v = Vote::new(6, 3);
        assert_eq!(vote_from_pb(vote_to_pb(&v)), v);

        for r in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(1, 0, 2))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(9, 1)),
        ] {
            assert_eq!(
                append_response_from_pb(append_response_to_pb(&r)).unwrap(),
                r
            );
        }

        let mismatch: InstallOutcome =
            Err(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "s".into(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "s".into(),
                    offset: 10,
                },
            }));
        assert_eq!(
            install_response_from_pb(install_response_to_pb(&mismatch)).unwrap(),
            mismatch
        );
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 0, 30)),
            last_membership: StoredMembership::new(Some(log_id(1, 0, 1)), members()),
            snapshot_id: "3-30-1".into(),
        };
        let (m, d) = decode_snapshot(&encode_snapshot(&meta, b"data")).unwrap();
        assert_eq!(m, meta);
        assert_eq!(d, b"data");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(decode_entry(b"\xff\xff\xff").is_err());
        assert!(entry_from_pb(pb::Entry::default()).is_err());
        assert!(append_request_from_pb(pb::AppendEntriesRequest::default()).is_err());
        assert!(command_from_pb(pb::Command::default()).is_err());
    }
}
