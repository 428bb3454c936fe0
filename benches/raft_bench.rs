//! Raft timing benchmark: three nodes in one process over loopback tonic.
//!
//! Prints, for sled and for in-memory storage, the commit latency (p50/p99)
//! and throughput of one sequential writer, then the leader failover time
//! (p50/p99) over repeated leader stops with sled storage: stop the leader,
//! time until a survivor is leader, restart the stopped node, repeat; with
//! the default timing and with a tighter one (20 ms heartbeat, 60-120 ms
//! election timeout).
//!
//! Run: `cargo bench --bench raft_bench`
//! Knobs: RAFT_BENCH_WRITES (default 2000), RAFT_BENCH_ROUNDS (default 20).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clusterfunk::raft::{Command, Network, RaftConfig, RaftNode, RaftNodeInfo, Response, Storage};
use tempfile::TempDir;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sled,
    Memory,
}

struct Slot {
    id: u64,
    addr: String,
    dir: PathBuf,
}

struct Cluster {
    kind: Kind,
    config: RaftConfig,
    slots: Vec<Slot>,
    nodes: Vec<Option<RaftNode>>,
    _tmp: TempDir,
}

impl Cluster {
    async fn start(kind: Kind, n: u64, config: RaftConfig) -> anyhow::Result<Cluster> {
        let tmp = TempDir::new()?;
        let mut c = Cluster {
            kind,
            config,
            slots: Vec::new(),
            nodes: Vec::new(),
            _tmp: tmp,
        };
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?.to_string();
            let dir = c._tmp.path().join(format!("n{id}"));
            c.slots.push(Slot { id, addr, dir });
            let node = c.launch(c.slots.len() - 1, listener).await?;
            c.nodes.push(Some(node));
        }
        let members: BTreeMap<u64, RaftNodeInfo> = c
            .slots
            .iter()
            .map(|s| {
                (
                    s.id,
                    RaftNodeInfo::new(format!("n{}", s.id), s.addr.clone()),
                )
            })
            .collect();
        c.node(0)?.initialize(members).await?;
        c.leader().await?;
        Ok(c)
    }

    async fn launch(&self, i: usize, listener: TcpListener) -> anyhow::Result<RaftNode> {
        let s = &self.slots[i];
        let storage = match self.kind {
            Kind::Sled => Storage::Sled(s.dir.clone()),
            Kind::Memory => Storage::Memory,
        };
        let node = RaftNode::start(
            s.id,
            RaftNodeInfo::new(format!("n{}", s.id), s.addr.clone()),
            self.config.clone(),
            storage,
            Network::grpc(&self.config),
            None,
        )
        .await?;
        node.serve(listener)?;
        Ok(node)
    }

    fn node(&self, i: usize) -> anyhow::Result<&RaftNode> {
        self.nodes[i]
            .as_ref()
            .ok_or_else(|| anyhow!("node {i} is stopped"))
    }

    /// Waits until a running node is leader and every running node agrees.
    async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let live: Vec<(usize, &RaftNode)> = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
                .collect();
            if let Some((i, l)) = live.iter().find(|(_, n)| n.is_leader()) {
                if live
                    .iter()
                    .all(|(_, n)| n.leader().map(|(id, _)| id) == Some(l.id()))
                {
                    return Ok(*i);
                }
            }
            let mut rxs: Vec<_> = live.iter().map(|(_, n)| n.metrics()).collect();
            let changes = rxs.iter_mut().map(|m| Box::pin(m.changed()));
            if tokio::time::timeout_at(deadline, futures::future::select_all(changes))
                .await
                .is_err()
            {
                bail!("no agreed leader within {WAIT:?}");
            }
        }
    }

    async fn shutdown(mut self) -> anyhow::Result<()> {
        for n in self.nodes.iter_mut() {
            if let Some(n) = n.take() {
                n.shutdown().await?;
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn commit_latency(kind: Kind, writes: usize) -> anyhow::Result<()> {
    let label = match kind {
        Kind::Sled => "sled",
        Kind::Memory => "memory",
    };
    let cluster = Cluster::start(kind, 3, bench_config()).await?;
    let leader = cluster.node(cluster.leader().await?)?;
    // A shard map of realistic size for a few hundred shards.
    let map = Bytes::from(vec![7u8; 512]);
    // Warm up connections.
    for e in 1..=20u64 {
        leader
            .client_write(Command::Propose {
                epoch: e,
                map: map.clone(),
            })
            .await?;
    }
    let mut lat = Vec::with_capacity(writes);
    let start = Instant::now();
    for i in 0..writes {
        let epoch = 100 + i as u64;
        let t = Instant::now();
        let r = leader
            .client_write(Command::Propose {
                epoch,
                map: map.clone(),
            })
            .await?;
        lat.push(t.elapsed());
        if r != (Response::Proposed { epoch }) {
            bail!("unexpected response {r:?}");
        }
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "commit latency [{label}] 3 nodes, 1 sequential writer, {writes} writes of 512 B: p50 {} p99 {} max {} | throughput {:.0} writes/s",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat[lat.len() - 1]),
        writes as f64 / total.as_secs_f64()
    );
    cluster.shutdown().await
}

fn bench_config() -> RaftConfig {
    RaftConfig {
        cluster_name: "bench".into(),
        ..RaftConfig::default()
    }
}

async fn failover(rounds: usize, config: RaftConfig) -> anyhow::Result<()> {
    let label = format!(
        "heartbeat {} ms, vote lease {} ms, election timeout {}-{} ms",
        config.heartbeat_interval.as_millis(),
        config.vote_lease.as_millis(),
        config.election_timeout_min.as_millis(),
        config.election_timeout_max.as_millis()
    );
    let mut cluster = Cluster::start(Kind::Sled, 3, config).await?;
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let l = cluster.leader().await?;
        // Make sure the cluster is healthy and the leader has work behind it.
        cluster
            .node(l)?
            .client_write(Command::Propose {
                epoch: round as u64 + 1,
                map: Bytes::from_static(b"m"),
            })
            .await?;
        // Let every node catch up (the node restarted last round may lag):
        // a lagging candidate's rejected vote request delays the others'
        // elections, which is a different scenario from a clean leader stop.
        let last = cluster.node(l)?.metrics().borrow().last_log_index;
        for n in cluster.nodes.iter().flatten() {
            n.raft()
                .wait(Some(WAIT))
                .applied_index_at_least(last, "caught up before the stop")
                .await?;
        }
        let old = cluster.nodes[l]
            .take()
            .ok_or_else(|| anyhow!("leader slot empty"))?;
        let old_id = old.id();
        let t0 = Instant::now();
        let (stopped, elected) = tokio::join!(old.shutdown(), async {
            let nl = cluster.leader().await?;
            Ok::<_, anyhow::Error>((nl, t0.elapsed()))
        });
        stopped?;
        let (nl, took) = elected.with_context(|| format!("round {round}"))?;
        if cluster.node(nl)?.id() == old_id {
            bail!("round {round}: the stopped node is still leader");
        }
        times.push(took);
        tracing::info!(
            round,
            took_ms = took.as_millis() as u64,
            old = old_id,
            new = cluster.node(nl)?.id(),
            "failover"
        );
        drop(old);
        // Restart the stopped node from its sled directory, same address,
        // and let it rejoin before the next round.
        let listener = TcpListener::bind(&cluster.slots[l].addr).await?;
        let node = cluster.launch(l, listener).await?;
        cluster.nodes[l] = Some(node);
        cluster.leader().await?;
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    println!(
        "leader failover [sled] 3 nodes, {rounds} leader stops ({label}): p50 {} p99 {} min {} max {} mean {}",
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.99)),
        ms(times[0]),
        ms(times[times.len() - 1]),
        ms(mean)
    );
    cluster.shutdown().await
}

fn main() -> anyhow::Result<()> {
    let writes = env_usize("RAFT_BENCH_WRITES", 2000).max(1);
    let rounds = env_usize("RAFT_BENCH_ROUNDS", 20).max(1);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        commit_latency(Kind::Sled, writes).await?;
        commit_latency(Kind::Memory, writes).await?;
        // Defaults, then a tighter LAN setting to show how failover scales
        // (a quiet follower waits the vote lease plus the random election
        // timeout after the last heartbeat).
        failover(rounds, bench_config()).await?;
        failover(
            rounds,
            RaftConfig {
                heartbeat_interval: Duration::from_millis(20),
                vote_lease: Duration::from_millis(80),
                election_timeout_min: Duration::from_millis(60),
                election_timeout_max: Duration::from_millis(120),
                ..bench_config()
            },
        )
        .await
    })
}
