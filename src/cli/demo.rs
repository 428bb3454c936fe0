//! `clusterfunk demo` and `clusterfunk bench failover`: a local cluster of
//! agent processes, with follower and leader kills timed from `kill -9` to
//! "every survivor committed a map without it".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clusterfunk::local::{owners, unix_ms, Commit, LocalCluster};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Keep the cluster running after the demo (until Ctrl-C).
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Follower kills and leader kills (each).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Keep the agents' logs (printed path) instead of deleting them.
    #[arg(long)]
    keep_logs: bool,
}

const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const FAIL_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn scratch_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("clusterfunk-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Starts `n` agents (node1 first, the rest joining it) and waits for the
/// first map that every one of them owns part of.
async fn form(
    lc: &mut LocalCluster,
    n: usize,
) -> anyhow::Result<(Vec<String>, BTreeMap<String, Commit>)> {
    lc.start("node1", None).await?;
    let seed = lc
        .endpoint("node1", "gossip")
        .context("node1 has no gossip address")?;
    for i in 2..=n {
        lc.start(&format!("node{i}"), Some(&seed)).await?;
    }
    let all = lc.nodes();
    let first = lc
        .wait_commit(&all, 0, FORM_TIMEOUT, |c| owners(c).len() == n)
        .await?;
    Ok((all, first))
}

fn leader_of(commits: &BTreeMap<String, Commit>) -> Option<String> {
    commits.values().filter_map(|c| c.leader.clone()).max()
}

/// Kills `victim` and returns ms until every other node in `alive` has
/// committed a map without it, with those commits.
async fn kill_and_time(
    lc: &mut LocalCluster,
    alive: &[String],
    victim: &str,
) -> anyhow::Result<(u64, BTreeMap<String, Commit>)> {
    let survivors: Vec<String> = alive.iter().filter(|n| *n != victim).cloned().collect();
    let t = lc.kill(victim).await?;
    let commits = lc
        .wait_commit(&survivors, t, FAIL_TIMEOUT, |c| {
            !owners(c).iter().any(|o| o == victim) && c.owners.values().sum::<u32>() > 0
        })
        .await?;
    let done = commits.values().map(|c| c.t_ms).max().unwrap_or(t);
    Ok((done.saturating_sub(t), commits))
}

fn print_map(c: &Commit) {
    println!(
        "  epoch {}  leader {}",
        c.epoch,
        c.leader.as_deref().unwrap_or("-")
    );
    let total: u32 = c.owners.values().sum();
    for (node, n) in &c.owners {
        let bar = "#".repeat((*n as usize * 40) / total.max(1) as usize);
        println!("  {node:<8} {n:>6}  {bar}");
    }
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "the demo needs at least 3 nodes");
    runtime()?.block_on(async move {
        let dir = scratch_dir("demo")?;
        let exe = std::env::current_exe()?;
        let shards = args.shards.to_string();
        let mut lc = LocalCluster::new(&exe, &dir, "demo", &["--shards", &shards]);
        println!("starting {} agents on 127.0.0.1 (logs in {})", args.nodes, dir.display());
        let t0 = unix_ms();
        let (all, first) = form(&mut lc, args.nodes).await?;
        let formed = first.values().map(|c| c.t_ms).max().unwrap_or(t0) - t0;
        println!("first map committed on every node {formed} ms after start:");
        print_map(first.values().next().context("no commit")?);

        let leader = leader_of(&first).context("no leader")?;
        let follower = all.iter().rev().find(|n| **n != leader).context("no follower")?.clone();
        println!("\nkill -9 follower {follower}");
        let (ms_f, after_f) = kill_and_time(&mut lc, &all, &follower).await?;
        println!("every survivor committed a map without {follower} after {ms_f} ms:");
        print_map(after_f.values().next().context("no commit")?);

        let alive: Vec<String> = all.iter().filter(|n| **n != follower).cloned().collect();
        let leader = leader_of(&after_f).context("no leader")?;
        println!("\nkill -9 leader {leader}");
        let (ms_l, after_l) = kill_and_time(&mut lc, &alive, &leader).await?;
        println!("new leader and a map without {leader} on every survivor after {ms_l} ms:");
        print_map(after_l.values().next().context("no commit")?);

        println!("\nrestarting {follower} and {leader} from their data dirs");
        let t = unix_ms();
        lc.restart(&follower).await?;
        lc.restart(&leader).await?;
        let back = lc
            .wait_commit(&all, t, FORM_TIMEOUT, |c| owners(c).len() == all.len())
            .await?;
        let ms_r = back.values().map(|c| c.t_ms).max().unwrap_or(t) - t;
        println!("both own shards again after {ms_r} ms:");
        print_map(back.values().next().context("no commit")?);

        println!("\nsummary: formed {formed} ms, follower failover {ms_f} ms, leader failover {ms_l} ms, rejoin {ms_r} ms");
        if args.keep {
            for n in &all {
                if let Some(m) = lc.endpoint(n, "metrics") {
                    println!("  {n}: status page http://{m}/  management {}", lc.endpoint(n, "management").unwrap_or_default());
                }
            }
            println!("running; Ctrl-C stops the cluster");
            super::shutdown_signal().await;
        }
        lc.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{what:<9} kills {:>3}  p50 {:>5} ms  p99 {:>5} ms  min {:>5} ms  max {:>5} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.first().copied().unwrap_or(0),
        v.last().copied().unwrap_or(0)
    );
}

pub fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "needs at least 3 nodes");
    runtime()?.block_on(async move {
        let dir = scratch_dir("failover")?;
        let exe = std::env::current_exe()?;
        let shards = args.shards.to_string();
        let mut lc = LocalCluster::new(&exe, &dir, "bench", &["--shards", &shards]);
        let (all, mut last) = form(&mut lc, args.nodes).await?;
        let (mut followers, mut leaders) = (Vec::new(), Vec::new());
        for round in 0..args.rounds * 2 {
            let leader = leader_of(&last).context("no leader")?;
            let kill_leader = round % 2 == 1;
            let victim = if kill_leader {
                leader.clone()
            } else {
                all[(round / 2) % all.len()].clone()
            };
            let victim = if !kill_leader && victim == leader {
                all.iter()
                    .find(|n| **n != leader)
                    .context("no follower")?
                    .clone()
            } else {
                victim
            };
            let (ms, _) = kill_and_time(&mut lc, &all, &victim).await?;
            if kill_leader {
                leaders.push(ms);
            } else {
                followers.push(ms);
            }
            println!(
                "round {:>2}: kill {} {victim}: {ms} ms",
                round + 1,
                if kill_leader { "leader  " } else { "follower" }
            );
            let t = unix_ms();
            lc.restart(&victim).await?;
            last = lc
                .wait_commit(&all, t, FORM_TIMEOUT, |c| owners(c).len() == all.len())
                .await?;
        }
        println!(
            "\nkill -9 -> new map committed on every survivor ({} nodes, {} shards):",
            args.nodes, args.shards
        );
        report("follower", followers);
        report("leader", leaders);
        lc.shutdown().await;
        if args.keep_logs {
            println!("logs: {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    })
}
