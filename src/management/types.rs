//! What the management client returns: plain types (serde for the CLI's
//! `--format json`), converted from the wire messages at the edge.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::pb;
use crate::cluster::StatusView;
use crate::metrics::GossipHealthView;

/// One node of the cluster (ListNodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Node id.
    pub id: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub gossip_status: String,
    /// `leader`, `voter`, `learner` or `non_member`.
    pub raft_role: String,
    /// The leader's liveness view: `alive`, `dead` or `unknown`.
    pub liveness: String,
    /// Endpoint name (without `ep.`) to address.
    pub endpoints: BTreeMap<String, String>,
    /// Every gossip tag.
    pub tags: BTreeMap<String, String>,
    /// Zone (may be empty).
    pub zone: String,
    /// Shard weight.
    pub weight: u32,
    /// Shards owned in the committed map.
    pub shards: u32,
    /// Whether this is the leader.
    pub leader: bool,
}

/// Which nodes ListNodes returns, like `serf members -status -tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFilter {
    /// Only this gossip status.
    pub status: Option<String>,
    /// Only nodes with all these tags.
    pub tags: BTreeMap<String, String>,
}

impl NodeFilter {
    /// Whether a node with this status and these tags passes.
    pub fn matches(&self, gossip_status: &str, tags: &BTreeMap<String, String>) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s.is_empty() || s.eq_ignore_ascii_case(gossip_status))
            && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// The committed shard map (ListShards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsInfo {
    /// Its epoch.
    pub epoch: u64,
    /// Shards in the map.
    pub shard_count: u32,
    /// Shards no node owns.
    pub unassigned: u32,
    /// Every node of the map, sorted by id.
    pub nodes: Vec<ShardCount>,
    /// The owner of each shard (`None`: unassigned); empty unless the full
    /// map was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Option<String>>,
}

/// One node's share of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCount {
    /// Node id.
    pub node_id: String,
    /// Shards it owns.
    pub shards: u32,
    /// Its weight in the map.
    pub weight: u32,
    /// Its worker id (stable while it stays in successive maps).
    pub worker_id: u32,
}

/// One endpoint of one node (ListEndpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointEntry {
    /// Node id.
    pub node_id: String,
    /// Endpoint name (without `ep.`).
    pub name: String,
    /// `host:port`.
    pub address: String,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The leader afterwards, as the executing node saw it.
    pub leader: Option<String>,
    /// The committed epoch afterwards, as the executing node saw it.
    pub epoch: u64,
    /// A sentence for people.
    pub message: String,
    /// The node that carried it out (the leader when forwarded).
    pub served_by: String,
}

/// What an [`Event`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The serving node's state changed (`detail`).
    StateChanged,
    /// The serving node's role changed (`detail`).
    RoleChanged,
    /// The leader changed (`node_id`, empty: none).
    LeaderChanged,
    /// A node joined gossip.
    MemberJoined,
    /// A node left gracefully.
    MemberLeft,
    /// A node failed.
    MemberFailed,
    /// A node's tags changed.
    MemberUpdated,
    /// A failed node answers again.
    MemberAlive,
    /// A map was proposed (`epoch`).
    MapProposed,
    /// A map was committed (`epoch`, `moved`).
    MapCommitted,
    /// A gossip user event (`detail`: name, `payload`).
    UserEvent,
    /// The stream skipped `missed` events (the reader was too slow).
    Gap,
    /// A kind this client does not know (a newer server).
    Other,
}

impl EventKind {
    /// The wire name (`map_committed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StateChanged => "state_changed",
            EventKind::RoleChanged => "role_changed",
            EventKind::LeaderChanged => "leader_changed",
            EventKind::MemberJoined => "member_joined",
            EventKind::MemberLeft => "member_left",
            EventKind::MemberFailed => "member_failed",
            EventKind::MemberUpdated => "member_updated",
            EventKind::MemberAlive => "member_alive",
            EventKind::MapProposed => "map_proposed",
            EventKind::MapCommitted => "map_committed",
            EventKind::UserEvent => "user_event",
            EventKind::Gap => "gap",
            EventKind::Other => "other",
        }
    }

    /// Parses a wire name; unknown names are [`EventKind::Other`].
    pub fn parse(s: &str) -> EventKind {
        const ALL: [EventKind; 12] = [
            EventKind::StateChanged,
            EventKind::RoleChanged,
            EventKind::LeaderChanged,
            EventKind::MemberJoined,
            EventKind::MemberLeft,
            EventKind::MemberFailed,
            EventKind::MemberUpdated,
            EventKind::MemberAlive,
            EventKind::MapProposed,
            EventKind::MapCommitted,
            EventKind::UserEvent,
            EventKind::Gap,
        ];
        ALL.into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(EventKind::Other)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster event as a node streamed it (WatchEvents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock milliseconds since the Unix epoch at which it was sent.
    pub unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The wire name of the kind (kept for kinds this client does not know).
    pub kind_name: String,
    /// The member concerned, or the new leader.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    /// Map epoch (map events).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// New state or role; user event name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Shards that moved (map_committed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moved: u64,
    /// Events skipped (gap).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: u64,
    /// User event payload. In JSON: a string when it is UTF-8 text,
    /// otherwise `{"base64": "..."}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "payload_json")]
    pub payload: Vec<u8>,
    /// The node that streamed it.
    pub source: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// User-event payloads in JSON: text when they are UTF-8, base64 when not
/// (a list of byte values, as older output had, is still read).
mod payload_json {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Payload {
        Text(String),
        Binary { base64: String },
        Bytes(Vec<u8>),
    }

    pub(super) fn serialize<S: Serializer>(p: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(p) {
            Ok(t) => Payload::Text(t.to_string()),
            Err(_) => Payload::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(p),
            },
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Payload::deserialize(d)? {
            Payload::Text(t) => Ok(t.into_bytes()),
            Payload::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map_err(serde::de::Error::custom),
            Payload::Bytes(b) => Ok(b),
        }
    }
}

/// gRPC health of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The node is Operational.
    Serving,
    /// The node is not Operational (joining, resharding, stopping).
    NotServing,
    /// The server does not know.
    Unknown,
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<pb::GetStatusResponse> for StatusView {
    fn from(r: pb::GetStatusResponse) -> Self {
        StatusView {
            node_id: r.node_id,
            cluster_name: r.cluster_name,
            cluster_id: opt(r.cluster_id),
            leader: opt(r.leader),
            role: r.role,
            state: r.state,
            operational: r.operational,
            epoch: r.epoch,
            shard_count: r.shard_count,
            shards_owned: r.shards_owned,
            shards_unassigned: r.shards_unassigned,
            members_by_status: r.members_by_status.into_iter().collect(),
            voters: r.voters,
            learners: r.learners,
            uptime_ms: r.uptime_ms,
            raft_term: r.raft_term,
            raft_last_log_index: r.raft_last_log_index,
            raft_last_applied: r.raft_last_applied,
            nodes: Vec::new(),
            shard_map: None,
            gossip: r.gossip.map(|g| GossipHealthView {
                health_score: g.health_score,
                probe_rtt_count: g.probe_rtt_count,
                probe_rtt_last_ms: g.probe_rtt_last_ms,
                probe_rtt_mean_ms: g.probe_rtt_mean_ms,
                probe_rtt_max_ms: g.probe_rtt_max_ms,
                probe_failures: g.probe_failures,
                push_pulls: g.push_pulls,
                push_pull_failures: g.push_pull_failures,
                broadcast_queue: g.broadcast_queue,
                broadcast_queue_warning: g.broadcast_queue_warning,
                events_coalesced: g.events_coalesced,
                view_valid: g.view_valid,
                lighthouses_known: g.lighthouses_known,
                lighthouses_alive: g.lighthouses_alive,
            }),
        }
    }
}

impl From<pb::NodeInfo> for NodeEntry {
    fn from(n: pb::NodeInfo) -> Self {
        NodeEntry {
            id: n.id,
            gossip_status: n.gossip_status,
            raft_role: n.raft_role,
            liveness: n.liveness,
            endpoints: n.endpoints.into_iter().collect(),
            tags: n.tags.into_iter().collect(),
            zone: n.zone,
            weight: n.weight,
            shards: n.shards,
            leader: n.leader,
        }
    }
}

impl From<pb::ListShardsResponse> for ShardsInfo {
    fn from(r: pb::ListShardsResponse) -> Self {
        let nodes: Vec<ShardCount> = r
            .nodes
            .into_iter()
            .map(|n| ShardCount {
                node_id: n.node_id,
                shards: n.shards,
                weight: n.weight,
                worker_id: n.worker_id,
            })
            .collect();
        let owners = r
            .owners
            .iter()
            .map(|&o| {
                (o as usize)
                    .checked_sub(1)
                    .and_then(|i| nodes.get(i))
                    .map(|n| n.node_id.clone())
            })
            .collect();
        ShardsInfo {
            epoch: r.epoch,
            shard_count: r.shard_count,
            unassigned: r.unassigned,
            nodes,
            owners,
        }
    }
}

impl From<pb::Endpoint> for EndpointEntry {
    fn from(e: pb::Endpoint) -> Self {
        EndpointEntry {
            node_id: e.node_id,
            name: e.name,
            address: e.address,
        }
    }
}

impl From<pb::WriteResponse> for WriteOutcome {
    fn from(r: pb::WriteResponse) -> Self {
        WriteOutcome {
            leader: opt(r.leader),
            epoch: r.epoch,
            message: r.message,
            served_by: r.served_by,
        }
    }
}

impl From<pb::Event> for Event {
    fn from(e: pb::Event) -> Self {
        Event {
            unix_ms: e.unix_ms,
            kind: EventKind::parse(&e.kind),
            kind_name: e.kind,
            node_id: e.node_id,
            epoch: e.epoch,
            detail: e.detail,
            moved: u64::from(e.moved),
            missed: e.missed,
            payload: e.payload,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_event_payloads_are_text_or_base64_in_json() {
        let mut e = Event {
            unix_ms: 1,
            kind: EventKind::UserEvent,
            kind_name: "user_event".into(),
            node_id: String::new(),
            epoch: 0,
            detail: "deploy".into(),
            moved: 0,
            missed: 0,
            payload: b"v1.2 ok".to_vec(),
            source: "n1".into(),
        };
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["payload"], "v1.2 ok");
        assert_eq!(serde_json::from_value::<Event>(j).unwrap(), e);
        e.payload = vec![0xff, 0, 1];
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["payload"]["base64"], "/wAB");
        assert_eq!(serde_json::from_value::<Event>(j).unwrap(), e);
    }

    #[test]
    fn filter_matches_status_and_every_tag() {
        let tags: BTreeMap<String, String> = [
            ("zone".to_string(), "a".to_string()),
            ("x".into(), "1".into()),
        ]
        .into();
        assert!(NodeFilter::default().matches("dead", &tags));
        let f = NodeFilter {
            status: Some("alive".into()),
            tags: [("zone".to_string(), "a".to_string())].into(),
        };
        assert!(f.matches("alive", &tags));
        assert!(!f.matches("left", &tags));
        let f = NodeFilter {
            status: None,
            tags: [("zone".to_string(), "b".to_string())].into(),
        };
        assert!(!f.matches("alive", &tags));
    }

    #[test]
    fn event_kinds_round_trip_and_unknown_is_other() {
        for k in [
            EventKind::MapCommitted,
            EventKind::Gap,
            EventKind::UserEvent,
        ] {
            assert_eq!(EventKind::parse(k.as_str()), k);
        }
        assert_eq!(EventKind::parse("from_the_future"), EventKind::Other);
    }

    #[test]
    fn full_map_owners_resolve_to_node_ids() {
        let r = pb::ListShardsResponse {
            epoch: 3,
            shard_count: 4,
            nodes: vec![
                pb::ShardCount {
                    node_id: "a".into(),
                    shards: 2,
                    weight: 1,
                    worker_id: 0,
                },
                pb::ShardCount {
                    node_id: "b".into(),
                    shards: 1,
                    weight: 1,
                    worker_id: 1,
                },
            ],
            owners: vec![1, 2, 0, 1, 9],
            unassigned: 1,
            owner_ids: Vec::new(),
        };
        let s = ShardsInfo::from(r);
        assert_eq!(
            s.owners,
            vec![
                Some("a".into()),
                Some("b".into()),
                None,
                Some("a".into()),
                None
            ]
        );
    }
}
