//! A bounded accept loop for the gRPC ports (Raft and management), so idle
//! or hostile clients cannot hold file descriptors or memory.
//!
//! - At most `max_connections` connections are open at once. When full, the
//!   oldest connection that has not yet made a valid call ("unproven") is
//!   closed to make room; if every one is proven, the newcomer is closed.
//!   A peer's connection is proven by its first accepted call (one that
//!   passed the port's credential check), so a flood of idle connections
//!   evicts only itself.
//! - An unproven connection is closed `handshake_timeout` after it was
//!   accepted, whatever it sends (slow TLS/HTTP2 handshakes, pings without
//!   a call). A proven one is closed after `idle_timeout` without a byte
//!   from the peer (HTTP/2 keepalive pings from the server make live peers
//!   answer, so only dead or silent ones hit it).
//! - TCP keepalive finds peers that vanished without a FIN.
//!
//! The [`ConnHandle`] of each connection is the tonic connect info (also
//! under TLS: tonic then inserts the inner connect info too), so the
//! port's credential check marks it proven: the Raft port's
//! `raft::auth::AuthService`, the management port's token check.
//!
//! A leaf module: imports nothing else of the crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// Bounds of a gRPC listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once. Default 1024 (a cluster needs a few per
    /// peer).
    pub max_connections: usize,
    /// An unproven connection (no accepted call yet) is closed this long
    /// after it was accepted. Default 10 s.
    pub handshake_timeout: Duration,
    /// A proven connection silent this long is closed. Default 5 min.
    pub idle_timeout: Duration,
    /// TCP keepalive idle time; `None` leaves the OS default. Default 30 s.
    pub tcp_keepalive: Option<Duration>,
    /// HTTP/2 keepalive ping interval of the server. Default 10 s.
    pub http2_keepalive_interval: Duration,
    /// Concurrent calls per connection. Default 256.
    pub max_concurrent_streams: u32,
    /// When full and every connection is proven, close the oldest proven
    /// one for the newcomer instead of refusing it. For a port where any
    /// call proves a connection (a management port without a token), so
    /// that clients that made one call and went idle cannot fill it.
    /// Default false (Raft peers keep their connections).
    pub evict_proven: bool,
    /// Peers allowed to connect (`--allow-cidr`); others are closed at
    /// once and counted. Default: empty, every address.
    pub allow: crate::cidr::AllowList,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            tcp_keepalive: Some(Duration::from_secs(30)),
            http2_keepalive_interval: Duration::from_secs(10),
            max_concurrent_streams: 256,
            evict_proven: false,
            allow: crate::cidr::AllowList::default(),
        }
    }
}

impl ListenerLimits {
    /// The management port's: as the default but at most 256 connections
    /// (operators and scrapers, not peers). The management server also
    /// sets `evict_proven` when it has no token.
    pub fn management() -> ListenerLimits {
        ListenerLimits {
            max_connections: 256,
            ..ListenerLimits::default()
        }
    }

    /// Applies the HTTP/2 settings to a tonic server builder.
    pub fn apply<L>(&self, b: tonic::transport::Server<L>) -> tonic::transport::Server<L> {
        b.http2_keepalive_interval(Some(self.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(self.http2_keepalive_interval * 2))
            .max_concurrent_streams(self.max_concurrent_streams)
            .concurrency_limit_per_connection(self.max_concurrent_streams as usize)
            .http2_max_pending_accept_reset_streams(Some(64))
    }
}

/// Counters of a bounded listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at once because every slot held a proven one.
    pub refused: AtomicU64,
    /// Unproven connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed by the handshake or idle timeout.
    pub timed_out: AtomicU64,
    /// Calls refused for a missing or wrong credential.
    pub unauthenticated: Arc<AtomicU64>,
    /// Connections closed at once: the peer is outside the allow-list.
    pub cidr_refused: AtomicU64,
}

/// A snapshot of [`ListenerStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at once (every slot proven).
    pub refused: u64,
    /// Unproven connections evicted.
    pub evicted: u64,
    /// Connections closed by a timeout.
    pub timed_out: u64,
    /// Calls refused for a missing or wrong credential.
    pub unauthenticated: u64,
    /// Connections from outside the allow-list.
    pub cidr_refused: u64,
}

impl ListenerCounts {
    /// Connections closed by the bounds, by reason (the metric labels).
    pub fn closed(&self) -> [(&'static str, u64); 3] {
        [
            ("refused", self.refused),
            ("evicted", self.evicted),
            ("timed_out", self.timed_out),
        ]
    }
}

impl ListenerStats {
    /// Current values.
    pub fn counts(&self) -> ListenerCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerCounts {
            accepted: g(&self.accepted),
            refused: g(&self.refused),
            evicted: g(&self.evicted),
            timed_out: g(&self.timed_out),
            unauthenticated: g(&self.unauthenticated),
            cidr_refused: g(&self.cidr_refused),
        }
    }
}

#[derive(Debug)]
struct ConnState {
    accepted: Instant,
    remote: Option<SocketAddr>,
    proven: AtomicBool,
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// The connect info of a bounded connection (in each request's extensions).
#[derive(Clone, Debug)]
pub struct ConnHandle(Arc<ConnState>);

impl ConnHandle {
    /// Marks the connection as a real peer's: it is no longer evicted or
    /// closed by the handshake timeout.
    pub(crate) fn mark_proven(&self) {
        self.0.proven.store(true, Ordering::Relaxed);
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.remote
    }

    /// Whether a call proved the connection.
    pub fn is_proven(&self) -> bool {
        self.0.proven.load(Ordering::Relaxed)
    }

    /// A handle of no connection, for unit tests of the credential checks.
    #[cfg(test)]
    pub(crate) fn detached() -> ConnHandle {
        ConnHandle(Arc::new(ConnState {
            accepted: Instant::now(),
            remote: None,
            proven: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
        }))
    }
}

/// An accepted connection with its slot, deadline and eviction flag.
pub struct BoundedConn {
    io: TcpStream,
    state: Arc<ConnState>,
    deadline: Pin<Box<Sleep>>,
    last_read: Instant,
    idle_timeout: Duration,
    stats: Arc<ListenerStats>,
    _slot: OwnedSemaphorePermit,
}

impl Connected for BoundedConn {
    type ConnectInfo = ConnHandle;

    fn connect_info(&self) -> ConnHandle {
        ConnHandle(self.state.clone())
    }
}

impl BoundedConn {
    /// `Err` when the connection must close: evicted, or past its deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.state.evicted.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        *self.state.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            // The deadline passed. A proven connection lives on while it
            // hears from its peer.
            let next = self.last_read + self.idle_timeout;
            if self.state.proven.load(Ordering::Relaxed) && next > Instant::now() {
                self.deadline.as_mut().reset(next);
                continue;
            }
            self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
}

impl AsyncRead for BoundedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncWrite for BoundedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.state.evicted.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

struct Acceptor {
    listener: TcpListener,
    limits: ListenerLimits,
    slots: Arc<Semaphore>,
    open: Vec<Weak<ConnState>>,
    stats: Arc<ListenerStats>,
}

impl Acceptor {
    /// Closes the oldest unproven open connection (or, with
    /// `evict_proven`, the oldest of all when every one is proven); false
    /// if there is none.
    fn evict_one(&mut self) -> bool {
        self.open.retain(|w| w.strong_count() > 0);
        let live: Vec<Arc<ConnState>> = self
            .open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !s.evicted.load(Ordering::Relaxed))
            .collect();
        let oldest = |proven: bool| {
            live.iter()
                .filter(|s| s.proven.load(Ordering::Relaxed) == proven)
                .min_by_key(|s| s.accepted)
                .cloned()
        };
        let victim =
            oldest(false).or_else(|| self.limits.evict_proven.then(|| oldest(true)).flatten());
        let Some(v) = victim else {
            return false;
        };
        v.evicted.store(true, Ordering::Relaxed);
        if let Some(w) = v.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    async fn slot(&mut self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        if !self.evict_one() {
            return None;
        }
        // The evicted connection frees its slot once its task sees the flag.
        tokio::time::timeout(Duration::from_secs(1), self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    async fn next(&mut self) -> BoundedConn {
        loop {
            let (io, remote) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of fds or a reset before accept: wait a little so
                    // the loop does not spin, then go on.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if !self.limits.allow.allows(remote.ip()) {
                self.stats.cidr_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %remote, port = ?self.listener.local_addr().ok(), "connection refused: address outside --allow-cidr");
                continue;
            }
            let Some(slot) = self.slot().await else {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %remote, port = ?self.listener.local_addr().ok(), "connection refused: every slot is in use by a proven peer");
                continue;
            };
            let _ = io.set_nodelay(true);
            if let Some(t) = self.limits.tcp_keepalive {
                let ka = socket2::TcpKeepalive::new().with_time(t);
                let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&ka);
            }
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let state = Arc::new(ConnState {
                accepted: now,
                remote: Some(remote),
                proven: AtomicBool::new(false),
                evicted: AtomicBool::new(false),
                waker: Mutex::new(None),
            });
            self.open.push(Arc::downgrade(&state));
            return BoundedConn {
                io,
                state,
                deadline: Box::pin(tokio::time::sleep_until(
                    now + self.limits.handshake_timeout,
                )),
                last_read: now,
                idle_timeout: self.limits.idle_timeout,
                stats: self.stats.clone(),
                _slot: slot,
            };
        }
    }
}

/// The connections of `listener`, bounded by `limits`, as a stream for
/// `serve_with_incoming`. Never yields an error: accept failures are logged
/// and retried.
pub fn bounded_incoming(
    listener: TcpListener,
    limits: ListenerLimits,
    stats: Arc<ListenerStats>,
) -> impl Stream<Item = io::Result<BoundedConn>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        limits,
        open: Vec::new(),
        stats,
    };
    futures::stream::unfold(acceptor, |mut a| async move {
        let c = a.next().await;
        Some((Ok(c), a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A bounded listener on a fresh loopback port.
    async fn serve(
        limits: ListenerLimits,
    ) -> (
        std::net::SocketAddr,
        Arc<ListenerStats>,
        std::pin::Pin<Box<impl futures::Stream<Item = io::Result<BoundedConn>>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ListenerStats::default());
        let incoming = Box::pin(bounded_incoming(listener, limits, stats.clone()));
        (addr, stats, incoming)
    }

    /// The next accepted connection.
    async fn accept(
        incoming: &mut (impl futures::Stream<Item = io::Result<BoundedConn>> + Unpin),
    ) -> BoundedConn {
        futures::StreamExt::next(incoming).await.unwrap().unwrap()
    }

    async fn drained(conn: &mut BoundedConn) -> io::ErrorKind {
        let mut buf = [0u8; 16];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => return io::ErrorKind::UnexpectedEof,
                Ok(_) => continue,
                Err(e) => return e.kind(),
            }
        }
    }

    #[tokio::test]
    async fn with_evict_proven_a_newcomer_closes_the_oldest_proven_one() {
        let (addr, stats, mut incoming) = serve(ListenerLimits {
            max_connections: 1,
            evict_proven: true,
            ..ListenerLimits::default()
        })
        .await;
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let mut s1 = accept(&mut incoming).await;
        s1.connect_info().mark_proven();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let next = tokio::spawn(async move {
            let s2 = futures::StreamExt::next(&mut incoming).await;
            (s2, incoming)
        });
        assert_eq!(drained(&mut s1).await, io::ErrorKind::ConnectionAborted);
        drop(s1);
        let (s2, _incoming) = next.await.unwrap();
        assert!(s2.is_some_and(|c| c.is_ok()));
        assert_eq!(stats.counts().evicted, 1);
        assert_eq!(stats.counts().refused, 0);
    }

    #[tokio::test]
    async fn idle_unproven_connections_time_out_and_are_evicted() {
        let (addr, stats, mut incoming) = serve(ListenerLimits {
            max_connections: 2,
            handshake_timeout: Duration::from_millis(200),
            ..ListenerLimits::default()
        })
        .await;
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let mut s1 = accept(&mut incoming).await;
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let mut s2 = accept(&mut incoming).await;
        s2.connect_info().mark_proven();
        // Full: a third evicts the oldest unproven (s1), not the proven s2.
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let next = tokio::spawn(async move {
            let s3 = futures::StreamExt::next(&mut incoming).await;
            (s3, incoming)
        });
        assert_eq!(drained(&mut s1).await, io::ErrorKind::ConnectionAborted);
        drop(s1);
        let (s3, _incoming) = next.await.unwrap();
        let mut s3 = s3.unwrap().unwrap();
        assert_eq!(stats.counts().evicted, 1);
        // The new, unproven one times out; the proven one does not.
        assert_eq!(drained(&mut s3).await, io::ErrorKind::TimedOut);
        assert_eq!(stats.counts().timed_out, 1);
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(300), s2.read(&mut buf)).await;
        assert!(r.is_err(), "a proven connection stays open");
    }
}
