//! Serf's event coalescing on the in-memory network, under paused tokio
//! time: a member whose state flaps 20 times in 2 s reaches a coalescing
//! subscriber as one event per quiet period (a plain one sees all 20); a
//! join and a leave within one window arrive as the leave alone; user
//! events sent with `coalesce` arrive as the newest of each name, others
//! all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use clusterfunk::gossip::{Gossip, GossipConfig, MemNetwork, MemberEvent, MemberEventKind};
use tokio::sync::mpsc;

fn config(name: &str, coalesce: bool) -> GossipConfig {
    let mut c = GossipConfig::local(name);
    if coalesce {
        c.coalesce_period = Duration::from_secs(10);
        c.quiescent_period = Duration::from_millis(500);
        c.user_coalesce_period = Duration::from_secs(10);
        c.user_quiescent_period = Duration::from_millis(500);
    }
    c
}

/// Every event that arrives within `d` (virtual time).
async fn drain<T>(rx: &mut mpsc::Receiver<T>, d: Duration) -> Vec<T> {
    let end = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout_at(end, rx.recv()).await {
        out.push(e);
    }
    out
}

fn of(events: &[MemberEvent], name: &str) -> Vec<(MemberEventKind, Option<String>)> {
    events
        .iter()
        .filter(|e| e.member.name == name)
        .map(|e| (e.kind, e.member.tags.get("v").cloned()))
        .collect()
}

/// Changes `g`'s tag `v` 20 times, 100 ms apart (2 s in all).
async fn flap(g: &Gossip, round: usize) {
    for i in 0..20 {
        let tags = BTreeMap::from([("v".to_string(), format!("{round}.{i}"))]);
        g.set_tags(tags).await.expect("tags");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_flapping_member_yields_one_event_per_quiet_period() {
    let net = MemNetwork::new();
    let quiet = Gossip::start(config("coalescing", true), net.bind()).expect("start");
    let plain = Gossip::start(config("plain", false), net.bind()).expect("start");
    let flapper = Gossip::start(config("flapper", false), net.bind()).expect("start");
    for g in [&plain, &flapper] {
        g.join(&[quiet.addr()]).await.expect("join");
    }
    assert!(
        quiet
            .wait_for(Duration::from_secs(10), |m| m.len() == 3)
            .await
    );
    assert!(
        plain
            .wait_for(Duration::from_secs(10), |m| m.len() == 3)
            .await
    );
    // Let the join events of the start go by.
    let mut q = quiet.subscribe().await.expect("subscribe");
    let mut p = plain.subscribe().await.expect("subscribe");
    drain(&mut q, Duration::from_secs(2)).await;
    drain(&mut p, Duration::from_secs(2)).await;

    for round in 0..2 {
        flap(&flapper, round).await;
        let got_q = drain(&mut q, Duration::from_secs(3)).await;
        let got_p = drain(&mut p, Duration::from_secs(3)).await;
        assert_eq!(
            of(&got_q, "flapper"),
            [(MemberEventKind::Updated, Some(format!("{round}.19")))],
            "round {round}: one coalesced event with the latest state"
        );
        assert_eq!(
            of(&got_p, "flapper").len(),
            20,
            "round {round}: without coalescing every change is an event"
        );
    }
    let stats = quiet.stats().await.expect("stats");
    assert!(stats.events_coalesced >= 38, "{stats:?}");
    assert_eq!(plain.stats().await.expect("stats").events_coalesced, 0);
}

#[tokio::test(start_paused = true)]
async fn a_join_then_leave_within_a_window_is_only_the_leave() {
    let net = MemNetwork::new();
    let quiet = Gossip::start(config("coalescing", true), net.bind()).expect("start");
    let mut q = quiet.subscribe().await.expect("subscribe");
    let brief = Gossip::start(config("brief", false), net.bind()).expect("start");
    brief.join(&[quiet.addr()]).await.expect("join");
    brief
        .leave(Duration::from_secs(5))
        .await
        .expect("leave spread");
    let got = drain(&mut q, Duration::from_secs(3)).await;
    assert_eq!(of(&got, "brief"), [(MemberEventKind::Leave, None)]);
}

#[tokio::test(start_paused = true)]
async fn coalesced_user_events_keep_only_the_newest_of_a_name() {
    let net = MemNetwork::new();
    let quiet = Gossip::start(config("coalescing", true), net.bind()).expect("start");
    let sender = Gossip::start(config("sender", false), net.bind()).expect("start");
    sender.join(&[quiet.addr()]).await.expect("join");
    let mut q = quiet.subscribe_user_events().await.expect("subscribe");
    let mut s = sender.subscribe_user_events().await.expect("subscribe");
    for i in 0..10 {
        let payload = format!("v{i}");
        sender
            .user_event("deploy", payload.as_bytes(), true)
            .await
            .expect("send");
        sender
            .user_event("audit", payload.as_bytes(), false)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = drain(&mut q, Duration::from_secs(3)).await;
    let deploy: Vec<_> = got.iter().filter(|e| e.name == "deploy").collect();
    assert_eq!(deploy.len(), 1, "{got:?}");
    assert_eq!(deploy[0].payload, b"v9");
    assert_eq!(got.iter().filter(|e| e.name == "audit").count(), 10);
    // The sender does not coalesce: it delivered all of its own.
    let own = drain(&mut s, Duration::from_secs(1)).await;
    assert_eq!(own.iter().filter(|e| e.name == "deploy").count(), 10);
}
