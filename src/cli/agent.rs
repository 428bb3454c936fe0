//! `clusterfunk agent`: runs one node until SIGTERM/Ctrl-C, then leaves
//! gracefully. Flags win over `CLUSTERFUNK_*` environment variables, which
//! win over the optional JSON config file, which wins over the preset.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clusterfunk::config::StorageConfig;
use clusterfunk::{Agent, Cluster, ClusterEvent, Config};
use serde::Deserialize;
use serde_json::json;

/// Default ports of a production agent (tests and the demo pass 0).
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
/// Default management gRPC port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 7947;
/// Default Raft gRPC port.
pub const DEFAULT_RAFT_PORT: u16 = 7948;
/// Default liveness UDP port.
pub const DEFAULT_LIVENESS_PORT: u16 = 7949;
/// Default metrics HTTP port.
pub const DEFAULT_METRICS_PORT: u16 = 9100;

#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct AgentArgs {
    /// JSON config file with any of these settings, by their snake_case
    /// names (flags win); the gossip knobs sit under "gossip", with more
    /// than the flags below (see the README).
    #[arg(long, env = "CLUSTERFUNK_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Unique node id (default: host name).
    #[arg(long, env = "CLUSTERFUNK_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster name (default clusterfunk).
    #[arg(long, env = "CLUSTERFUNK_CLUSTER")]
    pub cluster: Option<String>,
    /// Preset: lan (default; memberlist's LAN gossip timings), wan (slower
    /// gossip, Raft and liveness for links across data centres) or local
    /// (one host: faster gossip timings, and mDNS on the loopback
    /// interface only, so zero-conf finds only agents on this host; change
    /// that with --mdns-interface).
    #[arg(long, env = "CLUSTERFUNK_PRESET")]
    pub preset: Option<String>,
    /// Address to bind every socket on (default 127.0.0.1).
    #[arg(long, env = "CLUSTERFUNK_BIND")]
    pub bind: Option<IpAddr>,
    /// Address other nodes use to reach this one (default with 0.0.0.0: the
    /// host name's address).
    #[arg(long, env = "CLUSTERFUNK_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Gossip UDP+TCP port (default 7946; 0 = any).
    #[arg(long, env = "CLUSTERFUNK_GOSSIP_PORT")]
    pub gossip_port: Option<u16>,
    /// Raft gRPC port (default 7948; 0 = any).
    #[arg(long, env = "CLUSTERFUNK_RAFT_PORT")]
    pub raft_port: Option<u16>,
    /// Liveness UDP port (default 7949; 0 = any).
    #[arg(long, env = "CLUSTERFUNK_LIVENESS_PORT")]
    pub liveness_port: Option<u16>,
    /// Management gRPC port (default 7947; 0 = any).
    #[arg(long, env = "CLUSTERFUNK_MANAGEMENT_PORT")]
    pub management_port: Option<u16>,
    /// Metrics HTTP port (default 9100; 0 = any).
    #[arg(long, env = "CLUSTERFUNK_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Gossip addresses to join, comma-separated (host:port).
    #[arg(long, env = "CLUSTERFUNK_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Find peers over mDNS (default: on when no --join is given).
    #[arg(long, env = "CLUSTERFUNK_ZERO_CONF")]
    pub zero_conf: Option<bool>,
    /// Nodes that must see each other before a new cluster starts (default 3).
    #[arg(long, env = "CLUSTERFUNK_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,
    /// Keep the Raft log here (default: in memory).
    #[arg(long, env = "CLUSTERFUNK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep nothing on disk.
    #[arg(long, env = "CLUSTERFUNK_IN_MEMORY")]
    pub in_memory: bool,
    /// Extra tags as key=value (repeatable).
    #[arg(long = "tag", value_parser = super::parse_tag)]
    #[serde(skip)]
    pub tags: Vec<(String, String)>,
    /// Shard weight (default 1; 0 owns nothing).
    #[arg(long, env = "CLUSTERFUNK_WEIGHT")]
    pub weight: Option<u32>,
    /// Failure zone.
    #[arg(long, env = "CLUSTERFUNK_ZONE")]
    pub zone: Option<String>,
    /// Gossip only: no Raft, owns no shards (a client).
    #[arg(long, env = "CLUSTERFUNK_NON_MEMBER")]
    pub non_member: bool,
    /// Shards of a new cluster (default 10000).
    #[arg(long, env = "CLUSTERFUNK_SHARDS")]
    pub shards: Option<u32>,
    /// Liveness probe interval in ms (default 50).
    #[arg(long, env = "CLUSTERFUNK_LIVENESS_INTERVAL_MS")]
    pub liveness_interval_ms: Option<u64>,
    /// Missed probes before a node is dead (default 5).
    #[arg(long, env = "CLUSTERFUNK_LIVENESS_RETRIES")]
    pub liveness_retries: Option<u32>,
    /// Acknowledgement timeout in ms (default 500).
    #[arg(long, env = "CLUSTERFUNK_ACK_TIMEOUT_MS")]
    pub ack_timeout_ms: Option<u64>,
    /// Serving lease in ms (default 80).
    #[arg(long, env = "CLUSTERFUNK_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// Log filter, RUST_LOG style (default `info,openraft=warn`; RUST_LOG
    /// wins).
    #[arg(long, env = "CLUSTERFUNK_LOG")]
    pub log: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "CLUSTERFUNK_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Cluster secret: base64 of a 16, 24 or 32-byte key (as Serf's
    /// `-encrypt`; make one with `head -c 32 /dev/urandom | base64`). Every
    /// gossip message is then encrypted and authenticated with it, and Raft
    /// calls carry a credential derived from it: nodes without it never
    /// join.
    #[arg(long, env = "CLUSTERFUNK_ENCRYPT", hide_env_values = true)]
    pub encrypt: Option<String>,
    /// With --encrypt: refuse plaintext gossip (default true). Set false on
    /// every node while switching a running cluster to encryption, then
    /// true once all of them encrypt.
    #[arg(long, env = "CLUSTERFUNK_GOSSIP_VERIFY_INCOMING")]
    pub gossip_verify_incoming: Option<bool>,
    /// With --encrypt: encrypt outgoing gossip (default true). The first
    /// step of a switch to encryption is false on every node.
    #[arg(long, env = "CLUSTERFUNK_GOSSIP_VERIFY_OUTGOING")]
    pub gossip_verify_outgoing: Option<bool>,
    /// Shared token every management call must carry (Bearer).
    #[arg(long, env = "CLUSTERFUNK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve the management API over TLS with this certificate (PEM).
    #[arg(long, env = "CLUSTERFUNK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "CLUSTERFUNK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, env = "CLUSTERFUNK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Print `ready` and every cluster event as JSON lines on stdout.
    #[arg(long)]
    #[serde(skip)]
    pub print_events: bool,
    /// Record what `is_serving` answers for every shard, about every
    /// millisecond, in this file (`clusterfunk bench chaos` reads it).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub probe_out: Option<PathBuf>,
    /// Longest pause in ms between attempts to join the --join addresses
    /// (the pause starts at 100 ms and doubles up to this; default 5000).
    #[arg(long, env = "CLUSTERFUNK_RETRY_JOIN_INTERVAL_MS")]
    pub retry_join_interval_ms: Option<u64>,
    /// Attempts to join the --join addresses before giving up (default 0:
    /// retry until one answers).
    #[arg(long, env = "CLUSTERFUNK_RETRY_JOIN_MAX")]
    pub retry_join_max: Option<u32>,
    /// Gossip: how often in ms to try to reach a failed member again
    /// (Serf's reconnect interval; default 30000 on lan, 10000 on local;
    /// 0 never).
    #[arg(long, env = "CLUSTERFUNK_RECONNECT_INTERVAL_MS")]
    pub reconnect_interval_ms: Option<u64>,
    /// Gossip: a failed member is forgotten after this many seconds
    /// (Serf's reconnect timeout; default 86400).
    #[arg(long, env = "CLUSTERFUNK_RECONNECT_TIMEOUT_S")]
    pub reconnect_timeout_s: Option<u64>,
    /// Gossip: a member that left (or was forced to) is forgotten after
    /// this many seconds (Serf's tombstone timeout; default 86400).
    #[arg(long, env = "CLUSTERFUNK_TOMBSTONE_TIMEOUT_S")]
    pub tombstone_timeout_s: Option<u64>,
    /// Most Raft voters the leader keeps, odd (default 5); other members
    /// are learners.
    #[arg(long, env = "CLUSTERFUNK_MAX_VOTERS")]
    pub max_voters: Option<usize>,
    /// Interface mDNS announces and browses on: a name (eth0), `all`, or
    /// `loopback` (default: all; loopback with --preset local).
    #[arg(long, env = "CLUSTERFUNK_MDNS_INTERFACE")]
    pub mdns_interface: Option<String>,
    /// Highest gossip protocol version sent (this build speaks 1..=2 and
    /// sends 2 by default). Peers always talk in the highest version both
    /// speak; hold it at 1 only to keep large frames uncompressed.
    #[arg(long, env = "CLUSTERFUNK_PROTOCOL_VERSION")]
    pub protocol_version: Option<u8>,
    /// Testing only: the whole protocol range to advertise, `min-max/cur`
    /// (pretends to be another build).
    #[arg(long, env = "CLUSTERFUNK_PROTOCOL_RANGE", hide = true)]
    pub protocol_range: Option<String>,
    /// Accept gossip, Raft and management traffic only from these address
    /// blocks (repeatable or comma-separated, e.g. 10.0.0.0/8); others are
    /// dropped and counted in clusterfunk_cidr_refused_total. Default: any.
    #[arg(long, env = "CLUSTERFUNK_ALLOW_CIDR", value_delimiter = ',')]
    pub allow_cidr: Vec<String>,
    #[command(flatten)]
    #[serde(rename = "gossip")]
    pub tuning: super::tuning::TuningArgs,
    #[command(flatten)]
    #[serde(rename = "raft")]
    pub raft_tuning: super::tuning::RaftTuningArgs,
}

impl AgentArgs {
    /// Fills unset flags from the JSON config file.
    fn merge_file(mut self) -> anyhow::Result<AgentArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let file: AgentArgs =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            node_id,
            cluster,
            preset,
            bind,
            advertise,
            gossip_port,
            raft_port,
            liveness_port,
            management_port,
            metrics_port,
            zero_conf,
            bootstrap_expect,
            data_dir,
            weight,
            zone,
            shards,
            liveness_interval_ms,
            liveness_retries,
            ack_timeout_ms,
            lease_ms,
            log,
            log_format,
            token,
            encrypt,
            gossip_verify_incoming,
            gossip_verify_outgoing,
            tls_cert,
            tls_key,
            tls_ca,
            retry_join_interval_ms,
            retry_join_max,
            reconnect_interval_ms,
            reconnect_timeout_s,
            tombstone_timeout_s,
            max_voters,
            mdns_interface,
            protocol_version,
            protocol_range
        );
        if self.join.is_empty() {
            self.join = file.join;
        }
        if self.allow_cidr.is_empty() {
            self.allow_cidr = file.allow_cidr;
        }
        self.tuning.fill_from(file.tuning);
        self.raft_tuning.fill_from(file.raft_tuning);
        self.in_memory |= file.in_memory;
        self.non_member |= file.non_member;
        Ok(self)
    }

    /// The node's configuration.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => hostname(),
        };
        let mut c = match self.preset.as_deref().unwrap_or("lan") {
            "local" => Config::local(node_id),
            "lan" => Config::lan(node_id),
            "wan" => Config::wan(node_id),
            other => anyhow::bail!("unknown preset {other:?} (local, lan or wan)"),
        };
        if let Some(name) = &self.cluster {
            c.cluster_name = name.clone();
        }
        let ip = self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let at = |port: Option<u16>, default: u16| SocketAddr::new(ip, port.unwrap_or(default));
        c.gossip_addr = at(self.gossip_port, DEFAULT_GOSSIP_PORT);
        c.raft_addr = at(self.raft_port, DEFAULT_RAFT_PORT);
        c.liveness_addr = at(self.liveness_port, DEFAULT_LIVENESS_PORT);
        c.management_addr = Some(at(self.management_port, DEFAULT_MANAGEMENT_PORT));
        c.metrics_addr = Some(at(self.metrics_port, DEFAULT_METRICS_PORT));
        c.advertise_host = match self.advertise {
            Some(a) => Some(a),
            None if ip.is_unspecified() => Some(own_address(ip.is_ipv4()).context(
                "--bind 0.0.0.0 (or ::) needs --advertise (the host name did not resolve)",
            )?),
            None => None,
        };
        // Zero-conf in the family the node is bound in (mDNS over IPv6 for
        // `--bind ::1` or `::`).
        c.mdns.ip_version = clusterfunk::config::IpVersion::of(ip);
        c.join = self.join.clone();
        c.zero_conf = self.zero_conf.unwrap_or(self.join.is_empty());
        if let Some(n) = self.bootstrap_expect {
            c.bootstrap_expect = n;
        }
        c.storage = match (&self.data_dir, self.in_memory) {
            (Some(_), true) => anyhow::bail!("--data-dir and --in-memory exclude each other"),
            (Some(dir), false) => StorageConfig::DataDir(dir.clone()),
            (None, _) => StorageConfig::Memory,
        };
        c.tags = self.tags.iter().cloned().collect::<BTreeMap<_, _>>();
        if let Some(w) = self.weight {
            c.weight = w;
        }
        if let Some(z) = &self.zone {
            c.zone = z.clone();
        }
        c.member = !self.non_member;
        if let Some(n) = self.shards {
            c.shard_count = n;
        }
        if let Some(ms) = self.liveness_interval_ms {
            c.liveness.interval = Duration::from_millis(ms);
        }
        if let Some(n) = self.liveness_retries {
            c.liveness.retries = n;
        }
        if let Some(ms) = self.ack_timeout_ms {
            c.ack_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.lease_ms {
            c.lease = Duration::from_millis(ms);
        }
        self.apply_membership_timing(&mut c);
        self.apply_tuning(&mut c)?;
        c.auth.token = self.token.clone();
        self.apply_secret(&mut c)?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.auth.tls = Some(clusterfunk::config::TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                ca: self.tls_ca.clone(),
                server_name: None,
            });
        }
        Ok(c.validate()?)
    }
}

impl AgentArgs {
    /// The cluster secret: the gossip keyring from `--encrypt`, and the Raft
    /// credential derived from it (or from the token when there is no key).
    fn apply_secret(&self, c: &mut Config) -> anyhow::Result<()> {
        let key = match self.encrypt.as_deref() {
            Some(k) => Some(parse_key(k)?),
            None => None,
        };
        let verify_in = self.gossip_verify_incoming.unwrap_or(true);
        if let Some(k) = &key {
            c.gossip.keyring = Some(clusterfunk::gossip::Keyring::new(k)?);
            c.gossip.verify_incoming = verify_in;
            c.gossip.verify_outgoing = self.gossip_verify_outgoing.unwrap_or(true);
        }
        c.raft.auth = match (&key, self.token.as_deref()) {
            (Some(k), token) => {
                let mut auth = clusterfunk::raft::RaftAuth::from_secret(k);
                // Nodes that still run with only the token (before a key
                // was introduced) keep being accepted.
                if let Some(t) = token {
                    auth = auth.accept_also(t.as_bytes());
                }
                Some(if verify_in { auth } else { auth.optional() })
            }
            (None, Some(t)) => Some(clusterfunk::raft::RaftAuth::from_secret(t.as_bytes())),
            (None, None) => None,
        };
        Ok(())
    }
}

impl AgentArgs {
    /// Gossip knobs, voters, mDNS interface, protocol versions and the
    /// CIDR allow-list.
    fn apply_tuning(&self, c: &mut Config) -> anyhow::Result<()> {
        use clusterfunk::gossip::ProtocolRange;
        self.tuning.apply(&mut c.gossip);
        self.raft_tuning.apply(&mut c.raft);
        if let Some(n) = self.max_voters {
            c.max_voters = n;
        }
        if let Some(name) = &self.mdns_interface {
            c.mdns.interfaces = match name.as_str() {
                "" => anyhow::bail!("--mdns-interface needs a name, `all` or `loopback`"),
                "all" => clusterfunk::config::Interfaces::All,
                "loopback" => clusterfunk::config::Interfaces::LoopbackOnly,
                other => clusterfunk::config::Interfaces::Named(other.to_string()),
            };
        }
        if let Some(v) = self.protocol_version {
            c.gossip.protocol = ProtocolRange::sending(v).context("--protocol-version")?;
        }
        if let Some(r) = &self.protocol_range {
            c.gossip.protocol = r.parse().context("--protocol-range")?;
        }
        c.allow_cidr =
            clusterfunk::config::AllowList::parse(&self.allow_cidr).context("--allow-cidr")?;
        Ok(())
    }

    /// Retry-join and the gossip reconnect/reap timeouts.
    fn apply_membership_timing(&self, c: &mut Config) {
        if let Some(ms) = self.retry_join_interval_ms {
            c.retry_join_interval = Duration::from_millis(ms);
        }
        if let Some(n) = self.retry_join_max {
            c.retry_join_max = n;
        }
        if let Some(ms) = self.reconnect_interval_ms {
            c.gossip.reconnect_interval = Duration::from_millis(ms);
        }
        if let Some(s) = self.reconnect_timeout_s {
            c.gossip.reap_failed_after = Duration::from_secs(s);
        }
        if let Some(s) = self.tombstone_timeout_s {
            c.gossip.reap_left_after = Duration::from_secs(s);
        }
    }
}

/// Decodes `--encrypt`: standard base64 of 16, 24 or 32 bytes.
fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("--encrypt must be base64 (e.g. from `head -c 32 /dev/urandom | base64`)")?;
    anyhow::ensure!(
        matches!(key.len(), 16 | 24 | 32),
        "--encrypt must decode to 16, 24 or 32 bytes, got {}",
        key.len()
    );
    Ok(key)
}

/// The first non-loopback address of the bound family (`v4` or IPv6) the
/// host name resolves to (in a container: its address on the container
/// network).
fn own_address(v4: bool) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    (hostname().as_str(), 0)
        .to_socket_addrs()
        .ok()?
        .map(|a| a.ip())
        .find(|ip| !ip.is_loopback() && ip.is_ipv4() == v4)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("node-{}", std::process::id()))
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let args = args.merge_file()?;
    let format = args
        .log_format
        .as_deref()
        .unwrap_or("text")
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // openraft narrates every RPC at info; operators want its warnings.
    let filter = args.log.as_deref().unwrap_or("info,openraft=warn");
    clusterfunk::metrics::init_tracing(filter, format)?;
    let config = args.to_config()?;
    if let Some(why) = super::posture::open_to_network(&config) {
        tracing::warn!("{why}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(config, args.print_events, args.probe_out))
}

async fn serve(
    config: Config,
    print_events: bool,
    probe_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let agent = Agent::start(config).await?;
    let cluster = agent.cluster();
    let probe = match &probe_out {
        Some(path) => Some(
            super::probe::Probe::start(cluster.clone(), path)
                .with_context(|| format!("probe file {}", path.display()))?,
        ),
        None => None,
    };
    let mut events = cluster.events();
    if print_events {
        let ready = json!({
            "t_ms": unix_ms(),
            "node": cluster.node_id(),
            "event": "ready",
            "endpoints": cluster.local_endpoints(),
        });
        print_line(&ready);
    }
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.recv() => match ev {
                Ok(ev) if print_events => print_event(cluster, &ev),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "event printer lagged");
                }
                Err(_) => break,
            },
        }
    }
    tracing::info!("leaving");
    agent.stop().await;
    if let Some(probe) = probe {
        probe.stop();
    }
    Ok(())
}

fn print_event(cluster: &Cluster, ev: &ClusterEvent) {
    let mut line = json!({
        "t_ms": unix_ms(),
        "node": cluster.node_id(),
        "event": ev,
    });
    if let ClusterEvent::MapCommitted { .. } = ev {
        let owners: BTreeMap<String, u32> = cluster
            .shard_map()
            .borrow()
            .as_ref()
            .map(|m| {
                m.counts()
                    .into_iter()
                    .map(|(n, c)| (n.to_string(), c))
                    .collect()
            })
            .unwrap_or_default();
        line["owners"] = json!(owners);
        line["leader"] = json!(cluster.leader());
    }
    print_line(&line);
}

/// One JSON line on stdout. A reader that went away (a closed pipe) must
/// not stop the node, as `println!` would by panicking: the line is lost.
fn print_line(line: &serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        tracing::debug!("stdout is closed; event line dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn args(flags: &[&str]) -> AgentArgs {
        let argv = ["agent", "--node-id", "a", "--in-memory"];
        Cmd::try_parse_from(argv.iter().chain(flags))
            .expect("flags")
            .agent
    }

    #[test]
    fn tuning_flags_and_the_json_file_reach_the_config() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("agent.json");
        std::fs::write(
            &file,
            r#"{"max_voters": 3, "allow_cidr": ["10.0.0.0/8"],
                "gossip": {"probe_interval_ms": 900, "suspicion_mult": 7, "max_incoming_streams": 9}}"#,
        )
        .expect("write");
        let path = file.to_str().expect("utf-8 path");
        let a = args(&["--config", path, "--probe-interval-ms", "700"]);
        let c = a.merge_file().expect("merge").to_config().expect("config");
        assert_eq!(
            c.gossip.probe_interval,
            Duration::from_millis(700),
            "flag wins"
        );
        assert_eq!(c.gossip.suspicion_mult, 7);
        assert_eq!(c.gossip.max_incoming_streams, 9);
        assert_eq!(c.max_voters, 3);
        assert_eq!(c.allow_cidr.to_string(), "10.0.0.0/8");
        assert_eq!(c.raft.listener.allow, c.allow_cidr, "validate copies it");

        let c = args(&[
            "--preset",
            "local",
            "--mdns-interface",
            "eth7",
            "--protocol-version",
            "1",
        ])
        .to_config()
        .expect("config");
        assert_eq!(
            c.mdns.interfaces,
            clusterfunk::config::Interfaces::Named("eth7".into())
        );
        assert_eq!(c.gossip.protocol.cur, 1);

        for bad in [
            &["--max-voters", "4"][..],
            &["--probe-timeout-ms", "5000"],
            &["--packet-size", "100"],
            &["--allow-cidr", "10.0.0.0/40"],
            &["--protocol-version", "9"],
            &["--mdns-interface", ""],
        ] {
            let err = args(bad).to_config().expect_err("refused");
            println!("{bad:?}: {err:#}");
        }
    }
}
