//! A non-member `ClusterClient` following three in-process agents over
//! loopback: it learns every committed map (the lag from the member's
//! commit is printed) and routes keys and endpoints as the members do; and
//! `Routes::forward` reaches the owner, refuses loops, retries once on a
//! newer map and says when there is no owner.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clusterfunk::client::{ClientAuth, ClusterClient};
use clusterfunk::cluster::Seams;
use clusterfunk::routing::{ForwardError, Forwarded, Hop, Reply, Routes, MAX_HOPS};
use clusterfunk::{Agent, Config};
use common::cluster::{start_agents, stop_all};
use common::wait::{wait_until, WAIT};

fn config(i: usize) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = "c".into();
    c.shard_count = 256;
    c.management_addr = Some("127.0.0.1:0".parse().expect("addr"));
    c.metrics_addr = None;
    // Published, never dialled: the fake transport below stays in-process.
    let kv = std::net::SocketAddr::from(([127, 0, 0, 10 + i as u8], 9));
    c.endpoints.insert("kv".into(), kv);
    c
}

fn keys() -> impl Iterator<Item = String> {
    (0..500).map(|i| format!("key-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_learns_every_committed_map_and_routes_like_the_members() {
    let nodes = start_agents(3, Seams::default(), config).await;
    wait_until("a first map", || nodes.iter().all(|n| n.epoch().is_some())).await;
    // When the member (n0) committed each epoch, by its own watch.
    let committed: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let mut maps = nodes[0].shard_map();
    let c2 = committed.clone();
    tokio::spawn(async move {
        loop {
            if let Some(e) = maps.borrow_and_update().as_ref().map(|m| m.epoch()) {
                c2.lock()
                    .expect("lock")
                    .entry(e)
                    .or_insert_with(Instant::now);
            }
            if maps.changed().await.is_err() {
                return;
            }
        }
    });
    let mgmt = nodes[0].local_endpoints()["management"].to_string();
    let client = ClusterClient::start(vec![mgmt], ClientAuth::default()).expect("client");
    let mut seen_rx = client.watch();
    let seen: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while seen_rx.changed().await.is_ok() {
            let e = seen_rx.borrow_and_update().as_ref().map(|v| v.map.epoch());
            if let Some(e) = e {
                s2.lock()
                    .expect("lock")
                    .entry(e)
                    .or_insert_with(Instant::now);
            }
        }
    });
    client.wait_for_map(0, WAIT).await.expect("first map");
    let moves: [(&str, u32); 4] = [("n1", 3), ("n2", 0), ("n2", 2), ("n1", 1)];
    for (node, weight) in moves {
        let before = nodes[0].epoch().unwrap_or(0);
        nodes[0].set_weight(node, weight).await.expect("weight");
        wait_until("a new map on n0", || nodes[0].epoch().unwrap_or(0) > before).await;
        let e = nodes[0].epoch().unwrap_or(0);
        client
            .wait_for_map(e, WAIT)
            .await
            .expect("the client has it");
    }
    let epoch = nodes[0].epoch().expect("epoch");
    wait_until("every member on the client's epoch", || {
        nodes.iter().all(|n| n.epoch() == Some(epoch))
    })
    .await;
    for key in keys() {
        let owner = client.owner_of(key.as_bytes());
        assert_eq!(owner, nodes[1].owner_of(key.as_bytes()), "owner of {key}");
        let owner = owner.expect("owned");
        assert_eq!(
            client.endpoint(&owner, "kv"),
            nodes[2].endpoint(&owner, "kv")
        );
    }
    let (committed, seen) = (
        committed.lock().expect("lock").clone(),
        seen.lock().expect("lock").clone(),
    );
    let mut lags = Vec::new();
    for (e, t) in &committed {
        if let Some(s) = seen.get(e) {
            lags.push(s.saturating_duration_since(*t).as_secs_f64() * 1000.0);
        }
    }
    assert!(
        lags.len() + 1 >= committed.len(),
        "the client saw {} of {} committed maps",
        lags.len(),
        committed.len()
    );
    let max = lags.iter().cloned().fold(0.0, f64::max);
    println!(
        "client map lag after commit: {} maps, max {max:.1} ms (goal: under 100 ms)",
        lags.len()
    );
    drop(client);
    stop_all(&nodes).await;
}

/// The fake transport: the request reaches node `to` in-process, which
/// serves it when it serves the shard.
fn deliver(nodes: &[Agent], to: &str, shard: u32) -> Reply<String> {
    let n = nodes.iter().find(|n| n.node_id() == to).expect("node");
    if n.is_serving(shard) {
        Reply::Done(to.to_string())
    } else {
        Reply::NotOwner {
            epoch: n.epoch().unwrap_or(0),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_reaches_the_owner_refuses_loops_and_retries_once() {
    let nodes = start_agents(3, Seams::default(), config).await;
    wait_until("every shard served", || {
        (0..256).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1)
    })
    .await;
    let routes = Routes::new(nodes[0].cluster().clone(), "kv");
    let never = |_, _| async { Err::<Reply<String>, std::io::Error>(std::io::Error::other("x")) };
    let mut forwarded = 0;
    for key in keys() {
        let owner = nodes[0].owner_of(key.as_bytes()).expect("owner");
        let got = routes
            .forward(key.as_bytes(), Hop::default(), |t, hop| {
                assert_eq!(hop.hops, 1);
                let r = deliver(&nodes, &t.node, t.shard);
                async move { Ok::<_, std::io::Error>(r) }
            })
            .await
            .expect("forward");
        match got {
            Forwarded::Local { .. } => assert_eq!(owner, "n0"),
            Forwarded::Remote(served_by) => {
                assert_eq!(served_by, owner);
                forwarded += 1;
                // The same request already forwarded MAX_HOPS times is refused.
                let looped = Hop {
                    epoch: 0,
                    hops: MAX_HOPS,
                };
                let e = routes.forward(key.as_bytes(), looped, never).await;
                assert!(matches!(e, Err(ForwardError::Loop { .. })), "{key}");
            }
        }
    }
    assert!(forwarded > 0);
    // An owner that names a newer epoch: one retry, then a clear error.
    let key = keys()
        .find(|k| nodes[0].owner_of(k.as_bytes()).as_deref() != Some("n0"))
        .expect("a remote key");
    let mut calls = 0;
    let e = routes
        .forward(key.as_bytes(), Hop::default(), |_, hop| {
            calls += 1;
            let r = Reply::<String>::NotOwner {
                epoch: hop.epoch + 1,
            };
            async move { Ok::<_, std::io::Error>(r) }
        })
        .await;
    assert_eq!(calls, 2, "exactly one retry");
    assert!(matches!(e, Err(ForwardError::NotOwner { .. })));
    stop_all(&nodes).await;
    // A node with no map: no owner.
    let mut lone = config(7);
    lone.cluster_name = "alone".into();
    let lone = Agent::start(lone).await.expect("start");
    let routes = Routes::new(lone.cluster().clone(), "kv");
    let e = routes.forward(b"k", Hop::default(), never).await;
    assert!(matches!(e, Err(ForwardError::NoOwner { .. })), "{e:?}");
    lone.stop().await;
}
