//! Counters fed from cumulative totals, and state-set gauges.
//!
//! Other modules (gossip in particular) keep their own running totals and
//! publish snapshots of them. Prometheus counters only go up, so these
//! helpers remember the last total seen and add the difference.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

/// How much to add to a counter when the source moves from `previous` to
/// `total`.
///
/// A total smaller than the previous one means the source restarted from zero
/// (a new gossip instance, say): the counter never goes down, and the events
/// counted since that restart (`total`) are added, as Prometheus' own
/// `rate()` treats a counter reset.
pub fn delta_from_totals(previous: u64, total: u64) -> u64 {
    if total >= previous {
        total - previous
    } else {
        total
    }
}

/// An [`IntCounter`] that follows a cumulative total kept elsewhere.
///
/// Cheap to clone; clones share the counter and the remembered total.
#[derive(Clone, Debug)]
pub struct CumulativeCounter {
    counter: IntCounter,
    last: Arc<AtomicU64>,
}

impl CumulativeCounter {
    /// Wraps `counter`; the first total observed is added whole.
    pub fn new(counter: IntCounter) -> Self {
        Self {
            counter,
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records the source's current cumulative `total` and adds the
    /// difference to the previous one (see [`delta_from_totals`]).
    pub fn observe_total(&self, total: u64) {
        let previous = self.last.swap(total, Ordering::AcqRel);
        let delta = delta_from_totals(previous, total);
        if delta > 0 {
            self.counter.inc_by(delta);
        }
    }

    /// The underlying counter, e.g. to increment it directly.
    pub fn counter(&self) -> &IntCounter {
        &self.counter
    }

    /// The counter's current value.
    pub fn get(&self) -> u64 {
        self.counter.get()
    }
}

/// An [`IntCounterVec`] with one label whose children follow cumulative
/// totals kept elsewhere (e.g. gossip messages sent, per message type).
#[derive(Clone, Debug)]
pub struct CumulativeCounterVec {
    counters: IntCounterVec,
    last: Arc<Mutex<HashMap<String, u64>>>,
}

impl CumulativeCounterVec {
    /// Wraps `counters`, which must have exactly one variable label.
    pub fn new(counters: IntCounterVec) -> Self {
        Self {
            counters,
            last: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records the cumulative `total` for `label` and adds the difference.
    pub fn observe_total(&self, label: &str, total: u64) {
        let delta = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let previous = last.insert(label.to_owned(), total).unwrap_or(0);
            delta_from_totals(previous, total)
        };
        // Touch the child even for a zero delta so the series exists.
        let child = self.counters.with_label_values(&[label]);
        if delta > 0 {
            child.inc_by(delta);
        }
    }

    /// Records several `(label, total)` pairs from one snapshot.
    pub fn observe_totals<'a, I>(&self, totals: I)
    where
        I: IntoIterator<Item = (&'a str, u64)>,
    {
        for (label, total) in totals {
            self.observe_total(label, total);
        }
    }

    /// The underlying counter vector.
    pub fn counters(&self) -> &IntCounterVec {
        &self.counters
    }

    /// The current value for `label` (0 if never seen).
    pub fn get(&self, label: &str) -> u64 {
        self.counters.with_label_values(&[label]).get()
    }
}

/// A gauge vector in OpenMetrics "state set" style: one series per possible
/// state, 1 for the current state and 0 for every other.
#[derive(Clone, Debug)]
pub struct StateSet {
    gauges: IntGaugeVec,
    seen: Arc<Mutex<BTreeSet<String>>>,
}

impl StateSet {
    /// Wraps `gauges` (one variable label) and exposes every `known` state
    /// at 0 so dashboards see the full set from the first scrape.
    pub fn new(gauges: IntGaugeVec, known: &[&str]) -> Self {
        let mut seen = BTreeSet::new();
        for state in known {
            let label = state_label(state);
            gauges.with_label_values(&[label.as_str()]).set(0);
            seen.insert(label);
        }
        Self {
            gauges,
            seen: Arc::new(Mutex::new(seen)),
        }
    }

    /// Makes `state` the current one. The name is normalised to snake_case
    /// (`"NonMember"` and `"non_member"` are the same state), so callers may
    /// pass their enum's `Debug` name.
    pub fn set(&self, state: &str) {
        let current = state_label(state);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Raise the new state before lowering the others: a scrape in between
        // sees two states at 1 rather than none.
        self.gauges.with_label_values(&[current.as_str()]).set(1);
        for other in seen.iter().filter(|s| **s != current) {
            self.gauges.with_label_values(&[other.as_str()]).set(0);
        }
        seen.insert(current);
    }

    /// The label currently at 1, if any.
    pub fn current(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .find(|s| self.gauges.with_label_values(&[s.as_str()]).get() == 1)
            .cloned()
    }

    /// The underlying gauge vector.
    pub fn gauges(&self) -> &IntGaugeVec {
        &self.gauges
    }
}

/// Normalises a state or status name to a snake_case label value:
/// `"Operational"` → `"operational"`, `"NonMember"` → `"non_member"`.
pub fn state_label(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower_or_digit = false;
    for c in name.trim().chars() {
        if c.is_ascii_uppercase() {
            if prev_lower_or_digit {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower_or_digit = false;
        } else if c == '-' || c == ' ' {
            out.push('_');
            prev_lower_or_digit = false;
        } else {
            out.push(c);
            prev_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};

    #[test]
    fn delta_is_difference_or_reset() {
        assert_eq!(delta_from_totals(0, 5), 5);
        assert_eq!(delta_from_totals(5, 5), 0);
        assert_eq!(delta_from_totals(5, 12), 7);
        // restart: the source counts from zero again
        assert_eq!(delta_from_totals(12, 3), 3);
        assert_eq!(delta_from_totals(12, 0), 0);
    }

    #[test]
    fn cumulative_counter_adds_only_difference_and_never_decreases() {
        let c = CumulativeCounter::new(IntCounter::new("x_total", "x").unwrap());
        c.observe_total(10);
        assert_eq!(c.get(), 10);
        c.observe_total(10);
        assert_eq!(c.get(), 10);
        c.observe_total(15);
        assert_eq!(c.get(), 15);
        // source restarted and has counted 4 since: never go down
        c.observe_total(4);
        assert_eq!(c.get(), 19);
        c.observe_total(6);
        assert_eq!(c.get(), 21);
        c.observe_total(0);
        assert_eq!(c.get(), 21);
    }

    #[test]
    fn cumulative_counter_vec_tracks_labels_separately() {
        let v = CumulativeCounterVec::new(
            IntCounterVec::new(Opts::new("m_total", "m"), &["type"]).unwrap(),
        );
        v.observe_totals([("ping", 3), ("ack", 2)]);
        v.observe_totals([("ping", 5), ("ack", 2)]);
        assert_eq!(v.get("ping"), 5);
        assert_eq!(v.get("ack"), 2);
        v.observe_total("ping", 1);
        assert_eq!(v.get("ping"), 6);
        assert_eq!(v.get("ack"), 2);
    }

    #[test]
    fn state_set_has_exactly_one_current_state() {
        let s = StateSet::new(
            IntGaugeVec::new(Opts::new("s", "s"), &["state"]).unwrap(),
            &["starting", "operational"],
        );
        assert_eq!(s.current(), None);
        s.set("Starting");
        assert_eq!(s.current().as_deref(), Some("starting"));
        s.set("Operational");
        assert_eq!(s.current().as_deref(), Some("operational"));
        assert_eq!(s.gauges().with_label_values(&["starting"]).get(), 0);
        s.set("NonMember");
        assert_eq!(s.current().as_deref(), Some("non_member"));
        assert_eq!(s.gauges().with_label_values(&["operational"]).get(), 0);
    }

    #[test]
    fn state_labels_are_snake_case() {
        assert_eq!(state_label("Operational"), "operational");
        assert_eq!(state_label("NonMember"), "non_member");
        assert_eq!(state_label("non_member"), "non_member");
        assert_eq!(state_label("HTTP2Peer"), "http2_peer");
    }
}
