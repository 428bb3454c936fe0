//! `Config`: everything a node needs, with documented defaults, presets for
//! one host, a LAN and a WAN, and [`Config::validate`].
//!
//! The module configs ([`GossipConfig`], [`RaftConfig`], [`LivenessConfig`],
//! [`MdnsConfig`]) sit inside; their own docs give their defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::cidr::{AllowList, Cidr};
// The module configs a `Config` holds, re-exported so that the documented
// API names them without the modules (which are building blocks).
pub use crate::discovery::{Interfaces, IpVersion, MdnsConfig};
pub use crate::gossip::{ConfigError as GossipConfigError, GossipConfig, Keyring};
pub use crate::liveness::{ConfigError as LivenessConfigError, LivenessConfig};
pub use crate::raft::{ConfigError as RaftConfigError, RaftConfig, SnapshotPolicy};
pub use crate::shards::{Placement, WeightedRebalance};

/// Where the Raft log and state machine live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// Nothing survives the process (tests, `--in-memory`). The default.
    Memory,
    /// sled under this directory (`--data-dir`), fsynced before Raft is told.
    DataDir(PathBuf),
}

/// A node's configuration. Start from [`Config::lan`] (or `local`/`wan`),
/// change fields, then [`Config::validate`] (done by `Cluster::start`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Unique node id (also the gossip name). Required, at most 64 bytes.
    pub node_id: String,
    /// Cluster name: nodes of another name never join this cluster.
    /// Default `clusterfunk`.
    pub cluster_name: String,
    /// Gossip UDP+TCP bind address. Default `127.0.0.1:0` (port from the OS).
    pub gossip_addr: SocketAddr,
    /// Raft gRPC bind address. Default `127.0.0.1:0`.
    pub raft_addr: SocketAddr,
    /// Liveness UDP responder bind address. Default `127.0.0.1:0`.
    pub liveness_addr: SocketAddr,
    /// Management gRPC bind address; `None` serves no management API.
    /// Default `Some(127.0.0.1:0)`.
    pub management_addr: Option<SocketAddr>,
    /// TLS of the node's gRPC servers (Raft and management) and the
    /// management API's token. Default: plaintext, no token.
    pub auth: AuthConfig,
    /// HTTP `/metrics`, `/healthz`, `/status` and `/` bind address; `None`
    /// serves nothing. Default `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Address other nodes use to reach this one. Default: the bind
    /// address's host; required when binding an unspecified address
    /// (`0.0.0.0`).
    pub advertise_host: Option<IpAddr>,
    /// Gossip addresses to join at start (host:port; names are resolved).
    pub join: Vec<String>,
    /// Find peers of this cluster name over mDNS. Default false (the agent
    /// turns it on when no `--join` is given).
    pub zero_conf: bool,
    /// mDNS settings (service type, interfaces).
    pub mdns: MdnsConfig,
    /// Raft-capable nodes that must see each other before the lowest id
    /// initialises a new cluster; 0 never bootstraps (join only). Default 3.
    pub bootstrap_expect: usize,
    /// How long the set of visible nodes must stay unchanged before
    /// bootstrapping, so that nodes starting together agree. Default 300 ms.
    pub bootstrap_settle: Duration,
    /// Raft storage. Default [`StorageConfig::Memory`].
    pub storage: StorageConfig,
    /// Whether this node joins Raft and owns shards (false: a client that
    /// only gossips, `--non-member`). Default true.
    pub member: bool,
    /// Shard weight: shares are proportional to it; 0 owns nothing.
    /// Default 1.
    pub weight: u32,
    /// Failure zone; voters are spread over zones. Default empty.
    pub zone: String,
    /// Extra gossip tags (application endpoints are `ep.<name>`).
    pub tags: BTreeMap<String, String>,
    /// Endpoints this process already listens on, by name: published as
    /// `ep.<name>` in the node's first gossip tags and listed by
    /// `Cluster::local_endpoints`. The agent puts its management and
    /// metrics listeners here; a service can put its own. Give advertised
    /// addresses (see [`Config::advertised`]). Default empty.
    pub endpoints: BTreeMap<String, SocketAddr>,
    /// Shards in a new cluster (fixed for the cluster's life). Default 10,000.
    pub shard_count: u32,
    /// Most voters the leader keeps (odd). Default 5.
    pub max_voters: usize,
    /// How long the leader waits for every owner's acknowledgement of a
    /// proposed map before dropping the silent ones. Default 500 ms.
    pub ack_timeout: Duration,
    /// A node serves its shards only under a lease that ends at most this
    /// long after the leader's last round a quorum accepted (see
    /// `raft::lease`); every heartbeat renews it. Must be below
    /// `ack_timeout` and span at least three Raft heartbeats (a lease is
    /// granted one heartbeat after the round it counts from and must last
    /// until the next grant arrives). A shorter lease moves the shards of a
    /// crashed node sooner (the leader waits out its lease); one no longer
    /// than the Raft `vote_lease` adds no wait after a leader change.
    /// Default 80 ms.
    pub lease: Duration,
    /// Changes are batched for this long before the leader proposes a map.
    /// Default 5 ms.
    pub reshard_debounce: Duration,
    /// A node dropped for not acknowledging stays out of maps this long,
    /// doubled for each further exclusion in a row (up to 32 times).
    /// Default 1 s.
    pub exclude_backoff: Duration,
    /// A voter that is dead (liveness) this long is replaced by a learner.
    /// Default 3 s.
    pub voter_grace: Duration,
    /// A member gossip reports failed this long leaves Raft membership.
    /// Default 30 s.
    pub removal_grace: Duration,
    /// How long a graceful stop waits for this node's shards to move.
    /// Default 5 s.
    pub drain_timeout: Duration,
    /// Gossip protocol settings (the preset picks them).
    pub gossip: GossipConfig,
    /// Raft timing and storage settings.
    pub raft: RaftConfig,
    /// Liveness checker settings.
    pub liveness: LivenessConfig,
    /// Longest pause between two attempts to join the `join` seeds: the
    /// pause starts at 100 ms and doubles up to this (Consul's
    /// `retry_interval`). Default 5 s.
    pub retry_join_interval: Duration,
    /// Attempts to join the seeds before giving up; 0 retries until one
    /// answers (Consul's `retry_max`). Default 0.
    pub retry_join_max: u32,
    /// Sources allowed on the gossip, Raft and management listeners
    /// (`--allow-cidr`); others are dropped and counted. When not empty,
    /// `validate` copies it into the gossip and Raft settings (which may
    /// also be set one by one). Default: empty, every address.
    pub allow_cidr: AllowList,
    /// Largest application log entry this node appends
    /// ([`Cluster::append_log`](crate::Cluster::append_log)); bigger ones
    /// are refused before anything is written. At most 1 MiB (the limit
    /// every node's state machine enforces). Default 64 KiB.
    pub app_log_max_entry: usize,
    /// How the leader places shards on the live owners. Default
    /// [`WeightedRebalance`] (proportional to weight, fewest moves). The
    /// leader checks what a strategy returns and falls back to the default
    /// for that map when it is not valid (see [`crate::shards::Placement`]).
    pub placement: Arc<dyn Placement>,
}

/// TLS of a node's gRPC servers and clients (PEM files, read at start).
///
/// One certificate serves both Raft RPCs (mutual TLS between nodes: every
/// node presents it and trusts `ca`) and the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain of this node.
    pub cert: PathBuf,
    /// Private key of `cert`.
    pub key: PathBuf,
    /// With a CA, peers and management clients must present a certificate
    /// it signed (mutual TLS), and a node dialling another trusts this CA
    /// and presents its own certificate. Without one, management clients
    /// are not authenticated by TLS and nodes trust only `cert` itself
    /// (every node shares one certificate).
    pub ca: Option<PathBuf>,
    /// Name a node expects in another node's certificate; default: the host
    /// of the address dialled.
    pub server_name: Option<String>,
}

/// How nodes and operators prove who they are. The default is plaintext
/// with no token (fine on loopback; set TLS and a token elsewhere).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// TLS for Raft RPCs and the management API.
    pub tls: Option<TlsConfig>,
    /// When set, every management call (not gRPC health) must carry
    /// `authorization: Bearer <token>`; others get UNAUTHENTICATED. Nodes
    /// of a cluster share it: forwarded writes carry it too.
    pub token: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field has an unusable value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The gossip settings are invalid.
    #[error("gossip: {0}")]
    Gossip(#[from] GossipConfigError),
    /// The Raft settings are invalid.
    #[error("raft: {0}")]
    Raft(#[from] RaftConfigError),
    /// The liveness settings are invalid.
    #[error("liveness: {0}")]
    Liveness(#[from] LivenessConfigError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

const LOOPBACK_ANY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

impl Config {
    /// LAN defaults: gossip uses memberlist's LAN preset; Raft and liveness
    /// use their defaults (20 ms heartbeat, 110 ms vote lease, 130–210 ms
    /// random election timeout, 50 ms liveness probes with 5 retries), and
    /// an 80 ms serving lease.
    pub fn lan(node_id: impl Into<String>) -> Config {
        let node_id = node_id.into();
        Config {
            gossip: GossipConfig::lan(node_id.clone()),
            node_id,
            cluster_name: "clusterfunk".into(),
            gossip_addr: LOOPBACK_ANY,
            raft_addr: LOOPBACK_ANY,
            liveness_addr: LOOPBACK_ANY,
            management_addr: Some(LOOPBACK_ANY),
            auth: AuthConfig::default(),
            metrics_addr: None,
            advertise_host: None,
            join: Vec::new(),
            zero_conf: false,
            mdns: MdnsConfig::default(),
            bootstrap_expect: 3,
            bootstrap_settle: Duration::from_millis(300),
            storage: StorageConfig::Memory,
            member: true,
            weight: 1,
            zone: String::new(),
            tags: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            shard_count: crate::shards::DEFAULT_SHARD_COUNT,
            max_voters: 5,
            ack_timeout: Duration::from_millis(500),
            lease: Duration::from_millis(80),
            reshard_debounce: Duration::from_millis(5),
            exclude_backoff: Duration::from_secs(1),
            voter_grace: Duration::from_secs(3),
            removal_grace: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            raft: RaftConfig::default(),
            liveness: LivenessConfig::default(),
            retry_join_interval: Duration::from_secs(5),
            retry_join_max: 0,
            allow_cidr: AllowList::default(),
            app_log_max_entry: crate::raft::app_log::DEFAULT_ENTRY_LIMIT,
            placement: Arc::new(WeightedRebalance),
        }
    }

    /// One host (tests, the demo): memberlist's local gossip preset and
    /// loopback-only mDNS; everything else as [`Config::lan`].
    pub fn local(node_id: impl Into<String>) -> Config {
        let node_id = node_id.into();
        let mdns = MdnsConfig {
            interfaces: Interfaces::LoopbackOnly,
            ..MdnsConfig::default()
        };
        Config {
            gossip: GossipConfig::local(node_id.clone()),
            mdns,
            ..Config::lan(node_id)
        }
    }

    /// Across data centres: memberlist's WAN gossip preset, slower Raft
    /// elections (1 s vote lease, then 0.5–1 s; 150 ms heartbeats) and
    /// liveness (250 ms, 4 retries), longer ack timeout (2 s) and lease
    /// (1.2 s).
    pub fn wan(node_id: impl Into<String>) -> Config {
        let node_id = node_id.into();
        let raft = RaftConfig {
            heartbeat_interval: Duration::from_millis(150),
            append_timeout: Duration::from_millis(300),
            vote_lease: Duration::from_millis(1000),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            ..RaftConfig::default()
        };
        let liveness = LivenessConfig {
            interval: Duration::from_millis(250),
            retries: 4,
            ..LivenessConfig::default()
        };
        Config {
            gossip: GossipConfig::wan(node_id.clone()),
            raft,
            liveness,
            ack_timeout: Duration::from_secs(2),
            lease: Duration::from_millis(1200),
            ..Config::lan(node_id)
        }
    }

    /// Checks every field (and the module configs) and returns the config
    /// with the node id and cluster name copied into them.
    pub fn validate(mut self) -> Result<Config, ConfigError> {
        if self.node_id.is_empty() || self.node_id.len() > 64 {
            return Err(invalid("node_id", "must be 1 to 64 bytes"));
        }
        if self
            .node_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid("node_id", "must not contain spaces or controls"));
        }
        if self.cluster_name.is_empty() || self.cluster_name.len() > 64 {
            return Err(invalid("cluster_name", "must be 1 to 64 bytes"));
        }
        if self.shard_count == 0 || self.shard_count > crate::shards::MAX_SHARD_COUNT {
            return Err(invalid(
                "shard_count",
                format!("must be 1..={}", crate::shards::MAX_SHARD_COUNT),
            ));
        }
        if self.max_voters == 0 || self.max_voters % 2 == 0 {
            return Err(invalid("max_voters", "must be odd"));
        }
        if self.lease.is_zero() || self.lease >= self.ack_timeout {
            return Err(invalid("lease", "must be above 0 and below ack_timeout"));
        }
        if self.lease < self.raft.heartbeat_interval * 3 {
            return Err(invalid(
                "lease",
                "must be at least three Raft heartbeat intervals",
            ));
        }
        for (field, addr) in [
            ("gossip_addr", Some(self.gossip_addr)),
            ("raft_addr", Some(self.raft_addr)),
            ("liveness_addr", Some(self.liveness_addr)),
            ("management_addr", self.management_addr),
            ("metrics_addr", self.metrics_addr),
        ] {
            if addr.is_some_and(|a| a.ip().is_unspecified()) && self.advertise_host.is_none() {
                return Err(invalid(
                    field,
                    "binds an unspecified address: set advertise_host",
                ));
            }
        }
        if self.retry_join_interval.is_zero() {
            return Err(invalid("retry_join_interval", "must be above 0"));
        }
        if self.app_log_max_entry == 0
            || self.app_log_max_entry > crate::raft::app_log::MAX_ENTRY_BYTES
        {
            return Err(invalid(
                "app_log_max_entry",
                format!("must be 1..={}", crate::raft::app_log::MAX_ENTRY_BYTES),
            ));
        }
        if self.advertise_host.is_some_and(|h| h.is_unspecified()) {
            return Err(invalid("advertise_host", "must be a reachable address"));
        }
        self.gossip.name = self.node_id.clone();
        if !self.allow_cidr.is_open() {
            self.gossip.allow = self.allow_cidr.clone();
            self.raft.listener.allow = self.allow_cidr.clone();
        }
        self.raft.cluster_name = self.cluster_name.clone();
        self.gossip = self.gossip.validate()?;
        self.raft.validate()?;
        self.liveness = self.liveness.validate()?;
        Ok(self)
    }

    /// The address others use for a socket bound at `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.advertise_host.unwrap_or(bound.ip()), bound.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = AuthConfig {
            tls: None,
            token: Some("s3cret".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn presets_validate() {
        for c in [Config::local("a"), Config::lan("a"), Config::wan("a")] {
            let c = c.validate().expect("preset is valid");
            assert_eq!(c.gossip.name, "a");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        type Change = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Change)> = vec![
            ("node_id", Box::new(|c| c.node_id = String::new())),
            ("node_id", Box::new(|c| c.node_id = "a b".into())),
            ("max_voters", Box::new(|c| c.max_voters = 4)),
            ("lease", Box::new(|c| c.lease = c.ack_timeout)),
            (
                "lease",
                Box::new(|c| c.lease = c.raft.heartbeat_interval * 2),
            ),
            ("shard_count", Box::new(|c| c.shard_count = 0)),
            ("app_log_max_entry", Box::new(|c| c.app_log_max_entry = 0)),
            (
                "app_log_max_entry",
                Box::new(|c| c.app_log_max_entry = (1 << 20) + 1),
            ),
            (
                "gossip_addr",
                Box::new(|c| c.gossip_addr = "0.0.0.0:0".parse().expect("addr")),
            ),
        ];
        for (field, change) in cases {
            let mut c = Config::local("a");
            change(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn unspecified_bind_is_fine_with_an_advertised_host() {
        let mut c = Config::lan("a");
        c.gossip_addr = "0.0.0.0:7946".parse().expect("addr");
        c.advertise_host = Some("10.0.0.5".parse().expect("ip"));
        let c = c.validate().expect("valid");
        assert_eq!(c.advertised(c.gossip_addr).to_string(), "10.0.0.5:7946");
    }
}
