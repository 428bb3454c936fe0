//! 50-node gossip clusters on the in-memory network, under paused tokio
//! time (the clock jumps to the next timer whenever every task is idle, so
//! minutes of protocol time run in seconds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clusterfunk::gossip::{
    Gossip, GossipConfig, Keyring, MemNetwork, Member, MemberEventKind, MemberStatus, Transport,
};

const N: usize = 50;

fn config(name: String) -> GossipConfig {
    GossipConfig {
        // Anti-entropy and partition healing often enough for a test.
        push_pull_interval: Duration::from_secs(5),
        reconnect_interval: Duration::from_secs(2),
        ..GossipConfig::local(name)
    }
}

async fn cluster(net: &MemNetwork, n: usize) -> Vec<Gossip> {
    cluster_with(net, n, config).await
}

async fn cluster_with(
    net: &MemNetwork,
    n: usize,
    cfg: impl Fn(String) -> GossipConfig,
) -> Vec<Gossip> {
    let nodes: Vec<Gossip> = (0..n)
        .map(|i| Gossip::start(cfg(format!("n{i:02}")), net.bind()).unwrap())
        .collect();
    let seed = nodes[0].addr();
    for g in &nodes[1..] {
        assert_eq!(g.join(&[seed]).await.unwrap(), 1);
    }
    nodes
}

fn count(members: &[Member], s: MemberStatus) -> usize {
    members.iter().filter(|m| m.status == s).count()
}

fn status_of(members: &[Member], name: &str) -> Option<MemberStatus> {
    members.iter().find(|m| m.name == name).map(|m| m.status)
}

/// Waits until `pred` holds on every node in `nodes`, within `timeout` of
/// (virtual) time overall.
async fn wait_all(nodes: &[&Gossip], timeout: Duration, pred: impl Fn(&[Member]) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    for g in nodes {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !g.wait_for(left, &pred).await {
            return false;
        }
    }
    true
}

/// Asserts that every node in `nodes` sees `n` members alive within
/// `timeout` of (virtual) time.
async fn assert_all_alive(nodes: &[&Gossip], n: usize, timeout: Duration) {
    assert!(
        wait_all(nodes, timeout, |m| count(m, MemberStatus::Alive) == n).await,
        "not every node saw {n} members alive"
    );
}

/// Polls `check` every 50 ms (virtual time) until it holds or `timeout`
/// passes; returns whether it held.
async fn poll<F, Fut>(timeout: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(timeout, async {
        loop {
            tick.tick().await;
            if check().await {
                return;
            }
        }
    })
    .await
    .is_ok()
}

async fn converge(nodes: &[Gossip]) {
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert!(
        wait_all(&all, Duration::from_secs(60), |m| count(
            m,
            MemberStatus::Alive
        ) == N)
        .await,
        "cluster did not converge"
    );
}

#[tokio::test(start_paused = true)]
async fn fifty_nodes_converge_and_spread_tags() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, N).await;
    converge(&nodes).await;

    let mut tags = BTreeMap::new();
    tags.insert("ep.raft".to_string(), "10.0.0.17:7000".to_string());
    nodes[17].set_tags(tags).await.unwrap();
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert!(
        wait_all(&all, Duration::from_secs(30), |m| {
            m.iter().any(|x| {
                x.name == "n17"
                    && x.tags.get("ep.raft").map(String::as_str) == Some("10.0.0.17:7000")
            })
        })
        .await,
        "tags did not reach every node"
    );
    // Oversized tags are refused and change nothing.
    let mut big = BTreeMap::new();
    big.insert("blob".to_string(), "x".repeat(1000));
    assert!(nodes[3].set_tags(big).await.is_err());

    // Probes run and their round trips are measured.
    let n0 = &nodes[0];
    assert!(
        poll(Duration::from_secs(10), || async move {
            n0.stats().await.unwrap().rtt.count > 0
        })
        .await
    );
    let stats = nodes[0].stats().await.unwrap();
    assert!(stats.probes > 0 && stats.sent["ping"].messages > 0 && stats.received["ack"].bytes > 0);
    assert_eq!(stats.alive, N);
    for g in &nodes {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn stopped_node_is_marked_failed_by_everyone() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, N).await;
    converge(&nodes).await;
    let mut events = nodes[0].subscribe().await.unwrap();

    nodes[7].shutdown().await.unwrap();
    let others: Vec<&Gossip> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, g)| g)
        .collect();
    assert!(
        wait_all(&others, Duration::from_secs(120), |m| status_of(m, "n07")
            == Some(MemberStatus::Dead))
        .await,
        "n07 not marked failed everywhere"
    );
    // Nobody else was declared dead on the way.
    for g in &others {
        let m = g.members();
        assert_eq!(count(&m, MemberStatus::Dead), 1, "{}: {:?}", g.name(), m);
    }
    // The subscriber saw the failure (Suspect first, or Failed directly).
    let mut saw_failed = false;
    while let Ok(ev) = events.try_recv() {
        if ev.member.name == "n07" && ev.kind == MemberEventKind::Failed {
            saw_failed = true;
        }
    }
    assert!(saw_failed);
    for g in &others {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn slow_node_refutes_suspicion_and_stays_alive() {
    let net = MemNetwork::new();
    // In-memory streams are not slowed down by link delays, so the
    // fallback stream probe would answer for the slow node and nobody would
    // suspect it: without it, the suspicion and refutation path is tested.
    let nodes = cluster_with(&net, N, |name| GossipConfig {
        stream_fallback_ping: false,
        ..config(name)
    })
    .await;
    converge(&nodes).await;
    let mut events = nodes[0].subscribe().await.unwrap();

    // Every link of n09 gets 600 ms each way: a round trip (1.2 s) exceeds
    // the probe timeout and even the probe interval, yet nothing is lost.
    let slow = nodes[9].addr();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|g| g.addr()).collect();
    for &a in &addrs {
        if a != slow {
            net.delay(a, slow, Duration::from_millis(600));
        }
    }
    // Long enough for many probes of n09 and several suspicion timeouts.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let stats = nodes[9].stats().await.unwrap();
    assert!(
        stats.refutations > 0,
        "n09 was never suspected: the test did not test anything"
    );
    let mut suspected = false;
    while let Ok(ev) = events.try_recv() {
        if ev.member.name == "n09" {
            assert_ne!(ev.kind, MemberEventKind::Failed, "n09 was declared failed");
            suspected |= ev.kind == MemberEventKind::Suspect;
        }
    }
    assert!(suspected || stats.refutations > 0);
    for g in &nodes {
        assert!(
            !status_of(&g.members(), "n09").is_some_and(MemberStatus::is_gone),
            "{} thinks n09 is gone",
            g.name()
        );
    }
    // Once the links are fast again everyone sees it plainly alive.
    net.heal();
    converge(&nodes).await;
    for g in &nodes {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn partition_is_seen_as_failures_and_heals() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, N).await;
    converge(&nodes).await;

    let addrs: Vec<SocketAddr> = nodes.iter().map(|g| g.addr()).collect();
    let (left, right) = addrs.split_at(N / 2);
    net.partition(left, right);
    let half = N / 2;
    let (lg, rg) = nodes.split_at(half);
    let lrefs: Vec<&Gossip> = lg.iter().collect();
    let rrefs: Vec<&Gossip> = rg.iter().collect();
    assert!(
        wait_all(&lrefs, Duration::from_secs(180), |m| count(
            m,
            MemberStatus::Dead
        ) == half)
        .await,
        "left half did not see the right half fail"
    );
    assert!(
        wait_all(&rrefs, Duration::from_secs(180), |m| count(
            m,
            MemberStatus::Dead
        ) == half)
        .await,
        "right half did not see the left half fail"
    );

    net.heal();
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert!(
        wait_all(&all, Duration::from_secs(180), |m| count(
            m,
            MemberStatus::Alive
        ) == N)
        .await,
        "halves did not merge after the partition healed"
    );
    for g in &nodes {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn graceful_leave_is_left_not_failed() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 10).await;
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert_all_alive(&all, 10, Duration::from_secs(30)).await;
    let mut events = nodes[0].subscribe().await.unwrap();

    nodes[4].leave(Duration::from_secs(5)).await.unwrap();
    assert_eq!(nodes[4].local_node().status, MemberStatus::Left);
    nodes[4].shutdown().await.unwrap();
    let others: Vec<&Gossip> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, g)| g)
        .collect();
    assert!(
        wait_all(&others, Duration::from_secs(30), |m| status_of(m, "n04")
            == Some(MemberStatus::Left))
        .await
    );
    // Stays Left (a leave is never turned into a failure).
    tokio::time::sleep(Duration::from_secs(30)).await;
    for g in &others {
        assert_eq!(status_of(&g.members(), "n04"), Some(MemberStatus::Left));
    }
    let ev = events.recv().await.unwrap();
    assert_eq!(
        (ev.kind, ev.member.name.as_str()),
        (MemberEventKind::Leave, "n04")
    );
    for g in &others {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn join_errors_and_user_events() {
    let net = MemNetwork::new();
    let a = Gossip::start(config("a".into()), net.bind()).unwrap();
    let b = Gossip::start(config("b".into()), net.bind()).unwrap();
    assert!(a.join(&[]).await.is_err());
    // Nobody at this address: join fails.
    let nobody: SocketAddr = "10.254.0.1:1".parse().unwrap();
    assert!(a.join(&[nobody]).await.is_err());
    // One of two answering is success, and counts one.
    assert_eq!(a.join(&[nobody, b.addr()]).await.unwrap(), 1);

    let mut ua = a.subscribe_user_events().await.unwrap();
    let mut ub = b.subscribe_user_events().await.unwrap();
    b.user_event("deploy", b"v2", false).await.unwrap();
    for rx in [&mut ua, &mut ub] {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.name.as_str(), e.payload.as_slice()),
            ("deploy", &b"v2"[..])
        );
    }
    a.shutdown().await.unwrap();
    // After shutdown the handle reports it.
    assert!(a.stats().await.is_err());
    b.shutdown().await.unwrap();
    let _ = net.bind().local_addr();
}

#[tokio::test(start_paused = true)]
async fn encrypted_cluster_refuses_outsiders() {
    let net = MemNetwork::new();
    let key = [42u8; 32];
    let secure = |name: &str, keys: &[[u8; 32]]| {
        let mut ring = Keyring::new(&keys[0]).unwrap();
        for k in &keys[1..] {
            ring.add_key(k).unwrap();
        }
        GossipConfig {
            keyring: Some(ring),
            ..config(name.into())
        }
    };
    let a = Gossip::start(secure("a", &[key]), net.bind()).unwrap();
    // b encrypts with a new primary but still accepts the old key.
    let b = Gossip::start(secure("b", &[[7u8; 32], key]), net.bind()).unwrap();
    let plain = Gossip::start(config("plain".into()), net.bind()).unwrap();
    let wrong = Gossip::start(secure("wrong", &[[9u8; 32]]), net.bind()).unwrap();

    // b answers with its new primary, which a does not hold: no join.
    assert!(a.join(&[b.addr()]).await.is_err());
    // Rotation works once the new key is on the ring of every node.
    let mut ring_a = Keyring::new(&key).unwrap();
    ring_a.add_key(&[7u8; 32]).unwrap();
    let a2 = Gossip::start(
        GossipConfig {
            keyring: Some(ring_a),
            ..config("a2".into())
        },
        net.bind(),
    )
    .unwrap();
    assert_eq!(a2.join(&[b.addr()]).await.unwrap(), 1);
    assert!(
        a2.wait_for(Duration::from_secs(30), |m| count(m, MemberStatus::Alive)
            == 2)
            .await
    );
    assert!(
        b.wait_for(Duration::from_secs(30), |m| count(m, MemberStatus::Alive)
            == 2)
            .await
    );

    // Outsiders without the key cannot join, and their attempts are counted.
    assert!(plain.join(&[a2.addr()]).await.is_err());
    assert!(wrong.join(&[a2.addr()]).await.is_err());
    let stats = a2.stats().await.unwrap();
    assert!(stats.decrypt_failures >= 2, "{stats:?}");
    assert_eq!(count(&a2.members(), MemberStatus::Alive), 2);
    for g in [a, b, plain, wrong, a2] {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn garbage_is_counted_and_slow_subscribers_never_block() {
    let net = MemNetwork::new();
    let tiny = |name: &str| GossipConfig {
        event_channel_capacity: 1,
        ..config(name.into())
    };
    let nodes: Vec<Gossip> = (0..6)
        .map(|i| Gossip::start(tiny(&format!("g{i}")), net.bind()).unwrap())
        .collect();
    // A subscriber that never reads, with room for one event.
    let _stuck = nodes[0].subscribe().await.unwrap();
    for g in &nodes[1..] {
        g.join(&[nodes[0].addr()]).await.unwrap();
    }
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert_all_alive(&all, 6, Duration::from_secs(30)).await;
    let stats = nodes[0].stats().await.unwrap();
    assert!(stats.events_dropped >= 4, "{stats:?}");

    // Garbage, a wrong version and a truncated compound: dropped and counted
    // (the version as a protocol refusal, the others as bad packets).
    let rogue = net.bind();
    let target = nodes[1].addr();
    let before = nodes[1].stats().await.unwrap().bad_packets;
    let refused = nodes[1].stats().await.unwrap().protocol_refused_frames;
    for junk in [
        &b"hello world"[..],
        &[b'c', b'f', 99, 1, 0],
        &[b'c', b'f', 1, 16, 0x0a, 0x7f],
    ] {
        rogue.send_to(junk, target).await.unwrap();
    }
    let target_node = &nodes[1];
    assert!(
        poll(Duration::from_secs(5), || async move {
            let s = target_node.stats().await.unwrap();
            s.bad_packets >= before + 2 && s.protocol_refused_frames > refused
        })
        .await,
        "bad packets not counted"
    );
    // Still healthy.
    assert_eq!(count(&nodes[1].members(), MemberStatus::Alive), 6);

    // Once everyone agrees, periodic push/pulls are skipped by checksum.
    let all_nodes = &nodes;
    assert!(
        poll(Duration::from_secs(60), || async move {
            let mut in_sync = 0;
            for g in all_nodes {
                in_sync += g.stats().await.unwrap().push_pulls_in_sync;
            }
            in_sync > 0
        })
        .await,
        "no push/pull was skipped by checksum"
    );
    for g in &nodes {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn snapshot_rejoins_after_restart_but_not_after_leave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let net = MemNetwork::new();
    let with_snapshot = |name: &str| GossipConfig {
        snapshot_path: Some(path.clone()),
        ..config(name.into())
    };
    let others: Vec<Gossip> = (0..3)
        .map(|i| Gossip::start(config(format!("o{i}")), net.bind()).unwrap())
        .collect();
    for g in &others[1..] {
        g.join(&[others[0].addr()]).await.unwrap();
    }
    let s = Gossip::start(with_snapshot("s"), net.bind()).unwrap();
    s.join(&[others[2].addr()]).await.unwrap();
    let refs: Vec<&Gossip> = others.iter().chain([&s]).collect();
    assert_all_alive(&refs, 4, Duration::from_secs(30)).await;
    s.shutdown().await.unwrap();

    // Restart at another address with no join: the snapshot brings it back,
    // and its new address wins over the old one.
    let s2 = Gossip::start(with_snapshot("s"), net.bind()).unwrap();
    let new_addr = s2.addr();
    let orefs: Vec<&Gossip> = others.iter().collect();
    assert!(
        wait_all(&orefs, Duration::from_secs(60), |m| {
            m.iter()
                .any(|x| x.name == "s" && x.addr == new_addr && x.status == MemberStatus::Alive)
        })
        .await,
        "restarted node did not rejoin from its snapshot"
    );
    assert!(
        s2.wait_for(Duration::from_secs(30), |m| count(m, MemberStatus::Alive)
            == 4)
            .await
    );

    // After a graceful leave the snapshot says so: no rejoin on restart.
    s2.leave(Duration::from_secs(5)).await.unwrap();
    s2.shutdown().await.unwrap();
    let s3 = Gossip::start(with_snapshot("s"), net.bind()).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s3.members().len(), 1, "{:?}", s3.members());
    for g in others.iter().chain([&s3]) {
        g.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn remove_failed_node_marks_it_left_everywhere() {
    let net = MemNetwork::new();
    let nodes = cluster(&net, 5).await;
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert_all_alive(&all, 5, Duration::from_secs(30)).await;
    nodes[4].shutdown().await.unwrap();
    let rest: Vec<&Gossip> = nodes[..4].iter().collect();
    assert!(
        wait_all(&rest, Duration::from_secs(120), |m| status_of(m, "n04")
            == Some(MemberStatus::Dead))
        .await
    );
    assert!(
        !nodes[0].remove_failed_node("n01").await.unwrap(),
        "n01 is alive"
    );
    assert!(nodes[0].remove_failed_node("n04").await.unwrap());
    assert!(
        wait_all(&rest, Duration::from_secs(30), |m| status_of(m, "n04")
            == Some(MemberStatus::Left))
        .await
    );
    for g in rest {
        g.shutdown().await.unwrap();
    }
}

/// Five nodes; every datagram to or from n04 is dropped while streams
/// still connect. Returns whether n00 ever saw n04 fail within a minute,
/// and how many fallback stream probes were answered cluster-wide.
async fn udp_blocked_node(fallback: bool) -> (bool, u64) {
    let net = MemNetwork::new();
    let cfg = |name: String| GossipConfig {
        stream_fallback_ping: fallback,
        // Only probes decide here: no anti-entropy to refute through.
        push_pull_interval: Duration::ZERO,
        reconnect_interval: Duration::ZERO,
        ..config(name)
    };
    let nodes: Vec<Gossip> = (0..5)
        .map(|i| Gossip::start(cfg(format!("n{i:02}")), net.bind()).unwrap())
        .collect();
    for g in &nodes[1..] {
        g.join(&[nodes[0].addr()]).await.unwrap();
    }
    let all: Vec<&Gossip> = nodes.iter().collect();
    assert_all_alive(&all, 5, Duration::from_secs(30)).await;
    let mut events = nodes[0].subscribe().await.unwrap();
    for g in &nodes[..4] {
        net.cut_datagrams(g.addr(), nodes[4].addr());
    }
    let failed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = events.recv().await {
            if ev.member.name == "n04" && ev.kind == MemberEventKind::Failed {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let mut answered = 0;
    for g in &nodes {
        answered += g.stats().await.unwrap().stream_probe_acks;
        g.shutdown().await.unwrap();
    }
    (failed, answered)
}

#[tokio::test(start_paused = true)]
async fn stream_fallback_probe_keeps_a_udp_blocked_node_alive() {
    let (failed, answered) = udp_blocked_node(true).await;
    assert!(
        !failed,
        "n04 was declared failed although it answers over streams"
    );
    assert!(answered > 0);
    // Control: without the fallback the same node is declared failed.
    let (failed, answered) = udp_blocked_node(false).await;
    assert!(
        failed,
        "control run: n04 should have failed without stream probes"
    );
    assert_eq!(answered, 0);
}
