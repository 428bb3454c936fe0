//! The leader's map rules: who owns shards next, when a new map is
//! proposed, and who must acknowledge it (the complete hand-over). A child
//! of `leader`, in its own file to keep that one readable.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Action, Inputs, Leader};
use crate::cluster::ids::raft_id;
use crate::cluster::tags::NodeTags;
use crate::cluster::ClusterEvent;
use crate::raft::ClusterState;
use crate::shards::{self, Candidate, Placement, PlacementError, ShardMap, WeightedRebalance};

impl Leader {
    /// The owners the next map should have, with their weights.
    pub(super) fn live_owners(
        &self,
        ins: &Inputs,
        st: &ClusterState,
        now: Instant,
    ) -> Vec<(String, u32)> {
        let Some(ms) = ins.membership else {
            return Vec::new();
        };
        let mut owners = Vec::new();
        for (_, info) in ms.nodes() {
            let name = &info.name;
            if self.removed.contains(name) || self.tracker.is_excluded(name, now) {
                continue;
            }
            let weight = match ins.members.iter().find(|m| &m.name == name) {
                Some(m) => {
                    let t = NodeTags::parse(&m.tags);
                    let alive = name == &self.me
                        || (!m.status.is_gone() && !self.dead_since.contains_key(name));
                    if !t.member || t.cluster != self.cfg.cluster_name || !alive {
                        continue;
                    }
                    // Right after a take-over, a member the committed map
                    // leaves out joins it only once this leader's checker
                    // heard from it: the new leader knows nothing yet of a
                    // member its predecessor found dead, and would hand it
                    // shards and then wait out the ack timeout for it.
                    let left_out = ins.committed.is_some_and(|m| m.node(name).is_none());
                    let fresh = self
                        .led_since
                        .is_some_and(|t| now < t + self.cfg.voter_grace);
                    if name != &self.me
                        && left_out
                        && fresh
                        && self.targets.contains_key(name)
                        && !self.heard.contains(name)
                    {
                        continue;
                    }
                    st.members.get(name).map(|r| r.weight).unwrap_or(t.weight)
                }
                // Not in gossip (yet): keep it as the newest map has it, so
                // a leader that just restarted does not drop everyone.
                None => {
                    let newest = ins.pending.or(ins.committed);
                    match newest.and_then(|m| m.node(name)) {
                        Some(n) if !self.dead_since.contains_key(name) => {
                            st.members.get(name).map(|r| r.weight).unwrap_or(n.weight)
                        }
                        _ => continue,
                    }
                }
            };
            owners.push((name.clone(), weight));
        }
        owners.sort();
        owners
    }

    /// The leader's writes: the cluster id, then a new map when the live
    /// owner set differs from the newest map (or a proposal of an earlier
    /// leader is pending).
    pub(super) fn leader_writes(&mut self, ins: &Inputs, now: Instant, out: &mut Vec<Action>) {
        let Some(st) = ins.state else {
            return;
        };
        if st.cluster_id.is_none() {
            let id = format!("{:016x}", crate::rng::random::<u64>());
            self.write_busy = true;
            out.push(Action::SetClusterId(id));
            return;
        }
        let owners = self.live_owners(ins, st, now);
        if owners.is_empty() {
            return;
        }
        let newest = ins.pending.or(ins.committed);
        let orphan = st
            .proposed
            .as_ref()
            .is_some_and(|(e, _)| self.tracker.pending().map(|p| p.epoch) != Some(*e));
        let same = newest.is_some_and(|m| {
            let have: Vec<(String, u32)> =
                m.nodes().iter().map(|n| (n.id.clone(), n.weight)).collect();
            have == owners
        });
        if same && !orphan {
            return;
        }
        let base = match ins.committed {
            Some(c) => c.clone(),
            None => match ShardMap::new(self.cfg.shard_count) {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "cannot make an empty map");
                    return;
                }
            },
        };
        let epoch = st.last_epoch + 1;
        let Some(map) = self.place(ins, &base, &owners) else {
            return;
        };
        let map = map.with_epoch(epoch);
        let (expected, lapse) = self.who_must_ack(ins, &map, &owners, now);
        info!(
            epoch,
            owners = owners.len(),
            waiting = expected.len(),
            lapsing = lapse.len(),
            "proposing shard map"
        );
        self.tracker
            .proposed(epoch, expected, lapse, now, self.cfg.ack_timeout);
        self.proposed_at.insert(epoch, now);
        out.push(Action::Emit(ClusterEvent::MapProposed { epoch }));
        self.write_busy = true;
        out.push(Action::Propose { epoch, map });
    }

    /// The next map from the configured [`Placement`](shards::Placement),
    /// checked ([`shards::check_placement`]); a refused (or panicking)
    /// strategy is logged and counted, and the built-in weighted rebalance
    /// places this map instead.
    fn place(
        &mut self,
        ins: &Inputs,
        base: &ShardMap,
        owners: &[(String, u32)],
    ) -> Option<ShardMap> {
        let candidates: Vec<Candidate> = owners
            .iter()
            .map(|(id, weight)| {
                let tags = ins
                    .members
                    .iter()
                    .find(|m| &m.name == id)
                    .map(|m| m.tags.clone())
                    .unwrap_or_default();
                Candidate {
                    id: id.clone(),
                    weight: *weight,
                    zone: NodeTags::parse(&tags).zone,
                    tags,
                }
            })
            .collect();
        let strategy = self.cfg.placement.clone();
        let placed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            strategy.place(base, &candidates)
        }));
        let checked = match placed {
            Ok(r) => r
                .map_err(PlacementError::from)
                .and_then(|m| shards::check_placement(base, &candidates, &m).map(|()| m))
                .map_err(|e| e.to_string()),
            Err(_) => Err("the strategy panicked".to_string()),
        };
        match checked {
            Ok(map) => Some(map),
            Err(e) => {
                self.counts.placement_refused += 1;
                error!(
                    strategy = strategy.name(),
                    error = %e,
                    "placement refused; the built-in weighted rebalance places this map"
                );
                match WeightedRebalance.place(base, &candidates) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        warn!(error = %e, "rebalance failed");
                        None
                    }
                }
            }
        }
    }

    /// The complete hand-over: every owner in the new map must acknowledge,
    /// and so must every live owner of the committed map that loses a shard
    /// (it confirms it stopped serving it). A losing owner that is not live
    /// (gone, dead, excluded, removed) is not waited for, but the commit
    /// waits until its lease has certainly ended.
    pub(super) fn who_must_ack(
        &self,
        ins: &Inputs,
        map: &ShardMap,
        owners: &[(String, u32)],
        now: Instant,
    ) -> (BTreeSet<String>, BTreeMap<String, Instant>) {
        let mut expected: BTreeSet<String> = owners.iter().map(|(n, _)| n.clone()).collect();
        let mut lapse = BTreeMap::new();
        let Some(committed) = ins.committed else {
            return (expected, lapse);
        };
        for node in committed.nodes() {
            let name = &node.id;
            if expected.contains(name) {
                continue;
            }
            let loses = committed
                .shards_of(name)
                .iter()
                .any(|s| map.owner_of(*s) != Some(name.as_str()));
            if !loses {
                continue;
            }
            if self.is_live(ins, name, now) {
                expected.insert(name.clone());
            } else {
                let bound = (ins.lease_bound)(raft_id(name)).unwrap_or(now + self.cfg.lease * 2);
                lapse.insert(name.clone(), bound);
            }
        }
        (expected, lapse)
    }

    /// Whether `name` is believed to be running: known to gossip and not
    /// gone there, not found dead by liveness, not excluded or removed.
    pub(super) fn is_live(&self, ins: &Inputs, name: &str, now: Instant) -> bool {
        name == self.me
            || (ins
                .members
                .iter()
                .any(|m| m.name == name && !m.status.is_gone())
                && !self.dead_since.contains_key(name)
                && !self.tracker.is_excluded(name, now)
                && !self.removed.contains(name))
    }
}
