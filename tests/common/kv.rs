//! Processes of `examples/kv` (nodes and the load client) for the
//! multi-process kv tests: start, SIGTERM, kill -9, restart from the data
//! dir, and a `ClusterClient` to watch their maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clusterfunk::client::{ClientAuth, ClientView, ClusterClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::wait::WAIT;

/// The kv example binary, built by `cargo test` (or `cargo build
/// --example kv`) next to the test binaries.
pub fn exe() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let exe = bin.with_file_name("examples").join("kv");
    assert!(
        exe.exists(),
        "{} is missing: `cargo test` builds it; with a filter run `cargo build --example kv` first",
        exe.display()
    );
    exe
}

/// What a node printed when ready.
#[derive(Debug, Clone)]
pub struct Ready {
    pub kv: String,
    pub gossip: String,
    pub management: String,
}

/// Nodes started by this test; dropping it kills them.
pub struct Kv {
    dir: PathBuf,
    shards: u32,
    nodes: BTreeMap<String, (Child, Ready)>,
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

impl Kv {
    pub fn new(dir: &Path, shards: u32) -> Kv {
        Kv {
            dir: dir.to_path_buf(),
            shards,
            nodes: BTreeMap::new(),
        }
    }

    /// Starts (or restarts, from its data dir) node `id`, joining `join`.
    pub async fn start(&mut self, id: &str, join: Option<&str>) -> Ready {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{id}.log")))
            .expect("log file");
        let mut cmd = Command::new(exe());
        cmd.args(["serve", "--node-id", id, "--shards"])
            .arg(self.shards.to_string())
            .arg("--data-dir")
            .arg(self.dir.join(id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        if let Some(j) = join {
            cmd.args(["--join", j]);
        }
        let mut child = cmd.spawn().expect("spawn kv");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        tokio::time::timeout(WAIT, out.read_line(&mut line))
            .await
            .expect("kv node ready in time")
            .expect("read ready line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("ready json");
        let ready = Ready {
            kv: field(&v, "kv"),
            gossip: field(&v, "gossip"),
            management: field(&v, "management"),
        };
        // Keep draining stdout (the stop line) so the node never blocks.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink).await;
        });
        self.nodes.insert(id.to_string(), (child, ready.clone()));
        ready
    }

    pub fn ready(&self, id: &str) -> &Ready {
        &self.nodes[id].1
    }

    /// Every node's management address.
    pub fn managements(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|(_, r)| r.management.clone())
            .collect()
    }

    /// A gossip address of a running node other than `not`.
    pub fn seed(&self, not: &str) -> String {
        self.nodes
            .iter()
            .find(|(id, _)| *id != not)
            .map(|(_, (_, r))| r.gossip.clone())
            .expect("another node")
    }

    fn signal(&self, id: &str, sig: &str) {
        let pid = self.nodes[id].0.id().expect("running");
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// SIGTERM (drain, hand off, leave) and waits for the exit.
    pub async fn term(&mut self, id: &str) {
        self.signal(id, "-TERM");
        let child = &mut self.nodes.get_mut(id).expect("node").0;
        tokio::time::timeout(Duration::from_secs(40), child.wait())
            .await
            .expect("graceful exit in time")
            .expect("wait");
    }

    /// kill -9.
    pub async fn kill(&mut self, id: &str) {
        self.signal(id, "-KILL");
        let child = &mut self.nodes.get_mut(id).expect("node").0;
        let _ = child.wait().await;
    }
}

/// The load client, running until [`Load::finish`].
pub struct Load {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Load {
    pub fn start(members: &[String], extra: &[&str]) -> Load {
        let mut child = Command::new(exe())
            .args(["load", "--seconds", "0", "--members", &members.join(",")])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn load");
        let stdin = child.stdin.take();
        Load { child, stdin }
    }

    /// Stops the load (closes its stdin) and returns its summary.
    pub async fn finish(mut self) -> serde_json::Value {
        drop(self.stdin.take());
        let mut out = String::new();
        let mut stdout = self.child.stdout.take().expect("stdout");
        tokio::time::timeout(Duration::from_secs(120), stdout.read_to_string(&mut out))
            .await
            .expect("load summary in time")
            .expect("read summary");
        let _ = self.child.wait().await;
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("summary {out:?}: {e}"))
    }
}

/// A client of the nodes' management APIs.
pub fn client(kv: &Kv) -> ClusterClient {
    ClusterClient::start(kv.managements(), ClientAuth::default()).expect("client")
}

/// Waits until the client's map satisfies `pred` (with every shard owned);
/// returns it.
pub async fn wait_map(
    c: &ClusterClient,
    what: &str,
    pred: impl Fn(&ClientView) -> bool,
) -> std::sync::Arc<ClientView> {
    let mut rx = c.watch();
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        rx.wait_for(|v| {
            v.as_ref()
                .is_some_and(|v| v.map.unassigned() == 0 && pred(v))
        })
        .await
        .map(|v| v.clone())
    })
    .await;
    match got {
        Ok(Ok(Some(v))) => v,
        _ => panic!("timed out waiting for {what}"),
    }
}

/// Shards per owner in `v`.
pub fn counts(v: &ClientView) -> BTreeMap<String, u32> {
    v.map
        .counts()
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(n, c)| (n.to_string(), c))
        .collect()
}
