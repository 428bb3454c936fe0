//! `promtool` checks of the exposition and of `deploy/prometheus.yml`.
//!
//! Skipped, with a printed message, when `promtool` is not installed
//! (Debian: `apt-get install prometheus`).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use clusterfunk::metrics::Metrics;

/// Whether promtool runs here; if not, `test` reports itself skipped.
fn promtool_available(test: &str) -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            common::skip::skipped(
                test,
                "promtool not found on PATH; install it (Debian: apt-get install prometheus)",
            );
            false
        }
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let mut pipe = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin pipe"))?;
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes())?;
        }
    }
    Ok(child.wait_with_output()?)
}

/// A registry with every kind of metric holding values, as a busy node has.
fn busy_metrics() -> anyhow::Result<Metrics> {
    let m = Metrics::new("node-1")?;
    m.cluster_nodes.set(5);
    m.set_gossip_members([("alive", 4), ("suspect", 1)]);
    m.raft_voters.set(3);
    m.raft_learners.set(2);
    m.raft_term.set(4);
    m.raft_last_log_index.set(120);
    m.raft_applied_index.set(119);
    m.record_leader(Some("node-1"));
    m.set_node_state("operational");
    m.set_node_role("leader");
    m.committed_epoch.set(9);
    m.shards.set(64);
    m.shards_owned.set(13);
    m.record_reshard(Duration::from_millis(35), 12);
    m.observe_liveness_rtt(Duration::from_micros(420));
    m.record_liveness_transition(false);
    m.gossip_messages_sent
        .observe_totals([("ping", 100), ("ack", 90), ("user_event", 3)]);
    m.gossip_messages_received
        .observe_totals([("ping", 95), ("ack", 99)]);
    m.gossip_bytes_sent.observe_totals([("ping", 4_000)]);
    m.gossip_bytes_received.observe_totals([("ack", 3_900)]);
    m.gossip_suspicions.observe_total(2);
    m.gossip_refutations.observe_total(1);
    m.gossip_dropped_packets.observe_total(7);
    m.gossip_undecodable_packets.observe_total(1);
    m.gossip_decryption_failures.observe_total(0);
    Ok(m)
}

#[test]
fn exposition_passes_promtool_check_metrics() -> anyhow::Result<()> {
    let text = busy_metrics()?.encode_text()?;
    // Sanity independent of promtool: every metric family has help and type.
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert!(families >= 30, "only {families} families:\n{text}");
    assert_eq!(families, helps, "{text}");

    if !promtool_available("exposition_passes_promtool_check_metrics") {
        return Ok(());
    }
    let out = promtool(&["check", "metrics"], Some(&text))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported problems (exit {:?}):\n{report}\n--- exposition ---\n{text}",
        out.status.code()
    );
    Ok(())
}

#[test]
fn deploy_prometheus_yml_passes_promtool_check_config() -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus.yml");
    let yml = std::fs::read_to_string(path)?;
    for n in 1..=5 {
        assert!(yml.contains(&format!("node{n}:9100")), "node{n} missing");
    }
    if !promtool_available("deploy_prometheus_yml_passes_promtool_check_config") {
        return Ok(());
    }
    let out = promtool(&["check", "config", path], None)?;
    assert!(
        out.status.success(),
        "promtool check config failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
