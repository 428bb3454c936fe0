//! `clusterfunk members`: the table, and liveness from the leader's view.
//!
//! Only the leader probes liveness, so a follower lists every member's
//! liveness as `unknown`. Asked through a follower, `members` asks the
//! leader (at its `ep.management` endpoint, with the same credentials)
//! for its view and shows that, saying so; when the leader cannot be
//! reached it says where liveness is known. A child module of `mgmt`.

use clusterfunk::management::{NodeEntry, NodeFilter};

use super::{connect, dash, table, RpcArgs};

/// What the LIVE column shows, when it is not the answering node's view.
#[derive(Debug, Default)]
pub(super) struct Note(Option<String>);

/// `nodes` with liveness from the leader's view when a follower answered.
pub(super) async fn with_leader_liveness(
    mut nodes: Vec<NodeEntry>,
    rpc: &RpcArgs,
) -> (Vec<NodeEntry>, Note) {
    // The leader knows every other Raft member's liveness; a follower
    // knows at most its own.
    let from_leader = !nodes.iter().any(|n| {
        !n.leader && matches!(n.raft_role.as_str(), "voter" | "learner") && n.liveness == "unknown"
    });
    let Some(leader) = nodes.iter().find(|n| n.leader) else {
        return (nodes, Note::default());
    };
    if from_leader {
        return (nodes, Note::default());
    }
    let id = leader.id.clone();
    let Some(addr) = leader.endpoints.get("management").cloned() else {
        let note =
            format!("LIVE is known only on the leader {id} (it publishes no management endpoint)");
        return (nodes, Note(Some(note)));
    };
    let mut to_leader = rpc.clone();
    to_leader.rpc_addr = addr.clone();
    to_leader.zero_conf = false;
    let view = match connect(&to_leader).await {
        Ok(c) => c
            .nodes(&NodeFilter::default())
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    match view {
        Ok(view) => {
            for n in &mut nodes {
                if let Some(v) = view.iter().find(|v| v.id == n.id) {
                    n.liveness = v.liveness.clone();
                }
            }
            let note = format!("LIVE as the leader {id} sees it");
            (nodes, Note(Some(note)))
        }
        Err(e) => {
            let note = format!(
                "LIVE is known only on the leader {id} ({addr}), which did not answer: {e:#}"
            );
            (nodes, Note(Some(note)))
        }
    }
}

/// The members table, with the note under it.
pub(super) fn text(nodes: &[NodeEntry], note: &Note) -> String {
    let t = table(
        &[
            "NODE", "ADDRESS", "STATUS", "ROLE", "LIVE", "ZONE", "WEIGHT", "SHARDS",
        ],
        nodes
            .iter()
            .map(|n| {
                vec![
                    n.id.clone(),
                    n.endpoints
                        .get("gossip")
                        .cloned()
                        .unwrap_or_else(|| "-".into()),
                    n.gossip_status.clone(),
                    n.raft_role.clone(),
                    n.liveness.clone(),
                    dash(&n.zone),
                    n.weight.to_string(),
                    n.shards.to_string(),
                ]
            })
            .collect(),
    );
    match &note.0 {
        Some(n) => format!("{t}\n({n})"),
        None => t,
    }
}
