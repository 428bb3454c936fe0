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
    /// Run a node until SIGTERM/Ctrl-C (then leave gracefully).
    Agent(Box<cli::agent::AgentArgs>),
    /// Start a local cluster, kill a follower and the leader, restart them.
    Demo(cli::demo::DemoArgs),
    /// Benchmarks that need a running cluster.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
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

#[derive(Subcommand)]
enum BenchCmd {
    /// Kill followers and leaders of a local cluster; print p50/p99 of
    /// "kill -9 -> new map committed on every survivor".
    Failover(cli::demo::FailoverArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Agent(args) => cli::agent::run(*args),
        Command::Demo(args) => cli::demo::demo(args),
        Command::Bench {
            cmd: BenchCmd::Failover(args),
        } => cli::demo::failover(args),
        Command::Shards { cmd } => cli::shards::run(cmd),
        Command::GossipNode(args) => cli::gossip_node::run(args),
    }
}
