//! The `clusterfunk` command: parses flags and calls the library.

mod cli;

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
    /// Shard map tools.
    Shards {
        #[command(subcommand)]
        cmd: cli::shards::ShardsCmd,
    },
    /// Run only the gossip layer (tests and benchmarks); prints
    /// `listening <addr>` then membership events as JSON lines.
    #[command(hide = true)]
    GossipNode(cli::gossip_node::GossipNodeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Shards { cmd } => cli::shards::run(cmd),
        Command::GossipNode(args) => cli::gossip_node::run(args),
    }
}
