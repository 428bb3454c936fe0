//! Three whole nodes with no real socket at all: gossip and liveness on
//! in-memory networks, Raft through the in-process router, zero-conf
//! discovery through the in-memory registry (no `join` list). They find
//! each other, bootstrap and commit a map; then one node's liveness alone
//! is cut (its Raft and gossip stay up) and the leader drops it from the
//! map, with no shard served twice at any sample, and takes it back when
//! the cut heals.
//!
//! "No socket" is checked on this process's file descriptors: the count of
//! sockets is the same before the nodes start and once they run, while the
//! in-memory networks carried the traffic. This file holds one test so
//! that no other test in the same process opens sockets meanwhile.

use std::collections::BTreeSet;

mod common;

use clusterfunk::cluster::{MemoryRegistry, Seams};
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::{Cluster, Config, NodeState};
use common::serving::OverlapWatch;
use common::wait::wait_until;

const SHARDS: u32 = 64;
const NODES: usize = 3;

/// Open sockets of this process (any kind: UDP, TCP, Unix).
fn socket_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

fn config(i: usize) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = "memory".into();
    c.shard_count = SHARDS;
    c.management_addr = None;
    c.bootstrap_expect = NODES;
    c.zero_conf = true;
    c
}

/// The owners of `c`'s committed map, with its epoch.
fn committed(c: &Cluster) -> Option<(u64, BTreeSet<String>)> {
    let map = c.shard_map().borrow().clone()?;
    let owners = map
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(n, _)| n.to_string())
        .collect();
    Some((map.epoch(), owners))
}

/// Every node has committed the same map, owned by exactly `owners`, and
/// every shard is served by exactly one node.
fn settled_on(nodes: &[Cluster], owners: &BTreeSet<String>) -> bool {
    let maps: BTreeSet<_> = nodes.iter().map(committed).collect();
    let [Some((_, got))] = maps.iter().collect::<Vec<_>>()[..] else {
        return false;
    };
    got == owners
        && nodes.iter().all(|n| n.state() == NodeState::Operational)
        && (0..SHARDS).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_with_no_socket_drop_the_one_whose_liveness_is_cut() {
    let gossip = MemNetwork::new();
    let liveness = MemNetwork::new();
    let raft = Router::new();
    let registry = MemoryRegistry::new();
    let seams = Seams {
        gossip: Some(gossip.clone()),
        raft: Some(raft.clone()),
        liveness: Some(liveness.clone()),
        discovery: Some(registry.clone()),
        disks: None,
    };

    let sockets_before = socket_fds();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let c = config(i);
        assert!(c.join.is_empty(), "peers come from discovery only");
        nodes.push(
            Cluster::start_with(c, seams.clone())
                .await
                .unwrap_or_else(|e| panic!("start n{i}: {e}")),
        );
    }
    let all: BTreeSet<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    wait_until("one committed map over all three", || {
        settled_on(&nodes, &all)
    })
    .await;

    let leader_id = nodes[0].leader().expect("leader");
    let leader = nodes
        .iter()
        .find(|n| n.node_id() == leader_id)
        .expect("leader node")
        .clone();
    // Each follower answered at least one probe (probe and reply).
    wait_until("liveness probes answered in memory", || {
        liveness.stats().delivered >= 2 * (NODES as u64 - 1)
    })
    .await;

    // Found through the registry, talking over the in-memory networks, and
    // not one socket more than before the nodes started.
    assert_eq!(registry.announcements().len(), NODES);
    assert!(gossip.stats().delivered > 0, "gossip went through memory");
    assert_eq!(socket_fds(), sockets_before, "a node bound a real socket");
    let victim = nodes
        .iter()
        .find(|n| n.node_id() != leader_id)
        .expect("a follower")
        .clone();
    let victim_id = victim.node_id().to_string();
    let victim_liveness = victim.local_endpoints()["liveness"];
    let epoch_before = leader.epoch().expect("epoch");
    let refused_before = raft.refused();
    let overlaps = OverlapWatch::start(nodes.clone());

    // Cut the victim's liveness only: the leader's probes stop reaching it,
    // while its Raft and gossip links stay up.
    liveness.isolate(victim_liveness);
    let rest: BTreeSet<String> = all.iter().filter(|n| **n != victim_id).cloned().collect();
    wait_until("the leader drops the node whose liveness is cut", || {
        settled_on(&nodes, &rest)
    })
    .await;
    let infos = leader.node_infos().await.expect("node infos");
    let seen = infos
        .iter()
        .find(|i| i.id == victim_id)
        .expect("victim still listed");
    assert_eq!(seen.live, Some(false), "the leader's checker saw it dead");
    let retries = u64::from(config(0).liveness.retries);
    assert!(
        liveness.stats().dropped_by_link >= retries,
        "at least liveness_retries probes were lost to the cut"
    );
    assert_eq!(seen.gossip_status, "alive", "gossip still sees it");
    // Raft still reached it: it applied and committed the map without it.
    assert!(victim.epoch().expect("victim epoch") > epoch_before);
    assert_eq!(raft.refused(), refused_before, "no Raft call was refused");

    // Healed: the leader finds it alive again and gives it shards back.
    liveness.rejoin(victim_liveness);
    wait_until("the node is back in the map", || settled_on(&nodes, &all)).await;

    let samples = overlaps.finish().await;
    assert!(samples > 10, "the sampler barely ran: {samples}");
    assert_eq!(socket_fds(), sockets_before, "a node bound a real socket");

    // Followers first, so each drain has a leader to go through; a stopped
    // node withdraws its announcement.
    for n in nodes.iter().filter(|n| n.node_id() != leader_id) {
        n.stop().await;
    }
    leader.stop().await;
    assert!(registry.announcements().is_empty());
}
