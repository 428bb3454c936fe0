//! Helpers for sharded services: where a key lives and how to reach it.
//!
//! A service publishes its own endpoint (`cluster.set_endpoint("kv", addr)`)
//! and asks a [`Routes`] where to send a key: [`Route::Local`] when this node
//! may serve the key's shard right now (owner in the committed map, lease
//! valid), [`Route::Forward`] with the owner's endpoint otherwise, or
//! [`Route::Unavailable`] while the shard has no reachable owner (during a
//! reshard, or before the first map). Talks only to the [`Cluster`] handle.

use std::collections::BTreeMap;

use crate::cluster::Cluster;

/// Where a request for one key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Serve it here.
    Local {
        /// The key's shard.
        shard: u32,
    },
    /// Forward it to `node` at `addr` (its endpoint of the service).
    Forward {
        /// The key's shard.
        shard: u32,
        /// The owner's node id.
        node: String,
        /// The owner's endpoint for the service.
        addr: String,
    },
    /// No node can serve it right now; retry shortly.
    Unavailable {
        /// The key's shard.
        shard: u32,
        /// Why.
        reason: &'static str,
    },
}

/// Routes keys of one service (endpoint name) over a cluster.
#[derive(Debug, Clone)]
pub struct Routes {
    cluster: Cluster,
    endpoint: String,
}

impl Routes {
    /// Routes for the service published as endpoint `endpoint` (`ep.<name>`).
    pub fn new(cluster: Cluster, endpoint: impl Into<String>) -> Routes {
        Routes {
            cluster,
            endpoint: endpoint.into(),
        }
    }

    /// Where `key` goes now.
    pub fn route(&self, key: &[u8]) -> Route {
        let shard = self.cluster.shard_for(key);
        if self.cluster.is_serving(shard) {
            return Route::Local { shard };
        }
        let map = self.cluster.shard_map().borrow().clone();
        let Some(map) = map else {
            return Route::Unavailable {
                shard,
                reason: "no committed shard map yet",
            };
        };
        match map.owner_of(shard) {
            None => Route::Unavailable {
                shard,
                reason: "shard has no owner",
            },
            Some(owner) if owner == self.cluster.node_id() => Route::Unavailable {
                shard,
                reason: "this node owns the shard but may not serve it now",
            },
            Some(owner) => match self.cluster.endpoint(owner, &self.endpoint) {
                Some(addr) => Route::Forward {
                    shard,
                    node: owner.to_string(),
                    addr,
                },
                None => Route::Unavailable {
                    shard,
                    reason: "owner has not published the endpoint",
                },
            },
        }
    }

    /// The service's endpoint on every node that publishes it.
    pub fn endpoints(&self) -> BTreeMap<String, String> {
        self.cluster.endpoints(&self.endpoint)
    }
}

mod forward;
pub use forward::{ForwardError, Forwarded, Hop, Reply, Target, MAX_HOPS};
