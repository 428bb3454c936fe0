//! [`StatusView`]: the one shape of a node's status: what `/status`
//! returns, `/` renders, the management API's GetStatus sends and its
//! client returns. The coordinator builds it and publishes it on a
//! `tokio::sync::watch` channel; this module only reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gossip::GossipHealthView;

/// What this node knows about the cluster, as shown to operators.
///
/// Role, state and gossip status are free-form names (the coordinator passes
/// its enums' names) so that this module depends on no other one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusView {
    /// This node's id.
    pub node_id: String,
    /// Name of the cluster this node belongs to.
    pub cluster_name: String,
    /// Id made at bootstrap; `None` before the cluster is bootstrapped.
    pub cluster_id: Option<String>,
    /// The Raft leader this node sees, if any.
    pub leader: Option<String>,
    /// This node's role (`leader`, `voter`, `learner` or `non_member`).
    pub role: String,
    /// This node's state (e.g. `starting`, `operational`, `resharding`).
    pub state: String,
    /// `true` while the node is Operational; `/healthz` answers 200 then.
    pub operational: bool,
    /// Epoch of the last committed shard map (0 before the first).
    pub epoch: u64,
    /// Number of shards in the committed map.
    pub shard_count: u32,
    /// Shards this node owns in the committed map.
    pub shards_owned: u32,
    /// Shards no node owns in the committed map.
    pub shards_unassigned: u32,
    /// Gossip members of this cluster by status (`alive`, `suspect`,
    /// `dead`, `left`).
    pub members_by_status: BTreeMap<String, u32>,
    /// Raft voters by node id, sorted.
    pub voters: Vec<String>,
    /// Raft learners by node id, sorted.
    pub learners: Vec<String>,
    /// Current Raft term (0 when not known: not a member, or the periodic
    /// snapshot, which carries no Raft metrics).
    pub raft_term: u64,
    /// Index of the last Raft log entry (0 when not known).
    pub raft_last_log_index: u64,
    /// Index of the last applied Raft log entry (0 when not known).
    pub raft_last_applied: u64,
    /// Milliseconds since this node started.
    pub uptime_ms: u64,
    /// Every node this node knows of, in display order (empty in the
    /// management API's answer, which lists nodes with ListNodes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeView>,
    /// Every shard's owner and the shards a pending proposal moves, for
    /// the status page's map (`None` before the first map, and in the
    /// management API's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_map: Option<ShardMapView>,
    /// Gossip health: Lifeguard score, probe RTTs, push/pull failures,
    /// queue depth and lighthouse view validity (`None` in the management
    /// API's answer and before the first refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip: Option<GossipHealthView>,
}

/// The committed map, compactly, with the moves a proposal has pending.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardMapView {
    /// Owners, sorted by id.
    pub nodes: Vec<String>,
    /// Per shard: 0 unassigned, `k` for `nodes[k - 1]`.
    pub owners: Vec<u32>,
    /// Shards whose owner the pending proposal changes (moving now).
    pub moving: Vec<u32>,
}

/// One node as seen by the node publishing the [`StatusView`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Cluster role (`leader`, `voter`, `learner` or `non_member`).
    pub role: String,
    /// Gossip status (e.g. `alive`, `suspect`, `dead`, `left`).
    pub gossip_status: String,
    /// What the leader's liveness checker says about the node.
    pub liveness: Liveness,
    /// The node's place in the Raft membership.
    pub raft_role: RaftRole,
    /// Advertised endpoints: tag name without the `ep.` prefix → address.
    pub endpoints: BTreeMap<String, String>,
    /// The node's `zone` tag, if any.
    pub zone: Option<String>,
    /// Shard assignment weight.
    pub weight: u32,
    /// Shards the node owns in the committed map.
    pub shards: u32,
}

/// Liveness of a node as judged by the leader's echo checker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Answers echo probes.
    Alive,
    /// Missed `liveness_retries` consecutive probes.
    Dead,
    /// Not probed (not a shard owner, or this node is not the leader).
    #[default]
    Unknown,
}

impl Liveness {
    /// The lower-case name used in JSON and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        }
    }
}

/// A node's place in the Raft membership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRole {
    /// Voting member.
    Voter,
    /// Non-voting member that replicates the log.
    Learner,
    /// Not in the Raft membership (gossip only).
    #[default]
    NonMember,
}

impl RaftRole {
    /// The lower-case name used in JSON and on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            RaftRole::Voter => "voter",
            RaftRole::Learner => "learner",
            RaftRole::NonMember => "non_member",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_names() {
        let view = StatusView {
            node_id: "n1".into(),
            cluster_name: "demo".into(),
            cluster_id: Some("c-1".into()),
            leader: Some("n1".into()),
            role: "leader".into(),
            state: "operational".into(),
            operational: true,
            epoch: 4,
            shard_count: 16,
            shards_owned: 16,
            members_by_status: BTreeMap::from([("alive".into(), 1)]),
            voters: vec!["n1".into()],
            uptime_ms: 12_000,
            nodes: vec![NodeView {
                id: "n1".into(),
                role: "leader".into(),
                gossip_status: "alive".into(),
                liveness: Liveness::Alive,
                raft_role: RaftRole::NonMember,
                endpoints: BTreeMap::from([("raft".into(), "127.0.0.1:1".into())]),
                zone: Some("a".into()),
                weight: 1,
                shards: 16,
            }],
            ..StatusView::default()
        };
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.contains("\"raft_role\":\"non_member\""), "{json}");
        assert!(json.contains("\"liveness\":\"alive\""), "{json}");
        let back: StatusView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, view);
        // Missing fields take defaults, so older/newer peers still parse.
        let sparse: StatusView = serde_json::from_str(r#"{"node_id":"x"}"#).unwrap();
        assert_eq!(sparse.node_id, "x");
        assert_eq!(sparse.nodes, vec![]);
    }
}
