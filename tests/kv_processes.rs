//! `examples/kv` as five processes with the load client running: a drain,
//! a weight change, a leader step-down and a rolling SIGTERM restart of
//! every node lose no acknowledged write and serve no stale read, and every
//! key ends on its committed owner (the load client's final check reads
//! each key from its owner only). Then a kill -9 of a node: its shards
//! wait (RETRY) until the new owners can pull them, which they do once the
//! node is back with its data dir. Each phase prints the load's figures.

mod common;

use std::time::Duration;

use clusterfunk::management::Client;
use common::kv::{client, counts, wait_map, Kv, Load};

const SHARDS: u32 = 256;

async fn mgmt(kv: &Kv, id: &str) -> Client {
    Client::connect(&kv.ready(id).management, None, None)
        .await
        .expect("management")
}

/// Lets the load run a while between steps (load, not a wait for state).
async fn run_load() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn check(phase: &str, summary: &serde_json::Value) {
    println!("kv load, {phase}: {summary}");
    assert_eq!(summary["lost_writes"], 0, "{phase}: lost writes");
    assert_eq!(summary["stale_reads"], 0, "{phase}: stale reads");
    assert_eq!(summary["unverified"], 0, "{phase}: keys not read back");
    assert!(
        summary["writes_ok"].as_u64().unwrap_or(0) > 0,
        "{phase}: no writes"
    );
}

async fn five(dir: &std::path::Path) -> Kv {
    let mut kv = Kv::new(dir, SHARDS);
    let seed = kv.start("n1", None).await.gossip;
    for i in 2..=5 {
        kv.start(&format!("n{i}"), Some(&seed)).await;
    }
    kv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_and_a_rolling_restart_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kv = five(dir.path()).await;
    let c = client(&kv);
    wait_map(&c, "a map over five nodes", |v| counts(v).len() == 5).await;
    let load = Load::start(&kv.managements(), &["--rate", "300"]);
    run_load().await;

    // Drain n5, then give n2 triple weight.
    let m1 = mgmt(&kv, "n1").await;
    m1.set_weight("n5", 0).await.expect("drain n5");
    wait_map(&c, "n5 drained", |v| !counts(v).contains_key("n5")).await;
    run_load().await;
    m1.set_weight("n2", 3).await.expect("weight");
    wait_map(&c, "n2 with triple weight", |v| {
        let n = counts(v);
        n.len() == 4 && n.get("n2").copied().unwrap_or(0) > 2 * n.get("n1").copied().unwrap_or(0)
    })
    .await;
    run_load().await;

    // The leader steps down.
    let leader = m1.status().await.expect("status").leader.expect("leader");
    let before = c.epoch().unwrap_or(0);
    mgmt(&kv, &leader)
        .await
        .step_down()
        .await
        .expect("step down");
    run_load().await;
    m1.set_weight("n5", 1).await.expect("undrain n5");
    m1.set_weight("n2", 1).await.expect("weight back");
    wait_map(&c, "five equal owners again", |v| {
        let n = counts(v);
        v.map.epoch() > before && n.len() == 5 && n.values().all(|c| *c >= SHARDS / 5 - 1)
    })
    .await;
    run_load().await;

    // Rolling restart: each node drains on SIGTERM and comes back.
    for i in 1..=5 {
        let id = format!("n{i}");
        kv.term(&id).await;
        wait_map(&c, "a map without the stopped node", |v| {
            !counts(v).contains_key(&id)
        })
        .await;
        let seed = kv.seed(&id);
        kv.start(&id, Some(&seed)).await;
        wait_map(&c, "the restarted node owns shards again", |v| {
            counts(v).len() == 5
        })
        .await;
        run_load().await;
    }
    check(
        "drain, weight, step-down, rolling restart",
        &load.finish().await,
    );
}
