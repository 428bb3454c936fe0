//! `clusterfunk shards ...`: shard-map tools for people.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ShardsCmd {
    /// Show how many shards move when nodes join or leave.
    Simulate {
        /// Number of shards.
        #[arg(long, default_value_t = clusterfunk::shards::DEFAULT_SHARD_COUNT)]
        shards: u32,
        /// Initial number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u32,
        /// Nodes (weight 1) that join.
        #[arg(long, default_value_t = 0)]
        add: u32,
        /// Initial nodes that leave (the last ones).
        #[arg(long, default_value_t = 0)]
        remove: u32,
        /// Weights of the initial nodes, comma-separated (default: all 1).
        #[arg(long, value_delimiter = ',')]
        weights: Option<Vec<u32>>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ShardsCmd) -> anyhow::Result<()> {
    match cmd {
        ShardsCmd::Simulate {
            shards,
            nodes,
            add,
            remove,
            weights,
            json,
        } => {
            let params = clusterfunk::shards::SimulateParams {
                shards,
                nodes,
                add,
                remove,
                weights,
            };
            let report = clusterfunk::shards::simulate(&params)?;
            let text = if json {
                serde_json::to_string_pretty(&report)?
            } else {
                report.to_string()
            };
            // Not `println!`, which panics when the reader (`| head`) has
            // gone: a closed pipe ends the command quietly.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}
