//! `clusterfunk bench scale`: how a cluster behaves as it grows, measured on
//! this machine.
//!
//! For each size of a local cluster of agent processes (`--nodes`, default
//! 5, 25 and 50) it forms the cluster, then prints:
//!
//! - `form`: first agent started → a map every agent owns part of,
//!   committed on every agent;
//! - `voters`: voters / learners as the leader lists them (at most 5 voters);
//! - `commit`: a weight change written through the leader → the new map
//!   committed on the leader (`propose→commit`: the leader's own
//!   `map_proposed` → `map_committed`, i.e. every owner's acknowledgement),
//!   and → committed on every agent (`all`), p50 / p99;
//! - `failover`: `kill -9` of a follower and of the leader → a map without it
//!   committed on every survivor, p50 / p99 (few samples: p99 is the max);
//! - idle CPU (% of one core, from `/proc/PID/stat` utime + stime over
//!   `--idle-secs`) and RSS (`/proc/PID/status` VmRSS) per agent: mean and
//!   max, and the leader's own;
//! - bytes per epoch: the encoded map of one proposal, and what the leader
//!   sends for one epoch (proposal + commit entry to every other member).
//!
//! Then the same cluster, in one process on in-memory networks
//! (`bench_sim.rs`), at `--sim-nodes` (default 100 and 250), and the
//! replication cost of a map at 10,000 and 100,000 shards.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clusterfunk::local::{owners, unix_ms, LocalCluster};
use clusterfunk::management::types::NodeFilter;
use clusterfunk::management::Client;
use clusterfunk::shards::{rebalance, ShardMap};

use super::demo::{fail_and_time, leader_of, runtime, scratch_dir, Failure, FORM_TIMEOUT};

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Cluster sizes to run as agent processes (comma-separated; the bare
    /// flag skips them).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [5, 25, 50])]
    nodes: Vec<usize>,
    /// Cluster sizes to run in one process on in-memory networks (the bare
    /// flag skips them).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [100, 250])]
    sim_nodes: Vec<usize>,
    /// Weight changes timed per cluster.
    #[arg(long, default_value_t = 10)]
    flips: usize,
    /// Failover rounds per cluster (each kills a follower and the leader).
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Window over which idle CPU is measured.
    #[arg(long, default_value_t = 10.0)]
    idle_secs: f64,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Delays (ms) of one slow owner's Raft links in the simulated
    /// slow-owner test (empty skips it).
    #[arg(long, value_delimiter = ',', default_values_t = [20, 100, 2000])]
    slow_ms: Vec<u64>,
    /// Extra agent flags, e.g. `--agent-arg=--lease-ms --agent-arg=150`.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    agent_args: Vec<String>,
}

/// One row of the scale table. `None`: not measured (said why in `note`).
#[derive(Debug, Default, Clone)]
pub(super) struct Row {
    pub what: String,
    pub form_ms: Option<u64>,
    pub voters: Option<(usize, usize)>,
    pub commit: Vec<u64>,
    pub commit_all: Vec<u64>,
    pub fail_follower: Vec<u64>,
    pub fail_leader: Vec<u64>,
    /// Per node: idle CPU % of one core, RSS KiB.
    pub cpu: Vec<f64>,
    pub rss_kib: Vec<u64>,
    pub leader_cpu: Option<f64>,
    pub leader_rss_kib: Option<u64>,
    pub proposal_bytes: usize,
    pub note: String,
}

/// CPU ticks per second of `/proc/PID/stat`.
fn clock_ticks() -> f64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf reads a constant of the running system.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            return t as f64;
        }
    }
    100.0
}

/// utime + stime of a process, in seconds (`/proc/PID/stat`).
pub(super) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// VmRSS of a process, in KiB (`/proc/PID/status`).
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Total size of the files under `dir`, in bytes.
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn p50_p99(v: &[u64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    format!("{}/{}", percentile(&v, 0.5), percentile(&v, 0.99))
}

fn mean_max_f(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let max = v.iter().cloned().fold(0.0, f64::max);
    format!("{mean:.1}/{max:.1}")
}

fn mean_max_mib(v: &[u64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1024.0;
    let max = *v.iter().max().unwrap_or(&0) as f64 / 1024.0;
    format!("{mean:.1}/{max:.1}")
}

/// What the leader proposes when one of `nodes` equal owners of `shards`
/// shards goes from weight 1 to 2 (the bench's weight changes): the patch
/// against the committed map, or the whole map where that is smaller, in
/// bytes.
pub(super) fn proposal_bytes(nodes: usize, shards: u32) -> anyhow::Result<usize> {
    let (before, after) = weight_change(nodes, shards)?;
    Ok(after.encode_patch(&before)?.len().min(after.encode().len()))
}

/// A sample map and the one a weight change of its first node (1 -> 2)
/// makes of it.
fn weight_change(nodes: usize, shards: u32) -> anyhow::Result<(ShardMap, ShardMap)> {
    let before = sample_map(nodes, shards)?;
    let live: Vec<(String, u32)> = (0..nodes)
        .map(|i| (format!("node{i}"), if i == 0 { 2 } else { 1 }))
        .collect();
    let after = rebalance(&before, &live)?;
    Ok((before, after))
}

fn sample_map(nodes: usize, shards: u32) -> anyhow::Result<ShardMap> {
    let live: Vec<(String, u32)> = (0..nodes).map(|i| (format!("node{i}"), 1)).collect();
    Ok(rebalance(&ShardMap::new(shards)?, &live)?)
}

/// Bytes the leader sends for one weight-change epoch: three log entries
/// (the registry write, the proposal of `map` bytes, the commit) to
/// each of the `nodes - 1` other members. Per-entry framing (log id,
/// protobuf tags) is counted as 32 bytes, the registry write as 64.
pub(super) fn epoch_bytes(nodes: usize, map: usize) -> u64 {
    ((map + 32) + (64 + 32) + 32) as u64 * nodes.saturating_sub(1) as u64
}

pub(super) fn human(b: u64) -> String {
    match b {
        b if b >= 10 << 20 => format!("{:.0} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 10 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "\n{:<16} {:>7} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "cluster",
        "form",
        "voters",
        "commit",
        "commit all",
        "fail foll.",
        "fail lead.",
        "idle CPU%",
        "RSS MiB",
        "ldr CPU%",
        "ldr MiB",
        "proposal",
        "sent/epoch"
    );
    println!(
        "{:<16} {:>7} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "",
        "ms",
        "+learn.",
        "p50/p99 ms",
        "p50/p99 ms",
        "p50/p99 ms",
        "p50/p99 ms",
        "mean/max",
        "mean/max",
        "",
        "",
        "bytes",
        "by leader"
    );
    for r in rows {
        let n: usize = r.voters.map_or(0, |(v, l)| v + l);
        println!(
            "{:<16} {:>7} {:>7} {:>11} {:>11} {:>11} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
            r.what,
            r.form_ms.map_or("-".into(), |v| v.to_string()),
            r.voters.map_or("-".into(), |(v, l)| format!("{v}+{l}")),
            p50_p99(&r.commit),
            p50_p99(&r.commit_all),
            p50_p99(&r.fail_follower),
            p50_p99(&r.fail_leader),
            mean_max_f(&r.cpu),
            mean_max_mib(&r.rss_kib),
            r.leader_cpu.map_or("-".into(), |c| format!("{c:.1}")),
            r.leader_rss_kib
                .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            human(r.proposal_bytes as u64),
            if n > 0 {
                human(epoch_bytes(n, r.proposal_bytes))
            } else {
                "-".into()
            },
        );
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("  {}: {}", r.what, r.note);
    }
}

/// Replication cost of one epoch at larger maps (computed from the
/// encoding, not measured on a cluster).
fn print_cost() -> anyhow::Result<()> {
    println!(
        "\nreplication cost of one epoch (computed from the encodings; a proposal carries the patch when it is smaller than the map):"
    );
    println!(
        "  {:>8} {:>6} {:>10} {:>10} {:>12} {:>14} {:>20} {:>12}",
        "shards",
        "nodes",
        "map",
        "map lz4",
        "churned lz4",
        "full sends",
        "patch (moved)",
        "patch sends"
    );
    for shards in [10_000u32, 100_000] {
        for nodes in [5usize, 100] {
            let (before, after) = weight_change(nodes, shards)?;
            let map = before.encode();
            let lz4 = lz4_flex::compress_prepend_size(&map).len();
            let moved = clusterfunk::shards::delta(&before, &after)?.moved;
            let delta = after.encode_patch(&before)?.len();
            println!(
                "  {:>8} {:>6} {:>10} {:>10} {:>12} {:>14} {:>20} {:>12}",
                shards,
                nodes,
                human(map.len() as u64),
                human(lz4 as u64),
                human(
                    lz4_flex::compress_prepend_size(&churned(before.clone(), nodes)?.encode()).len()
                        as u64
                ),
                human(epoch_bytes(nodes, map.len())),
                format!("{} ({})", human(delta as u64), moved),
                human(epoch_bytes(nodes, delta)),
            );
        }
    }
    Ok(())
}

/// `map` after 20 failures and rejoins of single nodes (minimal moves
/// scatter the owners, so a long-lived map compresses worse than a fresh
/// one, whose owners are in long runs).
fn churned(mut map: ShardMap, nodes: usize) -> anyhow::Result<ShardMap> {
    let all: Vec<(String, u32)> = (0..nodes).map(|i| (format!("node{i}"), 1)).collect();
    for r in 0..20 {
        let gone = (r * 7 + 3) % nodes;
        let without: Vec<(String, u32)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, n)| n.clone())
            .collect();
        map = rebalance(&map, &without)?;
        map = rebalance(&map, &all)?;
    }
    Ok(map)
}

pub fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in &args.nodes {
        anyhow::ensure!(n >= 3, "--nodes: each size needs at least 3 nodes");
        let started = unix_ms();
        let row = match runtime()?.block_on(processes(&args, n)) {
            Ok(r) => r,
            Err(e) => Row {
                what: format!("{n} processes"),
                proposal_bytes: proposal_bytes(n, args.shards)?,
                note: format!(
                    "failed after {} s: {e:#}",
                    unix_ms().saturating_sub(started) / 1000
                ),
                ..Row::default()
            },
        };
        print_table(std::slice::from_ref(&row));
        rows.push(row);
    }
    for &n in &args.sim_nodes {
        anyhow::ensure!(n >= 3, "--sim-nodes: each size needs at least 3 nodes");
        let row = super::bench_sim::run(n, &args.sim())?;
        print_table(std::slice::from_ref(&row));
        rows.push(row);
    }
    println!("\n=== scale table ({} shards) ===", args.shards);
    print_table(&rows);
    println!(
        "  commit: weight change written -> committed on the leader; commit all: -> on every node;\n  \
         fail: kill (crash) -> map without it committed on every survivor; p99 of few samples is the max;\n  \
         CPU/RSS: agent processes from /proc; simulated rows: the whole process divided by the nodes;\n  \
         proposal: patch of a one-node weight change; sent/epoch: registry write + proposal + commit, to every other member"
    );
    print_cost()?;
    Ok(())
}

impl ScaleArgs {
    fn sim(&self) -> super::bench_sim::SimArgs {
        super::bench_sim::SimArgs {
            shards: self.shards,
            flips: self.flips,
            kills: self.kills,
            idle_secs: self.idle_secs,
            slow_ms: self.slow_ms.clone(),
        }
    }
}

/// Runs one cluster of `n` agent processes and measures its row.
async fn processes(args: &ScaleArgs, n: usize) -> anyhow::Result<Row> {
    let mut row = Row {
        what: format!("{n} processes"),
        proposal_bytes: proposal_bytes(n, args.shards)?,
        ..Row::default()
    };
    let dir = scratch_dir(&format!("scale{n}"))?;
    let exe = std::env::current_exe()?;
    let shards = args.shards.to_string();
    let mut extra = vec!["--shards", shards.as_str()];
    extra.extend(args.agent_args.iter().map(String::as_str));
    let mut lc = LocalCluster::new(&exe, &dir, "scale", &extra);
    let result = measure(&mut lc, args, n, &mut row).await;
    lc.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        row.note = format!("stopped early: {e:#}");
    }
    Ok(row)
}

async fn measure(
    lc: &mut LocalCluster,
    args: &ScaleArgs,
    n: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let t0 = unix_ms();
    println!("{n} processes: starting");
    let (all, first) = super::demo::form_within(lc, n, Duration::from_secs(300)).await?;
    row.form_ms = Some(first.values().map(|c| c.t_ms).max().unwrap_or(t0) - t0);
    println!("{n} processes: formed in {} ms", row.form_ms.unwrap_or(0));
    // Let the formation settle (the last joins, the voter set).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut leader = leader_of(&first).context("no leader")?;

    // Idle CPU and RSS per agent.
    let pids: BTreeMap<String, u32> = all
        .iter()
        .filter_map(|node| Some((node.clone(), lc.pid(node)?)))
        .collect();
    let before: BTreeMap<&String, f64> = pids
        .iter()
        .filter_map(|(node, pid)| Some((node, cpu_secs(*pid)?)))
        .collect();
    let t = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
    let secs = t.elapsed().as_secs_f64();
    for (node, pid) in &pids {
        let (Some(a), Some(b)) = (before.get(node), cpu_secs(*pid)) else {
            continue;
        };
        let pct = (b - a) / secs * 100.0;
        row.cpu.push(pct);
        let rss = rss_kib(*pid).unwrap_or(0);
        row.rss_kib.push(rss);
        if *node == leader {
            row.leader_cpu = Some(pct);
            row.leader_rss_kib = Some(rss);
        }
    }
    println!(
        "{n} processes: idle CPU % mean/max {}, RSS MiB mean/max {}",
        mean_max_f(&row.cpu),
        mean_max_mib(&row.rss_kib)
    );

    // Voters and learners as the leader lists them.
    let client = mgmt(lc, &leader).await?;
    let nodes = client.nodes(&NodeFilter::default()).await?;
    let voters = nodes
        .iter()
        .filter(|e| e.raft_role == "voter" || e.raft_role == "leader")
        .count();
    let learners = nodes.iter().filter(|e| e.raft_role == "learner").count();
    row.voters = Some((voters, learners));

    // Commit time: flip a follower's weight between 2 and 1.
    let target = all
        .iter()
        .rev()
        .find(|x| **x != leader)
        .context("no follower")?
        .clone();
    let mut epoch = first.values().map(|c| c.epoch).max().unwrap_or(0);
    for node in &all {
        epoch = epoch.max(lc.commits(node).last().map_or(0, |c| c.epoch));
    }
    for i in 0..args.flips {
        let w = if i % 2 == 0 { 2 } else { 1 };
        let t = unix_ms();
        set_weight(&client, &target, w).await?;
        let prev = epoch;
        let done = lc
            .wait_commit(&all, t, FORM_TIMEOUT, |c| c.epoch > prev)
            .await?;
        epoch = done.values().map(|c| c.epoch).max().unwrap_or(prev);
        row.commit_all
            .push(done.values().map(|c| c.t_ms).max().unwrap_or(t) - t);
        if let Some(c) = done.get(&leader) {
            row.commit.push(c.t_ms.saturating_sub(t));
        }
    }
    println!(
        "{n} processes: commit p50/p99 {} ms, on all {} ms",
        p50_p99(&row.commit),
        p50_p99(&row.commit_all)
    );
    drop(client);

    // Failover: kill -9 a follower, then the leader; restart each.
    let mut last = first;
    for round in 0..args.kills {
        for kill_leader in [false, true] {
            if let Some(l) = leader_of(&last) {
                leader = l;
            }
            let victim = if kill_leader {
                leader.clone()
            } else {
                let others: Vec<&String> = all.iter().filter(|x| **x != leader).collect();
                others[round % others.len()].clone()
            };
            let (_, ms, _) = fail_and_time(lc, &all, &victim, Failure::Crash).await?;
            println!(
                "{n} processes: kill -9 {} {victim}: {ms} ms",
                if kill_leader { "leader" } else { "follower" }
            );
            if kill_leader {
                row.fail_leader.push(ms);
            } else {
                row.fail_follower.push(ms);
            }
            let t = unix_ms();
            lc.restart(&victim).await?;
            last = lc
                .wait_commit(&all, t, FORM_TIMEOUT, |c| owners(c).len() == all.len())
                .await?;
        }
    }
    Ok(())
}

/// Writes `node`'s weight through `client`, retrying for up to 30 s while
/// there is no leader (an election under load); returns the retries.
pub(super) async fn set_weight(client: &Client, node: &str, w: u32) -> anyhow::Result<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    loop {
        match client.set_weight(node, w).await {
            Ok(_) => return Ok(retries),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "set weight: retrying");
                retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("set weight"),
        }
    }
}

async fn mgmt(lc: &LocalCluster, node: &str) -> anyhow::Result<Client> {
    let addr = lc
        .endpoint(node, "management")
        .with_context(|| format!("{node} has no management endpoint"))?;
    Ok(Client::connect(&addr, None, None).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_figures_of_this_process() {
        let me = std::process::id();
        assert!(cpu_secs(me).is_some_and(|s| s >= 0.0));
        assert!(rss_kib(me).is_some_and(|k| k > 0));
    }

    #[test]
    fn dir_bytes_counts_nested_files() {
        let dir = std::env::temp_dir().join(format!("cf-dir-bytes-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("a/y"), [0u8; 32]).unwrap();
        assert_eq!(dir_bytes(&dir), 42);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_map_costs_a_byte_per_shard_below_128_nodes() {
        let b = sample_map(100, 100_000).unwrap().encode().len();
        assert!((100_000..103_000).contains(&b), "{b}");
        assert_eq!(epoch_bytes(1, b), 0);
        // A weight change moves about 1% of the shards: the patch is small.
        let p = proposal_bytes(100, 100_000).unwrap();
        assert!(p * 10 < b, "patch {p} bytes, map {b}");
    }
}
