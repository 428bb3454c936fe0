//! The application log on the [`Cluster`] handle: a service appends small
//! cluster-wide facts (configuration, fencing tokens, schema versions)
//! through the cluster's Raft log and every member reads them in order
//! (funk's `RaftNode.AppendLogEntry`).
//!
//! - [`Cluster::append_log`] works on any Raft member: a follower forwards
//!   the entry to the leader. It returns the entry's index once a quorum
//!   has it in its log and the leader applied it.
//! - [`Cluster::app_log_watch`] yields entries in index order from any
//!   index, replaying what is retained, then following new ones as this
//!   node applies them. Indexes are dense (1, 2, 3, ...), so a reader
//!   knows it missed nothing.
//! - Retention: the state machine keeps the newest
//!   [`RETAIN_ENTRIES`](crate::raft::app_log::RETAIN_ENTRIES) entries (at
//!   most [`RETAIN_BYTES`](crate::raft::app_log::RETAIN_BYTES)); they are
//!   part of every snapshot, so Raft's log purges never lose them, and a
//!   sled store keeps them across restarts. A read from before the window
//!   fails with [`ClusterError::Compacted`], naming where to start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::{Cluster, ClusterError};
use crate::raft::{ClusterState, RaftApiError, RaftNode};

/// How long an append waits for a leader when none is known.
const LEADER_WAIT: Duration = Duration::from_secs(2);

/// Entries a watch takes from the state per wake-up.
const READ_BATCH: usize = 256;

/// One application log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLogEntry {
    /// Its index (1 is the first entry ever appended).
    pub index: u64,
    /// The bytes appended.
    pub data: Bytes,
}

/// Entries of the application log in index order (see
/// [`Cluster::app_log_watch`]).
pub struct AppLogWatch {
    state: watch::Receiver<Arc<ClusterState>>,
    next: u64,
    pending: VecDeque<(u64, Bytes)>,
}

impl AppLogWatch {
    /// The index the next entry returned will have.
    pub fn next_index(&self) -> u64 {
        self.pending.front().map_or(self.next, |(i, _)| *i)
    }

    /// The next entry: at once when this node has applied it, else when
    /// it does. Fails with [`ClusterError::Compacted`] when the entry was
    /// compacted before this reader got to it (start again from the index
    /// it names), and [`ClusterError::Stopped`] when the node stopped.
    pub async fn next(&mut self) -> Result<AppLogEntry, ClusterError> {
        loop {
            if let Some((index, data)) = self.pending.pop_front() {
                return Ok(AppLogEntry { index, data });
            }
            let batch = self
                .state
                .borrow_and_update()
                .app_log
                .read(self.next, READ_BATCH)?;
            match batch.last() {
                Some((last, _)) => {
                    self.next = last + 1;
                    self.pending.extend(batch);
                }
                None => self
                    .state
                    .changed()
                    .await
                    .map_err(|_| ClusterError::Stopped)?,
            }
        }
    }
}

impl Cluster {
    fn raft_node(&self) -> Result<&Arc<RaftNode>, ClusterError> {
        self.shared.raft.as_ref().ok_or(ClusterError::NotMember)
    }

    /// Appends `data` to the application log and returns its index once a
    /// quorum holds it and the leader applied it (this node may apply it
    /// a moment later). Any Raft member may call it; a follower forwards
    /// to the leader. With no leader known it waits up to 2 s for one.
    ///
    /// Errors: [`EntryTooLarge`](ClusterError::EntryTooLarge) over
    /// `app_log_max_entry` (default 64 KiB; nothing is written),
    /// [`NotMember`](ClusterError::NotMember) on a node outside Raft,
    /// [`NoLeader`](ClusterError::NoLeader), or a Raft error. An error
    /// after the entry was sent (a forward that timed out) does not say
    /// whether it was appended: read the log before appending it again.
    pub async fn append_log(&self, data: impl Into<Bytes>) -> Result<u64, ClusterError> {
        let data = data.into();
        let limit = self.shared.app_log_max_entry;
        if data.len() > limit {
            return Err(ClusterError::EntryTooLarge {
                size: data.len(),
                limit,
            });
        }
        let raft = self.raft_node()?;
        match raft.append_log(data.clone()).await {
            Err(RaftApiError::ForwardToLeader { leader: None, .. }) => {
                // Nothing was written: wait for a leader and try once more.
                let _ = raft
                    .raft()
                    .wait(Some(LEADER_WAIT))
                    .metrics(|m| m.current_leader.is_some(), "a leader")
                    .await;
                Ok(raft.append_log(data).await?)
            }
            r => Ok(r?),
        }
    }

    /// The application log's retained window on this node: the first
    /// index held and the index the next entry will get.
    pub fn app_log_bounds(&self) -> Result<(u64, u64), ClusterError> {
        let state = self.raft_node()?.state();
        let log = &state.borrow().app_log;
        Ok((log.first_index(), log.next_index()))
    }

    /// Entries from index `from` on, in order, as this node applies them:
    /// retained ones at once, then new ones. `from` 0 starts at the oldest
    /// entry retained; the bounds' next index (see
    /// [`app_log_bounds`](Self::app_log_bounds)) gives only new entries.
    /// A `from` before the retained window fails with
    /// [`ClusterError::Compacted`], which names the first index held.
    pub fn app_log_watch(&self, from: u64) -> Result<AppLogWatch, ClusterError> {
        let state = self.raft_node()?.state();
        let next = {
            let log = &state.borrow().app_log;
            match from {
                0 => log.first_index(),
                n => {
                    log.read(n, 0)?;
                    n
                }
            }
        };
        Ok(AppLogWatch {
            state,
            next,
            pending: VecDeque::new(),
        })
    }
}
