//! Operator work on real agents (separate processes on 127.0.0.1):
//! retry-join of an agent started well before its seed, `clusterfunk join`
//! on a running agent, `clusterfunk remove` and `force-leave --prune` of a
//! killed node on every node, and the CLI's manners (a closed pipe, a
//! wrong port, an unknown status filter).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use clusterfunk::local::{owners, unix_ms, LocalCluster};
use clusterfunk::management::{Client, NodeFilter};
use common::wait::wait_until_async;

const SHARDS: u32 = 1000;
const WAIT: Duration = Duration::from_secs(60);
/// Join attempts of the early agent before its seeds start: with pauses
/// capped at 200 ms this is past the ~6 s after which joining used to stop.
const EARLY_ATTEMPTS: usize = 35;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_clusterfunk"))
}

/// A port free for both UDP and TCP on 127.0.0.1 right now (the OS picks
/// it), for a seed that must be named before it starts.
fn free_gossip_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(exe())
        .args(args)
        .env_remove("CLUSTERFUNK_RPC_ADDR")
        .env_remove("CLUSTERFUNK_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the cli")
}

async fn client(lc: &LocalCluster, node: &str) -> Client {
    let addr = lc.endpoint(node, "management").expect("management");
    Client::connect(&addr, None, None).await.expect("connect")
}

/// `node`'s gossip status as every node in `on` lists it (`None`: not
/// listed, or the node did not answer).
async fn statuses(lc: &LocalCluster, on: &[String], node: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for n in on {
        let listed = match client(lc, n).await.nodes(&NodeFilter::default()).await {
            Ok(nodes) => nodes
                .into_iter()
                .find(|e| e.id == node)
                .map(|e| e.gossip_status),
            Err(e) => Some(format!("error: {e}")),
        };
        out.push(listed);
    }
    out
}

fn join_attempts(dir: &Path, node: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{node}.log")))
        .map(|log| log.matches("join failed; retrying").count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_join_join_command_and_force_leave_on_real_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lc = LocalCluster::new(exe(), dir.path(), "ops", &["--shards", "1000"]);

    // n1 starts alone, naming a seed that does not exist yet.
    let port = free_gossip_port();
    let seed = format!("127.0.0.1:{port}");
    lc.start_with(
        "n1",
        Some(&seed),
        &[("--retry-join-interval-ms", "200")],
        &[],
    )
    .await
    .expect("start n1");
    wait_until_async("n1 retrying its join for a while", || async {
        join_attempts(dir.path(), "n1") >= EARLY_ATTEMPTS
    })
    .await;
    // Only now the seed starts (on the named port), then a third node that
    // knows only the seed: the cluster forms only if n1 got in.
    let port_s = port.to_string();
    lc.start_with("n2", None, &[("--gossip-port", &port_s)], &[])
        .await
        .expect("start the seed");
    lc.start("n3", Some(&seed)).await.expect("start n3");
    let three = lc.nodes();
    lc.wait_commit(&three, 0, WAIT, |c| {
        owners(c).len() == 3 && c.owners.values().sum::<u32>() == SHARDS
    })
    .await
    .expect("n1 joined its late seed and the three formed a cluster");

    // n4 knows nobody until an operator tells it whom to join.
    lc.start("n4", None).await.expect("start n4");
    let n4_mgmt = lc.endpoint("n4", "management").expect("management");
    let out = cli(&["join", "--rpc-addr", &n4_mgmt, "127.0.0.1"]).await;
    assert_eq!(out.status.code(), Some(1), "an address without a port");
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_ARGUMENT: no address"));
    let out = cli(&["join", "--rpc-addr", &n4_mgmt, &seed]).await;
    assert!(out.status.success(), "join: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("joined through 1 of 1"));
    let all = lc.nodes();
    let t = unix_ms();
    lc.wait_commit(&all, t.saturating_sub(5_000), WAIT, |c| {
        owners(c).len() == 4
    })
    .await
    .expect("n4 owns shards after `clusterfunk join`");

    // The CLI's manners, against this cluster.
    let n1_mgmt = lc.endpoint("n1", "management").expect("management");
    let n1_client = client(&lc, "n1").await;
    let bad = n1_client
        .nodes(&NodeFilter {
            status: Some("zombie".into()),
            tags: Default::default(),
        })
        .await
        .expect_err("an unknown status filter");
    assert_eq!(bad.code(), Some(tonic::Code::InvalidArgument), "{bad}");
    closed_pipe_ends_quietly(&n1_mgmt).await;
    let n1_gossip = lc.endpoint("n1", "gossip").expect("gossip");
    let metrics = lc.endpoint("n1", "metrics").expect("metrics");
    let raft = lc.endpoint("n1", "raft").expect("raft");
    for wrong in [&n1_gossip, &metrics, &raft] {
        let out = cli(&["status", "--rpc-addr", wrong, "--timeout", "10"]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            err.contains("not a clusterfunk management port"),
            "{wrong}: {err}"
        );
    }

    // kill -9 n4: once every survivor sees it failed, `remove` (like
    // force-leave) marks it left everywhere, and force-leave --prune makes
    // everyone forget it. (Force-leave of a failed node is the same gossip
    // step; see gossip_cluster's remove_failed_node test.)
    lc.kill("n4").await.expect("kill n4");
    let rest: Vec<String> = all.iter().filter(|n| *n != "n4").cloned().collect();
    wait_until_async("every survivor sees n4 failed", || async {
        statuses(&lc, &rest, "n4")
            .await
            .iter()
            .all(|s| s.as_deref() == Some("dead"))
    })
    .await;
    let out = cli(&["force-leave", "--rpc-addr", &n1_mgmt, "n2"]).await;
    assert_eq!(out.status.code(), Some(1), "an alive node is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED_PRECONDITION"));
    // RemoveNode (sent to any node, carried out by the leader) takes a
    // failed node out of gossip too: it is left on every node.
    let out = cli(&["remove", "--rpc-addr", &n1_mgmt, "n4"]).await;
    assert!(out.status.success(), "remove: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("marked left in gossip"),
        "{out:?}"
    );
    wait_until_async("n4 left on every node", || async {
        statuses(&lc, &rest, "n4")
            .await
            .iter()
            .all(|s| s.as_deref() == Some("left"))
    })
    .await;
    let out = cli(&["force-leave", "--prune", "--rpc-addr", &n1_mgmt, "n4"]).await;
    assert!(out.status.success(), "force-leave --prune: {out:?}");
    wait_until_async("n4 gone from members on every node", || async {
        statuses(&lc, &rest, "n4").await.iter().all(Option::is_none)
    })
    .await;
    let out = cli(&["members", "--rpc-addr", &n1_mgmt]).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("n4"));
    lc.shutdown().await;
}

/// `clusterfunk shards --full --format json | head -0`: the reader is gone
/// before the first byte; the command ends with no panic and no message.
async fn closed_pipe_ends_quietly(mgmt: &str) {
    let mut child = tokio::process::Command::new(exe())
        .args(["shards", "--full", "--format", "json", "--rpc-addr", mgmt])
        .env_remove("CLUSTERFUNK_RPC_ADDR")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().await.expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(err.is_empty(), "nothing on stderr: {err}");
}
