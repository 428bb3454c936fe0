//! Which Raft members vote: at most `max_voters` (odd), spread over zones.
//!
//! Pure logic for the leader. Current voters that are still healthy keep
//! their vote (no churn); missing places are filled from the least
//! represented zones; with more voters than the target the ones in the most
//! represented zones are demoted. The leader always keeps its vote.

use std::collections::{BTreeMap, BTreeSet};

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
