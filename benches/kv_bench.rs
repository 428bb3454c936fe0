//! Throughput and latency of `examples/kv` on five local processes, through
//! a random node (4 of 5 requests forwarded to the owner) and straight to
//! the owner. Prints one line per mode.
//!
//! The kv binary of the same profile must exist:
//! `cargo build --release --example kv && cargo bench --bench kv_bench`
//! (or `cargo build --example kv && cargo bench --profile dev --bench kv_bench`).
//! `KV_BENCH_SECONDS` (default 5) sets each run's length.

use std::time::Duration;

// The tests' kv harness (it reaches `wait` as `super::wait`).
#[allow(dead_code)]
#[path = "../tests/common/kv.rs"]
mod kv;
#[allow(dead_code)]
#[path = "../tests/common/wait.rs"]
mod wait;

use kv::{client, counts, wait_map, Kv, Load};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("KV_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kv = Kv::new(dir.path(), 256);
    let seed = kv.start("n1", None).await.gossip;
    for i in 2..=5 {
        kv.start(&format!("n{i}"), Some(&seed)).await;
    }
    let c = client(&kv);
    wait_map(&c, "a map over five nodes", |v| counts(v).len() == 5).await;
    for (mode, extra) in [
        ("through any node (forwarded)", vec![]),
        ("to the owner", vec!["--direct"]),
    ] {
        let mut args = vec!["--rate", "20000", "--workers", "32", "--keys", "100"];
        args.extend(extra);
        let load = Load::start(&kv.managements(), &args);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let s = load.finish().await;
        println!(
            "kv, 5 nodes, {mode}: {} ops/s, p50 {} ms, p99 {} ms, errors {}, lost {}, stale {}",
            s["ops_per_s"],
            s["p50_ms"],
            s["p99_ms"],
            s["errors"],
            s["lost_writes"],
            s["stale_reads"]
        );
    }
}
