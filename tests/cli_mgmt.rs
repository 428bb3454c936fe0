//! The operator CLI (`clusterfunk status | members | shards | ...`) as a
//! process against an in-process cluster: text and JSON output, filters,
//! and one-line errors with a non-zero exit code.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use clusterfunk::cluster::Seams;
use clusterfunk::config::AuthConfig;
use clusterfunk::{Agent, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until;

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "cli-token";

async fn start_cluster() -> Vec<Agent> {
    let mgmt = AuthConfig {
        tls: None,
        token: Some(TOKEN.into()),
    };
    let nodes = start_agents(3, Seams::default(), |i| {
        let mut c = Config::local(format!("c{i}"));
        c.cluster_name = "cli".into();
        c.shard_count = 1000;
        c.auth = mgmt.clone();
        c.tags
            .insert("rack".into(), if i == 1 { "b" } else { "a" }.into());
        c
    })
    .await;
    wait_until("the cluster to form", || {
        let epochs: BTreeSet<Option<u64>> = nodes.iter().map(|n| n.epoch()).collect();
        epochs.len() == 1
            && nodes
                .iter()
                .all(|n| n.state() == NodeState::Operational && !n.local_shards().is_empty())
            && nodes.iter().all(|n| n.leader().is_some())
    })
    .await;
    nodes
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_clusterfunk"));
    for var in [
        "CLUSTERFUNK_RPC_ADDR",
        "CLUSTERFUNK_TOKEN",
        "CLUSTERFUNK_CLUSTER",
        "CLUSTERFUNK_TLS_CA",
        "CLUSTERFUNK_TLS_CERT",
        "CLUSTERFUNK_TLS_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(envs.iter().copied()).kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the CLI finished")
        .expect("run the CLI");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
}

fn one_line_failure(r: &Run, expect: &str) {
    assert_ne!(r.code, 0, "stdout: {}", r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {:?}", r.stderr);
    assert!(r.stderr.contains(expect), "stderr: {:?}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_commands_against_a_running_cluster() {
    let nodes = start_cluster().await;
    let addr = nodes[1].local_endpoints()["management"].to_string();
    let base = ["--rpc-addr", addr.as_str(), "--token", TOKEN];
    let with = |extra: &[&'static str]| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain(base.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&refs, &[]).await
    };

    // status: aligned key/value lines.
    let r = run(with(&["status"])).await;
    ok(&r);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("node ") && l.ends_with("c1")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("operational"), "{}", r.stdout);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("leader ")),
        "{}",
        r.stdout
    );

    // The address and token also come from the environment.
    let r = cli(
        &["status", "--format", "json"],
        &[
            ("CLUSTERFUNK_RPC_ADDR", &addr),
            ("CLUSTERFUNK_TOKEN", TOKEN),
        ],
    )
    .await;
    ok(&r);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).expect("status json");
    assert_eq!(s["node_id"], "c1");
    assert_eq!(s["shard_count"], 1000);

    // members: JSON that parses, and serf-like filters.
    let r = run(with(&["members", "--format", "json"])).await;
    ok(&r);
    let members: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("members json");
    assert_eq!(members.len(), 3);
    let ids: BTreeSet<&str> = members.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["c0", "c1", "c2"].into());
    assert!(members.iter().all(|m| m["gossip_status"] == "alive"));
    let r = run(with(&[
        "members", "--status", "alive", "--tag", "rack=a", "--format", "json",
    ]))
    .await;
    ok(&r);
    let filtered: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).expect("json");
    let ids: Vec<&str> = filtered.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec!["c0", "c2"]);
    let r = run(with(&["members"])).await;
    ok(&r);
    // The table, then (asked through a follower) where LIVE comes from.
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with('(')).collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with("NODE") && lines[0].contains("STATUS"));
    // Columns line up: every row has its status where the header has it.
    let col = lines[0].find("STATUS").expect("STATUS column");
    assert!(
        lines[1..].iter().all(|l| l[col..].starts_with("alive")),
        "{}",
        r.stdout
    );

    // shards: a summary line and one row per node; the full map in JSON.
    let r = run(with(&["shards"])).await;
    ok(&r);
    assert!(r.stdout.starts_with("epoch "), "{}", r.stdout);
    assert!(
        r.stdout.contains("1000 shards, 0 unassigned"),
        "{}",
        r.stdout
    );
    let rows: u32 = r
        .stdout
        .lines()
        .skip(2)
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u32>().ok())
                .expect("a shard count")
        })
        .sum();
    assert_eq!(rows, 1000);
    let r = run(with(&["shards", "--full", "--format", "json"])).await;
    ok(&r);
    let map: serde_json::Value = serde_json::from_str(&r.stdout).expect("shards json");
    assert_eq!(map["owners"].as_array().map(Vec::len), Some(1000));

    // endpoints with a prefix.
    let r = run(with(&["endpoints", "man"])).await;
    ok(&r);
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);
    assert!(r.stdout.contains(&addr));

    // health and a write.
    let r = run(with(&["health"])).await;
    ok(&r);
    assert_eq!(r.stdout.trim(), "serving");
    let r = run(with(&["weight", "c2", "1"])).await;
    ok(&r);
    assert!(r.stdout.contains("weight of c2 set to 1"), "{}", r.stdout);

    // Failures: one line on stderr, exit code 1.
    let r = run(with(&["remove", "nosuch"])).await;
    one_line_failure(&r, "NOT_FOUND: unknown node nosuch");
    assert_eq!(r.code, 1);
    let r = cli(&["status", "--rpc-addr", &addr, "--token", "wrong"], &[]).await;
    one_line_failure(&r, "UNAUTHENTICATED");
    let r = cli(&["members", "--rpc-addr", &addr], &[]).await;
    one_line_failure(&r, "UNAUTHENTICATED");
    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let r = cli(&["status", "--rpc-addr", &free.to_string()], &[]).await;
    one_line_failure(&r, "connect to");

    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_append_and_watch() {
    let nodes = start_cluster().await;
    let addr = nodes[2].local_endpoints()["management"].to_string();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--rpc-addr", &addr, "--token", TOKEN].map(String::from));
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            cli(&refs, &[]).await
        }
    };
    let r = run(&["log", "append", "schema=v7"]).await;
    ok(&r);
    assert_eq!(r.stdout.trim(), "appended entry 1 (9 bytes)");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token.bin");
    std::fs::write(&file, [0xffu8, 0x01]).expect("write");
    let path = file.to_string_lossy().to_string();
    let r = run(&["log", "append", "--file", &path, "--format", "json"]).await;
    ok(&r);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        (j["index"].as_u64(), j["bytes"].as_u64()),
        (Some(2), Some(2))
    );

    let r = run(&["log", "watch"]).await;
    ok(&r);
    assert_eq!(r.stdout.lines().collect::<Vec<_>>()[0], "1 schema=v7");
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    let r = run(&["log", "watch", "--from", "2", "--format", "json"]).await;
    ok(&r);
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("json line");
    assert_eq!(
        (j["index"].as_u64(), j["hex"].as_str()),
        (Some(2), Some("ff01"))
    );

    std::fs::write(&file, vec![b'x'; 64 * 1024 + 1]).expect("write");
    let r = run(&["log", "append", "--file", &path]).await;
    one_line_failure(&r, "over the limit");
    stop_all(&nodes).await;
}
