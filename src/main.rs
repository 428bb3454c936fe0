//! The `clusterfunk` command: parses flags and calls the library.

use clap::{Parser, Subcommand};

/// Raft-plus-gossip cluster coordinator.
#[derive(Parser)]
#[command(name = "clusterfunk", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run only the gossip layer (tests and benchmarks); prints
    /// `listening <addr>` then membership events as JSON lines.
    #[command(hide = true)]
    GossipNode(GossipNodeArgs),
}

#[derive(clap::Args)]
struct GossipNodeArgs {
    /// Unique node name.
    #[arg(long)]
    name: String,
    /// UDP+TCP bind address.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: std::net::SocketAddr,
    /// Addresses of members to join.
    #[arg(long, num_args = 0..)]
    join: Vec<std::net::SocketAddr>,
    /// Protocol preset: local, lan or wan.
    #[arg(long, default_value = "lan")]
    preset: clusterfunk::gossip::node::Preset,
    /// Tags as key=value (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Snapshot file of known peers, rejoined on restart.
    #[arg(long)]
    snapshot: Option<std::path::PathBuf>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("tag {s:?} is not key=value"))
}

fn gossip_node(args: GossipNodeArgs) -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries the JSON lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // One thread is plenty for gossip and keeps an idle node small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let opts = clusterfunk::gossip::node::NodeOptions {
            name: args.name,
            bind: args.bind,
            join: args.join,
            preset: args.preset,
            tags: args.tags.into_iter().collect(),
            leave_timeout: std::time::Duration::from_secs(5),
            snapshot: args.snapshot,
        };
        clusterfunk::gossip::node::run(opts, tokio::io::stdout(), shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::GossipNode(args) => gossip_node(args),
    }
}
