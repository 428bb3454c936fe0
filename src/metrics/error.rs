//! Errors of the metrics module.

use std::io;

/// Everything that can go wrong while building metrics, serving them or
/// installing the tracing subscriber.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (bad name, duplicate).
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
    /// The HTTP listener failed (address lookup or accept loop).
    #[error("metrics http server: {0}")]
    Io(#[from] io::Error),
    /// The server task panicked or was cancelled.
    #[error("metrics http server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The `filter` given to [`init_tracing`](super::init_tracing) is not a
    /// valid `RUST_LOG`-style directive list.
    #[error("invalid log filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The rejected filter text.
        filter: String,
        /// Why the parser rejected it.
        reason: String,
    },
    /// A global tracing subscriber was already installed.
    #[error("tracing subscriber already installed: {0}")]
    TracingInit(String),
    /// An unknown log format name was given.
    #[error("unknown log format {0:?} (expected \"text\" or \"json\")")]
    UnknownLogFormat(String),
}
