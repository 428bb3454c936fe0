//! `clusterfunk gossip-node`: only the gossip layer, for tests and the
//! gossip benchmark. Prints `listening <addr>`, then membership events as
//! JSON lines.

#[derive(clap::Args)]
pub struct GossipNodeArgs {
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
    #[arg(long = "tag", value_parser = super::parse_tag)]
    tags: Vec<(String, String)>,
    /// Snapshot file of known peers, rejoined on restart.
    #[arg(long)]
    snapshot: Option<std::path::PathBuf>,
}

pub fn run(args: GossipNodeArgs) -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries the JSON lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        clusterfunk::gossip::node::run(opts, tokio::io::stdout(), super::shutdown_signal()).await?;
        Ok(())
    })
}
