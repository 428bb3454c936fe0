//! A small sharded key-value store on clusterfunk, and its load client.
//!
//! Each node keeps the keys of its shards in sled under `--data-dir`
//! (`kv/`; Raft's log is in `raft/`), serves the shards it may serve and
//! forwards the rest to their owner (`Routes::forward`). Shards are handed
//! off on every move: the releasing node stops writing (the hand-off hook
//! waits for writes in flight before the node acknowledges), and the new
//! owner pulls the shard's keys from it before it serves them; meanwhile
//! requests for the shard answer `RETRY`.
//!
//! Three nodes and a load on one machine (each in its own shell):
//!
//! ```text
//! cargo run --example kv -- serve --node-id a --data-dir /tmp/kv/a --kv 127.0.0.1:9001
//! cargo run --example kv -- serve --node-id b --data-dir /tmp/kv/b --join GOSSIP_OF_A
//! cargo run --example kv -- serve --node-id c --data-dir /tmp/kv/c --join GOSSIP_OF_A
//! printf 'SET colour blue\nGET colour\n' | nc -q1 127.0.0.1 9001
//! cargo run --example kv -- load --members MANAGEMENT_OF_A --seconds 10 --rate 500
//! ```
//!
//! Each node prints one JSON line when ready (its kv, gossip and management
//! addresses). The load client prints one JSON summary: throughput,
//! latency p50/p99, errors, lost acknowledged writes and stale reads.

mod load;
mod server;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use clusterfunk::cluster::{handoff, HandoffSettings, Seams};
use clusterfunk::config::StorageConfig;
use clusterfunk::{Agent, Config};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a kv node.
    Serve(ServeArgs),
    /// Write and read keys through the nodes and check every write.
    Load(load::LoadArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Unique node id.
    #[arg(long)]
    node_id: String,
    /// Where the node keeps its keys and its Raft log.
    #[arg(long)]
    data_dir: PathBuf,
    /// The key-value listener.
    #[arg(long, default_value = "127.0.0.1:0")]
    kv: SocketAddr,
    /// Gossip address.
    #[arg(long, default_value = "127.0.0.1:0")]
    gossip: SocketAddr,
    /// Gossip addresses of running nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    /// Cluster name.
    #[arg(long, default_value = "kv")]
    cluster: String,
    /// Shards (fixed for the cluster's life).
    #[arg(long, default_value_t = 1000)]
    shards: u32,
    /// Nodes that must see each other before the cluster bootstraps.
    #[arg(long, default_value_t = 3)]
    bootstrap_expect: usize,
    /// Address of the Raft, liveness, management and metrics listeners.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Address other nodes reach this one at (needed with `--bind 0.0.0.0`).
    #[arg(long)]
    advertise: Option<IpAddr>,
    /// Management API port (0: from the OS).
    #[arg(long, default_value_t = 0)]
    management_port: u16,
    /// Port of `/metrics` and the status page (none by default).
    #[arg(long)]
    metrics_port: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match Args::parse().cmd {
        Cmd::Serve(a) => serve(a).await,
        Cmd::Load(a) => load::run(a).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = store::Store::open(&args.data_dir.join("kv"), args.shards)?;
    let mut config = Config::local(args.node_id.clone());
    config.cluster_name = args.cluster;
    config.gossip_addr = args.gossip;
    config.join = args.join;
    config.shard_count = args.shards;
    config.bootstrap_expect = args.bootstrap_expect;
    config.storage = StorageConfig::DataDir(args.data_dir.join("raft"));
    config.raft_addr = SocketAddr::new(args.bind, 0);
    config.liveness_addr = SocketAddr::new(args.bind, 0);
    config.management_addr = Some(SocketAddr::new(args.bind, args.management_port));
    config.metrics_addr = args.metrics_port.map(|p| SocketAddr::new(args.bind, p));
    config.advertise_host = args.advertise;
    // Pulls take a moment: leave the release hook room under ack_timeout.
    config.ack_timeout = Duration::from_secs(1);
    config.drain_timeout = Duration::from_secs(15);
    // Bound first, so `ep.kv` is in the node's first gossip tags.
    let listener = TcpListener::bind(args.kv).await?;
    let kv_addr = config.advertised(listener.local_addr()?);
    config.endpoints.insert("kv".into(), kv_addr);
    let mut settings = HandoffSettings::new("kv");
    settings.release_deadline = Duration::from_millis(500);
    let (reg, events) = handoff(settings);
    let agent = Agent::start_with_handoff(config, Seams::default(), reg).await?;
    let node = server::Node::new(agent.cluster().clone(), store);
    tokio::spawn(node.clone().handoff(events));
    tokio::spawn(node.clone().serve(listener));
    let eps = agent.local_endpoints();
    let ready = serde_json::json!({
        "ready": args.node_id,
        "kv": kv_addr.to_string(),
        "gossip": eps.get("gossip").map(ToString::to_string),
        "management": eps.get("management").map(ToString::to_string),
        "keys": node.store.len(),
    });
    println!("{ready}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Drain (every shard moves away through the hand-off), then keep
    // answering pulls until the new owners have our shards.
    agent.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node.owed.lock().map(|o| o.is_empty()).unwrap_or(true)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let owed = node.owed.lock().map(|o| o.len()).unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({ "stopped": node.cluster.node_id(), "owed": owed })
    );
    Ok(())
}
