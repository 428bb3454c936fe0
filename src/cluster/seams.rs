//! Glue between the in-memory network and the liveness socket seam.
//!
//! `gossip` and `liveness` may not import each other, yet a whole node in
//! memory needs both on a network with cut links. Rather than write a
//! second in-memory datagram network, the coordinator (which imports both)
//! lets gossip's [`MemTransport`] serve as a liveness
//! [`DatagramSocket`]: cuts, isolation, loss and delay set on the
//! [`MemNetwork`](crate::gossip::MemNetwork) apply to echo probes exactly
//! as to gossip datagrams.

use std::io;
use std::net::SocketAddr;

use crate::gossip::{MemTransport, Transport};
use crate::liveness::DatagramSocket;

impl DatagramSocket for MemTransport {
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        Transport::send_to(self, buf, target).await?;
        Ok(buf.len())
    }

    /// Cancel safe: the in-memory inbox hands a datagram over only in the
    /// poll that completes. A longer datagram is cut to `buf.len()`, as UDP
    /// would.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (data, from) = Transport::recv(self).await?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(Transport::local_addr(self))
    }

    /// Reports the network made (closed ports, forged ones).
    fn take_refused(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let (data, to) = MemTransport::try_recv_refused(self)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Some((n, to))
    }
}
