//! Watching that no shard is ever served twice: samples every node's
//! `is_serving` for every shard about every millisecond while a test
//! injects faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clusterfunk::Cluster;

/// How many overlaps are kept for the failure message.
const KEEP: usize = 10;

/// A running sampler; [`OverlapWatch::finish`] stops it and judges.
pub struct OverlapWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl OverlapWatch {
    /// Starts sampling `nodes` (one pass over the nodes per shard, so the
    /// samples of one shard are microseconds apart).
    pub fn start(nodes: Vec<Cluster>) -> OverlapWatch {
        let shards = nodes.first().map_or(0, Cluster::shard_count);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut overlaps) = (0u64, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                for shard in 0..shards {
                    let serving: Vec<&str> = nodes
                        .iter()
                        .filter(|n| n.is_serving(shard))
                        .map(|n| n.node_id())
                        .collect();
                    if serving.len() > 1 && overlaps.len() < KEEP {
                        overlaps.push(format!("shard {shard} served by {serving:?}"));
                    }
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (samples, overlaps)
        });
        OverlapWatch { stop, task }
    }

    /// Stops sampling; panics if a shard was ever served by two nodes at
    /// once. Returns how many passes were sampled.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, overlaps) = self.task.await.expect("overlap sampler");
        assert!(overlaps.is_empty(), "shards served twice: {overlaps:?}");
        samples
    }
}
