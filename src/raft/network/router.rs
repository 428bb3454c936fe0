//! An in-process network: nodes of one process call each other's
//! [`RaftService`] directly (requests and replies still go through the gRPC
//! codec), and a test can cut and restore the link between any two nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::Status;

use super::{ChannelKind, Connector, RaftChannel};
use crate::raft::error::NetError;
use crate::raft::server::RaftService;

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, RaftService>,
    cut: BTreeSet<(String, String)>,
    isolated: BTreeSet<String>,
    /// Per-direction conditions: (delay, drop rate).
    conditions: BTreeMap<(String, String), (Duration, f64)>,
    refused: u64,
    /// Addresses handed out by [`Router::reserve_addr`].
    reserved: BTreeSet<SocketAddr>,
    /// The address of each node name ([`Router::addr_for`]).
    by_name: BTreeMap<String, SocketAddr>,
    /// Paused nodes and when they resume ([`Router::pause`]).
    paused: BTreeMap<String, Instant>,
    /// Notified after every request a node's service handled.
    handled: Arc<Notify>,
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

    /// The address of the node named `name`: reserved the first time, the
    /// same on every later start (a restarted process keeps its port).
    pub fn addr_for(&self, name: &str) -> SocketAddr {
        if let Some(a) = self.lock().by_name.get(name) {
            return *a;
        }
        let addr = self.reserve_addr();
        self.lock().by_name.insert(name.to_string(), addr);
        addr
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

    /// Delays every request and every reply `from` -> `to` by `delay`
    /// and loses each with probability `drop_rate` (a lost request or reply
    /// fails the call as unreachable).
    pub fn degrade(&self, from: &str, to: &str, delay: Duration, drop_rate: f64) {
        self.lock()
            .conditions
            .insert((from.to_string(), to.to_string()), (delay, drop_rate));
    }

    /// Pauses the node at `addr` until `until`, as a stopped process
    /// (SIGSTOP) is: a request it sends, or is sent, before then reaches the
    /// other side's service only at `until` (its queued input is read when
    /// it resumes; the caller's own timeout may give up first). Replies
    /// already on their way are not held.
    pub fn pause(&self, addr: &str, until: Instant) {
        self.lock().paused.insert(addr.to_string(), until);
    }

    /// Notified (one stored permit) after every request a node's service
    /// handled, so a test can look at the nodes right after each one.
    pub fn handled(&self) -> Arc<Notify> {
        self.lock().handled.clone()
    }

    /// Restores every cut link, isolated node, degraded direction and
    /// paused node.
    pub fn heal(&self) {
        let mut inner = self.lock();
        inner.cut.clear();
        inner.isolated.clear();
        inner.conditions.clear();
        inner.paused.clear();
    }

    /// The latest instant at which `from` or `to` resumes, if later than now.
    fn resumes(&self, from: &str, to: &str) -> Option<Instant> {
        let inner = self.lock();
        let until = [from, to]
            .iter()
            .filter_map(|a| inner.paused.get(*a).copied())
            .max()?;
        (until > Instant::now()).then_some(until)
    }

    /// The delay of `from` -> `to`, or an error when this message is lost.
    fn condition(&self, from: &str, to: &str) -> Result<Duration, StdError> {
        let mut inner = self.lock();
        let Some(&(delay, rate)) = inner.conditions.get(&(from.to_string(), to.to_string())) else {
            return Ok(Duration::ZERO);
        };
        if rate > 0.0 && crate::rng::random::<f64>() < rate {
            inner.refused += 1;
            return Err(Box::new(Status::unavailable(format!(
                "message {from} -> {to} lost"
            ))));
        }
        Ok(delay)
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
            let there = this.router.condition(&this.from, &this.to)?;
            if !there.is_zero() {
                tokio::time::sleep(there).await;
            }
            if let Some(until) = this.router.resumes(&this.from, &this.to) {
                tokio::time::sleep_until(until).await;
            }
            let mut service = this.router.route(&this.from, &this.to)?;
            let resp = match Service::call(&mut service, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            this.router.lock().handled.notify_one();
            let back = this.router.condition(&this.to, &this.from)?;
            if !back.is_zero() {
                tokio::time::sleep(back).await;
            }
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
        let addrs: BTreeSet<SocketAddr> = (0..600)
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
