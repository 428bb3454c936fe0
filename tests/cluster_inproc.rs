//! In-process clusters over real loopback sockets: formation, one owner per
//! shard, and a follower leaving gracefully.

mod common;

use std::collections::BTreeSet;

use clusterfunk::cluster::Seams;
use clusterfunk::{Agent, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until;

fn config(name: &str) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = "t".into();
    c.shard_count = 1000;
    c.management_addr = None;
    c
}

async fn start(n: usize) -> Vec<Agent> {
    start_agents(n, Seams::default(), |i| config(&format!("n{i}"))).await
}

/// Waits until every node has committed the same map, owned by exactly
/// `owners` with no shard unassigned; returns its epoch.
async fn wait_map(nodes: &[&Agent], owners: &BTreeSet<String>) -> u64 {
    let common_epoch = || {
        let epochs: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| {
                let m = n.shard_map();
                let m = m.borrow();
                m.as_ref().and_then(|m| {
                    let have: BTreeSet<String> = m
                        .counts()
                        .into_iter()
                        .filter(|(_, c)| *c > 0)
                        .map(|(n, _)| n.to_string())
                        .collect();
                    (have == *owners && m.unassigned() == 0).then_some(m.epoch())
                })
            })
            .collect();
        epochs
            .iter()
            .all(|e| e.is_some() && *e == epochs[0])
            .then(|| epochs[0])
            .flatten()
    };
    wait_until(&format!("a common map owned by {owners:?}"), || {
        common_epoch().is_some()
    })
    .await;
    common_epoch().expect("epoch")
}

fn names(nodes: &[&Agent]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.node_id().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_one_cluster_and_reshard_when_a_follower_leaves() {
    let nodes = start(3).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    let e1 = wait_map(&all, &names(&all)).await;
    let leaders: BTreeSet<_> = nodes.iter().filter_map(|n| n.leader()).collect();
    assert_eq!(leaders.len(), 1, "one leader");
    // Operational once each follower's serving lease is renewed by a
    // request that leaves it caught up (at most a heartbeat later).
    wait_until("every node operational", || {
        nodes.iter().all(|n| n.state() == NodeState::Operational)
    })
    .await;
    for n in &nodes {
        assert!(!n.local_shards().is_empty());
    }
    // Exactly one node serves each shard.
    for shard in 0..1000 {
        let servers = nodes.iter().filter(|n| n.is_serving(shard)).count();
        assert!(servers <= 1, "shard {shard} served by {servers}");
    }

    // A follower leaves (graceful stop: it drains first): the others commit
    // a map without it.
    let leader = leaders.into_iter().next().expect("leader");
    let follower = nodes
        .iter()
        .position(|n| n.node_id() != leader)
        .expect("follower");
    let mut rest: Vec<Agent> = nodes.clone();
    let gone = rest.remove(follower);
    gone.stop().await;
    let survivors: Vec<&Agent> = rest.iter().collect();
    let e2 = wait_map(&survivors, &names(&survivors)).await;
    assert!(e2 > e1, "epochs grow");

    // Both survivors agree on the cluster id minted at bootstrap.
    let cluster_ids: BTreeSet<_> = rest
        .iter()
        .map(|n| n.status().borrow().cluster_id.clone())
        .collect();
    assert_eq!(cluster_ids.len(), 1);
    stop_all(&rest).await;
}
