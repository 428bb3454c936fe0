//! The checker task and its handles.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::config::LivenessConfig;
use super::core::{CheckerCore, CheckerStats, LivenessEvent, TargetInfo, TargetStatus};
use super::error::LivenessError;
use super::socket::DatagramSocket;
use super::wire::PACKET_LEN;

/// Receive buffer size: larger than a packet, so an oversized datagram shows
/// up with a wrong length instead of being silently cut to a valid one.
const RECV_BUF_LEN: usize = 64;

/// Datagrams handled in a row before other work gets a turn first.
const RECV_STREAK_MAX: usize = 256;

/// The current status of every target, published on a `watch` channel.
///
/// Updated only when a status changes (or a target is added or removed), so
/// reading it is cheap and a slow reader never slows probing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivenessSnapshot {
    targets: BTreeMap<String, TargetStatus>,
}

impl LivenessSnapshot {
    /// Status of `id`, or `None` if it is not checked.
    pub fn status(&self, id: &str) -> Option<TargetStatus> {
        self.targets.get(id).copied()
    }

    /// Whether `id` is checked and currently dead.
    pub fn is_dead(&self, id: &str) -> bool {
        self.status(id) == Some(TargetStatus::Dead)
    }

    /// Ids of dead targets, sorted.
    pub fn dead(&self) -> impl Iterator<Item = &str> {
        self.with(TargetStatus::Dead)
    }

    /// Ids of targets that have answered and not died since, sorted.
    pub fn alive(&self) -> impl Iterator<Item = &str> {
        self.with(TargetStatus::Alive)
    }

    /// Every target with its status, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TargetStatus)> {
        self.targets.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether no target is checked.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn with(&self, want: TargetStatus) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter(move |(_, s)| **s == want)
            .map(|(k, _)| k.as_str())
    }
}

enum Command {
    Add {
        id: String,
        addr: SocketAddr,
        reply: oneshot::Sender<Result<bool, LivenessError>>,
    },
    Remove {
        id: String,
        reply: oneshot::Sender<bool>,
    },
    Clear {
        reply: oneshot::Sender<usize>,
    },
    Targets {
        reply: oneshot::Sender<Vec<TargetInfo>>,
    },
    Stats {
        reply: oneshot::Sender<CheckerStats>,
    },
}

/// A cheap-clone handle to a running checker.
///
/// Requests go over a bounded channel to the checker task, each with a
/// oneshot reply. All methods fail with [`LivenessError::Shutdown`] once the
/// checker has stopped.
#[derive(Debug, Clone)]
pub struct CheckerHandle {
    cmds: mpsc::Sender<Command>,
    state: watch::Receiver<LivenessSnapshot>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Command::Add { .. } => "Add",
            Command::Remove { .. } => "Remove",
            Command::Clear { .. } => "Clear",
            Command::Targets { .. } => "Targets",
            Command::Stats { .. } => "Stats",
        };
        f.write_str(name)
    }
}

impl CheckerHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LivenessError> {
        crate::actor::call(&self.cmds, make)
            .await
            .map_err(|_| LivenessError::Shutdown)
    }

    /// Starts probing `id` at `addr` (its responder). `Ok(true)` if added or
    /// moved to a new address, `Ok(false)` if exactly this target was already
    /// there. A new target starts as [`TargetStatus::Unknown`]; see
    /// [`LivenessEvent`] for when events are emitted.
    pub async fn add(
        &self,
        id: impl Into<String>,
        addr: SocketAddr,
    ) -> Result<bool, LivenessError> {
        let id = id.into();
        self.request(|reply| Command::Add { id, addr, reply })
            .await?
    }

    /// Stops probing `id`; no event is emitted for it afterwards. Returns
    /// whether it was checked.
    pub async fn remove(&self, id: impl Into<String>) -> Result<bool, LivenessError> {
        let id = id.into();
        self.request(|reply| Command::Remove { id, reply }).await
    }

    /// Stops probing every target. Returns how many there were.
    pub async fn clear(&self) -> Result<usize, LivenessError> {
        self.request(|reply| Command::Clear { reply }).await
    }

    /// Per-target figures: status, misses, last and average RTT, deadline.
    pub async fn targets(&self) -> Result<Vec<TargetInfo>, LivenessError> {
        self.request(|reply| Command::Targets { reply }).await
    }

    /// The checker's counters.
    pub async fn stats(&self) -> Result<CheckerStats, LivenessError> {
        self.request(|reply| Command::Stats { reply }).await
    }

    /// A receiver of the current status of every target.
    pub fn watch(&self) -> watch::Receiver<LivenessSnapshot> {
        self.state.clone()
    }
}

/// A running liveness checker: one task and one socket probing every target.
///
/// This is the owner: dropping it stops the task (without waiting);
/// [`Checker::shutdown`] stops it and waits. Give other tasks a
/// [`CheckerHandle`] from [`Checker::handle`].
#[derive(Debug)]
pub struct Checker {
    handle: CheckerHandle,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Checker {
    /// Binds a UDP socket on `addr` and starts a checker on it. Returns the
    /// checker and the receiver of its events (single consumer).
    pub async fn bind(
        config: LivenessConfig,
        addr: SocketAddr,
    ) -> Result<(Checker, mpsc::Receiver<LivenessEvent>), LivenessError> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        if config.refused_retries > 0 {
            if let Err(e) = super::socket::enable_refusals(&socket) {
                warn!(error = %e, "no port-unreachable reports; liveness relies on missed replies");
            }
        }
        Checker::spawn(config, socket)
    }

    /// Starts a checker on `socket`. Must run inside a tokio runtime.
    /// Returns the checker and the receiver of its events (single consumer).
    pub fn spawn<S: DatagramSocket>(
        config: LivenessConfig,
        socket: S,
    ) -> Result<(Checker, mpsc::Receiver<LivenessEvent>), LivenessError> {
        let config = config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| LivenessError::NoRuntime)?;
        let local_addr = socket.local_addr()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity);
        let (state_tx, state_rx) = watch::channel(LivenessSnapshot::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let nonce: u64 = crate::rng::random();
        let core = CheckerCore::new(config, nonce, Instant::now());
        let span = tracing::info_span!("liveness_checker", %local_addr);
        let task = runtime.spawn(tracing::Instrument::instrument(
            run(core, socket, cmd_rx, stop_rx, event_tx, state_tx),
            span,
        ));
        Ok((
            Checker {
                handle: CheckerHandle {
                    cmds: cmd_tx,
                    state: state_rx,
                },
                local_addr,
                stop: Some(stop_tx),
                task: Some(task),
            },
            event_rx,
        ))
    }

    /// The address probes are sent from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A cheap-clone handle for other tasks.
    pub fn handle(&self) -> CheckerHandle {
        self.handle.clone()
    }

    /// See [`CheckerHandle::add`].
    pub async fn add(
        &self,
        id: impl Into<String>,
        addr: SocketAddr,
    ) -> Result<bool, LivenessError> {
        self.handle.add(id, addr).await
    }

    /// See [`CheckerHandle::remove`].
    pub async fn remove(&self, id: impl Into<String>) -> Result<bool, LivenessError> {
        self.handle.remove(id).await
    }

    /// See [`CheckerHandle::clear`].
    pub async fn clear(&self) -> Result<usize, LivenessError> {
        self.handle.clear().await
    }

    /// See [`CheckerHandle::targets`].
    pub async fn targets(&self) -> Result<Vec<TargetInfo>, LivenessError> {
        self.handle.targets().await
    }

    /// See [`CheckerHandle::stats`].
    pub async fn stats(&self) -> Result<CheckerStats, LivenessError> {
        self.handle.stats().await
    }

    /// See [`CheckerHandle::watch`].
    pub fn watch(&self) -> watch::Receiver<LivenessSnapshot> {
        self.handle.watch()
    }

    /// Stops the task, closes the socket and the event channel, and waits
    /// for all of it.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                warn!(error = %e, "liveness checker task ended abnormally");
            }
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // Dropping the stop sender ends the task at its next turn.
        self.stop.take();
    }
}

async fn run<S: DatagramSocket>(
    mut core: CheckerCore,
    socket: S,
    mut cmds: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
    events: mpsc::Sender<LivenessEvent>,
    state: watch::Sender<LivenessSnapshot>,
) {
    // Two receive buffers because both receive branches below build their
    // future each turn (only the enabled one is polled).
    let mut rbuf = [0u8; RECV_BUF_LEN];
    let mut rbuf_fair = [0u8; RECV_BUF_LEN];
    let mut sbuf = [0u8; PACKET_LEN];
    let mut ebuf = [0u8; RECV_BUF_LEN];
    let refusals = core.config().refused_retries > 0;
    let mut recv_streak = 0usize;
    let mut armed = core.next_wakeup();
    let sleep = tokio::time::sleep_until(armed);
    tokio::pin!(sleep);
    debug!(nonce = core.nonce(), "liveness checker started");
    loop {
        let sending = core.probe_due(Instant::now());
        // Replies first, so a large round never piles up more replies in
        // the socket's receive buffer than one send batch; but after
        // RECV_STREAK_MAX datagrams in a row the sending, the timer and the
        // commands go first for one turn, so a flood cannot stall probing.
        // Sending comes before the timer: while a batch is due, the wakeup
        // time the core reports is that (past) batch time.
        let prefer_recv = recv_streak < RECV_STREAK_MAX;
        tokio::select! {
            biased;
            _ = &mut stop => break,
            r = socket.recv_from(&mut rbuf), if prefer_recv => {
                recv_streak += 1;
                match r {
                    Ok((n, from)) => core.on_packet(from, &rbuf[..n], Instant::now()),
                    Err(e) => on_recv_error(&mut core, &e),
                }
            }
            () = std::future::ready(()), if sending => {
                recv_streak = 0;
                while let Some(to) = core.next_probe(Instant::now(), &mut sbuf) {
                    send_probe(&socket, &mut core, &sbuf, to).await;
                }
            }
            () = &mut sleep => {
                recv_streak = 0;
                core.on_tick(Instant::now());
            }
            cmd = cmds.recv() => {
                recv_streak = 0;
                match cmd {
                    Some(cmd) => handle_command(&mut core, cmd, &events, &state),
                    None => break,
                }
            }
            r = socket.recv_from(&mut rbuf_fair), if !prefer_recv => {
                recv_streak = 0;
                match r {
                    Ok((n, from)) => core.on_packet(from, &rbuf_fair[..n], Instant::now()),
                    Err(e) => on_recv_error(&mut core, &e),
                }
            }
        }
        // Port-unreachable reports are read here, after every turn, rather
        // than by waiting on the socket's error readiness: a pending error
        // also fails the next send or receive (which then ends a turn), and
        // every batch of probes and every timer ends one too.
        if refusals {
            while let Some((n, to)) = socket.take_refused(&mut ebuf) {
                core.on_refused(to, &ebuf[..n]);
            }
        }
        publish(&mut core, &events, &state);
        let next = core.next_wakeup();
        if next != armed || sleep.is_elapsed() {
            sleep.as_mut().reset(next);
            armed = next;
        }
    }
    debug!("liveness checker stopped");
}

/// Sends one probe. A pending socket error (with `IP_RECVERR`, the "port
/// unreachable" of an earlier probe, possibly to another target) fails the
/// first send without sending anything and is consumed by it, so a refused
/// send is tried once more: otherwise one crashed target would cost the
/// next target in the round a probe.
async fn send_probe<S: DatagramSocket>(
    socket: &S,
    core: &mut CheckerCore,
    probe: &[u8; PACKET_LEN],
    to: SocketAddr,
) {
    let mut r = socket.send_to(probe, to).await;
    if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused) {
        r = socket.send_to(probe, to).await;
    }
    if let Err(e) = r {
        core.on_send_error();
        debug!(error = %e, %to, "liveness probe send failed");
    }
}

/// Counts and logs a receive error (never fatal).
fn on_recv_error(core: &mut CheckerCore, e: &std::io::Error) {
    core.on_recv_error();
    debug!(error = %e, "liveness recv error");
}

/// Runs one command. Status changes it causes are published before the
/// reply is sent, so when `add`/`remove`/`clear` return, the watch state
/// already shows their effect.
fn handle_command(
    core: &mut CheckerCore,
    cmd: Command,
    events: &mpsc::Sender<LivenessEvent>,
    state: &watch::Sender<LivenessSnapshot>,
) {
    // A requester that went away does not care about the answer.
    match cmd {
        Command::Add { id, addr, reply } => {
            let r = core.add(&id, addr);
            if let Ok(true) = r {
                debug!(target_id = %id, %addr, "liveness target added");
            }
            publish(core, events, state);
            let _ = reply.send(r);
        }
        Command::Remove { id, reply } => {
            let r = core.remove(&id);
            publish(core, events, state);
            let _ = reply.send(r);
        }
        Command::Clear { reply } => {
            let r = core.clear();
            publish(core, events, state);
            let _ = reply.send(r);
        }
        Command::Targets { reply } => {
            let _ = reply.send(core.targets());
        }
        Command::Stats { reply } => {
            let _ = reply.send(core.stats());
        }
    }
}

/// Hands queued events to the channel (dropping on overflow) and applies
/// queued status changes to the watch state.
fn publish(
    core: &mut CheckerCore,
    events: &mpsc::Sender<LivenessEvent>,
    state: &watch::Sender<LivenessSnapshot>,
) {
    while let Some(ev) = core.pop_event() {
        match &ev {
            LivenessEvent::Dead(id) => info!(target_id = %id, "liveness target dead"),
            LivenessEvent::Alive(id) => info!(target_id = %id, "liveness target alive again"),
        }
        if let Err(e) = events.try_send(ev) {
            core.on_event_dropped();
            debug!(error = %e, "liveness event dropped");
        }
    }
    if core.has_changes() {
        state.send_modify(|s| {
            while let Some(c) = core.pop_change() {
                match c.status {
                    Some(st) => {
                        s.targets.insert(c.id, st);
                    }
                    None => {
                        s.targets.remove(&c.id);
                    }
                }
            }
        });
    }
}
