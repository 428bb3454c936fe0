//! The leader's side of the shard-map protocol, as pure state.
//!
//! After the leader appends `Propose{epoch, map}` it waits until every node
//! that must act on the map has acknowledged that epoch: the owners in the
//! new map and the live owners of the committed one that lose shards (they
//! confirm they stopped serving what they lose). An owner that loses shards
//! but is not live (dead, gone, excluded) is not waited for, but the commit
//! still waits until its serving lease has certainly ended (its bound, from
//! `RaftNode::lease_bound`). Then it appends `Commit{epoch}`. If some stay
//! silent past `ack_timeout`, they are excluded for a back-off period
//! (doubling while they keep failing) and a new proposal without them
//! follows, which again waits out their leases; when the back-off ends a
//! proposal with them follows at once.

use std::collections::{BTreeMap, BTreeSet};
use tokio::time::{Duration, Instant};

/// A proposal waiting for acknowledgements.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub epoch: u64,
    /// Nodes that must still acknowledge.
    pub waiting: BTreeSet<String>,
    /// Nodes not waited for, with the instant their lease certainly ended.
    lapse: BTreeMap<String, Instant>,
    deadline: Instant,
}

impl Pending {
    fn ready(&self, now: Instant) -> bool {
        self.waiting.is_empty() && self.lapse.values().all(|t| *t <= now)
    }
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
    /// These nodes' exclusion ended: propose again with them.
    Readmit(BTreeSet<String>),
}

/// Pending proposal plus the nodes excluded for not acknowledging.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pending: Option<Pending>,
    excluded: BTreeMap<String, Instant>,
    /// Exclusions in a row per node: each doubles the next back-off (up to
    /// 32 times the base), so a node that keeps failing to acknowledge
    /// costs a re-proposal ever more rarely, while one that was only cut
    /// off for a moment is back after the base back-off.
    strikes: BTreeMap<String, u32>,
}

impl Tracker {
    /// Records a new proposal (replacing any older one): `expected` must
    /// acknowledge; `lapse` are not waited for beyond their lease bounds.
    pub fn proposed(
        &mut self,
        epoch: u64,
        expected: BTreeSet<String>,
        lapse: BTreeMap<String, Instant>,
        now: Instant,
        ack_timeout: Duration,
    ) {
        self.pending = Some(Pending {
            epoch,
            waiting: expected,
            lapse,
            deadline: now + ack_timeout,
        });
    }

    /// The proposal in flight, if any.
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// An acknowledgement arrived; acks for other epochs are ignored.
    pub fn on_ack(&mut self, node: &str, epoch: u64, now: Instant) -> Step {
        match &mut self.pending {
            Some(p) if p.epoch == epoch => {
                // It acknowledges again: its next exclusion starts afresh.
                self.strikes.remove(node);
                p.waiting.remove(node);
                p.lapse.remove(node);
                if p.ready(now) {
                    Step::Commit(epoch)
                } else {
                    Step::Wait
                }
            }
            _ => Step::Wait,
        }
    }

    /// Checks the deadlines: silent nodes are excluded for `backoff`
    /// (doubled for each exclusion in a row); ended exclusions readmit.
    pub fn on_tick(&mut self, now: Instant, backoff: Duration) -> Step {
        let ended: BTreeSet<String> = self
            .excluded
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(n, _)| n.clone())
            .collect();
        self.excluded.retain(|_, until| *until > now);
        match &self.pending {
            Some(p) if p.ready(now) => Step::Commit(p.epoch),
            Some(p) if now >= p.deadline && !p.waiting.is_empty() => {
                let silent = p.waiting.clone();
                for n in &silent {
                    let strikes = self.strikes.entry(n.clone()).or_insert(0);
                    *strikes = (*strikes + 1).min(6);
                    let until = now + backoff * (1 << (*strikes - 1));
                    self.excluded.insert(n.clone(), until);
                }
                self.pending = None;
                Step::Repropose(silent)
            }
            _ if !ended.is_empty() => Step::Readmit(ended),
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
        // Acks arrive as events: time matters only for the ack deadline
        // while some are missing, and then for the last lapse bound.
        let pending = self.pending.as_ref().and_then(|p| {
            if p.waiting.is_empty() {
                p.lapse.values().copied().max()
            } else {
                Some(p.deadline)
            }
        });
        let exclusion = self.excluded.values().copied().min();
        match (pending, exclusion) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        let none = BTreeMap::new();
        t.proposed(7, set(&["a", "b"]), none, now, Duration::from_millis(500));
        assert_eq!(t.on_ack("a", 7, now), Step::Wait);
        assert_eq!(t.on_ack("b", 6, now), Step::Wait, "old epoch ignored");
        assert_eq!(t.on_ack("b", 7, now), Step::Commit(7));
        t.committed(7);
        assert!(t.pending().is_none());
    }

    #[test]
    fn silent_nodes_are_dropped_after_the_timeout() {
        let now = Instant::now();
        let mut t = Tracker::default();
        let none = BTreeMap::new();
        t.proposed(
            3,
            set(&["a", "b", "c"]),
            none,
            now,
            Duration::from_millis(500),
        );
        t.on_ack("a", 3, now);
        let backoff = Duration::from_secs(5);
        assert_eq!(
            t.on_tick(now + Duration::from_millis(499), backoff),
            Step::Wait
        );
        let later = now + Duration::from_millis(500);
        assert_eq!(t.on_tick(later, backoff), Step::Repropose(set(&["b", "c"])));
        assert!(t.is_excluded("b", later));
        assert!(!t.is_excluded("a", later));
        assert_eq!(t.next_deadline(), Some(later + backoff));
        assert_eq!(
            t.on_tick(later + backoff, backoff),
            Step::Readmit(set(&["b", "c"]))
        );
        assert!(!t.is_excluded("b", later + backoff));
        t.readmit("c");
        assert!(!t.is_excluded("c", later));
    }

    #[test]
    fn repeated_exclusions_back_off_and_an_acknowledgement_resets_them() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let base = ms(1000);
        let mut t = Tracker::default();
        let mut at = now;
        let mut lengths = Vec::new();
        for epoch in 1..=3 {
            t.proposed(epoch, set(&["x"]), BTreeMap::new(), at, ms(500));
            at += ms(500);
            assert_eq!(t.on_tick(at, base), Step::Repropose(set(&["x"])));
            let until = t.next_deadline().expect("excluded");
            lengths.push(until - at);
            at = until;
            assert_eq!(t.on_tick(at, base), Step::Readmit(set(&["x"])));
        }
        assert_eq!(lengths, vec![ms(1000), ms(2000), ms(4000)]);
        // It acknowledges a proposal: the next exclusion is the base again.
        t.proposed(4, set(&["x", "y"]), BTreeMap::new(), at, ms(500));
        t.on_ack("x", 4, at);
        t.proposed(5, set(&["x"]), BTreeMap::new(), at, ms(500));
        at += ms(500);
        t.on_tick(at, base);
        assert_eq!(t.next_deadline(), Some(at + base));
    }

    #[test]
    fn a_newer_proposal_replaces_the_old_one() {
        let now = Instant::now();
        let mut t = Tracker::default();
        let ms = Duration::from_millis;
        t.proposed(1, set(&["a"]), BTreeMap::new(), now, ms(500));
        t.proposed(2, set(&["a", "b"]), BTreeMap::new(), now, ms(500));
        assert_eq!(t.on_ack("a", 1, now), Step::Wait);
        assert_eq!(t.on_ack("a", 2, now), Step::Wait);
        assert_eq!(t.on_ack("b", 2, now), Step::Commit(2));
    }

    #[test]
    fn a_losing_owner_that_is_not_waited_for_still_has_its_lease_waited_out() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Tracker::default();
        let lapse = BTreeMap::from([("dead".to_string(), now + ms(120))]);
        t.proposed(4, set(&["a"]), lapse, now, ms(500));
        // Until "a" answers only the ack deadline matters; then the lapse.
        assert_eq!(t.next_deadline(), Some(now + ms(500)));
        assert_eq!(t.on_ack("a", 4, now + ms(10)), Step::Wait, "lease runs");
        assert_eq!(t.next_deadline(), Some(now + ms(120)));
        assert_eq!(t.on_tick(now + ms(119), ms(5000)), Step::Wait);
        assert_eq!(t.on_tick(now + ms(120), ms(5000)), Step::Commit(4));
        // An acknowledgement from it ends the wait at once.
        let lapse = BTreeMap::from([("slow".to_string(), now + ms(120))]);
        t.proposed(5, set(&["a"]), lapse, now, ms(500));
        t.on_ack("a", 5, now);
        assert_eq!(t.on_ack("slow", 5, now + ms(1)), Step::Commit(5));
    }
}
