//! The node task's answers to the [`Cluster`](super::Cluster) handle's
//! requests: endpoints and weights (registry writes through the leader),
//! operator add/remove (the leader engine's rules), step-down, node lists,
//! counters, and the start of a graceful stop.

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use super::jobs;
use super::node::{Node, NodeStats};
use super::tags::NodeTags;
use super::{ClusterError, NodeState, Request};
use crate::gossip::endpoint_key;
use crate::raft::Command;

impl Node {
    pub(super) async fn on_request(&mut self, req: Request) {
        match req {
            Request::SetEndpoint(name, addr, reply) => {
                self.set_tag(&endpoint_key(&name), addr).await;
                let _ = reply.send(Ok(()));
            }
            Request::SetWeight(node, weight, reply) => match self.weight_command(node, weight) {
                Ok(cmd) => self.write_via_leader(cmd, Some(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::AddNode(node, reply) => {
                let now = Instant::now();
                let r = if !self.lead.is_active() {
                    Err(ClusterError::NotLeader(self.leader.clone()))
                } else {
                    self.with_leader(|l, ins| l.add_node(ins, node, now))
                };
                let _ = reply.send(r);
            }
            Request::RemoveNode(node, reply) => {
                let now = Instant::now();
                let r = if !self.lead.is_active() {
                    Err(ClusterError::NotLeader(self.leader.clone()))
                } else {
                    self.with_leader(|l, ins| l.remove_node(ins, node, now))
                };
                let _ = reply.send(r);
            }
            Request::StepDown(reply) => {
                // The hand-over takes an election timeout: don't hold up the
                // node task for it.
                match (self.lead.is_active(), self.raft.clone()) {
                    (true, Some(raft)) => {
                        let job = async move {
                            let _ = reply.send(jobs::hand_over(raft).await);
                        };
                        self.jobs.spawn(job.in_current_span());
                    }
                    _ => {
                        let _ = reply.send(Err(ClusterError::NotLeader(self.leader.clone())));
                    }
                }
            }
            Request::Nodes(reply) => {
                let _ = reply.send(self.node_infos());
            }
            Request::Stats(reply) => {
                let _ = reply.send(self.node_stats());
            }
        }
    }

    /// The counters of the runtime and of both engines.
    fn node_stats(&self) -> NodeStats {
        let c = &self.lead.counts;
        NodeStats {
            proposals: c.proposals,
            commits: c.commits,
            ack_timeouts: c.ack_timeouts,
            acks_sent: self.follow.acks_sent,
            acks_failed: self.stats.acks_failed,
            write_failures: c.write_failures,
            membership_failures: c.membership_failures,
            placement_refused: c.placement_refused,
            events_without_receivers: self.stats.events_without_receivers,
            handoff_dropped: self.handoff.as_ref().map_or(0, |h| h.dropped),
            handoff_release_timeouts: self.handoff.as_ref().map_or(0, |h| h.timeouts),
        }
    }

    /// The registry write that sets `node`'s weight.
    fn weight_command(&self, node: String, weight: u32) -> Result<Command, ClusterError> {
        let zone = self
            .members
            .iter()
            .find(|m| m.name == node)
            .map(|m| NodeTags::parse(&m.tags).zone)
            .ok_or_else(|| ClusterError::UnknownNode(node.clone()))?;
        Ok(Command::SetMember {
            name: node,
            weight,
            zone,
        })
    }

    /// Appends `cmd` through the leader in a job; the reply goes to `reply`.
    fn write_via_leader(
        &mut self,
        cmd: Command,
        reply: Option<oneshot::Sender<Result<(), ClusterError>>>,
    ) {
        match self.raft.clone() {
            Some(raft) => {
                let job = jobs::write_via_leader(raft, cmd, reply);
                self.jobs.spawn(job.in_current_span());
            }
            None => {
                if let Some(r) = reply {
                    let _ = r.send(Err(ClusterError::NotMember));
                }
            }
        }
    }

    pub(super) async fn step_down(&mut self) -> Result<(), ClusterError> {
        if !self.lead.is_active() {
            return Err(ClusterError::NotLeader(self.leader.clone()));
        }
        let raft = self.raft.clone().ok_or(ClusterError::NotMember)?;
        jobs::hand_over(raft).await
    }

    /// Starts a graceful stop: drains this node's shards (weight 0) when it
    /// owns any and other members can take them. Returns the deadline.
    pub(super) fn begin_stop(&mut self) -> Instant {
        self.set_state(NodeState::Stopping);
        let now = Instant::now();
        if !self.follow.must_drain(&self.members) {
            return now;
        }
        match self.weight_command(self.me.clone(), 0) {
            Ok(cmd) => {
                info!("draining before leaving");
                // A restart undoes this drain (see `restore`). A drain not
                // yet undone keeps the mark it already has.
                if let (Some(mark), None) = (&self.drain_mark, &self.undo_drain) {
                    let before = self
                        .cluster_state
                        .as_ref()
                        .and_then(|s| s.borrow().members.get(&self.me).map(|r| r.weight));
                    if let Err(e) = mark.write(before) {
                        warn!(error = %e, "could not record the drain; a restart will not undo it");
                    }
                }
                self.write_via_leader(cmd, None);
                now + self.cfg.drain_timeout
            }
            Err(_) => now,
        }
    }
}
