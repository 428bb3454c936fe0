//! Local clusters of agent processes on 127.0.0.1: start, kill -9, stop,
//! restart, and follow what every agent reports.
//!
//! Each agent runs as `clusterfunk agent --print-events` and prints one JSON
//! line per event (with a wall-clock millisecond stamp) on stdout; reader
//! tasks collect them so callers can wait for states ("every survivor
//! committed a map without node X") and measure when they happened. Used by
//! `clusterfunk demo`, `clusterfunk bench failover` and the multi-process
//! tests. Imports only std, tokio, serde_json and tracing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Why a local-cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The agent process could not be started.
    #[error("spawn {node}: {source}")]
    Spawn {
        /// Node id.
        node: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The agent exited or never said it was ready.
    #[error("{node} did not become ready: {reason}")]
    NotReady {
        /// Node id.
        node: String,
        /// What happened.
        reason: String,
    },
    /// No such node was started.
    #[error("unknown node {0}")]
    Unknown(String),
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// The agent's port flags, and the endpoint each one binds.
const PORT_FLAGS: [&str; 5] = [
    "--gossip-port",
    "--raft-port",
    "--liveness-port",
    "--management-port",
    "--metrics-port",
];
const PORT_NAMES: [&str; 5] = ["gossip", "raft", "liveness", "management", "metrics"];

/// A map commit as one agent reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Epoch of the committed map.
    pub epoch: u64,
    /// Wall-clock time it was reported (ms since the Unix epoch).
    pub t_ms: u64,
    /// Shards per owner.
    pub owners: BTreeMap<String, u32>,
    /// The leader when it was committed.
    pub leader: Option<String>,
}

/// Any event one agent printed, for timing breakdowns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time it was printed (ms since the Unix epoch).
    pub t_ms: u64,
    /// Its kind: `map_proposed`, `member_failed`, `leader_changed`, ...
    pub kind: String,
    /// The node it names (`member_failed`, `leader_changed`), if any.
    pub subject: Option<String>,
    /// The epoch it names (`map_proposed`, `map_committed`), if any.
    pub epoch: Option<u64>,
}

#[derive(Debug, Default)]
struct Observed {
    ready: BTreeMap<String, BTreeMap<String, String>>,
    commits: BTreeMap<String, Vec<Commit>>,
    events: BTreeMap<String, Vec<Event>>,
    exited: BTreeMap<String, bool>,
    /// Which start of each node is current: the reader of an earlier
    /// process (ending after the node was started again) must not mark the
    /// new one exited.
    generation: BTreeMap<String, u64>,
}

struct Proc {
    child: Child,
    args: Vec<String>,
    prefix: Vec<String>,
}

/// Agents started by this process; dropping it kills them all.
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    cluster: String,
    procs: BTreeMap<String, Proc>,
    observed: Arc<Mutex<Observed>>,
    version: watch::Sender<u64>,
    extra: Vec<String>,
    zero_conf: bool,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LocalCluster {
    /// A cluster named `cluster` of agents run from `exe`, keeping their data
    /// under `dir`. `extra` args go to every agent (e.g. `--shards 1000`).
    pub fn new(exe: &Path, dir: &Path, cluster: &str, extra: &[&str]) -> LocalCluster {
        LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            cluster: cluster.to_string(),
            procs: BTreeMap::new(),
            observed: Arc::new(Mutex::new(Observed::default())),
            version: watch::channel(0).0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            zero_conf: false,
        }
    }

    /// Agents find each other over mDNS (loopback only, with the `local`
    /// preset) instead of only through `--join`.
    pub fn with_zero_conf(mut self) -> LocalCluster {
        self.zero_conf = true;
        self
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts agent `node` (ports from the OS, data under the cluster's
    /// dir), joining `join` if given; returns once it printed `ready`.
    pub async fn start(&mut self, node: &str, join: Option<&str>) -> Result<(), LocalError> {
        self.start_with(node, join, &[], &[]).await
    }

    /// [`start`](Self::start) with some agent flags replaced or added
    /// (`("--preset", "lan")`) and the command run through `prefix` (for
    /// example `ip netns exec NS` to start it on another test host).
    pub async fn start_with(
        &mut self,
        node: &str,
        join: Option<&str>,
        flags: &[(&str, &str)],
        prefix: &[&str],
    ) -> Result<(), LocalError> {
        let data = self.dir.join(node);
        let mut args: Vec<String> = [
            "agent",
            "--print-events",
            "--preset",
            "local",
            "--node-id",
            node,
            "--cluster",
            &self.cluster,
            "--gossip-port",
            "0",
            "--raft-port",
            "0",
            "--liveness-port",
            "0",
            "--management-port",
            "0",
            "--metrics-port",
            "0",
            "--zero-conf",
            if self.zero_conf { "true" } else { "false" },
            "--data-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(data.display().to_string());
        args.extend(self.extra.iter().cloned());
        if let Some(j) = join {
            args.push("--join".into());
            args.push(j.to_string());
        }
        set_flags(&mut args, flags);
        let prefix = prefix.iter().map(|s| s.to_string()).collect();
        self.spawn(node, args, prefix).await
    }

    async fn spawn(
        &mut self,
        node: &str,
        args: Vec<String>,
        prefix: Vec<String>,
    ) -> Result<(), LocalError> {
        self.observed().ready.remove(node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{node}.log")))
            .ok();
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.map(Stdio::from).unwrap_or_else(Stdio::null))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| LocalError::Spawn {
            node: node.to_string(),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| LocalError::NotReady {
            node: node.to_string(),
            reason: "no stdout".into(),
        })?;
        let observed = self.observed.clone();
        let version = self.version.clone();
        let name = node.to_string();
        let generation = {
            let mut o = self.observed();
            o.exited.insert(name.clone(), false);
            let g = o.generation.entry(name.clone()).or_insert(0);
            *g += 1;
            *g
        };
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                record(&observed, &name, &line);
                version.send_modify(|v| *v += 1);
            }
            let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
            if o.generation.get(&name) == Some(&generation) {
                o.exited.insert(name, true);
            }
            drop(o);
            version.send_modify(|v| *v += 1);
        });
        self.procs.insert(
            node.to_string(),
            Proc {
                child,
                args,
                prefix,
            },
        );
        let who = node.to_string();
        self.wait_for(&format!("{node} ready"), Duration::from_secs(30), |o| {
            o.ready.contains_key(&who) || o.exited.get(&who) == Some(&true)
        })
        .await?;
        if !self.observed().ready.contains_key(node) {
            return Err(LocalError::NotReady {
                node: node.to_string(),
                reason: format!(
                    "exited; see {}",
                    self.dir.join(format!("{node}.log")).display()
                ),
            });
        }
        Ok(())
    }

    /// Endpoint `name` (`gossip`, `raft`, `management`, ...) of `node`.
    pub fn endpoint(&self, node: &str, name: &str) -> Option<String> {
        self.observed().ready.get(node)?.get(name).cloned()
    }

    /// The process id of `node`'s agent while it runs (for `/proc` figures).
    pub fn pid(&self, node: &str) -> Option<u32> {
        self.procs.get(node)?.child.id()
    }

    /// Node ids started so far (running or not).
    pub fn nodes(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    /// Sends SIGKILL to `node`; returns when (ms since the Unix epoch).
    pub async fn kill(&mut self, node: &str) -> Result<u64, LocalError> {
        let p = self
            .procs
            .get_mut(node)
            .ok_or_else(|| LocalError::Unknown(node.to_string()))?;
        let t = unix_ms();
        let _ = p.child.start_kill();
        let _ = p.child.wait().await;
        Ok(t)
    }

    /// Sends SIGSTOP (`freeze: true`: the process stops answering anything,
    /// as if frozen or cut off) or SIGCONT to `node`; returns when (ms
    /// since the Unix epoch).
    pub async fn freeze(&mut self, node: &str, freeze: bool) -> Result<u64, LocalError> {
        let p = self
            .procs
            .get_mut(node)
            .ok_or_else(|| LocalError::Unknown(node.to_string()))?;
        let pid = p
            .child
            .id()
            .ok_or_else(|| LocalError::Unknown(node.to_string()))?;
        let sig = if freeze { "-STOP" } else { "-CONT" };
        let t = unix_ms();
        let _ = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .await;
        Ok(t)
    }

    /// Sends SIGTERM (graceful leave) and waits up to `timeout` for exit.
    pub async fn stop(&mut self, node: &str, timeout: Duration) -> Result<(), LocalError> {
        let p = self
            .procs
            .get_mut(node)
            .ok_or_else(|| LocalError::Unknown(node.to_string()))?;
        if let Some(pid) = p.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(timeout, p.child.wait()).await.is_err() {
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
            return Err(LocalError::Timeout(format!("{node} to stop")));
        }
        Ok(())
    }

    /// Restarts a stopped or killed `node` with its data dir and the ports
    /// it had, so peers find it where they knew it.
    pub async fn restart(&mut self, node: &str) -> Result<(), LocalError> {
        self.restart_with(node, &[]).await
    }

    /// [`restart`](Self::restart) with some agent flags replaced or added
    /// (a rolling change of settings, e.g. switching to `--encrypt`).
    pub async fn restart_with(
        &mut self,
        node: &str,
        flags: &[(&str, &str)],
    ) -> Result<(), LocalError> {
        let p = self
            .procs
            .remove(node)
            .ok_or_else(|| LocalError::Unknown(node.to_string()))?;
        let ready = self.observed().ready.get(node).cloned().unwrap_or_default();
        let (mut args, prefix) = (p.args, p.prefix);
        set_flags(&mut args, flags);
        for (flag, ep) in PORT_FLAGS.iter().zip(PORT_NAMES) {
            let port = ready
                .get(ep)
                .and_then(|a| a.rsplit(':').next())
                .unwrap_or("0")
                .to_string();
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = port;
            }
        }
        match self.spawn(node, args.clone(), prefix.clone()).await {
            // Another process took a port meanwhile (the OS hands freed
            // ports out again): come back on fresh ones; peers learn them
            // from gossip.
            Err(LocalError::NotReady { .. }) => {
                if let Some(mut p) = self.procs.remove(node) {
                    let _ = p.child.start_kill();
                    let _ = p.child.wait().await;
                }
                for flag in PORT_FLAGS {
                    if let Some(i) = args.iter().position(|a| a == flag) {
                        args[i + 1] = "0".into();
                    }
                }
                self.spawn(node, args, prefix).await
            }
            r => r,
        }
    }

    /// The commits `node` reported, oldest first.
    pub fn commits(&self, node: &str) -> Vec<Commit> {
        self.observed()
            .commits
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Every event `node` printed, oldest first.
    pub fn events(&self, node: &str) -> Vec<Event> {
        self.observed()
            .events
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every node in `nodes` has reported a commit for which
    /// `pred` holds (after `since_ms`), and returns, per node, the first such
    /// commit.
    pub async fn wait_commit(
        &self,
        nodes: &[String],
        since_ms: u64,
        timeout: Duration,
        pred: impl Fn(&Commit) -> bool,
    ) -> Result<BTreeMap<String, Commit>, LocalError> {
        let find = |o: &Observed| -> Option<BTreeMap<String, Commit>> {
            nodes
                .iter()
                .map(|n| {
                    o.commits
                        .get(n)?
                        .iter()
                        .find(|c| c.t_ms >= since_ms && pred(c))
                        .map(|c| (n.clone(), c.clone()))
                })
                .collect()
        };
        self.wait_for("commits", timeout, |o| find(o).is_some())
            .await?;
        find(&self.observed()).ok_or_else(|| LocalError::Timeout("commits".into()))
    }

    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Observed) -> bool,
    ) -> Result<(), LocalError> {
        let mut rx = self.version.subscribe();
        let res = tokio::time::timeout(timeout, async {
            loop {
                if pred(&self.observed()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        res.map_err(|_| LocalError::Timeout(what.to_string()))
    }

    /// Stops every agent gracefully (SIGTERM), killing those that hang.
    pub async fn shutdown(&mut self) {
        let nodes = self.nodes();
        for n in nodes {
            let _ = self.stop(&n, Duration::from_secs(10)).await;
        }
    }
}

/// Replaces the value of each flag in `args`, or adds the flag.
fn set_flags(args: &mut Vec<String>, flags: &[(&str, &str)]) {
    for (flag, value) in flags {
        let at = args.iter().position(|a| a == flag).map(|i| i + 1);
        match at.filter(|i| *i < args.len()) {
            Some(i) => args[i] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
    }
}

fn record(observed: &Mutex<Observed>, node: &str, line: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
    let t_ms = v["t_ms"].as_u64().unwrap_or(0);
    match &v["event"] {
        serde_json::Value::String(s) if s == "ready" => {
            let eps = v["endpoints"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            o.ready.insert(node.to_string(), eps);
        }
        serde_json::Value::Object(ev) => {
            if let Some((kind, arg)) = ev.iter().next() {
                o.events.entry(node.to_string()).or_default().push(Event {
                    t_ms,
                    kind: kind.clone(),
                    subject: arg.as_str().map(str::to_string),
                    epoch: arg["epoch"].as_u64(),
                });
            }
            if let Some(c) = ev.get("map_committed") {
                let owners = v["owners"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()? as u32)))
                            .collect()
                    })
                    .unwrap_or_default();
                o.commits.entry(node.to_string()).or_default().push(Commit {
                    epoch: c["epoch"].as_u64().unwrap_or(0),
                    t_ms,
                    owners,
                    leader: v["leader"].as_str().map(str::to_string),
                });
            }
        }
        _ => {}
    }
}

/// The owners (with at least one shard) of a commit.
pub fn owners(c: &Commit) -> Vec<String> {
    c.owners
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| k.clone())
        .collect()
}
