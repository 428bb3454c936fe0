//! Raft storage: a log store ([`SledLogStore`] or [`MemLogStore`]) and the
//! [`StateMachineStore`] that applies [`Command`](super::Command)s to a
//! [`ClusterState`](super::ClusterState) and publishes it on a `watch`.
//!
//! sled keeps the log, the vote, the committed log id, the last purged log
//! id, the state machine and the current snapshot in separate trees; every
//! value is protobuf (`raft.proto`). Appends and votes are flushed
//! (`flush_async`, an fsync) before openraft is told they are done. The
//! committed log id and the state machine are not flushed on their own: they
//! are rebuilt by re-applying the (durable) log after a crash, and every
//! later flush persists them too. Snapshots are flushed when stored.

// openraft's StorageError and RPCError are large by design and are the
// return types its traits mandate; boxing them here would only add copies.
#![allow(clippy::result_large_err)]

mod memory;
mod sled_log;
mod state_machine;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

pub use memory::MemLogStore;
pub use sled_log::SledLogStore;
pub use state_machine::{SnapshotBuilder, StateMachineStore};

use super::error::StoreError;

/// Where a node keeps its Raft log and state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// sled database in this directory (created if missing). The page cache
    /// size comes from [`RaftConfig::sled_cache_capacity`](super::RaftConfig).
    Sled(PathBuf),
    /// Nothing survives the process: for tests and `--in-memory`.
    Memory,
}

/// Opens a sled database with its page cache capped at `cache_capacity`
/// bytes and returns the log store and state machine on it.
///
/// The returned [`ClosedSignal`] resolves once every handle on the database
/// (log store, readers, state machine, snapshot builders) is dropped, i.e.
/// the directory can be opened again.
pub fn open_sled(
    path: &std::path::Path,
    cache_capacity: u64,
) -> Result<(SledLogStore, StateMachineStore, ClosedSignal), StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity)
        .open()?;
    let (tx, rx) = oneshot::channel();
    let guard = Arc::new(CloseGuard { tx: Some(tx) });
    let log = SledLogStore::open(&db, guard.clone())?;
    let sm = StateMachineStore::open_sled(db, guard)?;
    Ok((log, sm, ClosedSignal(rx)))
}

/// Returns an empty in-memory log store and state machine.
pub fn open_memory() -> (MemLogStore, StateMachineStore) {
    (MemLogStore::default(), StateMachineStore::memory())
}

/// Fires (by dropping its sender) when the last storage handle is dropped.
pub(crate) struct CloseGuard {
    tx: Option<oneshot::Sender<()>>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
    }
}

/// Resolves when every handle on a sled database has been dropped.
pub struct ClosedSignal(oneshot::Receiver<()>);

impl ClosedSignal {
    /// Waits until the database is closed.
    pub async fn closed(self) {
        // An error means the sender was dropped, which also means closed.
        let _ = self.0.await;
    }
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: e.to_string(),
    }
}
