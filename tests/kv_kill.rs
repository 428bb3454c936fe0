//! `examples/kv` as five processes under load, and a kill -9 of one node:
//! the map without it commits once its lease has ended, its shards stay
//! unavailable (the new owners answer RETRY while they wait to pull them)
//! instead of being served without their data, and once it is back with
//! its data dir the new owners pull them: no acknowledged write is lost
//! and no read is stale. The load's figures (errors included) are printed.

mod common;

use std::time::Duration;

use common::kv::{client, counts, wait_map, Kv, Load};

const SHARDS: u32 = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_comes_back_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kv = Kv::new(dir.path(), SHARDS);
    let seed = kv.start("n1", None).await.gossip;
    for i in 2..=5 {
        kv.start(&format!("n{i}"), Some(&seed)).await;
    }
    let c = client(&kv);
    wait_map(&c, "a map over five nodes", |v| counts(v).len() == 5).await;
    let load = Load::start(&kv.managements(), &["--rate", "300"]);
    // Let the load write for a while (load, not a wait for state).
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let victim = "n4";
    kv.kill(victim).await;
    wait_map(&c, "a map without the killed node", |v| {
        !counts(v).contains_key(victim)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seed = kv.seed(victim);
    kv.start(victim, Some(&seed)).await;
    wait_map(&c, "the node owns shards again", |v| counts(v).len() == 5).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let summary = load.finish().await;
    println!("kv load, kill -9 and restart of {victim}: {summary}");
    assert_eq!(summary["lost_writes"], 0, "lost writes");
    assert_eq!(summary["stale_reads"], 0, "stale reads");
    assert_eq!(summary["unverified"], 0, "keys not read back");
}
