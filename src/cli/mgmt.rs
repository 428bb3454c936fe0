//! The operator subcommands (`status`, `members`, `shards`, `endpoints`,
//! `step-down`, `add`, `remove`, `drain`, `weight`, `watch`, `event`,
//! `health`, `join`, `force-leave`, `log`): each talks to one node's management API, given by
//! `--rpc-addr` (default: port 7947 on this host) or found with `--zero-conf`.
//!
//! Output is aligned columns for people, or `--format json` for scripts
//! (one JSON document; `watch` prints one JSON object per line). On failure
//! the exit code is 1 and stderr holds one line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use clusterfunk::management::{
    Client, ClientTls, Health, ManagementError, NodeFilter, WriteOutcome, DEFAULT_PORT,
};
use serde::Serialize;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// JSON.
    Json,
}

/// How to reach a node; shared by every operator subcommand.
#[derive(Args, Clone, Debug)]
pub struct RpcArgs {
    /// Management address of any node (host:port; a host alone means port
    /// 7947).
    #[arg(long, env = "CLUSTERFUNK_RPC_ADDR", default_value_t = default_addr())]
    rpc_addr: String,
    /// Shared management token (sent as `authorization: Bearer`).
    #[arg(long, env = "CLUSTERFUNK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Find a node over mDNS instead of using --rpc-addr.
    #[arg(long)]
    zero_conf: bool,
    /// With --zero-conf: only nodes of this cluster name.
    #[arg(long, env = "CLUSTERFUNK_CLUSTER")]
    cluster: Option<String>,
    /// With --zero-conf: browse only this interface (default: every IPv4
    /// interface that is up).
    #[arg(long)]
    mdns_interface: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// CA certificate (PEM) of the server: turns TLS on.
    #[arg(long, env = "CLUSTERFUNK_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require one.
    #[arg(long, env = "CLUSTERFUNK_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Key of --tls-cert (PEM).
    #[arg(long, env = "CLUSTERFUNK_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Name expected in the server's certificate (default: the host dialled).
    #[arg(long)]
    tls_domain: Option<String>,
    /// Give up after this many seconds (0: never; `drain` waits as long as
    /// it needs unless given one; for `watch` it bounds only the wait for
    /// the stream to open, never the stream).
    #[arg(long)]
    timeout: Option<f64>,
}

fn default_addr() -> String {
    format!("127.0.0.1:{DEFAULT_PORT}")
}

/// The operator subcommands, flattened into the binary's command list.
#[derive(Subcommand, Debug)]
pub enum MgmtCmd {
    /// Show a node's view of the cluster.
    Status(RpcArgs),
    /// List the nodes (like `serf members`).
    Members(MembersArgs),
    /// Show the committed shard map (`clusterfunk shards`, which shares its
    /// name with the `shards simulate` tools: see `run_shards`).
    #[command(skip)]
    Shards(ShardsArgs),
    /// List the endpoints nodes publish.
    Endpoints(EndpointsArgs),
    /// Make the leader hand leadership to another voter.
    StepDown(RpcArgs),
    /// Add a node seen in gossip to Raft and the shard map.
    Add(NodeArgs),
    /// Remove a node from Raft and the shard map.
    Remove(NodeArgs),
    /// Set a node's weight to 0 and wait until it owns no shard.
    Drain(DrainArgs),
    /// Set a node's shard weight.
    Weight(WeightArgs),
    /// Stream cluster events until Ctrl-C.
    Watch(WatchArgs),
    /// Broadcast a user event over gossip.
    Event(EventArgs),
    /// Print the node's gRPC health; exit 1 unless it is serving.
    Health(RpcArgs),
    /// Ask the node to join gossip through more addresses (like `serf join`).
    Join(JoinArgs),
    /// Mark a failed node left on every node (like `serf force-leave`).
    ForceLeave(ForceLeaveArgs),
    /// The application log: `log append <text>`, `log watch [--from N] [-f]`.
    Log(app_log::LogArgs),
}

/// `join` flags.
#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Gossip addresses (host:port) of nodes to join.
    #[arg(required = true)]
    addresses: Vec<String>,
}

/// `force-leave` flags.
#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Node id of the failed node.
    node: String,
    /// Also forget the node on every node at once (instead of listing it
    /// as left until the tombstone timeout).
    #[arg(long)]
    prune: bool,
}

/// `members` flags.
#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Only nodes with this gossip status (alive, suspect, dead, left).
    #[arg(long)]
    status: Option<String>,
    /// Only nodes with this tag (key=value, repeatable).
    #[arg(long = "tag", value_parser = super::parse_tag)]
    tags: Vec<(String, String)>,
}

/// `shards` flags.
#[derive(Args, Debug)]
pub struct ShardsArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Also show which shards each node owns.
    #[arg(long)]
    full: bool,
}

/// `endpoints` flags.
#[derive(Args, Debug)]
pub struct EndpointsArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Only endpoints whose name starts with this.
    #[arg(default_value = "")]
    prefix: String,
    /// Only this node's endpoints.
    #[arg(long)]
    node: Option<String>,
}

/// Flags of commands on one node.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Node id.
    node: String,
}

/// `drain` flags.
#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Node id.
    node: String,
    /// Seconds the server waits for the shards to move.
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
}

/// `weight` flags.
#[derive(Args, Debug)]
pub struct WeightArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Node id.
    node: String,
    /// New weight (0 owns nothing).
    weight: u32,
}

/// `watch` flags.
#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Also show gossip user events.
    #[arg(long)]
    user_events: bool,
}

/// `event` flags.
#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    /// Event name.
    name: String,
    /// Payload (UTF-8 text).
    #[arg(default_value = "")]
    payload: String,
    /// Receivers keep only the newest event of this name.
    #[arg(long)]
    coalesce: bool,
}

/// `clusterfunk shards` without a tool subcommand.
pub fn run_shards(args: ShardsArgs) -> anyhow::Result<()> {
    run(MgmtCmd::Shards(args))
}

/// Runs `cmd`; on failure prints one line on stderr and exits with 1.
pub fn run(cmd: MgmtCmd) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")
        .and_then(|rt| rt.block_on(dispatch(cmd)));
    if let Err(e) = result {
        if is_broken_pipe(&e) {
            std::process::exit(0);
        }
        let line = format!("{e:#}").replace(['\n', '\r'], " ");
        eprintln!("clusterfunk: {line}");
        std::process::exit(1);
    }
    Ok(())
}

impl MgmtCmd {
    fn rpc(&self) -> &RpcArgs {
        match self {
            MgmtCmd::Status(r) | MgmtCmd::StepDown(r) | MgmtCmd::Health(r) => r,
            MgmtCmd::Members(a) => &a.rpc,
            MgmtCmd::Shards(a) => &a.rpc,
            MgmtCmd::Endpoints(a) => &a.rpc,
            MgmtCmd::Add(a) | MgmtCmd::Remove(a) => &a.rpc,
            MgmtCmd::Drain(a) => &a.rpc,
            MgmtCmd::Weight(a) => &a.rpc,
            MgmtCmd::Watch(a) => &a.rpc,
            MgmtCmd::Event(a) => &a.rpc,
            MgmtCmd::Join(a) => &a.rpc,
            MgmtCmd::ForceLeave(a) => &a.rpc,
            MgmtCmd::Log(a) => a.rpc(),
        }
    }
}

#[path = "app_log.rs"]
mod app_log;
#[path = "members.rs"]
mod members;
#[path = "watch.rs"]
mod watch;
use watch::print_events;
#[path = "mgmt_text.rs"]
mod text;
pub(crate) use text::table;
use text::{dash, shards_text, status_text};

async fn dispatch(cmd: MgmtCmd) -> anyhow::Result<()> {
    let rpc = cmd.rpc().clone();
    let timeout = match rpc.timeout {
        Some(t) if t > 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
        Some(_) => None,
        // Drain waits; the rest fail after 30 s (watch: to open).
        None => match cmd {
            MgmtCmd::Drain(_) => None,
            _ => Some(Duration::from_secs(30)),
        },
    };
    if let MgmtCmd::Log(a) = cmd {
        // A followed watch runs until the operator ends it.
        let timeout = timeout.filter(|_| !a.streams());
        let work = async {
            let client = connect(&rpc).await?;
            let addr = client.addr().to_string();
            app_log::run(a, &client, rpc.format)
                .await
                .map_err(|e| not_management(e, &addr))
        };
        return within(timeout, work).await;
    }
    if let MgmtCmd::Watch(a) = cmd {
        // The timeout bounds the first answer (the stream opening); once
        // open, the stream runs until the node or the operator ends it.
        let open = async {
            let client = connect(&rpc).await?;
            let addr = client.addr().to_string();
            client
                .watch_events(a.user_events)
                .await
                .map_err(|e| not_management(e.into(), &addr))
        };
        let events = within(timeout, open).await?;
        return print_events(events, rpc.format).await;
    }
    let work = async {
        let client = connect(&rpc).await?;
        let addr = client.addr().to_string();
        execute(cmd, &client, &rpc)
            .await
            .map_err(|e| not_management(e, &addr))
    };
    within(timeout, work).await
}

/// `work`, failing after `timeout` when one is given.
async fn within<T>(
    timeout: Option<Duration>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .map_err(|_| anyhow!("no answer within {:.1} s", t.as_secs_f64()))?,
        None => work.await,
    }
}

pub(crate) async fn connect(rpc: &RpcArgs) -> anyhow::Result<Client> {
    let addr = if rpc.zero_conf {
        find_by_mdns(rpc.cluster.as_deref(), rpc.mdns_interface.clone()).await?
    } else {
        with_default_port(&rpc.rpc_addr)
    };
    let tls = if rpc.tls_ca.is_some() || rpc.tls_cert.is_some() {
        Some(ClientTls {
            ca: rpc.tls_ca.clone(),
            cert: rpc.tls_cert.clone(),
            key: rpc.tls_key.clone(),
            domain: rpc.tls_domain.clone(),
        })
    } else {
        None
    };
    Ok(Client::connect(&addr, rpc.token.as_deref(), tls.as_ref()).await?)
}

async fn execute(cmd: MgmtCmd, client: &Client, rpc: &RpcArgs) -> anyhow::Result<()> {
    let format = rpc.format;
    match cmd {
        MgmtCmd::Status(_) => {
            let s = client.status().await?;
            emit(format, &s, || status_text(&s))
        }
        MgmtCmd::Members(a) => {
            let filter = NodeFilter {
                status: a.status,
                tags: a.tags.into_iter().collect(),
            };
            let nodes = client.nodes(&filter).await?;
            let (nodes, note) = members::with_leader_liveness(nodes, rpc).await;
            emit(format, &nodes, || members::text(&nodes, &note))
        }
        MgmtCmd::Shards(a) => {
            let s = client.shards(a.full).await?;
            emit(format, &s, || shards_text(&s, a.full))
        }
        MgmtCmd::Endpoints(a) => {
            let eps = client.endpoints(&a.prefix, a.node.as_deref()).await?;
            emit(format, &eps, || {
                table(
                    &["NODE", "ENDPOINT", "ADDRESS"],
                    eps.iter()
                        .map(|e| vec![e.node_id.clone(), e.name.clone(), e.address.clone()])
                        .collect(),
                )
            })
        }
        MgmtCmd::StepDown(_) => write(format, client.step_down().await?),
        MgmtCmd::Add(a) => write(format, client.add_node(&a.node).await?),
        MgmtCmd::Remove(a) => write(format, client.remove_node(&a.node).await?),
        MgmtCmd::Drain(a) => {
            if !(a.wait.is_finite() && a.wait > 0.0) {
                bail!("--wait must be a positive number of seconds");
            }
            let wait = Duration::from_secs_f64(a.wait);
            write(format, client.drain(&a.node, wait).await?)
        }
        MgmtCmd::Weight(a) => write(format, client.set_weight(&a.node, a.weight).await?),
        MgmtCmd::Event(a) => {
            client
                .send_user_event(&a.name, a.payload.as_bytes(), a.coalesce)
                .await?;
            emit(format, &serde_json::json!({ "sent": a.name }), || {
                format!("event {} sent", a.name)
            })
        }
        MgmtCmd::Health(_) => {
            let h = client.health().await?;
            emit(format, &serde_json::json!({ "health": h }), || {
                match h {
                    Health::Serving => "serving",
                    Health::NotServing => "not serving",
                    Health::Unknown => "unknown",
                }
                .to_string()
            })?;
            if h != Health::Serving {
                bail!("{} is not serving", client.addr());
            }
            Ok(())
        }
        // `dispatch` streams it, with the timeout on opening only.
        MgmtCmd::Watch(_) => bail!("watch is not a single call"),
        MgmtCmd::Join(a) => {
            let joined = client.join(&a.addresses).await?;
            emit(format, &serde_json::json!({ "joined": joined }), || {
                format!("joined through {joined} of {} addresses", a.addresses.len())
            })
        }
        MgmtCmd::ForceLeave(a) => write(format, client.force_leave(&a.node, a.prune).await?),
        // `dispatch` runs it (a followed watch has no timeout).
        MgmtCmd::Log(_) => bail!("log is dispatched on its own"),
    }
}

fn write(format: Format, w: WriteOutcome) -> anyhow::Result<()> {
    emit(format, &w, || {
        let mut s = w.message.clone();
        if let Some(l) = &w.leader {
            s.push_str(&format!(" (leader {l}, epoch {})", w.epoch));
        }
        s
    })
}

pub(crate) fn emit<T: Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    use std::io::Write;
    let out = match format {
        Format::Json => serde_json::to_string_pretty(value)?,
        Format::Text => text(),
    };
    // `println!` would panic on a closed pipe (`... | head`); an error
    // here ends the command quietly in `run`.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", out.trim_end())?;
    stdout.flush()?;
    Ok(())
}

/// Says so plainly when `addr` is not a management port: another gRPC
/// server answers UNIMPLEMENTED, and a port that speaks no HTTP/2 (gossip,
/// metrics) fails the call in the transport.
fn not_management(e: anyhow::Error, addr: &str) -> anyhow::Error {
    let Some(ManagementError::Rpc { code, message }) = e.downcast_ref::<ManagementError>() else {
        return e;
    };
    let hint = format!("the management port is {DEFAULT_PORT} by default; `clusterfunk endpoints` lists each node's");
    match code {
        tonic::Code::Unimplemented => anyhow!(
            "{addr} is not a clusterfunk management port: it serves gRPC, but not the management API ({hint})"
        ),
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal
            if ["transport error", "operation was canceled", "h2 protocol error"]
                .iter()
                .any(|m| message.contains(m)) =>
        {
            anyhow!(
                "{addr} is not a clusterfunk management port: it does not answer gRPC ({message}; {hint})"
            )
        }
        _ => e,
    }
}

/// Whether `e` is a write to a closed pipe (the reader, e.g. `head`, has
/// gone): the command then ends quietly, as other Unix tools do.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `addr` with the default management port when it names only a host
/// (`node1`, `10.0.0.1`, `[::1]`, `http://node1`).
fn with_default_port(addr: &str) -> String {
    let (scheme, rest) = match addr.find("://") {
        Some(i) => addr.split_at(i + 3),
        None => ("", addr),
    };
    let host = rest.trim_end_matches('/');
    let has_port = if let Some(after) = host.strip_prefix('[') {
        after
            .split_once(']')
            .is_some_and(|(_, p)| p.starts_with(':'))
    } else {
        // One colon: host:port; more: a bare IPv6 address.
        host.matches(':').count() == 1
    };
    if has_port || host.is_empty() {
        addr.to_string()
    } else if host.matches(':').count() > 1 && !host.starts_with('[') {
        format!("{scheme}[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{scheme}{host}:{DEFAULT_PORT}")
    }
}

/// Finds a node over mDNS, then asks gossip for its management address:
/// mDNS announces gossip addresses only, so a short-lived gossip member
/// joins the node found, reads its `ep.management` tag and leaves.
async fn find_by_mdns(cluster: Option<&str>, interface: Option<String>) -> anyhow::Result<String> {
    use clusterfunk::discovery::{discover_once, Interfaces, IpVersion, DEFAULT_SERVICE_TYPE};
    use clusterfunk::gossip::{endpoint_key, Gossip, GossipConfig, NetTransport};

    let found = discover_once(
        DEFAULT_SERVICE_TYPE,
        cluster,
        Duration::from_secs(2),
        interface.map(Interfaces::Named).unwrap_or(Interfaces::All),
        IpVersion::Both,
    )
    .await
    .context("mDNS")?;
    let first = found.first().ok_or_else(|| {
        anyhow!(
            "no clusterfunk node answered over mDNS{}",
            cluster
                .map(|c| format!(" for cluster {c}"))
                .unwrap_or_default()
        )
    })?;
    let target = first.gossip_addr;
    // Bind on the address (of the node's family) that routes to the node,
    // so it can answer.
    let (any, loopback) = if target.is_ipv6() {
        (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    };
    let local_ip = std::net::UdpSocket::bind((any, 0))
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(loopback);
    let transport = NetTransport::bind(SocketAddr::new(local_ip, 0))
        .await
        .context("bind a gossip socket")?;
    let name = format!("clusterfunk-cli-{:08x}", rand::random::<u32>());
    let gossip = Gossip::start(GossipConfig::lan(name), transport).context("start gossip")?;
    let key = endpoint_key("management");
    let looked_up = async {
        gossip
            .join(&[target])
            .await
            .with_context(|| format!("join {target}"))?;
        let node = first.node_id.clone();
        let seen = gossip
            .wait_for(Duration::from_secs(3), |ms| {
                ms.iter()
                    .any(|m| m.name == node && m.tags.contains_key(&key))
            })
            .await;
        if !seen {
            bail!("node {node} at {target} publishes no management endpoint");
        }
        gossip
            .members()
            .into_iter()
            .find(|m| m.name == node)
            .and_then(|m| m.tags.get(&key).cloned())
            .ok_or_else(|| anyhow!("node {node} publishes no management endpoint"))
    }
    .await;
    let _ = gossip.leave(Duration::from_secs(1)).await;
    let _ = gossip.shutdown().await;
    looked_up
}

#[cfg(test)]
mod tests {
    use super::text::ranges;
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NODE", "X"],
            vec![
                vec!["a".into(), "1".into()],
                vec!["long-name".into(), "2".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NODE       X");
        assert_eq!(lines[1], "a          1");
        assert_eq!(lines[2], "long-name  2");
    }

    #[test]
    fn shard_ranges_are_compact() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        assert_eq!(ranges(&[]), "-");
    }

    #[test]
    fn a_host_without_a_port_gets_the_default_port() {
        let p = DEFAULT_PORT;
        assert_eq!(with_default_port("node1"), format!("node1:{p}"));
        assert_eq!(with_default_port("10.0.0.1"), format!("10.0.0.1:{p}"));
        assert_eq!(with_default_port("node1:9000"), "node1:9000");
        assert_eq!(with_default_port("[::1]"), format!("[::1]:{p}"));
        assert_eq!(with_default_port("[::1]:9000"), "[::1]:9000");
        assert_eq!(with_default_port("::1"), format!("[::1]:{p}"));
        assert_eq!(
            with_default_port("http://node1"),
            format!("http://node1:{p}")
        );
        assert_eq!(with_default_port("https://node1:1"), "https://node1:1");
    }
}
