//! Raft log on sled: entries keyed by big-endian index in the `log` tree,
//! vote, committed and last purged log ids in trees of their own.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::{corrupt, CloseGuard};
use crate::raft::codec;
use crate::raft::error::StoreError;
use crate::raft::{Entry, LogId, NodeId, TypeConfig};

const KEY: &[u8] = b"v";

/// sled-backed Raft log; clones share the database (a clone is a reader).
#[derive(Clone)]
pub struct SledLogStore {
    // Field order matters: trees and db drop before the guard signals close.
    log: sled::Tree,
    vote: sled::Tree,
    committed: sled::Tree,
    purged: sled::Tree,
    db: sled::Db,
    _guard: Arc<CloseGuard>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn key_index(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

impl SledLogStore {
    pub(super) fn open(db: &sled::Db, guard: Arc<CloseGuard>) -> Result<Self, StoreError> {
        let s = Self {
            log: db.open_tree("log")?,
            vote: db.open_tree("vote")?,
            committed: db.open_tree("committed")?,
            purged: db.open_tree("purged")?,
            db: db.clone(),
            _guard: guard,
        };
        // Fail at open, not at first use, if the stored values are corrupt.
        if let Some(v) = s.vote.get(KEY)? {
            codec::decode_vote(&v).map_err(|e| corrupt("vote", e))?;
        }
        if let Some((_, v)) = s.log.last()? {
            codec::decode_entry(&v).map_err(|e| corrupt("log entry", e))?;
        }
        Ok(s)
    }

    fn read_log_id(tree: &sled::Tree) -> Result<Option<LogId>, StorageError<NodeId>> {
        match tree.get(KEY).map_err(read_err)? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode_log_id(&v).map_err(read_err)?)),
        }
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(|_| ())
    }
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (k, v) = item.map_err(read_err)?;
            let index = key_index(&k).ok_or_else(|| {
                StorageError::from(StorageIOError::<NodeId>::read_logs(AnyError::error(
                    "log key is not 8 bytes",
                )))
            })?;
            if !range.contains(&index) {
                break;
            }
            let entry = codec::decode_entry(&v).map_err(read_err)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged = Self::read_log_id(&self.purged)?;
        let last = match self.log.last().map_err(read_err)? {
            None => None,
            Some((_, v)) => Some(codec::decode_entry(&v).map_err(read_err)?.log_id),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let werr =
            |e: sled::Error| StorageError::from(StorageIOError::write_vote(AnyError::new(&e)));
        self.vote
            .insert(KEY, codec::encode_vote(vote))
            .map_err(werr)?;
        self.flush().await.map_err(werr)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let rerr = |e: &dyn std::error::Error| {
            StorageError::from(StorageIOError::read_vote(AnyError::error(e.to_string())))
        };
        match self.vote.get(KEY).map_err(|e| rerr(&e))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode_vote(&v).map_err(|e| rerr(&e))?)),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed: a lost committed id only means re-applying less on
        // restart; the next append or vote flush persists it anyway.
        match committed {
            Some(c) => self
                .committed
                .insert(KEY, codec::encode_log_id(&c))
                .map(|_| ()),
            None => self.committed.remove(KEY).map(|_| ()),
        }
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Self::read_log_id(&self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&index_key(e.log_id.index), codec::encode_entry(&e));
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for k in self.log.range(index_key(log_id.index)..).keys() {
            batch.remove(k.map_err(read_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.flush().await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        if Self::read_log_id(&self.purged)?.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which are never read.
        self.purged
            .insert(KEY, codec::encode_log_id(&log_id))
            .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=index_key(log_id.index)).keys() {
            batch.remove(k.map_err(read_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
