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
//! Imports: `management` (its client), `shards`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

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
        if members.is_empty() {
            return Err(ClientError::NoMembers);
        }
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(follow(members, auth, tx));
        Ok(ClusterClient {
            inner: Arc::new(Inner { view: rx, task }),
        })
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

    /// The owner of `key` in the newest committed map.
    pub fn owner_of(&self, key: &[u8]) -> Option<String> {
        let v = self.view()?;
        let shard = shard_for_bytes(key, v.map.shard_count());
        v.map.owner_of(shard).map(str::to_string)
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
