//! `clusterfunk demo`: a local cluster of agent processes, with a follower
//! and a leader killed, timed from `kill -9` to "every survivor committed a
//! map without it", and restarted. The helpers here also serve the benches
//! (`bench.rs`).

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

pub(super) const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const FAIL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(super) fn scratch_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("clusterfunk-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Starts `n` agents (node1 first, the rest joining it) and waits for the
/// first map that every one of them owns part of.
pub(super) async fn form(
    lc: &mut LocalCluster,
    n: usize,
) -> anyhow::Result<(Vec<String>, BTreeMap<String, Commit>)> {
    form_within(lc, n, FORM_TIMEOUT).await
}

/// As [`form`], waiting up to `timeout` for that map (a big cluster on a
/// busy machine takes longer than the demo's minute).
pub(super) async fn form_within(
    lc: &mut LocalCluster,
    n: usize,
    timeout: Duration,
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
        .wait_commit(&all, 0, timeout, |c| owners(c).len() == n)
        .await
        .context("a map owned by every agent")?;
    Ok((all, first))
}

pub(super) fn leader_of(commits: &BTreeMap<String, Commit>) -> Option<String> {
    commits.values().filter_map(|c| c.leader.clone()).max()
}

/// How a bench takes a node down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// `kill -9`: the process is gone, its host stays up (ports closed).
    Crash,
    /// `kill -STOP`: the process is frozen (as a hung process or a cut
    /// cable looks to the others); `kill -CONT` resumes it.
    Freeze,
}

/// Takes `victim` down and waits until every other node in `alive` has
/// committed a map without it. Returns when it went down (ms since the
/// Unix epoch), the ms until the last of those commits, and the commits.
pub(super) async fn fail_and_time(
    lc: &mut LocalCluster,
    alive: &[String],
    victim: &str,
    how: Failure,
) -> anyhow::Result<(u64, u64, BTreeMap<String, Commit>)> {
    let survivors: Vec<String> = alive.iter().filter(|n| *n != victim).cloned().collect();
    let t = match how {
        Failure::Crash => lc.kill(victim).await?,
        Failure::Freeze => lc.freeze(victim, true).await?,
    };
    let commits = lc
        .wait_commit(&survivors, t, FAIL_TIMEOUT, |c| {
            !owners(c).iter().any(|o| o == victim) && c.owners.values().sum::<u32>() > 0
        })
        .await?;
    let done = commits.values().map(|c| c.t_ms).max().unwrap_or(t);
    Ok((t, done.saturating_sub(t), commits))
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
        let (_, ms_f, after_f) = fail_and_time(&mut lc, &all, &follower, Failure::Crash).await?;
        println!("every survivor committed a map without {follower} after {ms_f} ms:");
        print_map(after_f.values().next().context("no commit")?);

        let alive: Vec<String> = all.iter().filter(|n| **n != follower).cloned().collect();
        let leader = leader_of(&after_f).context("no leader")?;
        println!("\nkill -9 leader {leader}");
        let (_, ms_l, after_l) = fail_and_time(&mut lc, &alive, &leader, Failure::Crash).await?;
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
