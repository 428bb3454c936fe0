//! Protocol edge cases in one process, with gossip on an in-memory network
//! and Raft through the in-process router so links can be cut: a node that
//! never acknowledges, a partitioned minority, and a leader that is lost
//! between Propose and Commit.

use std::collections::BTreeSet;
use std::net::SocketAddr;

mod common;

use clusterfunk::cluster::Seams;
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::{Agent, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::serving::OverlapWatch;
use common::wait::wait_until;

const SHARDS: u32 = 256;

struct Net {
    seams: Seams,
    gossip: MemNetwork,
    raft: Router,
}

fn net() -> Net {
    let gossip = MemNetwork::new();
    let raft = Router::new();
    Net {
        seams: Seams {
            gossip: Some(gossip.clone()),
            raft: Some(raft.clone()),
            ..Seams::default()
        },
        gossip,
        raft,
    }
}

fn config(i: usize) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = "faults".into();
    c.shard_count = SHARDS;
    c.management_addr = None;
    c
}

async fn start(net: &Net, n: usize) -> Vec<Agent> {
    start_agents(n, net.seams.clone(), config).await
}

fn ep(c: &Agent, name: &str) -> String {
    c.local_endpoints()[name].to_string()
}

fn gossip_addr(c: &Agent) -> SocketAddr {
    c.local_endpoints()["gossip"]
}

fn owners(c: &Agent) -> BTreeSet<String> {
    c.shard_map()
        .borrow()
        .as_ref()
        .map(|m| {
            m.counts()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(n, _)| n.to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn all_committed_with(nodes: &[&Agent], want: &BTreeSet<String>) -> bool {
    let epochs: BTreeSet<Option<u64>> = nodes.iter().map(|n| n.epoch()).collect();
    epochs.len() == 1 && nodes.iter().all(|n| owners(n) == *want)
}

fn names(nodes: &[&Agent]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.node_id().to_string()).collect()
}

fn leader_of(nodes: &[Agent]) -> &Agent {
    let id = nodes[0].leader().expect("leader");
    nodes
        .iter()
        .find(|n| n.node_id() == id)
        .expect("leader node")
}

/// Samples, until finished, that no shard is served by two nodes at once.
fn watch_single_owner(nodes: &[Agent]) -> OverlapWatch {
    OverlapWatch::start(nodes.iter().map(|n| n.cluster().clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_never_acknowledges_is_dropped_after_ack_timeout() {
    let net = net();
    let nodes = start(&net, 3).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    wait_until("first map", || all_committed_with(&all, &names(&all))).await;
    let leader = leader_of(&nodes);
    let mute = nodes
        .iter()
        .find(|n| n.node_id() != leader.node_id())
        .expect("follower");
    // The mute node still receives the log (leader -> it) but its calls to
    // the leader, acknowledgements included, fail.
    net.raft.cut_one_way(&ep(mute, "raft"), &ep(leader, "raft"));
    let before = leader.stats().await.expect("stats").ack_timeouts;
    // A fourth node joins: the proposal that adds it waits for the mute one.
    let mut c = config(3);
    c.join = vec![ep(leader, "gossip")];
    let newcomer = Agent::start_with(c, net.seams.clone())
        .await
        .expect("start n3");
    let rest: Vec<&Agent> = nodes
        .iter()
        .filter(|n| n.node_id() != mute.node_id())
        .chain([&newcomer])
        .collect();
    wait_until("a map without the mute node", || {
        all_committed_with(&rest, &names(&rest))
    })
    .await;
    let after = leader.stats().await.expect("stats").ack_timeouts;
    assert!(after > before, "the leader gave up on an acknowledgement");
    assert!(!owners(leader).contains(mute.node_id()));
    // The mute node applied the proposal that took its shards away.
    for shard in 0..SHARDS {
        assert!(!mute.is_serving(shard), "mute node still serves {shard}");
    }
    for n in nodes.iter().chain([&newcomer]) {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_minority_stops_serving_and_never_commits() {
    let net = net();
    let nodes = start(&net, 3).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    wait_until("first map", || all_committed_with(&all, &names(&all))).await;
    let overlaps = watch_single_owner(&nodes);
    let leader = leader_of(&nodes);
    let lone = nodes
        .iter()
        .find(|n| n.node_id() != leader.node_id())
        .expect("follower");
    let lone_epoch = lone.epoch();
    assert!(!lone.local_shards().is_empty());
    net.raft.isolate(&ep(lone, "raft"));
    net.gossip.isolate(gossip_addr(lone));
    // Within its lease the isolated node stops serving everything.
    wait_until("the isolated node to stop serving", || {
        (0..SHARDS).all(|s| !lone.is_serving(s))
    })
    .await;
    let majority: Vec<&Agent> = nodes
        .iter()
        .filter(|n| n.node_id() != lone.node_id())
        .collect();
    wait_until("the majority to commit without it", || {
        all_committed_with(&majority, &names(&majority))
    })
    .await;
    assert!(majority[0].epoch() > lone_epoch);
    assert_eq!(lone.epoch(), lone_epoch, "the minority never commits");
    assert_ne!(lone.state(), NodeState::Operational);
    assert!(overlaps.finish().await > 0);
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_replaces_a_proposal_the_old_one_never_committed() {
    let net = net();
    let nodes = start(&net, 4).await;
    let all: Vec<&Agent> = nodes.iter().collect();
    wait_until("first map", || all_committed_with(&all, &names(&all))).await;
    let overlaps = watch_single_owner(&nodes);
    let old = leader_of(&nodes).clone();
    let first_epoch = old.epoch().expect("epoch");
    // One follower cannot acknowledge to this leader: the next proposal
    // stays pending for ack_timeout.
    let slow = nodes
        .iter()
        .find(|n| n.node_id() != old.node_id())
        .expect("follower")
        .clone();
    net.raft.cut_one_way(&ep(&slow, "raft"), &ep(&old, "raft"));
    old.set_weight(slow.node_id(), 3).await.expect("set weight");
    wait_until("a pending proposal", || {
        nodes.iter().any(|n| n.state() == NodeState::Resharding)
    })
    .await;
    // Lose the leader between Propose and Commit.
    net.raft.isolate(&ep(&old, "raft"));
    net.gossip.isolate(gossip_addr(&old));
    let rest: Vec<&Agent> = nodes
        .iter()
        .filter(|n| n.node_id() != old.node_id())
        .collect();
    wait_until("a new leader's map without the old leader", || {
        rest.iter()
            .all(|n| n.leader().is_some_and(|l| l != old.node_id()))
            && all_committed_with(&rest, &names(&rest))
    })
    .await;
    let epoch = rest[0].epoch().expect("epoch");
    assert!(
        epoch > first_epoch + 1,
        "the pending epoch was replaced, not reused"
    );
    assert_eq!(
        old.epoch(),
        Some(first_epoch),
        "the old leader never committed"
    );
    // The weight set before the loss is part of the new map.
    let map = rest[0].shard_map().borrow().clone().expect("map");
    let heavy = map.shards_of(slow.node_id()).len();
    let light = map
        .shards_of(
            rest.iter()
                .find(|n| n.node_id() != slow.node_id())
                .expect("node")
                .node_id(),
        )
        .len();
    assert!(
        heavy > light * 2,
        "weight 3 node owns {heavy}, weight 1 owns {light}"
    );
    overlaps.finish().await;
    stop_all(&nodes).await;
}
