//! Read-only views of the node's state: node lists for the API, the
//! `/status` snapshot and the Prometheus gauges. Pure functions of what the
//! node task holds.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ids::raft_id;
use super::tags::NodeTags;
use super::{NodeInfo, NodeState, RaftStatus, Role};
use crate::config::Config;
use crate::gossip::{endpoints, GossipStats, Member};
use crate::liveness::{LivenessSnapshot, TargetStatus};
use crate::metrics::{
    GossipHealthView, Liveness, Metrics, NodeView, RaftRole, ShardMapView, StatusView,
};
use crate::raft::{MemberRecord, Membership, RaftMetrics};
use crate::shards::ShardMap;

/// What the views are computed from.
pub(crate) struct Input<'a> {
    pub me: &'a str,
    pub cluster: &'a str,
    pub members: &'a [Member],
    pub membership: Option<&'a Membership>,
    pub leader: Option<&'a str>,
    pub is_leader: bool,
    pub liveness: Option<LivenessSnapshot>,
    pub committed: Option<&'a ShardMap>,
    pub registry: BTreeMap<String, MemberRecord>,
}

/// Every gossip member of this cluster name, with what the node knows.
pub(crate) fn node_infos(i: Input<'_>) -> Vec<NodeInfo> {
    let counts = i.committed.map(|m| m.counts()).unwrap_or_default();
    i.members
        .iter()
        .filter(|m| m.tags.get(super::tags::CLUSTER).map(String::as_str) == Some(i.cluster))
        .map(|m| {
            let t = NodeTags::parse(&m.tags);
            let id = raft_id(&m.name);
            let role = if i.leader == Some(m.name.as_str()) {
                Role::Leader
            } else if i
                .membership
                .is_some_and(|ms| ms.voter_ids().any(|v| v == id))
            {
                Role::Voter
            } else if i
                .membership
                .is_some_and(|ms| ms.learner_ids().any(|v| v == id))
            {
                Role::Learner
            } else {
                Role::NonMember
            };
            let live = if m.name == i.me {
                Some(true)
            } else if i.is_leader {
                i.liveness
                    .as_ref()
                    .and_then(|l| l.status(&m.name))
                    .map(|s| s != TargetStatus::Dead)
            } else {
                None
            };
            NodeInfo {
                id: m.name.clone(),
                gossip_status: m.status.as_str().to_string(),
                role,
                live,
                endpoints: endpoints(&m.tags),
                tags: m.tags.clone(),
                zone: t.zone,
                weight: i
                    .registry
                    .get(&m.name)
                    .map(|r| r.weight)
                    .unwrap_or(t.weight),
                shards: counts.get(m.name.as_str()).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Term, log indexes, voters and learners (by node name) from the Raft
/// metrics of this node.
pub(crate) fn raft_status(m: &RaftMetrics) -> RaftStatus {
    let ms = m.membership_config.membership();
    let name = |id: u64| {
        ms.get_node(&id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let mut voters: Vec<String> = ms.voter_ids().map(name).collect();
    let mut learners: Vec<String> = ms.learner_ids().map(name).collect();
    voters.sort();
    learners.sort();
    RaftStatus {
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        voters,
        learners,
    }
}

/// The committed map for the status page: owners by index, and the shards
/// the pending proposal (if any) gives to another owner.
fn shard_map_view(committed: &ShardMap, pending: Option<&ShardMap>) -> ShardMapView {
    let nodes: Vec<String> = committed
        .counts()
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(n, _)| n.to_string())
        .collect();
    let index = |owner: Option<&str>| {
        owner
            .and_then(|o| nodes.iter().position(|n| n == o))
            .map_or(0, |i| i as u32 + 1)
    };
    let count = committed.shard_count();
    let owners = (0..count).map(|s| index(committed.owner_of(s))).collect();
    let moving = match pending.filter(|p| p.shard_count() == count) {
        Some(p) => (0..count)
            .filter(|s| p.owner_of(*s) != committed.owner_of(*s))
            .collect(),
        None => Vec::new(),
    };
    ShardMapView {
        nodes,
        owners,
        moving,
    }
}

/// The `/status` snapshot.
#[allow(clippy::too_many_arguments)]
pub(crate) fn status(
    cfg: &Config,
    infos: &[NodeInfo],
    cluster_id: Option<String>,
    leader: Option<String>,
    role: Role,
    state: NodeState,
    committed: Option<&ShardMap>,
    pending: Option<&ShardMap>,
    uptime: Duration,
) -> StatusView {
    let count_of = |id: &str| committed.map(|m| m.counts().get(id).copied().unwrap_or(0));
    let mut members_by_status = BTreeMap::new();
    let (mut voters, mut learners) = (Vec::new(), Vec::new());
    for n in infos {
        *members_by_status
            .entry(n.gossip_status.clone())
            .or_insert(0) += 1;
        match n.role {
            Role::Leader | Role::Voter => voters.push(n.id.clone()),
            Role::Learner => learners.push(n.id.clone()),
            Role::NonMember => {}
        }
    }
    voters.sort();
    learners.sort();
    StatusView {
        node_id: cfg.node_id.clone(),
        cluster_name: cfg.cluster_name.clone(),
        cluster_id,
        leader,
        role: role.as_str().to_string(),
        state: state.as_str().to_string(),
        operational: state == NodeState::Operational,
        epoch: committed.map(|m| m.epoch()).unwrap_or(0),
        shard_count: committed
            .map(|m| m.shard_count())
            .unwrap_or(cfg.shard_count),
        shards_owned: count_of(&cfg.node_id).unwrap_or(0),
        shards_unassigned: committed.map(|m| m.unassigned()).unwrap_or(0),
        members_by_status,
        voters,
        learners,
        // The node task holds no Raft metrics; `Cluster::status_now` adds them.
        raft_term: 0,
        raft_last_log_index: 0,
        raft_last_applied: 0,
        uptime_ms: uptime.as_millis() as u64,
        nodes: infos
            .iter()
            .map(|n| NodeView {
                id: n.id.clone(),
                role: n.role.as_str().to_string(),
                gossip_status: n.gossip_status.clone(),
                liveness: match n.live {
                    Some(true) => Liveness::Alive,
                    Some(false) => Liveness::Dead,
                    None => Liveness::Unknown,
                },
                raft_role: match n.role {
                    Role::Leader | Role::Voter => RaftRole::Voter,
                    Role::Learner => RaftRole::Learner,
                    Role::NonMember => RaftRole::NonMember,
                },
                endpoints: n.endpoints.clone(),
                zone: (!n.zone.is_empty()).then(|| n.zone.clone()),
                weight: n.weight,
                shards: n.shards,
            })
            .collect(),
        shard_map: committed.map(|m| shard_map_view(m, pending)),
        // Filled from the gossip stats by `refresh_status`.
        gossip: None,
    }
}

/// Gauges that follow the node's view.
pub(crate) fn update_metrics(
    metrics: &Metrics,
    members: &[Member],
    membership: Option<&Membership>,
    infos: &[NodeInfo],
    is_leader: bool,
) {
    metrics.cluster_nodes.set(
        infos
            .iter()
            .filter(|n| n.gossip_status == "alive" || n.gossip_status == "suspect")
            .count() as i64,
    );
    let mut by_status: BTreeMap<String, u64> = crate::metrics::GOSSIP_STATUSES
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for m in members {
        *by_status.entry(m.status.as_str().to_string()).or_default() += 1;
    }
    metrics.set_gossip_members(by_status.iter().map(|(k, v)| (k.as_str(), *v)));
    if let Some(ms) = membership {
        metrics.raft_voters.set(ms.voter_ids().count() as i64);
        metrics.raft_learners.set(ms.learner_ids().count() as i64);
    }
    metrics.raft_is_leader.set(i64::from(is_leader));
}

/// The `/status` gossip health part, from the gossip layer's stats.
pub(crate) fn gossip_health(s: &GossipStats, queue_warning: usize) -> GossipHealthView {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    GossipHealthView {
        health_score: s.health_score,
        probe_rtt_count: s.rtt.count,
        probe_rtt_last_ms: ms(s.rtt.last),
        probe_rtt_mean_ms: ms(s.rtt.mean),
        probe_rtt_max_ms: ms(s.rtt.max),
        probe_failures: s.probe_failures,
        push_pulls: s.push_pulls,
        push_pull_failures: s.push_pull_failures,
        broadcast_queue: s.broadcasts_queued as u64,
        broadcast_queue_warning: queue_warning as u64,
        events_coalesced: s.events_coalesced,
        view_valid: s.view_valid,
        lighthouses_known: s.lighthouses_known as u64,
        lighthouses_alive: s.lighthouses_alive as u64,
    }
}

/// Gossip counters from the gossip layer's running totals.
pub(crate) fn gossip_metrics(metrics: &Metrics, s: &GossipStats) {
    for (kind, t) in &s.sent {
        metrics.gossip_messages_sent.observe_total(kind, t.messages);
        metrics.gossip_bytes_sent.observe_total(kind, t.bytes);
    }
    for (kind, t) in &s.received {
        metrics
            .gossip_messages_received
            .observe_total(kind, t.messages);
        metrics.gossip_bytes_received.observe_total(kind, t.bytes);
    }
    metrics.gossip_suspicions.observe_total(s.suspicions);
    metrics.gossip_refutations.observe_total(s.refutations);
    metrics
        .gossip_dropped_packets
        .observe_total(s.broadcasts_dropped + s.send_errors);
    metrics
        .gossip_undecodable_packets
        .observe_total(s.bad_packets);
    metrics
        .gossip_decryption_failures
        .observe_total(s.decrypt_failures);
    metrics.gossip_protocol_refused.observe_totals([
        ("frame", s.protocol_refused_frames),
        ("member", s.protocol_refused_members),
    ]);
    metrics
        .gossip_compressed_packets
        .observe_total(s.packets_compressed);
    metrics.cidr_refused.observe_total("gossip", s.cidr_refused);
    metrics.gossip_stream_rejections.observe_totals([
        ("too_large", s.stream_frames_too_large),
        ("budget", s.stream_budget_exhausted),
        ("timeout", s.stream_timeouts),
        ("busy", s.streams_rejected),
        ("evicted_idle", s.streams_evicted),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::rebalance;

    #[test]
    fn the_status_map_lists_owners_and_the_shards_a_proposal_moves() {
        let empty = ShardMap::new(32).expect("map");
        let m1 = rebalance(&empty, &[("a", 1), ("b", 1)]).expect("map");
        let m2 = rebalance(&m1, &[("a", 1), ("b", 1), ("c", 1)]).expect("map");
        let v = shard_map_view(&m1, Some(&m2));
        assert_eq!(v.nodes, ["a", "b"]);
        for s in 0..32u32 {
            let owner = v.nodes[v.owners[s as usize] as usize - 1].as_str();
            assert_eq!(Some(owner), m1.owner_of(s));
        }
        let moved: Vec<u32> = (0..32).filter(|s| m2.owner_of(*s) == Some("c")).collect();
        assert_eq!(v.moving, moved);
        assert!(!moved.is_empty());
        assert!(shard_map_view(&m1, None).moving.is_empty());
    }
}
