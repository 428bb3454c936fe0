//! Consul-style `bootstrap_expect`: the pure decision of who initialises Raft.
//!
//! When `expect` Raft-capable nodes of one cluster name see each other in
//! gossip and none of them advertises a cluster id or a leader, the node with
//! the lowest id initialises Raft with every node it sees. A node that sees an
//! existing cluster never bootstraps: that cluster's leader adds it. The
//! caller also requires the visible set to stay unchanged for a short settle
//! time, so that nodes starting together agree on who is lowest.

/// One Raft-capable node of our cluster name, as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub name: String,
    pub cluster_id: Option<String>,
    pub leader: Option<String>,
}

/// What this node should do about bootstrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Fewer than `expect` nodes are visible, or a lower node will do it.
    Wait,
    /// A cluster exists already: wait to be added by its leader.
    JoinExisting,
    /// Initialise Raft with these nodes (sorted, including this node).
    Initialize(Vec<String>),
}

/// Decides for node `local` given every alive Raft-capable node of its
/// cluster name it sees (including itself). `expect == 0` disables
/// bootstrapping.
pub(crate) fn decide(local: &str, expect: usize, visible: &[Candidate]) -> Decision {
    if visible
        .iter()
        .any(|c| c.cluster_id.is_some() || c.leader.is_some())
    {
        return Decision::JoinExisting;
    }
    if expect == 0 || visible.len() < expect {
        return Decision::Wait;
    }
    let mut names: Vec<String> = visible.iter().map(|c| c.name.clone()).collect();
    names.sort();
    names.dedup();
    if names.len() < expect || names.first().map(String::as_str) != Some(local) {
        return Decision::Wait;
    }
    Decision::Initialize(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> Candidate {
        Candidate {
            name: name.into(),
            cluster_id: None,
            leader: None,
        }
    }

    #[test]
    fn lowest_initialises_when_expected_count_is_visible() {
        let seen = [c("b"), c("a"), c("c")];
        assert_eq!(
            decide("a", 3, &seen),
            Decision::Initialize(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(decide("b", 3, &seen), Decision::Wait);
        assert_eq!(decide("a", 4, &seen), Decision::Wait);
        assert_eq!(decide("a", 0, &seen), Decision::Wait);
    }

    #[test]
    fn existing_cluster_is_joined_not_bootstrapped() {
        let mut seen = vec![c("a"), c("b"), c("c")];
        seen[2].leader = Some("c".into());
        assert_eq!(decide("a", 3, &seen), Decision::JoinExisting);
        seen[2].leader = None;
        seen[1].cluster_id = Some("x".into());
        assert_eq!(decide("a", 3, &seen), Decision::JoinExisting);
    }

    #[test]
    fn duplicates_do_not_count_twice() {
        let seen = [c("a"), c("a"), c("b")];
        assert_eq!(decide("a", 3, &seen), Decision::Wait);
    }
}
