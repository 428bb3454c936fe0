//! `clusterfunk bench chaos`: agents in network namespaces, a probe in each
//! agent recording what `is_serving` answers, a seeded schedule of faults
//! (kill -9 and restart, SIGSTOP/SIGCONT, symmetric and one-way partitions,
//! the leader cut off with one follower), then a merged account of
//! overlaps, leader changes, unserved shard-seconds and convergence.
//!
//! Each agent runs in its own namespace on a private bridge (`netns.rs`),
//! started with `--probe-out` (`cli/probe.rs`); the run reads the probe
//! logs while it goes (to find the leader and to wait for convergence
//! before the next fault) and merges them at the end (`timeline.rs`).
//! Needs root, iproute2 and iptables; without them it prints `SKIPPED` and
//! succeeds. Exits non-zero if any shard was served by two nodes at once.

mod netns;
mod timeline;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clusterfunk::local::LocalCluster;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::probe::unix_us;
use netns::Lan;
use timeline::{analyse, Action, Fault, Report, RunnerEvent};

/// Fault types, in the order the report lists them.
const KINDS: [&str; 7] = [
    "kill-leader",
    "kill-follower",
    "pause-leader",
    "pause-follower",
    "partition",
    "one-way",
    "leader-minority",
];

#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Minutes of faults (ignored with --rounds).
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Exactly this many faults instead of --minutes.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seed of the fault schedule (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault types to draw from, comma-separated (default: all of
    /// kill-leader, kill-follower, pause-leader, pause-follower, partition,
    /// one-way, leader-minority).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Hold every partition this long (default: 1-5 s at random).
    #[arg(long)]
    hold_ms: Option<u64>,
    /// Agents (at least 3).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Shards in the cluster.
    #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
    shards: u32,
    /// Keep the agents' logs, data and probe logs (printed path).
    #[arg(long)]
    keep: bool,
}

/// Longest wait for the cluster to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for convergence after a heal before the next fault.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the probe logs are read while waiting.
const POLL: Duration = Duration::from_millis(100);

pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    if let Some(why) = netns::missing_requirements() {
        println!("SKIPPED bench chaos: {why}");
        return Ok(());
    }
    anyhow::ensure!(args.nodes >= 3, "--nodes must be at least 3");
    for f in &args.faults {
        anyhow::ensure!(
            KINDS.contains(&f.as_str()),
            "unknown fault type {f:?} (one of {})",
            KINDS.join(", ")
        );
    }
    if std::env::var_os("RUST_LOG").is_none() {
        // Before any thread exists. openraft narrates every RPC at info.
        std::env::set_var("RUST_LOG", "info,openraft=warn");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(chaos(args))
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    netns::remove_stale();
    let seed = args.seed.unwrap_or_else(unix_us);
    let dir = std::env::temp_dir().join(format!("clusterfunk-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let lan = Lan::create(args.nodes).map_err(|e| anyhow::anyhow!("namespace LAN: {e}"))?;
    let exe = std::env::current_exe()?;
    let shards = args.shards.to_string();
    let lc = LocalCluster::new(&exe, &dir, "chaos", &["--shards", &shards]);
    let mut run = Run {
        names: (1..=args.nodes).map(|i| format!("n{i}")).collect(),
        lan,
        lc,
        dir: dir.clone(),
        rng: StdRng::seed_from_u64(seed),
        runner: Vec::new(),
        faults: Vec::new(),
        notes: Vec::new(),
        t0: unix_us(),
    };
    println!(
        "chaos: {} agents in network namespaces on {}.0/24, {} shards, seed {seed} (logs in {})",
        args.nodes,
        netns::SUBNET,
        args.shards,
        dir.display()
    );
    let outcome = tokio::select! {
        r = run.schedule(&args) => r,
        _ = super::shutdown_signal() => {
            println!("interrupted: stopping the faults and reporting what was seen");
            Ok(())
        }
    };
    // Whatever happened, resume and reconnect everyone before stopping.
    for i in 0..args.nodes {
        for pid in run.lan.pids(i) {
            signal(pid, "CONT").await;
        }
    }
    let _ = run.lan.heal();
    let t_end = unix_us();
    let report = run.analyse(t_end);
    run.lc.shutdown().await;
    let overlaps = report.overlaps.len();
    run.print(&report, seed, t_end);
    drop(run);
    outcome?;
    if overlaps > 0 {
        println!("probe logs kept in {}", dir.display());
        anyhow::bail!("{overlaps} shard overlaps: a shard was served by two nodes at once");
    }
    if args.keep {
        println!("logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

struct Run {
    names: Vec<String>,
    lan: Lan,
    lc: LocalCluster,
    dir: PathBuf,
    rng: StdRng,
    runner: Vec<RunnerEvent>,
    faults: Vec<Fault>,
    /// Per fault: what exactly was done.
    notes: Vec<String>,
    t0: u64,
}

async fn signal(pid: u32, sig: &str) {
    let _ = tokio::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .await;
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.gen_range(lo..=hi))
}

impl Run {
    fn probe_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.probe", self.names[i]))
    }

    fn analyse(&self, t_end: u64) -> Report {
        let probes: Vec<Vec<_>> = (0..self.names.len())
            .map(|i| {
                std::fs::read_to_string(self.probe_path(i))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(timeline::parse)
                    .collect()
            })
            .collect();
        analyse(&probes, &self.runner, &self.faults, t_end)
    }

    /// Polls the probe logs until `pred` holds on the report, or `timeout`.
    async fn wait(&self, timeout: Duration, pred: impl Fn(&Report) -> bool) -> Option<Report> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = self.analyse(unix_us());
            if pred(&r) {
                return Some(r);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn note(&mut self, node: Option<usize>, what: Action) {
        self.runner.push(RunnerEvent {
            t: unix_us(),
            node,
            what,
        });
    }

    fn elapsed(&self) -> f64 {
        unix_us().saturating_sub(self.t0) as f64 / 1e6
    }

    async fn start_all(&mut self) -> anyhow::Result<()> {
        let mut seed: Option<String> = None;
        for i in 0..self.names.len() {
            let addr = self.lan.addr(i);
            let probe = self.probe_path(i).display().to_string();
            let flags = [
                ("--preset", "lan"),
                ("--bind", addr.as_str()),
                ("--advertise", addr.as_str()),
                ("--probe-out", probe.as_str()),
            ];
            let prefix = self.lan.exec_prefix(i);
            self.lc
                .start_with(&self.names[i], seed.as_deref(), &flags, &prefix)
                .await
                .with_context(|| format!("start {}", self.names[i]))?;
            if seed.is_none() {
                seed = Some(
                    self.lc
                        .endpoint(&self.names[i], "gossip")
                        .context("the first agent has no gossip address")?,
                );
            }
        }
        Ok(())
    }

    async fn schedule(&mut self, args: &ChaosArgs) -> anyhow::Result<()> {
        self.start_all().await?;
        let formed = self
            .wait(FORM_TIMEOUT, |r| r.converged_now)
            .await
            .context("the cluster did not form (every node serving, every shard served)")?;
        println!(
            "[{:7.1} s] formed: every node serves, every shard is served",
            formed.formed_at.unwrap_or(self.t0).saturating_sub(self.t0) as f64 / 1e6
        );
        // Let the first leader settle (and map commits finish) before faults.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let kinds: Vec<&'static str> = if args.faults.is_empty() {
            KINDS.to_vec()
        } else {
            KINDS
                .iter()
                .copied()
                .filter(|k| args.faults.iter().any(|f| f == k))
                .collect()
        };
        let deadline = unix_us() + (args.minutes * 60e6) as u64;
        let mut n = 0;
        while args.rounds.map_or(unix_us() < deadline, |r| n < r) {
            let kind = *kinds.choose(&mut self.rng).context("no fault types")?;
            let f = self.inject(kind, args.hold_ms).await?;
            n += 1;
            let done = self.wait(CONVERGE_TIMEOUT, |r| r.converged_now).await;
            let r = done.unwrap_or_else(|| self.analyse(unix_us()));
            let conv = match r.faults[f].convergence_us {
                Some(us) => format!("converged {:.0} ms after the heal", us as f64 / 1e3),
                None => format!(
                    "NOT converged {} s after the heal",
                    CONVERGE_TIMEOUT.as_secs()
                ),
            };
            let st = &r.faults[f];
            println!(
                "[{:7.1} s] #{f} {}: {conv}; overlaps {} (worst {} µs), leader changes {}",
                self.elapsed(),
                self.notes[f],
                st.overlaps,
                st.worst_overlap_us,
                st.leader_changes
            );
            let pause = ms(&mut self.rng, 1000, 3000);
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// The current leader, waiting up to 10 s for one.
    async fn leader(&self) -> Option<usize> {
        self.wait(Duration::from_secs(10), |r| r.leader_now.is_some())
            .await
            .and_then(|r| r.leader_now)
    }

    /// Injects one fault of `kind`, holds it, heals it; returns its index.
    async fn inject(&mut self, kind: &'static str, hold_ms: Option<u64>) -> anyhow::Result<usize> {
        let n = self.names.len();
        let leader = self.leader().await;
        let followers: Vec<usize> = (0..n).filter(|i| Some(*i) != leader).collect();
        let f = self.faults.len();
        let pick_victim = |rng: &mut StdRng, wants_leader: bool| -> usize {
            match (wants_leader, leader) {
                (true, Some(l)) => l,
                _ => *followers.choose(rng).unwrap_or(&0),
            }
        };
        let hold = match hold_ms {
            Some(h) => Duration::from_millis(h),
            None => ms(&mut self.rng, 1000, 5000),
        };
        let no_leader = match leader {
            Some(l) => format!(" [leader {}]", self.names[l]),
            None => " [no leader seen]".to_string(),
        };
        match kind {
            "kill-leader" | "kill-follower" => {
                let v = pick_victim(&mut self.rng, kind == "kill-leader");
                let down = ms(&mut self.rng, 500, 3000);
                self.notes.push(format!(
                    "{kind} {}{no_leader}: kill -9, restart after {:.1} s",
                    self.names[v],
                    down.as_secs_f64()
                ));
                self.faults.push(Fault {
                    kind,
                    t_inject: unix_us(),
                });
                self.note(Some(v), Action::Kill);
                self.lc.kill(&self.names[v]).await?;
                tokio::time::sleep(down).await;
                self.note(None, Action::Heal(f));
                let name = self.names[v].clone();
                self.lc
                    .restart(&name)
                    .await
                    .with_context(|| format!("restart {name}"))?;
            }
            "pause-leader" | "pause-follower" => {
                let v = pick_victim(&mut self.rng, kind == "pause-leader");
                let pause = ms(&mut self.rng, 500, 3000);
                self.notes.push(format!(
                    "{kind} {}{no_leader}: SIGSTOP for {:.1} s",
                    self.names[v],
                    pause.as_secs_f64()
                ));
                let pids = self.lan.pids(v);
                anyhow::ensure!(!pids.is_empty(), "no process on {}", self.names[v]);
                self.faults.push(Fault {
                    kind,
                    t_inject: unix_us(),
                });
                self.note(Some(v), Action::Freeze);
                for pid in &pids {
                    signal(*pid, "STOP").await;
                }
                tokio::time::sleep(pause).await;
                self.note(Some(v), Action::Thaw);
                self.note(None, Action::Heal(f));
                for pid in &pids {
                    signal(*pid, "CONT").await;
                }
            }
            "partition" | "leader-minority" => {
                let mut side: Vec<usize> = if kind == "partition" {
                    let mut all: Vec<usize> = (0..n).collect();
                    all.shuffle(&mut self.rng);
                    let k = self.rng.gen_range(1..=(n - 1) / 2);
                    all.truncate(k);
                    all
                } else {
                    let mut side = vec![pick_victim(&mut self.rng, true)];
                    let other: Vec<usize> = (0..n).filter(|i| !side.contains(i)).collect();
                    side.push(*other.choose(&mut self.rng).unwrap_or(&0));
                    side
                };
                side.sort_unstable();
                let names: Vec<&str> = side.iter().map(|i| self.names[*i].as_str()).collect();
                self.notes.push(format!(
                    "{kind} {{{}}}{no_leader} cut off from the rest (both ways) for {:.1} s",
                    names.join(","),
                    hold.as_secs_f64()
                ));
                self.faults.push(Fault {
                    kind,
                    t_inject: unix_us(),
                });
                for &i in &side {
                    for j in (0..n).filter(|j| !side.contains(j)) {
                        self.cut(i, j, true)?;
                        self.cut(i, j, false)?;
                    }
                }
                tokio::time::sleep(hold).await;
                self.note(None, Action::Heal(f));
                self.lan.heal().map_err(|e| anyhow::anyhow!(e))?;
            }
            "one-way" => {
                let v = *(0..n)
                    .collect::<Vec<_>>()
                    .choose(&mut self.rng)
                    .unwrap_or(&0);
                let inbound = self.rng.gen_bool(0.5);
                self.notes.push(format!(
                    "{kind} {}{no_leader} {} for {:.1} s",
                    self.names[v],
                    if inbound {
                        "hears nobody, is heard"
                    } else {
                        "hears everyone, is not heard"
                    },
                    hold.as_secs_f64()
                ));
                self.faults.push(Fault {
                    kind,
                    t_inject: unix_us(),
                });
                for j in (0..n).filter(|j| *j != v) {
                    self.cut(v, j, inbound)?;
                }
                tokio::time::sleep(hold).await;
                self.note(None, Action::Heal(f));
                self.lan.heal().map_err(|e| anyhow::anyhow!(e))?;
            }
            other => anyhow::bail!("unknown fault type {other}"),
        }
        Ok(f)
    }

    fn cut(&self, i: usize, j: usize, inbound: bool) -> anyhow::Result<()> {
        self.lan
            .drop_link(i, j, inbound)
            .map_err(|e| anyhow::anyhow!(e))
    }

    fn print(&self, r: &Report, seed: u64, t_end: u64) {
        let secs = t_end.saturating_sub(self.t0) as f64 / 1e6;
        println!();
        println!(
            "chaos summary: seed {seed}, {} faults in {secs:.0} s, {} shards, {} agents",
            self.faults.len(),
            r.shards,
            self.names.len()
        );
        println!(
            "(hit: faults with an overlap; overlaps: shard overlap intervals; max_shards: most \
             at once; leader: leader changes; unserved_s: unserved shard-seconds; conv: heal to \
             every node serving and every shard served once)"
        );
        println!(
            "{:<16} {:>6} {:>5} {:>9} {:>11} {:>12} {:>8} {:>11} {:>9} {:>9} {:>8}",
            "fault",
            "count",
            "hit",
            "overlaps",
            "max_shards",
            "worst_us",
            "leader",
            "unserved_s",
            "conv_p50",
            "conv_max",
            "not_conv"
        );
        let mut rows: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, f) in self.faults.iter().enumerate() {
            let k = KINDS.iter().position(|k| *k == f.kind).unwrap_or(0);
            rows.entry(k).or_default().push(i);
        }
        let mut all_conv: Vec<u64> = Vec::new();
        for (k, idx) in &rows {
            let st: Vec<_> = idx.iter().map(|i| &r.faults[*i]).collect();
            let mut conv: Vec<u64> = st.iter().filter_map(|s| s.convergence_us).collect();
            conv.sort_unstable();
            all_conv.extend(&conv);
            let pct = |p: f64| -> String {
                if conv.is_empty() {
                    return "-".into();
                }
                let i = ((conv.len() - 1) as f64 * p).round() as usize;
                format!("{:.0}ms", conv[i] as f64 / 1e3)
            };
            println!(
                "{:<16} {:>6} {:>5} {:>9} {:>11} {:>12} {:>8} {:>11.1} {:>9} {:>9} {:>8}",
                KINDS[*k],
                idx.len(),
                st.iter().filter(|s| s.overlaps > 0).count(),
                st.iter().map(|s| s.overlaps).sum::<u32>(),
                st.iter().map(|s| s.max_shards).max().unwrap_or(0),
                st.iter().map(|s| s.worst_overlap_us).max().unwrap_or(0),
                st.iter().map(|s| s.leader_changes).sum::<u32>(),
                st.iter().map(|s| s.unserved_shard_us).sum::<u128>() as f64 / 1e6,
                pct(0.5),
                pct(1.0),
                st.len() - conv.len()
            );
        }
        let worst = r.overlaps.iter().map(|o| o.len_us()).max().unwrap_or(0);
        all_conv.sort_unstable();
        let conv_max = all_conv.last().copied().unwrap_or(0);
        let not_conv = self.faults.len() - all_conv.len();
        println!(
            "overlaps {} (worst {worst} µs); leader changes {}; unserved shard-seconds {:.1}; \
             convergence after heal max {:.0} ms ({} of {} within 3 s)",
            r.overlaps.len(),
            r.leader_changes.len(),
            r.unserved_shard_us as f64 / 1e6,
            conv_max as f64 / 1e3,
            all_conv.iter().filter(|c| **c <= 3_000_000).count(),
            self.faults.len()
        );
        for (i, st) in r.faults.iter().enumerate() {
            if st.overlaps == 0 {
                continue;
            }
            let nodes: std::collections::BTreeSet<&str> = r
                .overlaps
                .iter()
                .filter(|o| self.faults.iter().rposition(|f| f.t_inject <= o.start) == Some(i))
                .flat_map(|o| o.nodes.iter().map(|n| self.names[*n].as_str()))
                .collect();
            println!(
                "  overlap in #{i} {}: {} shard overlaps, up to {} shards at once, worst {} µs, \
                 nodes {}",
                self.notes[i],
                st.overlaps,
                st.max_shards,
                st.worst_overlap_us,
                nodes.into_iter().collect::<Vec<_>>().join(",")
            );
        }
        let before: Vec<_> = r
            .overlaps
            .iter()
            .filter(|o| self.faults.first().is_none_or(|f| o.start < f.t_inject))
            .collect();
        if !before.is_empty() {
            println!("  {} overlaps before the first fault", before.len());
        }
        println!(
            "probe: {} full-check disagreements; {} probe gaps outside pauses (worst {:.1} ms)",
            r.check_mismatches,
            r.starved_gaps.0,
            r.starved_gaps.1 as f64 / 1e3
        );
        println!(
            "RESULT overlaps={} worst_overlap_us={worst} leader_changes={} \
             unserved_shard_s={:.1} max_convergence_ms={:.0} not_converged={not_conv}",
            r.overlaps.len(),
            r.leader_changes.len(),
            r.unserved_shard_us as f64 / 1e6,
            conv_max as f64 / 1e3
        );
    }
}
