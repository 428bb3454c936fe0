//! The node's data: one sled database in `<data-dir>/kv`, keys stored
//! under their shard (`shard as 4 big-endian bytes ++ key`) so a shard is
//! one prefix scan; a second tree records shards whose pull from their
//! previous owner has not finished (so a restart resumes it). A per-shard
//! lock is held across "may I serve it?" and the write, so a release can
//! wait for every write it let in.

use std::collections::BTreeMap;

use anyhow::Context;
use tokio::sync::RwLock;

pub struct Store {
    data: sled::Tree,
    /// shard -> the node to pull it from.
    pulls: sled::Tree,
    locks: Vec<RwLock<()>>,
    db: sled::Db,
}

fn prefix(shard: u32) -> [u8; 4] {
    shard.to_be_bytes()
}

fn parse_pull(v: &[u8]) -> Option<(String, u64)> {
    let s = String::from_utf8_lossy(v);
    let (from, epoch) = s.split_once(' ')?;
    Some((from.to_string(), epoch.parse().ok()?))
}

fn full_key(shard: u32, key: &str) -> Vec<u8> {
    let mut k = prefix(shard).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    pub fn open(dir: &std::path::Path, shards: u32) -> anyhow::Result<Store> {
        let db = sled::open(dir).with_context(|| format!("open {}", dir.display()))?;
        Ok(Store {
            data: db.open_tree("data")?,
            pulls: db.open_tree("pulls")?,
            locks: (0..shards).map(|_| RwLock::new(())).collect(),
            db,
        })
    }

    /// The shard's lock (shared by writes and reads, exclusive for a
    /// release).
    pub fn lock(&self, shard: u32) -> Option<&RwLock<()>> {
        self.locks.get(shard as usize)
    }

    /// Flushes to disk on a blocking thread (sled's `flush_async` can hang
    /// when many tasks call it at once).
    async fn flush(&self) -> anyhow::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush()).await??;
        Ok(())
    }

    /// Stores `key` durably (flushed before it returns).
    pub async fn set(&self, shard: u32, key: &str, value: &str) -> anyhow::Result<()> {
        self.data.insert(full_key(shard, key), value.as_bytes())?;
        self.flush().await?;
        Ok(())
    }

    pub fn get(&self, shard: u32, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .data
            .get(full_key(shard, key))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every key of `shard` with its value.
    pub fn dump(&self, shard: u32) -> anyhow::Result<Vec<(String, String)>> {
        self.data
            .scan_prefix(prefix(shard))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k[4..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Replaces `shard`'s data with `pairs` and clears its pending pull, in
    /// one batch, flushed.
    pub async fn replace(&self, shard: u32, pairs: &[(String, String)]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for kv in self.data.scan_prefix(prefix(shard)) {
            batch.remove(kv?.0);
        }
        for (k, v) in pairs {
            batch.insert(full_key(shard, k), v.as_bytes());
        }
        self.data.apply_batch(batch)?;
        self.pulls.remove(prefix(shard))?;
        self.flush().await?;
        Ok(())
    }

    /// Records that `shard` must be pulled from `from`, as of the map of
    /// `epoch` (before its pull).
    pub async fn pull_pending(&self, shard: u32, from: &str, epoch: u64) -> anyhow::Result<()> {
        self.pulls
            .insert(prefix(shard), format!("{from} {epoch}").as_bytes())?;
        self.flush().await?;
        Ok(())
    }

    /// Keeps `shard`'s local data as it is: no pull is needed any more.
    pub async fn keep_local(&self, shard: u32) -> anyhow::Result<()> {
        self.pulls.remove(prefix(shard))?;
        self.flush().await
    }

    /// The node `shard` must still be pulled from, and the epoch, if any.
    pub fn pending_pull(&self, shard: u32) -> Option<(String, u64)> {
        let v = self.pulls.get(prefix(shard)).ok()??;
        parse_pull(&v)
    }

    /// Every pending pull (shard -> node, epoch).
    pub fn pending_pulls(&self) -> BTreeMap<u32, (String, u64)> {
        self.pulls
            .iter()
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, v)| {
                let shard = u32::from_be_bytes(k.as_ref().try_into().ok()?);
                Some((shard, parse_pull(&v)?))
            })
            .collect()
    }

    /// How many keys the node holds (every shard).
    pub fn len(&self) -> usize {
        self.data.len()
    }
}
