//! The hand-off hooks on three in-process nodes over loopback: a releasing
//! node's acknowledgement (and so the commit) waits for its service, the
//! shards in hand-off are served by nobody meanwhile, an acquired shard is
//! not served until the service marks it ready, a release past its
//! deadline is acknowledged anyway and counted, and a deadline that is not
//! below `ack_timeout` is refused.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterfunk::cluster::{
    handoff, ClusterError, Committed, HandoffEvent, HandoffSettings, Proposed, Seams,
};
use clusterfunk::{Agent, Config};
use common::wait::wait_until;
use tokio::sync::mpsc;

const SHARDS: u32 = 200;

fn config(name: &str) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = "h".into();
    c.shard_count = SHARDS;
    c.management_addr = None;
    c.metrics_addr = None;
    c.ack_timeout = Duration::from_secs(2);
    c
}

fn settings() -> HandoffSettings {
    let mut s = HandoffSettings::new("kv");
    s.release_deadline = Duration::from_millis(800);
    s
}

/// What a node's service saw; proposals and commits are kept, not
/// answered, unless `auto` says to.
#[derive(Default)]
struct Seen {
    proposed: Vec<Proposed>,
    committed: Vec<Committed>,
    /// Mark acquired shards ready and releases done at once.
    auto: bool,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(mut rx: mpsc::Receiver<HandoffEvent>, seen: Shared) {
    while let Some(ev) = rx.recv().await {
        let mut s = lock(&seen);
        match ev {
            HandoffEvent::Proposed(p) if s.auto => p.released(),
            HandoffEvent::Committed(c) if s.auto => c.acquire.iter().for_each(|m| c.ready(m.shard)),
            HandoffEvent::Proposed(p) => s.proposed.push(p),
            HandoffEvent::Committed(c) => s.committed.push(c),
        }
    }
}

async fn start3() -> (Vec<Agent>, Vec<Shared>) {
    let (mut nodes, mut seen) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let mut c = config(&format!("n{i}"));
        if let Some(first) = nodes.first() {
            let first: &Agent = first;
            c.join = vec![first.local_endpoints()["gossip"].to_string()];
        }
        let (reg, rx) = handoff(settings());
        let s: Shared = Arc::new(Mutex::new(Seen {
            auto: true,
            ..Seen::default()
        }));
        tokio::spawn(serve(rx, s.clone()));
        let node = Agent::start_with_handoff(c, Seams::default(), reg)
            .await
            .expect("start");
        nodes.push(node);
        seen.push(s);
    }
    (nodes, seen)
}

fn epoch(n: &Agent) -> u64 {
    n.epoch().unwrap_or(0)
}

async fn wait_full_map(nodes: &[Agent], owners: usize) -> u64 {
    wait_until("a common map over every owner, all shards served", || {
        let e = epoch(&nodes[0]);
        nodes.iter().all(|n| {
            let m = n.shard_map();
            let m = m.borrow();
            m.as_ref().is_some_and(|m| {
                m.epoch() == e
                    && m.unassigned() == 0
                    && m.counts().values().filter(|c| **c > 0).count() == owners
            })
        }) && (0..SHARDS).all(|s| nodes.iter().filter(|n| n.is_serving(s)).count() == 1)
    })
    .await;
    epoch(&nodes[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_wait_for_release_and_acquired_shards_wait_for_ready() {
    let (nodes, seen) = start3().await;
    let e1 = wait_full_map(&nodes, 3).await;
    let leader = nodes[0].leader().expect("leader");
    let victim = nodes
        .iter()
        .position(|n| n.node_id() != leader)
        .expect("follower");
    for s in &seen {
        lock(s).auto = false;
    }
    nodes[0]
        .set_weight(nodes[victim].node_id(), 0)
        .await
        .expect("drain");
    wait_until("the drained node's release event", || {
        !lock(&seen[victim]).proposed.is_empty()
    })
    .await;
    let released: Vec<u32> = {
        let s = lock(&seen[victim]);
        s.proposed[0].release.iter().map(|m| m.shard).collect()
    };
    assert!(!released.is_empty(), "the drained node releases shards");
    // The service takes its time: nobody serves the released shards and
    // the map does not commit meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in &nodes {
        assert_eq!(epoch(n), e1, "committed before the release finished");
        assert!(released.iter().all(|s| !n.is_serving(*s)));
    }
    // Release it (and any proposal that replaced it meanwhile); answer
    // later ones at once.
    {
        let mut s = lock(&seen[victim]);
        s.auto = true;
        s.proposed.drain(..).for_each(Proposed::released);
    }
    wait_until("the drain committed", || {
        nodes.iter().all(|n| epoch(n) > e1)
    })
    .await;
    // New owners got their shards with the previous owner's id, and do not
    // serve them before they say ready.
    let gainers: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    for &i in &gainers {
        wait_until("a committed event", || !lock(&seen[i]).committed.is_empty()).await;
        let s = lock(&seen[i]);
        let c = &s.committed[0];
        assert!(c
            .acquire
            .iter()
            .all(|m| m.from.as_deref() == Some(nodes[victim].node_id())));
        assert!(c.acquire.iter().all(|m| !nodes[i].is_serving(m.shard)));
    }
    for &i in &gainers {
        let s = lock(&seen[i]);
        let c = &s.committed[0];
        for m in &c.acquire {
            c.ready(m.shard);
        }
    }
    wait_full_map(&nodes, 2).await;
    let stats = nodes[victim].stats().await.expect("stats");
    assert_eq!(stats.handoff_release_timeouts, 0);
    for s in &seen {
        lock(s).auto = true;
    }
    for n in &nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_past_its_deadline_is_acknowledged_and_counted() {
    let (nodes, seen) = start3().await;
    let e1 = wait_full_map(&nodes, 3).await;
    let leader = nodes[0].leader().expect("leader");
    let victim = nodes
        .iter()
        .position(|n| n.node_id() != leader)
        .expect("follower");
    lock(&seen[victim]).auto = false;
    nodes[0]
        .set_weight(nodes[victim].node_id(), 0)
        .await
        .expect("drain");
    // The service never answers: the deadline acknowledges for it.
    wait_until("the drain committed", || {
        nodes.iter().all(|n| epoch(n) > e1)
    })
    .await;
    assert!(!lock(&seen[victim]).proposed.is_empty());
    let stats = nodes[victim].stats().await.expect("stats");
    assert_eq!(stats.handoff_release_timeouts, 1);
    wait_full_map(&nodes, 2).await;
    for s in &seen {
        lock(s).auto = true;
    }
    for n in &nodes {
        n.stop().await;
    }
}

#[tokio::test]
async fn a_release_deadline_not_below_ack_timeout_is_refused() {
    let mut c = config("x");
    c.ack_timeout = Duration::from_millis(500);
    let mut s = HandoffSettings::new("kv");
    s.release_deadline = Duration::from_millis(500);
    let (reg, _rx) = handoff(s);
    let err = Agent::start_with_handoff(c, Seams::default(), reg)
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        clusterfunk::agent::AgentError::Cluster(ClusterError::ReleaseDeadline { .. })
    ));
}
