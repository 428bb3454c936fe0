//! Consul-style `bootstrap_expect`: the pure decision of who initialises Raft.
//!
//! When `expect` Raft-capable nodes of one cluster name see each other in
//! gossip and none of them advertises a cluster id or a leader, the node with
//! the lowest id initialises Raft with every node it sees. A node that sees an
//! existing cluster never bootstraps: that cluster's leader adds it. The
//! caller also requires the visible set to stay unchanged for a short settle
//! time, so that nodes starting together agree on who is lowest
//! ([`Settle`]).

use std::collections::BTreeMap;

use tokio::time::{Duration, Instant};
use tracing::info;

use super::ids::raft_id;
use super::tags::NodeTags;
use crate::gossip::{Member, MemberStatus};
use crate::raft::{NodeId, RaftNodeInfo};

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

/// [`decide`] over gossip members, plus the settle time: the same set must
/// stay visible for `settle` before this node initialises Raft.
#[derive(Debug, Default)]
pub(crate) struct Settle {
    seen: Option<(Vec<String>, Instant)>,
    /// After a failed bootstrap, no new attempt before this.
    retry_at: Option<Instant>,
}

impl Settle {
    /// The Raft members to initialise with, once it is this node's turn.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        me: &str,
        cluster: &str,
        expect: usize,
        settle: Duration,
        members: &[Member],
        now: Instant,
    ) -> Option<BTreeMap<NodeId, RaftNodeInfo>> {
        if self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let visible: Vec<Candidate> = members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .filter_map(|m| {
                let t = NodeTags::parse(&m.tags);
                (t.cluster == cluster && t.raft_capable()).then(|| Candidate {
                    name: m.name.clone(),
                    cluster_id: t.cluster_id,
                    leader: t.leader,
                })
            })
            .collect();
        let names = match decide(me, expect, &visible) {
            Decision::Initialize(names) => names,
            Decision::Wait | Decision::JoinExisting => {
                self.seen = None;
                return None;
            }
        };
        match &self.seen {
            Some((seen, since)) if *seen == names => {
                if now.duration_since(*since) < settle {
                    return None;
                }
            }
            _ => {
                self.seen = Some((names, now));
                return None;
            }
        }
        let mut init = BTreeMap::new();
        for m in members.iter().filter(|m| names.contains(&m.name)) {
            if let Some(addr) = NodeTags::parse(&m.tags).raft_addr {
                init.insert(raft_id(&m.name), RaftNodeInfo::new(m.name.clone(), addr));
            }
        }
        info!(voters = ?names, "bootstrapping a new cluster");
        Some(init)
    }

    /// The bootstrap failed (e.g. too few nodes passed the admission
    /// check): try again no earlier than `until`.
    pub fn retry_after(&mut self, until: Instant) {
        self.retry_at = Some(until);
    }
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
    fn the_visible_set_must_settle_first() {
        use crate::cluster::tags;
        let member = |name: &str| {
            let tags = [
                (tags::CLUSTER, "demo"),
                (tags::KIND, tags::KIND_MEMBER),
                ("ep.raft", "127.0.0.1:1"),
                ("ep.liveness", "127.0.0.1:2"),
            ];
            Member {
                name: name.into(),
                addr: "127.0.0.1:3".parse().expect("addr"),
                status: MemberStatus::Alive,
                incarnation: 0,
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
        };
        let t0 = Instant::now();
        let settle = Duration::from_millis(500);
        let mut s = Settle::default();
        let two = [member("a"), member("b")];
        let three = [member("a"), member("b"), member("c")];
        let check = |s: &mut Settle, seen: &[Member], at| s.check("a", "demo", 2, settle, seen, at);
        assert!(check(&mut s, &two, t0).is_none(), "first sight");
        assert!(check(&mut s, &two, t0 + settle / 2).is_none());
        // The set changed: the settle time starts again.
        assert!(check(&mut s, &three, t0 + settle).is_none());
        assert!(check(&mut s, &three, t0 + settle * 2 - Duration::from_millis(1)).is_none());
        let init = check(&mut s, &three, t0 + settle * 2).expect("initialise");
        assert_eq!(init.len(), 3);
        assert!(Settle::default()
            .check("b", "demo", 2, settle, &two, t0)
            .is_none());
    }

    #[test]
    fn duplicates_do_not_count_twice() {
        let seen = [c("a"), c("a"), c("b")];
        assert_eq!(decide("a", 3, &seen), Decision::Wait);
    }
}
