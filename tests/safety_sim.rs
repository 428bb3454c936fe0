//! Randomised fault schedules against five in-process nodes (gossip and
//! liveness on in-memory networks, Raft through the in-process router; an
//! isolated node keeps its liveness, so "Raft cut but liveness fine" is one
//! of the cases, and "liveness cut but Raft fine" another), with
//! a checker that samples every node's `is_serving` about every
//! millisecond throughout and fails on:
//!
//! - a shard served by two nodes at the same time;
//! - a node whose committed epoch goes backwards;
//! - two different maps committed under one epoch;
//! - after the faults heal: no agreement on one committed map served by
//!   exactly one node per shard within the deadline;
//! - a step-down that moves any shard.
//!
//! Faults: a node isolated (Raft and gossip), the leader and one follower
//! cut off from the other three, a one-way Raft cut, a step-down, a weight
//! change, a node's liveness cut alone. Each run prints its seed; `CF_SIM_SEED=S` replays one schedule
//! (timing is real, so a replay repeats the faults, not every interleaving)
//! and `CF_SIM_SEEDS=N` runs N seeds (default 2; `cargo test --release
//! --test safety_sim -- --nocapture` with a large N is the long run);
//! `CF_SIM_FAULT=K` repeats one kind of fault (see `pick`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use clusterfunk::cluster::Seams;
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::{Cluster, Config, NodeState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHARDS: u32 = 128;
const NODES: usize = 5;
const STEPS: usize = 5;

struct Net {
    seams: Seams,
    gossip: MemNetwork,
    raft: Router,
    liveness: MemNetwork,
}

fn ep(c: &Cluster, name: &str) -> String {
    c.local_endpoints()[name].to_string()
}

fn gossip_addr(c: &Cluster) -> SocketAddr {
    c.local_endpoints()["gossip"]
}

async fn start(net: &Net, cluster: &str) -> Vec<Cluster> {
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..NODES {
        let mut c = Config::local(format!("n{i}"));
        c.cluster_name = cluster.into();
        c.shard_count = SHARDS;
        c.management_addr = None;
        c.bootstrap_expect = 3;
        if let Some(first) = nodes.first() {
            c.join = vec![ep(first, "gossip")];
        }
        nodes.push(
            Cluster::start_with(c, net.seams.clone())
                .await
                .expect("start"),
        );
    }
    nodes
}

/// What the checker saw go wrong (the first few of each kind).
#[derive(Default, Debug)]
struct Violations {
    overlaps: Vec<String>,
    backwards: Vec<String>,
    forks: Vec<String>,
    samples: u64,
}

fn owners_of(c: &Cluster) -> Option<(u64, Vec<Option<String>>)> {
    let map = c.shard_map().borrow().clone()?;
    let owners = (0..map.shard_count())
        .map(|s| map.owner_of(s).map(str::to_string))
        .collect();
    Some((map.epoch(), owners))
}

/// Samples every node about every millisecond until stopped.
fn checker(
    nodes: Vec<Cluster>,
) -> (
    Arc<AtomicBool>,
    Arc<Mutex<Violations>>,
    tokio::task::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Violations::default()));
    let (flag, out) = (stop.clone(), seen.clone());
    let task = tokio::spawn(async move {
        let mut last_epoch: BTreeMap<String, u64> = BTreeMap::new();
        let mut maps: BTreeMap<u64, Vec<Option<String>>> = BTreeMap::new();
        while !flag.load(Ordering::Relaxed) {
            // One pass over the nodes per shard keeps the samples of one
            // shard microseconds apart.
            for shard in 0..SHARDS {
                let serving: Vec<&str> = nodes
                    .iter()
                    .filter(|n| n.is_serving(shard))
                    .map(|n| n.node_id())
                    .collect();
                if serving.len() > 1 {
                    let mut v = out.lock().unwrap();
                    if v.overlaps.len() < 10 {
                        v.overlaps
                            .push(format!("shard {shard} served by {serving:?}"));
                    }
                }
            }
            for n in &nodes {
                let Some((epoch, owners)) = owners_of(n) else {
                    continue;
                };
                let prev = last_epoch.insert(n.node_id().to_string(), epoch);
                if prev.is_some_and(|p| p > epoch) {
                    let mut v = out.lock().unwrap();
                    v.backwards
                        .push(format!("{}: epoch {prev:?} -> {epoch}", n.node_id()));
                }
                match maps.get(&epoch) {
                    Some(m) if *m != owners => {
                        let mut v = out.lock().unwrap();
                        v.forks.push(format!("epoch {epoch}: two maps"));
                    }
                    Some(_) => {}
                    None => {
                        maps.insert(epoch, owners);
                    }
                }
            }
            out.lock().unwrap().samples += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    (stop, seen, task)
}

fn leader_of(nodes: &[Cluster]) -> Option<&Cluster> {
    let ids: BTreeSet<Option<String>> = nodes.iter().map(|n| n.leader()).collect();
    let id = match ids.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(id)] => id.clone(),
        _ => return None,
    };
    nodes.iter().find(|n| n.node_id() == id)
}

/// Every node Operational with one committed map whose every shard has an
/// owner, every node with a weight owning shards again, and every shard
/// served by exactly one node.
fn converged(nodes: &[Cluster], weights: &[u32]) -> bool {
    let maps: BTreeSet<_> = nodes.iter().map(owners_of).collect();
    if maps.len() != 1 || nodes.iter().any(|n| n.state() != NodeState::Operational) {
        return false;
    }
    let Some(Some((_, owners))) = maps.into_iter().next() else {
        return false;
    };
    let owning: BTreeSet<&str> = owners.iter().flatten().map(String::as_str).collect();
    owners.iter().all(Option::is_some)
        && nodes
            .iter()
            .zip(weights)
            .all(|(n, w)| *w == 0 || owning.contains(n.node_id()))
        && (0..SHARDS).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1)
}

#[derive(Debug, Clone)]
enum Fault {
    Isolate(usize),
    LeaderWithFollower,
    OneWay(usize, usize),
    StepDown,
    Weight(usize, u32),
    LivenessCut(usize),
}

fn pick(rng: &mut StdRng, weights: &[u32]) -> Fault {
    // CF_SIM_FAULT=N (0 isolate, 1 leader with a follower, 2 one-way,
    // 3 step-down, 4 weight, 5 liveness cut) repeats one kind of fault.
    let kind = std::env::var("CF_SIM_FAULT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rng.gen_range(0..6));
    match kind {
        0 => Fault::Isolate(rng.gen_range(0..NODES)),
        1 => Fault::LeaderWithFollower,
        2 => {
            let a = rng.gen_range(0..NODES);
            let b = (a + rng.gen_range(1..NODES)) % NODES;
            Fault::OneWay(a, b)
        }
        3 => Fault::StepDown,
        5 => Fault::LivenessCut(rng.gen_range(0..NODES)),
        _ => {
            let n = rng.gen_range(0..NODES);
            // Never drain every node.
            let others: u32 = weights
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != n)
                .map(|(_, w)| *w)
                .sum();
            let lo = if others == 0 { 1 } else { 0 };
            Fault::Weight(n, rng.gen_range(lo..3))
        }
    }
}

async fn run_seed(seed: u64) {
    eprintln!("safety_sim: seed {seed} (replay with CF_SIM_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let gossip = MemNetwork::new();
    let raft = Router::new();
    let liveness = MemNetwork::new();
    let net = Net {
        seams: Seams {
            gossip: Some(gossip.clone()),
            raft: Some(raft.clone()),
            liveness: Some(liveness.clone()),
            discovery: None,
        },
        gossip,
        raft,
        liveness,
    };
    let nodes = start(&net, &format!("sim{seed}")).await;
    let mut weights = vec![1u32; NODES];
    common::wait::wait_until("first map", || converged(&nodes, &weights)).await;
    let (stop, seen, task) = checker(nodes.clone());
    for step in 0..STEPS {
        let fault = pick(&mut rng, &weights);
        let hold = Duration::from_millis(rng.gen_range(300..2000));
        eprintln!("safety_sim: seed {seed} step {step}: {fault:?} for {hold:?}");
        let before = owners_of(&nodes[0]);
        match &fault {
            Fault::Isolate(i) => {
                net.raft.isolate(&ep(&nodes[*i], "raft"));
                net.gossip.isolate(gossip_addr(&nodes[*i]));
            }
            Fault::LeaderWithFollower => {
                let Some(l) = leader_of(&nodes) else { continue };
                let lid = l.node_id().to_string();
                let follower = nodes.iter().find(|n| n.node_id() != lid).expect("follower");
                let minority: Vec<&Cluster> = vec![l, follower];
                let majority: Vec<&Cluster> = nodes
                    .iter()
                    .filter(|n| minority.iter().all(|m| m.node_id() != n.node_id()))
                    .collect();
                for a in &minority {
                    for b in &majority {
                        net.raft.cut(&ep(a, "raft"), &ep(b, "raft"));
                    }
                }
                let left: Vec<SocketAddr> = minority.iter().map(|n| gossip_addr(n)).collect();
                let right: Vec<SocketAddr> = majority.iter().map(|n| gossip_addr(n)).collect();
                net.gossip.partition(&left, &right);
            }
            Fault::OneWay(a, b) => {
                net.raft
                    .cut_one_way(&ep(&nodes[*a], "raft"), &ep(&nodes[*b], "raft"));
            }
            Fault::StepDown => {
                if let Some(l) = leader_of(&nodes) {
                    let _ = l.step_down().await;
                }
            }
            Fault::LivenessCut(i) => {
                // Probes to it are lost; its Raft and gossip links stay up.
                net.liveness
                    .isolate(nodes[*i].local_endpoints()["liveness"]);
            }
            Fault::Weight(n, w) => {
                let target = nodes[*n].node_id().to_string();
                if let Some(l) = leader_of(&nodes) {
                    if l.set_weight(&target, *w).await.is_ok() {
                        weights[*n] = *w;
                    }
                }
            }
        }
        tokio::time::sleep(hold).await;
        net.raft.heal();
        net.gossip.heal();
        net.liveness.heal();
        let healed = tokio::time::Instant::now();
        common::wait::wait_until(&format!("seed {seed} step {step}: convergence"), || {
            converged(&nodes, &weights)
        })
        .await;
        eprintln!(
            "safety_sim: seed {seed} step {step}: converged {:?} after healing",
            healed.elapsed()
        );
        if matches!(fault, Fault::StepDown) {
            assert_eq!(
                before,
                owners_of(&nodes[0]),
                "seed {seed} step {step}: a step-down moved shards"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    task.await.expect("checker");
    let v = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("safety_sim: seed {seed}: {} samples, {v:?}", v.samples);
    assert!(v.samples > 100, "the checker barely ran: {}", v.samples);
    assert!(
        v.overlaps.is_empty(),
        "seed {seed}: overlaps {:?}",
        v.overlaps
    );
    assert!(v.backwards.is_empty(), "seed {seed}: {:?}", v.backwards);
    assert!(v.forks.is_empty(), "seed {seed}: {:?}", v.forks);
    for n in &nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_fault_schedules_never_serve_a_shard_twice() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("CF_SIM_SEED") {
        Some(s) => vec![s],
        None => {
            let base: u64 = rand::random::<u32>().into();
            (0..env("CF_SIM_SEEDS").unwrap_or(2))
                .map(|i| base + i)
                .collect()
        }
    };
    for seed in seeds {
        run_seed(seed).await;
    }
}
