//! `clusterfunk status --zero-conf`: the CLI finds a node over mDNS, learns
//! its management address through a short-lived gossip member, and asks it.
//!
//! mDNS must not reach the machine's real interfaces, so, like
//! `mdns_loopback`, the test re-runs itself inside a private network
//! namespace (`unshare --net`, only `lo`); without root or `unshare` it is
//! skipped with a message.

mod common;

use std::time::Duration;

use common::netns::{block_on, run_in_private_netns};

use clusterfunk::config::AuthConfig;
use clusterfunk::{Agent, Config, NodeState};

const TEST_NAME: &str = "status_finds_a_node_by_mdns";
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn status_finds_a_node_by_mdns() {
    run_in_private_netns(TEST_NAME, || block_on(scenario()));
}

async fn scenario() {
    let mut c = Config::local("z0");
    c.cluster_name = "zeroconf".into();
    c.shard_count = 100;
    c.bootstrap_expect = 1;
    c.zero_conf = true;
    c.auth = AuthConfig {
        tls: None,
        token: Some("zc".into()),
    };
    let node = Agent::start(c).await.expect("start");
    let formed = tokio::time::timeout(WAIT, async {
        let mut state = node.watch_state();
        let _ = state.wait_for(|s| *s == NodeState::Operational).await;
    })
    .await;
    assert!(formed.is_ok(), "the node did not become operational");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_clusterfunk"))
        .args([
            "status",
            "--zero-conf",
            "--cluster",
            "zeroconf",
            "--token",
            "zc",
            "--format",
            "json",
        ])
        .env_remove("CLUSTERFUNK_RPC_ADDR")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the CLI finished")
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_str(&stdout).expect("status json");
    assert_eq!(s["node_id"], "z0");
    assert_eq!(s["cluster_name"], "zeroconf");

    // No node of another cluster name: a one-line failure.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_clusterfunk"))
        .args(["status", "--zero-conf", "--cluster", "nobody"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the CLI finished")
        .expect("run the CLI");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no clusterfunk node"), "{stderr}");
    node.stop().await;
}
