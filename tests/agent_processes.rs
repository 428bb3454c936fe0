//! The real binary as separate processes on 127.0.0.1: formation, kill -9
//! of a follower and of the leader, restart from the data dir, simultaneous
//! bootstrap, and two clusters that share a gossip pool but never merge.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clusterfunk::local::{owners, unix_ms, LocalCluster};
use clusterfunk::management::Client;
use common::procs::{cluster, covers_all, five, leader, wait_settled, PROC_WAIT};

const WAIT: Duration = PROC_WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_survive_follower_and_leader_kills_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lc, all, first) = five(dir.path(), "p", &[]).await;
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
    let mut a = cluster(dir.path(), "alpha", &[]);
    a.start("a1", None).await.expect("start a1");
    let seed = a.endpoint("a1", "gossip").expect("gossip addr");
    // a2 and a3 start before any cluster exists (bootstrap_expect 3).
    a.start("a2", Some(&seed)).await.expect("start a2");
    a.start("a3", Some(&seed)).await.expect("start a3");
    // Cluster beta gossips through alpha's seed but must stay apart.
    let mut b = cluster(dir.path(), "beta", &[]);
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

/// Fails naming how many shards moved (not printing 1,000 owners).
/// With `same_epoch`, no proposal may have happened at all; without, the
/// owners must be identical (a leader change during a full restart can
/// re-propose the same map, which is reported).
fn assert_same_map(
    before: &(u64, Vec<Option<String>>),
    after: &(u64, Vec<Option<String>>),
    what: &str,
    same_epoch: bool,
) {
    let moved = before
        .1
        .iter()
        .zip(&after.1)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        moved == 0 && (!same_epoch || before.0 == after.0) && before.1.len() == after.1.len(),
        "{what} moved {moved} shards (epoch {} -> {})",
        before.0,
        after.0
    );
}

async fn full_map(lc: &LocalCluster, node: &str) -> (u64, Vec<Option<String>>) {
    let addr = lc.endpoint(node, "management").expect("management");
    let client = Client::connect(&addr, None, None).await.expect("connect");
    let s = client.shards(true).await.expect("shards");
    (s.epoch, s.owners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_down_and_a_full_restart_move_no_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lc, all, _) = five(dir.path(), "still", &[]).await;
    let (lead, _) = wait_settled(&lc, &all, None, "formed", |_| true).await;
    let before = full_map(&lc, &lead).await;
    assert!(before.1.iter().all(Option::is_some), "every shard owned");

    // A step-down moves leadership, not shards.
    let addr = lc.endpoint(&lead, "management").expect("management");
    let client = Client::connect(&addr, None, None).await.expect("connect");
    client.step_down().await.expect("step down");
    let (new_lead, _) = wait_settled(&lc, &all, None, "a new leader, settled", |(l, _)| {
        *l != lead
    })
    .await;
    assert_same_map(
        &before,
        &full_map(&lc, &new_lead).await,
        "a step-down",
        true,
    );

    // kill -9 of every node, then a restart of all from their data dirs:
    // the same map, same epoch.
    for n in &all {
        lc.kill(n).await.expect("kill");
    }
    for n in &all {
        lc.restart(n).await.expect("restart");
    }
    let (lead, _) = wait_settled(&lc, &all, None, "restarted cluster settled", |_| true).await;
    let after = full_map(&lc, &lead).await;
    if after.0 != before.0 {
        eprintln!(
            "full restart: same owners, epoch {} -> {}",
            before.0, after.0
        );
    }
    assert_same_map(&before, &after, "a full restart", false);
    lc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_sigterm_restart_keeps_every_node_owning_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lc, all, _) = five(dir.path(), "rolling", &[]).await;
    for n in &all {
        // SIGTERM drains the node (its shards move away first), then a
        // restart with the same flags must give it its share back.
        lc.stop(n, WAIT).await.expect("graceful stop");
        let t = unix_ms();
        lc.restart(n).await.expect("restart");
        lc.wait_commit(&all, t, WAIT, |c| owners(c).len() == 5 && covers_all(c))
            .await
            .unwrap_or_else(|e| panic!("after restarting {n}, every node owns shards: {e}"));
    }
    lc.shutdown().await;
}
