//! A generic forward to a key's owner over [`Routes`], for services whose
//! nodes accept any key (Go clusterfunk's `serverfunk`).
//!
//! Every forwarded request carries a [`Hop`]: the sender's committed epoch
//! and how many times it was forwarded. [`Routes::forward`] decides with the
//! incoming hop: serve here ([`Forwarded::Local`]), refuse a request that
//! was already forwarded [`MAX_HOPS`] times ([`ForwardError::Loop`]: two
//! nodes that disagree about the owner never bounce a request between
//! them), or send it on with the hop count raised. An owner that answers
//! [`Reply::NotOwner`] with a newer epoch makes the sender wait (briefly)
//! for that map and try once more; an unowned shard is
//! [`ForwardError::NoOwner`]. The transport is the caller's: any async
//! function from a [`Target`] and a [`Hop`] to a [`Reply`].

use std::future::Future;
use std::time::Duration;

use super::{Route, Routes};

/// The most times a request is forwarded.
pub const MAX_HOPS: u8 = 2;

/// How long a sender waits for a newer map an owner named.
const NEWER_MAP_WAIT: Duration = Duration::from_millis(500);

/// What a forwarded request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hop {
    /// The committed epoch the sender routed by (0: none).
    pub epoch: u64,
    /// Times the request was forwarded so far (0: from a client).
    pub hops: u8,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The key's shard.
    pub shard: u32,
    /// The owner's node id.
    pub node: String,
    /// The owner's endpoint for the service.
    pub addr: String,
}

/// What the node a request was forwarded to answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// It served the request.
    Done(T),
    /// It does not serve the shard; `epoch` is its committed epoch.
    NotOwner {
        /// The receiver's committed epoch.
        epoch: u64,
    },
}

/// The outcome of [`Routes::forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded<T> {
    /// This node serves the key: handle it here.
    Local {
        /// The key's shard.
        shard: u32,
    },
    /// The owner served it.
    Remote(T),
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError<E: std::error::Error + 'static> {
    /// The shard has no owner that can serve it now.
    #[error("no owner for shard {shard}: {reason}")]
    NoOwner {
        /// The key's shard.
        shard: u32,
        /// Why (no map yet, unowned, in hand-off, no endpoint).
        reason: &'static str,
    },
    /// The request was forwarded too often (nodes disagree on the owner).
    #[error("forwarding loop: already forwarded {hops} times")]
    Loop {
        /// Hops so far.
        hops: u8,
    },
    /// The owner named still refused after the retry on a newer map.
    #[error("{node} does not serve shard {shard} (its epoch {epoch})")]
    NotOwner {
        /// The key's shard.
        shard: u32,
        /// The node that refused.
        node: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The transport failed.
    #[error("forward to {node}: {source}")]
    Transport {
        /// The node it was sent to.
        node: String,
        /// The transport's error.
        #[source]
        source: E,
    },
}

impl Routes {
    /// Routes `key` for a request that arrived with `incoming` (a default
    /// [`Hop`] for a client's request): [`Forwarded::Local`] when this node
    /// serves it, else sends it with `send` to the owner and returns its
    /// answer, retrying once when the owner knows a newer map.
    pub async fn forward<T, E, F, Fut>(
        &self,
        key: &[u8],
        incoming: Hop,
        mut send: F,
    ) -> Result<Forwarded<T>, ForwardError<E>>
    where
        E: std::error::Error + 'static,
        F: FnMut(Target, Hop) -> Fut,
        Fut: Future<Output = Result<Reply<T>, E>>,
    {
        // A sender that routed by a newer map than ours: catch up first.
        self.wait_for_epoch(incoming.epoch).await;
        let mut retried = false;
        loop {
            let target = match self.route(key) {
                Route::Local { shard } => return Ok(Forwarded::Local { shard }),
                Route::Unavailable { shard, reason } => {
                    return Err(ForwardError::NoOwner { shard, reason })
                }
                Route::Forward { shard, node, addr } => Target { shard, node, addr },
            };
            if incoming.hops >= MAX_HOPS {
                return Err(ForwardError::Loop {
                    hops: incoming.hops,
                });
            }
            let hop = Hop {
                epoch: self.epoch(),
                hops: incoming.hops + 1,
            };
            let node = target.node.clone();
            let shard = target.shard;
            match send(target, hop).await {
                Ok(Reply::Done(t)) => return Ok(Forwarded::Remote(t)),
                Ok(Reply::NotOwner { epoch }) if !retried && epoch > hop.epoch => {
                    retried = true;
                    self.wait_for_epoch(epoch).await;
                }
                Ok(Reply::NotOwner { epoch }) => {
                    return Err(ForwardError::NotOwner { shard, node, epoch })
                }
                Err(source) => return Err(ForwardError::Transport { node, source }),
            }
        }
    }

    /// This node's committed epoch (0 before the first map).
    fn epoch(&self) -> u64 {
        self.cluster.epoch().unwrap_or(0)
    }

    /// Waits (bounded) until this node's committed epoch reaches `epoch`.
    async fn wait_for_epoch(&self, epoch: u64) {
        if self.epoch() >= epoch {
            return;
        }
        let mut rx = self.cluster.shard_map();
        let reached = rx.wait_for(|m| m.as_ref().is_some_and(|m| m.epoch() >= epoch));
        let _ = tokio::time::timeout(NEWER_MAP_WAIT, reached).await;
    }
}
