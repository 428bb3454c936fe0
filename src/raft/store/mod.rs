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
    /// This in-memory log, which outlives the node (a simulated disk: the
    /// log and vote survive a simulated crash; the state machine is
    /// rebuilt from the log, as with sled).
    Kept(MemLogStore),
}

/// Opens a sled database with its page cache capped at `cache_capacity`
/// bytes and returns the log store and state machine on it.
///
/// The returned [`ClosedSignal`] resolves once every handle on the database
/// (log store, readers, state machine, snapshot builders) is dropped, i.e.
/// the directory can be opened again.
///
/// A directory that cannot be opened (corrupted files, another program's
/// data, no permission) fails with [`StoreError::DataDir`], which names the
/// path, the problem and what to do.
pub fn open_sled(
    path: &std::path::Path,
    cache_capacity: u64,
) -> Result<(SledLogStore, StateMachineStore, ClosedSignal), StoreError> {
    open_sled_at(path, cache_capacity).map_err(|e| explain(path, e))
}

/// Turns an error of opening `path` into one an operator can act on.
fn explain(path: &std::path::Path, e: StoreError) -> StoreError {
    let (problem, detail) = match &e {
        StoreError::Sled(sled::Error::Corruption { .. }) => {
            ("its files are corrupted", e.to_string())
        }
        StoreError::Sled(sled::Error::Unsupported(_)) => (
            "it is not a clusterfunk Raft store (foreign or damaged files, or another sled version)",
            e.to_string(),
        ),
        StoreError::Sled(sled::Error::Io(io)) => (
            match io.kind() {
                std::io::ErrorKind::PermissionDenied => "permission denied",
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                    "the path is not a directory"
                }
                _ => "it cannot be read or written",
            },
            e.to_string(),
        ),
        StoreError::Sled(_) => ("sled could not open it", e.to_string()),
        StoreError::Corrupt { .. } => (
            "it holds records that do not decode as a clusterfunk Raft log",
            e.to_string(),
        ),
        StoreError::DataDir { .. } => return e,
    };
    StoreError::DataDir {
        path: path.to_path_buf(),
        problem,
        detail,
    }
}

fn open_sled_at(
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

/// Simulated disks: one in-memory Raft log per node id, kept across
/// restarts of that node in one process (cheap to clone).
#[derive(Clone, Default, Debug)]
pub struct MemDisks {
    logs: Arc<std::sync::Mutex<std::collections::BTreeMap<String, MemLogStore>>>,
}

impl MemDisks {
    /// The log of `node` (a new, empty one the first time).
    pub fn log(&self, node: &str) -> MemLogStore {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.entry(node.to_string()).or_default().clone()
    }

    /// Forgets the log of `node`, as wiping its data dir would.
    pub fn wipe(&self, node: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.remove(node);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open_err(dir: &std::path::Path) -> String {
        match open_sled(dir, 1 << 20) {
            Ok(_) => panic!("{} opened", dir.display()),
            Err(e) => e.to_string(),
        }
    }

    fn says_what_to_do(msg: &str, dir: &std::path::Path) {
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("remove its data dir"), "{msg}");
        assert!(msg.contains("Restore"), "{msg}");
    }

    #[test]
    fn garbage_conf_names_the_dir_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("raft");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("conf"), b"\xff\x00 not a sled config \x13\x37").unwrap();
        let msg = open_err(&dir);
        says_what_to_do(&msg, &dir);
        assert!(msg.contains("not a clusterfunk Raft store"), "{msg}");
    }

    #[test]
    fn corrupted_log_names_the_dir_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("raft");
        {
            let db = sled::Config::new().path(&dir).open().unwrap();
            let t = db.open_tree("log").unwrap();
            for i in 0u64..200 {
                t.insert(i.to_be_bytes(), vec![7u8; 512]).unwrap();
            }
            db.flush().unwrap();
        }
        // Overwrite the middle of the data file with garbage.
        let data = dir.join("db");
        let mut bytes = std::fs::read(&data).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid.saturating_sub(4096)..mid] {
            *b = 0xA5;
        }
        std::fs::write(&data, &bytes).unwrap();
        match open_sled(&dir, 1 << 20) {
            // sled may not notice damage in unused space; when it does, the
            // message must say what to do.
            Ok(_) => {}
            Err(e) => says_what_to_do(&e.to_string(), &dir),
        }
    }

    #[test]
    fn a_file_instead_of_a_dir_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("raft");
        std::fs::write(&file, b"x").unwrap();
        let msg = open_err(&file);
        says_what_to_do(&msg, &file);
    }
}
