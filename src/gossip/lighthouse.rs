//! Lighthouses (Seafoam's `RankLighthouse`): nodes that MUST be part of
//! the cluster. A node started with `GossipConfig::lighthouse` publishes
//! the tag [`LIGHTHOUSE_TAG`]; every node remembers the lighthouses it has
//! seen, and its view of the cluster is valid only while at least one of
//! them is alive or suspect in it. A view that has lost every lighthouse
//! (a partition cut this node off from all of them, or they all failed) is
//! reported invalid ([`ViewValidity`]), so clients stop routing on it.
//!
//! A lighthouse that leaves gracefully is forgotten (the operator removed
//! it); one that fails is remembered even after it is reaped, so a cut-off
//! side never turns valid again by forgetting. A node that has never seen a
//! lighthouse has nothing to check and counts as valid; a lighthouse's own
//! view always contains itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::member::MemberStatus;

/// Tag published by lighthouse nodes (value `1`).
pub const LIGHTHOUSE_TAG: &str = "cf.lighthouse";

/// Whether a node's gossip view holds a lighthouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ViewValidity {
    /// False when lighthouses are known and none of them is alive or
    /// suspect: this node is cut off from the cluster that matters.
    pub valid: bool,
    /// Lighthouses this node knows of (itself included if it is one).
    pub lighthouses_known: usize,
    /// Of those, how many are alive or suspect now.
    pub lighthouses_alive: usize,
}

impl Default for ViewValidity {
    fn default() -> Self {
        ViewValidity {
            valid: true,
            lighthouses_known: 0,
            lighthouses_alive: 0,
        }
    }
}

/// True if `tags` mark a lighthouse.
pub(crate) fn is_lighthouse(tags: &BTreeMap<String, String>) -> bool {
    tags.get(LIGHTHOUSE_TAG).is_some_and(|v| v == "1")
}

/// The lighthouses a node has seen, and the validity they give its view.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lighthouses {
    known: BTreeSet<String>,
}

impl Lighthouses {
    /// A member was announced (alive) with `tags`.
    pub(crate) fn saw(&mut self, name: &str, tags: &BTreeMap<String, String>) {
        if is_lighthouse(tags) {
            if !self.known.contains(name) {
                tracing::info!(lighthouse = %name, "lighthouse seen");
                self.known.insert(name.to_string());
            }
        } else {
            self.known.remove(name);
        }
    }

    /// A member left gracefully (or was pruned): no longer required.
    pub(crate) fn forget(&mut self, name: &str) {
        self.known.remove(name);
    }

    /// The validity of a view in which `status` gives each member's state
    /// (`None`: not in the member table any more).
    pub(crate) fn validity(&self, status: impl Fn(&str) -> Option<MemberStatus>) -> ViewValidity {
        let alive = self
            .known
            .iter()
            .filter(|n| status(n).is_some_and(|s| !s.is_gone()))
            .count();
        ViewValidity {
            valid: self.known.is_empty() || alive > 0,
            lighthouses_known: self.known.len(),
            lighthouses_alive: alive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(l: bool) -> BTreeMap<String, String> {
        let mut t = BTreeMap::new();
        if l {
            t.insert(LIGHTHOUSE_TAG.to_string(), "1".to_string());
        }
        t
    }

    #[test]
    fn validity_follows_the_lighthouses_seen() {
        let mut l = Lighthouses::default();
        let none = |_: &str| None;
        assert!(
            l.validity(none).valid,
            "no lighthouse known: nothing to check"
        );
        l.saw("a", &tags(false));
        l.saw("lh", &tags(true));
        let v = l.validity(|n| (n == "lh").then_some(MemberStatus::Suspect));
        assert_eq!(
            (v.valid, v.lighthouses_known, v.lighthouses_alive),
            (true, 1, 1)
        );
        let v = l.validity(|n| (n == "lh").then_some(MemberStatus::Dead));
        assert!(!v.valid);
        // Reaped (no longer listed): still required.
        assert!(!l.validity(none).valid);
        // Tag removed, or graceful leave: forgotten.
        l.saw("lh", &tags(false));
        assert!(l.validity(none).valid);
        l.saw("lh", &tags(true));
        l.forget("lh");
        assert_eq!(l.validity(none), ViewValidity::default());
    }
}
