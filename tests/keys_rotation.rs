//! Key rotation across a running cluster, in-process over loopback: five
//! encrypted nodes install a new key, make it primary and remove the old
//! one through one node's management API (the Serf key manager flow). No
//! node drops out of any member list, the map does not change, Raft keeps
//! accepting every call, and afterwards a node with only the old key
//! cannot join.

mod common;

use std::collections::BTreeSet;

use clusterfunk::cluster::{ClusterEvent, KeyOp};
use clusterfunk::config::StorageConfig;
use clusterfunk::gossip::fingerprint;
use clusterfunk::management::{Client, NodeKeys};
use clusterfunk::{Agent, Cluster, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::secure::{assert_credentials, counter, keyed};
use common::wait::wait_until;
use tonic::Code;

const OLD: [u8; 32] = [0x31; 32];
const NEW: [u8; 32] = [0x42; 32];
const TOKEN: &str = "keys-test-token";

/// An encrypted node with a management token.
fn config(name: &str, key: &[u8]) -> Config {
    let mut c = keyed(name, "keys", Some(key));
    c.auth.token = Some(TOKEN.into());
    c
}

fn names(c: &Cluster) -> BTreeSet<String> {
    c.cluster_members().into_iter().map(|m| m.name).collect()
}

/// Asserts that `op` succeeded on all five nodes, each left with `keys`.
fn all_ok(op: &str, answers: &[NodeKeys], primary: &[u8], keys: &[&[u8]]) {
    assert_eq!(answers.len(), 5, "{op}: {answers:?}");
    let want: Vec<String> = keys.iter().map(|k| fingerprint(k)).collect();
    for a in answers {
        assert_eq!(a.error, None, "{op} on {}", a.node_id);
        assert_eq!(a.primary, fingerprint(primary), "{op} on {}", a.node_id);
        assert_eq!(a.keys, want, "{op} on {}", a.node_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_key_replaces_the_old_one_with_no_node_dropping_out() {
    let nodes = start_agents(5, Default::default(), |i| config(&format!("k{i}"), &OLD)).await;
    let everyone: BTreeSet<String> = (0..5).map(|i| format!("k{i}")).collect();
    wait_until("five encrypted nodes operational with one map", || {
        nodes.iter().all(|n| {
            n.state() == NodeState::Operational
                && n.epoch().is_some()
                && n.epoch() == nodes[0].epoch()
                && names(n) == everyone
                && n.raft_status()
                    .is_some_and(|r| r.voters.len() + r.learners.len() == 5)
        })
    })
    .await;
    let map = nodes[0]
        .shard_map()
        .borrow()
        .clone()
        .expect("a committed map");
    let mut events: Vec<_> = nodes.iter().map(|n| n.events()).collect();

    let addr = nodes[2].local_endpoints()["management"].to_string();
    let client = Client::connect(&addr, Some(TOKEN), None)
        .await
        .expect("connect");
    let listed = client.keys(&KeyOp::List).await.expect("list");
    all_ok("list", &listed, &OLD, &[&OLD]);

    let installed = client
        .keys(&KeyOp::Install(NEW.to_vec()))
        .await
        .expect("install");
    all_ok("install", &installed, &OLD, &[&OLD, &NEW]);
    // The primary cannot be removed, on any node.
    let refused = client
        .keys(&KeyOp::Remove(OLD.to_vec()))
        .await
        .expect("remove primary");
    assert!(
        refused
            .iter()
            .all(|a| a.error.as_deref().is_some_and(|e| e.contains("primary"))),
        "{refused:?}"
    );
    let used = client.keys(&KeyOp::Use(NEW.to_vec())).await.expect("use");
    all_ok("use", &used, &NEW, &[&NEW, &OLD]);
    let removed = client
        .keys(&KeyOp::Remove(OLD.to_vec()))
        .await
        .expect("remove");
    all_ok("remove", &removed, &NEW, &[&NEW]);

    // Raft runs on the new credential: a leader hand-over needs votes and
    // appends between every pair, and none is refused.
    let before = nodes[0].leader().expect("a leader");
    client.step_down().await.expect("step down");
    wait_until("a new leader known to all", || {
        nodes
            .iter()
            .all(|n| n.leader().is_some_and(|l| l != before) && n.leader() == nodes[0].leader())
    })
    .await;
    for n in &nodes {
        assert_eq!(
            counter(n, "clusterfunk_raft_unauthenticated_calls_total"),
            0,
            "{} refused a Raft call",
            n.node_id()
        );
    }

    // Every node's Raft port now takes the new key's credential and
    // refuses the old one's (an unknown caller is refused by membership,
    // after authentication).
    for n in &nodes {
        let addr = n.local_endpoints()["raft"].to_string();
        let cases: [(&[u8], Code); 2] = [
            (&OLD, Code::Unauthenticated),
            (&NEW, Code::PermissionDenied),
        ];
        assert_credentials(&addr, &cases).await;
    }

    // A node with only the old key cannot join.
    let seed = nodes[0].local_endpoints()["gossip"].to_string();
    let failures = |ns: &[Agent]| {
        ns.iter()
            .map(|n| counter(n, "clusterfunk_gossip_decryption_failures_total"))
            .sum::<u64>()
    };
    let failed_before = failures(&nodes);
    let mut stale = config("stale", &OLD);
    stale.join = vec![seed];
    let outsider = Agent::start(stale).await.ok();
    wait_until("the stale node's packets refused", || {
        failures(&nodes) > failed_before
    })
    .await;

    // Nothing moved: every node still sees all five and only them, the map
    // is the one from before, and no member failed or left on the way.
    for n in &nodes {
        assert_eq!(names(n), everyone, "{} members", n.node_id());
        assert_eq!(n.state(), NodeState::Operational);
        assert_eq!(
            n.shard_map().borrow().as_deref(),
            Some(&*map),
            "{} map",
            n.node_id()
        );
    }
    for (n, rx) in nodes.iter().zip(events.iter_mut()) {
        while let Ok(ev) = rx.try_recv() {
            assert!(
                !matches!(
                    ev,
                    ClusterEvent::MemberFailed(_) | ClusterEvent::MemberLeft(_)
                ),
                "{}: {ev:?}",
                n.node_id()
            );
        }
    }
    if let Some(o) = outsider {
        assert!(!names(&o).contains("k0"));
        o.stop().await;
    }
    stop_all(&nodes).await;
}

/// A node restarted after a rotation comes back with the keys it had, not
/// the one it was first started with (the keyring file in its data dir),
/// and rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_after_a_rotation_keeps_the_new_key() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let with_dir = |i: usize| {
        let mut c = config(&format!("r{i}"), &OLD);
        c.storage = StorageConfig::DataDir(dirs[i].path().to_path_buf());
        c
    };
    let nodes = start_agents(3, Default::default(), with_dir).await;
    let everyone: BTreeSet<String> = (0..3).map(|i| format!("r{i}")).collect();
    let all_up = |ns: &[&Agent]| {
        ns.iter().all(|n| {
            n.state() == NodeState::Operational
                && names(n) == everyone
                && n.cluster_members()
                    .iter()
                    .all(|m| m.status == clusterfunk::gossip::MemberStatus::Alive)
        })
    };
    wait_until("three nodes operational", || {
        all_up(&nodes.iter().collect::<Vec<_>>())
    })
    .await;
    for op in [
        KeyOp::Install(NEW.to_vec()),
        KeyOp::Use(NEW.to_vec()),
        KeyOp::Remove(OLD.to_vec()),
    ] {
        for n in &nodes {
            n.keys(op.clone()).await.expect("key change");
        }
    }

    nodes[2].stop().await;
    let mut again = with_dir(2);
    again.join = vec![nodes[0].local_endpoints()["gossip"].to_string()];
    let back = Agent::start(again)
        .await
        .expect("restart with the saved keyring");
    let state = back.keys(KeyOp::List).await.expect("list");
    assert_eq!(state.keys, vec![fingerprint(&NEW)]);
    wait_until("the restarted node back in", || {
        all_up(&[&nodes[0], &nodes[1], &back])
    })
    .await;
    back.stop().await;
    stop_all(&nodes[..2]).await;
}
