//! Clusters of real agent processes (`clusterfunk::local`): the cluster
//! every multi-process test starts, and five agents with their first map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use clusterfunk::local::{owners, Commit, LocalCluster};
use clusterfunk::management::Client;

/// Shards of every multi-process cluster.
pub const SHARDS: u32 = 1000;
/// How long a multi-process step may take (processes start, elect, map).
pub const PROC_WAIT: Duration = Duration::from_secs(60);

/// A cluster named `name` of agents with 1000 shards, info logs and the
/// `extra` flags on every agent.
pub fn cluster(dir: &Path, name: &str, extra: &[&str]) -> LocalCluster {
    let exe = Path::new(env!("CARGO_BIN_EXE_clusterfunk"));
    let mut args = vec!["--shards", "1000", "--log", "info"];
    args.extend_from_slice(extra);
    LocalCluster::new(exe, dir, name, &args)
}

/// Five agents n1..n5 of cluster `name` (with `extra` flags), every one
/// holding the first map over all five (returned per node).
pub async fn five(
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> (LocalCluster, Vec<String>, BTreeMap<String, Commit>) {
    let mut lc = cluster(dir, name, extra);
    lc.start("n1", None).await.expect("start n1");
    let seed = lc.endpoint("n1", "gossip").expect("gossip addr");
    for i in 2..=5 {
        lc.start(&format!("n{i}"), Some(&seed))
            .await
            .expect("start");
    }
    let all = lc.nodes();
    let first = lc
        .wait_commit(&all, 0, PROC_WAIT, |c| {
            owners(c).len() == 5 && covers_all(c)
        })
        .await
        .expect("first map on every node");
    (lc, all, first)
}

/// Whether a commit assigns every shard.
pub fn covers_all(c: &Commit) -> bool {
    c.owners.values().sum::<u32>() == SHARDS
}

/// The one leader named by `commits`.
pub fn leader(commits: &BTreeMap<String, Commit>) -> String {
    let leaders: BTreeSet<_> = commits.values().filter_map(|c| c.leader.clone()).collect();
    assert_eq!(leaders.len(), 1, "one leader in {commits:?}");
    leaders.into_iter().next().expect("leader")
}

/// A management client of `node` (with the cluster's `token`, if any).
pub async fn client(lc: &LocalCluster, node: &str, token: Option<&str>) -> Option<Client> {
    let addr = lc.endpoint(node, "management")?;
    Client::connect(&addr, token, None).await.ok()
}

/// Every node's status, when every node answers, agrees on one leader and
/// one epoch and is operational.
pub async fn settled(
    lc: &LocalCluster,
    nodes: &[String],
    token: Option<&str>,
) -> Option<(String, u64)> {
    let mut seen = BTreeSet::new();
    for n in nodes {
        let s = client(lc, n, token).await?.status().await.ok()?;
        if !s.operational {
            return None;
        }
        seen.insert((s.leader?, s.epoch));
    }
    (seen.len() == 1).then(|| seen.into_iter().next()).flatten()
}

/// Polls [`settled`] until `accept` takes its answer; panics naming `what`
/// after [`PROC_WAIT`].
pub async fn wait_settled(
    lc: &LocalCluster,
    nodes: &[String],
    token: Option<&str>,
    what: &str,
    accept: impl Fn(&(String, u64)) -> bool,
) -> (String, u64) {
    let deadline = tokio::time::Instant::now() + PROC_WAIT;
    loop {
        if let Some(s) = settled(lc, nodes, token).await.filter(|s| accept(s)) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the series of metric `name` on the `/metrics` endpoint of
/// `node` (read over plain HTTP/1.1); `None` when it does not answer.
pub async fn scraped(lc: &LocalCluster, node: &str, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = lc.endpoint(node, "metrics")?;
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    let total = body
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}
