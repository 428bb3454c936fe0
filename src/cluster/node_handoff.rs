//! The node task's side of the hand-off hooks (see
//! [`handoff`](super::super::handoff)): a proposal's acknowledgement waits
//! for the service's release, a commit withholds acquired shards before
//! the serving set that contains them is published.

use std::sync::Arc;

use super::super::handoff::Release;
use super::super::jobs::Done;
use super::Node;
use crate::shards::ShardMap;

impl Node {
    /// Acknowledges `epoch`, after the service released what it loses when
    /// a hand-off is registered.
    pub(in crate::cluster) async fn ack_after_release(&mut self, epoch: u64) {
        let pending = self
            .follow
            .pending()
            .filter(|p| p.epoch() == epoch)
            .cloned();
        let release = match (self.handoff.as_mut(), pending) {
            (Some(h), Some(p)) => {
                h.proposed(&self.me, self.follow.committed().map(Arc::as_ref), &p)
            }
            _ => None,
        };
        match release {
            Some(Release {
                epoch,
                done,
                deadline,
            }) => self.spawn(async move {
                let in_time = tokio::time::timeout(deadline, done).await.is_ok();
                Done::Released { epoch, in_time }
            }),
            None => self.send_ack(epoch).await,
        }
    }

    /// The service's release of `epoch` finished (or its deadline passed).
    pub(in crate::cluster) async fn on_released(&mut self, epoch: u64, in_time: bool) {
        if !in_time {
            tracing::warn!(
                epoch,
                "hand-off release ran past its deadline; acknowledging"
            );
            if let Some(h) = self.handoff.as_mut() {
                h.timeouts += 1;
            }
        }
        self.send_ack(epoch).await;
    }

    /// A map was committed over `previous`: withholds and announces what
    /// this node acquires.
    pub(in crate::cluster) fn handoff_committed(
        &mut self,
        previous: Option<&ShardMap>,
        map: &ShardMap,
    ) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let members = &self.members;
        let endpoint = |node: &str, name: &str| {
            let key = crate::gossip::endpoint_key(name);
            members
                .iter()
                .find(|m| m.name == node)
                .and_then(|m| m.tags.get(&key).cloned())
        };
        h.committed(&self.me, previous, map, endpoint);
    }
}
