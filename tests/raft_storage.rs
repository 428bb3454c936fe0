//! Storage conformance: openraft's storage test suite against the sled and
//! in-memory stores, plus persistence and snapshot round trips.

use bytes::Bytes;
use clusterfunk::raft::store::{
    open_memory, open_sled, MemLogStore, SledLogStore, StateMachineStore,
};
use clusterfunk::raft::{Command, Entry, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageError, Vote};
use tempfile::TempDir;

const CACHE: u64 = 8 * 1024 * 1024;

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, StateMachineStore, ()> for MemBuilder {
    async fn build(&self) -> Result<((), MemLogStore, StateMachineStore), StorageError<u64>> {
        let (log, sm) = open_memory();
        Ok(((), log, sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, SledLogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, SledLogStore, StateMachineStore), StorageError<u64>> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm, _closed) =
            open_sled(dir.path(), CACHE).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

// The suite runs its own tokio runtimes, so these are plain #[test]s.
#[test]
fn memory_store_passes_openraft_suite() -> anyhow::Result<()> {
    Suite::test_all(MemBuilder)?;
    Ok(())
}

#[test]
fn sled_store_passes_openraft_suite() -> anyhow::Result<()> {
    Suite::test_all(SledBuilder)?;
    Ok(())
}

fn normal(term: u64, index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn commands() -> Vec<Command> {
    vec![
        Command::SetClusterId {
            cluster_id: "cid-1".into(),
        },
        Command::Propose {
            epoch: 1,
            map: Bytes::from_static(b"map-1"),
        },
        Command::Commit { epoch: 1 },
        Command::Propose {
            epoch: 2,
            map: Bytes::from_static(b"map-2"),
        },
        Command::SetMember {
            name: "a".into(),
            weight: 3,
            zone: "z1".into(),
        },
    ]
}

#[tokio::test]
async fn sled_keeps_log_vote_and_state_across_reopen() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let entries: Vec<Entry> = commands()
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(1, i as u64 + 1, c))
        .collect();
    {
        let (mut log, mut sm, closed) = open_sled(dir.path(), CACHE)?;
        log.save_vote(&Vote::new_committed(1, 1)).await?;
        log.blocking_append(entries.clone()).await?;
        log.save_committed(Some(log_id(1, 1, 5))).await?;
        sm.apply(entries.clone()).await?;
        drop((log, sm));
        closed.closed().await;
    }
    let (mut log, mut sm, _closed) = open_sled(dir.path(), CACHE)?;
    assert_eq!(log.read_vote().await?, Some(Vote::new_committed(1, 1)));
    assert_eq!(log.try_get_log_entries(1..6).await?, entries);
    let state = sm.state();
    assert_eq!(state.cluster_id.as_deref(), Some("cid-1"));
    assert_eq!(state.committed, Some((1, Bytes::from_static(b"map-1"))));
    assert_eq!(state.proposed, Some((2, Bytes::from_static(b"map-2"))));
    assert_eq!(state.last_epoch, 2);
    assert_eq!(state.members["a"].weight, 3);
    let (applied, _) = sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(1, 1, 5)));
    Ok(())
}

/// Builds a snapshot on `source` after some commands, installs it on
/// `target`, and checks the whole state came across.
async fn snapshot_restores_full_state(
    mut source: StateMachineStore,
    mut target: StateMachineStore,
) -> anyhow::Result<()> {
    let entries: Vec<Entry> = commands()
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(2, i as u64 + 1, c))
        .collect();
    source.apply(entries).await?;
    let snap = source.get_snapshot_builder().await.build_snapshot().await?;
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 1, 5)));

    let current = source
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no current snapshot"))?;
    let mut rx = target.subscribe();
    target
        .install_snapshot(&current.meta, current.snapshot)
        .await?;
    assert_eq!(*target.state(), *source.state());
    // The watch published the installed state.
    assert!(rx.has_changed()?);
    assert_eq!(**rx.borrow_and_update(), *source.state());
    Ok(())
}

#[tokio::test]
async fn memory_snapshot_restores_full_state() -> anyhow::Result<()> {
    let (_, a) = open_memory();
    let (_, b) = open_memory();
    snapshot_restores_full_state(a, b).await
}

#[tokio::test]
async fn sled_snapshot_restores_full_state_and_survives_reopen() -> anyhow::Result<()> {
    let d1 = TempDir::new()?;
    let d2 = TempDir::new()?;
    let (_l1, a, _c1) = open_sled(d1.path(), CACHE)?;
    let (l2, b, c2) = open_sled(d2.path(), CACHE)?;
    snapshot_restores_full_state(a, b).await?;
    drop(l2);
    c2.closed().await;

    // Reopen the target: the installed snapshot and its state are there.
    let (_l2, mut b2, _c2) = open_sled(d2.path(), CACHE)?;
    let snap = b2
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("snapshot lost on reopen"))?;
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 1, 5)));
    let state = b2.state();
    assert_eq!(state.cluster_id.as_deref(), Some("cid-1"));
    assert_eq!(state.last_epoch, 2);
    assert_eq!(state.last_applied, Some(log_id(2, 1, 5)));
    assert_eq!(state.members["a"].zone, "z1");
    Ok(())
}

fn append(term: u64, index: u64, data: String) -> Entry {
    normal(term, index, Command::AppendLog { data: data.into() })
}

/// The application log's retained window survives a reopen (entries live
/// in their own sled tree), compaction removes old entries from it, and a
/// snapshot carries the window to another store, replacing what it held.
#[tokio::test]
async fn sled_keeps_the_application_log_window_across_reopen_and_snapshots() -> anyhow::Result<()> {
    use clusterfunk::raft::app_log::RETAIN_ENTRIES;
    let (d1, d2) = (TempDir::new()?, TempDir::new()?);
    let total = RETAIN_ENTRIES as u64 + 10;
    let source_state = {
        let (_l, mut sm, closed) = open_sled(d1.path(), CACHE)?;
        // In batches, as openraft applies them.
        for chunk in (1..=total).collect::<Vec<_>>().chunks(100) {
            let batch = chunk.iter().map(|i| append(1, *i, format!("fact-{i}")));
            sm.apply(batch.collect::<Vec<_>>()).await?;
        }
        let state = sm.state();
        assert_eq!(state.app_log.first_index(), 11);
        assert_eq!(state.app_log.next_index(), total + 1);
        sm.get_snapshot_builder().await.build_snapshot().await?;
        drop((_l, sm));
        closed.closed().await;
        state
    };
    let (_l1, mut a, _c1) = open_sled(d1.path(), CACHE)?;
    assert_eq!(*a.state(), *source_state, "state after reopen");
    let e = a.state().app_log.read(total, 1)?;
    assert_eq!(e[0].1, Bytes::from(format!("fact-{total}")));

    // A target with entries of its own installs the snapshot: afterwards
    // (and after a reopen) it holds exactly the source's window.
    let (l2, mut b, c2) = open_sled(d2.path(), CACHE)?;
    b.apply(vec![
        append(1, 1, "other".into()),
        append(1, 2, "other".into()),
    ])
    .await?;
    let snap = a
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no snapshot"))?;
    b.install_snapshot(&snap.meta, snap.snapshot).await?;
    assert_eq!(b.state().app_log, source_state.app_log);
    drop((l2, b));
    c2.closed().await;
    let (_l2, b, _c2) = open_sled(d2.path(), CACHE)?;
    assert_eq!(*b.state(), *source_state, "target after reopen");
    Ok(())
}
