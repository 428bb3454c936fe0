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
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
