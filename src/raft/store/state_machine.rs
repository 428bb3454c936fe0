//! The Raft state machine: applies entries to a [`ClusterState`], keeps it
//! (in memory or in sled's `sm` tree), publishes it on a `watch`, and builds,
//! stores and installs snapshots of it.
//!
//! A snapshot's payload is the protobuf `ClusterState` message: the whole
//! state, so installing one restores everything (cluster id, proposal,
//! committed map, epochs, member registry, last applied, membership, the
//! application log's retained window).
//!
//! In sled the `sm` tree holds the state without the application log's
//! entries; those live in the `app_log` tree keyed by their index (big
//! endian), so an apply writes only the entries it added and removes the
//! ones it compacted, in one transaction with the state.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError,
};
use sled::transaction::{ConflictableTransactionError, Transactional};
use tokio::sync::watch;

use super::{corrupt, CloseGuard};
use crate::raft::codec;
use crate::raft::error::StoreError;
use crate::raft::types::{ClusterState, RaftNodeInfo, Response};
use crate::raft::{Entry, LogId, NodeId, StoredMembership, TypeConfig};

const STATE_KEY: &[u8] = b"state";
const SNAPSHOT_KEY: &[u8] = b"current";

type Meta = SnapshotMeta<NodeId, RaftNodeInfo>;

/// A snapshot as kept by the state machine.
#[derive(Clone)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// Where the state machine and its snapshot live.
#[derive(Clone)]
enum Backend {
    Memory {
        snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    },
    Sled(SledSm),
}

#[derive(Clone)]
struct SledSm {
    // Field order matters: trees and db drop before the guard signals close.
    sm: sled::Tree,
    app_log: sled::Tree,
    snapshot: sled::Tree,
    db: sled::Db,
    _guard: Arc<CloseGuard>,
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

/// A failed sled transaction, as an error type.
#[derive(Debug, thiserror::Error)]
#[error("state machine transaction: {0}")]
struct TxError(String);

impl Backend {
    /// Persists `state`, which replaces `before` (the next applied state,
    /// or an installed snapshot's, never an older one): the state head,
    /// the application log entries `before` lacks and the removal of those
    /// `state` no longer holds, atomically. An index names the same entry
    /// on every node, so entries both hold stay as they are.
    fn persist_state(
        &self,
        before: &ClusterState,
        state: &ClusterState,
    ) -> Result<(), StorageError<NodeId>> {
        let Backend::Sled(s) = self else {
            return Ok(());
        };
        let head = codec::encode_state_head(state);
        let (old, new) = (&before.app_log, &state.app_log);
        if (old.first_index(), old.next_index()) == (new.first_index(), new.next_index()) {
            return s
                .sm
                .insert(STATE_KEY, head)
                .map(|_| ())
                .map_err(sm_write_err);
        }
        let gone = old.first_index()..new.first_index().min(old.next_index());
        let added = new
            .read(old.next_index().max(new.first_index()), usize::MAX)
            .unwrap_or_default();
        (&s.sm, &s.app_log)
            .transaction(|(sm, log)| {
                for i in gone.clone() {
                    log.remove(&i.to_be_bytes())?;
                }
                for (i, e) in &added {
                    log.insert(&i.to_be_bytes(), e.as_ref())?;
                }
                sm.insert(STATE_KEY, head.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| sm_write_err(TxError(format!("{e:?}"))))
    }

    /// Loads the application log entries a state head left out.
    fn load_app_log(
        tree: &sled::Tree,
        state: &mut ClusterState,
        (compacted, count): (u64, u64),
    ) -> Result<(), StoreError> {
        let mut entries = Vec::with_capacity(count.min(4096) as usize);
        for i in compacted + 1..=compacted + count {
            match tree.get(i.to_be_bytes())? {
                Some(v) => entries.push(bytes::Bytes::from(v.to_vec())),
                None => return Err(corrupt("application log", format!("entry {i} missing"))),
            }
        }
        state.app_log = crate::raft::AppLog::from_parts(compacted, entries);
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        match self {
            Backend::Memory { snapshot } => Ok(snapshot
                .lock()
                .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e.to_string())))?
                .clone()),
            Backend::Sled(s) => {
                let rerr = |e: String| StorageIOError::read_snapshot(None, AnyError::error(e));
                match s
                    .snapshot
                    .get(SNAPSHOT_KEY)
                    .map_err(|e| rerr(e.to_string()))?
                {
                    None => Ok(None),
                    Some(v) => {
                        let (meta, data) =
                            codec::decode_snapshot(&v).map_err(|e| rerr(e.to_string()))?;
                        Ok(Some(StoredSnapshot { meta, data }))
                    }
                }
            }
        }
    }

    /// Stores `snap` as the current snapshot unless a newer one is there.
    async fn store_snapshot(&self, snap: StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let werr = |e: String| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(snap.meta.signature()),
                AnyError::error(e),
            ))
        };
        if let Some(cur) = self.load_snapshot()? {
            if cur.meta.last_log_id > snap.meta.last_log_id {
                return Ok(());
            }
        }
        match self {
            Backend::Memory { snapshot } => {
                *snapshot.lock().map_err(|e| werr(e.to_string()))? = Some(snap.clone());
                Ok(())
            }
            Backend::Sled(s) => {
                s.snapshot
                    .insert(SNAPSHOT_KEY, codec::encode_snapshot(&snap.meta, &snap.data))
                    .map_err(|e| werr(e.to_string()))?;
                s.db.flush_async().await.map_err(|e| werr(e.to_string()))?;
                Ok(())
            }
        }
    }
}

/// The Raft state machine over [`ClusterState`].
pub struct StateMachineStore {
    state: Arc<ClusterState>,
    tx: watch::Sender<Arc<ClusterState>>,
    backend: Backend,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// An empty in-memory state machine.
    pub fn memory() -> Self {
        Self::with(
            ClusterState::default(),
            Backend::Memory {
                snapshot: Arc::new(Mutex::new(None)),
            },
        )
    }

    pub(super) fn open_sled(db: sled::Db, guard: Arc<CloseGuard>) -> Result<Self, StoreError> {
        let backend = SledSm {
            sm: db.open_tree("sm")?,
            app_log: db.open_tree("app_log")?,
            snapshot: db.open_tree("snapshot")?,
            db,
            _guard: guard,
        };
        let mut state = match backend.sm.get(STATE_KEY)? {
            Some(v) => {
                let (mut state, missing) =
                    codec::decode_state_head(&v).map_err(|e| corrupt("state machine", e))?;
                if let Some(range) = missing {
                    Backend::load_app_log(&backend.app_log, &mut state, range)?;
                }
                state
            }
            None => ClusterState::default(),
        };
        let backend = Backend::Sled(backend);
        // The state machine is not flushed on every apply; if a crash lost
        // more of it than the snapshot holds, start from the snapshot (the
        // log below it may be purged, so it cannot be re-applied).
        if let Some(snap) = backend
            .load_snapshot()
            .map_err(|e| corrupt("snapshot", e))?
        {
            if snap.meta.last_log_id > state.last_applied {
                let before = state;
                state =
                    snapshot_state(&snap.meta, &snap.data).map_err(|e| corrupt("snapshot", e))?;
                // Keep the stored window in step with the snapshot's.
                backend
                    .persist_state(&before, &state)
                    .map_err(|e| corrupt("state machine", e))?;
            }
        }
        Ok(Self::with(state, backend))
    }

    fn with(state: ClusterState, backend: Backend) -> Self {
        let state = Arc::new(state);
        let (tx, _) = watch::channel(state.clone());
        Self {
            state,
            tx,
            backend,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A receiver of the state after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.tx.subscribe()
    }

    /// The current state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.clone()
    }

    fn publish(&mut self, state: ClusterState) {
        self.state = Arc::new(state);
        self.tx.send_replace(self.state.clone());
    }
}

/// Decodes a snapshot payload and completes it with the snapshot's meta.
fn snapshot_state(meta: &Meta, data: &[u8]) -> Result<ClusterState, codec::DecodeError> {
    let mut state = codec::decode_state(data)?;
    state.last_applied = meta.last_log_id;
    state.membership = meta.last_membership.clone();
    Ok(state)
}

/// Builds a snapshot from a frozen view of the state.
pub struct SnapshotBuilder {
    state: Arc<ClusterState>,
    backend: Backend,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = codec::encode_state(&self.state);
        let snapshot_id = match &self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        self.backend
            .store_snapshot(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .await?;
        tracing::debug!(snapshot = %meta, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut replies = Vec::with_capacity(entries.size_hint().0);
        let mut state = (*self.state).clone();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Response::Empty,
                EntryPayload::Normal(cmd) => state.apply(cmd),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Empty
                }
            };
            replies.push(reply);
        }
        self.backend.persist_state(&self.state, &state)?;
        self.publish(state);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.clone(),
            backend: self.backend.clone(),
            seq: self.snapshot_seq.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state = snapshot_state(meta, &data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        self.backend.persist_state(&self.state, &state)?;
        self.backend
            .store_snapshot(StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await?;
        tracing::info!(snapshot = %meta, "installed snapshot");
        self.publish(state);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.backend.load_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
