//! Start-up: binds the sockets (gossip, liveness, Raft) or takes their
//! in-memory seams instead, reads the Raft TLS files (only when Raft goes
//! over TCP), builds the first gossip tags, starts discovery (mDNS, or the
//! in-memory registry), then hands everything to the node task.
//!
//! Nothing here decides anything about the cluster: once the `Node` is
//! built, [`node`](super::node) runs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{warn, Instrument};

use super::bootstrap::Settle;
use super::follower::Follower;
use super::handoff::{Handoff, Hooks};
use super::ids::raft_id;
use super::leader::Leader;
use super::node::{Node, NodeStats, STATUS_EVERY};
use super::restore::DrainMark;
use super::serving::ServingSet;
use super::tags;
use super::{Cluster, ClusterError, NodeState, Role, Seams, Shared};
use crate::config::{Config, StorageConfig};
use crate::discovery::{
    Announcement, Discovery, DiscoveryError, DiscoveryEvent, MdnsDiscovery, PeerFilter,
};
use crate::gossip::{endpoint_key, Gossip, MemTransport, NetTransport, Transport};
use crate::liveness::{Checker, Responder};
use crate::metrics::{Metrics, StatusView};
use crate::raft::{Network, RaftNode, RaftNodeInfo, Storage};

/// Version of the coordinator's protocol, announced over mDNS.
const PROTOCOL_VERSION: u32 = 1;

/// Starts every component and the node task.
pub(crate) async fn start(
    cfg: Config,
    seams: Seams,
    handoff: Option<Handoff>,
) -> Result<Cluster, ClusterError> {
    let cfg = with_saved_keyring(cfg)?;
    if let Some(h) = &handoff {
        let deadline = h.settings().release_deadline;
        if deadline >= cfg.ack_timeout {
            return Err(ClusterError::ReleaseDeadline {
                deadline,
                ack_timeout: cfg.ack_timeout,
            });
        }
    }
    let gate = handoff.as_ref().map(Handoff::gate);
    let me = cfg.node_id.clone();
    let metrics = Metrics::new(me.clone()).map_err(start_err("metrics"))?;
    let bind_err = |what: &'static str, addr: SocketAddr| {
        move |source: std::io::Error| ClusterError::Bind { what, addr, source }
    };

    let transport = match &seams.gossip {
        Some(net) => GossipTransport::Mem(net.bind()),
        None => GossipTransport::Net(
            NetTransport::bind(cfg.gossip_addr)
                .await
                .map_err(bind_err("gossip", cfg.gossip_addr))?,
        ),
    };
    let gossip_addr = match &transport {
        GossipTransport::Mem(t) => t.local_addr(),
        GossipTransport::Net(t) => cfg.advertised(t.local_addr()),
    };
    let (responder, liveness_addr) = match &seams.liveness {
        Some(net) => {
            let r = Responder::spawn(net.bind()).map_err(start_err("liveness responder"))?;
            let addr = r.local_addr();
            (r, addr)
        }
        None => {
            let r = Responder::bind(cfg.liveness_addr)
                .await
                .map_err(start_err("liveness responder"))?;
            let addr = cfg.advertised(r.local_addr());
            (r, addr)
        }
    };
    let mut addrs = BTreeMap::new();
    addrs.insert(tags::EP_GOSSIP.to_string(), gossip_addr);
    addrs.insert(tags::EP_LIVENESS.to_string(), liveness_addr);

    let (ack_tx, ack_rx) = mpsc::channel(1024);
    let mut raft = None;
    let mut checker = None;
    if cfg.member {
        // Through the router, the Raft address is only a name to route by:
        // no listener, no TLS (nothing leaves the process).
        let (raft_addr, tcp, network) = match &seams.raft {
            Some(router) => {
                let addr = router.addr_for(&me);
                let network = Network::new(router.connector(&addr.to_string()));
                (addr, None, network)
            }
            None => {
                let listener = tokio::net::TcpListener::bind(cfg.raft_addr)
                    .await
                    .map_err(bind_err("raft", cfg.raft_addr))?;
                let bound = listener
                    .local_addr()
                    .map_err(bind_err("raft", cfg.raft_addr))?;
                let (server_tls, client_tls) = raft_tls(&cfg).map_err(start_err("raft tls"))?;
                let network = Network::grpc_tls(&cfg.raft, client_tls);
                (cfg.advertised(bound), Some((listener, server_tls)), network)
            }
        };
        addrs.insert(tags::EP_RAFT.to_string(), raft_addr);
        let storage = match &cfg.storage {
            StorageConfig::Memory => match &seams.disks {
                Some(disks) => Storage::Kept(disks.log(&me)),
                None => Storage::Memory,
            },
            StorageConfig::DataDir(p) => Storage::Sled(p.join("raft")),
        };
        let mut raft_cfg = cfg.raft.clone();
        raft_cfg.serving_lease = cfg.lease;
        if raft_cfg.auth.is_none() {
            raft_cfg.auth = auth_from_keyring(&cfg);
        }
        let node = RaftNode::start(
            raft_id(&me),
            RaftNodeInfo::new(me.clone(), raft_addr.to_string()),
            raft_cfg,
            storage,
            network,
            Some(ack_tx),
        )
        .await
        .map_err(start_err("raft"))?;
        match (tcp, &seams.raft) {
            (Some((listener, server_tls)), _) => {
                node.serve_tls(listener, server_tls)
                    .map_err(start_err("raft server"))?;
            }
            (None, Some(router)) => router.register(&raft_addr.to_string(), node.service()),
            (None, None) => {}
        }
        raft = Some(Arc::new(node));
        let started = match &seams.liveness {
            Some(net) => Checker::spawn(cfg.liveness.clone(), net.bind()),
            None => {
                let probe_from = SocketAddr::new(cfg.liveness_addr.ip(), 0);
                Checker::bind(cfg.liveness.clone(), probe_from).await
            }
        };
        checker = Some(started.map_err(start_err("liveness checker"))?);
    }

    let (status_tx, status_rx) = watch::channel(StatusView {
        node_id: me.clone(),
        cluster_name: cfg.cluster_name.clone(),
        shard_count: cfg.shard_count,
        ..StatusView::default()
    });
    // Listeners the caller bound (the agent's management and metrics
    // servers, or a service's own), so they are in the first tags.
    for (name, addr) in &cfg.endpoints {
        addrs.insert(name.clone(), *addr);
    }

    let mut tag_map = cfg.tags.clone();
    tag_map.insert(tags::CLUSTER.into(), cfg.cluster_name.clone());
    tag_map.insert(
        tags::KIND.into(),
        if cfg.member {
            tags::KIND_MEMBER
        } else {
            tags::KIND_CLIENT
        }
        .into(),
    );
    if !cfg.zone.is_empty() {
        tag_map.insert(tags::ZONE.into(), cfg.zone.clone());
    }
    tag_map.insert(tags::WEIGHT.into(), cfg.weight.to_string());
    for (name, addr) in &addrs {
        tag_map.insert(endpoint_key(name), addr.to_string());
    }
    let mut gcfg = cfg.gossip.clone();
    gcfg.name = me.clone();
    gcfg.tags = tag_map.clone();
    if cfg.advertise_host.is_some() {
        gcfg.advertise_addr = Some(gossip_addr);
    }
    // Serf's snapshot: a restarted member rejoins the peers it knew, also
    // after a graceful stop (a member restarting means to come back).
    if let StorageConfig::DataDir(dir) = &cfg.storage {
        gcfg.snapshot_path = Some(dir.join("gossip.snapshot"));
        gcfg.keyring_path = Some(dir.join(KEYRING_FILE));
        gcfg.rejoin_after_leave = true;
    }
    let gossip = match transport {
        GossipTransport::Mem(t) => Gossip::start(gcfg, t),
        GossipTransport::Net(t) => Gossip::start(gcfg, t),
    }
    .map_err(start_err("gossip"))?;
    let member_events = gossip.subscribe().await.map_err(start_err("gossip"))?;

    let mut discovery = None;
    if cfg.zero_conf {
        match start_discovery(&cfg, &seams, gossip_addr) {
            Ok(d) => discovery = Some(d),
            Err(e) => warn!(node = %me, error = %e, "zero-conf discovery unavailable"),
        }
    }

    let (req_tx, req_rx) = mpsc::channel(64);
    let (events, _) = broadcast::channel(1024);
    let (state_tx, state_rx) = watch::channel(NodeState::Starting);
    let (role_tx, role_rx) = watch::channel(Role::NonMember);
    let (leader_tx, leader_rx) = watch::channel(None);
    let (map_tx, map_rx) = watch::channel(None);
    let (serving_tx, serving_rx) = watch::channel(Arc::new(ServingSet::default()));
    let (done_tx, done_rx) = mpsc::channel(256);

    let drain_mark = DrainMark::of(&cfg);
    let node = Node {
        me: me.clone(),
        members_rx: gossip.watch(),
        members: Arc::new(Vec::new()),
        raft_metrics: raft.as_ref().map(|r| r.metrics()),
        cluster_state: raft.as_ref().map(|r| r.state()),
        gossip: gossip.clone(),
        raft: raft.clone(),
        checker,
        responder: Some(responder),
        acks: ack_rx,
        member_events,
        discovery,
        metrics: metrics.clone(),
        requests: req_rx,
        events: events.clone(),
        state_tx,
        role_tx,
        leader_tx,
        map_tx,
        serving_tx,
        status_tx,
        done_tx,
        done_rx,
        jobs: JoinSet::new(),
        tags: tag_map,
        membership: None,
        leader: None,
        boot: Settle::default(),
        bootstrapping: false,
        lead: Leader::new(cfg.clone(), Instant::now()),
        follow: Follower::new(me.clone()),
        undo_drain: drain_mark
            .as_ref()
            .and_then(DrainMark::read)
            .map(|before| (before, Instant::now())),
        drain_mark,
        last_status: Instant::now() - STATUS_EVERY,
        started: Instant::now(),
        stats: NodeStats::default(),
        handoff: handoff.map(Hooks::new),
        whole_map_next: false,
        cfg,
    };
    let (cluster_name, shard_count) = (node.cfg.cluster_name.clone(), node.cfg.shard_count);
    let app_log_max_entry = node.cfg.app_log_max_entry;
    let span = tracing::info_span!("node", node = %me);
    let task = tokio::spawn(node.run().instrument(span));
    let shared = Shared {
        node_id: me,
        cluster_name,
        shard_count,
        app_log_max_entry,
        requests: req_tx,
        events,
        state: state_rx,
        role: role_rx,
        leader: leader_rx,
        map: map_rx,
        serving: serving_rx,
        gate,
        status: status_rx,
        gossip,
        raft,
        metrics,
        addrs,
        started: std::time::Instant::now(),
        task: std::sync::Mutex::new(Some(task)),
    };
    Ok(Cluster {
        shared: Arc::new(shared),
    })
}

/// A component that did not start, keeping its error as the source.
/// The keyring file in the data dir (written on every key change).
const KEYRING_FILE: &str = "keyring";

/// A node restarted after a key rotation comes back with the keys it had
/// (Serf's keyring file), not the ones it was first started with: the
/// saved keyring replaces the configured one, and a Raft credential that
/// followed the configured keys follows the saved ones.
fn with_saved_keyring(mut cfg: Config) -> Result<Config, ClusterError> {
    let (StorageConfig::DataDir(dir), Some(given)) = (&cfg.storage, &cfg.gossip.keyring) else {
        return Ok(cfg);
    };
    let path = dir.join(KEYRING_FILE);
    let saved = crate::gossip::Keyring::load(&path).map_err(start_err("keyring file"))?;
    let Some(saved) = saved else {
        return Ok(cfg);
    };
    let old: Vec<&[u8]> = given.keys().collect();
    let new: Vec<&[u8]> = saved.keys().collect();
    if old != new {
        tracing::info!(path = %path.display(), keys = new.len(), "using the saved keyring, not the configured key");
    }
    if let Some(auth) = cfg.raft.auth.as_ref().and_then(|a| a.rekeyed(&old, &new)) {
        cfg.raft.auth = Some(auth);
    }
    cfg.gossip.keyring = Some(saved);
    Ok(cfg)
}

/// The Raft credential of the gossip keyring, as the agent derives it:
/// library users who set only `gossip.keyring` get authenticated Raft too.
/// Sends the primary key's credential and accepts every key's (so a node
/// started mid-rotation talks to both sides); accepts calls without one
/// while gossip accepts plaintext (a rolling switch to encryption).
fn auth_from_keyring(cfg: &Config) -> Option<crate::raft::RaftAuth> {
    let ring = cfg.gossip.keyring.as_ref()?;
    let mut auth = crate::raft::RaftAuth::from_secret(ring.primary_key());
    for key in ring.keys().skip(1) {
        auth = auth.accept_also(key);
    }
    Some(if cfg.gossip.verify_incoming {
        auth
    } else {
        auth.optional()
    })
}

fn start_err<E>(what: &'static str) -> impl FnOnce(E) -> ClusterError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ClusterError::Start {
        what,
        source: Box::new(e),
    }
}

/// Raft RPCs use the node's certificate when one is configured:
/// mutual TLS, every node presenting it and trusting the CA (or, without
/// a CA, the certificate itself: one shared self-signed cluster cert).
fn raft_tls(
    cfg: &Config,
) -> std::io::Result<(
    Option<tonic::transport::ServerTlsConfig>,
    Option<tonic::transport::ClientTlsConfig>,
)> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
    let Some(tls) = &cfg.auth.tls else {
        return Ok((None, None));
    };
    let cert = std::fs::read(&tls.cert)?;
    let key = std::fs::read(&tls.key)?;
    let ca = match &tls.ca {
        Some(ca) => std::fs::read(ca)?,
        None => cert.clone(),
    };
    let server = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert, &key))
        .client_ca_root(Certificate::from_pem(&ca));
    let mut client = ClientTlsConfig::new()
        .identity(Identity::from_pem(&cert, &key))
        .ca_certificate(Certificate::from_pem(&ca));
    if let Some(name) = &tls.server_name {
        client = client.domain_name(name.clone());
    }
    Ok((Some(server), Some(client)))
}

enum GossipTransport {
    Net(NetTransport),
    Mem(MemTransport),
}

/// Announces this node and starts browsing for its peers: through the
/// in-memory registry when the seam is set, over mDNS otherwise.
fn start_discovery(
    cfg: &Config,
    seams: &Seams,
    gossip_addr: SocketAddr,
) -> Result<(Box<dyn Discovery>, mpsc::Receiver<DiscoveryEvent>), DiscoveryError> {
    let d: Box<dyn Discovery> = match &seams.discovery {
        Some(registry) => Box::new(registry.endpoint()),
        None => Box::new(MdnsDiscovery::start(cfg.mdns.clone())?),
    };
    let ann = Announcement {
        cluster: cfg.cluster_name.clone(),
        node_id: cfg.node_id.clone(),
        gossip_addr,
        protocol_version: PROTOCOL_VERSION,
    };
    d.announce(&ann)?;
    let rx = d.browse(PeerFilter::for_announcement(&ann))?;
    Ok((d, rx))
}
