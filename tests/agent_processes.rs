//! The real binary as separate processes on 127.0.0.1: formation, kill -9
//! of a follower and of the leader, restart from the data dir, simultaneous
//! bootstrap, and two clusters that share a gossip pool but never merge.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use clusterfunk::local::{owners, unix_ms, Commit, LocalCluster};

const SHARDS: u32 = 1000;
const WAIT: Duration = Duration::from_secs(60);

fn cluster(dir: &Path, name: &str) -> LocalCluster {
    let exe = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    LocalCluster::new(exe, dir, name, &["--shards", "1000", "--log", "info"])
}

fn covers_all(c: &Commit) -> bool {
    c.owners.values().sum::<u32>() == SHARDS
}

fn leader(commits: &std::collections::BTreeMap<String, Commit>) -> String {
    let leaders: BTreeSet<_> = commits.values().filter_map(|c| c.leader.clone()).collect();
    assert_eq!(leaders.len(), 1, "one leader in {commits:?}");
    leaders.into_iter().next().expect("leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_survive_follower_and_leader_kills_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lc = cluster(dir.path(), "p");
    lc.start("n1", None).await.expect("start n1");
    let seed = lc.endpoint("n1", "gossip").expect("gossip addr");
    for i in 2..=5 {
        lc.start(&format!("n{i}"), Some(&seed))
            .await
            .expect("start");
    }
    let all = lc.nodes();
    let first = lc
        .wait_commit(&all, 0, WAIT, |c| owners(c).len() == 5 && covers_all(c))
        .await
        .expect("first map on every node");
    let epochs: BTreeSet<u64> = first.values().map(|c| c.epoch).collect();
    assert_eq!(epochs.len(), 1, "one map everywhere: {first:?}");

    // kill -9 a follower: every survivor commits a map without it.
    let lead = leader(&first);
    let victim = all
        .iter()
        .rev()
        .find(|n| **n != lead)
        .expect("follower")
        .clone();
    let t = lc.kill(&victim).await.expect("kill");
    let rest: Vec<String> = all.iter().filter(|n| **n != victim).cloned().collect();
    let after = lc
        .wait_commit(&rest, t, WAIT, |c| {
            covers_all(c) && !owners(c).contains(&victim)
        })
        .await
        .expect("map without the follower");
    assert!(after.values().all(|c| c.epoch > first["n1"].epoch));

    // kill -9 the leader: a new leader and a new map without it.
    let lead = leader(&after);
    let t = lc.kill(&lead).await.expect("kill leader");
    let rest2: Vec<String> = rest.iter().filter(|n| **n != lead).cloned().collect();
    let after2 = lc
        .wait_commit(&rest2, t, WAIT, |c| {
            covers_all(c) && !owners(c).contains(&lead)
        })
        .await
        .expect("map without the old leader");
    let new_lead = leader(&after2);
    assert_ne!(new_lead, lead);

    // Both come back from their data dirs and own shards again.
    let t = unix_ms();
    lc.restart(&victim).await.expect("restart follower");
    lc.restart(&lead).await.expect("restart old leader");
    lc.wait_commit(&all, t, WAIT, |c| owners(c).len() == 5 && covers_all(c))
        .await
        .expect("restarted nodes own shards again");
    lc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_start_gives_one_cluster_and_names_never_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = cluster(dir.path(), "alpha");
    a.start("a1", None).await.expect("start a1");
    let seed = a.endpoint("a1", "gossip").expect("gossip addr");
    // a2 and a3 start before any cluster exists (bootstrap_expect 3).
    a.start("a2", Some(&seed)).await.expect("start a2");
    a.start("a3", Some(&seed)).await.expect("start a3");
    // Cluster beta gossips through alpha's seed but must stay apart.
    let mut b = cluster(dir.path(), "beta");
    for n in ["b1", "b2", "b3"] {
        b.start(n, Some(&seed)).await.expect("start beta");
    }
    let a_nodes = a.nodes();
    let b_nodes = b.nodes();
    let ca = a
        .wait_commit(&a_nodes, 0, WAIT, |c| owners(c).len() == 3 && covers_all(c))
        .await
        .expect("alpha forms");
    let cb = b
        .wait_commit(&b_nodes, 0, WAIT, |c| owners(c).len() == 3 && covers_all(c))
        .await
        .expect("beta forms");
    let a_set: BTreeSet<String> = a_nodes.iter().cloned().collect();
    let b_set: BTreeSet<String> = b_nodes.iter().cloned().collect();
    for c in ca.values() {
        assert_eq!(owners(c).into_iter().collect::<BTreeSet<_>>(), a_set);
    }
    for c in cb.values() {
        assert_eq!(owners(c).into_iter().collect::<BTreeSet<_>>(), b_set);
    }
    // One leader per cluster, from its own members, and no commit of
    // either cluster ever named a node of the other.
    assert!(a_set.contains(&leader(&ca)));
    assert!(b_set.contains(&leader(&cb)));
    for n in &a_nodes {
        for c in a.commits(n) {
            assert!(owners(&c).iter().all(|o| a_set.contains(o)), "{c:?}");
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}
