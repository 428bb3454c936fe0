//! mDNS / DNS-SD discovery through the `mdns-sd` crate, over IPv4
//! (224.0.0.251, the default), IPv6 (ff02::fb) or both ([`IpVersion`]).
//!
//! Each [`MdnsDiscovery`] owns one `mdns-sd` daemon (one OS thread with its
//! own UDP socket on the mDNS port, shared with other responders on the
//! host through `SO_REUSEPORT`), so several nodes can run in one process.
//! `mdns-sd` is itself an actor: its `ServiceDaemon` is a cloneable handle
//! feeding a bounded command queue, so every call here only enqueues and
//! returns.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::txt;
use super::{
    deliver, Announcement, Counters, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStats,
    PeerFilter, PeerTable,
};

/// The DNS-SD service type clusterfunk nodes register and browse.
pub const DEFAULT_SERVICE_TYPE: &str = "_clusterfunk._udp.local.";

/// How long shutdown waits for the daemon thread to confirm it stopped.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Longest service name in a service type (RFC 6763 §7.2).
const MAX_SERVICE_NAME_LEN: usize = 15;

/// Which network interfaces mDNS uses; [`MdnsConfig::ip_version`] picks
/// the address family on them.
///
/// Caveat of `mdns-sd` 0.21: its daemon thread joins the mDNS groups on
/// every interface when it starts, before the selection applies, and leaves
/// the unselected ones right after. No mDNS packet is ever sent on an
/// unselected interface (checked with tcpdump), but the kernel's IGMP/MLD
/// membership reports for those joins do appear there. Tests therefore run
/// inside network namespaces of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every interface that is up, loopback included.
    All,
    /// Only the loopback interface: single-host clusters and tests.
    /// Linux loops IPv4 multicast back on `lo` (no MULTICAST flag or route
    /// for 224.0.0.0/4 needed).
    LoopbackOnly,
    /// Only the named interface (e.g. `eth0`).
    Named(String),
}

/// The address family mDNS runs over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4 multicast (224.0.0.251) only: the default, as before IPv6 was
    /// supported, so IPv4 clusters see no MLD traffic.
    #[default]
    V4,
    /// IPv6 multicast (ff02::fb) only. Announced addresses of the
    /// unspecified `::` are replaced by the sender's IPv6 address
    /// (link-local ones are skipped: they need a scope to be dialled).
    V6,
    /// Both families.
    Both,
}

impl IpVersion {
    /// The family of `ip`: the mDNS an agent bound there should use.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            IpVersion::V4
        } else {
            IpVersion::V6
        }
    }
}

/// Configuration of an [`MdnsDiscovery`].
#[derive(Debug, Clone)]
pub struct MdnsConfig {
    /// DNS-SD service type, `_name._udp.local.` (name at most 15 bytes).
    pub service_type: String,
    /// Interfaces to announce and browse on.
    pub interfaces: Interfaces,
    /// Address family on those interfaces (default IPv4).
    pub ip_version: IpVersion,
    /// UDP port of mDNS; 5353 except in isolated experiments.
    pub port: u16,
    /// Capacity of the channel [`Discovery::browse`] returns.
    pub event_capacity: usize,
    /// How often the browser restarts its query cycle. `mdns-sd` backs its
    /// queries off to once an hour; re-querying finds peers that were out of
    /// reach (a healed partition) and re-offers events dropped on overflow.
    pub requery_interval: Duration,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        MdnsConfig {
            service_type: DEFAULT_SERVICE_TYPE.to_string(),
            interfaces: Interfaces::All,
            ip_version: IpVersion::V4,
            port: mdns_sd::MDNS_PORT,
            event_capacity: 256,
            requery_interval: Duration::from_secs(30),
        }
    }
}

impl MdnsConfig {
    /// Loopback-only configuration (single host, tests).
    pub fn loopback() -> Self {
        MdnsConfig {
            interfaces: Interfaces::LoopbackOnly,
            ..Default::default()
        }
    }

    /// Checks the configuration.
    pub fn validate(self) -> Result<Self, DiscoveryError> {
        let bad = |m: String| Err(DiscoveryError::InvalidConfig(m));
        let ty = self.service_type.as_str();
        let Some(name) = ty
            .strip_suffix("._udp.local.")
            .or_else(|| ty.strip_suffix("._tcp.local."))
        else {
            return bad(format!(
                "service type {ty:?} must end in ._udp.local. or ._tcp.local."
            ));
        };
        let Some(name) = name.strip_prefix('_') else {
            return bad(format!("service type {ty:?} must start with '_'"));
        };
        let label_ok = !name.is_empty()
            && name.len() <= MAX_SERVICE_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && name.bytes().any(|b| b.is_ascii_alphabetic())
            && !name.starts_with('-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !label_ok {
            return bad(format!(
                "service name in {ty:?} must be 1..={MAX_SERVICE_NAME_LEN} letters, digits, single inner hyphens"
            ));
        }
        if self.event_capacity == 0 {
            return bad("event_capacity must be at least 1".into());
        }
        if self.requery_interval < Duration::from_secs(1) {
            return bad("requery_interval must be at least 1 s".into());
        }
        if let Interfaces::Named(n) = &self.interfaces {
            if n.is_empty() {
                return bad("interface name is empty".into());
            }
        }
        Ok(self)
    }
}

/// Applies the interface selection. `mdns-sd` starts on every interface;
/// selections apply in order and the last match wins. The daemon processes
/// commands in order, so these take effect before any register or browse
/// queued after them.
fn select_interfaces(
    daemon: &ServiceDaemon,
    interfaces: &Interfaces,
    ip: IpVersion,
) -> Result<(), DiscoveryError> {
    match interfaces {
        Interfaces::All => {}
        Interfaces::LoopbackOnly => {
            daemon.disable_interface(IfKind::All)?;
            if ip != IpVersion::V6 {
                daemon.enable_interface(IfKind::LoopbackV4)?;
            }
            if ip != IpVersion::V4 {
                daemon.enable_interface(IfKind::LoopbackV6)?;
            }
        }
        Interfaces::Named(name) => {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Name(name.clone()))?;
        }
    }
    // The other family off, last, so it wins over the enables above.
    match ip {
        IpVersion::V4 => daemon.disable_interface(IfKind::IPv6)?,
        IpVersion::V6 => daemon.disable_interface(IfKind::IPv4)?,
        IpVersion::Both => {}
    }
    Ok(())
}

struct Browser {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Full (lower-case) DNS-SD name of our registration.
    registered: Option<String>,
    browser: Option<Browser>,
    shut_down: bool,
}

struct Inner {
    daemon: ServiceDaemon,
    config: MdnsConfig,
    counters: Arc<Counters>,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = state.browser.take() {
            b.task.abort();
        }
        if !state.shut_down {
            // The daemon thread says goodbye for our registration and exits.
            if let Err(e) = self.daemon.shutdown() {
                debug!(error = %e, "mDNS daemon shutdown on drop");
            }
        }
    }
}

/// Discovery over mDNS / DNS-SD. Cheap to clone; the daemon thread stops on
/// [`shutdown`](Self::shutdown) or when the last clone is dropped.
#[derive(Clone)]
pub struct MdnsDiscovery {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MdnsDiscovery {
    /// Starts the mDNS daemon thread on the configured interfaces. Returns at
    /// once: sockets are opened by the daemon thread, and results arrive
    /// later on the browse channel.
    pub fn start(config: MdnsConfig) -> Result<Self, DiscoveryError> {
        let config = config.validate()?;
        let daemon = ServiceDaemon::new_with_port(config.port)?;
        if let Err(e) = select_interfaces(&daemon, &config.interfaces, config.ip_version) {
            let _ = daemon.shutdown();
            return Err(e);
        }
        debug!(service_type = %config.service_type, interfaces = ?config.interfaces, "mDNS discovery started");
        Ok(MdnsDiscovery {
            inner: Arc::new(Inner {
                daemon,
                config,
                counters: Arc::new(Counters::default()),
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &MdnsConfig {
        &self.inner.config
    }

    /// Registers `announcement` as service `<cluster>-<node>` of the
    /// configured type, replacing any earlier announcement of this handle.
    pub fn announce(&self, announcement: &Announcement) -> Result<(), DiscoveryError> {
        let props = txt::encode(announcement)?;
        let instance = txt::instance_name(&announcement.cluster, &announcement.node_id);
        let host = txt::host_name(&announcement.cluster, &announcement.node_id);
        let info = ServiceInfo::new(
            &self.inner.config.service_type,
            &instance,
            &host,
            "",
            announcement.gossip_addr.port(),
            props.as_slice(),
        )?
        // Publish the addresses of the selected interfaces, kept current.
        .enable_addr_auto();
        let fullname = info.get_fullname().to_lowercase();

        let mut state = self.inner.state();
        if state.shut_down {
            return Err(DiscoveryError::Shutdown);
        }
        if let Some(old) = state.registered.take() {
            if old != fullname {
                // Drop the status receiver: the goodbye is sent regardless.
                let _ = self.inner.daemon.unregister(&old)?;
            }
        }
        self.inner.daemon.register(info)?;
        state.registered = Some(fullname);
        info!(
            cluster = %announcement.cluster,
            node = %announcement.node_id,
            gossip = %announcement.gossip_addr,
            instance = %instance,
            "announced over mDNS"
        );
        Ok(())
    }

    /// Unregisters our announcement; peers get a goodbye and report `Lost`.
    pub fn withdraw(&self) -> Result<(), DiscoveryError> {
        let mut state = self.inner.state();
        if let Some(fullname) = state.registered.take() {
            let _ = self.inner.daemon.unregister(&fullname)?;
            debug!(instance = %fullname, "withdrew mDNS announcement");
        }
        Ok(())
    }

    /// Starts the browser task (needs a Tokio runtime). See
    /// [`Discovery::browse`].
    pub fn browse(
        &self,
        filter: PeerFilter,
    ) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        let mut state = self.inner.state();
        if state.shut_down {
            return Err(DiscoveryError::Shutdown);
        }
        if state
            .browser
            .as_ref()
            .is_some_and(|b| !b.task.is_finished())
        {
            return Err(DiscoveryError::AlreadyBrowsing);
        }
        let ty = self.inner.config.service_type.clone();
        let events = self.inner.daemon.browse(&ty)?;
        let (tx, rx) = mpsc::channel(self.inner.config.event_capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let run = BrowseLoop {
            daemon: self.inner.daemon.clone(),
            service_type: ty,
            table: PeerTable::new(filter),
            tx,
            counters: self.inner.counters.clone(),
            requery: self.inner.config.requery_interval,
        };
        let task = runtime.spawn(run.run(events, stop_rx));
        state.browser = Some(Browser {
            stop: stop_tx,
            task,
        });
        Ok(rx)
    }

    /// Counters so far.
    pub fn stats(&self) -> DiscoveryStats {
        self.inner.counters.snapshot()
    }

    /// Stops the browser, says goodbye for our announcement and stops the
    /// daemon thread, waiting (briefly) for each.
    pub async fn shutdown(&self) {
        let browser = {
            let mut state = self.inner.state();
            if state.shut_down {
                return;
            }
            state.shut_down = true;
            state.registered = None;
            state.browser.take()
        };
        if let Some(b) = browser {
            let _ = b.stop.send(());
            if let Err(e) = b.task.await {
                warn!(error = %e, "mDNS browser task failed");
            }
        }
        // The daemon unregisters (goodbye packets) everything on exit.
        match self.inner.daemon.shutdown() {
            Ok(status) => {
                if tokio::time::timeout(SHUTDOWN_WAIT, status.recv_async())
                    .await
                    .is_err()
                {
                    warn!("mDNS daemon did not confirm shutdown in time");
                }
            }
            Err(e) => debug!(error = %e, "mDNS daemon already stopped"),
        }
    }
}

impl Discovery for MdnsDiscovery {
    fn announce(&self, announcement: &Announcement) -> Result<(), DiscoveryError> {
        MdnsDiscovery::announce(self, announcement)
    }

    fn withdraw(&self) -> Result<(), DiscoveryError> {
        MdnsDiscovery::withdraw(self)
    }

    fn browse(&self, filter: PeerFilter) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        MdnsDiscovery::browse(self, filter)
    }

    fn stats(&self) -> DiscoveryStats {
        MdnsDiscovery::stats(self)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(MdnsDiscovery::shutdown(self))
    }
}

/// The browser task: turns `mdns-sd` service events into filtered,
/// deduplicated [`DiscoveryEvent`]s. It owns its [`PeerTable`].
struct BrowseLoop {
    daemon: ServiceDaemon,
    service_type: String,
    table: PeerTable,
    tx: mpsc::Sender<DiscoveryEvent>,
    counters: Arc<Counters>,
    requery: Duration,
}

impl BrowseLoop {
    async fn run(
        mut self,
        events: mdns_sd::Receiver<ServiceEvent>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut events = Some(events);
        let start = tokio::time::Instant::now() + self.requery;
        let mut requery = tokio::time::interval_at(start, self.requery);
        requery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_event = async {
                match &events {
                    Some(rx) => rx.recv_async().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = self.tx.closed() => break,
                _ = requery.tick() => {
                    // A new browse replaces the old listener, replays the
                    // cache and restarts the query backoff.
                    match self.daemon.browse(&self.service_type) {
                        Ok(rx) => events = Some(rx),
                        Err(mdns_sd::Error::DaemonShutdown) => break,
                        Err(e) => warn!(error = %e, "mDNS re-query failed"),
                    }
                }
                event = next_event => match event {
                    Some(event) => {
                        if !self.handle(event) {
                            break;
                        }
                    }
                    None => {
                        // The daemon closed this subscription (queue overflow
                        // or shutdown); the next tick re-subscribes.
                        debug!("mDNS browse channel closed");
                        events = None;
                    }
                },
            }
        }
        let _ = self.daemon.stop_browse(&self.service_type);
    }

    /// Handles one daemon event; `false` when the receiver is gone.
    fn handle(&mut self, event: ServiceEvent) -> bool {
        handle_event(&mut self.table, &self.tx, &self.counters, event)
    }
}

/// Turns one `mdns-sd` event into at most one [`DiscoveryEvent`]: parses
/// and filters resolved services, reports removals of reported ones, counts
/// the rest. Returns `false` when the receiver is gone.
fn handle_event(
    table: &mut PeerTable,
    tx: &mpsc::Sender<DiscoveryEvent>,
    counters: &Counters,
    event: ServiceEvent,
) -> bool {
    match event {
        ServiceEvent::ServiceResolved(svc) => {
            let key = svc.fullname.to_lowercase();
            let resolved: Vec<IpAddr> = svc.addresses.iter().map(|a| a.to_ip_addr()).collect();
            let props: Vec<(&str, Option<&[u8]>)> = svc
                .txt_properties
                .iter()
                .map(|p| (p.key(), p.val()))
                .collect();
            match txt::decode(props.iter().copied(), &resolved) {
                Ok(a) => {
                    let action = table.seen(&key, a, counters);
                    deliver(table, &key, action, tx, counters)
                }
                Err(e) => {
                    counters.bad();
                    debug!(instance = %key, error = %e, "ignored malformed mDNS announcement");
                    true
                }
            }
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            let key = fullname.to_lowercase();
            let action = table.removed(&key);
            deliver(table, &key, action, tx, counters)
        }
        _ => true,
    }
}

/// Browses `service_type` for `wait` and returns every announcement heard
/// (of `cluster` only, when given), sorted by cluster and node id. Used by
/// the CLI's `--zero-conf` to find a node to talk to; announces nothing.
pub async fn discover_once(
    service_type: &str,
    cluster: Option<&str>,
    wait: Duration,
    interfaces: Interfaces,
    ip_version: IpVersion,
) -> Result<Vec<Announcement>, DiscoveryError> {
    let discovery = MdnsDiscovery::start(MdnsConfig {
        service_type: service_type.to_string(),
        interfaces,
        ip_version,
        ..Default::default()
    })?;
    let filter = PeerFilter {
        cluster: cluster.map(str::to_string),
        ..PeerFilter::any()
    };
    let mut rx = match discovery.browse(filter) {
        Ok(rx) => rx,
        Err(e) => {
            discovery.shutdown().await;
            return Err(e);
        }
    };
    let mut found: BTreeMap<(String, String), Announcement> = BTreeMap::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            event = rx.recv() => match event {
                Some(DiscoveryEvent::Found(p)) => {
                    found.insert(
                        (p.cluster.clone(), p.node_id.clone()),
                        Announcement {
                            cluster: p.cluster,
                            node_id: p.node_id,
                            gossip_addr: p.gossip_addr,
                            protocol_version: p.protocol_version,
                        },
                    );
                }
                Some(DiscoveryEvent::Lost { node_id, cluster }) => {
                    found.remove(&(cluster, node_id));
                }
                None => break,
            },
        }
    }
    discovery.shutdown().await;
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DiscoveredPeer;
    use mdns_sd::TxtProperty;

    /// A resolved-service event as the daemon would deliver it.
    fn resolved(instance: &str, ip: &str, props: Vec<TxtProperty>) -> ServiceEvent {
        let info = ServiceInfo::new(DEFAULT_SERVICE_TYPE, instance, "h.local.", ip, 7946, props)
            .expect("service info");
        ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service()))
    }

    fn props(cluster: &str, node: &str, gossip: &str) -> Vec<TxtProperty> {
        vec![
            ("cluster", cluster).into(),
            ("node", node).into(),
            ("gossip", gossip).into(),
            ("proto", "1").into(),
        ]
    }

    #[test]
    fn daemon_events_become_filtered_discovery_events() {
        let me = Announcement {
            cluster: "a".into(),
            node_id: "me".into(),
            gossip_addr: "10.0.0.1:7946".parse().unwrap(),
            protocol_version: 1,
        };
        let mut table = PeerTable::new(PeerFilter::for_announcement(&me));
        let counters = Counters::default();
        let (tx, mut rx) = mpsc::channel(8);
        let mut feed = |ev| handle_event(&mut table, &tx, &counters, ev);

        // A peer announcing 0.0.0.0 is reported at its resolved address.
        assert!(feed(resolved(
            "a-p1",
            "192.0.2.5",
            props("a", "p1", "0.0.0.0:7946")
        )));
        assert_eq!(
            rx.try_recv().unwrap(),
            DiscoveryEvent::Found(DiscoveredPeer {
                node_id: "p1".into(),
                gossip_addr: "192.0.2.5:7946".parse().unwrap(),
                cluster: "a".into(),
                protocol_version: 1,
            })
        );
        // Ourselves, another cluster and hostile records are not reported.
        feed(resolved(
            "a-me",
            "192.0.2.1",
            props("a", "me", "192.0.2.1:7946"),
        ));
        feed(resolved(
            "b-p1",
            "192.0.2.6",
            props("b", "p1", "192.0.2.6:7946"),
        ));
        feed(resolved("x1", "192.0.2.7", props("a", "x1", "nonsense")));
        let mut non_utf8 = props("a", "x2", "192.0.2.7:7946");
        non_utf8[1] = ("node", &[0xc3_u8, 0x28][..]).into();
        feed(resolved("x2", "192.0.2.7", non_utf8));
        feed(resolved(
            "x3",
            "192.0.2.7",
            vec!["cluster".into(), "node".into()],
        ));
        let long = "n".repeat(200);
        feed(resolved(
            "x4",
            "192.0.2.7",
            props("a", &long, "192.0.2.7:7946"),
        ));
        assert!(rx.try_recv().is_err());
        // Removal of a reported peer (instance names are case-insensitive).
        let removed = ServiceEvent::ServiceRemoved(
            DEFAULT_SERVICE_TYPE.into(),
            format!("A-P1.{DEFAULT_SERVICE_TYPE}"),
        );
        assert!(feed(removed));
        assert_eq!(
            rx.try_recv().unwrap(),
            DiscoveryEvent::Lost {
                node_id: "p1".into(),
                cluster: "a".into()
            }
        );
        let s = counters.snapshot();
        assert_eq!(
            (s.discovered, s.lost, s.ignored_other_cluster, s.ignored_bad),
            (1, 1, 1, 4)
        );
        // A dropped receiver ends the browser.
        drop(rx);
        assert!(!feed(resolved(
            "a-p2",
            "192.0.2.8",
            props("a", "p2", "192.0.2.8:7946")
        )));
    }

    #[test]
    fn config_validation() {
        assert!(MdnsConfig::default().validate().is_ok());
        for bad in [
            "_clusterfunk._udp.local",
            "clusterfunk._udp.local.",
            "_._udp.local.",
            "_0123456789abcdefg._udp.local.",
            "_a_b._udp.local.",
            "_-ab._udp.local.",
            "_a--b._udp.local.",
            "_123._udp.local.",
        ] {
            let c = MdnsConfig {
                service_type: bad.into(),
                ..Default::default()
            };
            assert!(
                matches!(c.validate(), Err(DiscoveryError::InvalidConfig(_))),
                "{bad}"
            );
        }
        let c = MdnsConfig {
            event_capacity: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = MdnsConfig {
            interfaces: Interfaces::Named(String::new()),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = MdnsConfig {
            service_type: "_cf-test._tcp.local.".into(),
            ..Default::default()
        };
        assert!(c.validate().is_ok());
    }
}
