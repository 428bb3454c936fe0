//! The application log: small cluster-wide facts a service replicates
//! through the coordinator's Raft log (configuration, fencing tokens,
//! schema versions), as funk's `RaftNode.AppendLogEntry` does.
//!
//! Entries are numbered by their own dense index (1, 2, 3, ...; not the
//! Raft log index), so a reader can tell it missed nothing. The state
//! machine keeps a bounded window of the newest entries ([`RETAIN_ENTRIES`]
//! entries and at most [`RETAIN_BYTES`] bytes); the window is part of the
//! replicated state, so it is in every snapshot and survives log purges and
//! restarts. Older entries are compacted: reading from before the window
//! fails with [`Compacted`], which names the first index still held.
//!
//! Pure data: no I/O, no clock. The limits are constants (not settings)
//! because every node must apply the same rules to the same entries.

use std::collections::VecDeque;

use bytes::Bytes;

/// Largest entry the state machine accepts, whatever a node's configured
/// limit: 1 MiB. An entry over it is refused when applied (and takes no
/// index), so a misconfigured node cannot bloat every snapshot.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Default per-entry limit a node enforces before it appends: 64 KiB.
pub const DEFAULT_ENTRY_LIMIT: usize = 64 * 1024;

/// Entries kept in the state machine (and its snapshots): the newest 1024.
pub const RETAIN_ENTRIES: usize = 1024;

/// Bytes of entry data kept in the state machine: at most 8 MiB (older
/// entries are compacted first; the newest entry is always kept).
pub const RETAIN_BYTES: usize = 8 << 20;

/// A read started before the retained window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("application log entries before {first} are compacted (asked for {requested}); start from {first}")]
pub struct Compacted {
    /// The index asked for.
    pub requested: u64,
    /// The first index still held.
    pub first: u64,
}

/// The retained window of the application log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppLog {
    /// How many entries were compacted away (the first held index is this
    /// plus one).
    compacted: u64,
    entries: VecDeque<Bytes>,
    bytes: usize,
}

impl AppLog {
    /// Rebuilds a window from its parts (storage and snapshots).
    pub(crate) fn from_parts(compacted: u64, entries: Vec<Bytes>) -> Self {
        let bytes = entries.iter().map(Bytes::len).sum();
        Self {
            compacted,
            entries: entries.into(),
            bytes,
        }
    }

    /// Entries compacted away so far.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    /// The entries held, oldest first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Bytes> {
        self.entries.iter()
    }

    /// The index of the oldest entry held (the next index when empty).
    pub fn first_index(&self) -> u64 {
        self.compacted + 1
    }

    /// The index the next appended entry gets.
    pub fn next_index(&self) -> u64 {
        self.compacted + self.entries.len() as u64 + 1
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of entry data held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Up to `max` entries from index `from` on, with their indexes. `from`
    /// 0 means the oldest entry held (never [`Compacted`]); a `from` past
    /// the end gives nothing.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, Bytes)>, Compacted> {
        let first = self.first_index();
        let from = if from == 0 { first } else { from };
        if from < first {
            return Err(Compacted {
                requested: from,
                first,
            });
        }
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        Ok(self
            .entries
            .iter()
            .skip(skip)
            .take(max)
            .enumerate()
            .map(|(i, e)| (from + i as u64, e.clone()))
            .collect())
    }

    /// Appends `data` and compacts the oldest entries past the retention
    /// limits. Returns the new entry's index, or the refusal when `data`
    /// exceeds [`MAX_ENTRY_BYTES`].
    pub(crate) fn push(&mut self, data: Bytes) -> Result<u64, usize> {
        if data.len() > MAX_ENTRY_BYTES {
            return Err(data.len());
        }
        let index = self.next_index();
        self.bytes += data.len();
        self.entries.push_back(data);
        while self.entries.len() > RETAIN_ENTRIES
            || (self.bytes > RETAIN_BYTES && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.len();
                self.compacted += 1;
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_reads_start_anywhere_in_the_window() {
        let mut log = AppLog::default();
        assert_eq!((log.first_index(), log.next_index()), (1, 1));
        for i in 1..=3u64 {
            assert_eq!(log.push(Bytes::from(format!("e{i}"))), Ok(i));
        }
        let all = log.read(0, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(log.read(2, 1).unwrap(), vec![(2, Bytes::from("e2"))]);
        assert!(log.read(4, 10).unwrap().is_empty());
        assert!(log.read(99, 10).unwrap().is_empty());
    }

    #[test]
    fn old_entries_are_compacted_and_reading_them_says_where_to_start() {
        let mut log = AppLog::default();
        for i in 0..(RETAIN_ENTRIES + 5) {
            log.push(Bytes::from(i.to_string())).unwrap();
        }
        assert_eq!(log.len(), RETAIN_ENTRIES);
        assert_eq!(log.first_index(), 6);
        assert_eq!(
            log.read(3, 1),
            Err(Compacted {
                requested: 3,
                first: 6
            })
        );
        assert_eq!(log.read(0, 1).unwrap()[0].0, 6);
        // Bytes bound the window too; the newest entry always stays.
        let mut log = AppLog::default();
        let big = Bytes::from(vec![0u8; MAX_ENTRY_BYTES]);
        for _ in 0..9 {
            log.push(big.clone()).unwrap();
        }
        assert!(log.bytes() <= RETAIN_BYTES);
        assert_eq!(log.next_index(), 10);
        assert_eq!(log.len(), RETAIN_BYTES / MAX_ENTRY_BYTES);
    }

    #[test]
    fn oversize_entries_are_refused_and_take_no_index() {
        let mut log = AppLog::default();
        let too_big = Bytes::from(vec![1u8; MAX_ENTRY_BYTES + 1]);
        assert_eq!(log.push(too_big), Err(MAX_ENTRY_BYTES + 1));
        assert_eq!(log.next_index(), 1);
        let back = AppLog::from_parts(log.compacted(), log.entries().cloned().collect());
        assert_eq!(back, log);
    }
}
