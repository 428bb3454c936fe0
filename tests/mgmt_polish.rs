//! The management API as stock tools and the CLI see it, on three
//! in-process agents: reflection lists only the services the port serves,
//! answers an unknown symbol in-band and goes on, and names the health
//! file by its standard name; `members` through a follower shows the
//! leader's liveness; `watch --timeout` bounds only the stream's opening;
//! JSON shows user-event payloads as text.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use clusterfunk::cluster::Seams;
use clusterfunk::management::Client;
use clusterfunk::{Agent, Config};
use common::cluster::{start_agents, stop_all};
use common::wait::{wait_until, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_clusterfunk")
}

fn mgmt(n: &Agent) -> String {
    n.local_endpoints()["management"].to_string()
}

async fn reflect(addr: &str, reqs: Vec<MessageRequest>) -> Vec<MessageResponse> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let n = reqs.len();
    let reqs = reqs.into_iter().map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut answers = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(reqs.collect::<Vec<_>>()))
        .await
        .expect("reflection")
        .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = answers
            .message()
            .await
            .expect("an answer, not an ended stream");
        out.push(r.and_then(|r| r.message_response).expect("a response"));
    }
    out
}

fn services(r: &MessageResponse) -> Vec<String> {
    match r {
        MessageResponse::ListServicesResponse(l) => {
            l.service.iter().map(|s| s.name.clone()).collect()
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_members_watch_and_payloads() {
    let nodes = start_agents(3, Seams::default(), |i| {
        let mut c = Config::local(format!("p{i}"));
        c.cluster_name = "polish".into();
        c.shard_count = 300;
        c
    })
    .await;
    wait_until("a map owned by all three and a leader", || {
        nodes.iter().all(|n| {
            n.leader().is_some()
                && n.shard_map()
                    .borrow()
                    .as_ref()
                    .is_some_and(|m| m.counts().len() == 3)
        })
    })
    .await;
    let leader = nodes[0].leader().expect("leader");
    let follower = nodes.iter().find(|n| n.node_id() != leader).expect("one");

    // Reflection: exactly the four services served here, errors in-band.
    let answers = reflect(
        &mgmt(follower),
        vec![
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("clusterfunk.v1.raft.Raft".into()),
            MessageRequest::FileByFilename("grpc/health/v1/health.proto".into()),
            MessageRequest::ListServices(String::new()),
        ],
    )
    .await;
    let listed = services(&answers[0]);
    assert_eq!(
        listed,
        [
            "clusterfunk.v1.management.Management",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    match &answers[1] {
        MessageResponse::ErrorResponse(e) => assert_eq!(e.error_code, 5, "{e:?}"),
        other => panic!("Raft is not served on this port: {other:?}"),
    }
    assert!(
        matches!(&answers[2], MessageResponse::FileDescriptorResponse(f) if f.file_descriptor_proto.len() == 1),
        "{:?}",
        answers[2]
    );
    assert_eq!(services(&answers[3]), listed, "the stream went on");

    // members through a follower: liveness as the leader sees it.
    let out = tokio::process::Command::new(exe())
        .args(["members", "--rpc-addr", &mgmt(follower)])
        .env_remove("CLUSTERFUNK_TOKEN")
        .output()
        .await
        .expect("members");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("LIVE as the leader {leader} sees it")),
        "{text}"
    );
    let follower_row = text
        .lines()
        .find(|l| l.starts_with(follower.node_id()))
        .expect("the follower's row");
    assert!(follower_row.contains(" alive "), "{follower_row}");

    // watch --timeout 0.3: still streaming after a second; JSON payloads
    // are text.
    let started = Instant::now();
    let mut watch = tokio::process::Command::new(exe())
        .args([
            "watch",
            "--user-events",
            "--format",
            "json",
            "--timeout",
            "0.3",
        ])
        .args(["--rpc-addr", &mgmt(follower)])
        .env_remove("CLUSTERFUNK_TOKEN")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // The event must be sent after the timeout has run out (a state of the
    // clock, not a pause for things to settle).
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    let client = Client::connect(&mgmt(&nodes[0]), None, None)
        .await
        .expect("client");
    client
        .send_user_event("late", b"after the timeout", false)
        .await
        .expect("event");
    let line = tokio::time::timeout(WAIT, async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("\"late\"") {
                return Some(l);
            }
        }
        None
    })
    .await
    .expect("the event within the wait")
    .expect("watch still running after its --timeout");
    let ev: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(ev["payload"], "after the timeout", "{line}");
    let _ = watch.kill().await;
    stop_all(&nodes).await;
}
