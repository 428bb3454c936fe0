//! Admission to Raft, pure state for the leader: a node the membership plan
//! would add joins only after it passed the admission check at the address
//! it is added with (see [`crate::raft::admit`]). One that fails is left out
//! and checked again after a pause that doubles up to [`RETRY_MAX`]; its
//! first refusal (and each change of reason or address) is logged at
//! `warn`, repeats only at `debug`. Nothing about it reaches the Raft log,
//! so a node that can never take part causes no membership or map churn.

use std::collections::BTreeMap;

use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use crate::raft::{AdmitError, NodeId, RaftNodeInfo};

/// First pause before a refused node is checked again.
pub(super) const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest pause between two checks of a refused node.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(30);
/// A passed check is used for an add within this long, else made again.
const PASS_VALID: Duration = Duration::from_secs(10);

struct Refused {
    addr: String,
    reason: &'static str,
    pause: Duration,
    retry_at: Instant,
}

/// The leader's admission state.
#[derive(Default)]
pub(super) struct Admission {
    /// Passed checks: node -> (address, when).
    passed: BTreeMap<String, (String, Instant)>,
    /// Checks in flight: node -> address.
    checking: BTreeMap<String, String>,
    refused: BTreeMap<String, Refused>,
}

impl Admission {
    /// Splits the nodes the membership plan would add into those that
    /// passed the check at that address (add them now) and those to check
    /// now; nodes whose check is in flight or paused are in neither.
    pub fn split(
        &mut self,
        add: Vec<(NodeId, RaftNodeInfo)>,
        now: Instant,
    ) -> (Vec<(NodeId, RaftNodeInfo)>, Vec<RaftNodeInfo>) {
        let (mut ready, mut check) = (Vec::new(), Vec::new());
        for (id, info) in add {
            let passed = self
                .passed
                .get(&info.name)
                .is_some_and(|(a, at)| *a == info.addr && now < *at + PASS_VALID);
            if passed {
                ready.push((id, info));
                continue;
            }
            if self.checking.contains_key(&info.name) {
                continue;
            }
            let paused = self
                .refused
                .get(&info.name)
                .is_some_and(|r| r.addr == info.addr && now < r.retry_at);
            if !paused {
                self.checking.insert(info.name.clone(), info.addr.clone());
                check.push(info);
            }
        }
        (ready, check)
    }

    /// These nodes are being added: a later add checks them again.
    pub fn added<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for n in names {
            self.passed.remove(n);
        }
    }

    /// A check of `info` finished. True when it is a refusal logged at
    /// `warn` (the first for this node, reason and address).
    pub fn on_result(
        &mut self,
        info: &RaftNodeInfo,
        result: &Result<(), AdmitError>,
        now: Instant,
    ) -> bool {
        self.checking.remove(&info.name);
        let e = match result {
            Ok(()) => {
                if self.refused.remove(&info.name).is_some() {
                    info!(node = %info.name, addr = %info.addr, "admission check passed after refusals");
                }
                self.passed
                    .insert(info.name.clone(), (info.addr.clone(), now));
                return false;
            }
            Err(e) => e,
        };
        let prev = self
            .refused
            .get(&info.name)
            .filter(|r| r.reason == e.as_str() && r.addr == info.addr);
        let pause = prev.map_or(RETRY_FIRST, |r| (r.pause * 2).min(RETRY_MAX));
        let first = prev.is_none();
        if first {
            warn!(node = %info.name, addr = %info.addr, reason = e.as_str(), error = %e,
                "left out of Raft: the admission check failed");
        } else {
            debug!(node = %info.name, reason = e.as_str(), retry_in_s = pause.as_secs(), "admission check failed again");
        }
        self.refused.insert(
            info.name.clone(),
            Refused {
                addr: info.addr.clone(),
                reason: e.as_str(),
                pause,
                retry_at: now + pause,
            },
        );
        first
    }

    /// Leadership changed: checks in flight are forgotten (their results
    /// still arrive and are recorded); refusals stay, so they are not
    /// logged again.
    pub fn reset(&mut self) {
        self.checking.clear();
        self.passed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, addr: &str) -> (NodeId, RaftNodeInfo) {
        (1, RaftNodeInfo::new(name.to_string(), addr.to_string()))
    }

    fn names(v: &[RaftNodeInfo]) -> Vec<&str> {
        v.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn only_a_passed_node_is_added_and_a_refused_one_waits_longer_each_time() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        let (ready, check) = a.split(vec![node("n4", "a:1"), node("p", "a:2")], t0);
        assert!(ready.is_empty());
        assert_eq!(names(&check), ["n4", "p"]);
        // In flight: not checked twice.
        let (ready, check) = a.split(vec![node("n4", "a:1"), node("p", "a:2")], t0);
        assert!(ready.is_empty() && check.is_empty());
        assert!(!a.on_result(&node("n4", "a:1").1, &Ok(()), t0));
        let refused = Err(AdmitError::Unreachable("tls".into()));
        assert!(a.on_result(&node("p", "a:2").1, &refused, t0), "logged");
        let (ready, check) = a.split(vec![node("n4", "a:1"), node("p", "a:2")], t0);
        assert_eq!(ready.len(), 1);
        assert!(check.is_empty(), "p waits {RETRY_FIRST:?}");
        a.added(["n4"].into_iter());
        // The pause doubles per refusal, up to RETRY_MAX.
        let mut t = t0;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            let mut next = t;
            while a.split(vec![node("p", "a:2")], next).1.is_empty() {
                next += Duration::from_millis(500);
            }
            pauses.push((next - t).as_secs());
            // Logged once: repeats of the same refusal are not.
            assert!(!a.on_result(&node("p", "a:2").1, &refused, next));
            t = next;
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Another reason is logged again.
        let other = Err(AdmitError::Unauthenticated);
        a.split(vec![node("p", "a:2")], t + RETRY_MAX);
        assert!(a.on_result(&node("p", "a:2").1, &other, t + RETRY_MAX));
        // A node back at another address is checked at once.
        assert_eq!(a.split(vec![node("p", "a:3")], t).1.len(), 1);
    }

    #[test]
    fn a_pass_is_used_once_and_expires() {
        let t0 = Instant::now();
        let mut a = Admission::default();
        a.split(vec![node("n4", "a:1")], t0);
        a.on_result(&node("n4", "a:1").1, &Ok(()), t0);
        // Passed at another address: checked again.
        assert_eq!(a.split(vec![node("n4", "a:9")], t0).1.len(), 1);
        a.on_result(&node("n4", "a:9").1, &Ok(()), t0);
        assert_eq!(a.split(vec![node("n4", "a:9")], t0).0.len(), 1);
        let late = t0 + PASS_VALID;
        assert_eq!(a.split(vec![node("n4", "a:9")], late).1.len(), 1);
    }
}
