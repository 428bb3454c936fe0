//! Starting and stopping in-process clusters: one way for every test.

use clusterfunk::cluster::Seams;
use clusterfunk::{Agent, Config};

/// Starts `n` nodes one after another on `seams` (default: real loopback
/// sockets): node `i` from `config(i)`, every node after the first also
/// joining the first's gossip address.
pub async fn start_agents(
    n: usize,
    seams: Seams,
    mut config: impl FnMut(usize) -> Config,
) -> Vec<Agent> {
    let mut nodes: Vec<Agent> = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = config(i);
        if let Some(first) = nodes.first() {
            c.join = vec![first.local_endpoints()["gossip"].to_string()];
        }
        let node = Agent::start_with(c, seams.clone())
            .await
            .unwrap_or_else(|e| panic!("start node {i}: {e}"));
        nodes.push(node);
    }
    nodes
}

/// Stops followers first, then the leader, so that each drain has a leader
/// to go through (a node stopping just after the leader waits out its
/// drain timeout).
pub async fn stop_all(nodes: &[Agent]) {
    let leader = nodes.iter().find_map(|n| n.leader());
    let (lead, rest): (Vec<&Agent>, Vec<&Agent>) = nodes
        .iter()
        .partition(|n| Some(n.node_id()) == leader.as_deref());
    for n in rest.into_iter().chain(lead) {
        n.stop().await;
    }
}
