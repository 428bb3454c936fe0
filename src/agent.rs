//! [`Agent`]: a node as operators run it. The [`Cluster`] and, beside it,
//! the management gRPC server and the metrics HTTP server, started together
//! and stopped together.
//!
//! The cluster never starts these servers itself (it does not import them):
//! the agent binds their listeners first and passes their addresses in
//! [`Config::endpoints`], so `ep.management` and `ep.metrics` are in the
//! node's first gossip tags, then serves them once the cluster runs.
//!
//! Imports: `cluster`, `config`, `management` (its server), `metrics` (its
//! server).

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tracing::debug;

use crate::cluster::{Cluster, ClusterError, Handoff, Seams, EP_MANAGEMENT, EP_METRICS};
use crate::config::Config;
use crate::management::{ManagementError, ManagementServer, PreparedServer};
use crate::metrics::{MetricsError, MetricsServer};

/// Why an agent did not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The cluster node did not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The management server's settings (TLS files, token) were refused.
    #[error("management server: {0}")]
    Management(#[from] ManagementError),
    /// The metrics server did not start.
    #[error("metrics server: {0}")]
    Metrics(#[from] MetricsError),
    /// A listener could not be bound.
    #[error("bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener (`management`, `metrics`).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running node with its management and metrics servers.
///
/// A cheap, cloneable handle that dereferences to its [`Cluster`].
/// [`stop`](Self::stop) leaves the cluster gracefully (the management API
/// keeps answering while the node drains), then stops both servers.
#[derive(Debug, Clone)]
pub struct Agent {
    cluster: Cluster,
    servers: Arc<Mutex<Servers>>,
}

#[derive(Debug, Default)]
struct Servers {
    management: Option<ManagementServer>,
    metrics: Option<MetricsServer>,
}

impl Agent {
    /// Starts a node with the management API on `config.management_addr`
    /// and `/metrics` on `config.metrics_addr` (each when set).
    pub async fn start(config: Config) -> Result<Agent, AgentError> {
        Agent::start_with(config, Seams::default()).await
    }

    /// [`start`](Self::start) with replaced networks (tests, simulations).
    pub async fn start_with(config: Config, seams: Seams) -> Result<Agent, AgentError> {
        Agent::start_inner(config, seams, None).await
    }

    /// [`start_with`](Self::start_with) for a stateful service that takes
    /// part in shard moves (see [`crate::cluster::handoff`](mod@crate::cluster::handoff)).
    pub async fn start_with_handoff(
        config: Config,
        seams: Seams,
        handoff: Handoff,
    ) -> Result<Agent, AgentError> {
        Agent::start_inner(config, seams, Some(handoff)).await
    }

    async fn start_inner(
        config: Config,
        seams: Seams,
        handoff: Option<Handoff>,
    ) -> Result<Agent, AgentError> {
        let mut config = config.validate().map_err(ClusterError::from)?;
        // Read the TLS files before joining anything: a bad certificate
        // fails here, not after the node is part of the cluster.
        let prepared = match config.management_addr {
            Some(_) => Some(PreparedServer::new(&config.auth)?.allowing(config.allow_cidr.clone())),
            None => None,
        };
        let (management_addr, metrics_addr) = (config.management_addr, config.metrics_addr);
        let management = bind(&mut config, EP_MANAGEMENT, management_addr).await?;
        let metrics = bind(&mut config, EP_METRICS, metrics_addr).await?;
        let cluster = match handoff {
            Some(h) => Cluster::start_with_handoff(config, seams, h).await?,
            None => Cluster::start_with(config, seams).await?,
        };

        let mut servers = Servers::default();
        if let (Some(prepared), Some(listener)) = (prepared, management) {
            servers.management = Some(prepared.serve(cluster.clone(), listener).await);
        }
        if let Some(listener) = metrics {
            let served = MetricsServer::serve(
                listener,
                cluster.metrics().clone(),
                cluster.status(),
                std::future::pending(),
            );
            match served {
                Ok(s) => servers.metrics = Some(s),
                Err(e) => {
                    let agent = Agent {
                        cluster,
                        servers: Arc::new(Mutex::new(servers)),
                    };
                    agent.stop().await;
                    return Err(e.into());
                }
            }
        }
        Ok(Agent {
            cluster,
            servers: Arc::new(Mutex::new(servers)),
        })
    }

    /// The cluster handle.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Graceful stop: the node leaves the cluster (see [`Cluster::stop`]),
    /// then the management and metrics servers stop. Calling it again
    /// does nothing.
    pub async fn stop(&self) {
        self.cluster.stop().await;
        let servers = std::mem::take(&mut *self.servers.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(m) = servers.management {
            m.shutdown().await;
        }
        if let Some(m) = servers.metrics {
            if let Err(e) = m.shutdown().await {
                debug!(error = %e, "metrics server shutdown");
            }
        }
    }
}

impl Deref for Agent {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

/// Binds `addr` (when set) and records its advertised address as endpoint
/// `name` of `config`.
async fn bind(
    config: &mut Config,
    name: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, AgentError> {
    let Some(addr) = addr else { return Ok(None) };
    let err = |source| AgentError::Bind {
        what: name,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let advertised = config.advertised(bound);
    config.endpoints.insert(name.to_string(), advertised);
    Ok(Some(listener))
}
