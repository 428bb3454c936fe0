//! Server side: the cluster's types as wire messages, and cluster errors as
//! gRPC statuses. Pure functions.

use tonic::Status;

use super::pb;
use crate::cluster::{ClusterError, ClusterEvent, NodeInfo, StatusView, UserEvent};
use crate::shards::ShardMap;

/// A node's status on the wire (its node list goes by ListNodes).
pub(crate) fn status_response(v: StatusView) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        node_id: v.node_id,
        cluster_name: v.cluster_name,
        cluster_id: v.cluster_id.unwrap_or_default(),
        leader: v.leader.unwrap_or_default(),
        role: v.role,
        state: v.state,
        operational: v.operational,
        epoch: v.epoch,
        shard_count: v.shard_count,
        shards_owned: v.shards_owned,
        shards_unassigned: v.shards_unassigned,
        members_by_status: v.members_by_status.into_iter().collect(),
        voters: v.voters,
        learners: v.learners,
        uptime_ms: v.uptime_ms,
        raft_term: v.raft_term,
        raft_last_log_index: v.raft_last_log_index,
        raft_last_applied: v.raft_last_applied,
        gossip: v.gossip.map(|g| pb::GossipHealth {
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

/// One node on the wire.
pub(crate) fn node(info: &NodeInfo, leader: Option<&str>) -> pb::NodeInfo {
    pb::NodeInfo {
        id: info.id.clone(),
        gossip_status: info.gossip_status.clone(),
        raft_role: info.role.as_str().to_string(),
        liveness: match info.live {
            Some(true) => "alive",
            Some(false) => "dead",
            None => "unknown",
        }
        .to_string(),
        endpoints: info
            .endpoints
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tags: info
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        zone: info.zone.clone(),
        weight: info.weight,
        shards: info.shards,
        leader: leader == Some(info.id.as_str()),
    }
}

/// The committed map on the wire: counts per node, owners on request.
pub(crate) fn shards(map: &ShardMap, full: bool) -> pb::ListShardsResponse {
    let counts = map.counts();
    pb::ListShardsResponse {
        epoch: map.epoch(),
        shard_count: map.shard_count(),
        nodes: map
            .nodes()
            .iter()
            .map(|n| pb::ShardCount {
                node_id: n.id.clone(),
                shards: counts.get(n.id.as_str()).copied().unwrap_or(0),
                weight: n.weight,
                worker_id: n.worker_id,
            })
            .collect(),
        owners: if full { map.wire_owners() } else { Vec::new() },
        owner_ids: if full {
            (0..map.shard_count())
                .map(|s| map.owner_of(s).unwrap_or_default().to_string())
                .collect()
        } else {
            Vec::new()
        },
        unassigned: map.unassigned(),
    }
}

/// Endpoints whose name starts with `prefix`, of `node` only when given.
pub(crate) fn endpoints(infos: &[NodeInfo], prefix: &str, node: &str) -> Vec<pb::Endpoint> {
    infos
        .iter()
        .filter(|n| node.is_empty() || n.id == node)
        .flat_map(|n| {
            n.endpoints
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, addr)| pb::Endpoint {
                    node_id: n.id.clone(),
                    name: name.clone(),
                    address: addr.clone(),
                })
        })
        .collect()
}

fn event_base(kind: &str, source: &str, unix_ms: u64) -> pb::Event {
    pb::Event {
        unix_ms,
        kind: kind.to_string(),
        source: source.to_string(),
        ..pb::Event::default()
    }
}

/// A cluster event on the wire.
pub(crate) fn event(ev: &ClusterEvent, source: &str, unix_ms: u64) -> pb::Event {
    let member = |kind: &str, id: &str| pb::Event {
        node_id: id.to_string(),
        ..event_base(kind, source, unix_ms)
    };
    match ev {
        ClusterEvent::StateChanged(s) => pb::Event {
            detail: s.as_str().to_string(),
            ..event_base("state_changed", source, unix_ms)
        },
        ClusterEvent::RoleChanged(r) => pb::Event {
            detail: r.as_str().to_string(),
            ..event_base("role_changed", source, unix_ms)
        },
        ClusterEvent::LeaderChanged(l) => member("leader_changed", l.as_deref().unwrap_or("")),
        ClusterEvent::MemberJoined(n) => member("member_joined", n),
        ClusterEvent::MemberLeft(n) => member("member_left", n),
        ClusterEvent::MemberFailed(n) => member("member_failed", n),
        ClusterEvent::MemberUpdated(n) => member("member_updated", n),
        ClusterEvent::MemberAlive(n) => member("member_alive", n),
        ClusterEvent::MapProposed { epoch } => pb::Event {
            epoch: *epoch,
            ..event_base("map_proposed", source, unix_ms)
        },
        ClusterEvent::MapCommitted { epoch, moved } => pb::Event {
            epoch: *epoch,
            moved: *moved,
            ..event_base("map_committed", source, unix_ms)
        },
        ClusterEvent::ViewValidity { valid, .. } => pb::Event {
            detail: if *valid { "valid" } else { "invalid" }.to_string(),
            ..event_base("view_validity", source, unix_ms)
        },
    }
}

/// A gossip user event on the wire.
pub(crate) fn user_event(ev: &UserEvent, source: &str, unix_ms: u64) -> pb::Event {
    pb::Event {
        detail: ev.name.clone(),
        payload: ev.payload.clone(),
        ..event_base("user_event", source, unix_ms)
    }
}

/// The marker of skipped events.
pub(crate) fn gap(missed: u64, source: &str, unix_ms: u64) -> pb::Event {
    pb::Event {
        missed,
        ..event_base("gap", source, unix_ms)
    }
}

/// A cluster error as a gRPC status with a message for people.
pub(crate) fn status(e: ClusterError) -> Status {
    match e {
        ClusterError::NoLeader => Status::unavailable("no leader yet"),
        ClusterError::NotLeader(Some(l)) => {
            Status::unavailable(format!("not the leader (the leader is {l})"))
        }
        ClusterError::NotLeader(None) => Status::unavailable("no leader yet"),
        ClusterError::UnknownNode(n) => Status::not_found(format!("unknown node {n}")),
        ClusterError::NotMember => Status::failed_precondition("this node is not a Raft member"),
        ClusterError::Raft(r) => Status::unavailable(format!("raft: {r}")),
        ClusterError::Stopped => Status::unavailable("the node is stopping"),
        ClusterError::Gossip(g) => Status::invalid_argument(g.to_string()),
        e @ (ClusterError::Config(_)
        | ClusterError::ReleaseDeadline { .. }
        | ClusterError::Bind { .. }
        | ClusterError::Start { .. }) => Status::internal(e.to_string()),
        e @ ClusterError::NotFailed { .. } => Status::failed_precondition(e.to_string()),
        e @ ClusterError::Unresolved(_) => Status::invalid_argument(e.to_string()),
        e @ ClusterError::EntryTooLarge { .. } => Status::invalid_argument(e.to_string()),
        e @ ClusterError::Compacted(_) => Status::out_of_range(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NodeState, Role};
    use std::collections::BTreeMap;

    fn info(id: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            gossip_status: "alive".into(),
            role: Role::Voter,
            live: None,
            endpoints: [
                ("management".to_string(), format!("{id}:1")),
                ("kv".to_string(), format!("{id}:2")),
            ]
            .into(),
            tags: BTreeMap::new(),
            zone: String::new(),
            weight: 1,
            shards: 3,
        }
    }

    #[test]
    fn errors_map_to_codes_with_clear_messages() {
        let s = status(ClusterError::UnknownNode("x".into()));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "unknown node x");
        let s = status(ClusterError::NoLeader);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unavailable, "no leader yet")
        );
        assert_eq!(
            status(ClusterError::NotMember).code(),
            tonic::Code::FailedPrecondition
        );
        let s = status(ClusterError::Stopped);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unavailable, "the node is stopping")
        );
    }

    #[test]
    fn endpoints_filter_by_prefix_and_node() {
        let infos = [info("a"), info("b")];
        assert_eq!(endpoints(&infos, "", "").len(), 4);
        let man = endpoints(&infos, "man", "");
        assert_eq!(man.len(), 2);
        assert!(man.iter().all(|e| e.name == "management"));
        let b = endpoints(&infos, "", "b");
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|e| e.node_id == "b"));
    }

    #[test]
    fn node_marks_the_leader_and_names_liveness() {
        let mut i = info("a");
        i.live = Some(false);
        let n = node(&i, Some("a"));
        assert!(n.leader);
        assert_eq!(n.liveness, "dead");
        assert_eq!(n.raft_role, "voter");
        assert!(!node(&i, Some("b")).leader);
    }

    #[test]
    fn events_carry_their_fields() {
        let e = event(
            &ClusterEvent::MapCommitted {
                epoch: 7,
                moved: 12,
            },
            "n",
            5,
        );
        assert_eq!(
            (e.kind.as_str(), e.epoch, e.moved),
            ("map_committed", 7, 12)
        );
        assert_eq!(e.source, "n");
        let e = event(&ClusterEvent::StateChanged(NodeState::Operational), "n", 5);
        assert_eq!(e.detail, "operational");
        let lost = ClusterEvent::ViewValidity {
            valid: false,
            lighthouses_alive: 0,
        };
        let e = event(&lost, "n", 5);
        assert_eq!(
            (e.kind.as_str(), e.detail.as_str()),
            ("view_validity", "invalid")
        );
        let e = event(&ClusterEvent::LeaderChanged(None), "n", 5);
        assert_eq!(
            (e.kind.as_str(), e.node_id.as_str()),
            ("leader_changed", "")
        );
        assert_eq!(gap(4, "n", 1).missed, 4);
    }

    #[test]
    fn full_map_is_sent_only_on_request() {
        let map = crate::shards::rebalance(
            &ShardMap::new(10).expect("map"),
            &[("a", 1u32), ("b", 1u32)],
        );
        let Ok(map) = map else {
            panic!("rebalance failed");
        };
        let brief = shards(&map, false);
        assert!(brief.owners.is_empty());
        assert_eq!(brief.nodes.iter().map(|n| n.shards).sum::<u32>(), 10);
        let full = shards(&map, true);
        assert_eq!(full.owners.len(), 10);
        assert!(full.owners.iter().all(|&o| o == 1 || o == 2));
        assert!(brief.owner_ids.is_empty());
        for (i, id) in full.owner_ids.iter().enumerate() {
            let k = full.owners[i] as usize;
            assert_eq!(id, &full.nodes[k - 1].node_id, "owners by node id");
        }
    }
}
