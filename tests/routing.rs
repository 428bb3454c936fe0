//! Key routing over a 3-node cluster: every key is local on exactly one
//! node and forwarded to that node's endpoint by the others.

mod common;

use clusterfunk::cluster::Seams;
use clusterfunk::routing::{Route, Routes};
use clusterfunk::{Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_key_is_served_by_exactly_one_node_and_forwarded_there() {
    let nodes = start_agents(3, Seams::default(), |i| {
        let mut c = Config::local(format!("r{i}"));
        c.cluster_name = "routing".into();
        c.shard_count = 64;
        c.management_addr = None;
        c
    })
    .await;
    for n in &nodes {
        n.set_endpoint("kv", format!("kv-of-{}:1", n.node_id()))
            .await
            .expect("endpoint");
    }
    let routes: Vec<Routes> = nodes
        .iter()
        .map(|n| Routes::new(n.cluster().clone(), "kv"))
        .collect();
    wait_until(
        "an operational cluster with every endpoint published",
        || {
            nodes.iter().all(|n| n.state() == NodeState::Operational)
                && routes.iter().all(|r| r.endpoints().len() == 3)
        },
    )
    .await;
    for k in 0..200 {
        let key = format!("key-{k}");
        let owner = nodes[0].owner_of(key.as_bytes()).expect("owner");
        let mut local = 0;
        for (node, r) in nodes.iter().zip(&routes) {
            match r.route(key.as_bytes()) {
                Route::Local { .. } => {
                    assert_eq!(node.node_id(), owner);
                    local += 1;
                }
                Route::Forward { node: to, addr, .. } => {
                    assert_eq!(to, owner);
                    assert_eq!(addr, format!("kv-of-{owner}:1"));
                }
                Route::Unavailable { reason, .. } => panic!("{key} unavailable: {reason}"),
            }
        }
        assert_eq!(local, 1, "{key} is local on exactly one node");
    }
    stop_all(&nodes).await;
}
