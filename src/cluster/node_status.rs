//! The node task's status view, metrics refresh and shutdown: a child of
//! `node`, in its own file to keep the loop readable.

use std::sync::Arc;

use tokio::time::Duration;
use tracing::{debug, info, warn};

use super::Node;
use crate::cluster::view;
use crate::cluster::{ClusterEvent, NodeState};

impl Node {
    pub(super) fn view_input(&self) -> view::Input<'_> {
        let live = self
            .checker
            .as_ref()
            .map(|(c, _)| c.watch().borrow().clone());
        view::Input {
            me: &self.me,
            cluster: &self.cfg.cluster_name,
            members: &self.members,
            membership: self.membership.as_ref(),
            leader: self.leader.as_deref(),
            is_leader: self.lead.is_active(),
            liveness: live,
            committed: self.follow.committed().map(Arc::as_ref),
            registry: self
                .cluster_state
                .as_ref()
                .map(|s| s.borrow().members.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) async fn refresh_status(&mut self) {
        let infos = self.node_infos();
        let role = *self.role_tx.borrow();
        let state = *self.state_tx.borrow();
        let mut view = view::status(
            &self.cfg,
            &infos,
            self.follow.cluster_id().map(str::to_string),
            self.leader.clone(),
            role,
            state,
            self.follow.committed().map(Arc::as_ref),
            self.follow.pending().map(Arc::as_ref),
            self.started.elapsed(),
        );
        view::update_metrics(
            &self.metrics,
            &self.members,
            self.membership.as_ref(),
            &infos,
            self.lead.is_active(),
        );
        if let Ok(stats) = self.gossip.stats().await {
            view::gossip_metrics(&self.metrics, &stats);
            let health = view::gossip_health(&stats, self.cfg.gossip.queue_depth_warning);
            self.metrics.gossip_health.observe(&health);
            let was_valid = self
                .status_tx
                .borrow()
                .gossip
                .as_ref()
                .is_none_or(|g| g.view_valid);
            if was_valid != health.view_valid {
                self.emit(ClusterEvent::ViewValidity {
                    valid: health.view_valid,
                    lighthouses_alive: health.lighthouses_alive,
                });
            }
            view.gossip = Some(health);
        }
        let mut liveness_bad = self.responder.as_ref().map_or(0, |r| r.stats().bad);
        if let Some((c, _)) = &self.checker {
            liveness_bad += c.stats().await.map_or(0, |s| s.bad_packets);
        }
        self.metrics
            .liveness_bad_packets
            .observe_total(liveness_bad);
        if let Some(c) = self.raft.as_ref().and_then(|r| r.listener_counts()) {
            self.metrics
                .raft_unauthenticated_calls
                .observe_total(c.unauthenticated);
            self.metrics
                .raft_connections_closed
                .observe_totals(c.closed());
            self.metrics
                .cidr_refused
                .observe_total("raft", c.cidr_refused);
        }
        self.status_tx.send_replace(view);
    }

    pub(super) async fn shutdown(&mut self) {
        self.set_state(NodeState::Stopping);
        if self.lead.is_active() {
            let _ = self.step_down().await;
        }
        if let Some((d, _)) = self.discovery.take() {
            let _ = d.withdraw();
            d.shutdown().await;
        }
        if let Err(e) = self.gossip.leave(Duration::from_secs(1)).await {
            debug!(error = %e, "gossip leave");
        }
        self.teardown().await;
    }

    /// Ends every task (no drain, hand-over or leave: a crash goes
    /// straight here).
    pub(super) async fn teardown(&mut self) {
        if let Some((d, _)) = self.discovery.take() {
            d.shutdown().await;
        }
        self.jobs.shutdown().await;
        if let Some(raft) = self.raft.take() {
            if let Err(e) = raft.shutdown().await {
                warn!(error = %e, "raft shutdown");
            }
        }
        if let Some((c, _)) = self.checker.take() {
            c.shutdown().await;
        }
        if let Some(r) = self.responder.take() {
            r.shutdown().await;
        }
        let _ = self.gossip.shutdown().await;
        info!("stopped");
    }
}
