//! The node task's background jobs: Raft writes, membership changes,
//! acknowledgements, gossip joins and the hand-over. Each runs in a task the
//! node owns and ends in a [`Done`] the node reads back, so the node's loop
//! never waits on the network. No decisions here: the engines made them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Duration;
use tracing::{debug, info, warn};

use super::leader::{MembershipChange, Write};
use super::ClusterError;
use crate::gossip::Gossip;
use crate::raft::{AdmitError, Command, NodeId, RaftApiError, RaftNode, RaftNodeInfo, Response};

/// A finished job.
pub(super) enum Done {
    Write(Write, Result<Response, String>),
    Membership(Result<(), String>),
    /// The admission check of a node to add.
    Admitted(RaftNodeInfo, Result<(), AdmitError>),
    /// The bootstrap, and the members it left out for failing the
    /// admission check.
    Bootstrap(Result<(), String>, Vec<(RaftNodeInfo, AdmitError)>),
    Joined(Result<usize, String>),
    Acked(bool),
    /// The service released what a proposal takes away (or the deadline
    /// passed: `in_time` false).
    Released {
        epoch: u64,
        in_time: bool,
    },
    /// The registry write that undoes a stop's drain finished.
    DrainUndone(bool),
}

/// Writes `cmd` (undoing a stop's drain) through the leader.
pub(super) async fn undo_drain(raft: Arc<RaftNode>, cmd: Command) -> Done {
    match raft.write_via_leader(cmd).await {
        Ok(()) => Done::DrainUndone(true),
        Err(e) => {
            debug!(error = %e, "undoing the drain failed; trying again");
            Done::DrainUndone(false)
        }
    }
}

/// Joins the configured seeds, retrying until one answers (a seed may
/// start later than this node): the pause doubles from 100 ms up to
/// `interval`, and after `max` attempts (0: never) it gives up.
pub(super) async fn join_seeds(
    gossip: Gossip,
    seeds: Vec<String>,
    interval: Duration,
    max: u32,
) -> Done {
    let mut delay = Duration::from_millis(100).min(interval);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = match resolve(&seeds).await {
            addrs if addrs.is_empty() => Err("no seed address resolved".to_string()),
            addrs => gossip.join(&addrs).await.map_err(|e| e.to_string()),
        };
        match result {
            Ok(n) => return Done::Joined(Ok(n)),
            Err(e) if max != 0 && attempt >= max => {
                return Done::Joined(Err(format!("{e} (gave up after {attempt} attempts)")))
            }
            Err(e) => info!(
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                error = %e,
                "join failed; retrying"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(interval);
    }
}

/// Resolves `host:port` names; names that do not resolve are skipped.
pub(super) async fn resolve(names: &[String]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for s in names {
        match tokio::net::lookup_host(s.as_str()).await {
            Ok(found) => addrs.extend(found),
            Err(e) => debug!(name = %s, error = %e, "cannot resolve"),
        }
    }
    addrs
}

/// Joins one peer found by discovery.
pub(super) async fn join_peer(gossip: Gossip, addr: SocketAddr) -> Done {
    Done::Joined(gossip.join(&[addr]).await.map_err(|e| e.to_string()))
}

/// Initialises Raft with `members` (this node bootstraps the cluster),
/// after the admission check of every other one: those that fail it are
/// left out, and with fewer than `expect` left nothing is initialised.
pub(super) async fn bootstrap(
    raft: Arc<RaftNode>,
    members: BTreeMap<NodeId, RaftNodeInfo>,
    expect: usize,
) -> Done {
    let me = raft.id();
    let checks = members
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, info)| {
            let raft = raft.clone();
            async move { (*id, raft.admit(&info.name, &info.addr, None).await) }
        });
    let mut admitted = members.clone();
    let mut refused = Vec::new();
    for (id, r) in futures::future::join_all(checks).await {
        if let Err(e) = r {
            if let Some(info) = admitted.remove(&id) {
                refused.push((info, e));
            }
        }
    }
    let r = if admitted.len() < expect {
        Err(format!(
            "{} of {} nodes passed the admission check, {expect} expected",
            admitted.len(),
            members.len()
        ))
    } else {
        raft.initialize(admitted).await.map_err(|e| e.to_string())
    };
    Done::Bootstrap(r, refused)
}

/// A leader write.
pub(super) async fn write(raft: Arc<RaftNode>, what: Write, cmd: Command) -> Done {
    let result = raft.client_write(cmd).await.map_err(|e| e.to_string());
    if result.is_ok() {
        // Followers learn the new commit index now rather than at the
        // next heartbeat, so they apply (and acknowledge) sooner.
        let _ = raft.raft().trigger().heartbeat().await;
    }
    Done::Write(what, result)
}

/// Sends the acknowledgement of `epoch` to the leader.
pub(super) async fn ack(raft: Arc<RaftNode>, epoch: u64) -> Done {
    // The leader may be unknown for a moment right after an election; a
    // few quick attempts cover that, and a proposal that never hears from
    // us is replaced after ack_timeout anyway.
    for _ in 0..5 {
        if let Some((_, info)) = raft.leader() {
            if raft.ack_to(&info.addr, epoch).await.is_ok() {
                return Done::Acked(true);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Done::Acked(false)
}

/// The admission check of `info` (see `crate::raft::admit`).
pub(super) async fn admit(
    raft: Arc<RaftNode>,
    info: RaftNodeInfo,
    cluster_id: Option<String>,
) -> Done {
    let r = raft
        .admit(&info.name, &info.addr, cluster_id.as_deref())
        .await;
    Done::Admitted(info, r)
}

/// A membership change the leader decided, step by step.
pub(super) async fn change_membership(raft: Arc<RaftNode>, change: MembershipChange) -> Done {
    let MembershipChange {
        readdress,
        add,
        voters,
        remove,
    } = change;
    let r = async {
        if !readdress.is_empty() {
            raft.raft()
                .change_membership(openraft::ChangeMembers::SetNodes(readdress), true)
                .await
                .map_err(RaftApiError::from)?;
        }
        for (id, info) in add {
            raft.add_learner(id, info, false).await?;
        }
        if let Some(voters) = voters {
            raft.change_membership(voters, true).await?;
        }
        if !remove.is_empty() {
            raft.raft()
                .change_membership(openraft::ChangeMembers::RemoveNodes(remove), false)
                .await
                .map_err(RaftApiError::from)?;
        }
        Ok::<(), RaftApiError>(())
    }
    .await;
    Done::Membership(r.map_err(|e| e.to_string()))
}

/// Appends `cmd` through the leader; the reply goes to `reply`.
pub(super) async fn write_via_leader(
    raft: Arc<RaftNode>,
    cmd: Command,
    reply: Option<oneshot::Sender<Result<(), ClusterError>>>,
) {
    let r = raft.write_via_leader(cmd).await.map_err(|e| match e {
        RaftApiError::ForwardToLeader { leader: None, .. } => ClusterError::NoLeader,
        e => ClusterError::from(e),
    });
    if let Err(e) = &r {
        warn!(error = %e, "registry write failed");
    }
    if let Some(reply) = reply {
        let _ = reply.send(r);
    }
}

/// Hands leadership to another voter.
pub(super) async fn hand_over(raft: Arc<RaftNode>) -> Result<(), ClusterError> {
    let to = raft.hand_over().await.map_err(ClusterError::from)?;
    info!(to, "handed leadership over");
    Ok(())
}
