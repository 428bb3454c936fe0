//! The datagram socket seam: the only I/O the liveness module does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// A datagram socket, as the checker and responder use it.
///
/// The tokio [`tokio::net::UdpSocket`] implements it; so does the in-memory
/// network's `gossip::MemTransport` (the impl lives in `cluster`), for
/// simulations and tests with cut links.
///
/// Contract: `recv_from` must be cancel safe (dropping the future before it
/// completes loses no datagram), because the checker polls it inside
/// `tokio::select!`. A datagram longer than `buf` may be truncated to
/// `buf.len()`; the liveness code treats any length other than the packet size
/// as bad input. Errors are treated as transient and counted, never fatal.
pub trait DatagramSocket: Send + Sync + 'static {
    /// Sends one datagram to `target`.
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// Receives one datagram into `buf`, returning its length and sender.
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;

    /// The address this socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl DatagramSocket for tokio::net::UdpSocket {
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        tokio::net::UdpSocket::send_to(self, buf, target)
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        tokio::net::UdpSocket::recv_from(self, buf)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}
