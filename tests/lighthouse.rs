//! Lighthouse-based view validity (Seafoam's `RankLighthouse`) on the
//! in-memory network, under paused tokio time: six nodes, one of them a
//! lighthouse, are cut in two. The side without the lighthouse reports its
//! view invalid within the failure-detection time (suspicion timeout after
//! a missed probe), through `view_validity`, its watch and the stats; the
//! side with it stays valid throughout; when the cut heals every view is
//! valid again. Also: gossip health moves when a node's own links drop
//! (Lifeguard's health score rises, probes fail).

use std::net::SocketAddr;
use std::time::Duration;

use clusterfunk::gossip::{
    Gossip, GossipConfig, MemNetwork, MemberStatus, ViewValidity, LIGHTHOUSE_TAG,
};

fn config(name: String, lighthouse: bool) -> GossipConfig {
    GossipConfig {
        lighthouse,
        push_pull_interval: Duration::from_secs(5),
        reconnect_interval: Duration::from_secs(2),
        ..GossipConfig::local(name)
    }
}

async fn cluster(net: &MemNetwork, n: usize, lighthouses: &[usize]) -> Vec<Gossip> {
    let nodes: Vec<Gossip> = (0..n)
        .map(|i| {
            let cfg = config(format!("n{i}"), lighthouses.contains(&i));
            Gossip::start(cfg, net.bind()).expect("start")
        })
        .collect();
    for g in &nodes[1..] {
        g.join(&[nodes[0].addr()]).await.expect("join");
    }
    for g in &nodes {
        let all_alive = |m: &[clusterfunk::gossip::Member]| {
            m.len() == n && m.iter().all(|m| m.status == MemberStatus::Alive)
        };
        assert!(g.wait_for(Duration::from_secs(30), all_alive).await);
    }
    nodes
}

async fn wait_validity(g: &Gossip, valid: bool, within: Duration) -> bool {
    let mut rx = g.watch_view_validity();
    tokio::time::timeout(within, rx.wait_for(|v| v.valid == valid))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(start_paused = true)]
async fn the_side_cut_off_from_every_lighthouse_reports_its_view_invalid() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 6, &[0]).await;
    assert_eq!(
        nodes[0]
            .local_node()
            .tags
            .get(LIGHTHOUSE_TAG)
            .map(String::as_str),
        Some("1")
    );
    for g in &nodes {
        let v = g.view_validity();
        assert_eq!(
            v,
            ViewValidity {
                valid: true,
                lighthouses_known: 1,
                lighthouses_alive: 1
            },
            "{}",
            g.name()
        );
    }
    // Every validity the lighthouse side publishes from now on.
    let lit: Vec<_> = nodes[..3]
        .iter()
        .map(|g| {
            let mut rx = g.watch_view_validity();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while rx.changed().await.is_ok() {
                    seen.push(*rx.borrow_and_update());
                }
                seen
            })
        })
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(Gossip::addr).collect();
    net.partition(&addrs[..3], &addrs[3..]);

    // Failure detection: a probe interval to notice, then the suspicion
    // timeout (at most suspicion_max_timeout_mult x its floor of
    // suspicion_mult x log10(6) x probe_interval, scaled by health).
    let cfg = config("x".into(), false);
    let floor = cfg.probe_interval.mul_f64(f64::from(cfg.suspicion_mult));
    let detect = cfg.probe_interval * 2 + floor * cfg.suspicion_max_timeout_mult;
    let started = tokio::time::Instant::now();
    for g in &nodes[3..] {
        assert!(
            wait_validity(g, false, detect).await,
            "{} did not report its view invalid within {detect:?}",
            g.name()
        );
        let v = g.view_validity();
        assert_eq!((v.lighthouses_known, v.lighthouses_alive), (1, 0));
        let s = g.stats().await.expect("stats");
        assert!(!s.view_valid && s.lighthouses_known == 1, "{s:?}");
    }
    let took = started.elapsed();
    // The lighthouse side saw the other side fail in that time and stayed
    // valid all along (its watch never changed).
    for g in &nodes[..3] {
        assert!(g.view_validity().valid);
        let far_side_failed = |m: &[clusterfunk::gossip::Member]| {
            m.iter().filter(|m| m.status.is_gone()).count() == 3
        };
        assert!(
            g.wait_for(detect, far_side_failed).await,
            "{} should see the far side failed",
            g.name()
        );
    }
    println!("cut-off side invalid after {took:?} (bound {detect:?})");

    net.heal();
    for g in &nodes[3..] {
        assert!(
            wait_validity(g, true, Duration::from_secs(60)).await,
            "{} did not become valid again after the heal",
            g.name()
        );
    }
    // The lighthouse side never published an invalid view.
    for g in &nodes {
        g.shutdown().await.expect("shutdown");
    }
    for (i, seen) in lit.into_iter().enumerate() {
        let seen = seen.await.expect("watcher");
        assert!(seen.iter().all(|v| v.valid), "n{i} published {seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_lighthouse_known_means_nothing_to_check_and_a_leaving_one_is_forgotten() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 3, &[]).await;
    assert!(nodes
        .iter()
        .all(|g| g.view_validity() == ViewValidity::default()));
    let lh = Gossip::start(config("lh".into(), true), net.bind()).expect("start");
    lh.join(&[nodes[0].addr()]).await.expect("join");
    for g in &nodes {
        let mut rx = g.watch_view_validity();
        let seen = rx.wait_for(|v| v.lighthouses_known == 1);
        assert!(tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .is_ok());
    }
    // A graceful leave removes the requirement instead of invalidating
    // every view.
    lh.leave(Duration::from_secs(5)).await.expect("leave");
    for g in &nodes {
        let mut rx = g.watch_view_validity();
        let forgot = rx.wait_for(|v| v.lighthouses_known == 0);
        assert!(tokio::time::timeout(Duration::from_secs(30), forgot)
            .await
            .is_ok());
        assert!(g.view_validity().valid);
    }
}

#[tokio::test(start_paused = true)]
async fn health_score_rises_and_probes_fail_when_a_nodes_links_drop() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 4, &[]).await;
    let mut before = nodes[0].stats().await.expect("stats");
    for _ in 0..100 {
        if before.rtt.count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = nodes[0].stats().await.expect("stats");
    }
    assert_eq!(before.health_score, 0);
    assert!(before.rtt.count > 0, "probes were answered: {before:?}");
    net.isolate(nodes[0].addr());
    let mut rose = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = nodes[0].stats().await.expect("stats");
        if s.health_score > 0 && s.probe_failures > before.probe_failures {
            rose = true;
            break;
        }
    }
    assert!(rose, "health score and probe failures should rise");
    net.rejoin(nodes[0].addr());
}
