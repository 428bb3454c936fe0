//! `clusterfunk bench growth`: does a long-lived cluster stay flat?
//!
//! Forms a small local cluster of agent processes with sled data dirs,
//! then flips one follower's weight between 2 and 1 `--epochs` times, each
//! time waiting until the new map is committed (every flip is a registry
//! write, a proposal carrying the full map and a commit: three log entries).
//! Every `--every` epochs and at the end it prints, per agent, the size of
//! its data dir and its RSS (`/proc/PID/status` VmRSS). With snapshots every
//! 1000 entries and the log purged behind them, both should level off
//! after the first few thousand entries rather than grow with the epochs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clusterfunk::local::LocalCluster;
use clusterfunk::management::types::EventKind;
use clusterfunk::management::Client;

use super::bench_scale::{dir_bytes, human, percentile, rss_kib, set_weight};
use super::demo::{form, leader_of, runtime, scratch_dir};

#[derive(clap::Args)]
pub struct GrowthArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Weight flips (each one committed epoch).
    #[arg(long, default_value_t = 10_000)]
    epochs: usize,
    /// Print the sizes every this many epochs.
    #[arg(long, default_value_t = 1000)]
    every: usize,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Keep the data dirs and logs (printed path) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

/// Data dir bytes and RSS KiB of every agent.
type Sizes = BTreeMap<String, (u64, u64)>;

fn sizes(lc: &LocalCluster, dir: &Path, all: &[String]) -> Sizes {
    all.iter()
        .map(|n| {
            let rss = lc.pid(n).and_then(rss_kib).unwrap_or(0);
            (n.clone(), (dir_bytes(&dir.join(n)), rss))
        })
        .collect()
}

fn print_sizes(label: &str, s: &Sizes, extra: &str) {
    let cells: Vec<String> = s
        .iter()
        .map(|(n, (d, r))| format!("{n} {:>9} {:>6.1} MiB", human(*d), *r as f64 / 1024.0))
        .collect();
    println!("{label:>12}  {}{extra}", cells.join("  |  "));
}

pub fn growth(args: GrowthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "needs at least 3 nodes");
    anyhow::ensure!(args.every > 0, "--every must be positive");
    runtime()?.block_on(async move {
        let dir = scratch_dir("growth")?;
        let exe = std::env::current_exe()?;
        let shards = args.shards.to_string();
        let mut lc = LocalCluster::new(&exe, &dir, "growth", &["--shards", &shards]);
        let result = run(&mut lc, &dir, &args).await;
        lc.shutdown().await;
        if args.keep {
            println!("data dirs and logs: {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    })
}

async fn run(lc: &mut LocalCluster, dir: &Path, args: &GrowthArgs) -> anyhow::Result<()> {
    let (all, first) = form(lc, args.nodes).await?;
    // Let the formation settle (the last joins, the voter set).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = leader_of(&first).context("no leader")?;
    let target = all
        .iter()
        .rev()
        .find(|n| **n != leader)
        .context("no follower")?
        .clone();
    // Writes go through any node to the leader; commits are watched on the
    // same node, so a leader change does not lose the bench its handle.
    let via = all.first().context("no node")?.clone();
    let addr = lc.endpoint(&via, "management").context("no management")?;
    let client = Client::connect(&addr, None, None).await?;
    let mut events = client.watch_events(false).await?;
    let mut epoch = client.shards(false).await?.epoch;
    let epoch0 = epoch;
    println!(
        "{} agents (leader {leader}), {} shards; flipping {target}'s weight {} times (writes and commits seen through {via})",
        args.nodes, args.shards, args.epochs
    );
    let start = sizes(lc, dir, &all);
    print_sizes("start", &start, "");
    let mut took = Vec::with_capacity(args.epochs);
    let (mut retries, mut leader_changes) = (0, 0);
    let t_all = Instant::now();
    let mut t_block = Instant::now();
    for i in 1..=args.epochs {
        let w = if i % 2 == 1 { 2 } else { 1 };
        let t = Instant::now();
        retries += set_weight(&client, &target, w)
            .await
            .with_context(|| format!("epoch {i}"))?;
        let prev = epoch;
        while epoch <= prev {
            let Ok(ev) = tokio::time::timeout(Duration::from_secs(30), events.next()).await else {
                // No event for 30 s: ask once, then give up.
                epoch = epoch.max(client.shards(false).await?.epoch);
                anyhow::ensure!(epoch > prev, "epoch {i}: no commit within 30 s");
                break;
            };
            let ev = ev.context("event stream ended")??;
            match ev.kind {
                EventKind::MapCommitted => epoch = epoch.max(ev.epoch),
                EventKind::LeaderChanged => leader_changes += 1,
                // Events were skipped: ask for the committed epoch.
                EventKind::Gap => epoch = epoch.max(client.shards(false).await?.epoch),
                _ => {}
            }
        }
        took.push(t.elapsed().as_micros() as u64);
        if i % args.every == 0 || i == args.epochs {
            let rate = args.every as f64 / t_block.elapsed().as_secs_f64();
            t_block = Instant::now();
            print_sizes(
                &format!("{i}"),
                &sizes(lc, dir, &all),
                &format!("  | {rate:.0} epochs/s, epoch {epoch}"),
            );
        }
    }
    let end = sizes(lc, dir, &all);
    took.sort_unstable();
    println!(
        "\n{} weight flips ({} epochs) in {:.1} s; write -> committed p50 {:.1} ms, p99 {:.1} ms; writes retried (no leader) {retries}, leader changes seen {leader_changes}",
        args.epochs,
        epoch - epoch0,
        t_all.elapsed().as_secs_f64(),
        percentile(&took, 0.5) as f64 / 1000.0,
        percentile(&took, 0.99) as f64 / 1000.0
    );
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12}",
        "agent", "data start", "data end", "RSS start", "RSS end"
    );
    for (n, (d0, r0)) in &start {
        let (d1, r1) = end.get(n).copied().unwrap_or_default();
        println!(
            "{n:<8} {:>12} {:>12} {:>8.1} MiB {:>8.1} MiB",
            human(*d0),
            human(d1),
            *r0 as f64 / 1024.0,
            r1 as f64 / 1024.0
        );
    }
    Ok(())
}
