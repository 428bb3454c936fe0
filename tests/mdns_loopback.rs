//! mDNS discovery on the loopback interface: three nodes of cluster "a", one
//! of cluster "b" and a raw responder publishing malformed "a" records, in
//! one process. Every "a" node finds the other two and never "b" or the
//! malformed ones (counted as ignored), a late joiner is found, a withdrawal
//! and a dropped handle are seen as losses, and `discover_once` lists the
//! cluster.
//!
//! So that no test traffic (not even an IGMP join: `mdns-sd` joins the group
//! on every interface before our interface selection applies) reaches the
//! machine's real interfaces, the test re-runs itself inside a private
//! network namespace (`unshare --net`, which holds only `lo`). Without root
//! or `unshare` it is skipped with a message.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::UdpSocket;
use std::time::Duration;

use common::netns::{block_on, run_in_private_netns};

use clusterfunk::discovery::{
    discover_once, Announcement, DiscoveryEvent, Interfaces, IpVersion, MdnsConfig, MdnsDiscovery,
    PeerFilter, DEFAULT_SERVICE_TYPE,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Set in the child that runs inside the namespace.
const TEST_NAME: &str = "three_nodes_of_a_find_each_other_on_loopback_never_b";
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn three_nodes_of_a_find_each_other_on_loopback_never_b() {
    run_in_private_netns(TEST_NAME, || block_on(scenario()));
}

struct Node {
    name: String,
    discovery: MdnsDiscovery,
    rx: mpsc::Receiver<DiscoveryEvent>,
    // Gives the announced gossip port an owner, as a real node's gossip would.
    _socket: UdpSocket,
    /// node id -> cluster of peers currently found.
    found: HashMap<String, String>,
    /// Every node id ever reported.
    ever: BTreeSet<String>,
}

fn start(cluster: &str, node: &str) -> Node {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ann = Announcement {
        cluster: cluster.into(),
        node_id: node.into(),
        gossip_addr: socket.local_addr().expect("addr"),
        protocol_version: 1,
    };
    let discovery = MdnsDiscovery::start(MdnsConfig::loopback()).expect("start mDNS");
    discovery.announce(&ann).expect("announce");
    let rx = discovery
        .browse(PeerFilter::for_announcement(&ann))
        .expect("browse");
    Node {
        name: format!("{cluster}/{node}"),
        discovery,
        rx,
        _socket: socket,
        found: HashMap::new(),
        ever: BTreeSet::new(),
    }
}

impl Node {
    /// Takes every queued event.
    fn poll(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            match ev {
                DiscoveryEvent::Found(p) => {
                    self.ever.insert(format!("{}/{}", p.cluster, p.node_id));
                    self.found.insert(p.node_id, p.cluster);
                }
                DiscoveryEvent::Lost { node_id, .. } => {
                    self.found.remove(&node_id);
                }
            }
        }
    }

    fn found_set(&self) -> BTreeSet<String> {
        self.found.keys().cloned().collect()
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Polls `nodes` until `done` holds, or panics with their state at the
/// deadline.
async fn wait_until(nodes: &mut [&mut Node], what: &str, done: impl Fn(&[&mut Node]) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        for n in nodes.iter_mut() {
            n.poll();
        }
        if done(nodes) {
            return;
        }
        if Instant::now() >= deadline {
            let state: Vec<_> = nodes
                .iter()
                .map(|n| (n.name.clone(), n.found_set(), n.discovery.stats()))
                .collect();
            panic!("timed out waiting for {what}: {state:#?}");
        }
        // Polling with a deadline; the events arrive asynchronously.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers hostile announcements of cluster "a" with a raw `mdns-sd`
/// daemon: an unparsable gossip address, a non-UTF-8 node id, missing keys.
fn start_hostile() -> mdns_sd::ServiceDaemon {
    use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, TxtProperty};
    let daemon = ServiceDaemon::new().expect("hostile daemon");
    daemon.disable_interface(IfKind::All).expect("disable");
    daemon.enable_interface(IfKind::LoopbackV4).expect("enable");
    let records: Vec<(&str, Vec<TxtProperty>)> = vec![
        (
            "a-evil1",
            vec![
                ("cluster", "a").into(),
                ("node", "evil1").into(),
                ("gossip", "not-an-addr").into(),
                ("proto", "1").into(),
            ],
        ),
        (
            "a-evil2",
            vec![
                ("cluster", "a").into(),
                ("node", &[0xff_u8, 0xfe][..]).into(),
                ("gossip", "127.0.0.1:9").into(),
                ("proto", "1").into(),
            ],
        ),
        ("a-evil3", vec![("cluster", "a").into(), "node".into()]),
    ];
    for (name, props) in records {
        let info = ServiceInfo::new(DEFAULT_SERVICE_TYPE, name, "evil.local.", "", 9, props)
            .expect("hostile info")
            .enable_addr_auto();
        daemon.register(info).expect("register hostile");
    }
    daemon
}

async fn scenario() {
    let hostile = start_hostile();
    // "b" reuses the node id "n1": only the cluster name keeps it out.
    let mut b = start("b", "n1");
    let mut n1 = start("a", "n1");
    let mut n2 = start("a", "n2");

    wait_until(
        &mut [&mut n1, &mut n2],
        "n1 and n2 to find each other",
        |ns| ns[0].found_set() == set(&["n2"]) && ns[1].found_set() == set(&["n1"]),
    )
    .await;

    // A node that starts later is found by the others and finds them.
    let mut n3 = start("a", "n3");
    wait_until(
        &mut [&mut n1, &mut n2, &mut n3, &mut b],
        "every a node to find the other two and to have ignored b",
        |ns| {
            ns[0].found_set() == set(&["n2", "n3"])
                && ns[1].found_set() == set(&["n1", "n3"])
                && ns[2].found_set() == set(&["n1", "n2"])
                && ns[..3]
                    .iter()
                    .all(|n| n.discovery.stats().ignored_other_cluster >= 1)
                && ns[3].discovery.stats().ignored_other_cluster >= 1
                && ns[..3].iter().all(|n| n.discovery.stats().ignored_bad >= 1)
        },
    )
    .await;

    for n in [&n1, &n2, &n3] {
        assert!(
            n.ever.iter().all(|id| id.starts_with("a/")),
            "{} saw another cluster: {:?}",
            n.name,
            n.ever
        );
        assert!(n.found.values().all(|c| c == "a"));
    }
    b.poll();
    assert!(b.ever.is_empty(), "b found a-nodes: {:?}", b.ever);

    // One-shot lookup, as `--zero-conf` does.
    let listed = discover_once(
        DEFAULT_SERVICE_TYPE,
        Some("a"),
        Duration::from_secs(3),
        Interfaces::LoopbackOnly,
        IpVersion::V4,
    )
    .await
    .expect("discover_once");
    let ids: BTreeSet<String> = listed.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(ids, set(&["n1", "n2", "n3"]), "discover_once: {listed:?}");
    assert!(listed.iter().all(|a| a.cluster == "a"));
    let n2_addr = n2._socket.local_addr().expect("addr");
    assert!(listed
        .iter()
        .any(|a| a.node_id == "n2" && a.gossip_addr == n2_addr));

    // Withdrawing is seen as a loss.
    n3.discovery.withdraw().expect("withdraw");
    wait_until(&mut [&mut n1, &mut n2], "n3's withdrawal", |ns| {
        ns[0].found_set() == set(&["n2"]) && ns[1].found_set() == set(&["n1"])
    })
    .await;

    // Dropping the last handle stops the daemon, which says goodbye.
    drop(n2);
    wait_until(&mut [&mut n1], "n2's goodbye after drop", |ns| {
        ns[0].found_set().is_empty()
    })
    .await;

    for n in [&n1, &n3, &b] {
        n.discovery.shutdown().await;
    }
    let _ = hostile.shutdown();
    assert!(matches!(
        n1.discovery.announce(&Announcement {
            cluster: "a".into(),
            node_id: "n1".into(),
            gossip_addr: "127.0.0.1:1".parse().expect("addr"),
            protocol_version: 1,
        }),
        Err(clusterfunk::discovery::DiscoveryError::Shutdown)
    ));
}
