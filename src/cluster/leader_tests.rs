//! One test per leader rule, driven by explicit time: a small world (gossip
//! members, Raft membership, replicated state, applied maps, lease bounds)
//! that the tests change, and the actions the engine returns.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::{Duration, Instant};

use super::*;
use crate::gossip::{Member, MemberEvent, MemberEventKind, MemberStatus};
use crate::raft::{Command, MemberRecord, RaftNodeInfo};
use crate::shards::{delta, rebalance};

const SHARDS: u32 = 64;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg() -> Config {
    let mut c = Config::local("a");
    c.shard_count = SHARDS;
    c.ack_timeout = ms(500);
    c.lease = ms(250);
    c.reshard_debounce = ms(5);
    c.exclude_backoff = ms(5000);
    c.voter_grace = ms(3000);
    c.removal_grace = ms(30_000);
    c.max_voters = 5;
    c
}

fn member(name: &str, zone: &str) -> Member {
    let mut tags = BTreeMap::new();
    tags.insert(tags::CLUSTER.to_string(), cfg().cluster_name);
    tags.insert(tags::KIND.to_string(), tags::KIND_MEMBER.to_string());
    tags.insert(tags::ZONE.to_string(), zone.to_string());
    let port = 7000 + u16::from(name.as_bytes()[0]);
    tags.insert("ep.raft".to_string(), format!("127.0.0.1:{port}"));
    tags.insert(
        "ep.liveness".to_string(),
        format!("127.0.0.1:{}", port + 200),
    );
    Member {
        name: name.to_string(),
        addr: "127.0.0.1:1".parse().expect("addr"),
        status: MemberStatus::Alive,
        incarnation: 0,
        tags,
    }
}

fn info(name: &str) -> RaftNodeInfo {
    let port = 7000 + u16::from(name.as_bytes()[0]);
    RaftNodeInfo::new(name, format!("127.0.0.1:{port}"))
}

fn membership(voters: &[&str], learners: &[&str]) -> Membership {
    let ids: BTreeSet<u64> = voters.iter().map(|n| raft_id(n)).collect();
    let nodes: BTreeMap<u64, RaftNodeInfo> = voters
        .iter()
        .chain(learners)
        .map(|n| (raft_id(n), info(n)))
        .collect();
    Membership::new(vec![ids], nodes)
}

/// What the leader reads, as the tests set it.
struct World {
    members: Vec<Member>,
    membership: Membership,
    state: ClusterState,
    committed: Option<ShardMap>,
    pending: Option<ShardMap>,
    bounds: BTreeMap<u64, Instant>,
}

impl World {
    /// Nodes `names`, all alive in zone "", all voters, cluster id set.
    fn new(names: &[&str]) -> World {
        let mut state = ClusterState::default();
        state.apply(Command::SetClusterId {
            cluster_id: "c1".into(),
        });
        World {
            members: names.iter().map(|n| member(n, "")).collect(),
            membership: membership(names, &[]),
            state,
            committed: None,
            pending: None,
            bounds: BTreeMap::new(),
        }
    }

    /// The same world with `map` committed (as loaded from disk).
    fn with_committed(mut self, owners: &[(&str, u32)]) -> World {
        let empty = ShardMap::new(SHARDS).expect("map");
        let map = rebalance(&empty, owners).expect("map").with_epoch(1);
        self.state.apply(Command::Propose {
            epoch: 1,
            map: map.encode().into(),
        });
        self.state.apply(Command::Commit { epoch: 1 });
        self.committed = Some(map);
        self
    }

    fn run<R>(&self, f: impl FnOnce(&Inputs) -> R) -> R {
        let bound = |id| self.bounds.get(&id).copied();
        f(&Inputs {
            members: &self.members,
            membership: Some(&self.membership),
            state: Some(&self.state),
            committed: self.committed.as_ref(),
            pending: self.pending.as_ref(),
            cluster_id: self.state.cluster_id.as_deref(),
            lease_bound: &bound,
        })
    }

    /// Carries a proposal out as Raft would: appended, applied here.
    fn propose(&mut self, l: &mut Leader, epoch: u64, map: &ShardMap, now: Instant) {
        let r = self.state.apply(Command::Propose {
            epoch,
            map: map.encode().into(),
        });
        self.pending = Some(map.clone());
        assert!(l
            .on_write_done(Write::Propose(epoch), &Ok(r), now)
            .is_empty());
    }

    /// Carries a commit out: appended, applied, reported to the leader.
    fn commit(&mut self, l: &mut Leader, epoch: u64, now: Instant) {
        let old = self.committed.clone();
        let r = self.state.apply(Command::Commit { epoch });
        assert_eq!(r, Response::Committed { epoch });
        self.committed = self.pending.take();
        l.on_write_done(Write::Commit(epoch), &Ok(r), now);
        let new = self.committed.as_ref().expect("committed");
        let moved = old.map_or(SHARDS, |o| delta(&o, new).expect("delta").moved);
        l.on_committed(epoch, moved, now);
    }

    fn set(&mut self, name: &str, status: MemberStatus) {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.name == name)
            .expect("member");
        m.status = status;
    }
}

/// Carries out the writes among `out` (proposals, commits).
fn finish(l: &mut Leader, w: &mut World, out: &[Action], now: Instant) {
    for a in out {
        match a {
            Action::Propose { epoch, map } => w.propose(l, *epoch, map, now),
            Action::Commit(epoch) => w.commit(l, *epoch, now),
            _ => {}
        }
    }
}

fn never(_: &str) -> bool {
    false
}

/// A leader (node "a") that just won an election in `w`.
/// A leader elected `FIRST_MAP_AFTER` before `now`, so its first map is
/// due `reshard_debounce` after `now`.
fn elected(w: &World, now: Instant) -> Leader {
    let at = now - FIRST_MAP_AFTER;
    let mut l = Leader::new(cfg(), at);
    l.on_leader(Some("a"));
    w.run(|ins| l.became_leader(ins, at, false));
    l
}

fn tick(l: &mut Leader, w: &World, now: Instant) -> Vec<Action> {
    w.run(|ins| l.tick(ins, now, &never))
}

fn proposal(actions: &[Action]) -> Option<(u64, ShardMap)> {
    actions.iter().find_map(|a| match a {
        Action::Propose { epoch, map } => Some((*epoch, map.clone())),
        _ => None,
    })
}

fn owners(map: &ShardMap) -> Vec<String> {
    map.nodes().iter().map(|n| n.id.clone()).collect()
}

fn has_commit(actions: &[Action], epoch: u64) -> bool {
    actions.contains(&Action::Commit(epoch))
}

/// Proposes and commits the first map of `w`'s nodes; returns the time.
fn settle(l: &mut Leader, w: &mut World, now: Instant) -> Instant {
    let (epoch, map) = proposal(&tick(l, w, now + ms(5))).expect("first map");
    w.propose(l, epoch, &map, now + ms(6));
    let names: Vec<String> = owners(&map);
    let mut out = Vec::new();
    for n in &names {
        out = l.on_ack(n, epoch, now + ms(7));
    }
    assert!(has_commit(&out, epoch));
    w.commit(l, epoch, now + ms(8));
    now + ms(8)
}

#[test]
fn cluster_id_is_written_before_any_map() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    w.state = ClusterState::default();
    let mut l = elected(&w, t0);
    let out = tick(&mut l, &w, t0 + ms(5));
    assert!(proposal(&out).is_none());
    let id = out.iter().find_map(|a| match a {
        Action::SetClusterId(id) => Some(id.clone()),
        _ => None,
    });
    assert_eq!(id.map(|id| id.len()), Some(16));
    // The write is in flight: nothing else is written meanwhile, and the
    // change waits for the write's completion, not a deadline already past
    // (the node loop would spin on it while the write hangs).
    l.mark_dirty(t0 + ms(6));
    assert!(tick(&mut l, &w, t0 + ms(20)).is_empty());
    assert!(
        l.next_wake().is_none_or(|t| t > t0 + ms(20)),
        "{:?}",
        l.next_wake()
    );
    let r = w.state.apply(Command::SetClusterId {
        cluster_id: "c1".into(),
    });
    l.on_write_done(Write::ClusterId, &Ok(r), t0 + ms(21));
    let (epoch, map) = proposal(&tick(&mut l, &w, t0 + ms(22))).expect("map");
    assert_eq!(epoch, 1);
    assert_eq!(owners(&map), ["a", "b", "c"]);
}

#[test]
fn changes_are_debounced() {
    let t0 = Instant::now();
    let w = World::new(&["a", "b"]);
    let mut l = elected(&w, t0);
    assert_eq!(l.next_wake(), Some(t0 + ms(5)));
    assert!(proposal(&tick(&mut l, &w, t0 + ms(4))).is_none());
    assert!(proposal(&tick(&mut l, &w, t0 + ms(5))).is_some());
    // Not leading: changes mark nothing.
    let mut f = Leader::new(cfg(), t0);
    f.mark_dirty(t0);
    assert_eq!(f.next_wake(), None);
    assert!(tick(&mut f, &w, t0 + ms(100)).is_empty());
}

#[test]
fn a_map_commits_when_every_owner_acknowledged() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let (epoch, map) = proposal(&tick(&mut l, &w, t0 + ms(5))).expect("map");
    assert_eq!(owners(&map).len(), 3);
    w.propose(&mut l, epoch, &map, t0 + ms(6));
    assert!(l.on_ack("a", epoch, t0 + ms(7)).is_empty());
    assert!(l.on_ack("b", epoch, t0 + ms(7)).is_empty());
    assert!(l.on_ack("c", epoch - 1, t0 + ms(7)).is_empty(), "old epoch");
    assert_eq!(
        l.on_ack("c", epoch, t0 + ms(8)),
        vec![Action::Commit(epoch)]
    );
    w.commit(&mut l, epoch, t0 + ms(9));
    assert_eq!(l.counts.commits, 1);
}

#[test]
fn a_commit_waits_for_the_write_in_flight() {
    let t0 = Instant::now();
    let w = World::new(&["a"]);
    let mut l = elected(&w, t0);
    let (epoch, _) = proposal(&tick(&mut l, &w, t0 + ms(5))).expect("map");
    // The proposal's write has not returned yet.
    assert!(l.on_ack("a", epoch, t0 + ms(6)).is_empty());
    let r = Ok(Response::Proposed { epoch });
    let out = l.on_write_done(Write::Propose(epoch), &r, t0 + ms(7));
    assert_eq!(out, vec![Action::Commit(epoch)]);
}

#[test]
fn a_dead_owner_leaves_the_next_map_after_its_lease() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    let bound = t1 + ms(120);
    w.bounds.insert(raft_id("c"), bound);
    // c answered probes since the take-over, then died.
    w.run(|ins| l.tick(ins, t1, &|n| n == "c"));
    let out = l.on_liveness(LivenessEvent::Dead("c".into()), t1);
    assert!(out.contains(&Action::Emit(ClusterEvent::MemberFailed("c".into()))));
    let (epoch, map) = proposal(&tick(&mut l, &w, t1 + ms(5))).expect("map");
    assert_eq!(owners(&map), vec!["a".to_string(), "b".to_string()]);
    w.propose(&mut l, epoch, &map, t1 + ms(6));
    l.on_ack("a", epoch, t1 + ms(7));
    // c is not waited for, but its lease is.
    assert!(l.on_ack("b", epoch, t1 + ms(8)).is_empty());
    assert_eq!(l.next_wake(), Some(bound));
    assert!(!has_commit(&tick(&mut l, &w, bound - ms(1)), epoch));
    assert!(has_commit(&tick(&mut l, &w, bound), epoch));
}

#[test]
fn a_losing_owner_without_a_known_lease_is_waited_out_for_two_leases() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    w.set("c", MemberStatus::Dead);
    l.mark_dirty(t1);
    let (epoch, map) = proposal(&tick(&mut l, &w, t1 + ms(5))).expect("map");
    w.propose(&mut l, epoch, &map, t1 + ms(5));
    l.on_ack("a", epoch, t1 + ms(6));
    l.on_ack("b", epoch, t1 + ms(6));
    let lapse = t1 + ms(5) + ms(500);
    assert!(!has_commit(&tick(&mut l, &w, lapse - ms(1)), epoch));
    assert!(has_commit(&tick(&mut l, &w, lapse), epoch));
}

#[test]
fn a_live_owner_losing_shards_must_acknowledge() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    // c leaves Raft but still runs: it owns no shard in the next map, and
    // the map commits only once c confirmed it stopped serving.
    w.membership = membership(&["a", "b"], &[]);
    l.mark_dirty(t1);
    let (epoch, map) = proposal(&tick(&mut l, &w, t1 + ms(5))).expect("map");
    assert!(map.node("c").is_none());
    w.propose(&mut l, epoch, &map, t1 + ms(6));
    l.on_ack("a", epoch, t1 + ms(7));
    assert!(l.on_ack("b", epoch, t1 + ms(7)).is_empty());
    assert!(!has_commit(&tick(&mut l, &w, t1 + ms(400)), epoch));
    assert_eq!(
        l.on_ack("c", epoch, t1 + ms(401)),
        vec![Action::Commit(epoch)]
    );
}

/// A weight change proposed; a and b acknowledge, c stays silent.
fn c_stays_silent() -> (Leader, World, u64, Instant) {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    w.state.members.insert(
        "b".into(),
        MemberRecord {
            weight: 2,
            zone: String::new(),
        },
    );
    l.mark_dirty(t1);
    let (epoch, map) = proposal(&tick(&mut l, &w, t1 + ms(5))).expect("map");
    w.propose(&mut l, epoch, &map, t1 + ms(5));
    l.on_ack("a", epoch, t1 + ms(6));
    l.on_ack("b", epoch, t1 + ms(6));
    (l, w, epoch, t1)
}

#[test]
fn a_silent_owner_is_excluded_and_the_map_proposed_again_without_it() {
    let (mut l, mut w, epoch, t1) = c_stays_silent();
    let timeout = t1 + ms(5) + ms(500);
    assert!(!has_commit(&tick(&mut l, &w, timeout - ms(1)), epoch));
    assert!(tick(&mut l, &w, timeout).is_empty());
    assert_eq!(l.counts.ack_timeouts, 1);
    let (again, map) = proposal(&tick(&mut l, &w, timeout + ms(5))).expect("map");
    assert_eq!(again, epoch + 1);
    assert_eq!(owners(&map), vec!["a".to_string(), "b".to_string()]);
    // An answer to a liveness probe readmits it.
    l.on_liveness(LivenessEvent::Alive("c".into()), timeout + ms(6));
    w.propose(&mut l, again, &map, timeout + ms(6));
    let out = tick(&mut l, &w, timeout + ms(11));
    assert!(proposal(&out).is_some_and(|(_, m)| m.node("c").is_some()));
}

#[test]
fn an_excluded_node_that_acknowledges_again_is_readmitted_at_once() {
    let (mut l, mut w, epoch, t1) = c_stays_silent();
    let timeout = t1 + ms(505);
    tick(&mut l, &w, timeout);
    let (again, map) = proposal(&tick(&mut l, &w, timeout + ms(5))).expect("map");
    assert!(map.node("c").is_none(), "c is excluded");
    w.propose(&mut l, again, &map, timeout + ms(5));
    // Long before its back-off ends, c's "ready" acknowledgement of the
    // committed epoch readmits it: the next map has it again.
    let back = timeout + ms(100);
    l.on_ack("c", epoch - 1, back);
    l.on_ack("a", again, back);
    l.on_ack("b", again, back);
    let out = tick(&mut l, &w, back + ms(10));
    assert!(
        proposal(&out).is_some_and(|(_, m)| m.node("c").is_some()),
        "{out:?}"
    );
}

#[test]
fn an_election_suspects_the_previous_leader_a_hand_over_does_not() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    settle(&mut l, &mut w, t0);
    let t1 = t0 + ms(100);

    // b led, then went quiet: a wins the election and drops b at once.
    let mut elected_again = Leader::new(cfg(), t1);
    elected_again.on_leader(Some("b"));
    elected_again.on_leader(Some("a"));
    w.run(|ins| elected_again.became_leader(ins, t1, false));
    assert!(elected_again.has_suspects());
    let first = t1 + FIRST_MAP_AFTER + ms(5);
    let (_, map) = proposal(&tick(&mut elected_again, &w, first)).expect("map");
    assert_eq!(owners(&map), vec!["a".to_string(), "c".to_string()]);

    // b answers a probe before the map is proposed: nothing moves.
    let mut answered = Leader::new(cfg(), t1);
    answered.on_leader(Some("b"));
    w.run(|ins| answered.became_leader(ins, t1, false));
    let b_answers = |n: &str| n == "b";
    let out = w.run(|ins| answered.tick(ins, t1 + ms(1), &b_answers));
    assert!(proposal(&out).is_none());
    assert!(!answered.has_suspects());
    assert!(proposal(&tick(&mut answered, &w, first)).is_none());

    // b handed leadership over: it is alive, nothing moves.
    let mut handed = Leader::new(cfg(), t1);
    handed.on_leader(Some("b"));
    w.run(|ins| handed.became_leader(ins, t1, true));
    assert!(!handed.has_suspects());
    assert!(proposal(&tick(&mut handed, &w, first)).is_none());
}

#[test]
fn a_restart_with_the_committed_map_proposes_nothing() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]).with_committed(&[("a", 1), ("b", 1), ("c", 1)]);
    let mut l = elected(&w, t0);
    assert!(proposal(&tick(&mut l, &w, t0 + ms(5))).is_none());
    // Gossip has not found c yet after the restart: c keeps its place.
    w.members.retain(|m| m.name != "c");
    l.mark_dirty(t0 + ms(10));
    assert!(proposal(&tick(&mut l, &w, t0 + ms(15))).is_none());
}

#[test]
fn a_weight_change_moves_only_the_minimum() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]).with_committed(&[("a", 1), ("b", 1), ("c", 1)]);
    let mut l = elected(&w, t0);
    w.state.members.insert(
        "c".into(),
        MemberRecord {
            weight: 2,
            zone: String::new(),
        },
    );
    let (epoch, map) = proposal(&tick(&mut l, &w, t0 + ms(5))).expect("map");
    assert_eq!(epoch, 2);
    let old = w.committed.as_ref().expect("committed");
    let d = delta(old, &map).expect("delta");
    // c goes from a third to a half: every moved shard goes to c.
    assert_eq!(d.nodes["c"].lost.len(), 0);
    assert_eq!(d.moved as usize, d.nodes["c"].gained.len());
    assert_eq!(map.shards_of("c").len(), SHARDS as usize / 2);
}

#[test]
fn membership_adds_learners_then_spreads_voters_over_zones() {
    let t0 = Instant::now();
    let zones = [
        ("a", "z1"),
        ("b", "z1"),
        ("c", "z1"),
        ("d", "z2"),
        ("e", "z3"),
        ("f", "z2"),
        ("g", "z3"),
    ];
    let mut w = World::new(&["a"]);
    w.members = zones.iter().map(|(n, z)| member(n, z)).collect();
    let mut l = elected(&w, t0);
    // Every new member is checked first; nobody is added unchecked.
    let out = tick(&mut l, &w, t0 + ms(5));
    let checks: Vec<RaftNodeInfo> = out
        .iter()
        .filter_map(|a| match a {
            Action::Admit { info, .. } => Some(info.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(checks.len(), 6);
    assert!(!out.iter().any(|a| matches!(a, Action::ChangeMembership(_))));
    finish(&mut l, &mut w, &out, t0 + ms(5));
    // g fails its check: the others are added, g is not (nor checked
    // again before the pause).
    for info in &checks {
        let r = match info.name.as_str() {
            "g" => Err(crate::raft::AdmitError::Unreachable("tls".into())),
            _ => Ok(()),
        };
        l.on_admitted(info, &r, t0 + ms(6));
    }
    let admitted = |out: &[Action]| out.iter().any(|a| matches!(a, Action::Admit { .. }));
    let out = tick(&mut l, &w, t0 + ms(12));
    assert!(!admitted(&out));
    let change = out.iter().find_map(|a| match a {
        Action::ChangeMembership(c) => Some(c.clone()),
        _ => None,
    });
    let change = change.expect("membership change");
    let added: BTreeSet<u64> = change.add.iter().map(|(id, _)| *id).collect();
    let want: BTreeSet<u64> = zones[1..6].iter().map(|(n, _)| raft_id(n)).collect();
    assert_eq!(added, want);
    assert_eq!(change.voters, None, "learners first");
    // One change at a time.
    l.mark_dirty(t0 + ms(13));
    let busy = tick(&mut l, &w, t0 + ms(18));
    assert!(!busy
        .iter()
        .any(|a| matches!(a, Action::ChangeMembership(_))));

    let learners: Vec<&str> = zones[1..6].iter().map(|(n, _)| *n).collect();
    w.membership = membership(&["a"], &learners);
    l.on_membership_done(Ok(()), t0 + ms(19));
    l.mark_dirty(t0 + ms(19));
    let out = tick(&mut l, &w, t0 + ms(24));
    assert!(!admitted(&out), "g waits its pause");
    let voters = out.iter().find_map(|a| match a {
        Action::ChangeMembership(c) => c.voters.clone(),
        _ => None,
    });
    let voters = voters.expect("new voters");
    assert_eq!(voters.len(), 5);
    assert!(voters.contains(&raft_id("a")), "the leader keeps its vote");
    let zone_of = |id: &u64| zones.iter().find(|(n, _)| raft_id(n) == *id).map(|z| z.1);
    let spread: BTreeSet<_> = voters.iter().filter_map(zone_of).collect();
    assert_eq!(spread.len(), 3);
}

#[test]
fn a_failed_member_leaves_raft_after_the_removal_grace() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    w.set("c", MemberStatus::Dead);
    let failed = MemberEvent {
        kind: MemberEventKind::Failed,
        member: w.members[2].clone(),
    };
    let out = l.on_member_event(&failed, t0);
    assert_eq!(
        out,
        vec![Action::Emit(ClusterEvent::MemberFailed("c".into()))]
    );
    let removes = |out: &[Action]| {
        out.iter()
            .any(|a| matches!(a, Action::ChangeMembership(c) if c.remove.contains(&raft_id("c"))))
    };
    let grace = ms(30_000);
    l.mark_dirty(t0 + grace - ms(10));
    let before = tick(&mut l, &w, t0 + grace - ms(5));
    assert!(!removes(&before));
    finish(&mut l, &mut w, &before, t0 + grace - ms(5));
    l.on_membership_done(Ok(()), t0 + grace - ms(5));
    l.mark_dirty(t0 + grace - ms(5));
    assert!(removes(&tick(&mut l, &w, t0 + grace)));
}

#[test]
fn an_operator_removal_drops_the_node_at_once() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    let unknown = w.run(|ins| l.remove_node(ins, "x".into(), t1));
    assert!(matches!(unknown, Err(ClusterError::UnknownNode(_))));
    w.run(|ins| l.remove_node(ins, "c".into(), t1))
        .expect("removed");
    let out = tick(&mut l, &w, t1 + ms(5));
    let removed = out
        .iter()
        .any(|a| matches!(a, Action::ChangeMembership(c) if c.remove.contains(&raft_id("c"))));
    assert!(removed);
    let (_, map) = proposal(&out).expect("map");
    assert!(map.node("c").is_none());
}

#[test]
fn liveness_targets_follow_the_raft_members() {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = Leader::new(cfg(), t0);
    let out = w.run(|ins| l.became_leader(ins, t0, false));
    assert_eq!(out[0], Action::ClearLiveness);
    let watched: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Action::Watch(n, _) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(watched, ["b", "c"]);
    w.membership = membership(&["a", "b"], &[]);
    let out = tick(&mut l, &w, t0 + FIRST_MAP_AFTER + ms(5));
    assert!(out.contains(&Action::Unwatch("c".into())));
    assert_eq!(l.lost_leadership(), vec![Action::ClearLiveness]);
    assert!(!l.is_active());
    assert!(l.on_ack("b", 1, t0 + ms(6)).is_empty());
}

#[test]
fn a_member_not_heard_since_the_take_over_keeps_its_shards_for_a_grace() {
    // A full restart: c is not up yet when a becomes leader.
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    let grace = cfg().voter_grace - FIRST_MAP_AFTER;
    assert!(l
        .on_liveness(LivenessEvent::Dead("c".into()), t1)
        .is_empty());
    assert!(
        proposal(&tick(&mut l, &w, t1 + ms(5))).is_none(),
        "c keeps its shards"
    );
    assert_eq!(l.next_wake(), Some(t0 + grace));
    // It comes up and answers within the grace: nothing moves at all.
    w.run(|ins| l.tick(ins, t1 + ms(500), &|n| n == "c"));
    assert!(proposal(&tick(&mut l, &w, t0 + grace)).is_none());

    // b never answers: after the grace it is dead and its shards move.
    let mut w = World::new(&["a", "b", "c"]);
    let mut l = elected(&w, t0);
    let t1 = settle(&mut l, &mut w, t0);
    l.on_liveness(LivenessEvent::Dead("b".into()), t1);
    let out = tick(&mut l, &w, t0 + grace);
    assert!(out.contains(&Action::Emit(ClusterEvent::MemberFailed("b".into()))));
    let (_, map) = proposal(&tick(&mut l, &w, t0 + grace + ms(5))).expect("map");
    assert!(map.node("b").is_none());
}

#[test]
fn a_new_leader_adds_a_member_its_predecessor_left_out_only_once_it_hears_from_it() {
    // The previous leader found c dead and committed a map without it;
    // gossip still calls c alive.
    let t0 = Instant::now();
    let w = World::new(&["a", "b", "c"]).with_committed(&[("a", 1), ("b", 1)]);
    let mut l = elected(&w, t0);
    tick(&mut l, &w, t0);
    assert!(
        proposal(&tick(&mut l, &w, t0 + ms(10))).is_none(),
        "a new leader handed shards to a member it has not heard from"
    );
    // c answers a probe: it joins the next map.
    let out = w.run(|ins| l.tick(ins, t0 + ms(20), &|n| n == "c"));
    let (_, map) = proposal(&out)
        .or_else(|| proposal(&tick(&mut l, &w, t0 + ms(30))))
        .expect("a map with c");
    assert!(map.node("c").is_some());
}

/// Shard 0 on "c"; the zone each candidate reports goes into `seen`.
#[derive(Debug, Default)]
struct PinToC {
    seen: std::sync::Mutex<Vec<(String, String)>>,
}

impl crate::shards::Placement for PinToC {
    fn place(
        &self,
        previous: &ShardMap,
        nodes: &[crate::shards::Candidate],
    ) -> Result<ShardMap, crate::shards::ShardMapError> {
        let mut seen = self.seen.lock().expect("lock");
        seen.extend(nodes.iter().map(|n| (n.id.clone(), n.zone.clone())));
        crate::shards::WeightedRebalance
            .place(previous, nodes)?
            .with_owner(0, "c")
    }
}

#[derive(Debug)]
struct Panics;

impl crate::shards::Placement for Panics {
    fn place(
        &self,
        _: &ShardMap,
        _: &[crate::shards::Candidate],
    ) -> Result<ShardMap, crate::shards::ShardMapError> {
        panic!("a bug in the strategy")
    }
}

/// The first map a leader of a, b (zone z2) and c proposes with `placement`.
fn first_map(placement: std::sync::Arc<dyn crate::shards::Placement>) -> (Leader, ShardMap) {
    let t0 = Instant::now();
    let mut w = World::new(&["a", "b", "c"]);
    w.members[1] = member("b", "z2");
    let at = t0 - FIRST_MAP_AFTER;
    let mut c = cfg();
    c.placement = placement;
    let mut l = Leader::new(c, at);
    l.on_leader(Some("a"));
    w.run(|ins| l.became_leader(ins, at, false));
    let (_, map) = proposal(&tick(&mut l, &w, t0 + ms(5))).expect("first map");
    (l, map)
}

#[test]
fn the_configured_placement_places_the_map() {
    let pin = std::sync::Arc::new(PinToC::default());
    let (l, map) = first_map(pin.clone());
    assert_eq!(map.owner_of(0), Some("c"));
    assert_eq!(l.counts.placement_refused, 0);
    let seen = pin.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [("a", ""), ("b", "z2"), ("c", "")].map(|(n, z)| (n.to_string(), z.to_string()))
    );
}

#[test]
fn a_failing_placement_is_counted_and_the_builtin_places_the_map() {
    let (l, map) = first_map(std::sync::Arc::new(Panics));
    assert_eq!(l.counts.placement_refused, 1);
    let empty = ShardMap::new(SHARDS).expect("map");
    let builtin = rebalance(&empty, &[("a", 1), ("b", 1), ("c", 1)]).expect("map");
    assert!(map.same_assignment(&builtin));
    assert_eq!(map.owner_of(0), Some("a"));
}
