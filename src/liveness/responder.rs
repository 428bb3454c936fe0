//! The echo responder every node runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::error::LivenessError;
use super::socket::DatagramSocket;
use super::wire::{Packet, PacketKind, PACKET_LEN};

/// Receive buffer: larger than a packet so oversized datagrams are seen as such.
const RECV_BUF_LEN: usize = 64;

/// Counters of a responder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// Probes answered.
    pub echoed: u64,
    /// Datagrams ignored: undecodable, or not a probe (replies are never
    /// echoed, so two responders cannot be made to ping-pong).
    pub bad: u64,
    /// Replies the socket refused to send.
    pub send_errors: u64,
    /// Receive errors (counted, then ignored).
    pub recv_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    echoed: AtomicU64,
    bad: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

/// A UDP socket that echoes every valid probe straight back as a reply.
///
/// Idle cost is one task parked in `recv_from`. Dropping the responder stops
/// its task; [`Responder::shutdown`] also waits until the socket is closed,
/// so the port can be bound again right after.
#[derive(Debug)]
pub struct Responder {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Responder {
    /// Binds a UDP socket on `addr` and starts answering probes on it.
    pub async fn bind(addr: SocketAddr) -> Result<Responder, LivenessError> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        Responder::spawn(socket)
    }

    /// Starts answering probes on `socket`. Must run inside a tokio runtime.
    pub fn spawn<S: DatagramSocket>(socket: S) -> Result<Responder, LivenessError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| LivenessError::NoRuntime)?;
        let local_addr = socket.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let span = tracing::debug_span!("liveness_responder", %local_addr);
        let task = runtime.spawn(tracing::Instrument::instrument(
            serve(socket, Arc::clone(&counters), stop_rx),
            span,
        ));
        Ok(Responder {
            local_addr,
            counters,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The address probes should be sent to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ResponderStats {
        let c = &self.counters;
        ResponderStats {
            echoed: c.echoed.load(Ordering::Relaxed),
            bad: c.bad.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            recv_errors: c.recv_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops answering and waits until the socket is closed.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                warn!(error = %e, "liveness responder task ended abnormally");
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.take();
    }
}

async fn serve<S: DatagramSocket>(socket: S, c: Arc<Counters>, mut stop: oneshot::Receiver<()>) {
    let mut buf = [0u8; RECV_BUF_LEN];
    loop {
        let (n, from) = tokio::select! {
            _ = &mut stop => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    c.recv_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "liveness responder recv error");
                    continue;
                }
            },
        };
        let mut out = [0u8; PACKET_LEN];
        match Packet::decode(&buf[..n]) {
            Ok(p) if p.kind == PacketKind::Probe => p.into_reply().encode(&mut out),
            _ => {
                c.bad.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        match socket.send_to(&out, from).await {
            Ok(_) => {
                c.echoed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, %from, "liveness reply send failed");
            }
        }
    }
}
