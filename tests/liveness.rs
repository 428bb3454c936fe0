//! Liveness checker and responder over real UDP sockets on 127.0.0.1, and
//! over the in-memory network (the one gossip uses) with paused time: exact
//! detection time, cut links, loss and delay.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use clusterfunk::gossip::MemNetwork;
use clusterfunk::liveness::wire::{Packet, PacketKind, PACKET_LEN};
use clusterfunk::liveness::{
    Checker, LivenessConfig, LivenessEvent, LivenessSnapshot, Responder, TargetStatus,
};
use common::wait::wait_until_async;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Fast but tolerant of a loaded test machine: a late reply needs 40 ms.
fn test_config() -> LivenessConfig {
    LivenessConfig {
        interval: Duration::from_millis(50),
        retries: 3,
        deadline_floor: Duration::from_millis(40),
        ..LivenessConfig::default()
    }
}

async fn next_event(rx: &mut mpsc::Receiver<LivenessEvent>) -> LivenessEvent {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event channel closed"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

async fn wait_state(
    rx: &mut watch::Receiver<LivenessSnapshot>,
    what: &str,
    pred: impl Fn(&LivenessSnapshot) -> bool,
) {
    let r = timeout(WAIT, rx.wait_for(|s| pred(s))).await;
    assert!(matches!(r, Ok(Ok(_))), "state never reached: {what}");
}

/// An address where nothing listens (bound, read back, closed).
async fn dead_addr() -> SocketAddr {
    let s = UdpSocket::bind(local()).await.expect("bind");
    s.local_addr().expect("addr")
}

#[tokio::test]
async fn stopped_responder_is_dead_and_restarted_one_alive() {
    let responder = Responder::bind(local()).await.expect("bind responder");
    let addr = responder.local_addr();
    let (checker, mut events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    let mut state = checker.watch();
    assert!(checker.add("n1", addr).await.expect("add"));
    wait_state(&mut state, "n1 alive", |s| {
        s.status("n1") == Some(TargetStatus::Alive)
    })
    .await;
    let info = checker.targets().await.expect("targets");
    assert!(info[0].last_rtt.is_some() && info[0].avg_rtt.is_some());

    responder.shutdown().await;
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("n1".into())
    );
    assert!(checker.watch().borrow().is_dead("n1"));

    // Same port again: its replies simply resume.
    let again = Responder::bind(addr).await.expect("rebind same port");
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Alive("n1".into())
    );
    assert_eq!(
        checker.watch().borrow().status("n1"),
        Some(TargetStatus::Alive)
    );
    assert!(again.stats().echoed >= 1);
    let stats = checker.stats().await.expect("stats");
    // Dead after two refused probes (the closed port reports them on
    // Linux) or three missed ones.
    let by_refusals = stats.refused_dead == 1 && stats.misses >= 2;
    assert!(
        stats.replies >= 2 && (by_refusals || stats.misses >= 3),
        "{stats:?}"
    );
    checker.shutdown().await;
    again.shutdown().await;
}

#[tokio::test]
async fn never_answering_target_is_dead_and_healthy_one_is_silent() {
    let responder = Responder::bind(local()).await.expect("bind responder");
    let (checker, mut events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    checker
        .add("up", responder.local_addr())
        .await
        .expect("add");
    checker.add("never", dead_addr().await).await.expect("add");
    // The only event is Dead(never): no Alive for the new healthy target.
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("never".into())
    );
    let mut state = checker.watch();
    wait_state(&mut state, "up alive", |s| {
        s.status("up") == Some(TargetStatus::Alive)
    })
    .await;
    assert!(events.try_recv().is_err(), "no other event");
    assert_eq!(
        state.borrow().dead().collect::<Vec<_>>(),
        vec!["never"],
        "watch shows the dead set"
    );
    checker.shutdown().await;
    responder.shutdown().await;
}

/// A closed port on a live host (127.0.0.1) answers probes with ICMP port
/// unreachable; the checker reads the reports from its error queue and
/// reports the target dead from them, long before three 1-second deadlines
/// could pass. Linux only (IP_RECVERR).
#[tokio::test]
async fn closed_port_is_dead_from_port_unreachable_reports() {
    if !cfg!(target_os = "linux") {
        common::skip::skipped(
            "closed_port_is_dead_from_port_unreachable_reports",
            "IP_RECVERR is Linux only",
        );
        return;
    }
    let config = LivenessConfig {
        interval: Duration::from_secs(1),
        deadline_floor: Duration::from_secs(1),
        ..LivenessConfig::default()
    };
    let (checker, mut events) = Checker::bind(config, local()).await.expect("checker");
    checker.add("gone", dead_addr().await).await.expect("add");
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("gone".into())
    );
    let st = checker.stats().await.expect("stats");
    assert!(
        st.refusals >= 2 && st.refused_dead == 1,
        "dead after two reports (the first probe and its re-probe), not by deadlines: {st:?}"
    );
    checker.shutdown().await;
}

#[tokio::test]
async fn responder_echoes_probes_and_counts_garbage() {
    let responder = Responder::bind(local()).await.expect("bind responder");
    let client = UdpSocket::bind(local()).await.expect("bind client");
    let to = responder.local_addr();
    let probe = Packet {
        kind: PacketKind::Probe,
        nonce: 11,
        seq: 12,
        timestamp_micros: 13,
    };
    client.send_to(&probe.to_bytes(), to).await.expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .expect("reply in time")
        .expect("recv");
    assert_eq!(from, to);
    assert_eq!(Packet::decode(&buf[..n]), Ok(probe.into_reply()));

    let good = probe.to_bytes();
    let reply = probe.into_reply().to_bytes();
    let oversized = [0u8; 100];
    let garbage: [&[u8]; 5] = [b"garbage", &good[..20], &reply, &oversized, &[]];
    for g in garbage {
        client.send_to(g, to).await.expect("send");
    }
    wait_until_async("responder counted 5 bad", || async {
        responder.stats().bad == 5
    })
    .await;
    // Still answering afterwards, and only the valid probe was echoed.
    client.send_to(&good, to).await.expect("send");
    let (n, _) = timeout(WAIT, client.recv_from(&mut buf))
        .await
        .expect("reply in time")
        .expect("recv");
    assert_eq!(n, PACKET_LEN);
    assert_eq!(responder.stats().echoed, 2);
    responder.shutdown().await;
}

#[tokio::test]
async fn checker_counts_garbage_and_strangers() {
    let (checker, _events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    let to = checker.local_addr();
    // A fake target that captures one real probe.
    let fake = UdpSocket::bind(local()).await.expect("bind");
    checker
        .add("fake", fake.local_addr().expect("addr"))
        .await
        .expect("add");
    let mut buf = [0u8; 64];
    let (n, _) = timeout(WAIT, fake.recv_from(&mut buf))
        .await
        .expect("probe in time")
        .expect("recv");
    let probe = Packet::decode(&buf[..n]).expect("probe decodes");
    assert_eq!(probe.kind, PacketKind::Probe);
    let reply = probe.into_reply().to_bytes();

    let stranger = UdpSocket::bind(local()).await.expect("bind");
    for g in [&b"garbage"[..], &reply[..9], &probe.to_bytes()[..]] {
        stranger.send_to(g, to).await.expect("send");
    }
    // A well-formed reply, but from an address that is no target.
    stranger.send_to(&reply, to).await.expect("send");
    // A reply with another checker's nonce.
    let mut foreign = probe.into_reply();
    foreign.nonce ^= 1;
    fake.send_to(&foreign.to_bytes(), to).await.expect("send");
    wait_until_async("checker counted it all", || async {
        let s = checker.stats().await.expect("stats");
        s.bad_packets == 3 && s.unknown_source == 1 && s.foreign_nonce == 1
    })
    .await;
    assert_eq!(checker.stats().await.expect("stats").replies, 0);
    checker.shutdown().await;
}

#[tokio::test]
async fn removed_target_emits_no_events() {
    let gone = Responder::bind(local()).await.expect("bind");
    let kept = Responder::bind(local()).await.expect("bind");
    let (checker, mut events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    checker.add("gone", gone.local_addr()).await.expect("add");
    checker.add("kept", kept.local_addr()).await.expect("add");
    let mut state = checker.watch();
    wait_state(&mut state, "both alive", |s| s.alive().count() == 2).await;

    assert!(checker.remove("gone").await.expect("remove"));
    assert!(!checker.remove("gone").await.expect("remove again"));
    assert_eq!(state.borrow().status("gone"), None);
    // Stop "gone" first, "kept" second: if "gone" still produced events, its
    // Dead would come before kept's.
    gone.shutdown().await;
    kept.shutdown().await;
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("kept".into())
    );
    assert_eq!(checker.stats().await.expect("stats").targets, 1);
    checker.shutdown().await;
}

#[tokio::test]
async fn clear_removes_all_targets() {
    let mut responders = Vec::new();
    for _ in 0..3 {
        responders.push(Responder::bind(local()).await.expect("bind"));
    }
    let (checker, mut events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    for (i, r) in responders.iter().enumerate() {
        checker
            .add(format!("n{i}"), r.local_addr())
            .await
            .expect("add");
    }
    let mut state = checker.watch();
    wait_state(&mut state, "all alive", |s| s.alive().count() == 3).await;
    assert_eq!(checker.clear().await.expect("clear"), 3);
    assert!(state.borrow().is_empty());
    assert!(checker.targets().await.expect("targets").is_empty());
    for r in responders {
        r.shutdown().await;
    }
    // A sentinel that never answers: its Dead is the first event, so none of
    // the cleared targets reported anything in the same time.
    checker
        .add("sentinel", dead_addr().await)
        .await
        .expect("add");
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("sentinel".into())
    );
    checker.shutdown().await;
}

#[tokio::test]
async fn full_event_channel_drops_and_counts_but_watch_is_exact() {
    let config = LivenessConfig {
        event_capacity: 1,
        ..test_config()
    };
    let (checker, mut events) = Checker::bind(config, local()).await.expect("checker");
    for i in 0..4 {
        checker
            .add(format!("d{i}"), dead_addr().await)
            .await
            .expect("add");
    }
    let mut state = checker.watch();
    wait_state(&mut state, "all dead", |s| s.dead().count() == 4).await;
    let stats = checker.stats().await.expect("stats");
    assert_eq!(stats.events_dropped, 3, "{stats:?}");
    assert!(matches!(
        next_event(&mut events).await,
        LivenessEvent::Dead(_)
    ));
    checker.shutdown().await;
}

#[tokio::test]
async fn handles_fail_after_shutdown() {
    let (checker, mut events) = Checker::bind(test_config(), local())
        .await
        .expect("checker");
    let handle = checker.handle();
    checker.shutdown().await;
    assert!(handle.add("x", dead_addr().await).await.is_err());
    assert!(handle.stats().await.is_err());
    assert!(events.recv().await.is_none(), "event channel closed");
}

// ---- in-memory network (the one gossip uses), paused time ----

#[tokio::test(start_paused = true)]
async fn detection_time_is_exact_with_paused_time() {
    let net = MemNetwork::new();
    // Rounds every 100 ms (the figures below assume it), three retries.
    let config = LivenessConfig {
        interval: Duration::from_millis(100),
        retries: 3,
        ..LivenessConfig::default()
    };
    let responder = Responder::spawn(net.bind()).expect("responder");
    let target = responder.local_addr();
    let start = Instant::now();
    let (checker, mut events) = Checker::spawn(config.clone(), net.bind()).expect("checker");
    checker.add("n", target).await.expect("add");
    let mut state = checker.watch();
    wait_state(&mut state, "alive", |s| {
        s.status("n") == Some(TargetStatus::Alive)
    })
    .await;

    // Cut between the rounds at 200 and 300 ms: the probe at 300 ms is the
    // first unanswered, so Dead comes (retries-1) × interval + floor later.
    tokio::time::sleep_until(start + Duration::from_millis(250)).await;
    net.isolate(target);
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("n".into())
    );
    let took = Instant::now() - start;
    let expect = Duration::from_millis(300) + config.detection_bound(config.deadline_floor);
    assert!(
        took >= expect && took <= expect + Duration::from_millis(2),
        "dead at {took:?}, expected {expect:?}"
    );

    // Restored: Alive at the next round's reply.
    net.rejoin(target);
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Alive("n".into())
    );
    let took = Instant::now() - start;
    assert!(
        took >= Duration::from_millis(600) && took <= Duration::from_millis(602),
        "alive at {took:?}"
    );
    assert!(responder.stats().echoed > 0);
    checker.shutdown().await;
    responder.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cut_link_kills_only_that_target_and_total_loss_too() {
    let net = MemNetwork::new();
    let a = Responder::spawn(net.bind()).expect("responder a");
    let b = Responder::spawn(net.bind()).expect("responder b");
    let (checker, mut events) =
        Checker::spawn(LivenessConfig::default(), net.bind()).expect("checker");
    let from = checker.local_addr();
    checker.add("a", a.local_addr()).await.expect("add a");
    checker.add("b", b.local_addr()).await.expect("add b");
    let mut state = checker.watch();
    wait_state(&mut state, "both alive", |s| s.alive().count() == 2).await;

    // A cut link between the checker and `a` only: `a` dies, `b` does not.
    net.cut(from, a.local_addr());
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("a".into())
    );
    assert_eq!(
        checker.watch().borrow().status("b"),
        Some(TargetStatus::Alive)
    );
    net.restore(from, a.local_addr());
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Alive("a".into())
    );

    // Every datagram to `b` lost: the same as a cut.
    net.drop_rate(from, b.local_addr(), 1.0);
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("b".into())
    );
    net.heal();
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Alive("b".into())
    );
    assert!(net.stats().dropped_by_link > 0);
    checker.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn delay_beyond_the_deadline_counts_as_misses() {
    let net = MemNetwork::new();
    let config = LivenessConfig::default();
    let r = Responder::spawn(net.bind()).expect("responder");
    let (checker, mut events) = Checker::spawn(config.clone(), net.bind()).expect("checker");
    checker.add("n", r.local_addr()).await.expect("add");
    let mut state = checker.watch();
    wait_state(&mut state, "alive", |s| {
        s.status("n") == Some(TargetStatus::Alive)
    })
    .await;

    // Each way takes a whole interval: no reply is in time any more.
    net.delay(checker.local_addr(), r.local_addr(), config.interval);
    assert_eq!(
        next_event(&mut events).await,
        LivenessEvent::Dead("n".into())
    );
    assert!(checker.stats().await.expect("stats").misses >= u64::from(config.retries));
    checker.shutdown().await;
    r.shutdown().await;
}
