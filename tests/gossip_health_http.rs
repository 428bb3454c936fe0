//! Gossip health on a node's HTTP endpoints: `/status` carries a `gossip`
//! object (Lifeguard health score, probe RTTs, push/pull counts, queue
//! depth, lighthouse view validity) and `/metrics` the matching
//! `clusterfunk_gossip_*` series. Two in-process agents, the first a
//! lighthouse: the second's status and metrics show the lighthouse alive
//! and probe RTTs measured; once the lighthouse crashes (no graceful
//! leave), the second reports its view invalid in both and in its event
//! stream.

use std::net::SocketAddr;

mod common;

use clusterfunk::cluster::Seams;
use clusterfunk::{ClusterEvent, Config};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The `gossip` object of `/status`.
async fn gossip_status(addr: SocketAddr) -> serde_json::Value {
    let body = get(addr, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).expect("status json");
    status["gossip"].clone()
}

/// The value of metric `name`'s series carrying `label`.
async fn metric(addr: SocketAddr, name: &str, label: &str) -> Option<f64> {
    let text = get(addr, "/metrics").await;
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_metrics_show_gossip_health_and_view_validity() {
    let nodes = start_agents(2, Seams::default(), |i| {
        let mut c = Config::local(format!("h{i}"));
        c.cluster_name = "health".into();
        c.shard_count = 8;
        c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
        c.gossip.lighthouse = i == 0;
        c
    })
    .await;
    let watcher = nodes[1].local_endpoints()["metrics"];
    wait_until_async("a lighthouse alive and probe RTTs in /status", || async {
        let g = gossip_status(watcher).await;
        g["view_valid"] == true
            && g["lighthouses_known"] == 1
            && g["lighthouses_alive"] == 1
            && g["probe_rtt_count"].as_u64().is_some_and(|n| n > 0)
            && g["probe_rtt_max_ms"].as_f64().is_some_and(|ms| ms > 0.0)
    })
    .await;
    let g = gossip_status(watcher).await;
    for field in [
        "health_score",
        "push_pulls",
        "push_pull_failures",
        "broadcast_queue",
        "broadcast_queue_warning",
        "events_coalesced",
    ] {
        assert!(g[field].is_number(), "{field} missing in {g}");
    }
    assert_eq!(g["broadcast_queue_warning"], 1024);
    wait_until_async("the metrics follow", || async {
        metric(watcher, "clusterfunk_gossip_view_valid", "node=").await == Some(1.0)
            && metric(watcher, "clusterfunk_gossip_lighthouses", "state=\"alive\"").await
                == Some(1.0)
            && metric(
                watcher,
                "clusterfunk_gossip_probe_rtt_seconds",
                "stat=\"max\"",
            )
            .await
            .is_some_and(|s| s > 0.0)
            && metric(watcher, "clusterfunk_gossip_health_score", "node=")
                .await
                .is_some()
            && metric(watcher, "clusterfunk_gossip_push_pulls_total", "node=")
                .await
                .is_some_and(|n| n >= 1.0)
    })
    .await;

    let mut events = nodes[1].cluster().events();
    nodes[0].cluster().crash().await;
    wait_until_async("the survivor reports its view invalid", || async {
        let g = gossip_status(watcher).await;
        g["view_valid"] == false
            && g["lighthouses_alive"] == 0
            && metric(watcher, "clusterfunk_gossip_view_valid", "node=").await == Some(0.0)
    })
    .await;
    // ... and says so in its event stream.
    let invalid = ClusterEvent::ViewValidity {
        valid: false,
        lighthouses_alive: 0,
    };
    let heard = tokio::time::timeout(common::wait::WAIT, async {
        loop {
            match events.recv().await {
                Ok(ev) if ev == invalid => return true,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return false,
            }
        }
    })
    .await;
    assert_eq!(heard.ok(), Some(true), "no view_validity event");
    stop_all(&nodes[1..]).await;
}
