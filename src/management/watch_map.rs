//! `WatchShardMap`: the committed map and every node's endpoints, streamed
//! to clients that are not Raft members (see [`crate::client`]).
//!
//! Each stream follows the serving node's committed-map `watch` (a new map
//! is sent at once) and looks at gossip endpoints every
//! [`ENDPOINT_POLL`]; it sends an update when either changed. A `watch`
//! keeps only the newest map, so a client that reads slowly skips maps it
//! no longer needs, never receives an old one after a newer one.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tonic::Status;

use super::pb;
use crate::cluster::Cluster;

/// How often endpoints are compared with the last ones sent.
pub(crate) const ENDPOINT_POLL: Duration = Duration::from_millis(100);

pub(crate) type MapStream = Pin<Box<dyn Stream<Item = Result<pb::ShardMapUpdate, Status>> + Send>>;

/// Node id -> endpoint name -> address.
pub type Endpoints = BTreeMap<String, BTreeMap<String, String>>;

/// Every alive member's endpoints.
fn endpoints(cluster: &Cluster) -> Endpoints {
    cluster
        .cluster_members()
        .into_iter()
        .filter(|m| !m.status.is_gone())
        .map(|m| {
            let eps = m
                .tags
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("ep.").map(|n| (n.to_string(), v.clone())))
                .collect();
            (m.name, eps)
        })
        .collect()
}

struct State {
    cluster: Cluster,
    maps: watch::Receiver<Option<std::sync::Arc<crate::ShardMap>>>,
    shutdown: watch::Receiver<bool>,
    sent: Option<(u64, Endpoints)>,
}

impl State {
    async fn next(&mut self) -> Option<pb::ShardMapUpdate> {
        loop {
            let map = self.maps.borrow_and_update().clone();
            if let Some(map) = map {
                let eps = endpoints(&self.cluster);
                let now = (map.epoch(), eps);
                if self.sent.as_ref() != Some(&now) {
                    let update = pb::ShardMapUpdate {
                        epoch: map.epoch(),
                        map: map.encode(),
                        nodes: now
                            .1
                            .iter()
                            .map(|(id, eps)| pb::NodeEndpoints {
                                node_id: id.clone(),
                                endpoints: eps.clone().into_iter().collect(),
                            })
                            .collect(),
                        source: self.cluster.node_id().to_string(),
                        unix_ms: crate::local::unix_ms(),
                    };
                    self.sent = Some(now);
                    return Some(update);
                }
            }
            tokio::select! {
                changed = self.maps.changed() => changed.ok()?,
                _ = tokio::time::sleep(ENDPOINT_POLL) => {}
                _ = self.shutdown.wait_for(|s| *s) => return None,
            }
        }
    }
}

/// The stream for one `WatchShardMap` call.
pub(crate) fn stream(cluster: Cluster, shutdown: watch::Receiver<bool>) -> MapStream {
    let state = State {
        maps: cluster.shard_map(),
        cluster,
        shutdown,
        sent: None,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        let update = s.next().await?;
        Some((Ok(update), s))
    }))
}

/// One committed map with every node's endpoints, as a member streamed it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapUpdate {
    /// The committed map (its epoch set).
    pub map: crate::ShardMap,
    /// Node id -> endpoint name (without `ep.`) -> address.
    pub endpoints: Endpoints,
    /// The member that sent it.
    pub source: String,
}

/// The stream of [`Client::watch_shard_map`](super::Client::watch_shard_map).
pub struct MapUpdates {
    inner: tonic::Streaming<pb::ShardMapUpdate>,
}

impl std::fmt::Debug for MapUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapUpdates")
    }
}

impl MapUpdates {
    /// The next update; `None` when the server ended the stream. A map
    /// that does not decode is an error of kind
    /// [`ManagementError::Decode`](super::ManagementError::Decode).
    pub async fn next(&mut self) -> Option<Result<MapUpdate, super::ManagementError>> {
        let u = match self.inner.message().await {
            Ok(Some(u)) => u,
            Ok(None) => return None,
            Err(s) => return Some(Err(s.into())),
        };
        let map = match crate::ShardMap::decode(&u.map) {
            Ok(m) => m.with_epoch(u.epoch),
            Err(e) => return Some(Err(super::ManagementError::Decode(e))),
        };
        let endpoints = u
            .nodes
            .into_iter()
            .map(|n| (n.node_id, n.endpoints.into_iter().collect()))
            .collect();
        Some(Ok(MapUpdate {
            map,
            endpoints,
            source: u.source,
        }))
    }
}

impl super::Client {
    /// The committed map and every node's endpoints now, then at each
    /// change (see `WatchShardMap` in `management.proto`).
    pub async fn watch_shard_map(&self) -> Result<MapUpdates, super::ManagementError> {
        let r = self
            .raw()
            .watch_shard_map(pb::WatchShardMapRequest {})
            .await?;
        Ok(MapUpdates {
            inner: r.into_inner(),
        })
    }
}
