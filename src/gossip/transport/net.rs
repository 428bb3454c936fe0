//! UDP + TCP transport bound to the same port number.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{BoxStream, Transport};

/// Largest datagram received.
const MAX_DATAGRAM: usize = 65536;
/// Attempts to find a port free for both UDP and TCP when binding port 0.
const BIND_ATTEMPTS: usize = 32;

/// Datagrams over UDP, streams over TCP, both on the same port.
#[derive(Debug)]
pub struct NetTransport {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    /// Receive buffer, reused; locked only around a non-blocking read.
    buf: Mutex<Vec<u8>>,
}

impl NetTransport {
    /// Binds UDP then TCP on the same port. With port 0 the OS picks the UDP
    /// port; if TCP cannot take the same number the pair is retried.
    pub async fn bind(addr: SocketAddr) -> io::Result<NetTransport> {
        let mut last = None;
        for _ in 0..BIND_ATTEMPTS {
            let udp = UdpSocket::bind(addr).await?;
            let local = udp.local_addr()?;
            match TcpListener::bind(local).await {
                Ok(tcp) => {
                    return Ok(NetTransport {
                        udp,
                        tcp,
                        addr: local,
                        buf: Mutex::new(vec![0u8; MAX_DATAGRAM]),
                    })
                }
                Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port")))
    }
}

impl Transport for NetTransport {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<()> {
        self.udp.send_to(buf, to).await.map(|_| ())
    }

    async fn recv(&self) -> io::Result<(Bytes, SocketAddr)> {
        loop {
            self.udp.readable().await?;
            // try_recv_from never waits, so the lock is not held across an
            // await, and taking the datagram synchronously keeps this cancel
            // safe.
            let got = {
                let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
                match self.udp.try_recv_from(&mut buf) {
                    Ok((n, from)) => Ok(Some((Bytes::copy_from_slice(&buf[..n]), from))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                }
            };
            if let Some(d) = got? {
                return Ok(d);
            }
        }
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<BoxStream> {
        let s = TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }

    async fn accept(&self) -> io::Result<(BoxStream, SocketAddr)> {
        let (s, from) = self.tcp.accept().await?;
        s.set_nodelay(true)?;
        Ok((Box::new(s), from))
    }
}
