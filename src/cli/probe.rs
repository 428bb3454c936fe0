//! `clusterfunk agent --probe-out FILE`: records, from inside the agent,
//! exactly what [`Cluster::is_serving`] answers for every shard, about once
//! a millisecond, so a chaos run can tell whether two nodes ever served one
//! shard at the same instant.
//!
//! A plain OS thread (not a tokio task, so a busy runtime does not delay
//! it) takes a consistent sample: the serving set, the lease as
//! `is_serving` sees it (one call on a shard of that set), and the set again;
//! if the set changed in between it samples again. For every shard `s` the
//! sample is then `set.contains(s) && lease`, which is what `is_serving(s)`
//! answers at that instant: the cost is two watch borrows and one call per
//! millisecond, not 10,000 calls. Because that equivalence rests on how
//! `is_serving` is built today, every second the thread also calls
//! `is_serving` on every shard and writes a `check` record if the two ever
//! disagree (the chaos run reports those).
//!
//! One JSON line per record, appended (a restarted agent appends to the
//! same file), each with `t`, wall-clock microseconds (CLOCK_REALTIME: all
//! agents run on one machine, so their clocks agree):
//! - `{"k":"start","node":..,"shards":N}` when the probe starts;
//! - `{"k":"serve","add":[[a,b],..],"del":[[a,b],..]}`: half-open shard
//!   ranges gained and lost since the previous sample;
//! - `{"k":"role","role":..,"leader":..}` when the role or leader changes;
//! - `{"k":"gap","from":T}` when two samples are more than 20 ms apart
//!   (the process was stopped, or starved), written before that sample's
//!   `serve` record;
//! - `{"k":"check","mismatch":N}` if the full check disagreed;
//! - `{"k":"stop"}` on a graceful exit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clusterfunk::cluster::ServingSet;
use clusterfunk::Cluster;
use serde_json::json;

/// Time between samples.
const PERIOD: Duration = Duration::from_millis(1);
/// Samples further apart than this are reported as a gap.
const GAP_US: u64 = 20_000;
/// Samples between two full `is_serving` checks.
const CHECK_EVERY: u32 = 1000;

/// The sampling thread; [`Probe::stop`] ends it.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Wall-clock microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Probe {
    /// Starts sampling `cluster` into `path` (appending).
    pub fn start(cluster: Cluster, path: &Path) -> std::io::Result<Probe> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("serving-probe".into())
            .spawn(move || Sampler::new(cluster, file).run(&flag))?;
        Ok(Probe {
            stop,
            thread: Some(thread),
        })
    }

    /// Writes the `stop` record and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Sampler {
    cluster: Cluster,
    file: File,
    rx: tokio::sync::watch::Receiver<Arc<ServingSet>>,
    shards: u32,
    /// The set of the previous sample and its first shard.
    last_set: Option<(Arc<ServingSet>, Option<u32>)>,
    last_lease: bool,
    /// What the previous sample served, as a bitmap.
    served: Vec<u64>,
    role: (String, Option<String>),
}

impl Sampler {
    fn new(cluster: Cluster, file: File) -> Sampler {
        let shards = cluster.shard_count();
        Sampler {
            rx: cluster.watch_serving(),
            cluster,
            file,
            shards,
            last_set: None,
            last_lease: false,
            served: vec![0; shards.div_ceil(64) as usize],
            role: (String::new(), None),
        }
    }

    fn write(&mut self, record: serde_json::Value) {
        // One write per line, so a kill -9 leaves at most one partial line.
        let mut line = record.to_string();
        line.push('\n');
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "probe write failed");
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let node = self.cluster.node_id().to_string();
        self.write(json!({"t": unix_us(), "k": "start", "node": node, "shards": self.shards}));
        let mut last_t = unix_us();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let (set, first, lease) = self.sample();
            let t = unix_us();
            if t.saturating_sub(last_t) > GAP_US {
                self.write(json!({"t": t, "k": "gap", "from": last_t}));
            }
            last_t = t;
            let same = self
                .last_set
                .as_ref()
                .is_some_and(|(s, _)| Arc::ptr_eq(s, &set))
                && lease == self.last_lease;
            if !same {
                self.record_serving(t, &set, lease);
                self.last_set = Some((set, first));
                self.last_lease = lease;
            }
            let role = (self.cluster.role().to_string(), self.cluster.leader());
            if role != self.role {
                self.write(json!({"t": t, "k": "role", "role": role.0, "leader": role.1}));
                self.role = role;
            }
            n += 1;
            if n % CHECK_EVERY == 0 {
                self.full_check();
            }
            std::thread::sleep(PERIOD);
        }
        self.write(json!({"t": unix_us(), "k": "stop"}));
    }

    /// A consistent sample: the serving set, its first shard, and whether
    /// the lease held (as `is_serving` on that first shard answered).
    fn sample(&mut self) -> (Arc<ServingSet>, Option<u32>, bool) {
        loop {
            let set = self.rx.borrow().clone();
            let first = match &self.last_set {
                Some((s, f)) if Arc::ptr_eq(s, &set) => *f,
                _ => set.iter().next(),
            };
            let lease = first.is_some_and(|s| self.cluster.is_serving(s));
            if Arc::ptr_eq(&set, &self.rx.borrow()) {
                return (set, first, lease);
            }
        }
    }

    fn record_serving(&mut self, t: u64, set: &ServingSet, lease: bool) {
        let mut now = vec![0u64; self.served.len()];
        if lease {
            for s in set.iter().filter(|s| *s < self.shards) {
                now[s as usize / 64] |= 1 << (s % 64);
            }
        }
        let add = ranges(&now, &self.served, self.shards);
        let del = ranges(&self.served, &now, self.shards);
        self.served = now;
        if !add.is_empty() || !del.is_empty() {
            self.write(json!({"t": t, "k": "serve", "add": add, "del": del}));
        }
    }

    /// Calls `is_serving` on every shard and compares with the sample
    /// taken just before and after (skipped if those two differ).
    fn full_check(&mut self) {
        let before = self.sample();
        let answers: Vec<bool> = (0..self.shards)
            .map(|s| self.cluster.is_serving(s))
            .collect();
        let after = self.sample();
        if !Arc::ptr_eq(&before.0, &after.0) || before.2 != after.2 {
            return;
        }
        let mismatch = answers
            .iter()
            .enumerate()
            .filter(|(s, a)| **a != (before.2 && before.0.contains(*s as u32)))
            .count();
        if mismatch > 0 {
            self.write(json!({"t": unix_us(), "k": "check", "mismatch": mismatch}));
        }
    }
}

/// Half-open ranges of shards set in `a` and not in `b`.
fn ranges(a: &[u64], b: &[u64], shards: u32) -> Vec<[u32; 2]> {
    let mut out: Vec<[u32; 2]> = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let mut w = x & !y;
        while w != 0 {
            let s = i as u32 * 64 + w.trailing_zeros();
            w &= w - 1;
            if s >= shards {
                break;
            }
            match out.last_mut() {
                Some(r) if r[1] == s => r[1] = s + 1,
                _ => out.push([s, s + 1]),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_are_half_open_and_merged_across_words() {
        let mut a = vec![0u64; 2];
        a[0] = 0b1110 | (1 << 63);
        a[1] = 0b11;
        let b = vec![0u64, 0b10];
        assert_eq!(ranges(&a, &b, 128), vec![[1, 4], [63, 65]]);
        assert!(ranges(&b, &a, 128).is_empty());
    }
}
