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

    /// Takes the next report, if one is queued, that a datagram this socket
    /// sent hit a closed port (ICMP port unreachable: the host is up,
    /// nothing listens): copies the original datagram's payload into `buf`
    /// (as much as was reported and fits) and returns its length and
    /// original destination. Never waits. The checker asks after every
    /// batch of probes, every socket error and every timer wake-up. Such
    /// reports are unauthenticated hints (see the module docs). The default
    /// has none: a socket without the signal, or a network that filters
    /// ICMP.
    fn take_refused(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        let _ = buf;
        None
    }
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

    /// Reads the socket's error queue (Linux, once [`enable_refusals`]
    /// turned it on; never reports otherwise).
    fn take_refused(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            super::errqueue::recv_refused(self.as_raw_fd(), buf).ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = buf;
            None
        }
    }
}

/// Asks the kernel to report ICMP port unreachable for datagrams `socket`
/// sends (`IP_RECVERR`), so [`DatagramSocket::take_refused`] sees them.
/// Linux only; elsewhere it returns `Unsupported` and the checker relies
/// on missed replies alone.
pub fn enable_refusals(socket: &tokio::net::UdpSocket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        super::errqueue::enable(socket, socket.local_addr()?.is_ipv6())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Err(io::ErrorKind::Unsupported.into())
    }
}
