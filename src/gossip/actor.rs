//! The gossip task: owns the [`Core`], the transport and the push/pull
//! tasks, and talks to [`Gossip`] handles over a bounded command channel
//! with oneshot replies (mini-redis style). The loop ends on `shutdown` or
//! when the last handle is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::config::GossipConfig;
use super::core::{Core, Output};
use super::error::GossipError;
use super::keyring::{KeyOp, Keyring};
use super::lighthouse::ViewValidity;
use super::member::{Member, MemberEvent, MemberStatus, UserEvent};
use super::pushpull::{self, Failure, Internal, StreamCtx};
use super::snapshot::{self, Snapshot};
use super::stats::GossipStats;
use super::transport::Transport;

/// Outgoing stream tasks (push/pulls and fallback probes) allowed at once;
/// more are skipped and counted. Incoming streams have their own cap,
/// `max_incoming_streams`.
const MAX_STREAM_TASKS: usize = 128;
/// Least time between two snapshot writes.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Capacity of the channel from push/pull tasks to the gossip task.
const INTERNAL_CHANNEL: usize = 256;

enum Command {
    Join {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<usize, GossipError>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    SetTags {
        tags: BTreeMap<String, String>,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    Subscribe {
        reply: oneshot::Sender<mpsc::Receiver<MemberEvent>>,
    },
    SubscribeUser {
        reply: oneshot::Sender<mpsc::Receiver<UserEvent>>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    Stats {
        reply: oneshot::Sender<GossipStats>,
    },
    RemoveFailed {
        name: String,
        prune: bool,
        reply: oneshot::Sender<bool>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Keys {
        op: KeyOp,
        reply: oneshot::Sender<Result<(Keyring, Keyring), GossipError>>,
    },
}

/// Handle to a running gossip node. Cheap to clone; the node stops when
/// [`shutdown`](Self::shutdown) is called or the last handle is dropped.
#[derive(Clone)]
pub struct Gossip {
    tx: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    validity: watch::Receiver<ViewValidity>,
    name: String,
    addr: SocketAddr,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Gossip {
    /// Validates `config` and starts the gossip task on `transport`. Must be
    /// called inside a tokio runtime. The node is alone until [`join`]
    /// (or until another node joins it).
    ///
    /// [`join`]: Self::join
    pub fn start<T: Transport>(config: GossipConfig, transport: T) -> Result<Gossip, GossipError> {
        let config = config.validate()?;
        let addr = config
            .advertise_addr
            .unwrap_or_else(|| transport.local_addr());
        let name = config.name.clone();
        let mut core = Core::new(config.clone(), addr, Instant::now());
        let mut rejoin = Vec::new();
        if let Some(snap) = config.snapshot_path.as_deref().and_then(snapshot::load) {
            core.restore_event_ltime(snap.event_ltime);
            if !snap.left || config.rejoin_after_leave {
                rejoin = snap
                    .alive
                    .iter()
                    .map(|(_, a)| *a)
                    .filter(|a| *a != addr)
                    .collect();
            }
        }
        let (tx, cmd_rx) = mpsc::channel(config.command_channel_capacity);
        let (members_tx, members) = watch::channel(Arc::new(core.members()));
        let (validity_tx, validity) = watch::channel(core.view_validity());
        let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_CHANNEL);
        let actor = Actor {
            core,
            transport: Arc::new(transport),
            cmd_rx,
            internal_tx,
            internal_rx,
            tasks: JoinSet::new(),
            subs: Vec::new(),
            user_subs: Vec::new(),
            members_tx,
            validity_tx,
            joins: BTreeMap::new(),
            next_op: 0,
            leave_waiters: Vec::new(),
            rejoin,
            snapshot_due: false,
            snapshot_written: None,
            ctx: StreamCtx::new(&config),
            incoming: BTreeMap::new(),
            cfg: config,
        };
        let span = tracing::info_span!("gossip", node = %name);
        let task = tokio::spawn(actor.run().instrument(span));
        Ok(Gossip {
            tx,
            members,
            validity,
            name,
            addr,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command,
    ) -> Result<R, GossipError> {
        crate::actor::call(&self.tx, make)
            .await
            .map_err(|_| GossipError::Shutdown)
    }

    /// Joins a cluster through `seeds` (a push/pull with each). Returns how
    /// many answered; fails only if none did.
    pub async fn join(&self, seeds: &[SocketAddr]) -> Result<usize, GossipError> {
        if seeds.is_empty() {
            return Err(GossipError::NoSeeds);
        }
        let addrs = seeds.to_vec();
        self.call(|reply| Command::Join { addrs, reply }).await?
    }

    /// Leaves gracefully: marks this node Left and broadcasts the intent,
    /// waiting up to `timeout` for it to be sent its full number of times.
    /// The node keeps answering probes until [`shutdown`](Self::shutdown).
    pub async fn leave(&self, timeout: Duration) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Leave { reply })
            .await
            .map_err(|_| GossipError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(GossipError::Shutdown),
            Err(_) => Err(GossipError::LeaveTimeout),
        }
    }

    /// Stops the gossip task (without a leave: others will detect a
    /// failure) and waits for it and its push/pull tasks to end.
    pub async fn shutdown(&self) -> Result<(), GossipError> {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        Ok(())
    }

    /// Every known member (the local node included), sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.borrow().as_ref().clone()
    }

    /// The local node as others see it.
    pub fn local_node(&self) -> Member {
        let list = self.members.borrow();
        list.iter()
            .find(|m| m.name == self.name)
            .cloned()
            .unwrap_or_else(|| Member {
                name: self.name.clone(),
                addr: self.addr,
                status: MemberStatus::Alive,
                incarnation: 0,
                tags: BTreeMap::new(),
            })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's advertised gossip address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces this node's tags and spreads them with a higher incarnation.
    /// Fails if they exceed [`MAX_TAGS_SIZE`](super::MAX_TAGS_SIZE) encoded.
    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        self.call(|reply| Command::SetTags { tags, reply }).await?
    }

    /// Membership events from now on. Events that do not fit the channel
    /// (capacity `event_channel_capacity`) are dropped and counted in
    /// [`GossipStats::events_dropped`]; the protocol never waits for a reader.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<MemberEvent>, GossipError> {
        self.call(|reply| Command::Subscribe { reply }).await
    }

    /// User events from now on (same overflow rule as [`subscribe`](Self::subscribe)).
    pub async fn subscribe_user_events(&self) -> Result<mpsc::Receiver<UserEvent>, GossipError> {
        self.call(|reply| Command::SubscribeUser { reply }).await
    }

    /// Broadcasts a Serf-style user event to every member (this one
    /// included), stamped with the Lamport clock; duplicates are dropped by
    /// (ltime, name, payload). With `coalesce`, a receiver skips an event
    /// older than one of the same name it already delivered.
    pub async fn user_event(
        &self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let (name, payload) = (name.to_string(), payload.to_vec());
        self.call(|reply| Command::UserEvent {
            name,
            payload,
            coalesce,
            reply,
        })
        .await?
    }

    /// Serf's `RemoveFailedNode` (force-leave): marks a failed member Left
    /// on every node now, instead of waiting for it to be reaped, and stops
    /// reconnect attempts to it. Returns false if `name` is not a failed
    /// member here.
    pub async fn remove_failed_node(&self, name: &str) -> Result<bool, GossipError> {
        let name = name.to_string();
        self.call(|reply| Command::RemoveFailed {
            name,
            prune: false,
            reply,
        })
        .await
    }

    /// [`remove_failed_node`](Self::remove_failed_node) that also makes
    /// every node forget the member at once (Serf's `force-leave -prune`);
    /// a member that already left can be pruned too. Returns false if
    /// `name` is neither failed nor left here.
    pub async fn remove_failed_node_prune(&self, name: &str) -> Result<bool, GossipError> {
        let name = name.to_string();
        self.call(|reply| Command::RemoveFailed {
            name,
            prune: true,
            reply,
        })
        .await
    }

    /// Counters and timings.
    pub async fn stats(&self) -> Result<GossipStats, GossipError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Changes this node's keyring while it runs (Serf's key manager, one
    /// node): `Install` a key, `Use` it as the primary, `Remove` an old
    /// one. Returns the keyring before and after; fails with
    /// [`GossipError::NoKeyring`] when the node runs without encryption.
    /// New datagrams and streams use the new keyring at once; streams
    /// already open finish with the old one.
    pub async fn keys(&self, op: KeyOp) -> Result<(Keyring, Keyring), GossipError> {
        self.call(|reply| Command::Keys { op, reply }).await?
    }

    /// Whether this node's view still holds a lighthouse (Seafoam's
    /// lighthouse-based validity checking; always valid when no lighthouse
    /// was ever seen).
    pub fn view_validity(&self) -> ViewValidity {
        *self.validity.borrow()
    }

    /// A receiver of [`view_validity`](Self::view_validity), updated when
    /// it changes: the event stream of "this view became (in)valid".
    pub fn watch_view_validity(&self) -> watch::Receiver<ViewValidity> {
        self.validity.clone()
    }

    /// A receiver of the member list, updated on every change.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.members.clone()
    }

    /// Waits until `pred` holds for the member list, at most `timeout`.
    /// Returns whether it did.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Member]) -> bool) -> bool {
        let mut rx = self.members.clone();
        tokio::time::timeout(timeout, async move {
            loop {
                if pred(&rx.borrow_and_update()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// Offers `ev` to every subscriber without waiting: a full channel drops it
/// (returned as a count), a closed one is forgotten.
fn fan_out<E: Clone>(subs: &mut Vec<mpsc::Sender<E>>, ev: &E) -> u64 {
    let mut dropped = 0;
    subs.retain(|s| match s.try_send(ev.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped += 1;
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
    dropped
}

struct JoinOp {
    remaining: usize,
    ok: usize,
    tried: usize,
    last_err: String,
    reply: oneshot::Sender<Result<usize, GossipError>>,
}

struct Actor<T: Transport> {
    core: Core,
    transport: Arc<T>,
    cmd_rx: mpsc::Receiver<Command>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    tasks: JoinSet<()>,
    subs: Vec<mpsc::Sender<MemberEvent>>,
    user_subs: Vec<mpsc::Sender<UserEvent>>,
    members_tx: watch::Sender<Arc<Vec<Member>>>,
    validity_tx: watch::Sender<ViewValidity>,
    joins: BTreeMap<u64, JoinOp>,
    next_op: u64,
    leave_waiters: Vec<oneshot::Sender<()>>,
    /// Peers from the snapshot, joined once at start.
    rejoin: Vec<SocketAddr>,
    /// Membership changed since the snapshot was last written.
    snapshot_due: bool,
    snapshot_written: Option<Instant>,
    /// Framing, keys and bounds shared by every stream task.
    ctx: StreamCtx,
    /// Incoming stream tasks (a subset of `tasks`), by task id.
    incoming: BTreeMap<tokio::task::Id, IncomingStream>,
    cfg: GossipConfig,
}

/// An incoming stream being served.
struct IncomingStream {
    accepted: Instant,
    /// Set once its first frame arrived and was valid.
    active: Arc<AtomicBool>,
    abort: AbortHandle,
}

impl<T: Transport> Actor<T> {
    async fn run(mut self) {
        tracing::debug!(addr = %self.transport.local_addr(), "gossip started");
        let mut shutdown_reply = None;
        if !self.rejoin.is_empty() {
            tracing::info!(
                peers = self.rejoin.len(),
                "rejoining peers from the snapshot"
            );
            // Nobody waits for this join's result; the log tells.
            let (reply, _) = oneshot::channel();
            let addrs = std::mem::take(&mut self.rejoin);
            self.on_command(Command::Join { addrs, reply });
            self.flush().await;
        }
        loop {
            let deadline = self.core.next_deadline();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(c) => self.on_command(c),
                },
                r = self.transport.recv() => match r {
                    Ok((_, from)) if !self.cfg.allow.allows(from.ip()) => {
                        self.core.stats_mut().cidr_refused += 1;
                    }
                    Ok((buf, from)) => self.core.handle_datagram(Instant::now(), from, &buf),
                    Err(e) => {
                        tracing::debug!(error = %e, "datagram receive failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
                r = self.transport.accept() => match r {
                    Ok((stream, from)) => self.on_accept(stream, from),
                    Err(e) => {
                        tracing::debug!(error = %e, "stream accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
                Some(m) = self.internal_rx.recv() => self.on_internal(m),
                _ = tokio::time::sleep_until(deadline) => self.core.tick(Instant::now()),
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    self.incoming.remove(&id);
                }
            }
            self.flush().await;
        }
        self.tasks.shutdown().await;
        if self.snapshot_due {
            self.write_snapshot(Instant::now());
        }
        tracing::debug!("gossip stopped");
        if let Some(r) = shutdown_reply {
            let _ = r.send(());
        }
    }

    /// Serves an accepted stream unless `max_incoming_streams` are being
    /// served; then the oldest idle one (no valid first frame yet) is closed
    /// to make room, or, when all are busy, the new one. Idle connections
    /// therefore cannot keep real peers out.
    fn on_accept(&mut self, stream: super::transport::BoxStream, from: SocketAddr) {
        if !self.cfg.allow.allows(from.ip()) {
            self.core.stats_mut().cidr_refused += 1;
            tracing::debug!(peer = %from, "stream refused: address outside --allow-cidr");
            return;
        }
        if self.incoming.len() >= self.cfg.max_incoming_streams {
            let idle = self
                .incoming
                .iter()
                .filter(|(_, s)| !s.active.load(Ordering::Relaxed))
                .min_by_key(|(_, s)| s.accepted)
                .map(|(id, _)| *id);
            match idle.and_then(|id| self.incoming.remove(&id)) {
                Some(old) => {
                    old.abort.abort();
                    self.core.stats_mut().streams_evicted += 1;
                }
                None => {
                    self.core.stats_mut().streams_rejected += 1;
                    tracing::debug!(peer = %from, "incoming stream refused: all slots busy");
                    return;
                }
            }
        }
        let active = Arc::new(AtomicBool::new(false));
        let fut = pushpull::respond(
            stream,
            from,
            self.cfg.name.clone(),
            self.ctx.clone(),
            active.clone(),
            self.internal_tx.clone(),
        );
        let abort = self.tasks.spawn(fut.in_current_span());
        self.incoming.insert(
            abort.id(),
            IncomingStream {
                accepted: Instant::now(),
                active,
                abort,
            },
        );
    }

    /// Stream tasks this node started (not incoming ones).
    fn outgoing_tasks(&self) -> usize {
        self.tasks.len().saturating_sub(self.incoming.len())
    }

    fn on_command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Join { addrs, reply } => {
                self.next_op += 1;
                let op = self.next_op;
                self.joins.insert(
                    op,
                    JoinOp {
                        remaining: addrs.len(),
                        ok: 0,
                        tried: addrs.len(),
                        last_err: String::new(),
                        reply,
                    },
                );
                self.core.join(&addrs, op);
            }
            Command::Leave { reply } => {
                if self.core.leave(now) {
                    let _ = reply.send(());
                } else {
                    self.leave_waiters.push(reply);
                }
            }
            Command::SetTags { tags, reply } => {
                let _ = reply.send(self.core.set_tags(tags).map_err(GossipError::from));
            }
            Command::Subscribe { reply } => {
                let (tx, rx) = mpsc::channel(self.cfg.event_channel_capacity);
                self.subs.push(tx);
                let _ = reply.send(rx);
            }
            Command::SubscribeUser { reply } => {
                let (tx, rx) = mpsc::channel(self.cfg.event_channel_capacity);
                self.user_subs.push(tx);
                let _ = reply.send(rx);
            }
            Command::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            } => {
                let _ = reply.send(self.core.user_event(now, name, payload, coalesce));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.core.stats());
            }
            Command::RemoveFailed { name, prune, reply } => {
                let _ = reply.send(self.core.remove_failed(now, &name, prune));
            }
            Command::Shutdown { reply } => {
                // Handled in the loop; kept total here.
                let _ = reply.send(());
            }
            Command::Keys { op, reply } => {
                let _ = reply.send(self.change_keys(&op));
            }
        }
    }

    fn change_keys(&mut self, op: &KeyOp) -> Result<(Keyring, Keyring), GossipError> {
        let before = self.cfg.keyring.clone().ok_or(GossipError::NoKeyring)?;
        let mut after = before.clone();
        after.apply(op)?;
        if !matches!(op, KeyOp::List) {
            tracing::info!(op = ?op, keys = after.len(), "gossip keyring changed");
        }
        if let (false, Some(path)) = (matches!(op, KeyOp::List), &self.cfg.keyring_path) {
            // Saved before it is used: a restart never comes back with
            // keys older than what this node answered.
            after
                .save(path)
                .map_err(|source| GossipError::Io { addr: None, source })?;
        }
        self.cfg.keyring = Some(after.clone());
        self.core.set_keyring(after.clone());
        self.ctx = StreamCtx::new(&self.cfg);
        Ok((before, after))
    }

    fn on_internal(&mut self, m: Internal) {
        match m {
            Internal::Snapshot { reply } => {
                let _ = reply.send((self.core.checksum(), self.core.local_state()));
            }
            Internal::Merge(state) => self.core.merge_remote(Instant::now(), state),
            Internal::StreamPingDone { seq, ok } => {
                self.core.stream_ping_done(Instant::now(), seq, ok)
            }
            Internal::Done {
                op,
                to,
                result,
                failure,
            } => {
                let stats = self.core.stats_mut();
                match &result {
                    Ok(true) => {
                        stats.push_pulls += 1;
                        stats.push_pulls_in_sync += 1;
                    }
                    Ok(false) => stats.push_pulls += 1,
                    Err(e) => {
                        stats.push_pull_failures += 1;
                        match failure {
                            Some(Failure::Decrypt) => stats.decrypt_failures += 1,
                            Some(Failure::TooLarge) => stats.stream_frames_too_large += 1,
                            Some(Failure::Budget) => stats.stream_budget_exhausted += 1,
                            Some(Failure::Timeout) => stats.stream_timeouts += 1,
                            Some(Failure::Malformed) => stats.bad_packets += 1,
                            Some(Failure::Version { version, peer }) => {
                                self.core.refused_frame(peer, version)
                            }
                            Some(Failure::Other) | None => {}
                        }
                        if let Some(to) = to {
                            tracing::debug!(peer = %to, error = %e, "push/pull failed");
                        }
                    }
                }
                let Some(op) = op else { return };
                let Some(j) = self.joins.get_mut(&op) else {
                    return;
                };
                j.remaining = j.remaining.saturating_sub(1);
                match result {
                    Ok(_) => j.ok += 1,
                    Err(e) => j.last_err = e,
                }
                if j.remaining == 0 {
                    if let Some(j) = self.joins.remove(&op) {
                        let r = if j.ok > 0 {
                            Ok(j.ok)
                        } else {
                            Err(GossipError::JoinFailed {
                                tried: j.tried,
                                last: j.last_err,
                            })
                        };
                        let _ = j.reply.send(r);
                    }
                }
            }
        }
    }

    async fn flush(&mut self) {
        for out in self.core.take_outputs() {
            match out {
                Output::Send { to, packet } => {
                    if let Err(e) = self.transport.send_to(&packet, to).await {
                        self.core.stats_mut().send_errors += 1;
                        tracing::trace!(peer = %to, error = %e, "send failed");
                    }
                }
                Output::Event(ev) => {
                    self.core.stats_mut().events_dropped += fan_out(&mut self.subs, &ev);
                }
                Output::User(ev) => {
                    self.core.stats_mut().events_dropped += fan_out(&mut self.user_subs, &ev);
                }
                Output::StreamPing { to, ping } => {
                    if self.outgoing_tasks() >= MAX_STREAM_TASKS {
                        let seq = ping.seq;
                        self.core.stream_ping_done(Instant::now(), seq, false);
                        continue;
                    }
                    let fut = pushpull::stream_ping(
                        self.transport.clone(),
                        to,
                        ping,
                        self.ctx
                            .with_timeout(self.cfg.probe_interval.min(self.cfg.stream_timeout))
                            .at_version(self.core.send_version(to)),
                        self.internal_tx.clone(),
                    );
                    self.tasks.spawn(fut.in_current_span());
                }
                Output::PushPull { to, join, op } => {
                    if self.outgoing_tasks() >= MAX_STREAM_TASKS {
                        self.core.stats_mut().push_pull_failures += 1;
                        if let Some(op) = op {
                            self.on_internal(Internal::Done {
                                op: Some(op),
                                to: Some(to),
                                result: Err("too many push/pulls in flight".into()),
                                failure: None,
                            });
                        }
                        continue;
                    }
                    let fut = pushpull::initiate(
                        self.transport.clone(),
                        to,
                        join,
                        op,
                        self.core.checksum(),
                        self.core.local_state(),
                        self.ctx.at_version(self.core.send_version(to)),
                        self.internal_tx.clone(),
                    );
                    self.tasks.spawn(fut.in_current_span());
                }
            }
        }
        if self.core.take_dirty() {
            self.members_tx.send_replace(Arc::new(self.core.members()));
            self.snapshot_due = true;
            self.publish_validity();
        }
        let now = Instant::now();
        if !self.leave_waiters.is_empty() && self.core.has_left() {
            for w in self.leave_waiters.drain(..) {
                let _ = w.send(());
            }
            // Record the leave at once: a restart must not rejoin.
            self.write_snapshot(now);
        }
        let due = self
            .snapshot_written
            .is_none_or(|t| now >= t + SNAPSHOT_EVERY);
        if self.snapshot_due && due {
            self.write_snapshot(now);
        }
    }

    /// Publishes the view's validity when it changed, with a log line.
    fn publish_validity(&mut self) {
        let v = self.core.view_validity();
        let was = *self.validity_tx.borrow();
        if v == was {
            return;
        }
        if was.valid && !v.valid {
            tracing::warn!(
                lighthouses = v.lighthouses_known,
                "gossip view invalid: no lighthouse is alive in it (cut off from the cluster?)"
            );
        } else if !was.valid && v.valid {
            tracing::info!(
                alive = v.lighthouses_alive,
                "gossip view valid again: a lighthouse is back"
            );
        }
        self.validity_tx.send_replace(v);
    }

    fn write_snapshot(&mut self, now: Instant) {
        self.snapshot_due = false;
        self.snapshot_written = Some(now);
        let Some(path) = self.cfg.snapshot_path.as_deref() else {
            return;
        };
        let snap = Snapshot {
            alive: self.core.live_peers(),
            event_ltime: self.core.event_ltime(),
            left: self.core.has_left(),
        };
        if let Err(e) = snapshot::save(path, &snap) {
            tracing::warn!(path = %path.display(), error = %e, "could not write gossip snapshot");
        }
    }
}
