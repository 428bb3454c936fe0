//! The management API against in-process clusters over loopback: every RPC
//! through a tonic client, forwarding from a follower to the leader (over
//! mutual TLS with a token), the error cases, health and reflection.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clusterfunk::cluster::Seams;
use clusterfunk::config::AuthConfig;
use clusterfunk::management::{Client, ClientTls, EventKind, Health, NodeFilter};
use clusterfunk::{Agent, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::secure::certs;
use common::wait::{wait_until, wait_until_async, WAIT};
use tonic::Code;

const TOKEN: &str = "let-me-in";

fn config(name: &str, seeds: &[String], mgmt: &AuthConfig) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = "mgmt".into();
    c.shard_count = 1000;
    c.join = seeds.to_vec();
    c.auth = mgmt.clone();
    c
}

async fn start(n: usize, mgmt: &AuthConfig) -> Vec<Agent> {
    start_agents(n, Seams::default(), |i| {
        let mut c = config(&format!("n{i}"), &[], mgmt);
        c.tags
            .insert("rack".into(), if i % 2 == 0 { "a" } else { "b" }.into());
        c
    })
    .await
}

fn mgmt_addr(c: &Agent) -> String {
    c.local_endpoints()["management"].to_string()
}

/// Shard counts of the committed map of `node`, owners only.
fn owners(node: &Agent) -> BTreeMap<String, u32> {
    node.shard_map()
        .borrow()
        .as_ref()
        .map(|m| {
            m.counts()
                .into_iter()
                .filter(|(_, c)| *c > 0)
                .map(|(n, c)| (n.to_string(), c))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every node in `nodes` committed the same map owned by `who`.
async fn wait_owned_by(nodes: &[&Agent], who: &[&str]) {
    let want: BTreeSet<String> = who.iter().map(|s| s.to_string()).collect();
    wait_until(&format!("a map owned by {want:?}"), || {
        let epochs: BTreeSet<Option<u64>> = nodes.iter().map(|n| n.epoch()).collect();
        epochs.len() == 1
            && nodes.iter().all(|n| {
                n.state() == NodeState::Operational
                    && owners(n).keys().cloned().collect::<BTreeSet<_>>() == want
            })
    })
    .await;
}

async fn formed(nodes: &[Agent]) -> (usize, Vec<usize>) {
    let all: Vec<&Agent> = nodes.iter().collect();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id()).collect();
    wait_owned_by(&all, &ids).await;
    wait_until("one leader everywhere", || {
        let l: BTreeSet<_> = nodes.iter().map(|n| n.leader()).collect();
        l.len() == 1 && l.iter().next().is_some_and(|l| l.is_some())
    })
    .await;
    let leader = nodes[0].leader().expect("leader");
    let li = nodes
        .iter()
        .position(|n| n.node_id() == leader)
        .expect("leader is a node");
    let followers = (0..nodes.len()).filter(|&i| i != li).collect();
    (li, followers)
}

fn code<T: std::fmt::Debug>(r: Result<T, clusterfunk::management::ManagementError>) -> Code {
    r.expect_err("the call fails").code().unwrap_or(Code::Ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_forwarded_writes_over_mutual_tls_with_a_token() {
    let certs = certs();
    let mgmt = AuthConfig {
        tls: Some(certs.tls()),
        token: Some(TOKEN.into()),
    };
    let nodes = start(3, &mgmt).await;
    // The cluster formed with Raft over mutual TLS too (same certificate);
    // a plaintext peer gets no answer from a Raft port.
    let (li, fs) = formed(&nodes).await;
    let plain = clusterfunk::raft::Network::grpc(&clusterfunk::raft::RaftConfig::default());
    let raft_addr = nodes[li].local_endpoints()["raft"].to_string();
    assert!(plain
        .ack(&raft_addr, "intruder", 1, Duration::from_secs(1))
        .await
        .is_err());
    let (leader, f1, f2) = (&nodes[li], &nodes[fs[0]], &nodes[fs[1]]);
    let tls = ClientTls {
        ca: Some(certs.ca.clone()),
        cert: Some(certs.cert.clone()),
        key: Some(certs.key.clone()),
        domain: None,
    };
    let client = Client::connect(&mgmt_addr(f1), Some(TOKEN), Some(&tls))
        .await
        .expect("connect");

    // GetStatus.
    let s = client.status().await.expect("status");
    assert_eq!(s.node_id, f1.node_id());
    assert_eq!(s.cluster_name, "mgmt");
    assert!(s.cluster_id.is_some());
    assert_eq!(s.leader.as_deref(), Some(leader.node_id()));
    assert_eq!(s.role, "voter");
    assert_eq!(s.state, "operational");
    assert!(s.operational);
    assert!(s.epoch > 0);
    assert_eq!(s.shard_count, 1000);
    assert_eq!(s.shards_unassigned, 0);
    assert!(s.shards_owned > 0);
    assert_eq!(s.members_by_status.get("alive"), Some(&3));
    assert_eq!(s.voters, vec!["n0", "n1", "n2"]);
    assert!(s.learners.is_empty());
    assert!(s.raft_term > 0 && s.raft_last_applied > 0);

    // ListNodes, with serf-like filters.
    let all = client.nodes(&NodeFilter::default()).await.expect("nodes");
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().filter(|n| n.leader).count(), 1);
    assert_eq!(all.iter().map(|n| n.shards).sum::<u32>(), 1000);
    for n in &all {
        assert_eq!(n.gossip_status, "alive");
        assert!(n.endpoints.contains_key("management"), "{n:?}");
        assert_eq!(n.weight, 1);
    }
    let rack_a = NodeFilter {
        status: Some("alive".into()),
        tags: [("rack".to_string(), "a".to_string())].into(),
    };
    let ids: Vec<String> = client
        .nodes(&rack_a)
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, vec!["n0", "n2"]);
    let left = NodeFilter {
        status: Some("left".into()),
        ..NodeFilter::default()
    };
    assert!(client.nodes(&left).await.expect("nodes").is_empty());

    // ListShards: counts, then the full map.
    let brief = client.shards(false).await.expect("shards");
    assert_eq!(brief.shard_count, 1000);
    assert_eq!(brief.nodes.len(), 3);
    assert!(brief.owners.is_empty());
    let full = client.shards(true).await.expect("shards");
    assert_eq!(full.owners.len(), 1000);
    assert!(full.owners.iter().all(|o| o.is_some()));
    let mine = full
        .owners
        .iter()
        .filter(|o| o.as_deref() == Some(f1.node_id()))
        .count();
    assert_eq!(mine as u32, s.shards_owned);

    // ListEndpoints.
    let eps = client.endpoints("man", None).await.expect("endpoints");
    assert_eq!(eps.len(), 3);
    assert!(eps.iter().all(|e| e.name == "management"));
    let addr = eps
        .iter()
        .find(|e| e.node_id == leader.node_id())
        .map(|e| e.address.clone());
    assert_eq!(addr, Some(mgmt_addr(leader)));
    let of_f2 = client
        .endpoints("", Some(f2.node_id()))
        .await
        .expect("endpoints");
    assert!(of_f2.len() >= 4 && of_f2.iter().all(|e| e.node_id == f2.node_id()));

    // Errors: unknown nodes (answered by the leader, forwarded), bad input.
    let e = client.add_node("nosuch").await.expect_err("unknown");
    assert_eq!(e.code(), Some(Code::NotFound));
    assert!(e.to_string().contains("unknown node nosuch"), "{e}");
    assert_eq!(code(client.remove_node("nosuch").await), Code::NotFound);
    assert_eq!(code(client.set_weight("nosuch", 1).await), Code::NotFound);
    assert_eq!(code(client.add_node("").await), Code::InvalidArgument);

    // A leader-only write sent to a follower is carried out by the leader.
    let out = client.remove_node(f2.node_id()).await.expect("remove");
    assert_eq!(out.served_by, leader.node_id());
    wait_owned_by(&[leader, f1], &[leader.node_id(), f1.node_id()]).await;
    let out = client.add_node(f2.node_id()).await.expect("add");
    assert_eq!(out.served_by, leader.node_id());
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id()).collect();
    wait_owned_by(&[leader, f1], &ids).await;

    // Authentication: the token is required, health stays open.
    let wrong = Client::connect(&mgmt_addr(f1), Some("guess"), Some(&tls))
        .await
        .expect("connect");
    let e = wrong.status().await.expect_err("wrong token");
    assert_eq!(e.code(), Some(Code::Unauthenticated));
    let none = Client::connect(&mgmt_addr(f1), None, Some(&tls))
        .await
        .expect("connect");
    assert_eq!(
        code(none.nodes(&NodeFilter::default()).await),
        Code::Unauthenticated
    );
    assert_eq!(none.health().await.expect("health"), Health::Serving);

    // TLS: plaintext and certificate-less clients are refused.
    let plain = async {
        Client::connect(&mgmt_addr(f1), Some(TOKEN), None)
            .await?
            .status()
            .await
    };
    assert!(plain.await.is_err(), "plaintext against TLS");
    let anonymous = ClientTls {
        cert: None,
        key: None,
        ..tls.clone()
    };
    let anon = async {
        Client::connect(&mgmt_addr(f1), Some(TOKEN), Some(&anonymous))
            .await?
            .status()
            .await
    };
    assert!(
        anon.await.is_err(),
        "no client certificate under mutual TLS"
    );

    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_drain_events_reflection_and_step_down() {
    let mgmt = AuthConfig::default();
    let nodes = start(3, &mgmt).await;
    let (li, fs) = formed(&nodes).await;
    let (leader, f1, f2) = (&nodes[li], &nodes[fs[0]], &nodes[fs[1]]);
    let all: Vec<&Agent> = nodes.iter().collect();
    let client = Client::connect(&mgmt_addr(f1), None, None)
        .await
        .expect("connect");
    let mut events = client.watch_events(true).await.expect("watch");

    // SetWeight (any node): f2 gets twice the others' share.
    let out = client.set_weight(f2.node_id(), 2).await.expect("weight");
    assert_eq!(out.served_by, f1.node_id());
    wait_until("f2 owns half the shards", || {
        all.iter()
            .all(|n| owners(n).get(f2.node_id()) == Some(&500))
    })
    .await;

    // The stream saw the map being committed.
    let committed = tokio::time::timeout(WAIT, async {
        loop {
            let e = events.next().await.expect("stream open").expect("event");
            if e.kind == EventKind::MapCommitted {
                return e;
            }
        }
    })
    .await
    .expect("a map_committed event");
    assert!(committed.epoch > 0 && committed.moved > 0);
    assert_eq!(committed.source, f1.node_id());

    // User events go out over gossip and come back on the stream.
    client
        .send_user_event("deploy", b"v2", false)
        .await
        .expect("event");
    let user = tokio::time::timeout(WAIT, async {
        loop {
            let e = events.next().await.expect("stream open").expect("event");
            if e.kind == EventKind::UserEvent {
                return e;
            }
        }
    })
    .await
    .expect("the user event");
    assert_eq!(
        (user.detail.as_str(), user.payload.as_slice()),
        ("deploy", &b"v2"[..])
    );
    assert_eq!(
        code(client.send_user_event("", b"", false).await),
        Code::InvalidArgument
    );

    // Drain waits until f2 owns nothing, then weight 1 gives shards back.
    let out = client
        .drain(f2.node_id(), Duration::from_secs(15))
        .await
        .expect("drain");
    let map = client.shards(false).await.expect("shards");
    let f2_count = map
        .nodes
        .iter()
        .find(|n| n.node_id == f2.node_id())
        .map(|n| (n.shards, n.weight));
    assert_eq!(f2_count, Some((0, 0)), "drained at epoch {}", out.epoch);
    assert!(map.epoch >= out.epoch);
    assert_eq!(
        code(client.drain("nosuch", Duration::from_secs(1)).await),
        Code::NotFound
    );
    client.set_weight(f2.node_id(), 1).await.expect("weight");
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id()).collect();
    wait_owned_by(&all, &ids).await;

    // Reflection lists the services for stock tools.
    let services = reflection_services(&mgmt_addr(f1)).await;
    for s in [
        "clusterfunk.v1.management.Management",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(services.iter().any(|x| x == s), "{s} not in {services:?}");
    }

    // StepDown through a follower is carried out by the leader, and
    // leadership moves to another voter.
    let out = client.step_down().await.expect("step down");
    assert_eq!(out.served_by, leader.node_id());
    assert!(out.message.starts_with(leader.node_id()), "{}", out.message);
    wait_until("one new leader everywhere after step-down", || {
        let l: BTreeSet<_> = nodes.iter().map(|n| n.leader()).collect();
        l.len() == 1
            && l.iter()
                .next()
                .is_some_and(|l| l.as_deref().is_some_and(|l| l != leader.node_id()))
    })
    .await;

    stop_all(&nodes).await;
    // Stopping the node ended the event stream.
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended with the node");
}

async fn reflection_services(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let mut c = ServerReflectionClient::new(channel(addr).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    match resp
        .message()
        .await
        .expect("answer")
        .and_then(|r| r.message_response)
    {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_serves_only_while_operational() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mgmt = AuthConfig::default();
    let mut a = config("h0", &[], &mgmt);
    a.bootstrap_expect = 2;
    let a = Agent::start(a).await.expect("start");
    let client = Client::connect(&mgmt_addr(&a), None, None)
        .await
        .expect("connect");
    // Alone, the node waits for a second one: not operational.
    assert_ne!(a.state(), NodeState::Operational);
    assert_eq!(client.health().await.expect("health"), Health::NotServing);
    let e = client.shards(false).await.expect_err("no map yet");
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    let s = client.status().await.expect("status");
    assert!(!s.operational && s.leader.is_none());

    let mut b = config("h1", &[a.local_endpoints()["gossip"].to_string()], &mgmt);
    b.bootstrap_expect = 2;
    let b = Agent::start(b).await.expect("start");
    formed(&[a.clone(), b.clone()]).await;
    wait_until_async("health SERVING", || async {
        client.health().await.ok() == Some(Health::Serving)
    })
    .await;

    // Watch health, then stop the node: NOT_SERVING arrives before the end.
    let mut h = HealthClient::new(channel(&mgmt_addr(&a)).await);
    let mut watch = h
        .watch(HealthCheckRequest {
            service: "clusterfunk.v1.management.Management".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("status").expect("open");
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.stop().await }
    });
    let saw_not_serving = tokio::time::timeout(WAIT, async {
        loop {
            match watch.message().await {
                Ok(Some(m)) if m.status() == ServingStatus::NotServing => return true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        saw_not_serving,
        Ok(true),
        "NOT_SERVING once the stop started"
    );
    stopping.await.expect("stop");
    b.stop().await;
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}
