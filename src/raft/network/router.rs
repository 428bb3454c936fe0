//! An in-process network: nodes of one process call each other's
//! [`RaftService`] directly (requests and replies still go through the gRPC
//! codec), and a test can cut and restore the link between any two nodes.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::Status;

use super::{ChannelKind, Connector, RaftChannel};
use crate::raft::error::NetError;
use crate::raft::server::RaftService;

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, RaftService>,
    cut: HashSet<(String, String)>,
    isolated: HashSet<String>,
    refused: u64,
    /// Addresses handed out by [`Router::reserve_addr`].
    reserved: HashSet<SocketAddr>,
}

/// Routes Raft RPCs between nodes of one process by address.
///
/// Register each node's service under its Raft address
/// ([`register`](Router::register)); give each node a [`Network`](super::Network)
/// over [`connector`](Router::connector) with its own address as the source.
/// A call over a cut link (or to an unregistered address) fails with
/// `Unavailable`, which the Raft client reports as unreachable. A link cut
/// while a call is in flight loses the reply.
#[derive(Clone, Default)]
pub struct Router {
    inner: Arc<Mutex<Inner>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a test thread panicked mid-update of
        // plain sets; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh synthetic address for a node that binds no listener: unique
    /// within this router, in the benchmarking range `198.18.0.0/15` (never
    /// a real host), port 7000. Use its string form as the node's Raft
    /// address for [`register`](Self::register) and
    /// [`connector`](Self::connector).
    pub fn reserve_addr(&self) -> SocketAddr {
        const BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
        const SPAN: u32 = 1 << 17;
        let mut inner = self.lock();
        let n = inner.reserved.len() as u32 % SPAN;
        let mut ip = BASE + n;
        loop {
            let addr = SocketAddr::from((Ipv4Addr::from(ip), 7000));
            if inner.reserved.insert(addr) {
                return addr;
            }
            ip = BASE + (ip - BASE + 1) % SPAN;
        }
    }

    /// Makes `service` reachable at `addr` (replacing any previous one).
    pub fn register(&self, addr: &str, service: RaftService) {
        self.lock().nodes.insert(addr.to_string(), service);
    }

    /// Removes the node at `addr`: calls to it fail as unreachable.
    pub fn unregister(&self, addr: &str) {
        self.lock().nodes.remove(addr);
    }

    /// A connector for the node at `from`: its calls are subject to the
    /// links cut from `from`.
    pub fn connector(&self, from: &str) -> Arc<dyn Connector> {
        Arc::new(RouterConnector {
            router: self.clone(),
            from: from.to_string(),
        })
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&self, a: &str, b: &str) {
        let mut inner = self.lock();
        inner.cut.insert((a.to_string(), b.to_string()));
        inner.cut.insert((b.to_string(), a.to_string()));
    }

    /// Cuts only the direction `from` -> `to`.
    pub fn cut_one_way(&self, from: &str, to: &str) {
        self.lock().cut.insert((from.to_string(), to.to_string()));
    }

    /// Restores the link between `a` and `b` in both directions.
    pub fn restore(&self, a: &str, b: &str) {
        let mut inner = self.lock();
        inner.cut.remove(&(a.to_string(), b.to_string()));
        inner.cut.remove(&(b.to_string(), a.to_string()));
    }

    /// Cuts every link to and from `addr`.
    pub fn isolate(&self, addr: &str) {
        self.lock().isolated.insert(addr.to_string());
    }

    /// Restores every cut link and isolated node.
    pub fn heal(&self) {
        let mut inner = self.lock();
        inner.cut.clear();
        inner.isolated.clear();
    }

    /// Calls refused so far (cut links, unknown addresses, lost replies).
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// The service for a call `from` -> `to`, or why there is none.
    fn route(&self, from: &str, to: &str) -> Result<RaftService, StdError> {
        let mut inner = self.lock();
        let cut = inner.isolated.contains(from)
            || inner.isolated.contains(to)
            || inner.cut.contains(&(from.to_string(), to.to_string()));
        let found = if cut {
            None
        } else {
            inner.nodes.get(to).cloned()
        };
        match found {
            Some(s) => Ok(s),
            None => {
                inner.refused += 1;
                let status = Status::unavailable(if cut {
                    format!("link {from} -> {to} is cut")
                } else {
                    format!("no node at {to}")
                });
                Err(Box::new(status))
            }
        }
    }
}

struct RouterConnector {
    router: Router,
    from: String,
}

impl Connector for RouterConnector {
    fn connect(&self, addr: &str) -> Result<RaftChannel, NetError> {
        Ok(RaftChannel {
            kind: ChannelKind::Local(LocalChannel {
                router: self.router.clone(),
                from: self.from.clone(),
                to: addr.to_string(),
            }),
            auth: None,
        })
    }
}

/// One direction of an in-process link.
#[derive(Clone)]
pub(super) struct LocalChannel {
    router: Router,
    from: String,
    to: String,
}

impl LocalChannel {
    pub(super) fn call(
        &self,
        req: http::Request<tonic::body::Body>,
    ) -> BoxFuture<http::Response<tonic::body::Body>, StdError> {
        let this = self.clone();
        Box::pin(async move {
            let mut service = this.router.route(&this.from, &this.to)?;
            let resp = match Service::call(&mut service, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The link may have been cut while the request was served.
            this.router.route(&this.from, &this.to)?;
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_addresses_are_unique_and_synthetic() {
        let router = Router::new();
        let other = router.clone();
        let addrs: HashSet<SocketAddr> = (0..600)
            .map(|i| {
                if i % 2 == 0 {
                    router.reserve_addr()
                } else {
                    other.reserve_addr()
                }
            })
            .collect();
        assert_eq!(addrs.len(), 600);
        for a in &addrs {
            let std::net::IpAddr::V4(ip) = a.ip() else {
                panic!("not IPv4: {a}");
            };
            assert_eq!(ip.octets()[..2], [198, 18][..], "{a}");
        }
    }
}
