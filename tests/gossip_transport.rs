//! Conformance tests of the gossip `Transport` implementations: the same
//! checks run against UDP/TCP on 127.0.0.1 and against the in-memory
//! network.

use std::net::SocketAddr;
use std::time::Duration;

use clusterfunk::gossip::{MemNetwork, NetTransport, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

async fn datagrams_and_streams<A: Transport, B: Transport>(a: A, b: B) {
    assert_ne!(a.local_addr(), b.local_addr());
    // Datagram a -> b arrives intact with a's address as source.
    a.send_to(b"hello", b.local_addr()).await.unwrap();
    let (buf, from) = tokio::time::timeout(T, b.recv()).await.unwrap().unwrap();
    assert_eq!(&buf[..], b"hello");
    assert_eq!(from, a.local_addr());
    // And back, to the source address.
    b.send_to(b"world", from).await.unwrap();
    let (buf, _) = tokio::time::timeout(T, a.recv()).await.unwrap().unwrap();
    assert_eq!(&buf[..], b"world");

    // A large datagram (above the default packet size) is not truncated.
    let big = vec![7u8; 8000];
    a.send_to(&big, b.local_addr()).await.unwrap();
    let (buf, _) = tokio::time::timeout(T, b.recv()).await.unwrap().unwrap();
    assert_eq!(buf.len(), 8000);

    // Stream: both directions, both ends see the bytes in order.
    let (conn, acc) = tokio::join!(a.connect(b.local_addr()), b.accept());
    let mut c = conn.unwrap();
    let (mut s, _peer) = acc.unwrap();
    c.write_all(b"ping-stream").await.unwrap();
    let mut got = [0u8; 11];
    tokio::time::timeout(T, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"ping-stream");
    s.write_all(b"pong").await.unwrap();
    let mut got = [0u8; 4];
    tokio::time::timeout(T, c.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"pong");
    // Closing one end gives EOF at the other.
    drop(s);
    let mut rest = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
}

async fn connect_to_nobody_fails<A: Transport>(a: A, nobody: SocketAddr) {
    let r = tokio::time::timeout(T, a.connect(nobody)).await.unwrap();
    assert!(r.is_err());
    // Datagrams to nobody are silently lost, not an error for the caller.
    let _ = a.send_to(b"x", nobody).await;
}

async fn free_port() -> SocketAddr {
    // Bind and release: nothing listens there afterwards.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn net_transport_conformance() {
    let a = NetTransport::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = NetTransport::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_ne!(a.local_addr().port(), 0);
    datagrams_and_streams(a, b).await;
    let a = NetTransport::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    connect_to_nobody_fails(a, free_port().await).await;
}

#[tokio::test]
async fn mem_transport_conformance() {
    let net = MemNetwork::new();
    datagrams_and_streams(net.bind(), net.bind()).await;
    connect_to_nobody_fails(net.bind(), "10.255.255.255:1".parse().unwrap()).await;
}

#[tokio::test]
async fn net_transport_binds_udp_and_tcp_on_one_port() {
    let a = NetTransport::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = a.local_addr().port();
    // Both protocols hold the port: binding either again fails.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
}

#[tokio::test(start_paused = true)]
async fn mem_network_cut_delay_restore() {
    let net = MemNetwork::new();
    let a = net.bind();
    let b = net.bind();
    let (aa, ba) = (a.local_addr(), b.local_addr());

    net.cut(aa, ba);
    a.send_to(b"lost", ba).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), b.recv())
        .await
        .is_err());
    assert!(a.connect(ba).await.is_err());
    assert_eq!(net.stats().dropped_by_link, 1);

    net.restore(aa, ba);
    net.delay(aa, ba, Duration::from_millis(300));
    let sent = tokio::time::Instant::now();
    a.send_to(b"late", ba).await.unwrap();
    let (buf, _) = b.recv().await.unwrap();
    assert_eq!(&buf[..], b"late");
    assert!(sent.elapsed() >= Duration::from_millis(300));

    net.heal();
    net.cut_one_way(aa, ba);
    b.send_to(b"back", aa).await.unwrap();
    assert_eq!(&a.recv().await.unwrap().0[..], b"back");
    a.send_to(b"fwd", ba).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), b.recv())
        .await
        .is_err());

    // Datagram-only cut: datagrams lost, streams still connect.
    net.heal();
    net.cut_datagrams(aa, ba);
    a.send_to(b"udp", ba).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), b.recv())
        .await
        .is_err());
    assert!(a.connect(ba).await.is_ok());
    let (_s, peer) = b.accept().await.unwrap();
    assert_eq!(peer, aa);

    // A dropped transport leaves the network.
    net.heal();
    drop(b);
    a.send_to(b"gone", ba).await.unwrap();
    assert_eq!(net.stats().no_such_node, 1);
}
