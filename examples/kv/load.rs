//! The load client: writes and reads keys through the kv nodes at a set
//! rate, checks every read against what was acknowledged, verifies every
//! acknowledged write at the end and prints one JSON summary.
//!
//! It is not a member: a `ClusterClient` streams the committed map and
//! endpoints from any member's management API. Each worker owns its keys
//! and runs one request at a time, so for each key the client knows the
//! last acknowledged value and the values whose writes failed (which may
//! or may not have been applied). A read that returns anything else is
//! stale; at the end, an acknowledged value that cannot be read back is a
//! lost write.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterfunk::client::{ClientAuth, ClusterClient};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Clone)]
pub struct LoadArgs {
    /// Management addresses of one or more members.
    #[arg(long, value_delimiter = ',', required = true)]
    members: Vec<String>,
    /// Requests per second, all workers together.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Run this long (0: until stdin closes).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Keys per worker.
    #[arg(long, default_value_t = 50)]
    keys: usize,
    /// Send each request to its owner instead of a random node.
    #[arg(long)]
    direct: bool,
    /// Prefix of this run's keys (default: random), so runs never see
    /// each other's values.
    #[arg(long)]
    run: Option<String>,
}

#[derive(Default)]
struct Key {
    acked: Option<String>,
    /// Values written since the last acknowledgement whose write failed.
    maybe: Vec<String>,
}

impl Key {
    fn allows(&self, read: Option<&str>) -> bool {
        match read {
            None => self.acked.is_none(),
            Some(v) => self.acked.as_deref() == Some(v) || self.maybe.iter().any(|m| m == v),
        }
    }
}

#[derive(Default)]
struct Tally {
    writes: u64,
    reads: u64,
    errors: u64,
    stale: u64,
    lost: u64,
    unverified: u64,
    latencies_us: Vec<u64>,
}

struct Conns {
    client: ClusterClient,
    direct: bool,
    open: HashMap<
        String,
        (
            BufReader<tokio::net::tcp::OwnedReadHalf>,
            tokio::net::tcp::OwnedWriteHalf,
        ),
    >,
}

impl Conns {
    fn target(&self, key: &str, direct: bool) -> Option<String> {
        let view = self.client.view()?;
        if direct {
            let owner = self.client.owner_of(key.as_bytes())?;
            return self.client.endpoint(&owner, "kv");
        }
        let all: Vec<&String> = view
            .endpoints
            .values()
            .filter_map(|e| e.get("kv"))
            .collect();
        if all.is_empty() {
            return None;
        }
        Some(all[rand::thread_rng().gen_range(0..all.len())].clone())
    }

    async fn call(&mut self, addr: &str, line: &str) -> anyhow::Result<String> {
        if !self.open.contains_key(addr) {
            let c = TcpStream::connect(addr).await?;
            c.set_nodelay(true)?;
            let (r, w) = c.into_split();
            self.open.insert(addr.to_string(), (BufReader::new(r), w));
        }
        let r = async {
            let (r, w) = self
                .open
                .get_mut(addr)
                .ok_or_else(|| anyhow::anyhow!("gone"))?;
            w.write_all(format!("{line}\n").as_bytes()).await?;
            let mut reply = String::new();
            if r.read_line(&mut reply).await? == 0 {
                anyhow::bail!("connection closed");
            }
            Ok(reply.trim_end().to_string())
        };
        let r = tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timeout")));
        if r.is_err() {
            self.open.remove(addr);
        }
        r
    }

    /// One request, retried for a while on RETRY (shard in hand-off) and
    /// on a refused connection (node restarting). Errors are final.
    async fn request(&mut self, key: &str, line: &str) -> anyhow::Result<String> {
        self.request_at(key, line, self.direct).await
    }

    /// [`request`](Self::request), to the key's owner when `direct`.
    async fn request_at(&mut self, key: &str, line: &str, direct: bool) -> anyhow::Result<String> {
        let mut last = anyhow::anyhow!("no kv endpoint known");
        for _ in 0..40 {
            if let Some(addr) = self.target(key, direct) {
                match self.call(&addr, line).await {
                    Ok(r) if r.starts_with("RETRY") || r.starts_with("NOTOWNER") => {
                        last = anyhow::anyhow!("{r}")
                    }
                    Ok(r) => return Ok(r),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }
}

async fn worker(w: usize, args: LoadArgs, client: ClusterClient, stop: Arc<AtomicBool>) -> Tally {
    let run = args.run.clone().unwrap_or_default();
    let mut conns = Conns {
        client,
        direct: args.direct,
        open: HashMap::new(),
    };
    let mut keys: Vec<Key> = (0..args.keys).map(|_| Key::default()).collect();
    let mut t = Tally::default();
    let every = Duration::from_secs_f64(args.workers as f64 / f64::from(args.rate.max(1)));
    let mut next = tokio::time::Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        next += every;
        tokio::time::sleep_until(next).await;
        n += 1;
        let i = rand::thread_rng().gen_range(0..args.keys);
        let name = format!("{run}w{w}-k{i}");
        let started = Instant::now();
        if n % 2 == 1 {
            let value = format!("v{n}");
            match conns.request(&name, &format!("SET {name} {value}")).await {
                Ok(r) if r == "OK" => {
                    t.writes += 1;
                    keys[i].acked = Some(value);
                    keys[i].maybe.clear();
                    t.latencies_us.push(started.elapsed().as_micros() as u64);
                }
                _ => {
                    t.errors += 1;
                    keys[i].maybe.push(value);
                }
            }
        } else {
            match conns.request(&name, &format!("GET {name}")).await {
                Ok(r) if r == "NOTFOUND" || r.starts_with("VAL ") => {
                    t.reads += 1;
                    t.latencies_us.push(started.elapsed().as_micros() as u64);
                    if !keys[i].allows(r.strip_prefix("VAL ")) {
                        t.stale += 1;
                        eprintln!("stale read of {name}: got {r}");
                    }
                }
                _ => t.errors += 1,
            }
        }
    }
    // Every acknowledged write must still be there, on the key's committed
    // owner: a request marked as forwarded the most times is served only
    // by a node that serves the shard itself (`NOTOWNER` otherwise).
    let local_only = format!("FWD 0 {}", clusterfunk::routing::MAX_HOPS);
    for (i, k) in keys.iter().enumerate() {
        let name = format!("{run}w{w}-k{i}");
        if k.acked.is_none() && k.maybe.is_empty() {
            continue;
        }
        let line = format!("{local_only} GET {name}");
        match conns.request_at(&name, &line, true).await {
            Ok(r) if r == "NOTFOUND" || r.starts_with("VAL ") => {
                if !k.allows(r.strip_prefix("VAL ")) {
                    t.lost += 1;
                    eprintln!("lost write of {name}: acked {:?}, read {r}", k.acked);
                }
            }
            _ => t.unverified += 1,
        }
    }
    t
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub async fn run(mut args: LoadArgs) -> anyhow::Result<()> {
    if args.run.is_none() {
        args.run = Some(format!("{:08x}-", rand::random::<u32>()));
    }
    let client = ClusterClient::start(args.members.clone(), ClientAuth::default())?;
    client.wait_for_map(0, Duration::from_secs(30)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.workers)
        .map(|w| tokio::spawn(worker(w, args.clone(), client.clone(), stop.clone())))
        .collect();
    if args.seconds == 0 {
        // Until stdin closes (the test harness holds it open).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
    } else {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let ran = started.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for w in workers {
        let t = w.await?;
        total.writes += t.writes;
        total.reads += t.reads;
        total.errors += t.errors;
        total.stale += t.stale;
        total.lost += t.lost;
        total.unverified += t.unverified;
        total.latencies_us.extend(t.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let summary = serde_json::json!({
        "writes_ok": total.writes,
        "reads_ok": total.reads,
        "errors": total.errors,
        "lost_writes": total.lost,
        "stale_reads": total.stale,
        "unverified": total.unverified,
        "ops_per_s": ((total.writes + total.reads) as f64 / ran).round(),
        "p50_ms": percentile(&total.latencies_us, 0.50),
        "p99_ms": percentile(&total.latencies_us, 0.99),
        "direct": args.direct,
        "epoch": client.epoch(),
    });
    println!("{summary}");
    Ok(())
}
