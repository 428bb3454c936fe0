//! The management server: the service, gRPC health that follows the node's
//! state, reflection, TLS and the token check, on one listener bounded like
//! the Raft port's ([`crate::listener`]: a connection cap that idle clients
//! cannot exhaust, idle and slow connections closed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tracing::{info, warn, Instrument};

use super::auth::CheckToken;
use super::client::chain;
use super::config::forwarding_client;
use super::service::{Forwarding, Service};
use super::{pb, reflection, ManagementError, SERVICE_NAME};
use crate::cidr::AllowList;
use crate::cluster::{Cluster, NodeState};
use crate::config::AuthConfig;
use crate::listener::{bounded_incoming, ListenerLimits, ListenerStats};
use crate::metrics::Metrics;

/// How long in-flight calls may run on after a stop before they are cut.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A management server whose settings were checked (TLS files read and
/// parsed) but that serves nothing yet: so that a bad certificate fails
/// the agent's start before the node joins anything.
pub struct PreparedServer {
    builder: Server,
    config: AuthConfig,
    limits: ListenerLimits,
    reflection: Arc<reflection::Index>,
}

impl std::fmt::Debug for PreparedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedServer")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish()
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ManagementError> {
    std::fs::read(path).map_err(|source| ManagementError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

impl PreparedServer {
    /// Reads and checks the TLS files of `config`.
    pub fn new(config: &AuthConfig) -> Result<PreparedServer, ManagementError> {
        let mut builder = Server::builder().tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            let mut t = ServerTlsConfig::new()
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
            if let Some(ca) = &tls.ca {
                t = t.client_ca_root(Certificate::from_pem(read(ca)?));
            }
            builder = builder
                .tls_config(t)
                .map_err(|e| ManagementError::Tls(chain(&e)))?;
        }
        if let Some(token) = &config.token {
            if token.is_empty()
                || token
                    .parse::<tonic::metadata::AsciiMetadataValue>()
                    .is_err()
            {
                return Err(ManagementError::Token(
                    "it must be non-empty printable ASCII".into(),
                ));
            }
        }
        // The descriptor sets are build outputs: check them once here.
        let index = reflection::Index::management()
            .map_err(|e| ManagementError::Setup(format!("reflection: {e}")))?;
        Ok(PreparedServer {
            builder,
            config: config.clone(),
            // Without a token any call proves a connection, so proven
            // ones may be idle strangers too: the oldest makes room.
            limits: ListenerLimits {
                evict_proven: config.token.is_none(),
                ..ListenerLimits::management()
            },
            reflection: Arc::new(index),
        })
    }

    /// Replaces the listener's bounds (default
    /// [`ListenerLimits::management`]).
    pub fn with_limits(mut self, limits: ListenerLimits) -> PreparedServer {
        self.limits = limits;
        self
    }

    /// Accepts connections only from `allow` (`--allow-cidr`); others are
    /// closed at once and counted in `clusterfunk_cidr_refused_total`.
    pub fn allowing(mut self, allow: AllowList) -> PreparedServer {
        self.limits.allow = allow;
        self
    }

    /// Serves `cluster`'s management API on `listener` until
    /// [`ManagementServer::shutdown`]. Health reports NOT_SERVING until the
    /// node is Operational.
    pub async fn serve(self, cluster: Cluster, listener: TcpListener) -> ManagementServer {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (reporter, health) = tonic_health::server::health_reporter();
        // The reporter starts with "" SERVING: correct that before the
        // first connection.
        set_health(&reporter, false).await;
        let stats = Arc::new(ListenerStats::default());
        let background = futures::future::join(
            follow_state(reporter, cluster.watch_state(), stop_rx.clone()),
            export_counts(stats.clone(), cluster.metrics().clone(), stop_rx.clone()),
        );
        let health_task = tokio::spawn(
            async move {
                background.await;
            }
            .instrument(tracing::info_span!("management", node = %cluster.node_id())),
        );

        let forwarding = Forwarding {
            token: self.config.token.clone(),
            tls: self.config.tls.as_ref().map(forwarding_client),
        };
        let check = CheckToken::new(self.config.token.as_deref());
        let service = pb::management_server::ManagementServer::new(Service::new(
            cluster.clone(),
            forwarding,
            stop_rx.clone(),
        ));
        let mut builder = self.limits.apply(self.builder);
        let v1 = reflection::v1::Reflection(self.reflection.clone());
        let v1alpha = reflection::v1alpha::Reflection(self.reflection);
        let router = builder
            .add_service(health)
            .add_service(InterceptedService::new(service, check.clone()))
            .add_service(InterceptedService::new(
                reflection::v1::ServerReflectionServer::new(v1),
                check.clone(),
            ))
            .add_service(InterceptedService::new(
                reflection::v1alpha::ServerReflectionServer::new(v1alpha),
                check,
            ));
        let incoming = bounded_incoming(listener, self.limits.clone(), stats);
        let mut stop = stop_rx;
        let node = cluster.node_id().to_string();
        let task = tokio::spawn(
            async move {
                let r = router
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    warn!(error = %chain(&e), "management server failed");
                }
            }
            .instrument(tracing::info_span!("management", node = %node)),
        );
        info!(node = %cluster.node_id(), addr = %local_addr, tls = self.config.tls.is_some(),
            token = self.config.token.is_some(), "management API serving");
        ManagementServer {
            local_addr,
            stop: stop_tx,
            task: Some(task),
            health_task: Some(health_task),
        }
    }
}

async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Health follows the node: SERVING only while Operational.
async fn follow_state(
    reporter: HealthReporter,
    mut state: watch::Receiver<NodeState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let operational = *state.borrow_and_update() == NodeState::Operational;
        set_health(&reporter, operational).await;
        tokio::select! {
            r = state.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    set_health(&reporter, false).await;
}

/// Copies the listener's counters into the node's metrics every second.
async fn export_counts(
    stats: Arc<ListenerStats>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let counts = stats.counts();
        metrics
            .management_connections_closed
            .observe_totals(counts.closed());
        metrics
            .cidr_refused
            .observe_total("management", counts.cidr_refused);
    }
}

/// A running management server; [`shutdown`](Self::shutdown) stops it.
/// Dropping it starts the same stop without waiting.
#[derive(Debug)]
pub struct ManagementServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    health_task: Option<JoinHandle<()>>,
}

impl ManagementServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reports NOT_SERVING, ends event streams and pending drains, lets
    /// other calls finish for a moment, then stops and waits for its tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.health_task.take() {
            let _ = t.await;
        }
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(STOP_GRACE, &mut t).await.is_err() {
                warn!("management calls still running after the grace period; cutting them");
                t.abort();
                let _ = t.await;
            }
        }
    }
}

impl Drop for ManagementServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
