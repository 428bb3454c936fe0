//! A `ClusterClient` that runs its own gossip-only node stops routing when
//! that node's view loses every lighthouse. Three in-process agents over
//! loopback, the first a lighthouse; the client follows their maps over
//! the management API and checks its gossip view: it routes while the
//! lighthouse is alive and, once the lighthouse crashes, `route` fails with
//! `ClientError::ViewInvalid` and `owner_of` answers `None`, although the
//! surviving members still serve it a map.

mod common;

use std::net::SocketAddr;

use clusterfunk::client::{ClientAuth, ClientError, ClusterClient};
use clusterfunk::cluster::Seams;
use clusterfunk::gossip::{Gossip, GossipConfig, NetTransport};
use clusterfunk::Config;
use common::cluster::{start_agents, stop_all};
use common::wait::{wait_until, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cut_off_from_every_lighthouse_stops_routing() {
    let nodes = start_agents(3, Seams::default(), |i| {
        let mut c = Config::local(format!("n{i}"));
        c.cluster_name = "lh".into();
        c.shard_count = 64;
        c.gossip.lighthouse = i == 0;
        c
    })
    .await;
    wait_until("a first map", || nodes.iter().all(|n| n.epoch().is_some())).await;

    // The client's gossip-only node joins through a survivor.
    let transport = NetTransport::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let gossip = Gossip::start(GossipConfig::local("client-1"), transport).expect("gossip");
    let seed = nodes[1].local_endpoints()["gossip"];
    gossip.join(&[seed]).await.expect("join");
    let mgmt: Vec<String> = nodes[1..]
        .iter()
        .map(|n| n.local_endpoints()["management"].to_string())
        .collect();
    let client =
        ClusterClient::start_with_gossip(mgmt, ClientAuth::default(), &gossip).expect("client");
    client.wait_for_map(0, WAIT).await.expect("first map");
    wait_until("the client's view holds the lighthouse", || {
        client.view_validity().lighthouses_alive == 1
    })
    .await;
    let owner = client.route(b"some-key").expect("routes while valid");
    assert!(owner.starts_with('n'), "{owner}");

    nodes[0].cluster().crash().await;
    let mut validity = gossip.watch_view_validity();
    let lost = tokio::time::timeout(WAIT, validity.wait_for(|v| !v.valid)).await;
    assert!(lost.is_ok(), "the client's view never became invalid");
    let err = client
        .route(b"some-key")
        .expect_err("no routing on an invalid view");
    assert!(
        matches!(err, ClientError::ViewInvalid { known: 1 }),
        "{err}"
    );
    assert_eq!(client.owner_of(b"some-key"), None);
    // The members still serve it maps: only the view check stops routing.
    assert!(client.view().is_some());
    gossip.shutdown().await.expect("shutdown");
    stop_all(&nodes[1..]).await;
}
