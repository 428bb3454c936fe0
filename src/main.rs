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
    /// Operator commands against a node's management API.
    #[command(flatten)]
    Mgmt(cli::mgmt::MgmtCmd),
    /// Show a node's committed shard map; `shards simulate`: shard map tools.
    #[command(args_conflicts_with_subcommands = true)]
    Shards {
        #[command(subcommand)]
        cmd: Option<cli::shards::ShardsCmd>,
        #[command(flatten)]
        list: cli::mgmt::ShardsArgs,
    },
    /// Run only the gossip layer (tests and benchmarks); prints
    /// `listening <addr>` then membership events as JSON lines.
    #[command(hide = true)]
    GossipNode(cli::gossip_node::GossipNodeArgs),
    /// Rotate the gossip encryption key on every alive member (list,
    /// install, use, remove), with one answer per node.
    Keys(cli::keys::KeysArgs),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Take followers and leaders of a local cluster down (kill -9, then
    /// kill -STOP); print p50/p99 of "down -> new map committed on every
    /// survivor", split into detection, hand-over and spread.
    Failover(cli::bench::FailoverArgs),
    /// Watch an idle local cluster (optionally beside stress-ng); print
    /// map changes and leader changes (false alarms).
    Idle(cli::bench::IdleArgs),
    /// Local clusters of 5, 25 and 50 agent processes and 100 and 250
    /// simulated nodes: form, commit and failover times, idle CPU and
    /// memory per node, bytes per epoch.
    Scale(cli::bench_scale::ScaleArgs),
    /// Flip a weight many times on a small local cluster; print each
    /// agent's data dir size and RSS at the start and the end.
    Growth(cli::bench_growth::GrowthArgs),
    /// Agents in network namespaces under a seeded schedule of kills,
    /// pauses and partitions; counts shards served by two nodes at once
    /// (needs root, iproute2 and iptables).
    Chaos(cli::chaos::ChaosArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Agent(args) => cli::agent::run(*args),
        Command::Demo(args) => cli::demo::demo(args),
        Command::Bench {
            cmd: BenchCmd::Failover(args),
        } => cli::bench::failover(args),
        Command::Bench {
            cmd: BenchCmd::Idle(args),
        } => cli::bench::idle(args),
        Command::Bench {
            cmd: BenchCmd::Scale(args),
        } => cli::bench_scale::scale(args),
        Command::Bench {
            cmd: BenchCmd::Growth(args),
        } => cli::bench_growth::growth(args),
        Command::Bench {
            cmd: BenchCmd::Chaos(args),
        } => cli::chaos::run(args),
        Command::Mgmt(cmd) => cli::mgmt::run(cmd),
        Command::Shards { cmd: Some(cmd), .. } => cli::shards::run(cmd),
        Command::Shards { cmd: None, list } => cli::mgmt::run_shards(list),
        Command::GossipNode(args) => cli::gossip_node::run(args),
        Command::Keys(args) => cli::keys::run(args),
    }
}
