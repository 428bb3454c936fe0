//! Zero-conf across hosts: four network namespaces on one private bridge
//! (see `common::netns`). Three agents of cluster "a" and one of cluster
//! "b", started with no addresses at all, find each other over mDNS: the
//! three form one cluster and commit a map, the fourth stays alone. The
//! same over IPv6: agents bound to `::` with a ULA address each run mDNS on
//! ff02::fb and gossip, Raft and liveness over IPv6. Needs root and
//! iproute2 (and IPv6 in the namespaces for the second); skipped with a
//! message otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use clusterfunk::local::{owners, LocalCluster};
use common::netns::Lan;

const TEST_NAME: &str = "three_hosts_form_one_cluster_a_fourth_of_another_name_stays_out";
const TEST_NAME_V6: &str = "over_ipv6_three_hosts_form_one_cluster_a_fourth_stays_out";
const SUBNET: &str = "10.231.79";
/// Prefix of the hosts' IPv6 addresses (`<prefix><n>/64`).
const SUBNET_V6: &str = "fd00:231:79::";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_form_one_cluster_a_fourth_of_another_name_stays_out() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ipv6_three_hosts_form_one_cluster_a_fourth_stays_out() {
    run(true).await;
}

async fn run(v6: bool) {
    let hosts = [("h1", 1), ("h2", 2), ("h3", 3), ("h4", 4)];
    let (test, tag) = if v6 {
        (TEST_NAME_V6, "ag6")
    } else {
        (TEST_NAME, "ag")
    };
    let Some(lan) = Lan::create(test, tag, SUBNET, &hosts) else {
        return;
    };
    if v6 {
        for (ns, (_, host)) in lan.hosts.iter().zip(&hosts) {
            let addr = format!("{SUBNET_V6}{host}/64");
            // nodad: usable at once, no duplicate address detection wait.
            let added =
                common::netns::ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0", "nodad"]);
            if let Err(e) = added {
                common::skip::skipped(test, &format!("no IPv6 in the namespaces ({e})"));
                return;
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let mut a = LocalCluster::new(exe, dir.path(), "a", &["--shards", "300"]).with_zero_conf();
    let mut b = LocalCluster::new(exe, dir.path(), "b", &["--shards", "300"]).with_zero_conf();
    for (i, (name, host)) in hosts.iter().enumerate() {
        let (bind, advertise) = if v6 {
            ("::", format!("{SUBNET_V6}{host}"))
        } else {
            ("0.0.0.0", format!("{SUBNET}.{host}"))
        };
        let flags = [
            ("--preset", "lan"),
            ("--bind", bind),
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
    if v6 {
        for n in &nodes {
            let gossip = a.endpoint(n, "gossip").expect("gossip endpoint");
            assert!(
                gossip.starts_with(&format!("[{SUBNET_V6}")),
                "{n}: {gossip}"
            );
        }
    }
    assert!(
        b.commits("h4").is_empty(),
        "the agent of cluster b stays alone"
    );
    a.shutdown().await;
    b.shutdown().await;
    drop(lan);
}
