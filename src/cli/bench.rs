//! `clusterfunk bench failover` and `clusterfunk bench idle`: timings of a
//! local cluster of agent processes on 127.0.0.1.
//!
//! Failover: each round takes a follower and then the leader down, first
//! with `kill -9` (crash: the host stays up, the ports are closed) and then
//! with `kill -STOP` (silent: a frozen process or a cut cable), and times
//! "down → a map without it committed on every survivor". The agents print
//! their events with wall-clock stamps, so every failover is split, from
//! the events of the leader that committed that map, into:
//!
//! - `detect`: down → that leader proposed a map without the victim
//!   (liveness verdict, plus the election when the leader was the victim,
//!   plus the 5 ms debounce);
//! - `handover`: proposal → commit appended on that leader: the
//!   acknowledgements (a few ms; see the `acks only` line, measured on the
//!   rejoin proposals where nobody's lease is waited out) and the wait for
//!   the victim's serving lease to end certainly;
//! - `spread`: commit on that leader → the last survivor applied it.
//!
//! Idle: an idle cluster, optionally beside a CPU hog (`stress-ng`), for a
//! while; prints how many maps were committed and how often the leader
//! changed after the cluster formed (both should be 0).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clusterfunk::local::{owners, unix_ms, Commit, Event, LocalCluster};

use super::demo::{fail_and_time, form, leader_of, runtime, scratch_dir, Failure, FORM_TIMEOUT};

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Rounds; each takes down a follower and then the leader, once by
    /// crash (`kill -9`) and once silently (`kill -STOP`).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Skip the silent (`kill -STOP`) failures.
    #[arg(long)]
    crash_only: bool,
    /// Extra agent flags, e.g. `--agent-arg=--lease-ms --agent-arg=150`.
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    agent_args: Vec<String>,
    /// Keep the agents' logs (printed path) instead of deleting them.
    #[arg(long)]
    keep_logs: bool,
}

/// One measured failover, in ms.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    total: u64,
    detect: Option<u64>,
    handover: Option<u64>,
    spread: Option<u64>,
}

/// Splits a failover at the events of the leader that committed the map
/// every survivor ended on (see the module docs).
fn breakdown(
    lc: &LocalCluster,
    t_down: u64,
    total: u64,
    commits: &BTreeMap<String, Commit>,
) -> Sample {
    let mut s = Sample {
        total,
        ..Sample::default()
    };
    let Some(c) = commits.values().next() else {
        return s;
    };
    let Some(leader) = c.leader.clone() else {
        return s;
    };
    let evs = lc.events(&leader);
    let at = |kind: &str| -> Option<u64> {
        evs.iter()
            .find(|e| e.kind == kind && e.epoch == Some(c.epoch) && e.t_ms >= t_down)
            .map(|e| e.t_ms)
    };
    let done = t_down + total;
    if let (Some(p), Some(k)) = (at("map_proposed"), at("map_committed")) {
        s.detect = Some(p - t_down);
        s.handover = Some(k.saturating_sub(p));
        s.spread = Some(done.saturating_sub(k));
    }
    s
}

/// Propose → commit on the leader of the last rejoin map: acks only.
fn acks_only(lc: &LocalCluster, since: u64, back: &BTreeMap<String, Commit>) -> Option<u64> {
    let c = back.values().next()?;
    let evs: Vec<Event> = lc.events(c.leader.as_deref()?);
    let find = |kind: &str| {
        evs.iter()
            .find(|e| e.kind == kind && e.epoch == Some(c.epoch) && e.t_ms >= since)
            .map(|e| e.t_ms)
    };
    Some(find("map_committed")?.saturating_sub(find("map_proposed")?))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn p50_p99(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return format!("{:>11}", "-");
    }
    v.sort_unstable();
    format!("{:>4} / {:>4}", percentile(&v, 0.5), percentile(&v, 0.99))
}

fn report(what: &str, v: &[Sample]) {
    let col = |f: fn(&Sample) -> Option<u64>| p50_p99(v.iter().filter_map(f).collect());
    println!(
        "  {what:<9} {:>3}  {}  {}  {}  {}   max {:>5}",
        v.len(),
        col(|s| Some(s.total)),
        col(|s| s.detect),
        col(|s| s.handover),
        col(|s| s.spread),
        v.iter().map(|s| s.total).max().unwrap_or(0),
    );
}

/// The victim of a round: the leader, or a follower picked round-robin.
fn victim(all: &[String], leader: &str, round: usize, kill_leader: bool) -> anyhow::Result<String> {
    if kill_leader {
        return Ok(leader.to_string());
    }
    let pick = &all[round % all.len()];
    if pick != leader {
        return Ok(pick.clone());
    }
    all.iter()
        .find(|n| *n != leader)
        .cloned()
        .context("no follower")
}

pub fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "needs at least 3 nodes");
    runtime()?.block_on(async move {
        let dir = scratch_dir("failover")?;
        let exe = std::env::current_exe()?;
        let shards = args.shards.to_string();
        let mut extra = vec!["--shards", shards.as_str()];
        extra.extend(args.agent_args.iter().map(String::as_str));
        let mut lc = LocalCluster::new(&exe, &dir, "bench", &extra);
        let (all, mut last) = form(&mut lc, args.nodes).await?;
        let kinds: &[Failure] = if args.crash_only {
            &[Failure::Crash]
        } else {
            &[Failure::Crash, Failure::Freeze]
        };
        let mut samples: BTreeMap<(u8, bool), Vec<Sample>> = BTreeMap::new();
        let mut acks = Vec::new();
        let mut n = 0;
        for round in 0..args.rounds {
            for &how in kinds {
                for kill_leader in [false, true] {
                    n += 1;
                    let leader = leader_of(&last).context("no leader")?;
                    let victim = victim(&all, &leader, round, kill_leader)?;
                    let (t, ms, commits) = fail_and_time(&mut lc, &all, &victim, how).await?;
                    let s = breakdown(&lc, t, ms, &commits);
                    println!(
                        "{n:>3}: {:<6} {} {victim}: {ms:>4} ms (detect {} handover {} spread {})",
                        if how == Failure::Crash {
                            "crash"
                        } else {
                            "silent"
                        },
                        if kill_leader { "leader  " } else { "follower" },
                        opt(s.detect),
                        opt(s.handover),
                        opt(s.spread),
                    );
                    samples.entry((how as u8, kill_leader)).or_default().push(s);
                    let t = unix_ms();
                    match how {
                        Failure::Crash => lc.restart(&victim).await?,
                        Failure::Freeze => {
                            lc.freeze(&victim, false).await?;
                        }
                    }
                    last = lc
                        .wait_commit(&all, t, FORM_TIMEOUT, |c| owners(c).len() == all.len())
                        .await?;
                    acks.extend(acks_only(&lc, t, &last));
                }
            }
        }
        println!(
            "\ndown -> new map committed on every survivor ({} nodes, {} shards), ms p50 / p99:",
            args.nodes, args.shards
        );
        println!(
            "  {:<9} {:>3}  {:>11}  {:>11}  {:>11}  {:>11}",
            "", "n", "total", "detect", "handover", "spread"
        );
        for (how, name) in [
            (Failure::Crash, "kill -9 (crash):"),
            (Failure::Freeze, "kill -STOP (silent):"),
        ] {
            if !kinds.contains(&how) {
                continue;
            }
            println!("{name}");
            for (kill_leader, who) in [(false, "follower"), (true, "leader")] {
                report(
                    who,
                    samples
                        .get(&(how as u8, kill_leader))
                        .map_or(&[][..], |v| v.as_slice()),
                );
            }
        }
        println!(
            "acks only (propose -> commit of the {} rejoin maps): {} ms",
            acks.len(),
            p50_p99(acks)
        );
        lc.shutdown().await;
        if args.keep_logs {
            println!("logs: {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

#[derive(clap::Args)]
pub struct IdleArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// How long to watch the formed cluster.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Run `stress-ng --cpu 0` (every core busy) beside the cluster.
    #[arg(long)]
    hog: bool,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
}

/// Map changes and leader changes any node saw after `since`: distinct
/// committed epochs, and `leader_changed` events (most seen by one node).
fn changes(lc: &LocalCluster, all: &[String], since: u64) -> (usize, usize, usize) {
    let mut epochs = std::collections::BTreeSet::new();
    let (mut leaders, mut failed) = (0, 0);
    for n in all {
        let evs = lc.events(n);
        let after = || evs.iter().filter(|e| e.t_ms > since);
        epochs.extend(
            after()
                .filter(|e| e.kind == "map_committed")
                .filter_map(|e| e.epoch),
        );
        leaders = leaders.max(after().filter(|e| e.kind == "leader_changed").count());
        failed += after().filter(|e| e.kind == "member_failed").count();
    }
    (epochs.len(), leaders, failed)
}

pub fn idle(args: IdleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 3, "needs at least 3 nodes");
    anyhow::ensure!(
        args.minutes > 0.0 && args.minutes.is_finite(),
        "--minutes must be positive"
    );
    runtime()?.block_on(async move {
        let dir = scratch_dir("idle")?;
        let exe = std::env::current_exe()?;
        let shards = args.shards.to_string();
        let mut lc = LocalCluster::new(&exe, &dir, "idle", &["--shards", &shards]);
        let (all, first) = form(&mut lc, args.nodes).await?;
        // Let the formation settle (the last joins, the voter set).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let since = unix_ms();
        let leader = leader_of(&first).unwrap_or_default();
        let watch = Duration::from_secs_f64(args.minutes * 60.0);
        let mut hog = if args.hog {
            let secs = watch.as_secs() + 1;
            let child = tokio::process::Command::new("stress-ng")
                .args(["--cpu", "0", "--timeout", &format!("{secs}s"), "--quiet"])
                .kill_on_drop(true)
                .spawn()
                .context("start stress-ng (apt-get install stress-ng)")?;
            Some(child)
        } else {
            None
        };
        println!(
            "{} agents formed (leader {leader}); watching for {:.1} min{}",
            args.nodes,
            args.minutes,
            if hog.is_some() { " beside stress-ng --cpu 0" } else { "" }
        );
        let start = tokio::time::Instant::now();
        while start.elapsed() < watch {
            tokio::time::sleep(Duration::from_secs(60).min(watch.saturating_sub(start.elapsed()))).await;
            let (maps, leaders, failed) = changes(&lc, &all, since);
            println!(
                "  {:>5.1} min: map changes {maps}, leader changes {leaders}, member_failed events {failed}",
                start.elapsed().as_secs_f64() / 60.0
            );
        }
        if let Some(h) = hog.as_mut() {
            let _ = h.start_kill();
            let _ = h.wait().await;
        }
        let (maps, leaders, failed) = changes(&lc, &all, since);
        println!("map changes: {maps}\nleader changes: {leaders}\nmember_failed events: {failed}");
        lc.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
}
