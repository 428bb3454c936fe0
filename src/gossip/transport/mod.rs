//! The seam between the protocol and the network: best-effort datagrams
//! (probes, gossip) and reliable streams (push/pull). [`NetTransport`] is UDP
//! plus TCP on one port; [`MemNetwork`] is an in-memory network for tests
//! that can drop, delay, cut and restore links.

mod mem;
mod net;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub use mem::{MemNetwork, MemTransport};
pub use net::NetTransport;

/// A reliable byte stream (a TCP connection, or an in-memory pipe).
pub trait StreamIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> StreamIo for T {}

/// A boxed [`StreamIo`].
pub type BoxStream = Box<dyn StreamIo>;

/// What gossip needs from the network. Datagrams may be lost, duplicated or
/// reordered; streams are reliable. `recv` and `accept` must be cancel safe
/// (they are polled inside `select!`).
pub trait Transport: Send + Sync + 'static {
    /// The address this transport receives on (datagrams and streams).
    fn local_addr(&self) -> SocketAddr;

    /// Sends one datagram, best effort.
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<()>> + Send;

    /// Receives the next datagram and its source address.
    fn recv(&self) -> impl Future<Output = io::Result<(Bytes, SocketAddr)>> + Send;

    /// Opens a stream to `to` (the caller applies its own timeout).
    fn connect(&self, to: SocketAddr) -> impl Future<Output = io::Result<BoxStream>> + Send;

    /// Accepts the next incoming stream and its peer address.
    fn accept(&self) -> impl Future<Output = io::Result<(BoxStream, SocketAddr)>> + Send;
}
