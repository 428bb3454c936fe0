//! Pluggable placement on in-process clusters over loopback: a strategy
//! that pins shard 0 to a named node is honoured (and keeps being honoured
//! when a node leaves), and a strategy that returns an invalid map is
//! refused: the built-in weighted rebalance places that map instead, so
//! every shard still has one owner, and the refusal is counted.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use clusterfunk::cluster::Seams;
use clusterfunk::shards::{Candidate, Placement, ShardMap, ShardMapError, WeightedRebalance};
use clusterfunk::{Agent, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until;

const SHARDS: u32 = 32;

/// Shard 0 on `node` whenever it can own shards; otherwise the built-in.
#[derive(Debug)]
struct PinShardZero {
    node: String,
}

impl Placement for PinShardZero {
    fn place(&self, previous: &ShardMap, nodes: &[Candidate]) -> Result<ShardMap, ShardMapError> {
        let map = WeightedRebalance.place(previous, nodes)?;
        if nodes.iter().any(|n| n.id == self.node && n.weight > 0) {
            map.with_owner(0, &self.node)
        } else {
            Ok(map)
        }
    }

    fn name(&self) -> &str {
        "pin-shard-zero"
    }
}

/// Leaves every shard unassigned: never a valid map.
#[derive(Debug)]
struct Broken;

impl Placement for Broken {
    fn place(&self, previous: &ShardMap, _: &[Candidate]) -> Result<ShardMap, ShardMapError> {
        ShardMap::new(previous.shard_count())
    }
}

fn config(i: usize, cluster: &str, placement: Arc<dyn Placement>) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = cluster.into();
    c.shard_count = SHARDS;
    c.placement = placement;
    c
}

/// Every node committed the same map, every shard owned by one of
/// `owners` (all of them owning some), each served by exactly one node.
fn settled(nodes: &[&Agent], owners: &[&str]) -> Option<Arc<ShardMap>> {
    let maps: BTreeSet<Option<u64>> = nodes.iter().map(|n| n.epoch()).collect();
    if maps.len() != 1 || nodes.iter().any(|n| n.state() != NodeState::Operational) {
        return None;
    }
    let map = nodes[0].shard_map().borrow().clone()?;
    let owning: BTreeSet<&str> = map
        .counts()
        .into_iter()
        .filter(|c| c.1 > 0)
        .map(|c| c.0)
        .collect();
    let all_owned = (0..SHARDS).all(|s| map.owner_of(s).is_some());
    let served_once = (0..SHARDS).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1);
    (all_owned && served_once && owning == owners.iter().copied().collect()).then_some(map)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_shard_stays_on_its_node() {
    let pin: Arc<dyn Placement> = Arc::new(PinShardZero { node: "n2".into() });
    let nodes = start_agents(3, Seams::default(), |i| config(i, "pin", pin.clone())).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    wait_until("a map with shard 0 on n2", || {
        settled(&all, &["n0", "n1", "n2"]).is_some_and(|m| m.owner_of(0) == Some("n2"))
    })
    .await;
    // The built-in alone would have given shard 0 to n0 (lowest id first).
    let builtin = clusterfunk::shards::rebalance(
        &ShardMap::new(SHARDS).expect("map"),
        &[("n0", 1), ("n1", 1), ("n2", 1)],
    )
    .expect("rebalance");
    assert_eq!(builtin.owner_of(0), Some("n0"));

    // n0 leaves: the next map still pins shard 0 to n2.
    let (leaving, rest) = nodes.split_first().expect("nodes");
    let leader_left = leaving.leader().as_deref() == Some(leaving.node_id());
    leaving.stop().await;
    let rest: Vec<&Agent> = rest.iter().collect();
    wait_until("a map of n1 and n2 with shard 0 on n2", || {
        settled(&rest, &["n1", "n2"]).is_some_and(|m| m.owner_of(0) == Some("n2"))
    })
    .await;
    let leader = rest
        .iter()
        .find(|n| n.leader().as_deref() == Some(n.node_id()))
        .expect("a leader");
    let stats = leader.stats().await.expect("stats");
    assert_eq!(stats.placement_refused, 0, "leader left: {leader_left}");
    stop_all(&nodes[1..]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_placement_falls_back_to_the_builtin() {
    let broken: Arc<dyn Placement> = Arc::new(Broken);
    let nodes = start_agents(3, Seams::default(), |i| config(i, "broken", broken.clone())).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    wait_until("a complete map despite the broken strategy", || {
        settled(&all, &["n0", "n1", "n2"]).is_some()
    })
    .await;
    let leader_id = nodes[0].leader().expect("leader");
    let leader = nodes
        .iter()
        .find(|n| n.node_id() == leader_id)
        .expect("leader");
    assert!(leader.stats().await.expect("stats").placement_refused >= 1);
    stop_all(&nodes).await;
}
