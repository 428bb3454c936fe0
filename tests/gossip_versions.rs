//! Protocol versions on the in-memory network under paused time: nodes of
//! two versions form one membership and compress only between themselves;
//! a node with no version in common is refused (by frame and by member),
//! counted, and never listed.

use std::collections::BTreeMap;
use std::time::Duration;

use clusterfunk::gossip::{
    Gossip, GossipConfig, MemNetwork, Member, MemberStatus, ProtocolRange, PROTOCOL_TAG,
};

/// Enough tags that a compound of a few `Alive`s passes the compression
/// threshold.
fn tags(name: &str) -> BTreeMap<String, String> {
    (0..6)
        .map(|i| {
            (
                format!("ep.service-{i}"),
                format!("{name}.example.internal:{}", 9000 + i),
            )
        })
        .collect()
}

fn node(net: &MemNetwork, name: &str, range: &str) -> Gossip {
    let cfg = GossipConfig {
        tags: tags(name),
        protocol: range.parse().expect("range"),
        push_pull_interval: Duration::from_secs(5),
        ..GossipConfig::local(name)
    };
    Gossip::start(cfg, net.bind()).expect("start")
}

fn alive(members: &[Member]) -> Vec<String> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .map(|m| m.name.clone())
        .collect()
}

async fn wait_alive(g: &Gossip, names: &[&str]) -> bool {
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    g.wait_for(Duration::from_secs(60), |m| alive(m) == want)
        .await
}

#[tokio::test(start_paused = true)]
async fn two_versions_form_one_membership_and_compress_only_between_new_nodes() {
    let net = MemNetwork::new();
    // Two nodes that speak only version 1 (as every build before version
    // ranges did), three of this build.
    let old = [node(&net, "a-old", "1-1/1"), node(&net, "b-old", "1-1/1")];
    let new = [
        node(&net, "c-new", "1-2/2"),
        node(&net, "d-new", "1-2/2"),
        node(&net, "e-new", "1-2/2"),
    ];
    let seed = old[0].addr();
    for g in old[1..].iter().chain(&new) {
        assert_eq!(g.join(&[seed]).await.expect("join"), 1);
    }
    let all = ["a-old", "b-old", "c-new", "d-new", "e-new"];
    for g in old.iter().chain(&new) {
        assert!(wait_alive(g, &all).await, "{} sees all five", g.name());
    }
    // Gossip goes on for a while: probes, gossip rounds, push/pulls.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for g in old.iter().chain(&new) {
        assert_eq!(alive(&g.members()), all, "{} still sees all five", g.name());
        let s = g.stats().await.expect("stats");
        assert_eq!(s.protocol_refused_frames, 0, "{}: {s:?}", g.name());
        assert_eq!(s.protocol_refused_members, 0, "{}", g.name());
        assert_eq!(s.bad_packets, 0, "{}", g.name());
    }
    // Every member advertises its range.
    for m in new[0].members() {
        let r = ProtocolRange::from_tags(&m.tags).expect("readable");
        let want = if m.name.ends_with("old") { 1 } else { 2 };
        assert_eq!((r.max, m.tags.contains_key(PROTOCOL_TAG)), (want, true));
    }
    let mut compressed = 0;
    for g in &new {
        compressed += g.stats().await.expect("stats").packets_compressed;
    }
    for g in &old {
        assert_eq!(g.stats().await.expect("stats").packets_compressed, 0);
    }
    println!("datagrams compressed between the three version-2 nodes: {compressed}");
    assert!(compressed > 0, "version-2 peers compress large datagrams");
    for g in old.iter().chain(&new) {
        g.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_with_no_common_version_is_refused_and_counted() {
    let net = MemNetwork::new();
    let old = node(&net, "a-old", "1-1/1");
    let new = [node(&net, "b-new", "1-2/2"), node(&net, "c-new", "1-2/2")];
    for g in &new {
        g.join(&[old.addr()]).await.expect("join");
    }
    let three = ["a-old", "b-new", "c-new"];
    assert!(wait_alive(&old, &three).await);

    // Disjoint ranges: every frame is refused by its header; the join fails
    // and nobody lists the node.
    let far = node(&net, "z-far", "3-3/3");
    assert!(far.join(&[new[0].addr()]).await.is_err(), "join must fail");
    // A future build that dropped version 1: the new nodes admit it, the
    // old one refuses it as a member (it is relayed to it by the others).
    let future = node(&net, "y-future", "2-3/3");
    future
        .join(&[new[0].addr()])
        .await
        .expect("join a new node");
    for g in &new {
        assert!(wait_alive(g, &["a-old", "b-new", "c-new", "y-future"]).await);
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let s = new[0].stats().await.expect("stats");
    println!(
        "b-new refused {} frames of z-far",
        s.protocol_refused_frames
    );
    assert!(s.protocol_refused_frames > 0);
    let s = old.stats().await.expect("stats");
    assert!(
        s.protocol_refused_members > 0,
        "a-old refused y-future: {s:?}"
    );
    assert_eq!(alive(&old.members()), three, "a-old never lists y-future");
    for g in [&old, &new[0], &new[1], &future] {
        assert!(!g.members().iter().any(|m| m.name == "z-far"));
    }
    for g in [old, far, future].into_iter().chain(new) {
        g.shutdown().await.expect("shutdown");
    }
}
