//! One test per rule of a node's side: applying replicated states in the
//! order Raft delivers them.

use std::collections::BTreeMap;

use super::*;
use crate::gossip::{Member, MemberStatus};
use crate::raft::{Command, LogId};
use crate::shards::{delta, rebalance};

const SHARDS: u32 = 64;

fn map(owners: &[(&str, u32)], base: Option<&ShardMap>, epoch: u64) -> ShardMap {
    let empty = ShardMap::new(SHARDS).expect("map");
    rebalance(base.unwrap_or(&empty), owners)
        .expect("map")
        .with_epoch(epoch)
}

/// The replicated state, changed through its own apply like Raft does.
struct Log {
    st: ClusterState,
    index: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            st: ClusterState::default(),
            index: 0,
        }
    }

    fn apply(&mut self, cmd: Command) -> &ClusterState {
        self.st.apply(cmd);
        self.index += 1;
        self.st.last_applied = Some(LogId::new(
            openraft::CommittedLeaderId::new(1, 0),
            self.index,
        ));
        &self.st
    }

    fn propose(&mut self, m: &ShardMap) -> &ClusterState {
        self.apply(Command::Propose {
            epoch: m.epoch(),
            map: m.encode().into(),
        })
    }

    fn commit(&mut self, epoch: u64) -> &ClusterState {
        self.apply(Command::Commit { epoch })
    }
}

fn member(name: &str, kind: &str, status: MemberStatus) -> Member {
    let mut tags = BTreeMap::new();
    tags.insert(super::super::tags::KIND.to_string(), kind.to_string());
    Member {
        name: name.into(),
        addr: "127.0.0.1:1".parse().expect("addr"),
        status,
        incarnation: 0,
        tags,
    }
}

#[test]
fn a_proposal_stops_serving_lost_shards_before_the_acknowledgement() {
    let mut log = Log::new();
    let mut a = Follower::new("a");
    let m1 = map(&[("a", 1), ("b", 1)], None, 1);
    a.apply(log.propose(&m1));
    let applied = a.apply(log.commit(1));
    assert_eq!(applied.serving.len() as usize, m1.shards_of("a").len());

    let m2 = map(&[("a", 1), ("b", 1), ("c", 1)], Some(&m1), 2);
    let applied = a.apply(log.propose(&m2));
    assert_eq!(applied.ack, Some(2));
    assert!(applied.committed.is_none());
    // What a keeps in m2, and nothing it loses, is in the set that is in
    // force when the acknowledgement leaves.
    let kept: Vec<u32> = m1
        .shards_of("a")
        .into_iter()
        .filter(|s| m2.owner_of(*s) == Some("a"))
        .collect();
    assert_eq!(applied.serving.iter().collect::<Vec<_>>(), kept);
    assert_eq!(applied.serving.applied(), 3, "names the applied index");
}

#[test]
fn a_proposal_is_acknowledged_once_and_only_by_nodes_in_it() {
    let mut log = Log::new();
    let mut a = Follower::new("a");
    let mut z = Follower::new("z");
    let m1 = map(&[("a", 1)], None, 1);
    let st = log.propose(&m1).clone();
    assert_eq!(a.apply(&st).ack, Some(1));
    assert_eq!(a.apply(&st).ack, None, "already acknowledged");
    assert_eq!(z.apply(&st).ack, None, "not in the map");
    // A node that loses everything still acknowledges (it stopped serving).
    a.apply(log.commit(1));
    let m2 = map(&[("b", 1)], Some(&m1), 2);
    let applied = a.apply(log.propose(&m2));
    assert_eq!(applied.ack, Some(2));
    assert!(applied.serving.is_empty());
    assert_eq!(a.acks_sent, 2);
}

#[test]
fn a_commit_reports_what_moved_and_gains_are_served() {
    let mut log = Log::new();
    let mut c = Follower::new("c");
    let m1 = map(&[("a", 1), ("b", 1)], None, 1);
    c.apply(log.propose(&m1));
    let first = c.apply(log.commit(1)).committed.expect("commit");
    assert_eq!(first.moved, SHARDS, "the first map assigns every shard");
    assert_eq!(first.mine, 0);

    let m2 = map(&[("a", 1), ("b", 1), ("c", 2)], Some(&m1), 2);
    let proposed = c.apply(log.propose(&m2));
    assert!(proposed.serving.is_empty(), "gains wait for the commit");
    assert!(c.pending().is_some());
    let applied = c.apply(log.commit(2));
    let second = applied.committed.expect("commit");
    assert_eq!(second.moved, delta(&m1, &m2).expect("delta").moved);
    assert_eq!(second.mine, m2.shards_of("c").len());
    assert!(c.pending().is_none());
    assert_eq!(applied.serving.len() as usize, second.mine);
    assert_eq!(applied.ack, None);
}

#[test]
fn the_cluster_id_is_reported_once() {
    let mut log = Log::new();
    let mut a = Follower::new("a");
    let id = Command::SetClusterId {
        cluster_id: "c1".into(),
    };
    assert_eq!(a.apply(log.apply(id)).cluster_id.as_deref(), Some("c1"));
    assert_eq!(a.cluster_id(), Some("c1"));
    let m1 = map(&[("a", 1)], None, 1);
    assert_eq!(a.apply(log.propose(&m1)).cluster_id, None);
}

#[test]
fn the_state_follows_membership_maps_and_the_lease() {
    let mut log = Log::new();
    let mut a = Follower::new("a");
    let members = [member("a", "member", MemberStatus::Alive)];
    let st = |in_raft, serving_lease| StateInputs {
        member: true,
        members: &members,
        in_raft,
        serving_lease,
    };
    assert_eq!(a.state(&st(false, true)), NodeState::Joining);
    assert_eq!(a.state(&st(true, true)), NodeState::Voting, "no map yet");
    let m1 = map(&[("a", 1)], None, 1);
    a.apply(log.propose(&m1));
    assert_eq!(a.state(&st(true, true)), NodeState::Voting);
    a.apply(log.commit(1));
    assert_eq!(a.state(&st(true, true)), NodeState::Operational);
    assert_eq!(a.state(&st(true, false)), NodeState::Voting, "no lease");
    let m2 = map(&[("a", 1), ("b", 1)], Some(&m1), 2);
    a.apply(log.propose(&m2));
    assert_eq!(a.state(&st(true, true)), NodeState::Resharding);

    // A gossip-only client is operational once it sees another node.
    let client = Follower::new("cli");
    let alone = [member("cli", "client", MemberStatus::Alive)];
    let with_a = [
        member("cli", "client", MemberStatus::Alive),
        member("a", "member", MemberStatus::Dead),
    ];
    let seen = |members| StateInputs {
        member: false,
        members,
        in_raft: false,
        serving_lease: false,
    };
    assert_eq!(client.state(&seen(&alone)), NodeState::Joining);
    assert_eq!(client.state(&seen(&with_a)), NodeState::Joining);
    let with_b = [member("b", "member", MemberStatus::Alive)];
    assert_eq!(client.state(&seen(&with_b)), NodeState::Operational);
}

#[test]
fn a_stop_drains_only_an_owner_that_others_can_replace() {
    let mut log = Log::new();
    let mut a = Follower::new("a");
    let others = [
        member("a", "member", MemberStatus::Alive),
        member("b", "member", MemberStatus::Alive),
    ];
    let alone = [
        member("a", "member", MemberStatus::Alive),
        member("b", "member", MemberStatus::Left),
        member("cli", "client", MemberStatus::Alive),
    ];
    assert!(a.drained());
    assert!(!a.must_drain(&others), "owns nothing");
    let m1 = map(&[("a", 1), ("b", 1)], None, 1);
    a.apply(log.propose(&m1));
    assert!(!a.drained(), "owns shards in the pending map");
    a.apply(log.commit(1));
    assert!(a.must_drain(&others));
    assert!(!a.must_drain(&alone), "nobody can take them");
    let m2 = map(&[("b", 1)], Some(&m1), 2);
    a.apply(log.propose(&m2));
    assert!(!a.drained(), "still owns them in the committed map");
    a.apply(log.commit(2));
    assert!(a.drained());
}

#[test]
fn a_node_left_out_of_the_map_says_it_is_ready_now_and_then() {
    let mut log = Log::new();
    let mut c = Follower::new("c");
    let t = tokio::time::Instant::now();
    let every = std::time::Duration::from_millis(500);
    assert_eq!(c.ready_ack(t, every), None, "no map yet");
    let m1 = map(&[("a", 1), ("c", 1)], None, 1);
    c.apply(log.propose(&m1));
    c.apply(log.commit(1));
    assert_eq!(c.ready_ack(t, every), None, "in the map");
    let m2 = map(&[("a", 1)], Some(&m1), 2);
    c.apply(log.propose(&m2));
    c.apply(log.commit(2));
    assert_eq!(c.ready_ack(t, every), Some(2), "left out: ready");
    assert_eq!(c.ready_ack(t + every / 2, every), None, "not again so soon");
    assert_eq!(c.ready_ack(t + every, every), Some(2));
    let m3 = map(&[("a", 1), ("c", 1)], Some(&m2), 3);
    c.apply(log.propose(&m3));
    assert_eq!(c.ready_ack(t + every * 3, every), None, "in the proposal");
}
