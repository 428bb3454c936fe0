//! Gossip tag keys the coordinator publishes and reads, and their parsing.
//!
//! Every node advertises what the others need to decide membership without
//! asking it: its cluster name and id, whether it may join Raft, its zone and
//! weight, the leader it follows, and its endpoints (`ep.<name>`).

use std::collections::BTreeMap;

use crate::gossip::endpoint_key;

/// Endpoint of the gossip transport.
pub const EP_GOSSIP: &str = "gossip";
/// Endpoint of the Raft gRPC server.
pub const EP_RAFT: &str = "raft";
/// Endpoint of the UDP liveness responder.
pub const EP_LIVENESS: &str = "liveness";
/// Endpoint of the management gRPC server.
pub const EP_MANAGEMENT: &str = "management";
/// Endpoint of the HTTP metrics/status server.
pub const EP_METRICS: &str = "metrics";

/// Cluster name: nodes of another name are never added.
pub(crate) const CLUSTER: &str = "cf.cluster";
/// Cluster id minted at bootstrap; nodes of another id are never added.
pub(crate) const CLUSTER_ID: &str = "cf.id";
/// `member` (may join Raft and own shards) or `client` (gossip only).
pub(crate) const KIND: &str = "cf.kind";
/// The leader this node follows, if any.
pub(crate) const LEADER: &str = "cf.leader";
/// Failure-domain label used to spread voters.
pub(crate) const ZONE: &str = "cf.zone";
/// Requested shard weight (the leader's registry can override it).
pub(crate) const WEIGHT: &str = "cf.weight";

pub(crate) const KIND_MEMBER: &str = "member";
pub(crate) const KIND_CLIENT: &str = "client";

/// What the coordinator reads from one node's tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NodeTags {
    pub cluster: String,
    pub cluster_id: Option<String>,
    pub member: bool,
    pub leader: Option<String>,
    pub zone: String,
    pub weight: u32,
    pub raft_addr: Option<String>,
    pub liveness_addr: Option<String>,
}

impl NodeTags {
    /// Reads the coordinator's tags; unknown or malformed values fall back to
    /// the safe choice (not a member, weight 1, no address).
    pub fn parse(tags: &BTreeMap<String, String>) -> NodeTags {
        let get = |k: &str| tags.get(k).filter(|v| !v.is_empty()).cloned();
        NodeTags {
            cluster: tags.get(CLUSTER).cloned().unwrap_or_default(),
            cluster_id: get(CLUSTER_ID),
            member: tags.get(KIND).map(String::as_str) == Some(KIND_MEMBER),
            leader: get(LEADER),
            zone: tags.get(ZONE).cloned().unwrap_or_default(),
            weight: tags.get(WEIGHT).and_then(|w| w.parse().ok()).unwrap_or(1),
            raft_addr: get(&endpoint_key(EP_RAFT)),
            liveness_addr: get(&endpoint_key(EP_LIVENESS)),
        }
    }

    /// A node that may join Raft and own shards: a member with the endpoints
    /// the leader needs to reach it.
    pub fn raft_capable(&self) -> bool {
        self.member && self.raft_addr.is_some() && self.liveness_addr.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_member_tags() {
        let t = NodeTags::parse(&map(&[
            (CLUSTER, "demo"),
            (KIND, KIND_MEMBER),
            (WEIGHT, "3"),
            ("ep.raft", "127.0.0.1:1"),
            ("ep.liveness", "127.0.0.1:2"),
            (LEADER, ""),
        ]));
        assert_eq!(t.cluster, "demo");
        assert_eq!(t.weight, 3);
        assert!(t.raft_capable());
        assert_eq!(t.leader, None);
    }

    #[test]
    fn malformed_tags_fall_back_safely() {
        let t = NodeTags::parse(&map(&[(KIND, "MEMBER"), (WEIGHT, "-1")]));
        assert!(!t.member);
        assert_eq!(t.weight, 1);
        assert!(!t.raft_capable());
    }
}
