//! Lifeguard timing rules: the suspicion timeout that shrinks with
//! independent confirmations, and local health awareness.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

/// Base suspicion timeout (the floor): `mult * max(1, log10(max(1, n))) *
/// interval`, computed in milliseconds as memberlist does.
pub(crate) fn suspicion_timeout(mult: u32, n: usize, interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let ms = (scale * 1000.0).floor() as u128 * interval.as_millis() * mult as u128 / 1000;
    Duration::from_millis(ms as u64)
}

/// Timeout of a suspicion with `c` confirmations out of `k` expected:
/// `max - ln(c+1)/ln(k+1) * (max - min)`, floored to the millisecond, never
/// below `min`. With `k == 0` it is `min` at once.
pub(crate) fn suspicion_deadline_after(c: u32, k: u32, min: Duration, max: Duration) -> Duration {
    if k == 0 {
        return min;
    }
    let frac = ((c as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    let t = Duration::from_millis((raw * 1000.0).floor().max(0.0) as u64);
    t.max(min)
}

/// A running suspicion of one node.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    /// Incarnation the node is suspected at.
    pub(crate) incarnation: u64,
    start: Instant,
    min: Duration,
    max: Duration,
    k: u32,
    /// Nodes that have suspected it (the first one included, not counted as
    /// a confirmation).
    seen: BTreeSet<String>,
    confirmations: u32,
    /// When it turns into a failure.
    pub(crate) deadline: Instant,
}

impl Suspicion {
    pub(crate) fn new(
        from: &str,
        incarnation: u64,
        k: u32,
        min: Duration,
        max: Duration,
        now: Instant,
    ) -> Self {
        let timeout = if k == 0 { min } else { max };
        Suspicion {
            incarnation,
            start: now,
            min,
            max,
            k,
            seen: BTreeSet::from([from.to_string()]),
            confirmations: 0,
            deadline: now + timeout,
        }
    }

    /// Records an independent confirmation from `from`; true if it was new
    /// (and so shortened the deadline).
    pub(crate) fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations >= self.k || !self.seen.insert(from.to_string()) {
            return false;
        }
        self.confirmations += 1;
        self.deadline =
            self.start + suspicion_deadline_after(self.confirmations, self.k, self.min, self.max);
        true
    }

    #[cfg(test)]
    pub(crate) fn confirmations(&self) -> u32 {
        self.confirmations
    }
}

/// Lifeguard local health: a score in `0..max` raised when this node misses
/// acks or nacks it should have had (or has to refute a suspicion of
/// itself), lowered by successful probes. Timeouts are scaled by
/// `score + 1`.
#[derive(Debug, Clone)]
pub(crate) struct Awareness {
    max: u32,
    score: u32,
}

impl Awareness {
    pub(crate) fn new(max: u32) -> Self {
        Awareness {
            max: max.max(1),
            score: 0,
        }
    }

    pub(crate) fn apply(&mut self, delta: i32) {
        let s = (self.score as i64 + delta as i64).clamp(0, self.max as i64 - 1);
        self.score = s as u32;
    }

    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_timeout_matches_memberlist() {
        let s = Duration::from_secs(1);
        assert_eq!(suspicion_timeout(4, 0, s), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 1, s), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 10, s), Duration::from_secs(4));
        // log10(32) = 1.505 -> 1505 ms per interval.
        assert_eq!(suspicion_timeout(4, 32, s), Duration::from_millis(6020));
        assert_eq!(suspicion_timeout(4, 100, s), Duration::from_secs(8));
        assert_eq!(
            suspicion_timeout(3, 1000, Duration::from_millis(100)),
            Duration::from_millis(900)
        );
    }

    #[test]
    fn timeout_shrinks_with_confirmations() {
        let min = Duration::from_secs(2);
        let max = Duration::from_secs(30);
        assert_eq!(suspicion_deadline_after(0, 3, min, max), max);
        let one = suspicion_deadline_after(1, 3, min, max);
        let two = suspicion_deadline_after(2, 3, min, max);
        assert!(one < max && two < one && two > min);
        // ln(2)/ln(4) = 0.5: half way.
        assert_eq!(one, Duration::from_secs(16));
        assert_eq!(suspicion_deadline_after(3, 3, min, max), min);
        assert_eq!(suspicion_deadline_after(9, 3, min, max), min);
        assert_eq!(suspicion_deadline_after(0, 0, min, max), min);
    }

    #[test]
    fn suspicion_counts_distinct_confirmers_only() {
        let now = Instant::now();
        let min = Duration::from_secs(2);
        let max = Duration::from_secs(30);
        let mut s = Suspicion::new("a", 1, 3, min, max, now);
        assert_eq!(s.deadline, now + max);
        assert!(!s.confirm("a"), "the first suspector is not a confirmation");
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"), "duplicates do not count");
        assert_eq!(s.deadline, now + Duration::from_secs(16));
        assert!(s.confirm("c"));
        assert!(s.confirm("d"));
        assert_eq!(s.deadline, now + min);
        assert!(!s.confirm("e"), "no more than k confirmations");
        assert_eq!(s.confirmations(), 3);
        let s0 = Suspicion::new("a", 1, 0, min, max, now);
        assert_eq!(s0.deadline, now + min);
    }

    #[test]
    fn awareness_is_bounded_and_scales() {
        let mut a = Awareness::new(8);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(
            a.scale(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        a.apply(100);
        assert_eq!(a.score(), 7);
        a.apply(-2);
        assert_eq!(a.score(), 5);
    }
}
