//! Zero-conf across hosts: four network namespaces on one private bridge
//! (see `common::netns`). Three agents of cluster "a" and one of cluster
//! "b", started with no addresses at all, find each other over mDNS: the
//! three form one cluster and commit a map, the fourth stays alone. Needs
//! root and iproute2; skipped with a message otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use clusterfunk::local::{owners, LocalCluster};
use common::netns::Lan;

const TEST_NAME: &str = "three_hosts_form_one_cluster_a_fourth_of_another_name_stays_out";
const SUBNET: &str = "10.231.79";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_form_one_cluster_a_fourth_of_another_name_stays_out() {
    let hosts = [("h1", 1), ("h2", 2), ("h3", 3), ("h4", 4)];
    let Some(lan) = Lan::create(TEST_NAME, "ag", SUBNET, &hosts) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let mut a = LocalCluster::new(exe, dir.path(), "a", &["--shards", "300"]).with_zero_conf();
    let mut b = LocalCluster::new(exe, dir.path(), "b", &["--shards", "300"]).with_zero_conf();
    for (i, (name, host)) in hosts.iter().enumerate() {
        let advertise = format!("{SUBNET}.{host}");
        let flags = [
            ("--preset", "lan"),
            ("--bind", "0.0.0.0"),
            ("--advertise", advertise.as_str()),
        ];
        let prefix = ["ip", "netns", "exec", lan.hosts[i].as_str()];
        let c = if i < 3 { &mut a } else { &mut b };
        c.start_with(name, None, &flags, &prefix)
            .await
            .expect("start agent in its namespace");
    }
    let nodes = a.nodes();
    let commits = a
        .wait_commit(&nodes, 0, Duration::from_secs(60), |c| owners(c).len() == 3)
        .await
        .expect("cluster a forms over mDNS");
    let want: BTreeSet<String> = ["h1", "h2", "h3"].iter().map(|s| s.to_string()).collect();
    for c in commits.values() {
        assert_eq!(owners(c).into_iter().collect::<BTreeSet<_>>(), want);
    }
    assert!(
        b.commits("h4").is_empty(),
        "the agent of cluster b stays alone"
    );
    a.shutdown().await;
    b.shutdown().await;
    drop(lan);
}
