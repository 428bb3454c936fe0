//! The sans-IO SWIM + Lifeguard state machine. It owns the member table,
//! the probe cycle, suspicions, the broadcast queue and the event clock; it
//! is driven by `handle_datagram`, `tick`, `merge_remote` and a few
//! commands, each taking `now`, and it answers with [`Output`]s (datagrams to
//! send, events, push/pulls to start). No sockets, no tasks, no clock of its
//! own: unit tests drive it by hand.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;

use super::coalesce::{MemberCoalescer, UserCoalescer};
use super::codec::{self, Msg};
use super::config::GossipConfig;
use super::lighthouse::{Lighthouses, ViewValidity};
use super::member::{Member, MemberEvent, MemberEventKind, MemberStatus, UserEvent};
use super::pb;
use super::queue::{retransmit_limit, BroadcastKey, BroadcastQueue};
use super::stats::GossipStats;
use super::suspicion::{Awareness, Suspicion};
use super::version::Refusals;

/// Most indirect probes relayed at once; more requests are dropped (a
/// flood of them must not grow memory).
const MAX_RELAYS: usize = 1024;
/// Most event names remembered for coalescing.
const MAX_COALESCED: usize = 1024;

/// How often dead and left members are checked for reaping (and the
/// broadcast queue's depth).
const REAP_CHECK: Duration = Duration::from_secs(1);
/// Least time between two queue depth warnings.
const QUEUE_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the core asks its driver to do.
#[derive(Debug)]
pub(crate) enum Output {
    /// Send this datagram (already framed, and sealed if a keyring is set).
    Send { to: SocketAddr, packet: Bytes },
    /// A membership event for subscribers.
    Event(MemberEvent),
    /// A user event for subscribers.
    User(UserEvent),
    /// Probe `to` over a stream with `ping`; report with `stream_ping_done`.
    StreamPing { to: SocketAddr, ping: pb::Ping },
    /// Start a push/pull with `to`; `op` ties it to a pending join.
    PushPull {
        to: SocketAddr,
        join: bool,
        op: Option<u64>,
    },
}

#[derive(Debug, Clone)]
struct NodeState {
    name: String,
    addr: SocketAddr,
    incarnation: u64,
    status: MemberStatus,
    tags: BTreeMap<String, String>,
    state_change: Instant,
}

impl NodeState {
    fn to_member(&self) -> Member {
        Member {
            name: self.name.clone(),
            addr: self.addr,
            status: self.status,
            incarnation: self.incarnation,
            tags: self.tags.clone(),
        }
    }

    fn alive_msg(&self) -> pb::Alive {
        pb::Alive {
            incarnation: self.incarnation,
            node: self.name.clone(),
            addr: self.addr.to_string(),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Probe {
    seq: u64,
    target: String,
    start: Instant,
    timeout_at: Instant,
    end_at: Instant,
    indirect_sent: bool,
    expected_nacks: usize,
    nacks: usize,
    /// A fallback stream probe is under way.
    stream_pending: bool,
}

#[derive(Debug)]
struct Relay {
    origin: SocketAddr,
    origin_seq: u64,
    nack_at: Instant,
    nack: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaveState {
    Member,
    Leaving(u64),
    Left,
}

/// The membership state machine of one node.
pub(crate) struct Core {
    cfg: GossipConfig,
    name: String,
    local_addr: SocketAddr,
    members: BTreeMap<String, NodeState>,
    probe_list: Vec<String>,
    probe_idx: usize,
    /// Members that became suspect on someone else's word: probed next, so
    /// independent confirmations (or an ack that clears them) come quickly.
    probe_first: VecDeque<String>,
    seq: u64,
    probe: Option<Probe>,
    relays: BTreeMap<u64, Relay>,
    suspicions: BTreeMap<String, Suspicion>,
    queue: BroadcastQueue,
    awareness: Awareness,
    rng: StdRng,
    next_probe: Instant,
    next_gossip: Instant,
    last_gossip: Instant,
    /// Broadcasts were queued since the last gossip round.
    news: bool,
    next_push_pull: Instant,
    next_reconnect: Instant,
    next_reap: Instant,
    leave: LeaveState,
    notify_seq: u64,
    ltime: u64,
    recent_events: VecDeque<pb::UserEvent>,
    seen_events: BTreeSet<(u64, String, Vec<u8>)>,
    coalesced: BTreeMap<String, u64>,
    stats: GossipStats,
    out: Vec<Output>,
    dirty: bool,
    checksum_cache: std::cell::Cell<Option<u64>>,
    /// No checksum-triggered push/pull before this.
    next_checksum_sync: Instant,
    /// Frames and members refused for their protocol version.
    refusals: Refusals,
    member_coalescer: MemberCoalescer,
    user_coalescer: UserCoalescer,
    lighthouses: Lighthouses,
    /// When the queue depth warning was last logged.
    queue_warned: Option<Instant>,
}

fn jitter(rng: &mut StdRng, d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rng.gen_range(0.0..1.0))
}

/// memberlist's push/pull scaling: beyond 32 nodes the interval grows with
/// `log2(n / 32)` so the total full-sync load stays flat.
fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    if n <= 32 {
        return interval;
    }
    let mult = ((n as f64).log2() - 32f64.log2()).ceil() as u32 + 1;
    interval * mult
}

/// Checksum of a membership view (ringpop): FNV-1a over members sorted by
/// name, hashing name, status and incarnation.
pub(crate) fn membership_checksum<'a>(
    members: impl Iterator<Item = (&'a str, MemberStatus, u64)>,
) -> u64 {
    let mut v: Vec<_> = members.collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for (name, status, inc) in v {
        eat(name.as_bytes());
        eat(&[0, status as u8]);
        eat(&inc.to_le_bytes());
    }
    h
}

fn status_to_pb(s: MemberStatus) -> pb::NodeStatus {
    match s {
        MemberStatus::Alive => pb::NodeStatus::Alive,
        MemberStatus::Suspect => pb::NodeStatus::Suspect,
        MemberStatus::Dead => pb::NodeStatus::Dead,
        MemberStatus::Left => pb::NodeStatus::Left,
    }
}

impl Core {
    /// Replaces the keyring (key rotation on a running node).
    pub(crate) fn set_keyring(&mut self, keyring: super::keyring::Keyring) {
        self.cfg.keyring = Some(keyring);
    }

    /// A core for `cfg` (already validated) advertising `addr`.
    pub(crate) fn new(cfg: GossipConfig, addr: SocketAddr, now: Instant) -> Self {
        let mut rng = crate::rng::generator();
        let name = cfg.name.clone();
        let mut tags = cfg.tags.clone();
        cfg.advertise(&mut tags);
        let me = NodeState {
            name: name.clone(),
            addr,
            incarnation: 1,
            status: MemberStatus::Alive,
            tags,
            state_change: now,
        };
        let next_probe = now + jitter(&mut rng, cfg.probe_interval);
        let next_gossip = now + jitter(&mut rng, cfg.gossip_interval);
        let next_push_pull = now + jitter(&mut rng, cfg.push_pull_interval);
        let next_reconnect = now + jitter(&mut rng, cfg.reconnect_interval);
        let awareness = Awareness::new(cfg.awareness_max_multiplier);
        let queue = BroadcastQueue::new(cfg.max_broadcast_queue);
        let mut lighthouses = Lighthouses::default();
        lighthouses.saw(&name, &me.tags);
        let mut core = Core {
            members: BTreeMap::from([(name.clone(), me)]),
            name,
            local_addr: addr,
            probe_list: Vec::new(),
            probe_idx: 0,
            probe_first: VecDeque::new(),
            seq: 0,
            probe: None,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            queue,
            awareness,
            rng,
            next_probe,
            next_gossip,
            last_gossip: now,
            news: false,
            next_push_pull,
            next_reconnect,
            next_reap: now + REAP_CHECK,
            leave: LeaveState::Member,
            notify_seq: 0,
            ltime: 0,
            recent_events: VecDeque::new(),
            seen_events: BTreeSet::new(),
            coalesced: BTreeMap::new(),
            stats: GossipStats::default(),
            out: Vec::new(),
            dirty: true,
            checksum_cache: std::cell::Cell::new(None),
            next_checksum_sync: now,
            refusals: Refusals::default(),
            member_coalescer: MemberCoalescer::new(cfg.coalesce_period, cfg.quiescent_period),
            user_coalescer: UserCoalescer::new(cfg.user_coalesce_period, cfg.user_quiescent_period),
            lighthouses,
            queue_warned: None,
            cfg,
        };
        // Announce ourselves: once we know anyone (after a join), our alive
        // spreads from us as well as from the node we joined through.
        let me = Msg::Alive(core.me().alive_msg());
        let name = core.name.clone();
        core.broadcast(&name, me, None);
        core
    }

    fn me(&self) -> &NodeState {
        // The local node is inserted in `new` and never removed.
        &self.members[&self.name]
    }

    fn me_mut(&mut self) -> &mut NodeState {
        // `members` always holds the local node (it is never reaped); the
        // fallback only keeps this total.
        let (name, addr) = (self.name.clone(), self.local_addr);
        self.members
            .entry(name.clone())
            .or_insert_with(|| NodeState {
                name,
                addr,
                incarnation: 1,
                status: MemberStatus::Alive,
                tags: BTreeMap::new(),
                state_change: Instant::now(),
            })
    }

    // ---- views -------------------------------------------------------

    pub(crate) fn members(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.members.values().map(NodeState::to_member).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Alive and suspect members, the local node included: the `N` of the
    /// protocol's scaling rules.
    pub(crate) fn num_live(&self) -> usize {
        self.members
            .values()
            .filter(|n| matches!(n.status, MemberStatus::Alive | MemberStatus::Suspect))
            .count()
    }

    /// Must follow every change of the member table.
    fn mark_changed(&mut self) {
        self.dirty = true;
        self.checksum_cache.set(None);
    }

    pub(crate) fn checksum(&self) -> u64 {
        if let Some(c) = self.checksum_cache.get() {
            return c;
        }
        let c = self.compute_checksum();
        self.checksum_cache.set(Some(c));
        c
    }

    fn compute_checksum(&self) -> u64 {
        membership_checksum(
            self.members
                .values()
                .map(|n| (n.name.as_str(), n.status, n.incarnation)),
        )
    }

    pub(crate) fn local_state(&self) -> pb::PushPullState {
        pb::PushPullState {
            from: self.name.clone(),
            nodes: self
                .members
                .values()
                .map(|n| pb::NodeRecord {
                    name: n.name.clone(),
                    addr: n.addr.to_string(),
                    incarnation: n.incarnation,
                    status: status_to_pb(n.status) as i32,
                    tags: n.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
                .collect(),
            event_ltime: self.ltime,
            events: self.recent_events.iter().cloned().collect(),
        }
    }

    pub(crate) fn stats(&self) -> GossipStats {
        let mut s = self.stats.clone();
        s.health_score = self.awareness.score();
        s.broadcasts_dropped = self.queue.dropped;
        s.broadcasts_queued = self.queue.len();
        s.protocol_refused_frames = self.refusals.frames;
        s.protocol_refused_members = self.refusals.members;
        s.events_coalesced = self.member_coalescer.coalesced + self.user_coalescer.coalesced;
        let v = self.view_validity();
        s.view_valid = v.valid;
        s.lighthouses_known = v.lighthouses_known;
        s.lighthouses_alive = v.lighthouses_alive;
        for n in self.members.values() {
            match n.status {
                MemberStatus::Alive => s.alive += 1,
                MemberStatus::Suspect => s.suspect += 1,
                MemberStatus::Dead => s.dead += 1,
                MemberStatus::Left => s.left += 1,
            }
        }
        s
    }

    pub(crate) fn stats_mut(&mut self) -> &mut GossipStats {
        &mut self.stats
    }

    pub(crate) fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// True once since the member table last changed.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::replace(&mut self.dirty, false)
    }

    pub(crate) fn has_left(&self) -> bool {
        self.leave == LeaveState::Left
    }

    // ---- sending -------------------------------------------------------

    fn retransmit_limit(&self) -> usize {
        retransmit_limit(self.cfg.retransmit_mult, self.num_live())
    }

    fn packet_budget(&self) -> usize {
        self.cfg
            .packet_size
            .saturating_sub(codec::datagram_overhead(self.cfg.seal_keyring().is_some()))
    }

    /// Sends `msgs` to `to`, piggybacking queued broadcasts in the room left.
    fn send(&mut self, to: SocketAddr, msgs: &[Msg]) {
        let mut parts: Vec<Bytes> = msgs.iter().map(Msg::encode_part).collect();
        let used: usize = parts
            .iter()
            .map(|p| codec::compound_part_cost(p.len()))
            .sum();
        let budget = self.packet_budget().saturating_sub(used);
        let limit = self.retransmit_limit();
        parts.extend(self.queue.take(budget, limit, codec::compound_part_cost));
        self.emit(to, parts);
    }

    fn emit(&mut self, to: SocketAddr, parts: Vec<Bytes>) {
        if parts.is_empty() {
            return;
        }
        for p in &parts {
            self.stats.sent(codec::type_name(p[0]), p.len());
        }
        let version = self.send_version(to);
        let (packet, compressed) =
            codec::encode_datagram_with(&parts, self.cfg.seal_keyring(), version);
        self.stats.packets_compressed += u64::from(compressed);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        self.out.push(Output::Send { to, packet });
        self.check_leave_finished();
    }

    fn broadcast(&mut self, node: &str, msg: Msg, notify: Option<u64>) {
        self.queue.push(
            BroadcastKey::Node(node.to_string()),
            msg.encode_part(),
            notify,
        );
        self.news = true;
    }

    /// When news (or broadcasts not yet sent their full number of times)
    /// may trigger an early gossip round.
    fn eager_gossip_at(&self) -> Option<Instant> {
        match self.cfg.eager_gossip {
            Some(d) if self.news && !self.cfg.gossip_interval.is_zero() => {
                Some(self.last_gossip + d)
            }
            _ => None,
        }
    }

    /// Emits a membership event, through the coalescer.
    fn event(&mut self, now: Instant, kind: MemberEventKind, name: &str) {
        if let Some(n) = self.members.get(name) {
            let ev = MemberEvent {
                kind,
                member: n.to_member(),
            };
            if let Some(ev) = self.member_coalescer.push(now, ev) {
                self.out.push(Output::Event(ev));
            }
        }
    }

    /// Emits a user event, through the coalescer.
    fn user_out(&mut self, now: Instant, ev: UserEvent) {
        if let Some(ev) = self.user_coalescer.push(now, ev) {
            self.out.push(Output::User(ev));
        }
    }

    /// Delivers the coalesced events whose window has closed.
    fn flush_coalesced(&mut self, now: Instant) {
        for ev in self.member_coalescer.flush(now) {
            self.out.push(Output::Event(ev));
        }
        for ev in self.user_coalescer.flush(now) {
            self.out.push(Output::User(ev));
        }
    }

    /// Whether this node's view still holds a lighthouse.
    pub(crate) fn view_validity(&self) -> ViewValidity {
        self.lighthouses
            .validity(|n| self.members.get(n).map(|m| m.status))
    }

    fn check_leave_finished(&mut self) {
        let finished = self.queue.take_finished();
        if let LeaveState::Leaving(id) = self.leave {
            if finished.contains(&id) || !self.queue.contains_notify(id) {
                self.leave = LeaveState::Left;
            }
        }
    }
}

mod commands;
mod receive;
mod timers;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests_members;
#[cfg(test)]
mod tests_probe;
