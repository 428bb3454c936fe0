//! The management client: typed calls over a tonic channel, with the token
//! and TLS the server expects.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::auth::AddToken;
use super::config::ClientTls;
use super::types::{EndpointEntry, Event, Health, NodeEntry, NodeFilter, ShardsInfo, WriteOutcome};
use super::{pb, ManagementError};
use crate::cluster::StatusView;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Channelled = InterceptedService<Channel, AddToken>;
/// The generated client, for forwarding inside this module.
pub(crate) type RawClient = pb::management_client::ManagementClient<Channelled>;

/// A connection to one node's management API. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), clusterfunk::management::ManagementError> {
/// use clusterfunk::management::Client;
/// // An agent's management address (its default port is 7947).
/// let addr = std::env::var("CLUSTERFUNK_RPC_ADDR").unwrap_or_default();
/// let client = Client::connect(&addr, Some("secret"), None).await?;
/// let status = client.status().await?;
/// println!("{} sees leader {:?}", status.node_id, status.leader);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: RawClient,
    health: HealthClient<Channelled>,
    addr: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).finish()
    }
}

/// `e` and its sources on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ManagementError> {
    std::fs::read(path).map_err(|source| ManagementError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The client TLS settings as tonic wants them.
fn tls_config(tls: &ClientTls) -> Result<ClientTlsConfig, ManagementError> {
    let ca = tls.ca.as_ref().ok_or_else(|| {
        ManagementError::Tls("a CA certificate is needed to check the server".into())
    })?;
    let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(ManagementError::Tls(
                "a client certificate needs its key, and a key its certificate".into(),
            ))
        }
    }
    if let Some(d) = &tls.domain {
        c = c.domain_name(d.clone());
    }
    Ok(c)
}

impl Client {
    /// Connects to the management API at `addr` (`host:port`, or a URL
    /// with `http://`/`https://`), sending `token` on every call and using
    /// TLS when `tls` is given.
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
        tls: Option<&ClientTls>,
    ) -> Result<Client, ManagementError> {
        let host_port = addr
            .strip_prefix("http://")
            .or_else(|| addr.strip_prefix("https://"))
            .unwrap_or(addr);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let bad = |reason: String| ManagementError::Address {
            addr: addr.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
            .map_err(|e| bad(chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls_config(tls)?)
                .map_err(|e| ManagementError::Tls(chain(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ManagementError::Connect {
                addr: host_port.to_string(),
                reason: chain(&e),
            })?;
        let auth = AddToken::new(token)?;
        Ok(Client {
            inner: pb::management_client::ManagementClient::with_interceptor(
                channel.clone(),
                auth.clone(),
            ),
            health: HealthClient::with_interceptor(channel, auth),
            addr: host_port.to_string(),
        })
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn raw(&self) -> RawClient {
        self.inner.clone()
    }

    /// The node's view of the cluster.
    pub async fn status(&self) -> Result<StatusView, ManagementError> {
        let r = self.raw().get_status(pb::GetStatusRequest {}).await?;
        Ok(r.into_inner().into())
    }

    /// Nodes passing `filter`.
    pub async fn nodes(&self, filter: &NodeFilter) -> Result<Vec<NodeEntry>, ManagementError> {
        let req = pb::ListNodesRequest {
            status: filter.status.clone().unwrap_or_default(),
            tags: filter.tags.clone().into_iter().collect(),
        };
        let r = self.raw().list_nodes(req).await?;
        Ok(r.into_inner().nodes.into_iter().map(Into::into).collect())
    }

    /// The committed shard map: counts, and every owner with `full_map`.
    pub async fn shards(&self, full_map: bool) -> Result<ShardsInfo, ManagementError> {
        let r = self
            .raw()
            .list_shards(pb::ListShardsRequest { full_map })
            .await?;
        Ok(r.into_inner().into())
    }

    /// Endpoints whose name starts with `prefix`, of `node` only if given.
    pub async fn endpoints(
        &self,
        prefix: &str,
        node: Option<&str>,
    ) -> Result<Vec<EndpointEntry>, ManagementError> {
        let req = pb::ListEndpointsRequest {
            prefix: prefix.to_string(),
            node_id: node.unwrap_or_default().to_string(),
        };
        let r = self.raw().list_endpoints(req).await?;
        Ok(r.into_inner()
            .endpoints
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Adds `node` (seen in gossip) to Raft and the shard map.
    pub async fn add_node(&self, node: &str) -> Result<WriteOutcome, ManagementError> {
        let req = pb::AddNodeRequest {
            node_id: node.to_string(),
        };
        Ok(self.raw().add_node(req).await?.into_inner().into())
    }

    /// Removes `node` from Raft and the shard map.
    pub async fn remove_node(&self, node: &str) -> Result<WriteOutcome, ManagementError> {
        let req = pb::RemoveNodeRequest {
            node_id: node.to_string(),
        };
        Ok(self.raw().remove_node(req).await?.into_inner().into())
    }

    /// Makes the leader hand leadership to another voter.
    pub async fn step_down(&self) -> Result<WriteOutcome, ManagementError> {
        Ok(self
            .raw()
            .step_down(pb::StepDownRequest {})
            .await?
            .into_inner()
            .into())
    }

    /// Sets `node`'s weight to 0 and waits (at most `timeout`; zero: the
    /// server's default of 30 s) until it owns no shard.
    pub async fn drain(
        &self,
        node: &str,
        timeout: Duration,
    ) -> Result<WriteOutcome, ManagementError> {
        let req = pb::DrainRequest {
            node_id: node.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        Ok(self.raw().drain(req).await?.into_inner().into())
    }

    /// Sets `node`'s shard weight.
    pub async fn set_weight(
        &self,
        node: &str,
        weight: u32,
    ) -> Result<WriteOutcome, ManagementError> {
        let req = pb::SetWeightRequest {
            node_id: node.to_string(),
            weight,
        };
        Ok(self.raw().set_weight(req).await?.into_inner().into())
    }

    /// Broadcasts a user event over gossip.
    pub async fn send_user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ManagementError> {
        let req = pb::SendUserEventRequest {
            name: name.to_string(),
            payload: payload.to_vec(),
            coalesce,
        };
        self.raw().send_user_event(req).await?;
        Ok(())
    }

    /// Cluster events from now on (and gossip user events with
    /// `user_events`).
    pub async fn watch_events(&self, user_events: bool) -> Result<EventStream, ManagementError> {
        let r = self
            .raw()
            .watch_events(pb::WatchEventsRequest { user_events })
            .await?;
        Ok(EventStream {
            inner: r.into_inner(),
        })
    }

    /// gRPC health of the node (the overall status, service `""`).
    pub async fn health(&self) -> Result<Health, ManagementError> {
        let r = self
            .health
            .clone()
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(match r.into_inner().status() {
            ServingStatus::Serving => Health::Serving,
            ServingStatus::NotServing => Health::NotServing,
            _ => Health::Unknown,
        })
    }

    /// Asks the node to join gossip through `addrs` (`host:port`) now;
    /// returns how many answered.
    pub async fn join(&self, addrs: &[String]) -> Result<u32, ManagementError> {
        let req = pb::JoinRequest {
            addresses: addrs.to_vec(),
        };
        Ok(self.raw().join(req).await?.into_inner().joined)
    }

    /// Serf's force-leave: marks the failed `node` left on every node, and
    /// with `prune` makes every node forget it.
    pub async fn force_leave(
        &self,
        node: &str,
        prune: bool,
    ) -> Result<WriteOutcome, ManagementError> {
        let req = pb::ForceLeaveRequest {
            node_id: node.to_string(),
            prune,
        };
        Ok(self.raw().force_leave(req).await?.into_inner().into())
    }
}

/// A stream of [`Event`]s from [`Client::watch_events`].
pub struct EventStream {
    inner: tonic::Streaming<pb::Event>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl EventStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ManagementError>> {
        match self.inner.message().await {
            Ok(Some(e)) => Some(Ok(e.into())),
            Ok(None) => None,
            Err(s) => Some(Err(s.into())),
        }
    }
}
