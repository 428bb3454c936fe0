//! Agents with no addresses given find each other over mDNS and form one
//! cluster; an agent of another cluster name stays out.
//!
//! mDNS joins the multicast group on every interface, so the test re-runs
//! itself in a private network namespace holding only `lo` (`unshare
//! --net`); without root or `unshare` it is skipped with a message.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clusterfunk::local::{owners, LocalCluster};

const IN_NETNS: &str = "CLUSTERFUNK_ZEROCONF_IN_NETNS";
const OK_MARKER: &str = "ZEROCONF_AGENTS_OK";
const TEST_NAME: &str = "agents_without_join_form_one_cluster_over_mdns";

#[test]
fn agents_without_join_form_one_cluster_over_mdns() {
    if std::env::var_os(IN_NETNS).is_some() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(matches!(up, Ok(s) if s.success()), "lo up: {up:?}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario());
        println!("{OK_MARKER}");
        return;
    }
    let probe = Command::new("unshare")
        .args(["--net", "ip", "link", "set", "lo", "up"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {TEST_NAME}: needs root, `unshare --net` and `ip` to run mDNS in a private \
             network namespace; probe: {probe:?}"
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output()
        .expect("run inside a namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(OK_MARKER),
        "scenario failed in the namespace ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

async fn scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let mut zc = LocalCluster::new(exe, dir.path(), "zc", &["--shards", "300"]).with_zero_conf();
    let mut other =
        LocalCluster::new(exe, dir.path(), "other", &["--shards", "300"]).with_zero_conf();
    for n in ["z1", "z2", "z3"] {
        zc.start(n, None).await.expect("start");
    }
    other.start("o1", None).await.expect("start other");
    let nodes = zc.nodes();
    let commits = zc
        .wait_commit(&nodes, 0, Duration::from_secs(60), |c| owners(c).len() == 3)
        .await
        .expect("one cluster over mDNS");
    let want: BTreeSet<String> = nodes.iter().cloned().collect();
    for c in commits.values() {
        assert_eq!(owners(c).into_iter().collect::<BTreeSet<_>>(), want);
    }
    // The lone agent of "other" never joined anything: with
    // bootstrap_expect 3 and nobody of its name around, it has no map.
    assert!(other.commits("o1").is_empty(), "{:?}", other.commits("o1"));
    zc.shutdown().await;
    other.shutdown().await;
}
