//! In-process clusters over real loopback sockets: formation, one owner per
//! shard, and a follower leaving gracefully.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clusterfunk::{Cluster, Config, NodeState};
use common::wait::wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn config(name: &str, seeds: &[String]) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = "t".into();
    c.shard_count = 1000;
    c.join = seeds.to_vec();
    c
}

async fn start(n: usize) -> Vec<Cluster> {
    let first = Cluster::start(config("n0", &[])).await.expect("start n0");
    let seed = first.local_endpoints()["gossip"].to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        let c = Cluster::start(config(&format!("n{i}"), std::slice::from_ref(&seed)))
            .await
            .expect("start");
        nodes.push(c);
    }
    nodes
}

/// Waits until every node has committed a map whose owners are `owners`.
async fn wait_map(nodes: &[&Cluster], owners: &BTreeSet<String>) -> u64 {
    let res = tokio::time::timeout(WAIT, async {
        loop {
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
            if epochs.iter().all(|e| e.is_some() && *e == epochs[0]) {
                return epochs[0].expect("epoch");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    match res {
        Ok(e) => e,
        Err(_) => {
            for n in nodes {
                eprintln!(
                    "{}: state {:?} role {:?} leader {:?} epoch {:?} map {:?}",
                    n.node_id(),
                    n.state(),
                    n.role(),
                    n.leader(),
                    n.epoch(),
                    n.shard_map().borrow().as_ref().map(|m| m
                        .counts()
                        .into_iter()
                        .map(|(a, b)| (a.to_string(), b))
                        .collect::<Vec<_>>())
                );
            }
            panic!("no common map with owners {owners:?}");
        }
    }
}

fn names(nodes: &[&Cluster]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.node_id().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_form_one_cluster_and_reshard_when_a_follower_leaves() {
    let nodes = start(3).await;
    let all: Vec<&Cluster> = nodes.iter().collect();
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
    let mut rest: Vec<Cluster> = nodes.clone();
    let gone = rest.remove(follower);
    gone.stop().await;
    let survivors: Vec<&Cluster> = rest.iter().collect();
    let e2 = wait_map(&survivors, &names(&survivors)).await;
    assert!(e2 > e1, "epochs grow");

    // Both survivors agree on the cluster id minted at bootstrap.
    let cluster_ids: BTreeSet<_> = rest
        .iter()
        .map(|n| n.status().borrow().cluster_id.clone())
        .collect();
    assert_eq!(cluster_ids.len(), 1);
    for n in rest {
        n.stop().await;
    }
}
