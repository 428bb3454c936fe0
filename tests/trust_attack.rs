//! Hostile input on every port of a 3-node encrypted cluster, in-process on
//! loopback: idle connections, oversized and stalled frames, random and
//! mutated datagrams; idle and half-open connections, and clients that
//! made one call and went idle, on the management port while an
//! operator's call must still get through. Afterwards every node is Operational with the same
//! map, `/metrics` answered throughout, the process's resident memory
//! stayed under [`RSS_BOUND_MB`], and the counters show the bad input.
//!
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clusterfunk::management::Client;
use clusterfunk::{Agent, Cluster, Config, NodeState};
use common::secure::{counter, keyed, labeled};
use common::wait::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// Peak resident memory of the whole test process (three nodes and the
/// attacker) must stay below this. Without the bounds, one burst of 128
/// declared 16 MiB gossip frames alone took a node to ~900 MB.
const RSS_BOUND_MB: u64 = 200;
/// Idle connections opened to the Raft port (its cap is 1024).
const RAFT_IDLE: usize = 1200;
/// Idle connections opened to each gossip stream port (cap 64).
const GOSSIP_IDLE: usize = 100;
/// Idle connections opened to the metrics port (cap 256).
const METRICS_IDLE: usize = 300;
/// Idle connections opened to the management port (cap 256), and ones
/// that stop half way through the HTTP/2 preface.
const MANAGEMENT_IDLE: usize = 300;
const MANAGEMENT_SLOW: usize = 8;
/// Clients that make one management call and then stay connected, idle.
/// The port has no token, so their call proves their connection.
const MANAGEMENT_CALLERS: usize = 300;
/// The management port's connection cap (`ListenerLimits::management`).
const MANAGEMENT_CAP: usize = 256;
/// Random datagrams sent to each gossip and each liveness port.
const DATAGRAMS: usize = 10_000;

const KEY: [u8; 32] = [0x42; 32];

fn config(name: &str, seeds: &[String]) -> Config {
    let mut c = keyed(name, "attack", Some(&KEY));
    c.join = seeds.to_vec();
    c
}

fn vm_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn epoch_and_owners(c: &Cluster) -> Option<(u64, BTreeSet<String>)> {
    let m = c.shard_map();
    let m = m.borrow();
    let m = m.as_ref()?;
    let owners = m
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(n, _)| n.to_string())
        .collect();
    Some((m.epoch(), owners))
}

async fn converged(nodes: &[Agent]) {
    wait_until("every node operational with the same map", || {
        let first = epoch_and_owners(&nodes[0]);
        first.as_ref().is_some_and(|(_, o)| o.len() == nodes.len())
            && nodes
                .iter()
                .all(|n| n.state() == NodeState::Operational && epoch_and_owners(n) == first)
    })
    .await;
}

/// One `GET /metrics` with `Connection: close`; true on a 200.
async fn scrape(addr: SocketAddr) -> bool {
    let go = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(5), go)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// How many of `conns` the server closed (end of stream or reset).
fn closed_by_peer(conns: &[TcpStream]) -> usize {
    let mut buf = [0u8; 64];
    conns
        .iter()
        .filter(|s| loop {
            match s.try_read(&mut buf) {
                Ok(0) => break true,
                // Server bytes (a SETTINGS frame): read on.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        })
        .count()
}

async fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(s) = TcpStream::connect(addr).await {
            v.push(s);
        }
    }
    v
}

/// A tiny xorshift, so the test needs no seed handling.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random datagrams, half of them with a valid gossip header (magic,
/// version, any type) in front so they get past the first check.
async fn spray(to: SocketAddr, n: usize, rng: &mut Rng) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    for i in 0..n {
        let len = (rng.next() % 1400) as usize;
        let mut d = rng.bytes(len);
        if i % 2 == 0 && d.len() >= 4 {
            d[..3].copy_from_slice(b"cf\x01");
        }
        let _ = sock.send_to(&d, to).await;
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_on_every_port_leaves_the_cluster_working() {
    let n0 = Agent::start(config("n0", &[])).await.expect("n0");
    let seed = n0.local_endpoints()["gossip"].to_string();
    let mut nodes = vec![n0];
    for i in 1..3 {
        let c = Agent::start(config(&format!("n{i}"), std::slice::from_ref(&seed)))
            .await
            .expect("start");
        nodes.push(c);
    }
    converged(&nodes).await;
    let (epoch_before, _) = epoch_and_owners(&nodes[0]).expect("map");
    let rss_start = vm_rss_kb();

    // Background: RSS sampler and a scraper of n0's /metrics.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kb(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let metrics_addr = nodes[0].local_endpoints()["metrics"];
    let scraper = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0u32, 0u32, Duration::ZERO);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                if scrape(metrics_addr).await {
                    ok += 1;
                } else {
                    failed += 1;
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed, slowest)
        })
    };

    let mut held = Vec::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let attack_started = Instant::now();
    for n in &nodes {
        let gossip = n.local_endpoints()["gossip"];
        // Gossip stream port: idle connections, frames declaring 4 GiB, and
        // frames declaring the 8 MiB maximum that stall after 512 KiB.
        held.extend(open_idle(gossip, GOSSIP_IDLE).await);
        for _ in 0..32 {
            if let Ok(mut s) = TcpStream::connect(gossip).await {
                let mut h = b"cf\x01\x22".to_vec();
                h.extend_from_slice(&u32::MAX.to_be_bytes());
                let _ = s.write_all(&h).await;
                held.push(s);
            }
        }
        for _ in 0..32 {
            if let Ok(mut s) = TcpStream::connect(gossip).await {
                let mut h = b"cf\x01\x11".to_vec();
                h.extend_from_slice(&(8u32 * 1024 * 1024).to_be_bytes());
                h.extend(rng.bytes(512 * 1024));
                let _ = s.write_all(&h).await;
                held.push(s);
            }
        }
        // Datagrams to gossip and liveness.
        spray(gossip, DATAGRAMS, &mut rng).await;
        spray(n.local_endpoints()["liveness"], DATAGRAMS, &mut rng).await;
    }
    // Raft port of the leader-to-be-attacked (n0): idle connections beyond
    // the cap, and junk that is not HTTP/2.
    let raft = nodes[0].local_endpoints()["raft"];
    held.extend(open_idle(raft, RAFT_IDLE).await);
    for _ in 0..16 {
        if let Ok(mut s) = TcpStream::connect(raft).await {
            let _ = s.write_all(&rng.bytes(256 * 1024)).await;
            held.push(s);
        }
    }
    // Metrics port: idle connections beyond the cap, and a header that
    // never ends.
    held.extend(open_idle(metrics_addr, METRICS_IDLE).await);
    for _ in 0..8 {
        if let Ok(mut s) = TcpStream::connect(metrics_addr).await {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Junk: ").await;
            let _ = s.write_all(&vec![b'a'; 64 * 1024]).await;
            held.push(s);
        }
    }
    // Management port: idle connections beyond the cap, and prefaces that
    // stop half way.
    let mgmt = nodes[0].local_endpoints()["management"];
    let mut mgmt_held = open_idle(mgmt, MANAGEMENT_IDLE).await;
    for _ in 0..MANAGEMENT_SLOW {
        if let Ok(mut s) = TcpStream::connect(mgmt).await {
            let _ = s.write_all(b"PRI * HTTP/2.0\r\n").await;
            mgmt_held.push(s);
        }
    }
    let mut callers = Vec::new();
    for _ in 0..MANAGEMENT_CALLERS {
        if let Ok(c) = Client::connect(&mgmt.to_string(), None, None).await {
            if c.status().await.is_ok() {
                callers.push(c);
            }
        }
    }
    let held_count = held.len() + mgmt_held.len() + callers.len();

    // While all of that is open, the bounds act: wait for the evidence.
    // The bounds' counters, as the nodes export them.
    const REJECTED: &str = "clusterfunk_gossip_stream_rejections_total";
    wait_until("raft port evicted idle connections", || {
        labeled(
            &nodes[0],
            "clusterfunk_raft_connections_closed_total",
            "evicted",
        ) > 0
    })
    .await;
    wait_until("gossip stream bounds acted on every node", || {
        nodes.iter().all(|n| {
            labeled(n, REJECTED, "too_large") > 0
                && labeled(n, REJECTED, "timeout") + labeled(n, REJECTED, "evicted_idle") > 0
                && counter(n, "clusterfunk_gossip_decryption_failures_total") > 0
        })
    })
    .await;
    // A real scrape gets through while every attack connection is open,
    // and so does an operator's management call.
    assert!(scrape(metrics_addr).await, "/metrics denied under attack");
    let call = tokio::time::timeout(Duration::from_secs(5), async {
        let c = Client::connect(&mgmt.to_string(), None, None).await?;
        c.status().await
    })
    .await;
    assert!(
        matches!(call, Ok(Ok(ref s)) if s.node_id == "n0"),
        "management call denied under attack: {call:?}"
    );
    // The management port held no more than its cap: the server closed
    // the idle connections beyond it (without bounds it closes none).
    let must_close = mgmt_held.len() + 1 - MANAGEMENT_CAP;
    wait_until(
        "management port closed the connections beyond its cap",
        || closed_by_peer(&mgmt_held) >= must_close,
    )
    .await;
    let mgmt_closed = closed_by_peer(&mgmt_held);
    drop(held);
    drop(mgmt_held);
    drop(callers);
    let attack_time = attack_started.elapsed();

    // Afterwards: the cluster works and did not move.
    converged(&nodes).await;
    done.store(true, Ordering::Relaxed);
    let (ok, failed, slowest) = scraper.await.expect("scraper");
    sampler.await.expect("sampler");
    let peak_mb = peak.load(Ordering::Relaxed) / 1024;

    let mut report = Vec::new();
    for n in &nodes {
        // Counters are exported on the node's periodic refresh.
        common::wait::wait_until_async("counters exported", || async {
            counter(n, "clusterfunk_gossip_decryption_failures_total") > 0
                && counter(n, "clusterfunk_liveness_bad_packets_total") > 0
                && counter(n, "clusterfunk_gossip_stream_rejections_total") > 0
        })
        .await;
        report.push(format!(
            "{}: decrypt_failures={} bad_packets={} too_large={} budget={} timeouts={} busy={} evicted={} liveness_bad={}",
            n.node_id(),
            counter(n, "clusterfunk_gossip_decryption_failures_total"),
            counter(n, "clusterfunk_gossip_undecodable_packets_total"),
            labeled(n, REJECTED, "too_large"),
            labeled(n, REJECTED, "budget"),
            labeled(n, REJECTED, "timeout"),
            labeled(n, REJECTED, "busy"),
            labeled(n, REJECTED, "evicted_idle"),
            counter(n, "clusterfunk_liveness_bad_packets_total"),
        ));
    }
    let raft_closed = |reason| {
        labeled(
            &nodes[0],
            "clusterfunk_raft_connections_closed_total",
            reason,
        )
    };
    let rc = (
        raft_closed("evicted"),
        raft_closed("refused"),
        raft_closed("timed_out"),
    );
    common::wait::wait_until_async("management bounds exported", || async {
        labeled(
            &nodes[0],
            "clusterfunk_management_connections_closed_total",
            "evicted",
        ) > 0
    })
    .await;
    let mgmt_evicted = labeled(
        &nodes[0],
        "clusterfunk_management_connections_closed_total",
        "evicted",
    );
    println!(
        "attack: {held_count} connections held, {} datagrams, {:?}; rss start {} MB, peak {peak_mb} MB (bound {RSS_BOUND_MB}); \
         /metrics {ok} ok, {failed} failed, slowest {slowest:?}; raft n0 closed (evicted, refused, timed out) {rc:?}",
        DATAGRAMS * 2 * nodes.len(),
        attack_time,
        rss_start / 1024,
    );
    for r in &report {
        println!("  {r}");
    }
    println!(
        "  management n0: {mgmt_closed} of {} attack connections closed by the server, evicted={mgmt_evicted}",
        MANAGEMENT_IDLE + MANAGEMENT_SLOW
    );

    assert_eq!(failed, 0, "/metrics failed during the attack");
    assert!(ok > 0);
    assert!(peak_mb < RSS_BOUND_MB, "peak RSS {peak_mb} MB");
    assert!(rc.0 > 0, "{rc:?}");
    let (epoch_after, _) = epoch_and_owners(&nodes[0]).expect("map");
    assert_eq!(epoch_after, epoch_before, "the attack moved shards");
    for n in nodes {
        n.stop().await;
    }
}
