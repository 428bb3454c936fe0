//! Raft membership, pure logic for the leader: who joins as a learner, who
//! votes, who leaves.
//!
//! [`plan`] adds every compatible Raft-capable gossip member as a learner
//! (same cluster name, same or no cluster id, not removed), points members
//! restarted on new ports at their new address, removes members that left,
//! were removed or are gone past the grace, and [`choose`]s the voters: at
//! most `max_voters` (odd), spread over zones. Current voters that are still healthy keep
//! their vote (no churn); missing places are filled from the least
//! represented zones; with more voters than the target the ones in the most
//! represented zones are demoted. The leader always keeps its vote.

use std::collections::{BTreeMap, BTreeSet};

use super::ids::raft_id;
use super::tags::NodeTags;
use crate::gossip::{Member, MemberStatus};
use crate::raft::{Membership, NodeId, RaftNodeInfo};

/// A membership change for the node task to carry out, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MembershipChange {
    /// Members restarted on new ports: their new Raft addresses.
    pub readdress: BTreeMap<NodeId, RaftNodeInfo>,
    /// New members, added as learners.
    pub add: Vec<(NodeId, RaftNodeInfo)>,
    /// The new voter set, when it changes.
    pub voters: Option<BTreeSet<NodeId>>,
    /// Members leaving Raft.
    pub remove: BTreeSet<NodeId>,
}

impl MembershipChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.readdress.is_empty()
            && self.add.is_empty()
            && self.voters.is_none()
            && self.remove.is_empty()
    }
}

/// What the membership plan reads.
pub(crate) struct Facts<'a> {
    /// The leader.
    pub me: &'a str,
    pub cluster: &'a str,
    pub cluster_id: Option<&'a str>,
    pub members: &'a [Member],
    pub membership: &'a Membership,
    pub max_voters: usize,
    /// Removed by an operator.
    pub removed: &'a BTreeSet<String>,
    /// Whether a Raft member may vote (not gone, not dead too long).
    pub healthy: &'a dyn Fn(&str) -> bool,
    /// Whether a member has been gone from gossip past the removal grace.
    pub gone_long: &'a dyn Fn(&str) -> bool,
}

/// The change that brings the membership in line with `f`, with the new
/// voters by name; `None` when it already is.
pub(crate) fn plan(f: &Facts) -> Option<(MembershipChange, BTreeSet<String>)> {
    let ms = f.membership;
    let in_raft: BTreeMap<String, u64> = ms.nodes().map(|(id, n)| (n.name.clone(), *id)).collect();
    let mut add = Vec::new();
    for m in f.members {
        let t = NodeTags::parse(&m.tags);
        let compatible = t.cluster == f.cluster
            && t.raft_capable()
            && (t.cluster_id.is_none() || t.cluster_id.as_deref() == f.cluster_id);
        if compatible
            && !m.status.is_gone()
            && !in_raft.contains_key(&m.name)
            && !f.removed.contains(&m.name)
        {
            if let Some(addr) = t.raft_addr {
                add.push((raft_id(&m.name), RaftNodeInfo::new(m.name.clone(), addr)));
            }
        }
    }
    // A member restarted on new ports: point Raft at its new address.
    let mut readdress = BTreeMap::new();
    for (id, info) in ms.nodes() {
        let now_at = f
            .members
            .iter()
            .find(|m| m.name == info.name && !m.status.is_gone())
            .and_then(|m| NodeTags::parse(&m.tags).raft_addr);
        if let Some(addr) = now_at.filter(|a| *a != info.addr) {
            readdress.insert(*id, RaftNodeInfo::new(info.name.clone(), addr));
        }
    }
    let mut remove = BTreeSet::new();
    for (name, id) in &in_raft {
        if name == f.me {
            continue;
        }
        let left = f
            .members
            .iter()
            .any(|m| &m.name == name && m.status == MemberStatus::Left);
        if (f.gone_long)(name) || left || f.removed.contains(name) {
            remove.insert(*id);
        }
    }
    let current: BTreeSet<String> = ms
        .voter_ids()
        .filter_map(|id| ms.get_node(&id).map(|n| n.name.clone()))
        .collect();
    let healthy: BTreeMap<String, String> = in_raft
        .keys()
        .filter(|n| (f.healthy)(n))
        .filter(|n| !remove.contains(&raft_id(n)))
        .map(|n| {
            let zone = f
                .members
                .iter()
                .find(|m| &m.name == n)
                .map(|m| NodeTags::parse(&m.tags).zone)
                .unwrap_or_default();
            (n.clone(), zone)
        })
        .collect();
    let voters = choose(&current, &healthy, f.max_voters, f.me);
    let change_voters = voters != current;
    if add.is_empty() && remove.is_empty() && readdress.is_empty() && !change_voters {
        return None;
    }
    let change = MembershipChange {
        readdress,
        add,
        voters: change_voters.then(|| voters.iter().map(|n| raft_id(n)).collect()),
        remove,
    };
    Some((change, voters))
}

/// The voter set the leader should converge to.
///
/// `healthy` maps each healthy Raft member (voter or learner) to its zone;
/// `current` is the present voter set; `leader` votes whatever happens.
pub(crate) fn choose(
    current: &BTreeSet<String>,
    healthy: &BTreeMap<String, String>,
    max_voters: usize,
    leader: &str,
) -> BTreeSet<String> {
    let mut target = max_voters.min(healthy.len().max(1));
    if target % 2 == 0 {
        target -= 1;
    }
    let target = target.max(1);
    let mut chosen: BTreeSet<String> = current
        .iter()
        .filter(|n| healthy.contains_key(*n))
        .cloned()
        .collect();
    chosen.insert(leader.to_string());

    let zone_of = |n: &str| healthy.get(n).cloned().unwrap_or_default();
    let zone_counts = |set: &BTreeSet<String>| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for n in set {
            *m.entry(zone_of(n)).or_default() += 1;
        }
        m
    };
    while chosen.len() < target {
        let counts = zone_counts(&chosen);
        let pick = healthy
            .iter()
            .filter(|(n, _)| !chosen.contains(*n))
            .min_by_key(|(n, z)| (counts.get(*z).copied().unwrap_or(0), (*n).clone()));
        match pick {
            Some((n, _)) => {
                chosen.insert(n.clone());
            }
            None => break,
        }
    }
    while chosen.len() > target {
        let counts = zone_counts(&chosen);
        let drop = chosen
            .iter()
            .filter(|n| n.as_str() != leader)
            .max_by_key(|n| (counts.get(&zone_of(n)).copied().unwrap_or(0), (*n).clone()))
            .cloned();
        match drop {
            Some(n) => {
                chosen.remove(&n);
            }
            None => break,
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, z)| (n.to_string(), z.to_string()))
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fills_to_an_odd_count_spread_over_zones() {
        let h = healthy(&[
            ("a", "z1"),
            ("b", "z1"),
            ("c", "z1"),
            ("d", "z2"),
            ("e", "z3"),
            ("f", "z2"),
        ]);
        let v = choose(&set(&["a"]), &h, 5, "a");
        assert_eq!(v.len(), 5);
        let zones: BTreeSet<_> = v.iter().map(|n| h[n].clone()).collect();
        assert_eq!(zones.len(), 3);
        let v3 = choose(&set(&["a"]), &h, 3, "a");
        assert_eq!(v3, set(&["a", "d", "e"]));
    }

    #[test]
    fn lost_voter_is_replaced_by_a_learner() {
        let h = healthy(&[("a", ""), ("b", ""), ("d", ""), ("e", ""), ("f", "")]);
        let v = choose(&set(&["a", "b", "c", "d", "e"]), &h, 5, "a");
        assert_eq!(v, set(&["a", "b", "d", "e", "f"]));
    }

    #[test]
    fn even_counts_round_down_and_keep_the_leader() {
        let h = healthy(&[("a", ""), ("b", ""), ("c", ""), ("d", "")]);
        let v = choose(&set(&["a", "b", "c", "d"]), &h, 5, "d");
        assert_eq!(v.len(), 3);
        assert!(v.contains("d"));
        let one = choose(&BTreeSet::new(), &healthy(&[("a", "")]), 5, "a");
        assert_eq!(one, set(&["a"]));
    }
}
