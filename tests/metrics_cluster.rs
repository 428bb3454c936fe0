//! Scrapes a 3-node cluster's HTTP endpoints: shards owned add up to the
//! shard count, the epoch grows after a node leaves, health follows the
//! node state and /status lists the members.

use std::collections::BTreeMap;
use std::net::SocketAddr;

mod common;

use clusterfunk::cluster::Seams;
use clusterfunk::{Agent, Config};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHARDS: u32 = 500;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// `name{node="x"...} value` samples of one metric, by node.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let node = l.split("node=\"").nth(1)?.split('"').next()?.to_string();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((node, value))
        })
        .collect()
}

async fn scrape(nodes: &[Agent], name: &str) -> BTreeMap<String, f64> {
    let mut all = BTreeMap::new();
    for n in nodes {
        let (code, body) = get(n.local_endpoints()["metrics"], "/metrics").await;
        assert_eq!(code, 200);
        all.extend(samples(&body, name));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_the_cluster() {
    let mut nodes = start_agents(3, Seams::default(), |i| {
        let mut c = Config::local(format!("m{i}"));
        c.cluster_name = "metrics".into();
        c.shard_count = SHARDS;
        c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
        c
    })
    .await;
    // Gauges follow commits at once, the status view within 500 ms: wait
    // until shards add up, one node reports leading and every node is
    // healthy (Operational: committed map and a valid serving lease).
    wait_until_async("shards, leader gauge and health", || async {
        let owned = scrape(&nodes, "clusterfunk_shards_owned").await;
        let leaders = scrape(&nodes, "clusterfunk_raft_is_leader").await;
        let mut healthy = true;
        for n in &nodes {
            healthy &= get(n.local_endpoints()["metrics"], "/healthz").await.0 == 200;
        }
        owned.len() == 3
            && owned.values().sum::<f64>() == f64::from(SHARDS)
            && leaders.values().sum::<f64>() == 1.0
            && healthy
    })
    .await;
    let epochs = scrape(&nodes, "clusterfunk_shard_map_epoch").await;
    let first_epoch = epochs.values().cloned().fold(0.0, f64::max);
    assert!(first_epoch >= 1.0);
    for n in &nodes {
        let addr = n.local_endpoints()["metrics"];
        let (code, body) = get(addr, "/status").await;
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("status json");
        assert_eq!(status["nodes"].as_array().map(|a| a.len()), Some(3));
    }

    // One node leaves: the others' epoch grows and they own everything.
    let gone = nodes.pop().expect("node");
    gone.stop().await;
    wait_until_async("a newer epoch without the leaver", || async {
        let epochs = scrape(&nodes, "clusterfunk_shard_map_epoch").await;
        let owned = scrape(&nodes, "clusterfunk_shards_owned").await;
        epochs.values().all(|e| *e > first_epoch)
            && owned.values().sum::<f64>() == f64::from(SHARDS)
    })
    .await;
    stop_all(&nodes).await;
}
