//! The subcommands of the `clusterfunk` binary. Each file parses its flags
//! and calls the library; nothing here is used by the library itself.

pub mod agent;
pub mod bench;
pub mod bench_growth;
pub mod bench_scale;
mod bench_sim;
pub mod chaos;
pub mod demo;
pub mod gossip_node;
pub mod keys;
pub mod mgmt;
pub mod posture;
pub mod probe;
pub mod shards;
pub mod tuning;

/// Parses `key=value` (tags).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("tag {s:?} is not key=value"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
