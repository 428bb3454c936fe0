//! The leader's side of the shard-map protocol, as pure state.
//!
//! After the leader appends `Propose{epoch, map}` it waits until every node
//! that must act on the map has acknowledged that epoch: the owners in the
//! new map and the live owners of the previous one (they must confirm they
//! stopped serving what they lose). Then it appends `Commit{epoch}`. If some
//! stay silent past `ack_timeout`, they are excluded for a back-off period
//! and a new proposal without them follows; a silent node has stopped
//! serving by then, because its serving lease is shorter than `ack_timeout`.

use std::collections::{BTreeMap, BTreeSet};
use tokio::time::{Duration, Instant};

/// A proposal waiting for acknowledgements.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub epoch: u64,
    pub waiting: BTreeSet<String>,
    deadline: Instant,
}

/// What the leader does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do yet.
    Wait,
    /// Every expected node acknowledged: append `Commit{epoch}`.
    Commit(u64),
    /// The deadline passed: these nodes are excluded; propose again.
    Repropose(BTreeSet<String>),
}

/// Pending proposal plus the nodes excluded for not acknowledging.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pending: Option<Pending>,
    excluded: BTreeMap<String, Instant>,
}

impl Tracker {
    /// Records a new proposal (replacing any older one).
    pub fn proposed(
        &mut self,
        epoch: u64,
        expected: BTreeSet<String>,
        now: Instant,
        ack_timeout: Duration,
    ) {
        self.pending = Some(Pending {
            epoch,
            waiting: expected,
            deadline: now + ack_timeout,
        });
    }

    /// The proposal in flight, if any.
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// An acknowledgement arrived; acks for other epochs are ignored.
    pub fn on_ack(&mut self, node: &str, epoch: u64) -> Step {
        match &mut self.pending {
            Some(p) if p.epoch == epoch => {
                p.waiting.remove(node);
                if p.waiting.is_empty() {
                    Step::Commit(epoch)
                } else {
                    Step::Wait
                }
            }
            _ => Step::Wait,
        }
    }

    /// Checks the deadline: silent nodes are excluded until `now + backoff`.
    pub fn on_tick(&mut self, now: Instant, backoff: Duration) -> Step {
        self.excluded.retain(|_, until| *until > now);
        match &self.pending {
            Some(p) if p.waiting.is_empty() => Step::Commit(p.epoch),
            Some(p) if now >= p.deadline => {
                let silent = p.waiting.clone();
                for n in &silent {
                    self.excluded.insert(n.clone(), now + backoff);
                }
                self.pending = None;
                Step::Repropose(silent)
            }
            _ => Step::Wait,
        }
    }

    /// The commit for `epoch` was appended: the proposal is done.
    pub fn committed(&mut self, epoch: u64) {
        if self.pending.as_ref().is_some_and(|p| p.epoch <= epoch) {
            self.pending = None;
        }
    }

    /// Whether `node` is excluded from maps for now.
    pub fn is_excluded(&self, node: &str, now: Instant) -> bool {
        self.excluded.get(node).is_some_and(|until| *until > now)
    }

    /// Lifts an exclusion (the node proved it is healthy again).
    pub fn readmit(&mut self, node: &str) {
        self.excluded.remove(node);
    }

    /// Leadership lost: forget the proposal (the next leader replaces it).
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// When the tracker next needs a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commits_when_every_node_acked() {
        let now = Instant::now();
        let mut t = Tracker::default();
        t.proposed(7, set(&["a", "b"]), now, Duration::from_millis(500));
        assert_eq!(t.on_ack("a", 7), Step::Wait);
        assert_eq!(t.on_ack("b", 6), Step::Wait, "old epoch ignored");
        assert_eq!(t.on_ack("b", 7), Step::Commit(7));
        t.committed(7);
        assert!(t.pending().is_none());
    }

    #[test]
    fn silent_nodes_are_dropped_after_the_timeout() {
        let now = Instant::now();
        let mut t = Tracker::default();
        t.proposed(3, set(&["a", "b", "c"]), now, Duration::from_millis(500));
        t.on_ack("a", 3);
        let backoff = Duration::from_secs(5);
        assert_eq!(
            t.on_tick(now + Duration::from_millis(499), backoff),
            Step::Wait
        );
        let later = now + Duration::from_millis(500);
        assert_eq!(t.on_tick(later, backoff), Step::Repropose(set(&["b", "c"])));
        assert!(t.is_excluded("b", later));
        assert!(!t.is_excluded("a", later));
        assert!(!t.is_excluded("b", later + backoff));
        t.readmit("c");
        assert!(!t.is_excluded("c", later));
    }

    #[test]
    fn a_newer_proposal_replaces_the_old_one() {
        let now = Instant::now();
        let mut t = Tracker::default();
        t.proposed(1, set(&["a"]), now, Duration::from_millis(500));
        t.proposed(2, set(&["a", "b"]), now, Duration::from_millis(500));
        assert_eq!(t.on_ack("a", 1), Step::Wait);
        assert_eq!(t.on_ack("a", 2), Step::Wait);
        assert_eq!(t.on_ack("b", 2), Step::Commit(2));
    }
}
