//! Trust with real agent processes on 127.0.0.1: a key rotation (install,
//! use, remove) across five agents, after which an agent with only the old
//! key stays out and is counted; and a running plaintext cluster
//! switched to encryption by rolling restarts (Serf's method), each with no
//! node dropping out.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use clusterfunk::cluster::KeyOp;
use clusterfunk::gossip::{fingerprint, Gossip, GossipConfig, NetTransport};
use clusterfunk::local::{owners, unix_ms, LocalCluster};
use common::procs::{client, covers_all, five, scraped, wait_settled, PROC_WAIT};
use common::secure::assert_credentials;
use common::wait::wait_until_async;
use tonic::Code;

/// base64 of 32 bytes of 0x31 (the agents' `--encrypt`).
const K1: &str = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
const TOKEN: &str = "procs-token";

/// Gossip members per status as `node` reports them.
async fn members(lc: &LocalCluster, node: &str, token: Option<&str>) -> BTreeMap<String, u32> {
    let c = client(lc, node, token).await.expect("management client");
    c.status().await.expect("status").members_by_status
}

/// Asserts that every commit any node reported since `since` (ms) has
/// every node of `all` but `except` as an owner: nobody else dropped out.
fn nobody_else_dropped(lc: &LocalCluster, all: &[String], since: u64, except: Option<&str>) {
    for n in all {
        for c in lc.commits(n).iter().filter(|c| c.t_ms >= since) {
            let o = owners(c);
            for m in all.iter().filter(|m| Some(m.as_str()) != except) {
                assert!(o.contains(m), "{n} committed epoch {} without {m}", c.epoch);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_on_five_agents_drops_no_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--encrypt", K1, "--token", TOKEN];
    let (mut lc, all, _) = five(dir.path(), "rotate", &flags).await;
    let token = Some(TOKEN);
    let (lead, epoch) = wait_settled(&lc, &all, token, "formed", |_| true).await;
    let t0 = unix_ms();
    let (k1, k2) = ([0x31u8; 32].to_vec(), [0x42u8; 32].to_vec());
    let ops = [
        (KeyOp::Install(k2.clone()), &k1, vec![&k1, &k2]),
        (KeyOp::Use(k2.clone()), &k2, vec![&k2, &k1]),
        (KeyOp::Remove(k1.clone()), &k2, vec![&k2]),
    ];
    let c = client(&lc, "n3", token).await.expect("client");
    for (op, primary, keys) in ops {
        let answers = c.keys(&op).await.expect("keys call");
        assert_eq!(answers.len(), 5, "{}: {answers:?}", op.as_str());
        let want: Vec<String> = keys.iter().map(|k| fingerprint(k)).collect();
        for a in &answers {
            assert_eq!(a.error, None, "{} on {}", op.as_str(), a.node_id);
            assert_eq!(a.primary, fingerprint(primary), "{}", a.node_id);
            assert_eq!(a.keys, want, "{} on {}", op.as_str(), a.node_id);
        }
        for n in &all {
            let m = members(&lc, n, token).await;
            assert_eq!(m.get("alive"), Some(&5), "{n} after {}: {m:?}", op.as_str());
        }
    }
    // Raft runs on the new key's credential alone: a hand-over needs votes
    // and appends between the nodes, and moves no shard.
    c.step_down().await.expect("step down");
    let (new_lead, after) =
        wait_settled(&lc, &all, token, "a new leader", |(l, _)| *l != lead).await;
    assert_ne!(new_lead, lead);
    assert_eq!(after, epoch, "the rotation or the hand-over moved shards");
    nobody_else_dropped(&lc, &all, t0, None);
    // Raft follows the keyring: every port takes the new key's credential
    // and refuses the old one's.
    for n in &all {
        let addr = lc.endpoint(n, "raft").expect("raft addr");
        let cases: [(&[u8], Code); 2] =
            [(&k1, Code::Unauthenticated), (&k2, Code::PermissionDenied)];
        assert_credentials(&addr, &cases).await;
    }
    // An agent started with only the old key stays out, and its packets
    // are counted.
    const FAILURES: &str = "clusterfunk_gossip_decryption_failures_total";
    let mut before = 0;
    for n in &all {
        before += scraped(&lc, n, FAILURES).await.expect("metrics");
    }
    let seed = lc.endpoint("n1", "gossip").expect("seed");
    let _ = lc.start("stale", Some(&seed)).await;
    wait_until_async("the stale agent's gossip refused and counted", || async {
        let mut now = 0;
        for n in &all {
            now += scraped(&lc, n, FAILURES).await.unwrap_or(0);
        }
        now > before
    })
    .await;
    for n in &all {
        let m = members(&lc, n, token).await;
        assert_eq!(m.values().sum::<u32>(), 5, "{n} knows only the five: {m:?}");
    }
    lc.shutdown().await;
}

/// Whether a plaintext gossip node can join `seed`.
async fn plaintext_joins(seed: &str) -> bool {
    let t = NetTransport::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let g = Gossip::start(GossipConfig::local("probe"), t).expect("gossip");
    let joined = g.join(&[seed.parse().expect("seed addr")]).await.is_ok();
    let _ = g.leave(Duration::from_millis(500)).await;
    let _ = g.shutdown().await;
    joined
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_plaintext_cluster_switches_to_encryption_with_no_node_dropping_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lc, all, _) = five(dir.path(), "switch", &[]).await;
    let seed = lc.endpoint("n1", "gossip").expect("seed");
    assert!(
        plaintext_joins(&seed).await,
        "a plaintext cluster takes anyone"
    );
    // Serf's three rounds: every node gets the key but neither sends nor
    // requires it; then every node sends it; then every node requires it.
    // Each round is compatible with the one before, so the cluster keeps
    // working while it is half done.
    let rounds: [&[(&str, &str)]; 3] = [
        &[
            ("--encrypt", K1),
            ("--gossip-verify-incoming", "false"),
            ("--gossip-verify-outgoing", "false"),
        ],
        &[("--gossip-verify-outgoing", "true")],
        &[("--gossip-verify-incoming", "true")],
    ];
    for (i, flags) in rounds.iter().enumerate() {
        for n in &all {
            let t = unix_ms();
            lc.stop(n, PROC_WAIT).await.expect("graceful stop");
            lc.restart_with(n, flags).await.expect("restart");
            lc.wait_commit(&all, t, PROC_WAIT, |c| {
                owners(c).len() == 5 && covers_all(c)
            })
            .await
            .unwrap_or_else(|e| panic!("round {i}: {n} back with its shards: {e}"));
            nobody_else_dropped(&lc, &all, t, Some(n));
        }
    }
    let (_, _) = wait_settled(&lc, &all, None, "switched", |_| true).await;
    for n in &all {
        let m = members(&lc, n, None).await;
        assert_eq!(m.get("alive"), Some(&5), "{n}: {m:?}");
    }
    let seed = lc.endpoint("n1", "gossip").expect("seed");
    assert!(
        !plaintext_joins(&seed).await,
        "plaintext refused after the switch"
    );
    lc.shutdown().await;
}
