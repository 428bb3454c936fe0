//! Liveness benchmark: detection latency and checker CPU use.
//!
//! Run: `CARGO_TARGET_DIR=/work/main/target cargo bench --bench liveness_detect`
//!
//! 1. Detection: 10 responders in this process, one checker at the default
//!    config. 100 times: wait a random fraction of the probe interval, close
//!    one responder's socket, time until the checker emits `Dead`, then
//!    rebind the same port and wait for `Alive`. Prints p50/p99/max next to
//!    the bounds.
//! 2. CPU: responders for 100 and 1,000 targets in a child process (this
//!    binary re-run with `--responders N`), so this process's CPU time is the
//!    checker's alone. Measures process CPU time over a 10 s wall window at
//!    the default interval.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clusterfunk::liveness::{Checker, LivenessConfig, LivenessEvent, Responder};
use rand::Rng;
use tokio::time::{timeout, Instant};

/// Counts heap allocations of this process, to show that steady-state
/// probing allocates nothing (the bench binary only; the library has no
/// global state).
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const KILLS: usize = 100;
const RESPONDERS: usize = 10;
const CPU_WINDOW: Duration = Duration::from_secs(10);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--responders") {
        let n: usize = args.get(2).context("count")?.parse()?;
        return responder_child(n);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // LIVENESS_BENCH_CPU_ONLY=100,1000 skips the detection part.
        let only = std::env::var("LIVENESS_BENCH_CPU_ONLY").ok();
        if only.is_none() {
            detection().await?;
        }
        let sizes: Vec<usize> = match &only {
            Some(v) => v.split(',').filter_map(|x| x.parse().ok()).collect(),
            None => vec![100, 1000],
        };
        for n in sizes {
            cpu(n).await?;
        }
        Ok(())
    })
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn wait_for(
    events: &mut tokio::sync::mpsc::Receiver<LivenessEvent>,
    want: &LivenessEvent,
    other: &mut usize,
) -> Result<()> {
    loop {
        match timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(ev)) if &ev == want => return Ok(()),
            Ok(Some(_)) => *other += 1,
            Ok(None) => bail!("event channel closed"),
            Err(_) => bail!("no {want:?} within 5 s"),
        }
    }
}

async fn detection() -> Result<()> {
    let config = LivenessConfig::default();
    let (checker, mut events) = Checker::bind(config.clone(), local()).await?;
    let mut responders = Vec::new();
    for i in 0..RESPONDERS {
        let r = Responder::bind(local()).await?;
        checker.add(format!("r{i}"), r.local_addr()).await?;
        responders.push(Some(r));
    }
    let mut state = checker.watch();
    timeout(
        Duration::from_secs(5),
        state.wait_for(|s| s.alive().count() == RESPONDERS),
    )
    .await
    .context("responders alive")??;

    let started = Instant::now();
    let mut took = Vec::with_capacity(KILLS);
    let mut other = 0usize;
    for k in 0..KILLS {
        let i = k % RESPONDERS;
        let id = format!("r{i}");
        let phase = rand::thread_rng().gen_range(0..config.interval.as_micros() as u64);
        tokio::time::sleep(Duration::from_micros(phase)).await;
        let r = responders[i].take().context("responder present")?;
        let addr = r.local_addr();
        r.shutdown().await; // socket closed when this returns
        let t0 = Instant::now();
        wait_for(&mut events, &LivenessEvent::Dead(id.clone()), &mut other).await?;
        took.push(t0.elapsed());
        responders[i] = Some(Responder::bind(addr).await?);
        wait_for(&mut events, &LivenessEvent::Alive(id), &mut other).await?;
    }
    let wall = started.elapsed();
    took.sort();
    let deadline = config.deadline_floor;
    let from_first_miss = config.detection_bound(deadline);
    let from_kill = from_first_miss + config.interval;
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    let stats = checker.stats().await?;
    println!("== liveness detection: kill -> Dead ({KILLS} kills, {RESPONDERS} responders, interval {}, retries {}, deadline {} (floor; LAN RTT is far below it))",
        ms(config.interval), config.retries, ms(deadline));
    println!(
        "  p50 {}  p99 {}  max {}  mean {}  min {}",
        ms(pct(&took, 50.0)),
        ms(pct(&took, 99.0)),
        ms(took[took.len() - 1]),
        ms(mean),
        ms(took[0])
    );
    println!(
        "  bound from first unanswered probe (retries-1) x interval + deadline = {}",
        ms(from_first_miss)
    );
    println!(
        "  bound from the kill (+ up to one interval until that probe)      = {}; expected mean {}",
        ms(from_kill),
        ms(from_first_miss + config.interval / 2)
    );
    println!(
        "  target p99 <= 350 ms: {}",
        if pct(&took, 99.0) <= Duration::from_millis(350) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  other events seen: {other}; checker: {} probes, {} replies, {} late, {} misses, {} events dropped; {:.1} s wall",
        stats.probes_sent, stats.replies, stats.late_replies, stats.misses, stats.events_dropped,
        wall.as_secs_f64()
    );
    checker.shutdown().await;
    for r in responders.into_iter().flatten() {
        r.shutdown().await;
    }
    Ok(())
}

/// CPU seconds used so far by process `pid` ("self" for this one): the sum of
/// per-thread scheduler run time (ns precision) if available, else
/// utime + stime from /proc/<pid>/stat (10 ms ticks).
fn cpu_time(pid: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    let mut found = false;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    total += Duration::from_nanos(ns);
                    found = true;
                }
            }
        }
    }
    if found {
        return Ok(total);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

async fn cpu(n: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--responders", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let child_pid = child.id().to_string();
    let out = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(out).lines();
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        let line = lines.next().context("child ended early")??;
        addrs.push(line.trim().parse::<SocketAddr>()?);
    }

    let config = LivenessConfig::default();
    let (checker, _events) = Checker::bind(config.clone(), local()).await?;
    for (i, a) in addrs.iter().enumerate() {
        checker.add(format!("n{i}"), *a).await?;
    }
    let mut state = checker.watch();
    timeout(
        Duration::from_secs(10),
        state.wait_for(|s| s.alive().count() == n),
    )
    .await
    .context("all targets alive")??;

    let s0 = checker.stats().await?;
    let (c0, k0, w0) = (cpu_time("self")?, cpu_time(&child_pid)?, Instant::now());
    let a0 = ALLOCATIONS.load(Ordering::Relaxed);
    tokio::time::sleep(CPU_WINDOW).await;
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - a0;
    let (c1, k1, wall) = (cpu_time("self")?, cpu_time(&child_pid)?, w0.elapsed());
    let s1 = checker.stats().await?;
    let share = |c: Duration| 100.0 * c.as_secs_f64() / wall.as_secs_f64();
    let used = c1 - c0;
    let probes = s1.probes_sent - s0.probes_sent;
    println!(
        "== checker CPU, {n} targets, interval {}: {:.2}% of one core ({} CPU in {:.1} s wall; {:.2} us per probe+reply)",
        ms(config.interval),
        share(used),
        ms(used),
        wall.as_secs_f64(),
        used.as_secs_f64() * 1e6 / probes.max(1) as f64
    );
    println!(
        "  window: {} probes, {} replies, {} late, {} misses, {} send errors, {} round overruns, {} heap allocations in the checker process; responders (child process): {:.2}% of one core",
        probes,
        s1.replies - s0.replies,
        s1.late_replies - s0.late_replies,
        s1.misses - s0.misses,
        s1.send_errors - s0.send_errors,
        s1.round_overruns - s0.round_overruns,
        allocs,
        share(k1 - k0)
    );
    checker.shutdown().await;
    drop(child.stdin.take()); // EOF: the child exits
    child.wait()?;
    Ok(())
}

/// Child mode: bind `n` responders, print their addresses, serve until
/// stdin closes.
fn responder_child(n: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let responders = rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Responder::bind(local()).await?);
        }
        anyhow::Ok(v)
    })?;
    {
        let mut out = std::io::stdout().lock();
        for r in &responders {
            writeln!(out, "{}", r.local_addr())?;
        }
        out.flush()?;
    }
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    rt.block_on(async {
        for r in responders {
            r.shutdown().await;
        }
    });
    Ok(())
}
