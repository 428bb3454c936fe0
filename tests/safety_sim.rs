//! A deterministic simulation of five whole nodes: gossip and liveness on
//! in-memory networks, Raft through the in-process router, Raft logs on
//! simulated disks (kept across a crash, as a data dir is), all on one current-thread runtime whose clock is
//! paused (time advances only when every task waits, so seconds of
//! simulated time take milliseconds) and whose every random choice (the
//! library's through `clusterfunk::rng`, Tokio's `select!` order) comes from
//! the run's seed. A seed therefore replays the same run, interleaving
//! included; `a_seed_replays_exactly` checks that.
//!
//! A checker looks at every node every simulated millisecond and fails on:
//! - a shard served by two nodes at the same instant;
//! - a node whose committed epoch goes backwards;
//! - two different maps committed under one epoch;
//! - after the faults heal: no agreement on one committed map served by
//!   exactly one node per shard within [`CONVERGE`];
//! - a step-down, or a crash and restart of every node from its data dir,
//!   that moves any shard;
//! - with the pinned placement (`CF_SIM_PLACEMENT=pin`, and
//!   `a_pinned_placement_holds_under_faults`): after convergence, shard 0
//!   not on n2 while n2 has a weight.
//!
//! Faults (see [`pick`]): a node isolated; the leader and one follower cut
//! off from the other three; a one-way Raft cut; a step-down; a weight
//! change (including drains to 0), half of them while that node's Raft
//! links are slow; a node's liveness cut alone; every link
//! lossy and slow; a node frozen (everything it sends or is sent is held
//! for the pause and then delivered late); a crash and restart from the
//! data dir; a crash, removal and restart with an empty data dir; a crash
//! of every node and a restart from the data dirs; a node's liveness cut
//! while its Raft links are slow (the leader finds it dead at once while it
//! applies the map that takes its shards late); a node paused as by
//! SIGSTOP, the leader or any node, the leader sometimes after a spell in
//! which the answers to it came late and a rival campaigned (see
//! [`LeadIn`]).
//!
//! The pause: in one runtime a node's own tasks cannot be stopped, so the
//! networks stand in for it. Whatever it is sent (Raft, gossip, liveness)
//! reaches it only when it resumes, and it sends nothing meanwhile (a Raft
//! request it makes waits for the resume, where its caller's timeout has
//! usually given up); answers already on their way still reach it. Its
//! tasks keep running, but with no input its state stands still: its
//! serving set stays what it was, and its lease can only run out. So what
//! it reports at any instant of the pause is what it would report if it
//! resumed then, before reading its queued input, and the checker, which
//! keeps looking at it, sees every such instant. The checker also looks
//! right after every Raft request a node handled (not only every
//! millisecond): a lease taken with a request can be seen before the
//! entries that came with it are applied.
//!
//! Each run prints its seed. `CF_SIM_SEED=S` replays one seed,
//! `CF_SIM_SEEDS=N` runs N seeds (default 49) from `CF_SIM_BASE` (default
//! 20028; `random` for a random one), on `CF_SIM_THREADS` threads (default 2), and stops at the
//! first failing seed, printing it; `CF_SIM_FAULT=K` repeats one kind of
//! fault; `CF_SIM_LOG=clusterfunk=info` prints the nodes' logs. The long run:
//! `CF_SIM_SEEDS=10000 cargo test --release --test safety_sim -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterfunk::cluster::MemDisks;
use clusterfunk::cluster::Seams;
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::shards::{Candidate, Placement, ShardMap, ShardMapError, WeightedRebalance};
use clusterfunk::{Cluster, Config, NodeState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

const SHARDS: u32 = 64;
const NODES: usize = 5;
const STEPS: usize = 5;
/// How long after a heal every node must agree on one map served once.
const CONVERGE: Duration = Duration::from_secs(15);

struct Net {
    seams: Seams,
    gossip: MemNetwork,
    raft: Router,
    liveness: MemNetwork,
}

type Nodes = Arc<Mutex<Vec<Option<Cluster>>>>;

fn ep(c: &Cluster, name: &str) -> String {
    c.local_endpoints()[name].to_string()
}

fn addr(c: &Cluster, name: &str) -> SocketAddr {
    c.local_endpoints()[name]
}

fn config(i: usize, seed: u64, join: Option<String>) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = format!("sim{seed}");
    c.shard_count = SHARDS;
    c.management_addr = None;
    c.bootstrap_expect = 3;
    c.join = join.into_iter().collect();
    if PIN.get() {
        c.placement = std::sync::Arc::new(PinShardZero);
    }
    c
}

thread_local! {
    /// Whether this thread's runs place shards with [`PinShardZero`]
    /// (`CF_SIM_PLACEMENT=pin`, or the pinned test).
    static PIN: std::cell::Cell<bool> =
        std::cell::Cell::new(std::env::var("CF_SIM_PLACEMENT").as_deref() == Ok("pin"));
}

/// A service's own placement: shard 0 on n2 whenever n2 can own shards,
/// the rest as the built-in places them (which would put shard 0 on n0).
#[derive(Debug)]
struct PinShardZero;

impl Placement for PinShardZero {
    fn place(&self, previous: &ShardMap, nodes: &[Candidate]) -> Result<ShardMap, ShardMapError> {
        let map = WeightedRebalance.place(previous, nodes)?;
        match nodes.iter().any(|n| n.id == "n2" && n.weight > 0) {
            true => map.with_owner(0, "n2"),
            false => Ok(map),
        }
    }
}

/// What the checker saw go wrong (the first few of each kind), and a
/// trace of what every node committed and led, by simulated time.
#[derive(Default, Debug)]
struct Seen {
    overlaps: Vec<String>,
    backwards: Vec<String>,
    forks: Vec<String>,
    samples: u64,
    trace: Vec<String>,
}

fn owners_of(c: &Cluster) -> Option<(u64, Vec<Option<String>>)> {
    let map = c.shard_map().borrow().clone()?;
    let owners = (0..map.shard_count())
        .map(|s| map.owner_of(s).map(str::to_string))
        .collect();
    Some((map.epoch(), owners))
}

fn alive(nodes: &Nodes) -> Vec<Cluster> {
    nodes.lock().unwrap().iter().flatten().cloned().collect()
}

/// Looks at every node every simulated millisecond until stopped.
fn checker(nodes: Nodes, raft: &Router, start: Instant) -> (Arc<AtomicBool>, Arc<Mutex<Seen>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (flag, out) = (stop.clone(), seen.clone());
    // Also right after every Raft request a node handled: a lease it took
    // with the request counts before the entries are applied.
    let handled = raft.handled();
    tokio::spawn(async move {
        let mut last: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        let mut maps: BTreeMap<u64, Vec<Option<String>>> = BTreeMap::new();
        while !flag.load(Ordering::Relaxed) {
            look(
                &alive(&nodes),
                start,
                &mut last,
                &mut maps,
                &mut out.lock().unwrap(),
            );
            tokio::select! {
                biased;
                _ = handled.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    });
    (stop, seen)
}

/// One look at every node: overlaps, epochs going backwards, forks, and
/// the trace of what each node committed and whom it follows.
fn look(
    now: &[Cluster],
    start: Instant,
    last: &mut BTreeMap<String, (u64, Option<String>)>,
    maps: &mut BTreeMap<u64, Vec<Option<String>>>,
    v: &mut Seen,
) {
    // What each node serves at this instant: its set, if its lease holds
    // (one lease check per node: nothing runs between these calls).
    let mut by_shard: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for n in now {
        let set = n.watch_serving().borrow().clone();
        if set.iter().next().is_some_and(|s| n.is_serving(s)) {
            for s in set.iter() {
                by_shard.entry(s).or_default().push(n.node_id());
            }
        }
    }
    for (shard, serving) in by_shard {
        if serving.len() > 1 && v.overlaps.len() < 10 {
            v.overlaps.push(format!(
                "{:?}: shard {shard} served by {serving:?}",
                start.elapsed()
            ));
        }
    }
    for n in now {
        let Some((epoch, owners)) = owners_of(n) else {
            continue;
        };
        let id = n.node_id().to_string();
        let leader = n.leader();
        let prev = last.insert(id.clone(), (epoch, leader.clone()));
        if prev.as_ref().is_some_and(|p| p.0 > epoch) {
            v.backwards.push(format!("{id}: epoch {prev:?} -> {epoch}"));
        }
        if prev.as_ref() != Some(&(epoch, leader.clone())) {
            let t = start.elapsed().as_micros();
            v.trace.push(format!("{t} {id} e{epoch} {leader:?}"));
        }
        match maps.get(&epoch) {
            Some(m) if *m != owners => v.forks.push(format!("epoch {epoch}: two maps")),
            Some(_) => {}
            None => {
                maps.insert(epoch, owners);
            }
        }
    }
    v.samples += 1;
}

fn leader_of(nodes: &[Cluster]) -> Option<Cluster> {
    // The one leader every node that knows a leader names (a node that
    // has not joined Raft yet knows none).
    let ids: BTreeSet<String> = nodes.iter().filter_map(Cluster::leader).collect();
    let [id] = ids.into_iter().collect::<Vec<_>>().try_into().ok()?;
    nodes.iter().find(|n| n.node_id() == id).cloned()
}

/// Every node Operational with one committed map whose every shard has an
/// owner, every node owning its weighted share, and every shard served by
/// exactly one node.
fn converged(nodes: &[Cluster], weights: &[u32]) -> bool {
    if nodes.len() != NODES {
        return false;
    }
    let maps: BTreeSet<_> = nodes.iter().map(owners_of).collect();
    if maps.len() != 1 || nodes.iter().any(|n| n.state() != NodeState::Operational) {
        return false;
    }
    let Some(Some((_, owners))) = maps.into_iter().next() else {
        return false;
    };
    // Each node owns its weighted share (within one shard of rounding, two
    // with the pin, which moves one), so a map from before the last weight
    // change does not count.
    let total: u32 = weights.iter().sum();
    let slack = if PIN.get() { 2.0 } else { 1.0 };
    let share_ok = |n: &Cluster, w: u32| {
        let owned = owners
            .iter()
            .flatten()
            .filter(|o| *o == n.node_id())
            .count() as f64;
        (owned - f64::from(SHARDS) * f64::from(w) / f64::from(total)).abs() < slack + 1e-9
    };
    let pinned = !PIN.get() || weights[2] == 0 || owners[0].as_deref() == Some("n2");
    pinned
        && owners.iter().all(Option::is_some)
        && nodes.iter().zip(weights).all(|(n, w)| share_ok(n, *w))
        && (0..SHARDS).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1)
}

/// Each node's state, leader, epoch and shares, for a failure message.
fn describe(nodes: &[Cluster]) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .map(|n| {
            let owned: BTreeMap<String, usize> =
                owners_of(n).map_or_else(BTreeMap::new, |(_, o)| {
                    o.into_iter().fold(BTreeMap::new(), |mut m, x| {
                        *m.entry(x.unwrap_or_else(|| "-".into())).or_insert(0) += 1;
                        m
                    })
                });
            format!(
                "{} {:?} leader {:?} epoch {:?} owners {owned:?} serving {}",
                n.node_id(),
                n.state(),
                n.leader(),
                owners_of(n).map(|o| o.0),
                (0..SHARDS).filter(|s| n.is_serving(*s)).count()
            )
        })
        .collect();
    parts.join("; ")
}

/// Waits (in simulated time, at most [`CONVERGE`]) until the cluster is
/// converged and no node's committed epoch changed for a second.
async fn quiet(nodes: &Nodes, weights: &[u32]) {
    let deadline = Instant::now() + CONVERGE;
    let epochs = || -> Vec<Option<u64>> {
        alive(nodes)
            .iter()
            .map(|n| owners_of(n).map(|m| m.0))
            .collect()
    };
    let (mut last, mut since) = (epochs(), Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = epochs();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(1) && converged(&alive(nodes), weights) {
            return;
        }
    }
}

/// Sets node `n`'s weight to `w` through whichever node leads, repeating
/// until a write succeeds (within [`CONVERGE`]).
async fn settle_weight(sim: &Sim, n: usize, w: u32) -> Result<(), String> {
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline {
        let nodes = alive(&sim.nodes);
        if let Some(l) = leader_of(&nodes) {
            if l.set_weight(nodes[n].node_id(), w).await.is_ok() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "n{n}'s weight could not be set to {w} after the heal"
    ))
}

/// Waits (in simulated time) until `pred`; false after `limit`.
async fn within(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !pred() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

#[derive(Debug, Clone)]
enum Fault {
    Isolate(usize),
    LeaderWithFollower,
    OneWay(usize, usize),
    StepDown,
    /// A weight change; with `lag`, Raft to and from that node is slow
    /// meanwhile (an owner that applies its loss late).
    Weight(usize, u32, Option<Duration>),
    LivenessCut(usize),
    Lossy {
        loss: f64,
        delay: Duration,
    },
    Freeze(usize),
    Crash(usize),
    Replace(usize),
    RestartAll,
    /// A node's liveness cut while its Raft links are slow both ways by
    /// the given delay: the leader finds it dead (and moves its shards)
    /// while it still follows, and applies every entry late.
    SlowDead(usize, Duration),
    /// A node paused as by SIGSTOP for the step's hold (see the module
    /// doc); `None`: whoever leads. With a lead-in, the node leads and
    /// the pause follows a spell (see [`LeadIn`]).
    Pause {
        node: Option<usize>,
        lead_in: Option<LeadIn>,
    },
}

/// Before a leader's pause, for `spell`: every answer to it (and every
/// request to it) comes `lag` late, under openraft's 50 ms request timeout
/// so that it still counts (the leader hears of each accepted round `lag`
/// after it was accepted); and Raft between it and `rival` is cut, so a
/// rival is already campaigning when the pause starts and a new leader
/// comes as early as the voters' leader lease allows. (Even so a new
/// leader moves the paused leader's shards some 100 ms after its lease
/// ended, more than the at most 50 ms that counting a round from its
/// answer instead of its send could add.)
#[derive(Debug, Clone)]
struct LeadIn {
    lag: Duration,
    spell: Duration,
    rival: usize,
}

fn pick(rng: &mut StdRng, weights: &[u32]) -> Fault {
    // CF_SIM_FAULT=K repeats one kind: 0 isolate, 1 leader with a
    // follower, 2 one-way, 3 step-down, 4 weight, 5 liveness cut, 6 lossy,
    // 7 freeze, 8 crash, 9 replace, 10 restart all, 11 liveness cut with
    // slow Raft, 12 pause.
    let kind = std::env::var("CF_SIM_FAULT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rng.gen_range(0..13));
    let node = rng.gen_range(0..NODES);
    match kind {
        0 => Fault::Isolate(node),
        1 => Fault::LeaderWithFollower,
        2 => Fault::OneWay(node, (node + rng.gen_range(1..NODES)) % NODES),
        3 => Fault::StepDown,
        5 => Fault::LivenessCut(node),
        6 => Fault::Lossy {
            loss: rng.gen_range(0.05..0.3),
            delay: Duration::from_millis(rng.gen_range(0..40)),
        },
        7 => Fault::Freeze(node),
        8 => Fault::Crash(node),
        9 => Fault::Replace(node),
        10 => Fault::RestartAll,
        11 => Fault::SlowDead(node, Duration::from_millis(rng.gen_range(10..45))),
        12 => {
            // Half the time the leader after a lead-in, else the leader
            // or any node, straight away.
            let lead_in = rng.gen_bool(0.5).then(|| LeadIn {
                lag: Duration::from_millis(rng.gen_range(25..49)),
                spell: Duration::from_millis(rng.gen_range(400..900)),
                rival: node,
            });
            let node = (lead_in.is_none() && rng.gen_bool(0.5)).then_some(node);
            Fault::Pause { node, lead_in }
        }
        _ => {
            // Never drain every node.
            let others: u32 = (0..NODES).filter(|i| *i != node).map(|i| weights[i]).sum();
            let lo = u32::from(others == 0);
            let w = rng.gen_range(lo..3);
            let lag = rng
                .gen_bool(0.5)
                .then(|| Duration::from_millis(rng.gen_range(20..120)));
            Fault::Weight(node, w, lag)
        }
    }
}

struct Sim {
    seed: u64,
    net: Net,
    disks: MemDisks,
    nodes: Nodes,
}

impl Sim {
    fn node(&self, i: usize) -> Option<Cluster> {
        self.nodes.lock().unwrap()[i].clone()
    }

    fn join_addr(&self, except: usize) -> Option<String> {
        (0..NODES)
            .filter(|i| *i != except)
            .find_map(|i| self.node(i))
            .map(|c| ep(&c, "gossip"))
    }

    async fn start(&self, i: usize) -> Result<(), String> {
        let c = config(i, self.seed, self.join_addr(i));
        let node = Cluster::start_with(c, self.net.seams.clone())
            .await
            .map_err(|e| format!("n{i} did not start: {e}"))?;
        self.nodes.lock().unwrap()[i] = Some(node);
        Ok(())
    }

    async fn crash(&self, i: usize) {
        let node = self.nodes.lock().unwrap()[i].take();
        if let Some(n) = node {
            n.crash().await;
        }
    }

    /// Every link to and from node `i` (all three networks) held for `d`.
    fn hold(&self, n: &Cluster, others: &[Cluster], d: Duration) {
        for o in others.iter().filter(|o| o.node_id() != n.node_id()) {
            for (net, name) in [
                (&self.net.gossip, "gossip"),
                (&self.net.liveness, "liveness"),
            ] {
                net.delay(addr(n, name), addr(o, name), d);
            }
            self.net
                .raft
                .degrade(&ep(n, "raft"), &ep(o, "raft"), d, 0.0);
            self.net
                .raft
                .degrade(&ep(o, "raft"), &ep(n, "raft"), d, 0.0);
        }
    }
}

/// What one seed did: the time each step took to converge and the trace.
struct Outcome {
    converged: Vec<Duration>,
    trace: Vec<String>,
}

async fn run_seed(seed: u64) -> Result<Outcome, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let gossip = MemNetwork::new();
    let raft = Router::new();
    let liveness = MemNetwork::new();
    let disks = MemDisks::default();
    let sim = Sim {
        seed,
        net: Net {
            seams: Seams {
                gossip: Some(gossip.clone()),
                raft: Some(raft.clone()),
                liveness: Some(liveness.clone()),
                discovery: None,
                disks: Some(disks.clone()),
            },
            gossip,
            raft,
            liveness,
        },
        disks,
        nodes: Arc::new(Mutex::new(vec![None; NODES])),
    };
    for i in 0..NODES {
        sim.start(i).await?;
    }
    let mut weights = vec![1u32; NODES];
    if !within(CONVERGE, || converged(&alive(&sim.nodes), &weights)).await {
        return Err("no first map".into());
    }
    let start = Instant::now();
    let (stop, seen) = checker(sim.nodes.clone(), &sim.net.raft, start);
    let mut times = Vec::new();
    let mut log = Vec::new();
    for step in 0..STEPS {
        let fault = pick(&mut rng, &weights);
        let hold = Duration::from_millis(rng.gen_range(300..2500));
        log.push(format!("step {step}: {fault:?} for {hold:?}"));
        if std::env::var_os("CF_SIM_SEED").is_some() {
            eprintln!(
                "safety_sim: seed {seed} at {:?}: {}",
                start.elapsed(),
                log[step]
            );
        }
        if matches!(fault, Fault::StepDown | Fault::RestartAll) {
            // What these must not move is judged against a map that has
            // stopped changing: a verdict of the previous fault (a liveness
            // cut's "dead" arriving just after its heal) is not theirs.
            quiet(&sim.nodes, &weights).await;
        }
        let nodes = alive(&sim.nodes);
        let before = owners_of(&nodes[0]);
        let mut unsure = None;
        let net = &sim.net;
        match &fault {
            Fault::Isolate(i) => {
                net.raft.isolate(&ep(&nodes[*i], "raft"));
                net.gossip.isolate(addr(&nodes[*i], "gossip"));
            }
            Fault::LeaderWithFollower => {
                if let Some(l) = leader_of(&nodes) {
                    let follower = nodes.iter().find(|n| n.node_id() != l.node_id()).cloned();
                    let minority: Vec<Cluster> =
                        [Some(l), follower].into_iter().flatten().collect();
                    let ids: BTreeSet<&str> = minority.iter().map(Cluster::node_id).collect();
                    let majority: Vec<&Cluster> = nodes
                        .iter()
                        .filter(|n| !ids.contains(n.node_id()))
                        .collect();
                    for a in &minority {
                        for b in &majority {
                            net.raft.cut(&ep(a, "raft"), &ep(b, "raft"));
                        }
                    }
                    let left: Vec<SocketAddr> =
                        minority.iter().map(|n| addr(n, "gossip")).collect();
                    let right: Vec<SocketAddr> =
                        majority.iter().map(|n| addr(n, "gossip")).collect();
                    net.gossip.partition(&left, &right);
                }
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
            Fault::LivenessCut(i) => net.liveness.isolate(addr(&nodes[*i], "liveness")),
            Fault::Weight(n, w, lag) => {
                let target = nodes[*n].node_id().to_string();
                if let Some(d) = lag {
                    for o in nodes.iter().filter(|o| o.node_id() != target) {
                        net.raft
                            .degrade(&ep(&nodes[*n], "raft"), &ep(o, "raft"), *d, 0.0);
                        net.raft
                            .degrade(&ep(o, "raft"), &ep(&nodes[*n], "raft"), *d, 0.0);
                    }
                }
                // A write through a leader cut off from its quorum times
                // out and may still apply later: repeat it after the heal.
                unsure = Some((*n, *w));
                if let Some(l) = leader_of(&nodes) {
                    if l.set_weight(&target, *w).await.is_ok() {
                        weights[*n] = *w;
                        unsure = None;
                    }
                }
            }
            Fault::Lossy { loss, delay } => {
                for a in &nodes {
                    for b in nodes.iter().filter(|b| b.node_id() != a.node_id()) {
                        for name in ["gossip", "liveness"] {
                            let m = if name == "gossip" {
                                &net.gossip
                            } else {
                                &net.liveness
                            };
                            m.drop_rate(addr(a, name), addr(b, name), *loss);
                            m.delay(addr(a, name), addr(b, name), *delay);
                        }
                        net.raft
                            .degrade(&ep(a, "raft"), &ep(b, "raft"), *delay, *loss);
                    }
                }
            }
            Fault::Freeze(i) => sim.hold(&nodes[*i], &nodes, hold),
            Fault::SlowDead(i, lag) => {
                net.liveness.isolate(addr(&nodes[*i], "liveness"));
                for o in nodes.iter().filter(|o| o.node_id() != nodes[*i].node_id()) {
                    net.raft
                        .degrade(&ep(&nodes[*i], "raft"), &ep(o, "raft"), *lag, 0.0);
                    net.raft
                        .degrade(&ep(o, "raft"), &ep(&nodes[*i], "raft"), *lag, 0.0);
                }
            }
            Fault::Pause { node, lead_in } => {
                let target = match node {
                    Some(i) => Some(nodes[*i].clone()),
                    None => leader_of(&nodes),
                };
                if let Some(n) = target {
                    if let Some(l) = lead_in {
                        for o in nodes.iter().filter(|o| o.node_id() != n.node_id()) {
                            net.raft
                                .degrade(&ep(o, "raft"), &ep(&n, "raft"), l.lag, 0.0);
                        }
                        let rival = &nodes[l.rival];
                        if rival.node_id() != n.node_id() {
                            net.raft.cut(&ep(rival, "raft"), &ep(&n, "raft"));
                        }
                        tokio::time::sleep(l.spell).await;
                    }
                    let until = Instant::now() + hold;
                    net.raft.pause(&ep(&n, "raft"), until);
                    net.gossip.pause(addr(&n, "gossip"), until);
                    net.liveness.pause(addr(&n, "liveness"), until);
                }
            }
            Fault::Crash(i) | Fault::Replace(i) => sim.crash(*i).await,
            Fault::RestartAll => {
                for i in 0..NODES {
                    sim.crash(i).await;
                }
            }
        }
        tokio::time::sleep(hold).await;
        match &fault {
            Fault::Crash(i) => sim.start(*i).await?,
            Fault::Replace(i) => {
                // Removed by an operator, then back with an empty data dir.
                let id = format!("n{i}");
                let gone = |n: &Cluster| {
                    n.raft_status()
                        .is_some_and(|r| !r.voters.contains(&id) && !r.learners.contains(&id))
                };
                let out = operator(&sim, &id, false).await
                    && within(CONVERGE, || {
                        leader_of(&alive(&sim.nodes)).is_some_and(|l| gone(&l))
                    })
                    .await;
                if !out {
                    return Err(format!("step {step}: n{i} could not be removed"));
                }
                sim.disks.wipe(&id);
                // The operator's weight for the name is remembered (README).
                sim.start(*i).await?;
                if !operator(&sim, &id, true).await {
                    let view: Vec<String> = alive(&sim.nodes)
                        .iter()
                        .map(|n| {
                            let m: Vec<String> = n
                                .cluster_members()
                                .iter()
                                .map(|m| format!("{}:{:?}", m.name, m.status))
                                .collect();
                            format!("{} sees {m:?}", n.node_id())
                        })
                        .collect();
                    return Err(format!(
                        "step {step}: n{i} could not be re-admitted; {view:?}"
                    ));
                }
            }
            Fault::RestartAll => {
                for i in 0..NODES {
                    sim.start(i).await?;
                }
            }
            _ => {}
        }
        net.raft.heal();
        net.gossip.heal();
        net.liveness.heal();
        let healed = Instant::now();
        if let Some((n, w)) = unsure.take() {
            settle_weight(&sim, n, w).await?;
            weights[n] = w;
        }
        if !within(CONVERGE, || converged(&alive(&sim.nodes), &weights)).await {
            return Err(format!(
                "step {step}: no convergence within {CONVERGE:?}; {log:?}; {}",
                describe(&alive(&sim.nodes))
            ));
        }
        times.push(healed.elapsed());
        let after = owners_of(&alive(&sim.nodes)[0]);
        // A new epoch with the same owners (a weight recorded anew) moves
        // nothing; a changed owner does.
        let owners = |m: &Option<(u64, Vec<Option<String>>)>| m.as_ref().map(|(_, o)| o.clone());
        if matches!(fault, Fault::StepDown | Fault::RestartAll) && owners(&before) != owners(&after)
        {
            let moved = match (&before, &after) {
                (Some((e0, a)), Some((e1, b))) => format!(
                    "epoch {e0} -> {e1}, {} of {SHARDS} shards changed owner",
                    a.iter().zip(b).filter(|(x, y)| x != y).count()
                ),
                _ => format!("{before:?} -> {after:?}"),
            };
            return Err(format!(
                "step {step}: {fault:?} moved shards: {moved}; {log:?}"
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2)).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for n in alive(&sim.nodes) {
        n.crash().await;
    }
    if seen.samples < 100 {
        return Err(format!("the checker barely ran: {}", seen.samples));
    }
    if !seen.overlaps.is_empty() || !seen.backwards.is_empty() || !seen.forks.is_empty() {
        return Err(format!(
            "overlaps {:?}, epochs backwards {:?}, forks {:?}; {log:?}",
            seen.overlaps, seen.backwards, seen.forks
        ));
    }
    Ok(Outcome {
        converged: times,
        trace: seen.trace,
    })
}

/// Asks whoever leads to remove (`add` false) or re-admit `id` until
/// one accepts.
async fn operator(sim: &Sim, id: &str, add: bool) -> bool {
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline {
        if let Some(l) = leader_of(&alive(&sim.nodes)) {
            let done = if add {
                l.add_node(id).await
            } else {
                l.remove_node(id).await
            };
            if done.is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs one seed on a fresh paused, seeded, current-thread runtime.
/// Log stamps in simulated time (the paused clock's `Instant`), from the
/// first stamp of the process.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        write!(
            w,
            "{:>10.3?}",
            Instant::now().saturating_duration_since(start)
        )
    }
}

fn run(seed: u64) -> Result<Outcome, String> {
    // CF_SIM_LOG=<filter> (e.g. `clusterfunk=info`) prints the nodes' logs.
    if let Ok(filter) = std::env::var("CF_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_timer(SimTime)
            .with_writer(std::io::stderr)
            .try_init();
    }
    clusterfunk::rng::seed_this_thread(Some(seed));
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let rt = builder.build().map_err(|e| e.to_string())?;
    let out =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(run_seed(seed))));
    drop(rt);
    clusterfunk::rng::seed_this_thread(None);
    out.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    })
}

fn env(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_fault_schedules_never_serve_a_shard_twice() {
    let seeds: Vec<u64> = match env("CF_SIM_SEED") {
        Some(s) => vec![s],
        None => {
            // By default a fixed range that passed (a seed replays
            // exactly); CF_SIM_BASE=random explores new ones.
            let base = match std::env::var("CF_SIM_BASE").as_deref() {
                Ok("random") => rand::random::<u32>().into(),
                _ => env("CF_SIM_BASE").unwrap_or(20028),
            };
            (0..env("CF_SIM_SEEDS").unwrap_or(49))
                .map(|i| base + i)
                .collect()
        }
    };
    let threads = env("CF_SIM_THREADS").unwrap_or(2).max(1) as usize;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed: Mutex<Option<(u64, String)>> = Mutex::new(None);
    let worst = Mutex::new(Duration::ZERO);
    let began = std::time::Instant::now();
    let running: Mutex<BTreeMap<usize, (u64, std::time::Instant)>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        // A seed that spins never yields to its paused clock: fail with its
        // seed instead of hanging.
        s.spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            if done.load(Ordering::Relaxed) as usize == threads {
                return;
            }
            for (seed, began) in running.lock().unwrap().values() {
                if began.elapsed() > Duration::from_secs(120) {
                    eprintln!("safety_sim: seed {seed} ran 120 s of wall time: a livelock (replay with CF_SIM_SEED={seed})");
                    std::process::exit(1);
                }
            }
        });
        for t in 0..threads {
            let (next, done, failed, worst, running, seeds) =
                (&next, &done, &failed, &worst, &running, &seeds);
            s.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                if k >= seeds.len() || failed.lock().unwrap().is_some() {
                    done.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let seed = seeds[k];
                running
                    .lock()
                    .unwrap()
                    .insert(t, (seed, std::time::Instant::now()));
                let out = run(seed);
                running.lock().unwrap().remove(&t);
                match out {
                    Ok(o) => {
                        let max = o.converged.iter().max().copied().unwrap_or_default();
                        let mut w = worst.lock().unwrap();
                        *w = (*w).max(max);
                        eprintln!("safety_sim: seed {seed} ok, converged in {:?}", o.converged);
                    }
                    Err(e) => {
                        let mut f = failed.lock().unwrap();
                        if f.is_none() {
                            *f = Some((seed, e));
                        }
                    }
                }
            });
        }
    });
    eprintln!(
        "safety_sim: {} seeds in {:.1?}, slowest convergence after a heal {:?}",
        seeds.len(),
        began.elapsed(),
        worst.lock().unwrap()
    );
    if let Some((seed, e)) = failed.into_inner().unwrap() {
        panic!("seed {seed} failed (replay with CF_SIM_SEED={seed}): {e}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    if !cfg!(tokio_unstable) {
        eprintln!("SKIPPED a_seed_replays_exactly: built without --cfg tokio_unstable, so Tokio's select! order is not seeded");
        return;
    }
    let seed = env("CF_SIM_SEED").unwrap_or(20261205);
    let a = run(seed).expect("first run");
    let b = run(seed).expect("second run");
    assert!(a.trace.len() > 10, "too short a trace: {}", a.trace.len());
    let first_difference = a.trace.iter().zip(&b.trace).position(|(x, y)| x != y);
    assert!(
        a.trace == b.trace,
        "seed {seed} ran differently twice: {} vs {} events, first difference at {first_difference:?}: {:?} vs {:?}",
        a.trace.len(),
        b.trace.len(),
        first_difference.map(|i| &a.trace[i]),
        first_difference.map(|i| &b.trace[i]),
    );
}

/// The same faults with a service's own placement ([`PinShardZero`]):
/// every guarantee above still holds, and after each heal shard 0 is on
/// n2 (unless n2 was drained). `CF_SIM_PIN_SEEDS=N` (default 8) seeds
/// from 30028, one after another.
#[test]
fn a_pinned_placement_holds_under_faults() {
    PIN.set(true);
    let seeds = env("CF_SIM_PIN_SEEDS").unwrap_or(8);
    for seed in 30028..30028 + seeds {
        match run(seed) {
            Ok(o) => eprintln!("safety_sim: pinned seed {seed} ok, converged in {:?}", o.converged),
            Err(e) => panic!("pinned seed {seed} failed (replay with CF_SIM_PLACEMENT=pin CF_SIM_SEED={seed}): {e}"),
        }
    }
}
