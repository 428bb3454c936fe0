//! `allow_cidr` (`--allow-cidr`) on real loopback sockets, in process:
//! nodes that allow 127.0.0.0/8 form a cluster as usual; a node that
//! allows only 10.0.0.0/8 drops everything that comes from loopback (a
//! management call fails, a Raft connection is closed at once, gossip
//! datagrams are dropped) and counts each in
//! `clusterfunk_cidr_refused_total{listener}`.

mod common;

use std::time::Duration;

use clusterfunk::cluster::Seams;
use clusterfunk::config::AllowList;
use clusterfunk::management::Client;
use clusterfunk::{Agent, Config};
use common::cluster::{start_agents, stop_all};
use common::wait::{wait_until, wait_until_async};
use tokio::io::AsyncReadExt;

const SHARDS: u32 = 300;

fn config(name: &str, allow: &[&str]) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = "cidr".into();
    c.shard_count = SHARDS;
    c.allow_cidr = AllowList::parse(allow).expect("blocks");
    c
}

/// The value of `clusterfunk_cidr_refused_total{listener}` on `node`.
fn refused(node: &Agent, listener: &str) -> f64 {
    let text = node.metrics().encode_text().expect("metrics");
    let tag = format!("listener=\"{listener}\"");
    text.lines()
        .filter(|l| l.starts_with("clusterfunk_cidr_refused_total{") && l.contains(&tag))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allow_cidr_guards_gossip_raft_and_management() {
    let nodes = start_agents(3, Seams::default(), |i| {
        config(&format!("open{i}"), &["127.0.0.0/8"])
    })
    .await;
    wait_until("a map owned by the three open nodes", || {
        nodes.iter().all(|n| {
            n.shard_map()
                .borrow()
                .as_ref()
                .is_some_and(|m| m.counts().len() == 3 && m.unassigned() == 0)
        })
    })
    .await;
    for n in &nodes {
        assert_eq!(refused(n, "management"), 0.0);
    }

    let mut c = config("closed", &["10.0.0.0/8"]);
    c.join = vec![nodes[0].local_endpoints()["gossip"].to_string()];
    let closed = Agent::start(c).await.expect("start the closed node");
    let eps = closed.local_endpoints().clone();

    // Management: the connection is closed before any call is read.
    let client = Client::connect(&eps["management"].to_string(), None, None).await;
    let answered = match client {
        Ok(c) => c.health().await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !answered,
        "a management call from outside the list must fail"
    );
    // The listener's counts reach the metric on the server's next export.
    wait_until("the management refusal counted", || {
        refused(&closed, "management") >= 1.0
    })
    .await;

    // Raft: closed at once, whatever is sent.
    let mut raft = tokio::net::TcpStream::connect(eps["raft"])
        .await
        .expect("the kernel accepts");
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(10), raft.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the Raft port must close the connection: {read:?}"
    );

    // Gossip: the open nodes' probes and gossip never get in.
    wait_until_async("refusals counted for raft and gossip", || async {
        refused(&closed, "raft") >= 1.0 && refused(&closed, "gossip") >= 1.0
    })
    .await;
    println!(
        "closed node refused: gossip {}, raft {}, management {}",
        refused(&closed, "gossip"),
        refused(&closed, "raft"),
        refused(&closed, "management")
    );
    // The open nodes' map never gains it.
    for n in &nodes {
        let m = n.shard_map().borrow().clone().expect("map");
        assert!(!m.counts().contains_key("closed"));
    }
    closed.stop().await;
    stop_all(&nodes).await;
}
