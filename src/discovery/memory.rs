//! In-memory discovery: a shared registry standing in for the LAN, for tests
//! of the coordinator and for network simulations.
//!
//! Every [`MemoryDiscovery`] endpoint made from one [`MemoryRegistry`] sees
//! the announcements of the others in the same *segment* (a stand-in for a
//! network partition: [`MemoryDiscovery::set_segment`] moves an endpoint,
//! and peers out of reach are reported `Lost`, then `Found` when it comes
//! back). Announcements go through the same validation as mDNS and browsers
//! through the same filter and deduplication.
//!
//! The registry is a plain `Arc<Mutex<..>>`: every operation is short,
//! synchronous and never awaits while holding the lock (events are handed
//! over with `try_send`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::txt;
use super::{
    deliver, Announcement, Counters, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStats,
    PeerFilter, PeerTable,
};

/// Default capacity of a memory browser's channel.
const DEFAULT_CAPACITY: usize = 256;

struct BrowserSlot {
    table: PeerTable,
    tx: mpsc::Sender<DiscoveryEvent>,
}

struct Endpoint {
    segment: u32,
    announcement: Option<Announcement>,
    browser: Option<BrowserSlot>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    endpoints: BTreeMap<u64, Endpoint>,
}

impl Registry {
    /// Brings every browser up to date with what it can see now. The tables
    /// deduplicate, so this is cheap to call after any change; it also
    /// re-offers events that were dropped on a full queue.
    fn resync(&mut self) {
        let visible: Vec<(u64, u32, Option<Announcement>)> = self
            .endpoints
            .iter()
            .map(|(id, e)| (*id, e.segment, e.announcement.clone()))
            .collect();
        for ep in self.endpoints.values_mut() {
            let Some(slot) = ep.browser.as_mut() else {
                continue;
            };
            let mut open = true;
            for (id, segment, announcement) in &visible {
                let key = format!("mem-{id}");
                let action = match announcement {
                    Some(a) if *segment == ep.segment => {
                        slot.table.seen(&key, a.clone(), &ep.counters)
                    }
                    _ => slot.table.removed(&key),
                };
                open &= deliver(&mut slot.table, &key, action, &slot.tx, &ep.counters);
            }
            // Announcements of endpoints that left the registry.
            let gone: Vec<String> = slot
                .table
                .keys()
                .filter(|k| {
                    k.strip_prefix("mem-")
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_none_or(|n| !visible.iter().any(|(id, _, _)| *id == n))
                })
                .collect();
            for key in gone {
                let action = slot.table.removed(&key);
                open &= deliver(&mut slot.table, &key, action, &slot.tx, &ep.counters);
            }
            if !open {
                ep.browser = None;
            }
        }
    }
}

/// The shared "LAN" of in-memory discovery endpoints.
#[derive(Clone, Default)]
pub struct MemoryRegistry {
    shared: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("endpoints", &self.lock().endpoints.len())
            .finish()
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Plain data behind the lock; a panic elsewhere does not corrupt it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new endpoint (one node's discovery handle) in segment 0.
    pub fn endpoint(&self) -> MemoryDiscovery {
        let counters = Arc::new(Counters::default());
        let mut reg = self.lock();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.endpoints.insert(
            id,
            Endpoint {
                segment: 0,
                announcement: None,
                browser: None,
                counters: counters.clone(),
            },
        );
        MemoryDiscovery {
            inner: Arc::new(MemInner {
                registry: self.clone(),
                id,
                counters,
            }),
        }
    }

    /// Every announcement currently published, in endpoint order.
    pub fn announcements(&self) -> Vec<Announcement> {
        self.lock()
            .endpoints
            .values()
            .filter_map(|e| e.announcement.clone())
            .collect()
    }
}

struct MemInner {
    registry: MemoryRegistry,
    id: u64,
    counters: Arc<Counters>,
}

impl Drop for MemInner {
    fn drop(&mut self) {
        let mut reg = self.registry.lock();
        if reg.endpoints.remove(&self.id).is_some() {
            reg.resync();
        }
    }
}

/// One node's in-memory discovery handle. Cheap to clone; the endpoint
/// leaves the registry on [`shutdown`](Self::shutdown) or when the last
/// clone is dropped.
#[derive(Clone)]
pub struct MemoryDiscovery {
    inner: Arc<MemInner>,
}

impl std::fmt::Debug for MemoryDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDiscovery")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl MemoryDiscovery {
    /// Runs `f` on this endpoint's entry, then resyncs every browser.
    fn update<T>(
        &self,
        f: impl FnOnce(&mut Endpoint) -> Result<T, DiscoveryError>,
    ) -> Result<T, DiscoveryError> {
        let mut reg = self.inner.registry.lock();
        let ep = reg
            .endpoints
            .get_mut(&self.inner.id)
            .ok_or(DiscoveryError::Shutdown)?;
        let out = f(ep)?;
        reg.resync();
        Ok(out)
    }

    /// Publishes (or replaces) the announcement.
    pub fn announce(&self, announcement: &Announcement) -> Result<(), DiscoveryError> {
        txt::validate(announcement)?;
        self.update(|ep| {
            ep.announcement = Some(announcement.clone());
            Ok(())
        })
    }

    /// Withdraws the announcement.
    pub fn withdraw(&self) -> Result<(), DiscoveryError> {
        self.update(|ep| {
            ep.announcement = None;
            Ok(())
        })
    }

    /// Starts browsing with a channel of the default capacity (256).
    pub fn browse(
        &self,
        filter: PeerFilter,
    ) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        self.browse_with_capacity(filter, DEFAULT_CAPACITY)
    }

    /// Starts browsing with a channel of `capacity` (at least 1).
    pub fn browse_with_capacity(
        &self,
        filter: PeerFilter,
        capacity: usize,
    ) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        if capacity == 0 {
            return Err(DiscoveryError::InvalidConfig(
                "capacity must be at least 1".into(),
            ));
        }
        self.update(|ep| {
            if ep.browser.as_ref().is_some_and(|b| !b.tx.is_closed()) {
                return Err(DiscoveryError::AlreadyBrowsing);
            }
            let (tx, rx) = mpsc::channel(capacity);
            ep.browser = Some(BrowserSlot {
                table: PeerTable::new(filter),
                tx,
            });
            Ok(rx)
        })
    }

    /// Moves this endpoint to network segment `segment`: it and the
    /// endpoints of its old segment lose sight of each other, and it finds
    /// those of the new one. All endpoints start in segment 0.
    pub fn set_segment(&self, segment: u32) -> Result<(), DiscoveryError> {
        self.update(|ep| {
            ep.segment = segment;
            Ok(())
        })
    }

    /// Re-offers everything visible (as an mDNS re-query would), e.g. after
    /// the receiver drained a full queue.
    pub fn requery(&self) -> Result<(), DiscoveryError> {
        self.update(|_| Ok(()))
    }

    /// Counters so far.
    pub fn stats(&self) -> DiscoveryStats {
        self.inner.counters.snapshot()
    }

    /// Leaves the registry: peers report `Lost`, the browser's channel ends.
    pub fn shutdown(&self) {
        let mut reg = self.inner.registry.lock();
        if reg.endpoints.remove(&self.inner.id).is_some() {
            reg.resync();
        }
    }
}

impl Discovery for MemoryDiscovery {
    fn announce(&self, announcement: &Announcement) -> Result<(), DiscoveryError> {
        MemoryDiscovery::announce(self, announcement)
    }

    fn withdraw(&self) -> Result<(), DiscoveryError> {
        MemoryDiscovery::withdraw(self)
    }

    fn browse(&self, filter: PeerFilter) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        MemoryDiscovery::browse(self, filter)
    }

    fn stats(&self) -> DiscoveryStats {
        MemoryDiscovery::stats(self)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        MemoryDiscovery::shutdown(self);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DiscoveredPeer;

    fn ann(cluster: &str, node: &str, port: u16) -> Announcement {
        Announcement {
            cluster: cluster.into(),
            node_id: node.into(),
            gossip_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            protocol_version: 1,
        }
    }

    fn drain(rx: &mut mpsc::Receiver<DiscoveryEvent>) -> Vec<DiscoveryEvent> {
        let mut v = Vec::new();
        while let Ok(e) = rx.try_recv() {
            v.push(e);
        }
        v
    }

    fn found(node: &str, port: u16) -> DiscoveryEvent {
        DiscoveryEvent::Found(DiscoveredPeer::from(ann("a", node, port)))
    }

    fn lost(node: &str) -> DiscoveryEvent {
        DiscoveryEvent::Lost {
            node_id: node.into(),
            cluster: "a".into(),
        }
    }

    #[test]
    fn peers_of_one_cluster_find_each_other() {
        let reg = MemoryRegistry::new();
        let n1 = reg.endpoint();
        let n2 = reg.endpoint();
        let b = reg.endpoint();
        n1.announce(&ann("a", "n1", 1)).unwrap();
        b.announce(&ann("b", "n1", 9)).unwrap();
        let mut rx1 = n1
            .browse(PeerFilter::for_announcement(&ann("a", "n1", 1)))
            .unwrap();
        assert!(drain(&mut rx1).is_empty());
        assert!(matches!(
            n1.browse(PeerFilter::any()),
            Err(DiscoveryError::AlreadyBrowsing)
        ));

        // A node that appears later is found; re-announcing the same is quiet.
        n2.announce(&ann("a", "n2", 2)).unwrap();
        n2.announce(&ann("a", "n2", 2)).unwrap();
        assert_eq!(drain(&mut rx1), vec![found("n2", 2)]);
        // A moved address is reported again.
        n2.announce(&ann("a", "n2", 3)).unwrap();
        assert_eq!(drain(&mut rx1), vec![found("n2", 3)]);
        // Withdraw and drop are losses.
        n2.withdraw().unwrap();
        assert_eq!(drain(&mut rx1), vec![lost("n2")]);
        n2.announce(&ann("a", "n2", 3)).unwrap();
        assert_eq!(drain(&mut rx1), vec![found("n2", 3)]);
        drop(n2);
        assert_eq!(drain(&mut rx1), vec![lost("n2")]);

        let s = n1.stats();
        assert_eq!((s.discovered, s.lost), (3, 2));
        assert!(s.ignored_other_cluster >= 1);
        assert_eq!(reg.announcements().len(), 2);
    }

    #[test]
    fn partitions_hide_and_heal() {
        let reg = MemoryRegistry::new();
        let nodes: Vec<_> = (0..4).map(|_| reg.endpoint()).collect();
        let mut rxs = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let a = ann("a", &format!("n{i}"), 100 + i as u16);
            n.announce(&a).unwrap();
            rxs.push(n.browse(PeerFilter::for_announcement(&a)).unwrap());
        }
        for rx in rxs.iter_mut() {
            assert_eq!(drain(rx).len(), 3);
        }
        nodes[2].set_segment(1).unwrap();
        nodes[3].set_segment(1).unwrap();
        assert_eq!(drain(&mut rxs[0]), vec![lost("n2"), lost("n3")]);
        // n3 briefly lost n2 while they moved one after the other.
        assert_eq!(
            drain(&mut rxs[3]),
            vec![lost("n2"), lost("n0"), lost("n1"), found("n2", 102)]
        );
        nodes[2].set_segment(0).unwrap();
        nodes[3].set_segment(0).unwrap();
        assert_eq!(drain(&mut rxs[0]), vec![found("n2", 102), found("n3", 103)]);
        assert_eq!(
            drain(&mut rxs[3]),
            vec![
                lost("n2"),
                found("n0", 100),
                found("n1", 101),
                found("n2", 102)
            ]
        );
    }

    #[test]
    fn overflow_is_counted_and_reoffered() {
        let reg = MemoryRegistry::new();
        let me = reg.endpoint();
        let others: Vec<_> = (0..3).map(|_| reg.endpoint()).collect();
        for (i, o) in others.iter().enumerate() {
            o.announce(&ann("a", &format!("p{i}"), 200 + i as u16))
                .unwrap();
        }
        let mut rx = me
            .browse_with_capacity(PeerFilter::for_announcement(&ann("a", "me", 1)), 1)
            .unwrap();
        assert_eq!(drain(&mut rx).len(), 1);
        assert_eq!(me.stats().dropped, 2);
        me.requery().unwrap();
        assert_eq!(drain(&mut rx).len(), 1);
        me.requery().unwrap();
        assert_eq!(drain(&mut rx).len(), 1);
        assert_eq!(me.stats().discovered, 3);
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_and_rejects_calls() {
        let reg = MemoryRegistry::new();
        let me = reg.endpoint();
        let peer = reg.endpoint();
        let mut rx = me.browse(PeerFilter::any()).unwrap();
        let dynamic: &dyn Discovery = &me;
        dynamic.shutdown().await;
        assert!(rx.recv().await.is_none());
        assert!(matches!(
            me.announce(&ann("a", "n", 1)),
            Err(DiscoveryError::Shutdown)
        ));
        // Invalid announcements are rejected like over mDNS.
        assert!(matches!(
            peer.announce(&ann("", "n", 1)),
            Err(DiscoveryError::InvalidAnnouncement(_))
        ));
    }
}
