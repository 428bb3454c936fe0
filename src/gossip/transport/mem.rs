//! In-memory network for tests: every node gets a fake address; links can be
//! cut (one way or both), delayed or made lossy, and restored. Datagrams are
//! the exact bytes the codec produced, so every message round-trips through
//! the wire format as it would over UDP.
//!
//! The same network also carries the liveness echo datagrams of a whole
//! in-memory node: the coordinator adapts [`MemTransport`] to the liveness
//! socket seam (`cluster/seams.rs`), so gossip and liveness share one
//! implementation without importing each other.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{BoxStream, Transport};

/// Datagrams queued per node before new ones are dropped (as a full UDP
/// receive buffer would).
const INBOX_CAPACITY: usize = 4096;
/// "Port unreachable" reports queued per node before new ones are dropped
/// (only the liveness seam reads them; gossip never does).
const REFUSAL_CAPACITY: usize = 64;
/// Streams waiting to be accepted per node.
const ACCEPT_CAPACITY: usize = 64;
/// Buffer of an in-memory stream, each direction.
const STREAM_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, Default)]
struct Link {
    cut: bool,
    /// Datagrams dropped, streams still work.
    datagrams_cut: bool,
    delay: Duration,
    drop_rate: f64,
}

struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A bounded queue of items that become visible at a given instant.
struct Mailbox<T> {
    q: Mutex<BinaryHeap<Reverse<Entry<T>>>>,
    notify: Notify,
    seq: AtomicU64,
    cap: usize,
}

impl<T> Mailbox<T> {
    fn new(cap: usize) -> Self {
        Mailbox {
            q: Mutex::new(BinaryHeap::new()),
            notify: Notify::new(),
            seq: AtomicU64::new(0),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Entry<T>>>> {
        // A panic while holding this lock cannot leave the heap invalid.
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` for `at`; false when full.
    fn push(&self, at: Instant, item: T) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut q = self.lock();
            if q.len() >= self.cap {
                return false;
            }
            q.push(Reverse(Entry { at, seq, item }));
        }
        self.notify.notify_one();
        true
    }

    /// Takes the next item if it is due.
    fn try_pop(&self) -> Option<T> {
        let mut q = self.lock();
        match q.peek() {
            Some(Reverse(e)) if e.at <= Instant::now() => q.pop().map(|Reverse(e)| e.item),
            _ => None,
        }
    }

    /// Waits for the next due item. Cancel safe: items are only taken
    /// synchronously.
    async fn pop(&self) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut q = self.lock();
                match q.peek() {
                    Some(Reverse(e)) if e.at <= Instant::now() => {
                        if let Some(Reverse(e)) = q.pop() {
                            return e.item;
                        }
                        None
                    }
                    Some(Reverse(e)) => Some(e.at),
                    None => None,
                }
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

struct Node {
    datagrams: Arc<Mailbox<(Bytes, SocketAddr)>>,
    streams: Arc<Mailbox<(BoxStream, SocketAddr)>>,
    refusals: Arc<Mailbox<(Bytes, SocketAddr)>>,
}

#[derive(Default)]
struct NetState {
    nodes: BTreeMap<SocketAddr, Node>,
    links: BTreeMap<(SocketAddr, SocketAddr), Link>,
    isolated: BTreeSet<SocketAddr>,
    next_host: u32,
    /// A datagram to an address nobody holds is reported back to its
    /// sender as "port unreachable" (a crashed process on a live host).
    report_closed: bool,
    /// Every datagram to these addresses is also answered with a forged
    /// "port unreachable" (the datagram is still delivered).
    forged: BTreeSet<SocketAddr>,
    /// Paused nodes and when they resume ([`MemNetwork::pause`]).
    paused: BTreeMap<SocketAddr, Instant>,
}

impl NetState {
    fn link(&self, from: SocketAddr, to: SocketAddr) -> Link {
        let mut l = self.links.get(&(from, to)).copied().unwrap_or_default();
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            l.cut = true;
        }
        if self.paused_until(from).is_some() {
            l.datagrams_cut = true;
        }
        l
    }

    /// When `a` resumes, if it is paused now.
    fn paused_until(&self, a: SocketAddr) -> Option<Instant> {
        self.paused.get(&a).copied().filter(|u| *u > Instant::now())
    }

    /// When something sent now to `to` after `delay` arrives: no earlier
    /// than `to` resumes.
    fn arrival(&self, to: SocketAddr, delay: Duration) -> Instant {
        let at = Instant::now() + delay;
        self.paused_until(to).map_or(at, |u| u.max(at))
    }
}

/// Counters of an in-memory network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemNetworkStats {
    /// Datagrams delivered into an inbox.
    pub delivered: u64,
    /// Datagrams dropped by a cut or lossy link.
    pub dropped_by_link: u64,
    /// Datagrams sent to an address nobody holds.
    pub no_such_node: u64,
    /// Datagrams dropped because the receiver's inbox was full.
    pub inbox_full: u64,
}

/// An in-memory network shared by many [`MemTransport`]s (cheap to clone).
#[derive(Clone, Default)]
pub struct MemNetwork {
    state: Arc<Mutex<NetState>>,
    stats: Arc<Mutex<MemNetworkStats>>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNetwork").finish_non_exhaustive()
    }
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut MemNetworkStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Attaches a node at a fresh address (10.x.y.z:7946).
    pub fn bind(&self) -> MemTransport {
        let mut s = self.lock();
        loop {
            s.next_host += 1;
            let n = s.next_host;
            let ip = Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8);
            let addr = SocketAddr::new(IpAddr::V4(ip), 7946);
            if !s.nodes.contains_key(&addr) {
                return self.attach(&mut s, addr);
            }
        }
    }

    fn attach(&self, s: &mut NetState, addr: SocketAddr) -> MemTransport {
        let datagrams = Arc::new(Mailbox::new(INBOX_CAPACITY));
        let streams = Arc::new(Mailbox::new(ACCEPT_CAPACITY));
        let refusals = Arc::new(Mailbox::new(REFUSAL_CAPACITY));
        s.nodes.insert(
            addr,
            Node {
                datagrams: datagrams.clone(),
                streams: streams.clone(),
                refusals: refusals.clone(),
            },
        );
        MemTransport {
            net: self.clone(),
            addr,
            datagrams,
            streams,
            refusals,
        }
    }

    fn edit(&self, a: SocketAddr, b: SocketAddr, f: impl Fn(&mut Link)) {
        let mut s = self.lock();
        f(s.links.entry((a, b)).or_default());
        f(s.links.entry((b, a)).or_default());
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.edit(a, b, |l| l.cut = true);
    }

    /// Drops every datagram between `a` and `b`, both ways, while streams
    /// still connect (a firewall that blocks UDP only).
    pub fn cut_datagrams(&self, a: SocketAddr, b: SocketAddr) {
        self.edit(a, b, |l| l.datagrams_cut = true);
    }

    /// Cuts only the direction `from` → `to`.
    pub fn cut_one_way(&self, from: SocketAddr, to: SocketAddr) {
        self.lock().links.entry((from, to)).or_default().cut = true;
    }

    /// Restores the link between `a` and `b` (uncut, no delay, no loss).
    pub fn restore(&self, a: SocketAddr, b: SocketAddr) {
        let mut s = self.lock();
        s.links.remove(&(a, b));
        s.links.remove(&(b, a));
    }

    /// Delays every datagram between `a` and `b` by `delay`, both ways.
    pub fn delay(&self, a: SocketAddr, b: SocketAddr, delay: Duration) {
        self.edit(a, b, |l| l.delay = delay);
    }

    /// Drops each datagram between `a` and `b` (both ways) with probability
    /// `rate` (0.0 to 1.0); streams are not affected.
    pub fn drop_rate(&self, a: SocketAddr, b: SocketAddr, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.edit(a, b, |l| l.drop_rate = rate);
    }

    /// Cuts every link of `a`.
    pub fn isolate(&self, a: SocketAddr) {
        self.lock().isolated.insert(a);
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn rejoin(&self, a: SocketAddr) {
        self.lock().isolated.remove(&a);
    }

    /// Cuts every link between a node of `left` and a node of `right`.
    pub fn partition(&self, left: &[SocketAddr], right: &[SocketAddr]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    /// Pauses `a` until `until`, as a stopped process (SIGSTOP) is: what
    /// it is sent arrives no earlier than `until` (read when it resumes),
    /// and it sends no datagram meanwhile (a stopped process sends nothing;
    /// what it sends on resuming it decides then). Streams it opens are
    /// accepted at `until`.
    pub fn pause(&self, a: SocketAddr, until: Instant) {
        self.lock().paused.insert(a, until);
    }

    /// Restores every link, un-isolates and resumes every node.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.links.clear();
        s.isolated.clear();
        s.paused.clear();
    }

    /// Whether a datagram to an address nobody holds is reported back to
    /// its sender as "port unreachable", as a live host does for a crashed
    /// process (default off: the network filters them).
    pub fn report_closed_ports(&self, on: bool) {
        self.lock().report_closed = on;
    }

    /// Answers every datagram sent to `to` with a forged "port
    /// unreachable" (`on`), while still delivering it: an attacker or a
    /// broken middlebox claiming a live process is gone.
    pub fn forge_refusals(&self, to: SocketAddr, on: bool) {
        let mut s = self.lock();
        if on {
            s.forged.insert(to);
        } else {
            s.forged.remove(&to);
        }
    }

    /// Queues a "port unreachable" report quoting `buf` for `sender`.
    fn refuse(&self, sender: SocketAddr, to: SocketAddr, buf: &[u8]) {
        let s = self.lock();
        if let Some(node) = s.nodes.get(&sender) {
            node.refusals
                .push(Instant::now(), (Bytes::copy_from_slice(buf), to));
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> MemNetworkStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, buf: &[u8]) {
        let (link, inbox, at) = {
            let s = self.lock();
            let forged = s.forged.contains(&to);
            let Some(node) = s.nodes.get(&to) else {
                let report = s.report_closed || forged;
                drop(s);
                self.count(|c| c.no_such_node += 1);
                if report {
                    self.refuse(from, to, buf);
                }
                return;
            };
            let link = s.link(from, to);
            let out = (link, node.datagrams.clone(), s.arrival(to, link.delay));
            drop(s);
            if forged {
                self.refuse(from, to, buf);
            }
            out
        };
        if link.cut
            || link.datagrams_cut
            || (link.drop_rate > 0.0 && crate::rng::random::<f64>() < link.drop_rate)
        {
            self.count(|c| c.dropped_by_link += 1);
            return;
        }
        if inbox.push(at, (Bytes::copy_from_slice(buf), from)) {
            self.count(|c| c.delivered += 1);
        } else {
            self.count(|c| c.inbox_full += 1);
        }
    }

    fn open(&self, from: SocketAddr, to: SocketAddr) -> io::Result<(BoxStream, Duration)> {
        let (link, back_cut, accept, at) = {
            let s = self.lock();
            let node = s
                .nodes
                .get(&to)
                .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "no such node"))?;
            let link = s.link(from, to);
            let at = [from, to]
                .iter()
                .filter_map(|a| s.paused_until(*a))
                .fold(Instant::now() + link.delay, Instant::max);
            (link, s.link(to, from).cut, node.streams.clone(), at)
        };
        if link.cut || back_cut {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "link cut"));
        }
        let (a, b) = tokio::io::duplex(STREAM_BUFFER);
        if !accept.push(at, (Box::new(b), from)) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "accept queue full",
            ));
        }
        Ok((Box::new(a), link.delay))
    }

    fn detach(&self, addr: SocketAddr) {
        self.lock().nodes.remove(&addr);
    }
}

/// One node's attachment to a [`MemNetwork`]; detaches when dropped.
pub struct MemTransport {
    net: MemNetwork,
    addr: SocketAddr,
    datagrams: Arc<Mailbox<(Bytes, SocketAddr)>>,
    streams: Arc<Mailbox<(BoxStream, SocketAddr)>>,
    refusals: Arc<Mailbox<(Bytes, SocketAddr)>>,
}

impl MemTransport {
    /// Takes the next "port unreachable" report about a datagram this
    /// transport sent, if one is queued (see
    /// [`MemNetwork::report_closed_ports`] and
    /// [`MemNetwork::forge_refusals`]): the datagram and where it went.
    pub fn try_recv_refused(&self) -> Option<(Bytes, SocketAddr)> {
        self.refusals.try_pop()
    }
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.net.detach(self.addr);
    }
}

impl Transport for MemTransport {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<()> {
        self.net.deliver(self.addr, to, buf);
        Ok(())
    }

    async fn recv(&self) -> io::Result<(Bytes, SocketAddr)> {
        Ok(self.datagrams.pop().await)
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<BoxStream> {
        let (s, delay) = self.net.open(self.addr, to)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(s)
    }

    async fn accept(&self) -> io::Result<(BoxStream, SocketAddr)> {
        Ok(self.streams.pop().await)
    }
}
