//! The real binary as separate processes on IPv6 loopback (`--bind ::1`,
//! every port `0`): gossip, Raft, liveness, management and metrics all on
//! `[::1]:port`. Three agents form a cluster and commit a map, every
//! endpoint they publish is an IPv6 address, the management API answers
//! over `[::1]`, a kill -9 is found by liveness and the survivors commit a
//! map without the victim, and a lighthouse's loss turns the survivors'
//! `/status` view invalid (the management status carries the same gossip
//! health). Skipped with a message when the host has no
//! IPv6 loopback.

mod common;

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};

use clusterfunk::local::{owners, unix_ms};
use clusterfunk::management::NodeFilter;
use common::procs::{cluster, covers_all, wait_settled, PROC_WAIT};
use common::skip::skipped;

/// Whether `::1` can be bound here.
fn ipv6_loopback() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// The `gossip` object of `/status` of a metrics endpoint.
async fn gossip_status(addr: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v["gossip"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_on_ipv6_loopback_form_detect_a_kill_and_check_lighthouses() {
    const TEST: &str = "three_agents_on_ipv6_loopback_form_detect_a_kill_and_check_lighthouses";
    if !ipv6_loopback() {
        skipped(TEST, "no IPv6 loopback (::1) on this host");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lc = cluster(dir.path(), "six", &["--bind", "::1"]);
    lc.start_with("n1", None, &[("--lighthouse", "true")], &[])
        .await
        .expect("start n1");
    let seed = lc.endpoint("n1", "gossip").expect("gossip addr");
    assert!(seed.starts_with("[::1]:"), "gossip on IPv6: {seed}");
    for n in ["n2", "n3"] {
        lc.start(n, Some(&seed)).await.expect("start");
    }
    let all = lc.nodes();
    let first = lc
        .wait_commit(&all, 0, PROC_WAIT, |c| {
            owners(c).len() == 3 && covers_all(c)
        })
        .await
        .expect("first map on every node");
    for n in &all {
        for ep in ["gossip", "raft", "liveness", "management", "metrics"] {
            let addr = lc.endpoint(n, ep).expect("endpoint");
            let parsed: SocketAddr = addr.parse().expect("socket address");
            assert!(parsed.is_ipv6(), "{n} {ep} at {addr}");
        }
    }
    // The management API answers over IPv6 and lists IPv6 endpoints.
    let (leader, epoch) = wait_settled(&lc, &all, None, "settled over IPv6", |_| true).await;
    assert!(epoch >= first["n1"].epoch);
    let client = common::procs::client(&lc, "n2", None)
        .await
        .expect("management over [::1]");
    let nodes = client
        .nodes(&NodeFilter::default())
        .await
        .expect("list nodes");
    assert_eq!(nodes.len(), 3);
    for info in &nodes {
        for (name, addr) in &info.endpoints {
            assert!(addr.starts_with("[::1]:"), "{} {name} at {addr}", info.id);
        }
    }
    // Every view holds the lighthouse.
    let m3 = lc.endpoint("n3", "metrics").expect("metrics");
    common::wait::wait_until_async("n3 sees the lighthouse", || async {
        gossip_status(&m3)
            .await
            .is_some_and(|g| g["view_valid"] == true && g["lighthouses_alive"] == 1)
    })
    .await;
    // The management API's status carries the same gossip health.
    common::wait::wait_until_async("gossip health over management", || async {
        client
            .status()
            .await
            .ok()
            .and_then(|s| s.gossip)
            .is_some_and(|g| g.view_valid && g.lighthouses_known == 1 && g.probe_rtt_count > 0)
    })
    .await;

    // kill -9 the lighthouse: liveness and gossip find it over IPv6, the
    // survivors commit a map without it and report their view invalid.
    let t = lc.kill("n1").await.expect("kill");
    let rest: Vec<String> = vec!["n2".into(), "n3".into()];
    let after = lc
        .wait_commit(&rest, t, PROC_WAIT, |c| {
            covers_all(c) && !owners(c).contains(&"n1".to_string())
        })
        .await
        .expect("map without the killed node");
    common::wait::wait_until_async("n3 reports its view invalid", || async {
        gossip_status(&m3)
            .await
            .is_some_and(|g| g["view_valid"] == false && g["lighthouses_alive"] == 0)
    })
    .await;
    let last = after.values().map(|c| c.t_ms).max().unwrap_or(t);
    println!(
        "IPv6: map without the killed n1 (leader was {leader}) {} ms after kill -9 (checked at {})",
        last.saturating_sub(t),
        unix_ms()
    );
    lc.shutdown().await;
}
