//! Agents with no addresses given find each other over mDNS and form one
//! cluster; an agent of another cluster name stays out.
//!
//! mDNS joins the multicast group on every interface, so the test re-runs
//! itself in a private network namespace holding only `lo` (`unshare
//! --net`); without root or `unshare` it is skipped with a message.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::netns::{block_on, run_in_private_netns};

use clusterfunk::local::{owners, LocalCluster};

const TEST_NAME: &str = "agents_without_join_form_one_cluster_over_mdns";

#[test]
fn agents_without_join_form_one_cluster_over_mdns() {
    run_in_private_netns(TEST_NAME, || block_on(scenario()));
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
