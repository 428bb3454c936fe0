//! Operator actions on gossip membership that need no Raft write: joining
//! more addresses at run time (`clusterfunk join`) and Serf's force-leave
//! (`clusterfunk force-leave [--prune]`). They act on this node's gossip,
//! which spreads the result to every node.

use tracing::info;

use super::{jobs, Cluster, ClusterError};
use crate::gossip::MemberStatus;

impl Cluster {
    /// Joins gossip through `addrs` (`host:port`; names are resolved) now,
    /// once (Serf's `join`). Returns how many answered; fails if none did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, ClusterError> {
        let resolved = jobs::resolve(addrs).await;
        if resolved.is_empty() {
            return Err(ClusterError::Unresolved(addrs.to_vec()));
        }
        let n = self
            .shared
            .gossip
            .join(&resolved)
            .await
            .map_err(ClusterError::from_gossip)?;
        info!(answered = n, "joined more addresses");
        Ok(n)
    }

    /// Serf's force-leave: marks the failed member `node` left on every
    /// node at once (no more reconnect attempts, no 24 h wait for the
    /// reaper); with `prune` every node forgets it (a member that already
    /// left can be pruned too). A node that is still alive is refused: it
    /// would rejoin at once.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), ClusterError> {
        let gossip = &self.shared.gossip;
        let status = gossip
            .members()
            .into_iter()
            .find(|m| m.name == node)
            .map(|m| m.status)
            .ok_or_else(|| ClusterError::UnknownNode(node.to_string()))?;
        let done = if prune {
            gossip.remove_failed_node_prune(node).await
        } else {
            gossip.remove_failed_node(node).await
        }
        .map_err(ClusterError::from_gossip)?;
        if !done {
            return Err(ClusterError::NotFailed {
                node: node.to_string(),
                status,
            });
        }
        info!(member = %node, prune, "forced to leave");
        Ok(())
    }

    /// Whether gossip here sees `node` failed (dead): what `RemoveNode`
    /// checks before it also force-leaves the node.
    pub fn is_failed(&self, node: &str) -> bool {
        self.shared
            .gossip
            .members()
            .iter()
            .any(|m| m.name == node && m.status == MemberStatus::Dead)
    }
}
