//! Cluster timing benchmark: N `clusterfunk gossip-node` processes on
//! loopback against N HashiCorp Serf agents (if `serf` is installed), same
//! N, same protocol preset (memberlist's LAN values for both).
//!
//! Prints, for each: time from starting N-1 processes (the seed already up)
//! until every node sees all N alive; time from `kill -9` of one node until
//! every survivor reports it failed (five nodes, one after the other); resident memory (VmRSS) and CPU per
//! idle node over 10 s.
//!
//! `GOSSIP_BENCH_N` (default 32) sets N, `GOSSIP_BENCH_PRESET` (default
//! `lan`) the preset of both sides (`local` maps to Serf's `-profile local`).
//! Run: `cargo bench --bench gossip_cluster` (`GOSSIP_BENCH_BIN` may point
//! at another `clusterfunk` binary).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a node reported, when it was read.
enum Report {
    Alive(String),
    Failed(String),
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Rx = mpsc::Receiver<(usize, Instant, Report)>;
type Tx = mpsc::Sender<(usize, Instant, Report)>;
/// Starts node `i` (joining `seed`, none for the seed itself); returns the
/// process and, for the seed, the address to join.
type Spawn<'a> = dyn Fn(usize, Option<&str>, Tx) -> Option<(Proc, Option<String>)> + 'a;

/// Reads `child`'s stdout on a thread, turning lines into reports with
/// `parse`. Returns the first line (for the listening address).
fn watch_stdout(
    i: usize,
    child: &mut Child,
    tx: mpsc::Sender<(usize, Instant, Report)>,
    parse: fn(&str) -> Option<Report>,
    first_line: bool,
) -> Option<String> {
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let first = if first_line { lines.next()?.ok() } else { None };
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let Some(r) = parse(&l) {
                if tx.send((i, Instant::now(), r)).is_err() {
                    return;
                }
            }
        }
    });
    first
}

fn parse_ours(l: &str) -> Option<Report> {
    let v: serde_json::Value = serde_json::from_str(l).ok()?;
    let name = v["member"]["name"].as_str()?.to_string();
    match v["kind"].as_str()? {
        "join" | "alive_again" => Some(Report::Alive(name)),
        "failed" => Some(Report::Failed(name)),
        _ => None,
    }
}

fn parse_serf(l: &str) -> Option<Report> {
    let word = |tag: &str| -> Option<String> {
        let rest = &l[l.find(tag)? + tag.len()..];
        rest.split_whitespace().next().map(str::to_string)
    };
    if let Some(n) = word("EventMemberJoin: ") {
        return Some(Report::Alive(n));
    }
    word("EventMemberFailed: ").map(Report::Failed)
}

/// `count` distinct ports free for both UDP and TCP. All are held until
/// every one is found, so no two are the same; the agents bind them right
/// after they are released.
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < count {
        let Ok(t) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = t.local_addr() else { continue };
        if let Ok(u) = std::net::UdpSocket::bind(a) {
            held.push((a.port(), t, u));
        }
    }
    held.into_iter().map(|(p, _, _)| p).collect()
}

/// Per-node views from reports, until `done` holds or `timeout` passes.
/// Returns the instant `done` became true.
struct Views {
    alive: BTreeMap<usize, BTreeSet<String>>,
    failed: BTreeMap<usize, BTreeSet<String>>,
}

impl Views {
    fn new() -> Self {
        Views {
            alive: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    fn pump(
        &mut self,
        rx: &Rx,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return Some(Instant::now());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let (i, at, r) = rx.recv_timeout(left).ok()?;
            match r {
                Report::Alive(n) => {
                    self.failed.entry(i).or_default().remove(&n);
                    self.alive.entry(i).or_default().insert(n);
                }
                Report::Failed(n) => {
                    self.alive.entry(i).or_default().remove(&n);
                    self.failed.entry(i).or_default().insert(n);
                }
            }
            if done(self) {
                return Some(at);
            }
        }
    }
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Nodes killed one after the other; each detection time is a sample.
const KILLS: usize = 5;

#[derive(Default, Clone)]
struct Figures {
    converge: Option<Duration>,
    detect: Vec<Duration>,
    rss_mib: f64,
    cpu_pct: f64,
}

fn idle_usage(procs: &[Proc], alive: &[usize]) -> (f64, f64) {
    let pids: Vec<u32> = alive.iter().map(|&i| procs[i].child.id()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p).unwrap_or(0)).collect();
    let ticks: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    let cpu_pct = ticks as f64 / clk_tck() / secs / pids.len() as f64 * 100.0;
    let rss: u64 = pids.iter().map(|&p| rss_kib(p).unwrap_or(0)).sum();
    (rss as f64 / pids.len() as f64 / 1024.0, cpu_pct)
}

/// Runs one system: `spawn(i, seed)` starts node i (seed = None for node 0)
/// and returns the process and, for node 0, the address to join.
fn run_cluster(label: &str, n: usize, names: &[String], spawn: &Spawn, sees_self: bool) -> Figures {
    let (tx, rx) = mpsc::channel();
    let mut procs = Vec::new();
    let Some((p0, seed)) = spawn(0, None, tx.clone()) else {
        eprintln!("{label}: could not start the seed");
        return Figures::default();
    };
    procs.push(p0);
    let seed = seed.unwrap_or_default();
    let start = Instant::now();
    for i in 1..n {
        match spawn(i, Some(&seed), tx.clone()) {
            Some((p, _)) => procs.push(p),
            None => {
                eprintln!("{label}: could not start node {i}");
                return Figures::default();
            }
        }
    }
    let expect = if sees_self { n } else { n - 1 };
    let mut views = Views::new();
    let all: Vec<usize> = (0..n).collect();
    let converged = views.pump(&rx, Duration::from_secs(120), |v| {
        all.iter()
            .all(|i| v.alive.get(i).is_some_and(|s| s.len() == expect))
    });
    let mut f = Figures {
        converge: converged.map(|t| t.duration_since(start)),
        ..Figures::default()
    };
    if converged.is_none() {
        eprintln!("{label}: no convergence within 120 s");
        return f;
    }
    let (rss, cpu) = idle_usage(&procs, &all);
    f.rss_mib = rss;
    f.cpu_pct = cpu;
    // Kill one node at a time; each detection is one sample.
    let mut survivors: Vec<usize> = all.clone();
    for k in 0..KILLS {
        // Drain what arrived meanwhile, then kill.
        views.pump(&rx, Duration::from_millis(1), |_| false);
        let victim = (n / 2 + k * n / (2 * KILLS).max(1)) % n;
        survivors.retain(|&i| i != victim);
        let _ = procs[victim].child.kill();
        let killed = Instant::now();
        let _ = procs[victim].child.wait();
        let vname = names[victim].clone();
        let detected = views.pump(&rx, Duration::from_secs(120), |v| {
            survivors
                .iter()
                .all(|i| v.failed.get(i).is_some_and(|s| s.contains(&vname)))
        });
        match detected {
            Some(t) => f.detect.push(t.duration_since(killed)),
            None => {
                eprintln!("{label}: failure of {vname} not reported everywhere within 120 s");
                break;
            }
        }
    }
    f
}

fn fmt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

fn mean(v: &[Duration]) -> Option<Duration> {
    if v.len() < KILLS {
        return None;
    }
    Some(v.iter().sum::<Duration>() / v.len() as u32)
}

fn samples(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let n: usize = std::env::var("GOSSIP_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let preset = std::env::var("GOSSIP_BENCH_PRESET").unwrap_or_else(|_| "lan".into());
    // `cargo bench` passes `--bench`; a filter argument that is not ours
    // means another benchmark was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && a != "gossip_cluster")
    {
        return;
    }
    let names: Vec<String> = (0..n).map(|i| format!("node{i:03}")).collect();
    // GOSSIP_BENCH_BIN overrides the binary (e.g. a copy, when a shared
    // target directory may be rebuilt by someone else during the run).
    let bin_path = std::env::var("GOSSIP_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_clusterfunk").to_string());
    let bin = bin_path.as_str();

    let ours = run_cluster(
        "clusterfunk",
        n,
        &names,
        &|i, seed, tx| {
            let mut cmd = Command::new(bin);
            cmd.args([
                "gossip-node",
                "--name",
                &names[i],
                "--bind",
                "127.0.0.1:0",
                "--preset",
                &preset,
            ]);
            if let Some(s) = seed {
                cmd.args(["--join", s]);
            }
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let first = watch_stdout(i, &mut child, tx, parse_ours, seed.is_none());
            let addr = first.and_then(|l| l.strip_prefix("listening ").map(str::to_string));
            Some((Proc { child }, addr))
        },
        false,
    );

    let serf = Command::new("serf").arg("version").output().is_ok();
    let theirs = if serf {
        let ports = free_ports(2 * n);
        run_cluster(
            "serf",
            n,
            &names,
            &|i, seed, tx| {
                let (port, rpc) = (ports[2 * i], ports[2 * i + 1]);
                let bind = format!("127.0.0.1:{port}");
                let mut cmd = Command::new("serf");
                cmd.args([
                    "agent",
                    "-node",
                    &names[i],
                    "-bind",
                    &bind,
                    "-rpc-addr",
                    &format!("127.0.0.1:{rpc}"),
                    "-profile",
                    &preset,
                    "-log-level",
                    "info",
                ]);
                if let Some(s) = seed {
                    cmd.args(["-join", s]);
                }
                let mut child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()?;
                watch_stdout(i, &mut child, tx, parse_serf, false);
                if seed.is_none() {
                    // Wait until the seed answers RPC, so joins find it up.
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(10) {
                        let ok = Command::new("serf")
                            .args(["members", "-rpc-addr", &format!("127.0.0.1:{rpc}")])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                        if ok {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Some((Proc { child }, Some(bind)))
            },
            true,
        )
    } else {
        eprintln!("serf not installed (apt-get install -y serf): clusterfunk figures only");
        Figures::default()
    };

    println!();
    println!(
        "gossip cluster benchmark: N = {n}, preset = {preset}, loopback, {} cpus",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    println!(
        "{:<48} {:>14} {:>14}",
        "",
        "clusterfunk",
        if serf { "serf" } else { "serf (n/a)" }
    );
    println!(
        "{:<48} {:>14} {:>14}",
        "join: all N see all N alive",
        fmt(ours.converge),
        fmt(theirs.converge)
    );
    println!(
        "{:<48} {:>14} {:>14}",
        format!("kill -9: all survivors report failed (mean of {KILLS})"),
        fmt(mean(&ours.detect)),
        fmt(mean(&theirs.detect))
    );
    println!("  clusterfunk samples (s): {}", samples(&ours.detect));
    println!("  serf samples (s):        {}", samples(&theirs.detect));
    println!(
        "{:<48} {:>11.1} MiB {:>10.1} MiB",
        "idle VmRSS per node", ours.rss_mib, theirs.rss_mib
    );
    println!(
        "{:<48} {:>12.2} % {:>12.2} %",
        "idle CPU per node (10 s, % of one core)", ours.cpu_pct, theirs.cpu_pct
    );
    if let (Some(a), Some(b)) = (ours.converge, theirs.converge) {
        println!(
            "join ratio clusterfunk/serf: {:.2}",
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    if let (Some(a), Some(b)) = (mean(&ours.detect), mean(&theirs.detect)) {
        println!(
            "failure detection ratio clusterfunk/serf: {:.2}",
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
}
