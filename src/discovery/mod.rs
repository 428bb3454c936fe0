//! Zero-configuration discovery: nodes on one LAN announce themselves and
//! find the peers of their cluster with no addresses given.
//!
//! A node publishes an [`Announcement`] (cluster name, node id, gossip
//! address, protocol version) and browses for others; every peer of the same
//! cluster speaking a compatible protocol arrives on a bounded channel as a
//! [`DiscoveryEvent`]. Browsing never ends on its own: nodes that start
//! later, or the other half of a healed partition, are found too.
//!
//! This module knows nothing about gossip: it only yields gossip addresses,
//! which the coordinator feeds to gossip's join exactly like a `--join` seed
//! list. The [`Discovery`] trait is the seam: [`MdnsDiscovery`] speaks mDNS /
//! DNS-SD (service type `_clusterfunk._udp.local.`, over IPv4 by default,
//! IPv6 or both with [`IpVersion`]) through the
//! `mdns-sd` crate, and [`MemoryRegistry`] is an in-process stand-in for
//! tests and network simulations. [`discover_once`] is the one-shot lookup
//! used by the CLI's `--zero-conf`.
//!
//! Imports: std, tokio, futures, tracing, thiserror and `mdns-sd`; nothing
//! else from this crate.

mod error;
mod mdns;
mod memory;
pub mod txt;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub use error::{DiscoveryError, TxtError};
pub use mdns::{
    discover_once, Interfaces, IpVersion, MdnsConfig, MdnsDiscovery, DEFAULT_SERVICE_TYPE,
};
pub use memory::{MemoryDiscovery, MemoryRegistry};

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Announcement {
    /// Cluster name; only nodes with the same name find each other.
    pub cluster: String,
    /// Node id, unique within the cluster.
    pub node_id: String,
    /// Where the node's gossip listens. An unspecified IP (`0.0.0.0:port`)
    /// is replaced by the receiver with an address mDNS resolved for the
    /// announcing host.
    pub gossip_addr: SocketAddr,
    /// Gossip protocol version the node speaks.
    pub protocol_version: u32,
}

/// A peer found by browsing: what the coordinator hands to gossip's join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscoveredPeer {
    /// The peer's node id.
    pub node_id: String,
    /// The peer's gossip address.
    pub gossip_addr: SocketAddr,
    /// The peer's cluster name (the browser's own, by construction).
    pub cluster: String,
    /// The peer's protocol version (within the browser's accepted range).
    pub protocol_version: u32,
}

impl From<Announcement> for DiscoveredPeer {
    fn from(a: Announcement) -> Self {
        DiscoveredPeer {
            node_id: a.node_id,
            gossip_addr: a.gossip_addr,
            cluster: a.cluster,
            protocol_version: a.protocol_version,
        }
    }
}

/// What a browser reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A peer appeared, or its gossip address or version changed.
    Found(DiscoveredPeer),
    /// A peer withdrew its announcement (or its records expired).
    Lost {
        /// The peer's node id.
        node_id: String,
        /// The peer's cluster name.
        cluster: String,
    },
}

/// Which announcements a browser passes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFilter {
    /// Only this cluster; `None` accepts every cluster (for one-shot lookups).
    pub cluster: Option<String>,
    /// Our own node id, never reported.
    pub own_node_id: Option<String>,
    /// Protocol versions we can speak.
    pub protocols: RangeInclusive<u32>,
}

/// The outcome of [`PeerFilter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Report it.
    Accept,
    /// It is ourselves.
    Own,
    /// It belongs to another cluster.
    OtherCluster,
    /// It speaks a protocol version we cannot.
    IncompatibleVersion,
}

impl PeerFilter {
    /// Peers of `a`'s cluster speaking exactly `a`'s protocol version,
    /// excluding `a` itself.
    pub fn for_announcement(a: &Announcement) -> Self {
        PeerFilter {
            cluster: Some(a.cluster.clone()),
            own_node_id: Some(a.node_id.clone()),
            protocols: a.protocol_version..=a.protocol_version,
        }
    }

    /// Every announcement of every cluster and version.
    pub fn any() -> Self {
        PeerFilter {
            cluster: None,
            own_node_id: None,
            protocols: 0..=u32::MAX,
        }
    }

    /// Decides whether `a` is reported.
    pub fn check(&self, a: &Announcement) -> Verdict {
        if self.cluster.as_deref().is_some_and(|c| c != a.cluster) {
            return Verdict::OtherCluster;
        }
        if self.own_node_id.as_deref() == Some(a.node_id.as_str()) {
            return Verdict::Own;
        }
        if !self.protocols.contains(&a.protocol_version) {
            return Verdict::IncompatibleVersion;
        }
        Verdict::Accept
    }
}

/// Counters of one discovery handle (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// `Found` events delivered.
    pub discovered: u64,
    /// `Lost` events delivered.
    pub lost: u64,
    /// Announcements of other clusters seen and ignored.
    pub ignored_other_cluster: u64,
    /// Announcements with a protocol version we cannot speak.
    pub ignored_version: u64,
    /// Malformed or hostile records (see [`TxtError`]) ignored.
    pub ignored_bad: u64,
    /// Events dropped because the receiver's queue was full (a dropped
    /// `Found` is delivered again on the next re-query).
    pub dropped: u64,
}

/// Shared atomic counters behind [`DiscoveryStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    discovered: AtomicU64,
    lost: AtomicU64,
    ignored_other_cluster: AtomicU64,
    ignored_version: AtomicU64,
    ignored_bad: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DiscoveryStats {
        DiscoveryStats {
            discovered: self.discovered.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            ignored_other_cluster: self.ignored_other_cluster.load(Ordering::Relaxed),
            ignored_version: self.ignored_version.load(Ordering::Relaxed),
            ignored_bad: self.ignored_bad.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn bad(&self) {
        Self::bump(&self.ignored_bad);
    }
}

/// What a [`PeerTable`] wants sent after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableAction {
    /// Nothing new.
    None,
    /// Send this event; call [`PeerTable::confirm`] if it was delivered.
    Send(DiscoveryEvent),
}

/// The browser's memory of reported peers, keyed by service instance (or
/// registry entry) name. Pure logic: it turns raw sightings into the
/// deduplicated `Found`/`Lost` stream and counts what it ignores.
#[derive(Debug)]
pub(crate) struct PeerTable {
    filter: PeerFilter,
    reported: HashMap<String, DiscoveredPeer>,
}

impl PeerTable {
    pub(crate) fn new(filter: PeerFilter) -> Self {
        PeerTable {
            filter,
            reported: HashMap::new(),
        }
    }

    /// An instance was resolved to `a`. An instance that was reported and
    /// now fails the filter (it changed cluster or version) is lost.
    pub(crate) fn seen(&mut self, key: &str, a: Announcement, counters: &Counters) -> TableAction {
        match self.filter.check(&a) {
            Verdict::Accept => {}
            Verdict::Own => return self.removed(key),
            Verdict::OtherCluster => {
                Counters::bump(&counters.ignored_other_cluster);
                return self.removed(key);
            }
            Verdict::IncompatibleVersion => {
                Counters::bump(&counters.ignored_version);
                return self.removed(key);
            }
        }
        let peer = DiscoveredPeer::from(a);
        if self.reported.get(key) == Some(&peer) {
            return TableAction::None;
        }
        TableAction::Send(DiscoveryEvent::Found(peer))
    }

    /// Records that `event` (from [`seen`](Self::seen)) reached the receiver.
    /// Until then the peer counts as unreported, so a later sighting (e.g.
    /// the next re-query) offers it again.
    pub(crate) fn confirm(&mut self, key: &str, event: &DiscoveryEvent, counters: &Counters) {
        if let DiscoveryEvent::Found(peer) = event {
            self.reported.insert(key.to_string(), peer.clone());
            Counters::bump(&counters.discovered);
        }
    }

    /// Keys of the reported instances.
    pub(crate) fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.reported.keys().cloned()
    }

    /// An instance went away. Forgets it and returns a `Lost` event if it
    /// had been reported.
    pub(crate) fn removed(&mut self, key: &str) -> TableAction {
        match self.reported.remove(key) {
            Some(peer) => TableAction::Send(DiscoveryEvent::Lost {
                node_id: peer.node_id,
                cluster: peer.cluster,
            }),
            None => TableAction::None,
        }
    }
}

/// Sends `action`'s event with `try_send`, confirming or counting a drop.
/// Returns `false` when the receiver is gone (the browser should stop).
pub(crate) fn deliver(
    table: &mut PeerTable,
    key: &str,
    action: TableAction,
    tx: &mpsc::Sender<DiscoveryEvent>,
    counters: &Counters,
) -> bool {
    let TableAction::Send(event) = action else {
        return true;
    };
    match tx.try_send(event.clone()) {
        Ok(()) => {
            match &event {
                DiscoveryEvent::Found(_) => table.confirm(key, &event, counters),
                DiscoveryEvent::Lost { .. } => Counters::bump(&counters.lost),
            }
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            Counters::bump(&counters.dropped);
            tracing::debug!(key, "discovery event dropped: receiver queue full");
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// The seam between the coordinator and a discovery mechanism.
///
/// Implementations are cheap to share (`Arc` inside); every method returns
/// quickly and never waits on the network.
pub trait Discovery: Send + Sync {
    /// Publishes (or replaces) this node's announcement.
    fn announce(&self, announcement: &Announcement) -> Result<(), DiscoveryError>;

    /// Withdraws the announcement (peers see the node leave). A no-op when
    /// nothing is announced.
    fn withdraw(&self) -> Result<(), DiscoveryError>;

    /// Starts browsing: every peer accepted by `filter` arrives on the
    /// returned channel (of `capacity` from the implementation's config),
    /// for as long as the receiver lives or until shutdown. One browser per
    /// handle.
    fn browse(&self, filter: PeerFilter) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError>;

    /// Counters so far.
    fn stats(&self) -> DiscoveryStats;

    /// Withdraws, stops the browser and releases the mechanism (for mDNS:
    /// the daemon thread), waiting until they have stopped.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(cluster: &str, node: &str, proto: u32) -> Announcement {
        Announcement {
            cluster: cluster.into(),
            node_id: node.into(),
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
            protocol_version: proto,
        }
    }

    #[test]
    fn filter_verdicts() {
        let f = PeerFilter::for_announcement(&ann("a", "n1", 2));
        assert_eq!(f.check(&ann("a", "n2", 2)), Verdict::Accept);
        assert_eq!(f.check(&ann("a", "n1", 2)), Verdict::Own);
        assert_eq!(f.check(&ann("b", "n2", 2)), Verdict::OtherCluster);
        assert_eq!(f.check(&ann("a", "n2", 3)), Verdict::IncompatibleVersion);
        assert_eq!(PeerFilter::any().check(&ann("b", "n1", 9)), Verdict::Accept);
    }

    #[test]
    fn table_dedupes_and_redelivers_after_drop() {
        let counters = Counters::default();
        let mut t = PeerTable::new(PeerFilter::for_announcement(&ann("a", "n1", 1)));
        let (tx, mut rx) = mpsc::channel(1);

        let act = t.seen("k2", ann("a", "n2", 1), &counters);
        assert!(deliver(&mut t, "k2", act, &tx, &counters));
        // Queue full: the next one is dropped and stays unreported.
        let act = t.seen("k3", ann("a", "n3", 1), &counters);
        assert!(deliver(&mut t, "k3", act, &tx, &counters));
        assert_eq!(counters.snapshot().dropped, 1);
        assert!(matches!(rx.try_recv(), Ok(DiscoveryEvent::Found(p)) if p.node_id == "n2"));
        // Same sighting again: n2 is deduplicated, n3 offered again.
        assert_eq!(
            t.seen("k2", ann("a", "n2", 1), &counters),
            TableAction::None
        );
        let act = t.seen("k3", ann("a", "n3", 1), &counters);
        assert!(matches!(&act, TableAction::Send(DiscoveryEvent::Found(p)) if p.node_id == "n3"));
        assert!(deliver(&mut t, "k3", act, &tx, &counters));
        assert_eq!(counters.snapshot().discovered, 2);

        // A changed address is reported again.
        let _ = rx.try_recv();
        let mut moved = ann("a", "n2", 1);
        moved.gossip_addr = SocketAddr::from(([127, 0, 0, 1], 7001));
        assert!(matches!(
            t.seen("k2", moved, &counters),
            TableAction::Send(_)
        ));

        // Removal of a reported peer yields Lost, of an unknown one nothing.
        assert_eq!(
            t.removed("k3"),
            TableAction::Send(DiscoveryEvent::Lost {
                node_id: "n3".into(),
                cluster: "a".into()
            })
        );
        assert_eq!(t.removed("k3"), TableAction::None);

        // A reported peer that moves to another cluster is lost.
        let _ = rx.try_recv();
        assert!(matches!(
            t.seen("k2", ann("b", "n2", 1), &counters),
            TableAction::Send(DiscoveryEvent::Lost { .. })
        ));

        // Ignored kinds are counted.
        assert_eq!(t.seen("x", ann("b", "n9", 1), &counters), TableAction::None);
        assert_eq!(t.seen("y", ann("a", "n9", 7), &counters), TableAction::None);
        assert_eq!(t.seen("z", ann("a", "n1", 1), &counters), TableAction::None);
        let s = counters.snapshot();
        assert_eq!((s.ignored_other_cluster, s.ignored_version), (2, 1));

        // A closed receiver stops the browser.
        drop(rx);
        let act = t.seen("k4", ann("a", "n4", 1), &counters);
        assert!(!deliver(&mut t, "k4", act, &tx, &counters));
    }
}
