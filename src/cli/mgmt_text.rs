//! Plain-text rendering of the management answers: tables, shard ranges,
//! the status and shards views.

use std::collections::BTreeMap;

use clusterfunk::management::{ShardsInfo, StatusView};

/// Rows under a header, each column as wide as its widest cell.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for r in &rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

pub(super) fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

pub(super) fn status_text(s: &StatusView) -> String {
    let members = s
        .members_by_status
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    let mut rows: Vec<(&str, String)> = vec![
        ("node", s.node_id.clone()),
        (
            "cluster",
            format!(
                "{} (id {})",
                s.cluster_name,
                s.cluster_id.as_deref().unwrap_or("-")
            ),
        ),
        ("state", s.state.clone()),
        ("role", s.role.clone()),
        ("leader", s.leader.clone().unwrap_or_else(|| "-".into())),
        ("epoch", s.epoch.to_string()),
        (
            "shards",
            format!(
                "{} of {} owned here, {} unassigned",
                s.shards_owned, s.shard_count, s.shards_unassigned
            ),
        ),
        ("members", list(&members)),
        ("voters", list(&s.voters)),
        ("learners", list(&s.learners)),
        (
            "raft",
            format!(
                "term {}, last log {}, applied {}",
                s.raft_term, s.raft_last_log_index, s.raft_last_applied
            ),
        ),
        ("uptime", format!("{:.1} s", s.uptime_ms as f64 / 1000.0)),
    ];
    if let Some(g) = &s.gossip {
        let view = if g.lighthouses_known == 0 {
            "valid (no lighthouses)".to_string()
        } else {
            format!(
                "{} ({} of {} lighthouses alive)",
                if g.view_valid { "valid" } else { "INVALID" },
                g.lighthouses_alive,
                g.lighthouses_known
            )
        };
        rows.push((
            "gossip",
            format!(
                "health {}, probe rtt {:.1} ms mean, push/pull failures {}, queue {}, view {view}",
                g.health_score, g.probe_rtt_mean_ms, g.push_pull_failures, g.broadcast_queue
            ),
        ));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `0-3, 7, 9-12`.
pub(super) fn ranges(shards: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < shards.len() {
        let start = shards[i];
        let mut end = start;
        while i + 1 < shards.len() && shards[i + 1] == end + 1 {
            i += 1;
            end = shards[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(", ")
    }
}

pub(super) fn shards_text(s: &ShardsInfo, full: bool) -> String {
    let mut header = vec!["NODE", "SHARDS", "WEIGHT", "WORKER"];
    let mut owned: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    if full {
        header.push("OWNS");
        for (shard, owner) in s.owners.iter().enumerate() {
            if let Some(o) = owner {
                owned.entry(o.as_str()).or_default().push(shard as u32);
            }
        }
    }
    let rows = s
        .nodes
        .iter()
        .map(|n| {
            let mut r = vec![
                n.node_id.clone(),
                n.shards.to_string(),
                n.weight.to_string(),
                n.worker_id.to_string(),
            ];
            if full {
                r.push(ranges(
                    owned
                        .get(n.node_id.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or(&[]),
                ));
            }
            r
        })
        .collect();
    format!(
        "epoch {}, {} shards, {} unassigned\n{}",
        s.epoch,
        s.shard_count,
        s.unassigned,
        table(&header, rows)
    )
}
