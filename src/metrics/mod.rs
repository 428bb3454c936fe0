//! Prometheus metrics, health endpoint and status page of one node.
//!
//! [`Metrics`] owns a per-node Prometheus registry (never the global one, so
//! several nodes in one process keep apart; every series carries
//! `node="<id>"`) and typed handles for every `clusterfunk_*` metric plus the
//! process collector. [`MetricsServer`] serves `/metrics`, `/healthz`,
//! `/status` (JSON [`StatusView`]) and `/` (a self-contained HTML page).
//! [`init_tracing`] is the binary's log setup.
//!
//! This module imports no other crate module: the coordinator (`cluster`)
//! updates the metric handles and publishes a [`StatusView`] on a
//! `tokio::sync::watch` channel that the server reads.

mod cumulative;
mod error;
mod gossip;
mod html;
mod logging;
mod registry;
mod server;
mod status;

pub use cumulative::{delta_from_totals, CumulativeCounter, CumulativeCounterVec, StateSet};
pub use error::MetricsError;
pub use gossip::{GossipHealthMetrics, GossipHealthView};
pub use html::{escape_html, render_page};
pub use logging::{init_tracing, LogFormat};
pub use registry::{
    MetricSet, Metrics, GOSSIP_STATUSES, NODE_ROLES, NODE_STATES, RESHARD_BUCKETS, RTT_BUCKETS,
};
pub use server::{MetricsServer, HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS};
pub use status::{Liveness, NodeView, RaftRole, ShardMapView, StatusView};
