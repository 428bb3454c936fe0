//! The application log (funk's `AppendLogEntry`) on in-process clusters
//! over loopback: appends on the leader and on followers (library and
//! management API), one order on every node, a node that joins after the
//! log was purged reads every entry from its snapshot, the size limit, and
//! a sled cluster that keeps its entries across a restart of every node.

mod common;

use std::collections::BTreeSet;

use clusterfunk::cluster::Seams;
use clusterfunk::config::{SnapshotPolicy, StorageConfig};
use clusterfunk::management::Client;
use clusterfunk::{Agent, Cluster, ClusterError, Config, NodeState};
use common::cluster::{start_agents, stop_all};
use common::wait::wait_until;

fn config(i: usize, cluster: &str) -> Config {
    let mut c = Config::local(format!("n{i}"));
    c.cluster_name = cluster.into();
    c.shard_count = 64;
    // Snapshot often and keep no log below it, so a node added later gets
    // the application log from a snapshot, not from log entries.
    c.raft.snapshot_policy = SnapshotPolicy::LogsSinceLast(10);
    c.raft.max_in_snapshot_log_to_keep = 0;
    c
}

async fn operational(nodes: &[Agent]) {
    wait_until("every node operational with one leader", || {
        let leaders: BTreeSet<Option<String>> = nodes.iter().map(|n| n.leader()).collect();
        leaders.len() == 1
            && leaders.iter().all(Option::is_some)
            && nodes.iter().all(|n| n.state() == NodeState::Operational)
    })
    .await;
}

fn leader_and_follower(nodes: &[Agent]) -> (&Agent, &Agent) {
    let id = nodes[0].leader().expect("a leader");
    let leader = nodes.iter().find(|n| n.node_id() == id).expect("leader");
    let follower = nodes.iter().find(|n| n.node_id() != id).expect("follower");
    (leader, follower)
}

/// Every entry from index 1 up to (not including) `next`, read on `c`.
async fn read_all(c: &Cluster, next: u64) -> Vec<(u64, Vec<u8>)> {
    let mut w = c.app_log_watch(1).expect("watch");
    let mut out = Vec::new();
    while w.next_index() < next {
        let e = w.next().await.expect("entry");
        out.push((e.index, e.data.to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_from_any_node_are_seen_in_one_order_everywhere() {
    let mut nodes = start_agents(3, Seams::default(), |i| config(i, "applog")).await;
    operational(&nodes).await;
    let (leader, follower) = leader_and_follower(&nodes);
    assert_eq!(leader.append_log("from-leader").await.expect("append"), 1);
    assert_eq!(
        follower.append_log("from-follower").await.expect("append"),
        2
    );

    // Concurrent appends from every node get distinct, dense indexes.
    let appends = nodes.iter().flat_map(|n| {
        (0..8).map(move |k| {
            let n: Cluster = (**n).clone();
            async move {
                let data = format!("{}-{k}", n.node_id());
                let index = n.append_log(data.clone()).await.expect("append");
                (index, data)
            }
        })
    });
    let mut got: Vec<(u64, String)> = futures::future::join_all(appends).await;
    got.sort();
    let indexes: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(indexes, (3..27).collect::<Vec<u64>>());

    // Through the management API of a follower.
    let addr = follower.local_endpoints()["management"].to_string();
    let client = Client::connect(&addr, None, None).await.expect("connect");
    assert_eq!(client.append_log(b"via-management").await.expect("rpc"), 27);

    // Every node reads the same 27 entries in index order.
    let reference = read_all(leader, 28).await;
    assert_eq!(reference.len(), 27);
    assert_eq!(reference[0].1, b"from-leader");
    assert_eq!(reference[1].1, b"from-follower");
    for (index, data) in &got {
        assert_eq!(&reference[*index as usize - 1].1, data.as_bytes());
    }
    for n in &nodes {
        assert_eq!(read_all(n, 28).await, reference, "{}", n.node_id());
    }
    let mut stream = client.watch_log(0, false).await.expect("watch rpc");
    let mut streamed = Vec::new();
    while let Some(e) = stream.next().await {
        let e = e.expect("entry");
        streamed.push((e.index, e.data.to_vec()));
    }
    assert_eq!(streamed, reference);

    // A watch from the next index sees only new entries, as they come.
    let mut tail = follower
        .app_log_watch(follower.app_log_bounds().expect("bounds").1)
        .expect("watch");
    leader.append_log("new").await.expect("append");
    let e = tail.next().await.expect("new entry");
    assert_eq!((e.index, &e.data[..]), (28, &b"new"[..]));

    // Over the limit: refused before anything is written.
    let limit = Config::local("x").app_log_max_entry;
    assert_eq!(limit, 64 * 1024);
    match follower.append_log(vec![7u8; limit + 1]).await {
        Err(ClusterError::EntryTooLarge { size, limit: l }) => {
            assert_eq!((size, l), (limit + 1, limit))
        }
        other => panic!("oversize entry: {other:?}"),
    }
    let err = client
        .append_log(&vec![7u8; limit + 1])
        .await
        .expect_err("oversize over the API");
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert_eq!(
        follower
            .append_log(vec![1u8; limit])
            .await
            .expect("at the limit"),
        29
    );
    assert_eq!(leader.app_log_bounds().expect("bounds"), (1, 30));

    // A node added now finds the log purged (snapshots every 10 entries,
    // none kept below): the snapshot carries every entry to it.
    let purged = leader
        .raft_status()
        .map(|r| r.last_log_index)
        .expect("raft status");
    assert!(purged > 30, "log index {purged}");
    let mut late = config(3, "applog");
    late.join = vec![nodes[0].local_endpoints()["gossip"].to_string()];
    let late = Agent::start(late).await.expect("start a fourth node");
    wait_until("the fourth node applies entry 29", || {
        late.app_log_bounds().is_ok_and(|(_, next)| next == 30)
    })
    .await;
    let all = read_all(leader, 30).await;
    assert_eq!(&all[..reference.len()], &reference[..]);
    assert_eq!(read_all(&late, 30).await, all);
    nodes.push(late);
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sled_cluster_keeps_its_application_log_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |i: usize| {
        let mut c = config(i, "applog-sled");
        c.storage = StorageConfig::DataDir(dir.path().join(format!("n{i}")));
        c
    };
    let nodes = start_agents(3, Seams::default(), cfg).await;
    operational(&nodes).await;
    let (leader, follower) = leader_and_follower(&nodes);
    for k in 0..12u64 {
        let n = if k % 2 == 0 { leader } else { follower };
        assert_eq!(
            n.append_log(format!("fact-{k}")).await.expect("append"),
            k + 1
        );
    }
    let before = read_all(leader, 13).await;
    stop_all(&nodes).await;
    drop(nodes);

    let nodes = start_agents(3, Seams::default(), cfg).await;
    operational(&nodes).await;
    for n in &nodes {
        wait_until("entries applied again after the restart", || {
            n.app_log_bounds().is_ok_and(|(_, next)| next == 13)
        })
        .await;
        assert_eq!(read_all(n, 13).await, before, "{}", n.node_id());
    }
    let (leader, follower) = leader_and_follower(&nodes);
    assert_eq!(leader.append_log("after").await.expect("append"), 13);
    // Figures (printed with --nocapture, not asserted): sequential appends
    // of 100 bytes, every log write fsynced.
    for (name, n) in [("leader", leader), ("follower", follower)] {
        let mut took = Vec::new();
        for _ in 0..50 {
            let t = std::time::Instant::now();
            n.append_log(vec![b'x'; 100]).await.expect("append");
            took.push(t.elapsed());
        }
        took.sort();
        eprintln!(
            "app_log: 50 appends on the {name} (sled): p50 {:?}, p99 {:?}",
            took[25], took[49]
        );
    }
    stop_all(&nodes).await;
}
