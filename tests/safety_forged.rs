//! Forged "port unreachable" reports never serve a shard twice.
//!
//! Five whole nodes in memory (gossip and liveness on in-memory networks,
//! Raft through the in-process router) on a paused clock. The liveness
//! network forges a "port unreachable" for every probe to one live
//! follower, so the leader's checker reports it dead within a round trip
//! while it still runs and holds its serving lease. First with everything
//! else working (the follower acknowledges the map that drops it), then
//! with its Raft links cut as well (it cannot acknowledge; the commit must
//! wait until its lease has certainly ended). Then forged refusals of the
//! leader's Raft port, which a follower takes as a sign that the leader's
//! process is gone: the leader must stay and no shard may move. A sampler
//! checks every shard on every node about every millisecond: never two
//! serving at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clusterfunk::cluster::Seams;
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::{Cluster, ClusterEvent, Config, NodeState};
use common::serving::OverlapWatch;
use common::wait::wait_until;

const NODES: usize = 5;
const SHARDS: u32 = 64;

fn ep(c: &Cluster, name: &str) -> SocketAddr {
    c.local_endpoints()[name]
}

/// `n` nodes named `prefix0`.. on `seams`, each joining the first.
async fn start(n: usize, prefix: &str, seams: &Seams) -> Vec<Cluster> {
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..n {
        let mut c = Config::local(format!("{prefix}{i}"));
        c.cluster_name = format!("{prefix}-cluster");
        c.shard_count = SHARDS;
        c.management_addr = None;
        c.bootstrap_expect = 3;
        c.join = nodes
            .first()
            .map(|n| ep(n, "gossip").to_string())
            .into_iter()
            .collect();
        nodes.push(Cluster::start_with(c, seams.clone()).await.expect("start"));
    }
    nodes
}

fn owns(c: &Cluster, node: &str) -> Option<bool> {
    let map = c.shard_map().borrow().clone()?;
    Some((0..map.shard_count()).any(|s| map.owner_of(s) == Some(node)))
}

/// Every node operational on one committed map that every node owns part
/// of.
fn converged(nodes: &[Cluster]) -> bool {
    let epochs: std::collections::BTreeSet<_> = nodes
        .iter()
        .map(|n| n.shard_map().borrow().as_ref().map(|m| m.epoch()))
        .collect();
    epochs.len() == 1
        && nodes.iter().all(|n| n.state() == NodeState::Operational)
        && nodes
            .iter()
            .all(|n| nodes.iter().all(|o| owns(n, o.node_id()) == Some(true)))
}

#[tokio::test(start_paused = true)]
async fn forged_refusals_never_serve_a_shard_twice() {
    clusterfunk::rng::seed_this_thread(Some(17));
    let (gossip, raft, liveness) = (MemNetwork::new(), Router::new(), MemNetwork::new());
    let seams = Seams {
        gossip: Some(gossip),
        raft: Some(raft.clone()),
        liveness: Some(liveness.clone()),
        ..Seams::default()
    };
    let nodes = start(NODES, "n", &seams).await;
    wait_until("first map on every node", || converged(&nodes)).await;
    let watch = OverlapWatch::start(nodes.clone());

    for cut_raft in [false, true] {
        let leader = nodes.iter().find_map(|n| n.leader()).expect("a leader");
        let victim = nodes
            .iter()
            .find(|n| n.node_id() != leader)
            .expect("a follower")
            .clone();
        let others: Vec<Cluster> = nodes
            .iter()
            .filter(|n| n.node_id() != victim.node_id())
            .cloned()
            .collect();
        liveness.forge_refusals(ep(&victim, "liveness"), true);
        if cut_raft {
            raft.isolate(&ep(&victim, "raft").to_string());
        }
        // The forged reports take effect: the others commit a map without
        // the victim, which is still running.
        wait_until("a map without the forged-dead follower", || {
            others
                .iter()
                .all(|n| owns(n, victim.node_id()) == Some(false))
        })
        .await;
        liveness.forge_refusals(ep(&victim, "liveness"), false);
        raft.heal();
        wait_until("the follower back in the map", || converged(&nodes)).await;
    }

    // Forged refusals of the leader's Raft port: every follower's calls to
    // the leader are refused (as a forged TCP reset would make them) while
    // the leader's own calls get through, a third of them lost, so the
    // followers go quiet for a few heartbeats now and then and ask whether
    // the leader is gone. They must not depose it, and no shard moves.
    let leader = nodes.iter().find_map(|n| n.leader()).expect("a leader");
    let epoch = nodes[0].shard_map().borrow().as_ref().map(|m| m.epoch());
    let leader_raft = nodes
        .iter()
        .find(|n| n.node_id() == leader)
        .map(|n| ep(n, "raft").to_string())
        .expect("leader");
    let refused = raft.refused();
    for f in nodes.iter().filter(|n| n.node_id() != leader) {
        let f = ep(f, "raft").to_string();
        raft.cut_one_way(&f, &leader_raft);
        raft.degrade(&leader_raft, &f, Duration::ZERO, 0.2);
    }
    let mut leaders = std::collections::BTreeSet::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < end {
        leaders.extend(nodes.iter().filter_map(|n| n.leader()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    raft.heal();
    assert!(
        raft.refused() > refused + 20,
        "the forged refusals were delivered ({} calls)",
        raft.refused() - refused
    );
    assert_eq!(
        leaders.into_iter().collect::<Vec<_>>(),
        vec![leader.clone()],
        "forged refusals deposed the leader"
    );
    assert_eq!(
        nodes[0].shard_map().borrow().as_ref().map(|m| m.epoch()),
        epoch,
        "a shard moved"
    );

    let samples = watch.finish().await;
    assert!(samples > 100, "the sampler ran ({samples} passes)");
    for n in nodes {
        n.crash().await;
    }
    clusterfunk::rng::seed_this_thread(None);
}

/// With closed-port reports on (a crashed process on a live host), the
/// leader reports a crashed follower dead within one probe interval and a
/// round trip, before the missed-reply path could (`(retries - 1) ×
/// interval + deadline floor` = 220 ms after the first unanswered probe).
/// Simulated time on a paused clock: the figure is exact, not a timing.
#[tokio::test(start_paused = true)]
async fn reports_of_a_closed_port_find_a_crash_within_one_interval() {
    clusterfunk::rng::seed_this_thread(Some(18));
    let liveness = MemNetwork::new();
    liveness.report_closed_ports(true);
    let seams = Seams {
        gossip: Some(MemNetwork::new()),
        raft: Some(Router::new()),
        liveness: Some(liveness),
        ..Seams::default()
    };
    let mut nodes = start(3, "c", &seams).await;
    wait_until("first map", || converged(&nodes)).await;
    let leader_id = nodes.iter().find_map(|n| n.leader()).expect("a leader");
    let leader = nodes
        .iter()
        .find(|n| n.node_id() == leader_id)
        .expect("leader")
        .clone();
    let at = nodes
        .iter()
        .position(|n| n.node_id() != leader_id)
        .expect("follower");
    let victim = nodes.remove(at);
    let name = victim.node_id().to_string();
    let mut events = leader.events();
    let crashed = tokio::time::Instant::now();
    victim.crash().await;
    let failed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(ClusterEvent::MemberFailed(n)) if n == name => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await;
    assert!(failed.is_ok(), "the leader reported the crash");
    let took = crashed.elapsed();
    let interval = Config::local("x").liveness.interval;
    assert!(
        took < interval + Duration::from_millis(10),
        "dead after {took:?}: the missed-reply path, not the report"
    );
    wait_until("a map without the crashed follower", || {
        nodes.iter().all(|n| owns(n, &name) == Some(false))
    })
    .await;
    for n in nodes {
        n.crash().await;
    }
    clusterfunk::rng::seed_this_thread(None);
}
