//! The compose demo (`deploy/`): five kv containers, the load client and
//! `deploy/chaos.sh` (kill, pause, network disconnect) for a minute; the
//! load must report 0 lost acknowledged writes and 0 stale reads, and every
//! shard must be owned at the end (by Prometheus when its image exists,
//! otherwise by the management API). Also `promtool check rules` on
//! `deploy/alerts.yml`. Each prints `SKIPPED <test>: <why>` where Docker
//! (or promtool) is not available.
//!
//! The image is built from this build's debug binaries
//! (`CF_PROFILE=debug deploy/build-images.sh`, tag `clusterfunk-test:local`).
//! `CF_COMPOSE_SECONDS` (default 60) sets how long the load and chaos run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::skip::skipped;
use common::wait::wait_until_async;

const IMAGE: &str = "clusterfunk-test:local";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The compose project of this test run, on the /24 `net`; `down -v`
/// when dropped.
struct Project {
    name: String,
    net: String,
}

/// `deploy/compose.sh ARGS` on project `name` in network `net`.
fn compose(name: &str, net: &str, args: &[&str]) -> Output {
    Command::new(deploy().join("compose.sh"))
        .args(args)
        .env("COMPOSE_PROJECT_NAME", name)
        .env("CF_NET", net)
        .env("CF_IMAGE", IMAGE)
        .env("CF_STATUS_PORT", "0")
        .env("CF_KV_PORT", "0")
        .env("CF_PROMETHEUS_PORT", "0")
        .env("CF_LOAD_SECONDS", seconds().to_string())
        .output()
        .expect("run compose.sh")
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        compose(&self.name, &self.net, args)
    }

    fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "-q", service]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["--profile", "metrics", "down", "-v", "-t", "2"]);
        // The image holds a copy of the debug binaries: give the space back.
        let _ = Command::new("docker").args(["rmi", IMAGE]).output();
    }
}

fn seconds() -> u64 {
    std::env::var("CF_COMPOSE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docker_ok(test: &str) -> bool {
    let engine = Command::new("docker").arg("info").output();
    if !engine.is_ok_and(|o| o.status.success()) {
        skipped(test, "no Docker engine reachable (`docker info` failed)");
        return false;
    }
    let compose = Command::new(deploy().join("compose.sh"))
        .arg("version")
        .output();
    if !compose.is_ok_and(|o| o.status.success()) {
        skipped(test, "neither `docker compose` nor `docker-compose` runs");
        return false;
    }
    true
}

/// Builds the image from the binaries this `cargo test` built.
fn build_image() {
    let bin = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the test binaries");
    let out = Command::new(deploy().join("build-images.sh"))
        .env("CF_PROFILE", "debug")
        .env("CF_IMAGE", IMAGE)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run build-images.sh");
    ok(&out, "deploy/build-images.sh");
}

fn healthy(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Health.Status}}", id])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "healthy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_demo_under_chaos_loses_no_acknowledged_write() {
    const TEST: &str = "compose_demo_under_chaos_loses_no_acknowledged_write";
    if !docker_ok(TEST) {
        return;
    }
    build_image();
    let nodes = ["node1", "node2", "node3", "node4", "node5"];
    let mut up = vec!["up", "-d"];
    up.extend(nodes);
    // A /24 no other project on this Docker engine uses: try a few.
    let pid = std::process::id();
    let mut project = None;
    for attempt in 0..5u32 {
        let p = Project {
            name: format!("cftest{pid}"),
            net: format!("172.30.{}", (pid + attempt * 37) % 250 + 2),
        };
        let out = p.compose(&up);
        if out.status.success() {
            project = Some(p);
            break;
        }
        eprintln!(
            "compose up on {}: {}",
            p.net,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p = project.expect("compose up on a free network");
    wait_until_async("five healthy kv containers", || async {
        nodes.iter().all(|n| healthy(&p.container(n)))
    })
    .await;
    let (name, net) = (p.name.clone(), p.net.clone());
    let load =
        tokio::task::spawn_blocking(move || compose(&name, &net, &["run", "--rm", "-T", "load"]));
    let chaos = Command::new(deploy().join("chaos.sh"))
        .arg(seconds().saturating_sub(10).max(5).to_string())
        .env("COMPOSE_PROJECT_NAME", &p.name)
        .env("CF_NET", &p.net)
        .env("CF_IMAGE", IMAGE)
        .output()
        .expect("chaos.sh");
    ok(&chaos, "deploy/chaos.sh");
    println!("{}", String::from_utf8_lossy(&chaos.stdout));
    let load = load.await.expect("load task");
    ok(&load, "the load client");
    let text = String::from_utf8_lossy(&load.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let summary: serde_json::Value = serde_json::from_str(line).expect("load summary json");
    println!("compose kv load under chaos: {summary}");
    assert_eq!(summary["lost_writes"], 0, "lost writes");
    assert_eq!(summary["stale_reads"], 0, "stale reads");
    assert_eq!(summary["unverified"], 0, "keys not read back");

    // Every shard owned once the faults have healed.
    let node1 = p.container("node1");
    wait_until_async("every shard owned", || async {
        let out = Command::new("docker")
            .args(["exec", &node1, "/bin/clusterfunk", "shards"])
            .args(["--rpc-addr", "127.0.0.1:7947"])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" 0 unassigned"))
    })
    .await;
    let prometheus = Command::new("docker")
        .args(["image", "inspect", "clusterfunk-prometheus:local"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !prometheus {
        skipped(
            &format!("{TEST} (Prometheus part)"),
            "no clusterfunk-prometheus:local image (install prometheus, rerun build-images.sh)",
        );
        return;
    }
    ok(
        &p.compose(&["--profile", "metrics", "up", "-d", "prometheus"]),
        "prometheus up",
    );
    let port = Command::new("docker")
        .args(["port", &p.container("prometheus"), "9090"])
        .output()
        .expect("docker port");
    let addr = String::from_utf8_lossy(&port.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let query = "max(clusterfunk_shards)-sum(clusterfunk_shards_owned)";
    wait_until_async("Prometheus reports every shard owned", || async {
        let out = Command::new("curl")
            .args(["-fsG", &format!("http://{addr}/api/v1/query")])
            .args(["--data-urlencode", &format!("query={query}")])
            .output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"0\"]"))
    })
    .await;
}

#[test]
fn deploy_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy().join("alerts.yml"))
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => skipped(
            "deploy_alert_rules_pass_promtool",
            "promtool not found on PATH (Debian: apt-get install prometheus)",
        ),
    }
}
