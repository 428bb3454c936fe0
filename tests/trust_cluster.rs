//! Trust, in-process over loopback: with a cluster secret, nodes without it
//! (or with another one) never become members, and raw Raft calls without
//! the cluster credential are refused; nodes that gossip lets in but that
//! cannot talk Raft with the cluster (plaintext in a TLS cluster, another
//! credential) fail the admission check and cause no re-proposal. Also the
//! gossip-level rolling switch from plaintext to encryption.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clusterfunk::cluster::Seams;
use clusterfunk::gossip::{Gossip, GossipConfig, Keyring, MemNetwork, MemberStatus};
use clusterfunk::raft::{RaftAuth, AUTH_HEADER};
use clusterfunk::{Agent, Cluster, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::secure::{certs, counter, keyed, labeled, pb, raft_members};
use common::wait::{holds_for, wait_until, wait_until_async};
use tonic::metadata::MetadataValue;
use tonic::Code;

const KEY: [u8; 32] = [0x5a; 32];

fn config(name: &str, seeds: &[String], key: Option<&[u8]>) -> Config {
    let mut c = keyed(name, "trust", key);
    c.join = seeds.to_vec();
    c
}

fn owners(c: &Cluster) -> BTreeSet<String> {
    c.shard_map()
        .borrow()
        .as_ref()
        .map(|m| {
            m.counts()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(n, _)| n.to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outsiders_stay_out_and_raw_raft_calls_need_the_credential() {
    let n0 = Agent::start(config("n0", &[], Some(&KEY)))
        .await
        .expect("n0");
    let seed = n0.local_endpoints()["gossip"].to_string();
    let seeds = std::slice::from_ref(&seed);
    let mut nodes = vec![n0];
    for i in 1..3 {
        let c = Agent::start(config(&format!("n{i}"), seeds, Some(&KEY)))
            .await
            .expect("start");
        nodes.push(c);
    }
    // Outsiders: no key at all, and a wrong key. They may fail to start
    // (their join is refused) or run alone; either way they must stay out.
    let mut outsiders = Vec::new();
    for (name, key) in [("plain", None), ("wrong", Some(&[0x13u8; 32][..]))] {
        if let Ok(c) = Agent::start(config(name, seeds, key)).await {
            outsiders.push(c);
        }
    }

    let members: BTreeSet<String> = ["n0", "n1", "n2"].iter().map(|s| s.to_string()).collect();
    wait_until("the three keyed nodes operational with one map", || {
        nodes.iter().all(|n| {
            n.state() == NodeState::Operational
                && owners(n) == members
                && n.epoch() == nodes[0].epoch()
        })
    })
    .await;
    // Their join attempts were refused and counted.
    wait_until("outsiders' packets counted", || {
        nodes
            .iter()
            .map(|n| counter(n, "clusterfunk_gossip_decryption_failures_total"))
            .sum::<u64>()
            >= 2
    })
    .await;
    for n in &nodes {
        let seen: BTreeSet<String> = n.cluster_members().into_iter().map(|m| m.name).collect();
        assert_eq!(seen, members, "{} sees outsiders", n.node_id());
        let raft = raft_members(n);
        assert!(
            !raft.contains("plain") && !raft.contains("wrong"),
            "outsider in Raft: {raft:?}"
        );
        assert_eq!(owners(n), members);
    }
    for o in &outsiders {
        assert!(o
            .cluster_members()
            .iter()
            .all(|m| !members.contains(&m.name) || m.status != MemberStatus::Alive));
    }

    // Raw Raft calls without (or with a wrong) credential are refused
    // before they reach Raft.
    let target = &nodes[1];
    let addr = target.local_endpoints()["raft"];
    let mut client = pb::raft_client::RaftClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let wrong = RaftAuth::from_secret(b"guess").header_value();
    let wrong = MetadataValue::try_from(wrong.to_str().expect("ascii")).expect("value");
    fn with_cred<T>(
        msg: T,
        cred: &Option<MetadataValue<tonic::metadata::Ascii>>,
    ) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(v) = cred {
            r.metadata_mut().insert(AUTH_HEADER, v.clone());
        }
        r
    }
    for cred in [None, Some(wrong)] {
        let ack = client
            .ack(with_cred(
                pb::AckRequest {
                    node: "n2".into(),
                    epoch: 99,
                },
                &cred,
            ))
            .await;
        assert_eq!(ack.expect_err("ack").code(), Code::Unauthenticated);
        let fwd = client
            .forward(with_cred(pb::ForwardRequest::default(), &cred))
            .await;
        assert_eq!(fwd.expect_err("forward").code(), Code::Unauthenticated);
        let elect = client
            .elect(with_cred(pb::ElectRequest::default(), &cred))
            .await;
        assert_eq!(elect.expect_err("elect").code(), Code::Unauthenticated);
        let vote = client
            .vote(with_cred(pb::VoteRequest::default(), &cred))
            .await;
        assert_eq!(vote.expect_err("vote").code(), Code::Unauthenticated);
        let append = client
            .append_entries(with_cred(pb::AppendEntriesRequest::default(), &cred))
            .await;
        assert_eq!(append.expect_err("append").code(), Code::Unauthenticated);
        let snap = client
            .install_snapshot(with_cred(pb::InstallSnapshotRequest::default(), &cred))
            .await;
        assert_eq!(snap.expect_err("snapshot").code(), Code::Unauthenticated);
    }
    // With the cluster's credential the same port answers: Forward and
    // Elect only from a caller that names a current Raft member, and a
    // malformed forward is refused by Raft itself, not by authentication.
    let good = RaftAuth::from_secret(&KEY).header_value();
    let good = Some(MetadataValue::try_from(good.to_str().expect("ascii")).expect("value"));
    let outsider = clusterfunk::shards::stable_hash64(b"plain");
    let member = clusterfunk::shards::stable_hash64(b"n2");
    let fwd = client
        .forward(with_cred(
            pb::ForwardRequest {
                command: None,
                from: outsider,
            },
            &good,
        ))
        .await;
    assert_eq!(fwd.expect_err("forward").code(), Code::PermissionDenied);
    let elect = client
        .elect(with_cred(pb::ElectRequest { from: outsider }, &good))
        .await;
    assert_eq!(elect.expect_err("elect").code(), Code::PermissionDenied);
    let fwd = client
        .forward(with_cred(
            pb::ForwardRequest {
                command: None,
                from: member,
            },
            &good,
        ))
        .await;
    assert_eq!(fwd.expect_err("forward").code(), Code::InvalidArgument);

    wait_until_async("refused calls exported", || async {
        counter(target, "clusterfunk_raft_unauthenticated_calls_total") == 12
    })
    .await;
    // The cluster did not move.
    for n in &nodes {
        assert_eq!(n.state(), NodeState::Operational);
        assert_eq!(owners(n), members);
    }
    for c in outsiders.into_iter().chain(nodes) {
        c.stop().await;
    }
}

fn gossip_config(
    name: &str,
    key: Option<&[u8]>,
    verify_in: bool,
    verify_out: bool,
) -> GossipConfig {
    let mut c = GossipConfig::local(name);
    c.keyring = key.map(|k| Keyring::new(k).expect("key"));
    c.verify_incoming = verify_in;
    c.verify_outgoing = verify_out;
    c
}

async fn alive(g: &Gossip, n: usize) -> bool {
    g.wait_for(Duration::from_secs(20), |m| {
        m.iter().filter(|m| m.status == MemberStatus::Alive).count() == n
    })
    .await
}

/// memberlist's rolling switch: plaintext nodes, then nodes that hold the
/// key but neither require nor send it, then nodes that send it but still
/// accept plaintext, then nodes that require it. Each step is compatible
/// with the one before; only the last refuses plaintext.
#[tokio::test(start_paused = true)]
async fn rolling_switch_to_encryption() {
    let net = MemNetwork::new();
    let k = Some(&KEY[..]);
    let plain = Gossip::start(gossip_config("plain", None, true, true), net.bind()).unwrap();
    let step1 = Gossip::start(gossip_config("step1", k, false, false), net.bind()).unwrap();
    let step2 = Gossip::start(gossip_config("step2", k, false, true), net.bind()).unwrap();
    let step3 = Gossip::start(gossip_config("step3", k, true, true), net.bind()).unwrap();

    // Step 1 talks with plaintext nodes.
    step1
        .join(&[plain.addr()])
        .await
        .expect("step1 joins plain");
    assert!(alive(&plain, 2).await && alive(&step1, 2).await);
    // Step 2 (sends encrypted, accepts both) talks with step 1 ...
    let pair = Gossip::start(gossip_config("pair1", k, false, false), net.bind()).unwrap();
    step2.join(&[pair.addr()]).await.expect("step2 joins step1");
    assert!(alive(&pair, 2).await && alive(&step2, 2).await);
    // ... and, once every node is at step 2, step 3 (requires the key)
    // talks with step 2 ...
    pair.shutdown().await.unwrap();
    step3
        .join(&[step2.addr()])
        .await
        .expect("step3 joins step2");
    assert!(alive(&step3, 2).await);
    // ... but never with a plaintext node.
    assert!(step3.join(&[plain.addr()]).await.is_err());
    // The plaintext node could not open step 3's request: counted there.
    let s = plain.stats().await.unwrap();
    assert!(s.decrypt_failures >= 1, "{s:?}");
    assert!(step3.members().iter().all(|m| m.name != "plain"));
    for g in [plain, step1, step2, step3] {
        g.shutdown().await.unwrap();
    }
}

/// How long the admission test watches for churn. Without the check the
/// first outsider is a learner within about a second (the next membership
/// reconcile) and a proposal with it times out after `ack_timeout`.
const NO_CHURN_WINDOW: Duration = Duration::from_secs(4);
const REFUSALS: &str = "clusterfunk_raft_admission_refusals_total";

/// Nodes gossip lets in but that cannot take part in Raft are left out by
/// the admission check, with no membership change and no new map. The
/// cluster runs mutual TLS plus a Raft credential; the outsiders are a
/// plaintext node (the issue: added as a learner, then propose -> ack
/// timeout -> propose again, epochs 1 -> 12 in 30 s), a TLS node with
/// another credential and a TLS node with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_failing_the_admission_check_stay_out_with_no_reproposal() {
    let certs = certs();
    let secure = |name: &str, cred: Option<&[u8]>| {
        let mut c = keyed(name, "tls", None);
        c.auth.tls = Some(certs.tls());
        c.raft.auth = cred.map(RaftAuth::from_secret);
        c
    };
    let nodes = start_agents(3, Seams::default(), |i| {
        secure(&format!("t{i}"), Some(b"cluster credential"))
    })
    .await;
    let everyone: BTreeSet<String> = ["t0", "t1", "t2"].iter().map(|s| s.to_string()).collect();
    wait_until("three TLS nodes operational with one map", || {
        nodes.iter().all(|n| {
            n.state() == NodeState::Operational
                && owners(n) == everyone
                && n.epoch().is_some()
                && n.epoch() == nodes[0].epoch()
        })
    })
    .await;
    let epoch = nodes[0].epoch();
    let seed = nodes[0].local_endpoints()["gossip"].to_string();
    let mut outsiders = Vec::new();
    for (name, mut c) in [
        ("plain", keyed("plain", "tls", None)),
        (
            "othercred",
            secure("othercred", Some(b"another credential")),
        ),
        ("nocred", secure("nocred", None)),
    ] {
        c.join = vec![seed.clone()];
        outsiders.push(
            Agent::start(c)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    let leader = nodes
        .iter()
        .find(|n| n.leader().as_deref() == Some(n.node_id()))
        .expect("a leader");
    wait_until("the leader sees every outsider alive in gossip", || {
        let alive = leader
            .cluster_members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .count();
        alive == 6
    })
    .await;

    // The claim: from now on no Raft membership change and no new map.
    holds_for(
        "no outsider in Raft and no new map",
        NO_CHURN_WINDOW,
        || {
            for n in &nodes {
                let (raft, now) = (raft_members(n), n.epoch());
                if raft != everyone || now != epoch || owners(n) != everyone {
                    return Err(format!(
                        "{}: raft {raft:?}, epoch {epoch:?} -> {now:?}, owners {:?}",
                        n.node_id(),
                        owners(n)
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    // Each was checked, refused for its reason and counted by the leader.
    let reasons = [
        ("unreachable", "plaintext"),
        ("unauthenticated", "another credential"),
        ("no_credential", "no credential"),
    ];
    wait_until_async("every refusal counted", || async {
        reasons
            .iter()
            .all(|(reason, _)| labeled(leader, REFUSALS, reason) >= 1)
    })
    .await;
    for (reason, who) in reasons {
        println!("{who}: refused {} times", labeled(leader, REFUSALS, reason));
    }
    for c in outsiders {
        c.stop().await;
    }
    stop_all(&nodes).await;
}

/// The same check at bootstrap: the node that initialises Raft checks the
/// others first, leaves out one that fails (a plaintext node among TLS
/// ones) and waits until `bootstrap_expect` nodes passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_leaves_out_a_node_failing_the_admission_check() {
    let certs = certs();
    let tls = |name: &str| {
        let mut c = keyed(name, "boot", None);
        c.auth.tls = Some(certs.tls());
        c
    };
    let t0 = Agent::start(tls("t0")).await.expect("t0");
    let seed = vec![t0.local_endpoints()["gossip"].to_string()];
    let mut plain = keyed("zplain", "boot", None);
    plain.join = seed.clone();
    let plain = Agent::start(plain).await.expect("plaintext node");
    let mut nodes = vec![t0];
    for name in ["t1", "t2"] {
        let mut c = tls(name);
        c.join = seed.clone();
        nodes.push(Agent::start(c).await.expect(name));
    }
    let good: BTreeSet<String> = ["t0", "t1", "t2"].iter().map(|s| s.to_string()).collect();
    wait_until("the three TLS nodes formed a cluster", || {
        nodes.iter().all(|n| {
            n.state() == NodeState::Operational
                && owners(n) == good
                && n.epoch() == nodes[0].epoch()
        })
    })
    .await;
    for n in &nodes {
        assert_eq!(raft_members(n), good, "{}", n.node_id());
    }
    assert!(labeled(&nodes[0], REFUSALS, "unreachable") >= 1);
    plain.stop().await;
    stop_all(&nodes).await;
}
