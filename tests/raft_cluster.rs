//! Multi-node Raft tests: three nodes in one process over real tonic on
//! 127.0.0.1 (sled storage), and over the in-process router with cut links.
//! Every wait is on a watch with a deadline, never a fixed sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clusterfunk::raft::{
    Ack, ClusterState, Command, NetError, Network, RaftApiError, RaftConfig, RaftNode,
    RaftNodeInfo, Response, Router, SnapshotPolicy, Storage,
};
use openraft::ServerState;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

mod common;
const WAIT: Duration = Duration::from_secs(15);

fn name(id: u64) -> String {
    format!("n{id}")
}

/// Starts node `id` serving gRPC on `listener`, storing in `dir`.
async fn start_grpc(
    id: u64,
    listener: TcpListener,
    dir: &Path,
    config: &RaftConfig,
    acks: Option<mpsc::Sender<Ack>>,
) -> anyhow::Result<RaftNode> {
    let addr = listener.local_addr()?.to_string();
    let node = RaftNode::start(
        id,
        RaftNodeInfo::new(name(id), addr),
        config.clone(),
        Storage::Sled(dir.to_path_buf()),
        Network::grpc(config),
        acks,
    )
    .await?;
    node.serve(listener)?;
    Ok(node)
}

async fn wait_state(
    node: &RaftNode,
    what: &str,
    f: impl Fn(&ClusterState) -> bool,
) -> anyhow::Result<Arc<ClusterState>> {
    let mut rx = node.state();
    let s = tokio::time::timeout(WAIT, rx.wait_for(|s| f(s)))
        .await
        .with_context(|| format!("node {} timed out waiting for {what}", node.id()))??;
    Ok(s.clone())
}

/// Waits until `nodes` agree on a leader (one of them) and returns its index.
async fn wait_leader(nodes: &[&RaftNode], except: Option<u64>) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut rxs: Vec<_> = nodes.iter().map(|n| n.metrics()).collect();
        let leaders: BTreeSet<Option<u64>> = rxs
            .iter_mut()
            .map(|m| m.borrow_and_update().current_leader)
            .collect();
        if leaders.len() == 1 {
            if let Some(Some(l)) = leaders.first() {
                if Some(*l) != except {
                    if let Some(i) = nodes.iter().position(|n| n.id() == *l) {
                        if nodes[i].is_leader() {
                            return Ok(i);
                        }
                    }
                }
            }
        }
        // Wait for any metrics change, bounded by the deadline.
        let changes = rxs.iter_mut().map(|m| Box::pin(m.changed()));
        if tokio::time::timeout_at(deadline, futures::future::select_all(changes))
            .await
            .is_err()
        {
            bail!("no agreed leader within {WAIT:?}: {leaders:?}");
        }
    }
}

async fn write(node: &RaftNode, cmd: Command) -> anyhow::Result<Response> {
    Ok(tokio::time::timeout(WAIT, node.client_write(cmd)).await??)
}

fn propose(epoch: u64) -> Command {
    Command::Propose {
        epoch,
        map: Bytes::from(format!("map-{epoch}")),
    }
}

fn test_config() -> RaftConfig {
    RaftConfig {
        cluster_name: "test".into(),
        ..RaftConfig::default()
    }
}

struct Slot {
    id: u64,
    addr: String,
    dir: PathBuf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_cluster_replicates_fails_over_and_rejoins() -> anyhow::Result<()> {
    let tmp = TempDir::new()?;
    let config = test_config();
    let (ack_tx, mut ack_rx) = mpsc::channel(16);
    let mut nodes = Vec::new();
    let mut slots = Vec::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let dir = tmp.path().join(name(id));
        nodes.push(Some(
            start_grpc(id, listener, &dir, &config, Some(ack_tx.clone())).await?,
        ));
        slots.push(Slot { id, addr, dir });
    }
    let members: BTreeMap<u64, RaftNodeInfo> = slots
        .iter()
        .map(|s| (s.id, RaftNodeInfo::new(name(s.id), s.addr.clone())))
        .collect();
    let live = |nodes: &Vec<Option<RaftNode>>| -> Vec<usize> {
        (0..nodes.len()).filter(|i| nodes[*i].is_some()).collect()
    };
    nodes[0]
        .as_ref()
        .ok_or_else(|| anyhow!("n1"))?
        .initialize(members)
        .await?;

    // --- a leader is elected and replicates commands to all three.
    let all: Vec<&RaftNode> = nodes.iter().flatten().collect();
    let l = wait_leader(&all, None).await?;
    let leader = all[l];
    assert_eq!(
        write(
            leader,
            Command::SetClusterId {
                cluster_id: "c1".into()
            }
        )
        .await?,
        Response::ClusterId {
            accepted: true,
            cluster_id: "c1".into()
        }
    );
    assert_eq!(
        write(leader, propose(1)).await?,
        Response::Proposed { epoch: 1 }
    );
    assert_eq!(
        write(leader, Command::Commit { epoch: 1 }).await?,
        Response::Committed { epoch: 1 }
    );
    assert_eq!(
        write(leader, propose(1)).await?,
        Response::ProposalRejected {
            epoch: 1,
            last_epoch: 1
        }
    );
    for n in &all {
        let s = wait_state(n, "commit of epoch 1", |s| s.committed_epoch() == Some(1)).await?;
        assert_eq!(s.cluster_id.as_deref(), Some("c1"));
        assert_eq!(
            s.committed.as_ref().map(|(_, m)| m.clone()),
            Some(Bytes::from("map-1"))
        );
    }

    // --- a follower refuses writes and names the leader.
    let follower = all[(l + 1) % 3];
    match follower.client_write(propose(9)).await {
        Err(RaftApiError::ForwardToLeader {
            leader_id,
            leader: info,
        }) => {
            assert_eq!(leader_id, Some(leader.id()));
            assert_eq!(
                info.as_ref().map(|i| i.addr.as_str()),
                Some(leader.info().addr.as_str())
            );
        }
        other => bail!("expected ForwardToLeader, got {other:?}"),
    }
    // Followers hear from the leader, and a quorum confirms the leader:
    // both hold a serving lease for what they applied.
    assert!(follower.last_leader_contact().is_some());
    let applied = |n: &RaftNode| n.state().borrow().last_applied.map_or(0, |l| l.index);
    common::wait::wait_until("leader lease", || {
        leader.serving_until(applied(leader)).is_some()
    })
    .await;
    common::wait::wait_until("follower lease", || {
        follower.serving_until(applied(follower)).is_some()
    })
    .await;

    // --- Ack RPC: a follower acknowledges epoch 1 to the leader.
    follower.ack_to(&leader.info().addr, 1).await?;
    let ack = tokio::time::timeout(WAIT, ack_rx.recv())
        .await?
        .ok_or_else(|| anyhow!("ack channel closed"))?;
    assert_eq!(
        ack,
        Ack {
            node: follower.info().name.clone(),
            epoch: 1
        }
    );

    // --- stop the leader: the survivors elect a new one.
    let old_leader_id = leader.id();
    let old_term = leader.current_term();
    let old = nodes[l]
        .take()
        .ok_or_else(|| anyhow!("leader slot empty"))?;
    old.shutdown().await?;
    drop(old);
    let survivors: Vec<&RaftNode> = live(&nodes)
        .into_iter()
        .filter_map(|i| nodes[i].as_ref())
        .collect();
    let nl = wait_leader(&survivors, Some(old_leader_id)).await?;
    let new_leader = survivors[nl];
    assert_ne!(new_leader.id(), old_leader_id);
    assert!(new_leader.current_term() > old_term);
    assert_eq!(
        write(new_leader, propose(2)).await?,
        Response::Proposed { epoch: 2 }
    );
    for n in &survivors {
        wait_state(n, "proposal 2", |s| s.proposed_epoch() == Some(2)).await?;
    }
    let new_leader_id = new_leader.id();

    // --- the old leader restarts from its sled directory on its address
    // and rejoins as a follower of the new leader.
    let slot = &slots[l];
    let listener = TcpListener::bind(&slot.addr).await?;
    let restarted = start_grpc(slot.id, listener, &slot.dir, &config, None).await?;
    // Its own log already holds everything up to epoch 1 before it hears
    // from anyone.
    assert_eq!(restarted.state().borrow().committed_epoch(), Some(1));
    restarted
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader == Some(new_leader_id) && m.state == ServerState::Follower,
            "old leader follows the new one",
        )
        .await?;
    wait_state(&restarted, "proposal 2 on the restarted node", |s| {
        s.proposed_epoch() == Some(2)
    })
    .await?;
    nodes[l] = Some(restarted);

    for n in nodes.iter().flatten() {
        n.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_node_restart_keeps_log_vote_and_state() -> anyhow::Result<()> {
    let tmp = TempDir::new()?;
    let config = test_config();
    let mut slots = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let dir = tmp.path().join(name(id));
        nodes.push(start_grpc(id, listener, &dir, &config, None).await?);
        slots.push(Slot { id, addr, dir });
    }
    let members = slots
        .iter()
        .map(|s| (s.id, RaftNodeInfo::new(name(s.id), s.addr.clone())))
        .collect();
    nodes[0].initialize(members).await?;
    let refs: Vec<&RaftNode> = nodes.iter().collect();
    let leader = refs[wait_leader(&refs, None).await?];
    write(
        leader,
        Command::SetClusterId {
            cluster_id: "persist".into(),
        },
    )
    .await?;
    for e in 1..=5 {
        write(leader, propose(e)).await?;
    }
    write(leader, Command::Commit { epoch: 5 }).await?;
    write(
        leader,
        Command::SetMember {
            name: "m".into(),
            weight: 7,
            zone: "z".into(),
        },
    )
    .await?;
    // Wait until node 2 applied everything, then record what it had.
    let n2 = &nodes[1];
    wait_state(n2, "member m on n2", |s| s.members.contains_key("m")).await?;
    let before_state = n2.state().borrow().clone();
    let (before_vote, before_last) = {
        let m = n2.metrics();
        let m = m.borrow();
        (m.vote, m.last_log_index)
    };
    for n in nodes.drain(..) {
        n.shutdown().await?;
    }

    // Node 2 alone: nobody can feed it, so whatever it has is from disk.
    let s2 = &slots[1];
    let alone = start_grpc(
        s2.id,
        TcpListener::bind(&s2.addr).await?,
        &s2.dir,
        &config,
        None,
    )
    .await?;
    // Metrics start blank and reflect storage once the core has loaded it.
    let m = alone
        .raft()
        .wait(Some(WAIT))
        .metrics(|m| m.last_log_index.is_some(), "log loaded")
        .await?;
    assert_eq!(m.last_log_index, before_last, "log kept");
    assert!(
        m.vote.leader_id.term >= before_vote.leader_id.term,
        "vote kept"
    );
    assert_eq!(m.state, ServerState::Follower);
    let after = alone.state().borrow().clone();
    assert_eq!(after.cluster_id, before_state.cluster_id);
    assert_eq!(after.committed, before_state.committed);
    assert_eq!(after.last_epoch, 5);
    assert_eq!(after.members, before_state.members);
    assert_eq!(
        after.membership.membership(),
        before_state.membership.membership()
    );

    // The others come back and the cluster works again.
    let mut nodes = vec![alone];
    for s in [&slots[0], &slots[2]] {
        nodes.push(
            start_grpc(
                s.id,
                TcpListener::bind(&s.addr).await?,
                &s.dir,
                &config,
                None,
            )
            .await?,
        );
    }
    let refs: Vec<&RaftNode> = nodes.iter().collect();
    let leader = refs[wait_leader(&refs, None).await?];
    assert_eq!(
        write(leader, propose(6)).await?,
        Response::Proposed { epoch: 6 }
    );
    for n in &nodes {
        n.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_learner_catches_up_through_snapshot() -> anyhow::Result<()> {
    let tmp = TempDir::new()?;
    let config = RaftConfig {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        ..test_config()
    };
    let mut nodes = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        members.insert(
            id,
            RaftNodeInfo::new(name(id), listener.local_addr()?.to_string()),
        );
        nodes.push(start_grpc(id, listener, &tmp.path().join(name(id)), &config, None).await?);
    }
    nodes[0].initialize(members).await?;
    let refs: Vec<&RaftNode> = nodes.iter().collect();
    let leader = refs[wait_leader(&refs, None).await?];
    write(
        leader,
        Command::SetClusterId {
            cluster_id: "snap".into(),
        },
    )
    .await?;
    for e in 1..=30 {
        write(leader, propose(e)).await?;
        write(
            leader,
            Command::SetMember {
                name: format!("m{e}"),
                weight: e as u32,
                zone: "z".into(),
            },
        )
        .await?;
    }
    write(leader, Command::Commit { epoch: 30 }).await?;
    // The leader snapshotted and purged the log it had.
    leader
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.snapshot.is_some_and(|s| s.index >= 40) && m.purged.is_some_and(|p| p.index >= 40)
            },
            "leader snapshot and purge",
        )
        .await?;

    // A new learner can only catch up through the snapshot.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let info = RaftNodeInfo::new(name(4), listener.local_addr()?.to_string());
    let learner = start_grpc(4, listener, &tmp.path().join(name(4)), &config, None).await?;
    leader.add_learner(4, info, false).await?;
    let s = wait_state(&learner, "learner catches up", |s| {
        s.committed_epoch() == Some(30)
    })
    .await?;
    assert_eq!(s.cluster_id.as_deref(), Some("snap"));
    assert_eq!(s.members.len(), 30);
    assert_eq!(s.members["m17"].weight, 17);
    let m = learner.metrics().borrow().clone();
    assert!(m.snapshot.is_some(), "learner installed a snapshot: {m:?}");
    assert_eq!(m.state, ServerState::Learner);
    // It keeps following: later writes arrive as log entries.
    write(leader, propose(31)).await?;
    wait_state(&learner, "proposal 31 on learner", |s| {
        s.proposed_epoch() == Some(31)
    })
    .await?;
    // Promote it to a voter.
    leader
        .change_membership([1, 2, 3, 4].into_iter().collect(), false)
        .await?;
    learner
        .raft()
        .wait(Some(WAIT))
        .state(ServerState::Follower, "learner promoted to voter")
        .await?;
    let voters: Vec<u64> = learner
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, vec![1, 2, 3, 4]);
    learner.shutdown().await?;
    for n in &nodes {
        n.shutdown().await?;
    }
    Ok(())
}

async fn start_routed(
    router: &Router,
    id: u64,
    config: &RaftConfig,
    acks: Option<mpsc::Sender<Ack>>,
) -> anyhow::Result<RaftNode> {
    let addr = name(id);
    // Network::new uses default timing; RaftNode::start applies `config`.
    let net = Network::new(router.connector(&addr));
    let node = RaftNode::start(
        id,
        RaftNodeInfo::new(name(id), addr.clone()),
        config.clone(),
        Storage::Memory,
        net,
        acks,
    )
    .await?;
    router.register(&addr, node.service());
    Ok(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_cutting_the_leader_elects_a_new_one() -> anyhow::Result<()> {
    let router = Router::new();
    let config = test_config();
    let (ack_tx, mut ack_rx) = mpsc::channel(1);
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(start_routed(&router, id, &config, Some(ack_tx.clone())).await?);
    }
    let members = (1..=3u64)
        .map(|id| (id, RaftNodeInfo::new(name(id), name(id))))
        .collect();
    nodes[0].initialize(members).await?;
    let refs: Vec<&RaftNode> = nodes.iter().collect();
    let l = wait_leader(&refs, None).await?;
    let leader = refs[l];
    write(leader, propose(1)).await?;
    for n in &refs {
        wait_state(n, "proposal 1", |s| s.proposed_epoch() == Some(1)).await?;
    }

    // Acks: the queue holds one; the second is dropped and counted.
    let follower = refs[(l + 1) % 3];
    follower.ack_to(&leader.info().addr, 1).await?;
    match follower.ack_to(&leader.info().addr, 1).await {
        Err(NetError::Dropped { .. }) => {}
        other => bail!("expected a dropped ack, got {other:?}"),
    }
    assert_eq!(leader.acks_dropped(), 1);
    assert_eq!(ack_rx.recv().await.map(|a| a.epoch), Some(1));
    match follower.ack_to("nowhere", 1).await {
        Err(NetError::Unreachable { .. }) => {}
        other => bail!("expected an unreachable peer, got {other:?}"),
    }

    // Cut the leader off: the other two elect a new leader.
    let old_id = leader.id();
    router.isolate(&leader.info().addr);
    let others: Vec<&RaftNode> = refs.iter().copied().filter(|n| n.id() != old_id).collect();
    let nl = wait_leader(&others, Some(old_id)).await?;
    let new_leader = others[nl];
    assert_eq!(
        write(new_leader, propose(2)).await?,
        Response::Proposed { epoch: 2 }
    );
    assert!(router.refused() > 0);
    // The isolated leader loses its lease (no quorum acknowledges it).
    common::wait::wait_until("isolated leader loses its lease", || {
        leader.serving_until(u64::MAX).is_none()
    })
    .await;
    // ...and cannot apply the new proposal.
    assert_eq!(leader.state().borrow().proposed_epoch(), Some(1));

    // Heal: the old leader follows the new one and catches up.
    router.heal();
    let new_id = new_leader.id();
    leader
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader == Some(new_id) && m.state == ServerState::Follower,
            "old leader follows",
        )
        .await?;
    wait_state(leader, "proposal 2 after heal", |s| {
        s.proposed_epoch() == Some(2)
    })
    .await?;
    // Once caught up, the new leader's grants give the old leader (now a
    // follower) a lease for what it applied.
    common::wait::wait_until("healed follower renews its lease", || {
        leader
            .serving_until(leader.state().borrow().last_applied.map_or(0, |l| l.index))
            .is_some()
    })
    .await;
    for n in &nodes {
        n.shutdown().await?;
    }
    Ok(())
}

/// A leader refuses votes while a quorum accepted one of its rounds within
/// `vote_lease`, even after openraft's own refusal (which runs
/// only from the leader's election) has lapsed; once it lost its quorum
/// that long it votes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_its_quorum_refuses_votes() -> anyhow::Result<()> {
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;
    use openraft::Vote;

    let router = Router::new();
    let config = test_config();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(start_routed(&router, id, &config, None).await?);
    }
    let members = (1..=3u64)
        .map(|id| (id, RaftNodeInfo::new(name(id), name(id))))
        .collect();
    nodes[0].initialize(members).await?;
    let refs: Vec<&RaftNode> = nodes.iter().collect();
    let leader = refs[wait_leader(&refs, None).await?];
    write(leader, propose(1)).await?;
    // openraft's leader refuses votes for its vote lease after its
    // election and not after: let that pass (a time condition, not an
    // event to wait for).
    tokio::time::sleep(config.vote_lease * 2).await;

    let candidate = refs.iter().find(|n| n.id() != leader.id()).unwrap().id();
    let mut net = Network::new(router.connector("probe"));
    let mut peer = net
        .new_client(
            leader.id(),
            &RaftNodeInfo::new(name(leader.id()), name(leader.id())),
        )
        .await;
    let ask = |term: u64| {
        let m = leader.raft().metrics().borrow().clone();
        VoteRequest::new(Vote::new(term, candidate), m.last_applied)
    };
    let term = leader.current_term();
    let opt = RPCOption::new(Duration::from_secs(1));
    let r = peer.vote(ask(term + 5), opt.clone()).await?;
    assert!(
        !r.vote_granted,
        "a leader holding its quorum granted a vote: {r:?}"
    );
    assert!(leader.is_leader());
    assert_eq!(leader.current_term(), term);

    // Cut the followers off: the leader loses its quorum and, after
    // the vote lease, grants the same request.
    for n in refs.iter().filter(|n| n.id() != leader.id()) {
        router.isolate(&n.info().addr);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = peer.vote(ask(term + 5), opt.clone()).await?;
        if r.vote_granted {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("a leader without its quorum never voted again: {r:?}");
        }
        tokio::time::sleep(config.heartbeat_interval).await;
    }
    for n in &nodes {
        n.shutdown().await?;
    }
    Ok(())
}
