//! A standalone gossip node: binds UDP+TCP, joins, reports membership
//! changes as JSON lines and leaves gracefully when told to stop. This is
//! the body of the hidden `clusterfunk gossip-node` subcommand (used by the
//! multi-process tests and the Serf comparison benchmark); the binary only
//! parses flags and hands over its stdout and a shutdown signal.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::actor::Gossip;
use super::config::GossipConfig;
use super::error::GossipError;
use super::member::MemberEvent;
use super::transport::{NetTransport, Transport};

/// Which [`GossipConfig`] preset to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// [`GossipConfig::local`].
    Local,
    /// [`GossipConfig::lan`].
    #[default]
    Lan,
    /// [`GossipConfig::wan`].
    Wan,
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Preset::Local),
            "lan" => Ok(Preset::Lan),
            "wan" => Ok(Preset::Wan),
            other => Err(format!("unknown preset {other:?} (local, lan or wan)")),
        }
    }
}

impl Preset {
    /// The preset's config for node `name`.
    pub fn config(self, name: impl Into<String>) -> GossipConfig {
        match self {
            Preset::Local => GossipConfig::local(name),
            Preset::Lan => GossipConfig::lan(name),
            Preset::Wan => GossipConfig::wan(name),
        }
    }
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node name.
    pub name: String,
    /// Address to bind UDP and TCP on (port 0: any free port).
    pub bind: SocketAddr,
    /// Addresses to join; retried until one answers or the node stops.
    pub join: Vec<SocketAddr>,
    /// Protocol preset.
    pub preset: Preset,
    /// Tags to publish.
    pub tags: BTreeMap<String, String>,
    /// How long a graceful leave may take on shutdown.
    pub leave_timeout: Duration,
    /// Snapshot file of known peers (rejoined at start).
    pub snapshot: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Line<'a> {
    /// Milliseconds since the node started.
    t_ms: u128,
    #[serde(flatten)]
    event: &'a MemberEvent,
}

/// Interval between join attempts while no seed has answered.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// Runs a node until `shutdown` resolves, then leaves gracefully. Writes
/// `listening <addr>` as the first line of `out`, then one JSON object per
/// membership event (`{"t_ms":..,"kind":"join","member":{..}}`).
pub async fn run<W, S>(opts: NodeOptions, mut out: W, shutdown: S) -> Result<(), GossipError>
where
    W: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let started = tokio::time::Instant::now();
    let io = |source| GossipError::Io {
        addr: Some(opts.bind),
        source,
    };
    let transport = NetTransport::bind(opts.bind).await.map_err(io)?;
    let addr = transport.local_addr();
    let mut cfg = opts.preset.config(opts.name.clone());
    cfg.tags = opts.tags.clone();
    cfg.snapshot_path = opts.snapshot.clone();
    let gossip = Gossip::start(cfg, transport)?;
    let mut events = gossip.subscribe().await?;
    out.write_all(format!("listening {addr}\n").as_bytes())
        .await
        .map_err(io)?;
    out.flush().await.map_err(io)?;

    tokio::pin!(shutdown);
    let mut joined = opts.join.is_empty();
    let mut retry = tokio::time::interval(JOIN_RETRY);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = retry.tick(), if !joined => {
                match gossip.join(&opts.join).await {
                    Ok(n) => {
                        tracing::info!(node = %opts.name, answered = n, "joined");
                        joined = true;
                    }
                    Err(e) => tracing::warn!(node = %opts.name, error = %e, "join failed, retrying"),
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                let line = Line { t_ms: started.elapsed().as_millis(), event: &ev };
                if let Ok(mut s) = serde_json::to_string(&line) {
                    s.push('\n');
                    out.write_all(s.as_bytes()).await.map_err(io)?;
                    out.flush().await.map_err(io)?;
                }
            }
        }
    }
    match gossip.leave(opts.leave_timeout).await {
        Ok(()) => tracing::info!(node = %opts.name, "left the cluster"),
        Err(e) => tracing::warn!(node = %opts.name, error = %e, "leave not confirmed"),
    }
    gossip.shutdown().await
}
