//! The simulated rows of `clusterfunk bench scale`: whole nodes in this one
//! process, gossip and liveness on in-memory networks, Raft through the
//! in-process router (every RPC still goes through the gRPC codec), logs on
//! simulated disks, on a paused tokio clock: time advances only when every
//! node waits, so a hundred nodes sharing two cores do not miss each
//! other's heartbeats and depose their leaders the way they did on the real
//! clock (leadership kept moving at 100 nodes). Timings are therefore
//! simulated time with instant links and free CPU: what the protocol
//! costs, not what this machine adds; CPU is CPU seconds per simulated
//! second.
//!
//! Besides the row (form, voters, commit, failover, CPU and memory per
//! node), it prints how a proposal behaves when one owner among many is
//! slow: that owner's Raft links both ways are delayed by `--slow-ms`, a
//! weight change of another node is written, and the time to commit on the
//! leader is printed with whether the slow owner was dropped (its
//! acknowledgement did not come within `ack_timeout`, 500 ms).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use clusterfunk::cluster::{MemDisks, Seams};
use clusterfunk::gossip::MemNetwork;
use clusterfunk::raft::Router;
use clusterfunk::{Cluster, Config, Role};

use super::bench_scale::{cpu_secs, proposal_bytes, rss_kib, Row};

/// What the simulated rows measure (from `bench scale`'s flags).
pub(super) struct SimArgs {
    pub shards: u32,
    pub flips: usize,
    pub kills: usize,
    pub idle_secs: f64,
    pub slow_ms: Vec<u64>,
}

const LIMIT: Duration = Duration::from_secs(120);
/// How long the simulated cluster may take to form.
const FORM_LIMIT: Duration = Duration::from_secs(600);

struct Sim {
    seams: Seams,
    raft: Router,
    shards: u32,
    nodes: Vec<Option<Cluster>>,
}

fn name(i: usize) -> String {
    format!("n{i:03}")
}

impl Sim {
    fn alive(&self) -> Vec<Cluster> {
        self.nodes.iter().flatten().cloned().collect()
    }

    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let mut c = Config::local(name(i));
        c.cluster_name = "scale-sim".into();
        c.shard_count = self.shards;
        c.management_addr = None;
        c.bootstrap_expect = 3;
        c.join = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .find_map(|(_, n)| n.as_ref())
            .map(|n| n.local_endpoints()["gossip"].to_string())
            .into_iter()
            .collect();
        let node = Cluster::start_with(c, self.seams.clone())
            .await
            .with_context(|| format!("start {}", name(i)))?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    fn leader(&self) -> Option<Cluster> {
        let alive = self.alive();
        let ids: BTreeSet<String> = alive.iter().filter_map(Cluster::leader).collect();
        let [id] = ids.into_iter().collect::<Vec<_>>().try_into().ok()?;
        alive.into_iter().find(|n| n.node_id() == id)
    }
}

/// The epoch and owners of `c`'s committed map.
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

/// Every node in `nodes` committed one map owned by exactly `owners`.
fn settled(nodes: &[Cluster], owners: &BTreeSet<String>) -> bool {
    let maps: BTreeSet<_> = nodes.iter().map(committed).collect();
    matches!(&maps.iter().collect::<Vec<_>>()[..], [Some((_, o))] if o == owners)
}

/// Where forming stands: nodes with a committed map, the most owners in
/// one, the newest epoch, and the leaders named.
fn progress(nodes: &[Cluster]) -> String {
    let maps: Vec<(u64, BTreeSet<String>)> = nodes.iter().filter_map(committed).collect();
    let leaders: BTreeSet<String> = nodes.iter().filter_map(Cluster::leader).collect();
    format!(
        "{}/{} nodes have a map, most owners {}, newest epoch {}, leaders {leaders:?}",
        maps.len(),
        nodes.len(),
        maps.iter().map(|m| m.1.len()).max().unwrap_or(0),
        maps.iter().map(|m| m.0).max().unwrap_or(0)
    )
}

/// Polls `pred` every 2 ms until it holds; the time it took, or an error
/// after [`LIMIT`].
async fn until(what: &str, mut pred: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while !pred() {
        anyhow::ensure!(t.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(t.elapsed())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub(super) fn run(n: usize, a: &SimArgs) -> anyhow::Result<Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(async {
        let mut row = Row {
            what: format!("{n} simulated"),
            proposal_bytes: proposal_bytes(n, a.shards)?,
            ..Row::default()
        };
        let gossip = MemNetwork::new();
        let liveness = MemNetwork::new();
        let raft = Router::new();
        let mut sim = Sim {
            seams: Seams {
                gossip: Some(gossip),
                raft: Some(raft.clone()),
                liveness: Some(liveness),
                discovery: None,
                disks: Some(MemDisks::default()),
            },
            raft,
            shards: a.shards,
            nodes: vec![None; n],
        };
        let result = measure(&mut sim, n, a, &mut row).await;
        for node in sim.alive() {
            node.crash().await;
        }
        if let Err(e) = result {
            row.note = format!("stopped early: {e:#}");
        }
        Ok(row)
    })
}

async fn measure(sim: &mut Sim, n: usize, a: &SimArgs, row: &mut Row) -> anyhow::Result<()> {
    let rss_before = rss_kib(std::process::id()).unwrap_or(0);
    let t0 = Instant::now();
    println!("{n} simulated: starting");
    // Three nodes bootstrap (bootstrap_expect 3); the rest join the cluster
    // they formed, as agents started one after another do. Started all at
    // once, groups of three that see no leader yet bootstrap clusters of
    // their own.
    for i in 0..3 {
        sim.start(i).await?;
    }
    let first: BTreeSet<String> = (0..3).map(name).collect();
    until("the first three nodes' map", || {
        settled(&sim.alive(), &first) && sim.leader().is_some()
    })
    .await?;
    for i in 3..n {
        sim.start(i).await?;
    }
    let all: BTreeSet<String> = (0..n).map(name).collect();
    let mut last_report = Instant::now();
    while !settled(&sim.alive(), &all) {
        anyhow::ensure!(
            t0.elapsed() < FORM_LIMIT,
            "no map over every node after {} s: {}",
            FORM_LIMIT.as_secs(),
            progress(&sim.alive())
        );
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "{n} simulated: {:>4} s: {}",
                t0.elapsed().as_secs(),
                progress(&sim.alive())
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    row.form_ms = Some(ms(t0.elapsed()));
    println!("{n} simulated: formed in {} ms", ms(t0.elapsed()));
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Idle: this whole process, per node.
    let me = std::process::id();
    let cpu0 = cpu_secs(me).context("/proc/self/stat")?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.idle_secs)).await;
    // CPU seconds per simulated second.
    let cpu = (cpu_secs(me).unwrap_or(cpu0) - cpu0) / t.elapsed().as_secs_f64() * 100.0;
    let rss = rss_kib(me).unwrap_or(0).saturating_sub(rss_before);
    row.cpu = vec![cpu / n as f64];
    row.rss_kib = vec![rss / n as u64];
    row.note = format!(
        "simulated time; CPU/RSS per node = whole process / {n} ({cpu:.0}% of one core per simulated second, {} MiB above the start)",
        rss / 1024
    );
    println!("{n} simulated: idle {}", row.note);

    let leader = sim.leader().context("no single leader")?;
    let infos = leader.node_infos().await?;
    let voters = infos
        .iter()
        .filter(|i| matches!(i.role, Role::Leader | Role::Voter))
        .count();
    let learners = infos.iter().filter(|i| i.role == Role::Learner).count();
    row.voters = Some((voters, learners));

    // Commit time: flip a follower's weight between 2 and 1.
    let target = sim
        .alive()
        .into_iter()
        .rev()
        .find(|x| x.node_id() != leader.node_id())
        .context("no follower")?;
    for i in 0..a.flips {
        let (t, prev) = flip(&leader, target.node_id(), if i % 2 == 0 { 2 } else { 1 }).await?;
        row.commit.push(ms(t.elapsed()));
        let alive = sim.alive();
        until("the map on every node", || {
            alive
                .iter()
                .all(|c| committed(c).is_some_and(|(e, _)| e > prev))
        })
        .await?;
        row.commit_all.push(ms(t.elapsed()));
    }
    println!("{n} simulated: commits {:?} ms", row.commit);

    slow_owner(sim, n, a).await?;

    // Failover: crash a follower, then the leader; restart each.
    for round in 0..a.kills {
        for kill_leader in [false, true] {
            let leader = sim.leader().context("no single leader")?;
            let victim = if kill_leader {
                leader.node_id().to_string()
            } else {
                let others: Vec<String> = all
                    .iter()
                    .filter(|x| *x != leader.node_id())
                    .cloned()
                    .collect();
                others[(round * 7 + 1) % others.len()].clone()
            };
            let i = (0..n).find(|i| name(*i) == victim).context("victim")?;
            let node = sim.nodes[i].take().context("victim runs")?;
            let t = Instant::now();
            node.crash().await;
            let rest: Vec<Cluster> = sim.alive();
            until("a map without the victim on every survivor", || {
                rest.iter().all(|c| {
                    committed(c).is_some_and(|(_, o)| !o.contains(&victim) && !o.is_empty())
                })
            })
            .await?;
            let took = ms(t.elapsed());
            println!(
                "{n} simulated: crash {} {victim}: {took} ms",
                if kill_leader { "leader" } else { "follower" }
            );
            if kill_leader {
                row.fail_leader.push(took);
            } else {
                row.fail_follower.push(took);
            }
            sim.start(i).await?;
            until("every node back in the map", || settled(&sim.alive(), &all)).await?;
        }
    }
    Ok(())
}

/// Writes `node`'s weight through `leader` and waits until the leader
/// committed a newer map; returns when the write started and the epoch
/// before it.
async fn flip(leader: &Cluster, node: &str, w: u32) -> anyhow::Result<(Instant, u64)> {
    let prev = leader.epoch().unwrap_or(0);
    let t = Instant::now();
    leader.set_weight(node, w).await?;
    until("the leader's commit", || leader.epoch().unwrap_or(0) > prev).await?;
    Ok((t, prev))
}

/// One owner among `n` has slow Raft links; a weight change of another node
/// is written. Prints how long the commit took and whether the slow owner
/// was dropped from the map.
async fn slow_owner(sim: &Sim, n: usize, a: &SimArgs) -> anyhow::Result<()> {
    let all: BTreeSet<String> = (0..n).map(name).collect();
    for (k, &delay) in a.slow_ms.iter().enumerate() {
        let leader = sim.leader().context("no single leader")?;
        let alive = sim.alive();
        let followers: Vec<&Cluster> = alive
            .iter()
            .filter(|c| c.node_id() != leader.node_id())
            .collect();
        let slow = followers[(k * 13 + 3) % followers.len()].clone();
        let other = followers[(k * 13 + 4) % followers.len()].clone();
        let ep = |c: &Cluster| c.local_endpoints()["raft"].to_string();
        let d = Duration::from_millis(delay);
        for o in alive.iter().filter(|o| o.node_id() != slow.node_id()) {
            sim.raft.degrade(&ep(&slow), &ep(o), d, 0.0);
            sim.raft.degrade(&ep(o), &ep(&slow), d, 0.0);
        }
        // Three weight changes of another node while the owner stays slow.
        let mut took = Vec::new();
        let mut kept = Vec::new();
        for w in [2, 1, 2] {
            let (t, _) = flip(&leader, other.node_id(), w).await?;
            took.push(ms(t.elapsed()));
            kept.push(committed(&leader).is_some_and(|(_, o)| o.contains(slow.node_id())));
        }
        println!(
            "{n} simulated: one slow owner ({delay} ms each way on Raft), 3 weight changes of another node: committed on the leader after {took:?} ms; slow owner in each committed map: {kept:?}"
        );
        sim.raft.heal();
        flip(&leader, other.node_id(), 1).await?;
        until("every node back in the map", || settled(&sim.alive(), &all)).await?;
    }
    Ok(())
}
