//! [`ClusterClient`]: routing for programs that are not cluster members
//! (front-ends, load clients), like Go clusterfunk's `clientfunk`.
//!
//! It never joins gossip or Raft, never owns shards and never votes: it
//! streams the committed shard map and every node's endpoints from any
//! member's management API (`WatchShardMap`) and answers
//! [`owner_of`](ClusterClient::owner_of) and
//! [`endpoint`](ClusterClient::endpoint) from the newest one. When its
//! member stops answering it switches to another: the ones it was given,
//! then every `management` endpoint it has learned. Maps never go back: an
//! update with a lower epoch (from a member that lags) is ignored.
//!
//! A client that also runs a gossip-only node
//! ([`start_with_gossip`](ClusterClient::start_with_gossip)) checks that
//! node's view against the cluster's lighthouses: while its view has lost
//! every lighthouse (it is cut off from the cluster that matters) it stops
//! routing, and [`route`](ClusterClient::route) says why
//! ([`ClientError::ViewInvalid`]).
//!
//! Imports: `management` (its client), `shards`, `gossip` (its handle and
//! view validity).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use crate::gossip::{Gossip, ViewValidity};
use crate::management::{ClientTls, ManagementError, MapUpdate};
use crate::shards::{shard_for_bytes, ShardMap};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No member address was given.
    #[error("no member address given")]
    NoMembers,
    /// No map arrived in time.
    #[error("no committed map within {0:?}")]
    Timeout(Duration),
    /// The client's task has ended.
    #[error("the client has stopped")]
    Stopped,
    /// The client's gossip view holds none of the cluster's lighthouses:
    /// it may be cut off from the cluster, so it does not route.
    #[error(
        "view invalid: none of the {known} known lighthouses is alive in this client's gossip view"
    )]
    ViewInvalid {
        /// Lighthouses the view knows of.
        known: usize,
    },
    /// No committed map has arrived yet.
    #[error("no committed map yet")]
    NoMap,
    /// The key's shard has no owner in the committed map.
    #[error("shard {0} has no owner")]
    Unassigned(u32),
}

/// The newest committed map and endpoints the client knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientView {
    /// The committed map.
    pub map: Arc<ShardMap>,
    /// Node id -> endpoint name -> address.
    pub endpoints: crate::management::Endpoints,
    /// The member it came from.
    pub source: String,
}

struct Inner {
    view: watch::Receiver<Option<Arc<ClientView>>>,
    /// The validity of the gossip view the client checks, if any.
    validity: Option<watch::Receiver<ViewValidity>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A non-member's view of the cluster. Cheap to clone; the background
/// task stops when the last clone is dropped.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("epoch", &self.epoch())
            .finish()
    }
}

/// Connection settings of the management API.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// The management token, if the cluster requires one.
    pub token: Option<String>,
    /// TLS settings, if the management API uses TLS.
    pub tls: Option<ClientTls>,
}

impl ClusterClient {
    /// Starts following the cluster through the management API of
    /// `members` (`host:port`). Returns at once; the first map arrives in
    /// the background ([`wait_for_map`](Self::wait_for_map)).
    pub fn start(members: Vec<String>, auth: ClientAuth) -> Result<ClusterClient, ClientError> {
        Self::start_inner(members, auth, None)
    }

    /// [`start`](Self::start), checking `gossip`'s view (a gossip-only
    /// node this program runs, joined to the cluster) against the
    /// cluster's lighthouses: while it has lost every lighthouse, routing
    /// stops ([`route`](Self::route) fails with
    /// [`ClientError::ViewInvalid`], [`owner_of`](Self::owner_of) answers
    /// `None`).
    pub fn start_with_gossip(
        members: Vec<String>,
        auth: ClientAuth,
        gossip: &Gossip,
    ) -> Result<ClusterClient, ClientError> {
        Self::start_inner(members, auth, Some(gossip.watch_view_validity()))
    }

    fn start_inner(
        members: Vec<String>,
        auth: ClientAuth,
        validity: Option<watch::Receiver<ViewValidity>>,
    ) -> Result<ClusterClient, ClientError> {
        if members.is_empty() {
            return Err(ClientError::NoMembers);
        }
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(follow(members, auth, tx));
        Ok(ClusterClient {
            inner: Arc::new(Inner {
                view: rx,
                validity,
                task,
            }),
        })
    }

    /// Whether the checked gossip view holds a lighthouse (always valid
    /// for a client started without gossip).
    pub fn view_validity(&self) -> ViewValidity {
        self.inner
            .validity
            .as_ref()
            .map(|v| *v.borrow())
            .unwrap_or_default()
    }

    /// The newest view, if a map arrived.
    pub fn view(&self) -> Option<Arc<ClientView>> {
        self.inner.view.borrow().clone()
    }

    /// A receiver of new views (each new map or endpoint change).
    pub fn watch(&self) -> watch::Receiver<Option<Arc<ClientView>>> {
        self.inner.view.clone()
    }

    /// The committed epoch the client knows.
    pub fn epoch(&self) -> Option<u64> {
        self.view().map(|v| v.map.epoch())
    }

    /// The shard of `key`, once the shard count is known.
    pub fn shard_for(&self, key: &[u8]) -> Option<u32> {
        self.view()
            .map(|v| shard_for_bytes(key, v.map.shard_count()))
    }

    /// The owner of `key` in the newest committed map; `None` when there
    /// is none or the view is invalid ([`route`](Self::route) says which).
    pub fn owner_of(&self, key: &[u8]) -> Option<String> {
        self.route(key).ok()
    }

    /// The owner of `key` in the newest committed map, or why there is
    /// none to route to: the gossip view lost every lighthouse, no map yet,
    /// or the shard is unassigned.
    pub fn route(&self, key: &[u8]) -> Result<String, ClientError> {
        let validity = self.view_validity();
        if !validity.valid {
            return Err(ClientError::ViewInvalid {
                known: validity.lighthouses_known,
            });
        }
        let v = self.view().ok_or(ClientError::NoMap)?;
        let shard = shard_for_bytes(key, v.map.shard_count());
        v.map
            .owner_of(shard)
            .map(str::to_string)
            .ok_or(ClientError::Unassigned(shard))
    }

    /// Endpoint `name` of node `owner`.
    pub fn endpoint(&self, owner: &str, name: &str) -> Option<String> {
        self.view()?.endpoints.get(owner)?.get(name).cloned()
    }

    /// Waits until a map of at least `epoch` arrived (0: any map).
    pub async fn wait_for_map(
        &self,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Arc<ClientView>, ClientError> {
        let mut rx = self.watch();
        let found = tokio::time::timeout(timeout, async {
            rx.wait_for(|v| v.as_ref().is_some_and(|v| v.map.epoch() >= epoch))
                .await
                .map(|v| v.clone())
        })
        .await
        .map_err(|_| ClientError::Timeout(timeout))?;
        found
            .map_err(|_| ClientError::Stopped)?
            .ok_or(ClientError::Stopped)
    }
}

/// Streams from one member after another, forever.
async fn follow(
    mut members: Vec<String>,
    auth: ClientAuth,
    tx: watch::Sender<Option<Arc<ClientView>>>,
) {
    let mut next = 0usize;
    let mut pause = Duration::from_millis(50);
    loop {
        let addr = members[next % members.len()].clone();
        next += 1;
        match stream_from(&addr, &auth, &tx, &mut members).await {
            Ok(()) => pause = Duration::from_millis(50),
            Err(e) => debug!(member = %addr, error = %e, "map stream ended"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn stream_from(
    addr: &str,
    auth: &ClientAuth,
    tx: &watch::Sender<Option<Arc<ClientView>>>,
    members: &mut Vec<String>,
) -> Result<(), ManagementError> {
    let client =
        crate::management::Client::connect(addr, auth.token.as_deref(), auth.tls.as_ref()).await?;
    let mut updates = client.watch_shard_map().await?;
    while let Some(u) = updates.next().await {
        let MapUpdate {
            map,
            endpoints,
            source,
        } = u?;
        for eps in endpoints.values() {
            if let Some(m) = eps.get("management") {
                if !members.contains(m) {
                    members.push(m.clone());
                }
            }
        }
        let view = ClientView {
            map: Arc::new(map),
            endpoints,
            source,
        };
        tx.send_if_modified(|cur| match cur {
            Some(c) if c.map.epoch() > view.map.epoch() => false,
            Some(c) if **c == view => false,
            _ => {
                *cur = Some(Arc::new(view));
                true
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::rebalance;

    #[tokio::test]
    async fn an_invalid_view_stops_routing() {
        let map = rebalance(&ShardMap::new(16).expect("map"), &[("a", 1)]).expect("map");
        let (_view_tx, view) = watch::channel(Some(Arc::new(ClientView {
            map: Arc::new(map),
            endpoints: Default::default(),
            source: "a".into(),
        })));
        let (validity_tx, validity) = watch::channel(ViewValidity::default());
        let client = ClusterClient {
            inner: Arc::new(Inner {
                view,
                validity: Some(validity),
                task: tokio::spawn(async {}),
            }),
        };
        assert_eq!(client.route(b"k").expect("routes"), "a");
        validity_tx.send_replace(ViewValidity {
            valid: false,
            lighthouses_known: 2,
            lighthouses_alive: 0,
        });
        let err = client.route(b"k").expect_err("invalid view");
        assert!(
            matches!(err, ClientError::ViewInvalid { known: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("view invalid"));
        assert_eq!(client.owner_of(b"k"), None);
    }
}
