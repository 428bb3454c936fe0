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
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::time::Instant;

use super::codec::{self, Msg};
use super::config::GossipConfig;
use super::error::{CodecError, GossipError, TagsError};
use super::member::{Member, MemberEvent, MemberEventKind, MemberStatus, UserEvent};
use super::pb;
use super::queue::{retransmit_limit, BroadcastKey, BroadcastQueue};
use super::stats::GossipStats;
use super::suspicion::{suspicion_timeout, Awareness, Suspicion};
use super::tags::check_tags;
use super::version::{ProtocolRange, Refusals};

/// Most indirect probes relayed at once; more requests are dropped (a
/// flood of them must not grow memory).
const MAX_RELAYS: usize = 1024;
/// Most event names remembered for coalescing.
const MAX_COALESCED: usize = 1024;

/// How often dead and left members are checked for reaping.
const REAP_CHECK: Duration = Duration::from_secs(1);

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
        cfg.protocol.advertise(&mut tags);
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

    fn event(&mut self, kind: MemberEventKind, name: &str) {
        if let Some(n) = self.members.get(name) {
            let member = n.to_member();
            self.out.push(Output::Event(MemberEvent { kind, member }));
        }
    }

    fn check_leave_finished(&mut self) {
        let finished = self.queue.take_finished();
        if let LeaveState::Leaving(id) = self.leave {
            if finished.contains(&id) || !self.queue.contains_notify(id) {
                self.leave = LeaveState::Left;
            }
        }
    }

    // ---- receiving -------------------------------------------------------

    /// Handles one datagram from `from`. Undecodable input is counted.
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.stats.packets_received += 1;
        self.stats.bytes_received += buf.len() as u64;
        let decoded = match codec::decode_datagram_with(buf, self.cfg.opener()) {
            Ok(d) => d,
            Err(CodecError::Version(v)) => {
                self.refused_frame(from, v);
                return;
            }
            Err(CodecError::Decrypt) => {
                self.stats.decrypt_failures += 1;
                tracing::debug!(node = %self.name, %from, "dropped datagram that failed to decrypt");
                return;
            }
            Err(e) => {
                self.stats.bad_packets += 1;
                tracing::debug!(node = %self.name, %from, error = %e, "dropped bad datagram");
                return;
            }
        };
        self.stats.bad_packets += decoded.skipped as u64;
        for m in decoded.msgs {
            self.stats.received(m.msg_type().name(), 1 + m.body_len());
            self.handle_msg(now, from, m);
        }
    }

    fn handle_msg(&mut self, now: Instant, from: SocketAddr, m: Msg) {
        match m {
            Msg::Ping(p) => self.on_ping(now, from, p),
            Msg::IndirectPing(p) => self.on_indirect_ping(now, from, p),
            Msg::Ack(a) => self.on_ack(now, a),
            Msg::Nack(n) => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == n.seq) {
                    p.nacks += 1;
                    self.stats.nacks_received += 1;
                    if p.nacks >= p.expected_nacks && !p.stream_pending {
                        // Every helper has waited for the target in vain:
                        // no ack is coming, conclude now.
                        self.fail_probe(now);
                    }
                }
            }
            Msg::Alive(a) => self.on_alive(now, a),
            Msg::Suspect(s) => self.on_suspect(now, s),
            Msg::Dead(d) => self.on_dead(now, d),
            Msg::UserEvent(e) => self.on_user_event(e),
        }
    }

    fn on_ping(&mut self, now: Instant, from: SocketAddr, p: pb::Ping) {
        if !p.target.is_empty() && p.target != self.name {
            // Meant for a node that used to live at this address.
            self.stats.bad_packets += 1;
            return;
        }
        self.maybe_checksum_sync(now, from, p.checksum);
        let ack = pb::Ack {
            seq: p.seq,
            checksum: self.checksum(),
        };
        self.send(from, &[Msg::Ack(ack)]);
    }

    fn on_indirect_ping(&mut self, now: Instant, from: SocketAddr, p: pb::IndirectPing) {
        let Ok(target) = p.target_addr.parse::<SocketAddr>() else {
            self.stats.bad_packets += 1;
            return;
        };
        if self.relays.len() >= MAX_RELAYS {
            self.stats.bad_packets += 1;
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.relays.insert(
            seq,
            Relay {
                origin: from,
                origin_seq: p.seq,
                nack_at: now + self.nack_timeout(),
                nack: p.nack,
            },
        );
        let ping = pb::Ping {
            seq,
            target: p.target,
            source: self.name.clone(),
            source_addr: self.me().addr.to_string(),
            checksum: self.checksum(),
        };
        self.send(target, &[Msg::Ping(ping)]);
    }

    /// How long a relay waits for the target before sending a nack. It is
    /// the probe timeout, capped at 80% of the time the prober has left
    /// after its own direct timeout (`probe_interval - probe_timeout`): with
    /// memberlist's presets the nack would otherwise arrive just after the
    /// prober stopped counting (LAN: 500 ms + 500 ms = the 1 s interval), and
    /// every probe of a dead node would wrongly lower the prober's health.
    fn nack_timeout(&self) -> Duration {
        let room = self
            .cfg
            .probe_interval
            .saturating_sub(self.cfg.probe_timeout);
        self.cfg.probe_timeout.min(room * 4 / 5)
    }

    fn on_ack(&mut self, now: Instant, ack: pb::Ack) {
        let seq = ack.seq;
        if let Some(p) = self.probe.as_ref().filter(|p| p.seq == seq) {
            if !p.indirect_sent {
                self.stats
                    .rtt
                    .record(now.saturating_duration_since(p.start));
            }
            let target = self.members.get(&p.target).map(|n| n.addr);
            self.probe = None;
            self.awareness.apply(-1);
            if let Some(addr) = target {
                self.maybe_checksum_sync(now, addr, ack.checksum);
            }
            return;
        }
        if let Some(r) = self.relays.remove(&seq) {
            let fwd = pb::Ack {
                seq: r.origin_seq,
                checksum: 0,
            };
            self.send(r.origin, &[Msg::Ack(fwd)]);
        }
    }

    /// Ringpop's rule: when gossip has nothing left to say but the probed
    /// node's checksum differs from ours, one of us missed an update; a
    /// push/pull with it repairs that now. At most one per probe interval.
    fn maybe_checksum_sync(&mut self, now: Instant, addr: SocketAddr, theirs: u64) {
        if theirs == 0
            || self.queue.len() > 0
            || now < self.next_checksum_sync
            || self.leave != LeaveState::Member
            || theirs == self.checksum()
        {
            return;
        }
        self.next_checksum_sync = now + self.cfg.probe_interval;
        self.stats.checksum_syncs += 1;
        self.out.push(Output::PushPull {
            to: addr,
            join: false,
            op: None,
        });
    }

    fn on_alive(&mut self, now: Instant, a: pb::Alive) {
        let Ok(addr) = a.addr.parse::<SocketAddr>() else {
            self.stats.bad_packets += 1;
            return;
        };
        let tags: BTreeMap<String, String> = a.tags.into_iter().collect();
        if a.node == self.name {
            let me = self.me();
            let differs = addr != me.addr || tags != me.tags;
            if self.leave == LeaveState::Member
                && (a.incarnation > me.incarnation || (a.incarnation == me.incarnation && differs))
            {
                self.refute(a.incarnation);
            }
            return;
        }
        if a.node.is_empty() {
            self.stats.bad_packets += 1;
            return;
        }
        let name = a.node;
        if !self
            .refusals
            .admit(&self.name, &self.cfg.protocol, &name, &tags)
        {
            return;
        }
        let (prev, changed) = match self.members.get_mut(&name) {
            None => {
                self.members.insert(
                    name.clone(),
                    NodeState {
                        name: name.clone(),
                        addr,
                        incarnation: a.incarnation,
                        status: MemberStatus::Alive,
                        tags,
                        state_change: now,
                    },
                );
                // Insert at a random place so new nodes are probed soon but
                // not all by everyone at the same moment.
                // (A forgotten node that comes back may still be listed.)
                if !self.probe_list.contains(&name) {
                    let pos = self.rng.gen_range(0..=self.probe_list.len());
                    self.probe_list.insert(pos, name.clone());
                }
                (None, false)
            }
            Some(st) => {
                if a.incarnation <= st.incarnation {
                    return;
                }
                let prev = st.status;
                let changed = st.addr != addr || st.tags != tags;
                st.addr = addr;
                st.tags = tags;
                st.incarnation = a.incarnation;
                if prev != MemberStatus::Alive {
                    st.status = MemberStatus::Alive;
                    st.state_change = now;
                }
                (Some(prev), changed)
            }
        };
        self.suspicions.remove(&name);
        self.mark_changed();
        let msg = Msg::Alive(self.members[&name].alive_msg());
        self.broadcast(&name, msg, None);
        match prev {
            None | Some(MemberStatus::Left) => self.event(MemberEventKind::Join, &name),
            Some(MemberStatus::Suspect | MemberStatus::Dead) => {
                self.event(MemberEventKind::AliveAgain, &name);
                if changed {
                    self.event(MemberEventKind::Updated, &name);
                }
            }
            Some(MemberStatus::Alive) => {
                if changed {
                    self.event(MemberEventKind::Updated, &name);
                }
            }
        }
    }

    fn on_suspect(&mut self, now: Instant, s: pb::Suspect) {
        let n_live = self.num_live();
        let Some(st) = self.members.get(&s.node) else {
            return;
        };
        if s.incarnation < st.incarnation {
            return;
        }
        if s.node == self.name {
            if self.leave == LeaveState::Member {
                self.refute(s.incarnation);
            }
            return;
        }
        if let Some(susp) = self.suspicions.get_mut(&s.node) {
            if susp.confirm(&s.from) {
                // Pass the confirmation on: others shorten their timers too.
                self.broadcast(&s.node.clone(), Msg::Suspect(s), None);
            }
            return;
        }
        if st.status != MemberStatus::Alive {
            return;
        }
        let k = self.cfg.suspicion_mult.saturating_sub(2);
        let k = if n_live.saturating_sub(2) < k as usize {
            0
        } else {
            k
        };
        let min = suspicion_timeout(self.cfg.suspicion_mult, n_live, self.cfg.probe_interval);
        let max = min * self.cfg.suspicion_max_timeout_mult;
        let name = s.node.clone();
        if let Some(st) = self.members.get_mut(&name) {
            st.status = MemberStatus::Suspect;
            st.incarnation = s.incarnation;
            st.state_change = now;
        }
        self.suspicions.insert(
            name.clone(),
            Suspicion::new(&s.from, s.incarnation, k, min, max, now),
        );
        self.stats.suspicions += 1;
        if s.from != self.name && self.probe_first.len() < self.cfg.gossip_nodes.max(8) {
            self.probe_first.push_back(name.clone());
        }
        self.mark_changed();
        tracing::debug!(node = %self.name, suspect = %name, from = %s.from, "suspecting member");
        self.broadcast(&name, Msg::Suspect(s), None);
        self.event(MemberEventKind::Suspect, &name);
    }

    fn on_dead(&mut self, now: Instant, d: pb::Dead) {
        let Some(st) = self.members.get(&d.node) else {
            return;
        };
        // A failed node may still be turned into a left one (force-leave),
        // and a left one forgotten (force-leave with prune); nothing else
        // changes a gone node.
        let to_left = d.from == d.node && st.status == MemberStatus::Dead;
        let to_pruned = d.prune && d.from == d.node && st.status == MemberStatus::Left;
        if d.incarnation < st.incarnation || (st.status.is_gone() && !to_left && !to_pruned) {
            return;
        }
        if d.node == self.name {
            if self.leave == LeaveState::Member {
                self.refute(d.incarnation);
            }
            return;
        }
        if to_pruned {
            self.prune(d);
            return;
        }
        let left = d.from == d.node;
        let prune = left && d.prune;
        let name = d.node.clone();
        if let Some(st) = self.members.get_mut(&name) {
            st.status = if left {
                MemberStatus::Left
            } else {
                MemberStatus::Dead
            };
            st.incarnation = d.incarnation;
            st.state_change = now;
        }
        self.suspicions.remove(&name);
        self.mark_changed();
        tracing::debug!(node = %self.name, member = %name, left, "member gone");
        self.broadcast(&name, Msg::Dead(d), None);
        let kind = if left {
            MemberEventKind::Leave
        } else {
            MemberEventKind::Failed
        };
        self.event(kind, &name);
        if prune {
            self.members.remove(&name);
            self.mark_changed();
        }
    }

    /// Forgets a left member at once and passes the prune on.
    fn prune(&mut self, d: pb::Dead) {
        let name = d.node.clone();
        self.members.remove(&name);
        self.suspicions.remove(&name);
        self.mark_changed();
        tracing::debug!(node = %self.name, member = %name, "member pruned");
        self.broadcast(&name, Msg::Dead(d), None);
    }

    /// Someone thinks we are suspect/dead (or holds a newer view of us):
    /// outbid it with a higher incarnation.
    fn refute(&mut self, seen: u64) {
        let me = self.me_mut();
        me.incarnation = me.incarnation.max(seen) + 1;
        let msg = Msg::Alive(me.alive_msg());
        self.stats.refutations += 1;
        self.awareness.apply(1);
        self.mark_changed();
        let name = self.name.clone();
        tracing::debug!(node = %name, incarnation = self.me().incarnation, "refuting");
        self.broadcast(&name, msg, None);
    }

    // ---- timers ------------------------------------------------------------

    /// The earliest instant at which `tick` has something to do.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut d = self.next_reap;
        let mut consider = |t: Instant| {
            if t < d {
                d = t;
            }
        };
        match &self.probe {
            Some(p) if !p.indirect_sent => consider(p.timeout_at.min(p.end_at)),
            Some(p) => consider(p.end_at),
            None if self.leave == LeaveState::Member => consider(self.next_probe),
            None => {}
        }
        for r in self.relays.values() {
            consider(r.nack_at);
        }
        for s in self.suspicions.values() {
            consider(s.deadline);
        }
        if !self.cfg.gossip_interval.is_zero() {
            consider(self.next_gossip);
        }
        if let Some(t) = self.eager_gossip_at() {
            consider(t);
        }
        if !self.cfg.push_pull_interval.is_zero() && self.leave == LeaveState::Member {
            consider(self.next_push_pull);
        }
        if !self.cfg.reconnect_interval.is_zero() && self.leave == LeaveState::Member {
            consider(self.next_reconnect);
        }
        d
    }

    /// Runs every timer due at `now`.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.tick_probe(now);
        let due: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.nack_at <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            if let Some(r) = self.relays.remove(&s) {
                if r.nack {
                    self.send(r.origin, &[Msg::Nack(pb::Nack { seq: r.origin_seq })]);
                }
            }
        }
        let expired: Vec<(String, u64)> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(n, s)| (n.clone(), s.incarnation))
            .collect();
        for (node, incarnation) in expired {
            self.suspicions.remove(&node);
            tracing::info!(node = %self.name, member = %node, "suspicion timed out, marking failed");
            let from = self.name.clone();
            self.on_dead(
                now,
                pb::Dead {
                    prune: false,
                    incarnation,
                    node,
                    from,
                },
            );
        }
        let eager = self.eager_gossip_at().is_some_and(|t| now >= t);
        if !self.cfg.gossip_interval.is_zero() && (now >= self.next_gossip || eager) {
            self.next_gossip = now + self.cfg.gossip_interval;
            self.gossip(now);
        }
        if self.leave == LeaveState::Member {
            if !self.cfg.push_pull_interval.is_zero() && now >= self.next_push_pull {
                self.next_push_pull =
                    now + push_pull_scale(self.cfg.push_pull_interval, self.num_live());
                if let Some(to) = self.random_addr(|n| n.status == MemberStatus::Alive) {
                    self.out.push(Output::PushPull {
                        to,
                        join: false,
                        op: None,
                    });
                }
            }
            if !self.cfg.reconnect_interval.is_zero() && now >= self.next_reconnect {
                self.next_reconnect = now + self.cfg.reconnect_interval;
                if let Some(to) = self.random_addr(|n| n.status == MemberStatus::Dead) {
                    self.out.push(Output::PushPull {
                        to,
                        join: false,
                        op: None,
                    });
                }
            }
        }
        if now >= self.next_reap {
            self.next_reap = now + REAP_CHECK;
            self.reap(now);
        }
        self.check_leave_finished();
    }

    fn random_addr(&mut self, f: impl Fn(&NodeState) -> bool) -> Option<SocketAddr> {
        let c: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|n| n.name != self.name && f(n))
            .map(|n| n.addr)
            .collect();
        c.choose(&mut self.rng).copied()
    }

    fn tick_probe(&mut self, now: Instant) {
        let Some(p) = self.probe.as_ref() else {
            if self.leave == LeaveState::Member && now >= self.next_probe {
                self.start_probe(now);
            }
            return;
        };
        if !p.indirect_sent && now >= p.timeout_at && now < p.end_at {
            self.send_indirect();
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.end_at) {
            self.fail_probe(now);
            if self.leave == LeaveState::Member && now >= self.next_probe {
                self.start_probe(now);
            }
        }
    }

    fn next_probe_target(&mut self) -> Option<String> {
        while let Some(name) = self.probe_first.pop_front() {
            if self.members.get(&name).map(|n| n.status) == Some(MemberStatus::Suspect) {
                return Some(name);
            }
        }
        for _ in 0..=self.probe_list.len() {
            if self.probe_idx >= self.probe_list.len() {
                // End of a round: drop forgotten members, reshuffle.
                let members = &self.members;
                self.probe_list.retain(|n| members.contains_key(n));
                self.probe_list.shuffle(&mut self.rng);
                self.probe_idx = 0;
                if self.probe_list.is_empty() {
                    return None;
                }
            }
            let name = self.probe_list[self.probe_idx].clone();
            self.probe_idx += 1;
            match self.members.get(&name) {
                Some(n) if n.name != self.name && !n.status.is_gone() => return Some(name),
                _ => continue,
            }
        }
        None
    }

    fn start_probe(&mut self, now: Instant) {
        self.next_probe = now + self.awareness.scale(self.cfg.probe_interval);
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let Some(t) = self.members.get(&target) else {
            return;
        };
        let (addr, status, incarnation) = (t.addr, t.status, t.incarnation);
        self.seq += 1;
        let seq = self.seq;
        let mut msgs = vec![Msg::Ping(pb::Ping {
            seq,
            target: target.clone(),
            source: self.name.clone(),
            source_addr: self.me().addr.to_string(),
            checksum: self.checksum(),
        })];
        if status == MemberStatus::Suspect {
            // Tell it, so it can refute right away.
            msgs.push(Msg::Suspect(pb::Suspect {
                incarnation,
                node: target.clone(),
                from: self.name.clone(),
            }));
        }
        self.stats.probes += 1;
        self.send(addr, &msgs);
        self.probe = Some(Probe {
            seq,
            target,
            start: now,
            timeout_at: now + self.awareness.scale(self.cfg.probe_timeout),
            end_at: now + self.awareness.scale(self.cfg.probe_interval),
            indirect_sent: false,
            expected_nacks: 0,
            nacks: 0,
            stream_pending: false,
        });
    }

    fn send_indirect(&mut self) {
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (seq, target) = (p.seq, p.target.clone());
        let Some(t) = self.members.get(&target) else {
            return;
        };
        let target_addr = t.addr.to_string();
        let mut helpers: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|n| n.name != self.name && n.name != target && n.status == MemberStatus::Alive)
            .map(|n| n.addr)
            .collect();
        helpers.shuffle(&mut self.rng);
        helpers.truncate(self.cfg.indirect_checks);
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = helpers.len();
        }
        let source_addr = self.me().addr.to_string();
        for h in helpers {
            self.stats.indirect_probes += 1;
            let req = pb::IndirectPing {
                seq,
                target: target.clone(),
                target_addr: target_addr.clone(),
                nack: true,
                source: self.name.clone(),
                source_addr: source_addr.clone(),
            };
            self.send(h, &[Msg::IndirectPing(req)]);
        }
        if self.cfg.stream_fallback_ping {
            if let Some(p) = self.probe.as_mut() {
                p.stream_pending = true;
            }
            self.stats.stream_probes += 1;
            let ping = pb::Ping {
                seq,
                target: target.clone(),
                source: self.name.clone(),
                source_addr: source_addr.clone(),
                checksum: 0,
            };
            if let Ok(to) = target_addr.parse() {
                self.out.push(Output::StreamPing { to, ping });
            }
        }
    }

    /// Result of a fallback stream probe. An answer ends the probe without
    /// suspicion; a failure lets the probe conclude as soon as the nacks
    /// are in.
    pub(crate) fn stream_ping_done(&mut self, now: Instant, seq: u64, ok: bool) {
        let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) else {
            return;
        };
        p.stream_pending = false;
        if ok {
            let p = self.probe.take();
            if let Some(p) = p {
                self.stats.stream_probe_acks += 1;
                tracing::warn!(
                    node = %self.name,
                    member = %p.target,
                    "member answered over a stream but not over datagrams: the network may drop UDP"
                );
                // Our datagrams went unanswered: health still counts missing nacks.
                let delta = p.expected_nacks.saturating_sub(p.nacks) as i32;
                self.awareness.apply(delta);
            }
        } else if p.indirect_sent && p.nacks >= p.expected_nacks && p.expected_nacks > 0 {
            self.fail_probe(now);
        }
    }

    fn fail_probe(&mut self, now: Instant) {
        let Some(p) = self.probe.take() else {
            return;
        };
        // Lifeguard: missing nacks mean our own network is in trouble, so
        // slow down rather than blame the target alone.
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks) as i32
        } else {
            1
        };
        self.awareness.apply(delta);
        let Some(t) = self.members.get(&p.target) else {
            return;
        };
        if t.status != MemberStatus::Alive {
            // Already suspect: our probe is one more confirmation.
            if t.status == MemberStatus::Suspect {
                let s = pb::Suspect {
                    incarnation: t.incarnation,
                    node: p.target.clone(),
                    from: self.name.clone(),
                };
                self.on_suspect(now, s);
            }
            return;
        }
        self.stats.probe_failures += 1;
        let s = pb::Suspect {
            incarnation: t.incarnation,
            node: p.target,
            from: self.name.clone(),
        };
        self.on_suspect(now, s);
    }

    fn gossip(&mut self, now: Instant) {
        self.last_gossip = now;
        self.news = false;
        if self.queue.len() == 0 {
            return;
        }
        let dead_time = self.cfg.gossip_to_the_dead_time;
        let mut targets: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|n| {
                n.name != self.name
                    && (!n.status.is_gone()
                        || now.saturating_duration_since(n.state_change) < dead_time)
            })
            .map(|n| n.addr)
            .collect();
        targets.shuffle(&mut self.rng);
        targets.truncate(self.cfg.gossip_nodes);
        let budget = self.packet_budget();
        let mut sent = false;
        for to in targets {
            let limit = self.retransmit_limit();
            let parts = self.queue.take(budget, limit, codec::compound_part_cost);
            if parts.is_empty() {
                break;
            }
            self.emit(to, parts);
            sent = true;
        }
        // With eager gossip, keep going at the eager pace until the queue
        // has used up its transmits: each broadcast is still sent
        // `retransmit_limit` times in all, only sooner.
        self.news = sent && self.queue.len() > 0;
    }

    fn reap(&mut self, now: Instant) {
        let (failed, left) = (self.cfg.reap_failed_after, self.cfg.reap_left_after);
        let before = self.members.len();
        let me = self.name.clone();
        self.members.retain(|_, n| {
            if n.name == me {
                return true;
            }
            let age = now.saturating_duration_since(n.state_change);
            !match n.status {
                MemberStatus::Dead => age >= failed,
                MemberStatus::Left => age >= left,
                _ => false,
            }
        });
        if self.members.len() != before {
            self.mark_changed();
        }
    }

    // ---- commands ------------------------------------------------------------

    /// Starts push/pulls with `addrs` for join operation `op`.
    pub(crate) fn join(&mut self, addrs: &[SocketAddr], op: u64) {
        for &to in addrs {
            self.out.push(Output::PushPull {
                to,
                join: true,
                op: Some(op),
            });
        }
    }

    /// Merges a full state received by push/pull (memberlist's mergeState:
    /// remote deaths become suspicions here, so the node can still refute).
    pub(crate) fn merge_remote(&mut self, now: Instant, state: pb::PushPullState) {
        for r in state.nodes {
            match pb::NodeStatus::try_from(r.status) {
                Ok(pb::NodeStatus::Alive) => self.on_alive(
                    now,
                    pb::Alive {
                        incarnation: r.incarnation,
                        node: r.name,
                        addr: r.addr,
                        tags: r.tags,
                    },
                ),
                Ok(pb::NodeStatus::Left) => self.on_dead(
                    now,
                    pb::Dead {
                        prune: false,
                        incarnation: r.incarnation,
                        node: r.name.clone(),
                        from: r.name,
                    },
                ),
                Ok(pb::NodeStatus::Dead | pb::NodeStatus::Suspect) => self.on_suspect(
                    now,
                    pb::Suspect {
                        incarnation: r.incarnation,
                        node: r.name,
                        from: state.from.clone(),
                    },
                ),
                Err(_) => self.stats.bad_packets += 1,
            }
        }
        self.ltime = self.ltime.max(state.event_ltime);
        for e in state.events {
            self.on_user_event(e);
        }
    }

    /// Serf's `RemoveFailedNode` (force-leave): a failed member is marked
    /// Left everywhere at once instead of waiting to be reaped, and is no
    /// longer reconnected to; with `prune` every node forgets it (a left
    /// member may be pruned too). Returns false if `name` is not a failed
    /// (or, with `prune`, left) member.
    pub(crate) fn remove_failed(&mut self, now: Instant, name: &str, prune: bool) -> bool {
        let Some(st) = self.members.get(name).filter(|m| {
            m.status == MemberStatus::Dead || (prune && m.status == MemberStatus::Left)
        }) else {
            return false;
        };
        let d = pb::Dead {
            prune,
            incarnation: st.incarnation,
            node: name.to_string(),
            from: name.to_string(),
        };
        self.on_dead(now, d);
        true
    }

    /// The protocol version of frames sent to `to`: negotiated with the
    /// member at that address, this node's lowest for an unknown one.
    pub(crate) fn send_version(&self, to: SocketAddr) -> u8 {
        let peer = self
            .members
            .values()
            .find(|n| n.addr == to && n.name != self.name)
            .and_then(|n| ProtocolRange::from_tags(&n.tags));
        self.cfg.protocol.send_version(peer.as_ref())
    }

    /// A frame (datagram or stream) of version `v` from `from` was refused.
    pub(crate) fn refused_frame(&mut self, from: SocketAddr, v: u8) {
        self.refusals.frame(&self.name, &self.cfg.protocol, from, v);
    }

    /// Addresses of the live members other than this node (for snapshots).
    pub(crate) fn live_peers(&self) -> Vec<(String, SocketAddr)> {
        let mut v: Vec<_> = self
            .members
            .values()
            .filter(|n| n.name != self.name && !n.status.is_gone())
            .map(|n| (n.name.clone(), n.addr))
            .collect();
        v.sort();
        v
    }

    pub(crate) fn event_ltime(&self) -> u64 {
        self.ltime
    }

    /// Restores the event clock (from a snapshot), so events seen before a
    /// restart are not delivered again.
    pub(crate) fn restore_event_ltime(&mut self, ltime: u64) {
        self.ltime = self.ltime.max(ltime);
    }

    /// Publishes new tags with a higher incarnation.
    pub(crate) fn set_tags(&mut self, mut tags: BTreeMap<String, String>) -> Result<(), TagsError> {
        self.cfg.protocol.advertise(&mut tags);
        check_tags(&tags)?;
        let me = self.me_mut();
        me.tags = tags;
        me.incarnation += 1;
        let msg = Msg::Alive(me.alive_msg());
        let name = self.name.clone();
        self.mark_changed();
        self.broadcast(&name, msg, None);
        Ok(())
    }

    /// Marks the local node Left and broadcasts the intent. Returns true if
    /// the leave is already complete (no one to tell, or done before).
    pub(crate) fn leave(&mut self, now: Instant) -> bool {
        if self.leave != LeaveState::Member {
            return self.leave == LeaveState::Left;
        }
        self.notify_seq += 1;
        let id = self.notify_seq;
        let others = self.num_live() > 1;
        let me = self.me_mut();
        me.status = MemberStatus::Left;
        me.state_change = now;
        let d = pb::Dead {
            prune: false,
            incarnation: me.incarnation,
            node: me.name.clone(),
            from: me.name.clone(),
        };
        self.mark_changed();
        self.probe = None;
        let name = self.name.clone();
        self.broadcast(&name, Msg::Dead(d), Some(id));
        self.leave = if others {
            LeaveState::Leaving(id)
        } else {
            LeaveState::Left
        };
        // Gossip the intent now rather than at the next round.
        if others {
            self.gossip(now);
        }
        self.leave == LeaveState::Left
    }

    /// Sends a user event; it is delivered locally as well.
    pub(crate) fn user_event(
        &mut self,
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<(), GossipError> {
        let size = name.len() + payload.len();
        if size > self.cfg.max_user_event_size {
            return Err(GossipError::EventTooLarge {
                size,
                limit: self.cfg.max_user_event_size,
            });
        }
        let e = pb::UserEvent {
            ltime: self.ltime,
            name,
            payload,
            coalesce,
        };
        self.ltime += 1;
        self.on_user_event(e);
        Ok(())
    }

    fn on_user_event(&mut self, e: pb::UserEvent) {
        // Lamport clock: witness the sender's time.
        self.ltime = self.ltime.max(e.ltime + 1);
        let window = self.cfg.recent_user_events as u64;
        if self.ltime > window && e.ltime < self.ltime - window {
            return; // Too old to de-duplicate reliably.
        }
        let key = (e.ltime, e.name.clone(), e.payload.clone());
        if !self.seen_events.insert(key) {
            return;
        }
        self.recent_events.push_back(e.clone());
        while self.recent_events.len() > self.cfg.recent_user_events {
            if let Some(old) = self.recent_events.pop_front() {
                self.seen_events.remove(&(old.ltime, old.name, old.payload));
            }
        }
        self.queue.push(
            BroadcastKey::Unique,
            Msg::UserEvent(e.clone()).encode_part(),
            None,
        );
        self.news = true;
        if e.coalesce {
            if self.coalesced.len() >= MAX_COALESCED && !self.coalesced.contains_key(&e.name) {
                // Forget names not seen within the de-duplication window.
                let horizon = self.ltime.saturating_sub(window);
                self.coalesced.retain(|_, t| *t >= horizon);
            }
            let newest = self.coalesced.entry(e.name.clone()).or_insert(0);
            if *newest > e.ltime {
                return; // A newer event of this name was already delivered.
            }
            *newest = e.ltime;
        }
        self.stats.user_events += 1;
        self.out.push(Output::User(UserEvent {
            ltime: e.ltime,
            name: e.name,
            payload: e.payload,
            coalesce: e.coalesce,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i as u8], 7946))
    }

    fn cfg(name: &str) -> GossipConfig {
        GossipConfig {
            push_pull_interval: Duration::ZERO,
            reconnect_interval: Duration::ZERO,
            ..GossipConfig::local(name)
        }
    }

    fn core(name: &str, i: usize) -> Core {
        Core::new(cfg(name), addr(i), Instant::now())
    }

    fn alive(name: &str, i: usize, inc: u64) -> pb::Alive {
        pb::Alive {
            incarnation: inc,
            node: name.into(),
            addr: addr(i).to_string(),
            tags: Default::default(),
        }
    }

    fn events(c: &mut Core) -> Vec<(MemberEventKind, String)> {
        c.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some((e.kind, e.member.name)),
                _ => None,
            })
            .collect()
    }

    fn sends(c: &mut Core) -> Vec<(SocketAddr, Vec<Msg>)> {
        c.take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { to, packet } => {
                    Some((to, codec::decode_datagram(&packet, None).ok()?.msgs))
                }
                _ => None,
            })
            .collect()
    }

    fn status(c: &Core, n: &str) -> Option<MemberStatus> {
        c.members.get(n).map(|m| m.status)
    }

    #[test]
    fn alive_rules() {
        let mut c = core("a", 1);
        let now = Instant::now();
        c.on_alive(now, alive("b", 2, 5));
        assert_eq!(events(&mut c), vec![(MemberEventKind::Join, "b".into())]);
        // Our own alive (queued at start) and the news about b.
        assert_eq!(c.queue.len(), 2, "news is re-broadcast");
        // Same or older incarnation: ignored.
        let mut stale = alive("b", 2, 5);
        stale.tags.insert("x".into(), "y".into());
        c.on_alive(now, stale.clone());
        c.on_alive(now, alive("b", 2, 4));
        assert!(events(&mut c).is_empty());
        // Newer incarnation with new tags: Updated.
        stale.incarnation = 6;
        c.on_alive(now, stale);
        assert_eq!(events(&mut c), vec![(MemberEventKind::Updated, "b".into())]);
        assert_eq!(c.members["b"].tags["x"], "y");
        // Garbage address: counted, ignored.
        let mut bad = alive("z", 3, 1);
        bad.addr = "nope".into();
        c.on_alive(now, bad);
        assert_eq!(status(&c, "z"), None);
        assert_eq!(c.stats.bad_packets, 1);
    }

    #[test]
    fn suspicion_times_out_into_failure() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        for (i, n) in ["b", "c", "d"].iter().enumerate() {
            c.on_alive(t0, alive(n, i + 2, 1));
        }
        c.take_outputs();
        // Older incarnation: ignored.
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 0,
                node: "b".into(),
                from: "c".into(),
            },
        );
        assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "b".into(),
                from: "c".into(),
            },
        );
        assert_eq!(status(&c, "b"), Some(MemberStatus::Suspect));
        assert_eq!(events(&mut c), vec![(MemberEventKind::Suspect, "b".into())]);
        assert_eq!(c.stats.suspicions, 1);
        // n = 4, mult 3: k = 1 but n - 2 = 2 >= 1, so confirmations count.
        let s = &c.suspicions["b"];
        let min = suspicion_timeout(3, 4, Duration::from_secs(1));
        assert_eq!(s.deadline, t0 + min * c.cfg.suspicion_max_timeout_mult);
        // One independent confirmation brings it down to the minimum.
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "b".into(),
                from: "d".into(),
            },
        );
        assert_eq!(c.suspicions["b"].deadline, t0 + min);
        c.tick(t0 + min - Duration::from_millis(1));
        assert_eq!(status(&c, "b"), Some(MemberStatus::Suspect));
        c.tick(t0 + min);
        assert_eq!(status(&c, "b"), Some(MemberStatus::Dead));
        let ev = events(&mut c);
        assert!(
            ev.contains(&(MemberEventKind::Failed, "b".into())),
            "{ev:?}"
        );
        // A later alive at a higher incarnation brings it back.
        c.on_alive(t0 + min, alive("b", 2, 2));
        assert_eq!(
            events(&mut c),
            vec![(MemberEventKind::AliveAgain, "b".into())]
        );
    }

    #[test]
    fn refuted_suspicion_is_cleared() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 1));
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "b".into(),
                from: "x".into(),
            },
        );
        c.on_alive(t0, alive("b", 2, 2));
        assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
        assert!(c.suspicions.is_empty());
        c.tick(t0 + Duration::from_secs(3600));
        assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
    }

    #[test]
    fn node_refutes_suspicion_and_death_of_itself() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        assert_eq!(c.me().incarnation, 1);
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "a".into(),
                from: "b".into(),
            },
        );
        assert_eq!(c.me().incarnation, 2);
        assert_eq!(c.me().status, MemberStatus::Alive);
        assert_eq!(c.stats.refutations, 1);
        assert_eq!(c.awareness.score(), 1, "being suspected hurts local health");
        // A stale suspicion (older incarnation) is ignored.
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "a".into(),
                from: "b".into(),
            },
        );
        assert_eq!(c.me().incarnation, 2);
        c.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 7,
                node: "a".into(),
                from: "b".into(),
            },
        );
        assert_eq!(c.me().incarnation, 8);
        // The refutation goes out with the next packet.
        c.on_alive(t0, alive("b", 2, 1));
        c.take_outputs();
        c.on_ping(
            Instant::now(),
            addr(2),
            pb::Ping {
                seq: 1,
                target: "a".into(),
                ..Default::default()
            },
        );
        let out = sends(&mut c);
        let carried: Vec<_> = out[0]
            .1
            .iter()
            .filter_map(|m| match m {
                Msg::Alive(a) if a.node == "a" => Some(a.incarnation),
                _ => None,
            })
            .collect();
        assert_eq!(carried, vec![8]);
        // An alive about us with a different address at our incarnation is
        // refuted too (a stale or conflicting view).
        let mut other = alive("a", 9, 8);
        other.addr = addr(9).to_string();
        c.on_alive(t0, other);
        assert_eq!(c.me().incarnation, 9);
    }

    #[test]
    fn leave_is_not_failure() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 3));
        c.take_outputs();
        c.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 3,
                node: "b".into(),
                from: "b".into(),
            },
        );
        assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
        assert_eq!(events(&mut c), vec![(MemberEventKind::Leave, "b".into())]);
        // Suspect/dead after leaving change nothing.
        c.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 3,
                node: "b".into(),
                from: "c".into(),
            },
        );
        c.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 3,
                node: "b".into(),
                from: "c".into(),
            },
        );
        assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
        assert!(events(&mut c).is_empty());
        // Reaped after reap_left_after.
        c.tick(t0 + c.cfg.reap_left_after + REAP_CHECK);
        assert_eq!(status(&c, "b"), None);
        assert!(c.members.contains_key("a"));
    }

    #[test]
    fn force_leave_turns_failed_into_left() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 3));
        assert!(!c.remove_failed(t0, "b", false), "only failed members");
        c.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 3,
                node: "b".into(),
                from: "c".into(),
            },
        );
        c.take_outputs();
        assert!(c.remove_failed(t0, "b", false));
        assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
        assert_eq!(events(&mut c), vec![(MemberEventKind::Leave, "b".into())]);
        // Others apply it the same way from the broadcast.
        let mut d = core("d", 4);
        d.on_alive(t0, alive("b", 2, 3));
        d.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 3,
                node: "b".into(),
                from: "c".into(),
            },
        );
        d.on_dead(
            t0,
            pb::Dead {
                prune: false,
                incarnation: 3,
                node: "b".into(),
                from: "b".into(),
            },
        );
        assert_eq!(status(&d, "b"), Some(MemberStatus::Left));
        assert!(!c.remove_failed(t0, "nobody", false));
    }

    #[test]
    fn force_leave_with_prune_forgets_the_member_everywhere() {
        let t0 = Instant::now();
        let dead = |from: &str| pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: from.into(),
        };
        let mut c = core("a", 1);
        c.on_alive(t0, alive("b", 2, 3));
        assert!(!c.remove_failed(t0, "b", true), "an alive member stays");
        c.on_dead(t0, dead("c"));
        c.take_outputs();
        assert!(c.remove_failed(t0, "b", true));
        assert_eq!(status(&c, "b"), None);
        // A node that saw b fail forgets it from the broadcast; one that
        // already had it as left (a plain force-leave) forgets it too.
        let prune = pb::Dead {
            prune: true,
            ..dead("b")
        };
        let mut d = core("d", 4);
        d.on_alive(t0, alive("b", 2, 3));
        d.on_dead(t0, dead("c"));
        d.on_dead(t0, prune.clone());
        assert_eq!(status(&d, "b"), None);
        let mut e = core("e", 5);
        e.on_alive(t0, alive("b", 2, 3));
        e.on_dead(t0, dead("c"));
        e.on_dead(t0, dead("b"));
        assert_eq!(status(&e, "b"), Some(MemberStatus::Left));
        e.on_dead(t0, prune.clone());
        assert_eq!(status(&e, "b"), None);
        // A left member can be pruned from the command too.
        let mut f = core("f", 6);
        f.on_alive(t0, alive("b", 2, 3));
        f.on_dead(t0, dead("b"));
        assert!(!f.remove_failed(t0, "b", false));
        assert!(f.remove_failed(t0, "b", true));
        assert_eq!(status(&f, "b"), None);
    }

    #[test]
    fn probe_ack_and_failed_probe_with_nacks() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 1));
        c.on_alive(t0, alive("c", 3, 1));
        c.take_outputs();
        let t = c.next_probe;
        c.tick(t);
        let out = sends(&mut c);
        let (to, msgs) = &out[0];
        let Msg::Ping(p) = &msgs[0] else {
            panic!("expected a ping, got {msgs:?}")
        };
        let target = p.target.clone();
        assert_eq!(*to, c.members[&target].addr);
        c.on_ack(
            t + Duration::from_millis(3),
            pb::Ack {
                seq: p.seq,
                checksum: 0,
            },
        );
        assert!(c.probe.is_none());
        assert_eq!(c.stats.rtt.count, 1);
        assert_eq!(c.stats.rtt.last, Duration::from_millis(3));

        // Next probe: no ack. After the probe timeout an indirect ping goes
        // to the other member; no nack either, so at the end of the interval
        // the target is suspect and local health drops by one.
        let t = c.next_probe;
        c.tick(t);
        let out = sends(&mut c);
        let Msg::Ping(p) = &out[0].1[0] else { panic!() };
        let (seq, target) = (p.seq, p.target.clone());
        let helper = if target == "b" { "c" } else { "b" };
        c.tick(t + c.cfg.probe_timeout);
        let out = sends(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, c.members[helper].addr);
        assert!(
            matches!(&out[0].1[0], Msg::IndirectPing(ip) if ip.seq == seq && ip.nack && ip.target == target)
        );
        c.tick(t + c.cfg.probe_interval);
        assert_eq!(status(&c, &target), Some(MemberStatus::Suspect));
        assert_eq!(c.awareness.score(), 1);
        assert_eq!(c.stats.probe_failures, 1);

        // With the nack, the fault is the target's, not ours: no health change.
        let mut c2 = core("a", 1);
        c2.on_alive(t0, alive("b", 2, 1));
        c2.on_alive(t0, alive("c", 3, 1));
        c2.take_outputs();
        let t = c2.next_probe;
        c2.tick(t);
        let out = sends(&mut c2);
        let Msg::Ping(p) = &out[0].1[0] else { panic!() };
        let seq = p.seq;
        c2.tick(t + c2.cfg.probe_timeout);
        let stream: Vec<_> = c2
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::StreamPing { ping, .. } => Some(ping.seq),
                _ => None,
            })
            .collect();
        assert_eq!(stream, vec![seq], "a fallback stream probe goes along");
        c2.handle_msg(t, addr(9), Msg::Nack(pb::Nack { seq }));
        assert!(c2.probe.is_some(), "waits for the stream probe");
        c2.stream_ping_done(t, seq, false);
        // The only helper said no and the stream failed: the probe is over
        // at once, and the fault is the target's, not ours: no health change.
        assert!(c2.probe.is_none());
        assert!(c2
            .members
            .values()
            .any(|m| m.status == MemberStatus::Suspect));
        assert_eq!(c2.awareness.score(), 0);
        assert_eq!(c2.stats.nacks_received, 1);
    }

    #[test]
    fn stream_answer_prevents_suspicion() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 1));
        c.take_outputs();
        let t = c.next_probe;
        c.tick(t);
        c.take_outputs();
        let seq = c.probe.as_ref().map(|p| p.seq).unwrap();
        c.tick(t + c.cfg.probe_timeout);
        c.stream_ping_done(t, seq + 1, true);
        assert!(c.probe.is_some(), "a result for another probe is ignored");
        c.stream_ping_done(t, seq, true);
        assert!(c.probe.is_none());
        c.tick(t + c.cfg.probe_interval);
        assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
        assert_eq!(c.stats.stream_probe_acks, 1);
        // No helper existed, so no nacks were expected: health unchanged.
        assert_eq!(c.awareness.score(), 0);
    }

    #[test]
    fn differing_checksum_in_ack_triggers_push_pull_once_quiet() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 1));
        let probe = |c: &mut Core, t: Instant| {
            c.tick(t);
            let out = sends(c);
            match &out[0].1[0] {
                Msg::Ping(p) => p.seq,
                m => panic!("expected a ping, got {m:?}"),
            }
        };
        // News still queued: no sync, gossip will deliver it.
        let t = c.next_probe;
        let seq = probe(&mut c, t);
        c.queue.push(
            BroadcastKey::Node("zz".into()),
            Bytes::from_static(b"x"),
            None,
        );
        c.on_ack(
            t,
            pb::Ack {
                seq,
                checksum: 12345,
            },
        );
        assert!(!c
            .take_outputs()
            .iter()
            .any(|o| matches!(o, Output::PushPull { .. })));
        // Nothing left to gossip: a differing checksum starts a push/pull.
        c.queue = BroadcastQueue::new(16);
        let t = c.next_probe;
        let seq = probe(&mut c, t);
        let mine = c.checksum();
        c.on_ack(
            t,
            pb::Ack {
                seq,
                checksum: mine,
            },
        );
        assert!(
            c.take_outputs().is_empty(),
            "equal checksums: nothing to do"
        );
        let t = c.next_probe;
        let seq = probe(&mut c, t);
        c.on_ack(
            t,
            pb::Ack {
                seq,
                checksum: mine ^ 1,
            },
        );
        let pp: Vec<_> = c
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::PushPull { to, join, .. } => Some((to, join)),
                _ => None,
            })
            .collect();
        assert_eq!(pp, vec![(addr(2), false)]);
        assert_eq!(c.stats.checksum_syncs, 1);
        // The cache follows changes of the table.
        let before = c.checksum();
        c.on_alive(t, alive("b", 2, 2));
        assert_ne!(c.checksum(), before);
        assert_eq!(c.checksum(), c.compute_checksum());
    }

    #[test]
    fn awareness_slows_probing() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        c.on_alive(t0, alive("b", 2, 1));
        c.awareness.apply(3);
        let t = c.next_probe;
        c.tick(t);
        assert_eq!(c.next_probe, t + c.cfg.probe_interval * 4);
        assert_eq!(
            c.probe.as_ref().map(|p| p.timeout_at),
            Some(t + c.cfg.probe_timeout * 4)
        );
    }

    #[test]
    fn relays_indirect_probe_with_ack_or_nack() {
        let mut c = core("c", 3);
        let t0 = Instant::now();
        let req = pb::IndirectPing {
            seq: 77,
            target: "b".into(),
            target_addr: addr(2).to_string(),
            nack: true,
            source: "a".into(),
            source_addr: addr(1).to_string(),
        };
        c.handle_msg(t0, addr(1), Msg::IndirectPing(req.clone()));
        let out = sends(&mut c);
        assert_eq!(out[0].0, addr(2));
        let Msg::Ping(p) = &out[0].1[0] else { panic!() };
        c.on_ack(
            t0,
            pb::Ack {
                seq: p.seq,
                checksum: 0,
            },
        );
        let out = sends(&mut c);
        assert_eq!(out[0].0, addr(1));
        assert!(matches!(out[0].1[0], Msg::Ack(pb::Ack { seq: 77, .. })));
        // No answer from the target: a nack after the probe timeout.
        c.handle_msg(t0, addr(1), Msg::IndirectPing(req));
        c.take_outputs();
        c.tick(t0 + c.cfg.probe_timeout);
        let out = sends(&mut c);
        assert!(out
            .iter()
            .any(|(to, m)| *to == addr(1) && matches!(m[0], Msg::Nack(pb::Nack { seq: 77 }))));
    }

    #[test]
    fn misdirected_ping_is_dropped() {
        let mut c = core("a", 1);
        c.on_ping(
            Instant::now(),
            addr(2),
            pb::Ping {
                seq: 1,
                target: "someone-else".into(),
                ..Default::default()
            },
        );
        assert!(sends(&mut c).is_empty());
        assert_eq!(c.stats.bad_packets, 1);
    }

    #[test]
    fn piggyback_respects_packet_size() {
        let mut c = core("a", 1);
        let t0 = Instant::now();
        for i in 0..200 {
            let mut a = alive(&format!("node-{i:03}"), 2 + i % 200, 1);
            a.tags.insert("ep.raft".into(), "10.0.0.1:7000".into());
            c.on_alive(t0, a);
        }
        c.take_outputs();
        c.on_ping(
            Instant::now(),
            addr(2),
            pb::Ping {
                seq: 1,
                target: "a".into(),
                ..Default::default()
            },
        );
        c.tick(c.next_gossip);
        let outs = c.take_outputs();
        let mut packets = 0;
        for o in outs {
            if let Output::Send { packet, .. } = o {
                packets += 1;
                assert!(
                    packet.len() <= c.cfg.packet_size,
                    "{} > {}",
                    packet.len(),
                    c.cfg.packet_size
                );
                assert!(packet.len() > c.cfg.packet_size / 2, "packets are filled");
            }
        }
        assert!(packets >= 2);
    }

    #[test]
    fn checksum_is_order_independent_and_sensitive() {
        let a = [
            ("a", MemberStatus::Alive, 1),
            ("b", MemberStatus::Suspect, 4),
        ];
        let b = [
            ("b", MemberStatus::Suspect, 4),
            ("a", MemberStatus::Alive, 1),
        ];
        assert_eq!(
            membership_checksum(a.into_iter()),
            membership_checksum(b.into_iter())
        );
        let c = [
            ("a", MemberStatus::Alive, 1),
            ("b", MemberStatus::Suspect, 5),
        ];
        assert_ne!(
            membership_checksum(a.into_iter()),
            membership_checksum(c.into_iter())
        );
        let d = [("a", MemberStatus::Alive, 1), ("b", MemberStatus::Dead, 4)];
        assert_ne!(
            membership_checksum(a.into_iter()),
            membership_checksum(d.into_iter())
        );
        // Name boundaries matter: ("ab","c") != ("a","bc").
        let e = [
            ("ab", MemberStatus::Alive, 1),
            ("c", MemberStatus::Alive, 1),
        ];
        let f = [
            ("a", MemberStatus::Alive, 1),
            ("bc", MemberStatus::Alive, 1),
        ];
        assert_ne!(
            membership_checksum(e.into_iter()),
            membership_checksum(f.into_iter())
        );
    }

    #[test]
    fn merge_treats_remote_death_as_suspicion() {
        let mut a = core("a", 1);
        let mut b = core("b", 2);
        let t0 = Instant::now();
        a.on_alive(t0, alive("c", 3, 1));
        b.on_alive(t0, alive("c", 3, 1));
        b.on_suspect(
            t0,
            pb::Suspect {
                incarnation: 1,
                node: "c".into(),
                from: "b".into(),
            },
        );
        b.tick(t0 + Duration::from_secs(3600));
        assert_eq!(status(&b, "c"), Some(MemberStatus::Dead));
        assert_ne!(a.checksum(), b.checksum());
        a.merge_remote(t0, b.local_state());
        assert_eq!(status(&a, "b"), Some(MemberStatus::Alive));
        assert_eq!(status(&a, "c"), Some(MemberStatus::Suspect));
        // A remote view saying *we* are dead makes us refute.
        let mut st = b.local_state();
        st.nodes.push(pb::NodeRecord {
            name: "a".into(),
            addr: addr(1).to_string(),
            incarnation: 1,
            status: pb::NodeStatus::Dead as i32,
            tags: Default::default(),
        });
        a.merge_remote(t0, st);
        assert_eq!(a.me().incarnation, 2);
    }

    #[test]
    fn user_events_dedup_and_clock() {
        let mut a = core("a", 1);
        a.user_event("deploy".into(), b"v1".to_vec(), false)
            .unwrap();
        let e = pb::UserEvent {
            ltime: 10,
            name: "x".into(),
            payload: vec![1],
            coalesce: false,
        };
        a.on_user_event(e.clone());
        a.on_user_event(e);
        let users: Vec<_> = a
            .take_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::User(u) => Some((u.ltime, u.name)),
                _ => None,
            })
            .collect();
        assert_eq!(
            users,
            vec![(0, "deploy".to_string()), (10, "x".to_string())]
        );
        assert_eq!(a.ltime, 11);
        assert!(matches!(
            a.user_event("big".into(), vec![0; 1000], false),
            Err(GossipError::EventTooLarge { .. })
        ));
        // Coalescing: an older event of the same name after a newer one is
        // not delivered.
        a.on_user_event(pb::UserEvent {
            ltime: 20,
            name: "c".into(),
            payload: vec![2],
            coalesce: true,
        });
        a.on_user_event(pb::UserEvent {
            ltime: 15,
            name: "c".into(),
            payload: vec![1],
            coalesce: true,
        });
        let n = a
            .take_outputs()
            .into_iter()
            .filter(|o| matches!(o, Output::User(_)))
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn set_tags_bumps_incarnation_and_checks_size() {
        let mut a = core("a", 1);
        let mut t = BTreeMap::new();
        t.insert("ep.kv".to_string(), "10.0.0.1:9000".to_string());
        a.set_tags(t).unwrap();
        assert_eq!(a.me().incarnation, 2);
        assert_eq!(a.queue.len(), 1);
        let mut big = BTreeMap::new();
        big.insert("x".to_string(), "y".repeat(600));
        assert!(a.set_tags(big).is_err());
        assert_eq!(a.me().incarnation, 2);
    }

    /// A tiny deterministic simulation: cores exchange datagrams instantly,
    /// push/pulls are applied synchronously, links can be cut.
    struct Sim {
        nodes: Vec<Core>,
        now: Instant,
        cut: BTreeSet<usize>,
    }

    impl Sim {
        fn new(n: usize) -> Sim {
            let now = Instant::now();
            // Anti-entropy on: gossip alone with retransmit_mult 2 may miss
            // a node, push/pull repairs it.
            let nodes = (0..n)
                .map(|i| {
                    let c = GossipConfig {
                        push_pull_interval: Duration::from_secs(1),
                        ..cfg(&format!("n{i}"))
                    };
                    Core::new(c, addr(i + 1), now)
                })
                .collect();
            Sim {
                nodes,
                now,
                cut: BTreeSet::new(),
            }
        }

        fn idx(&self, a: SocketAddr) -> Option<usize> {
            self.nodes.iter().position(|c| c.me().addr == a)
        }

        fn deliver(&mut self) {
            for _ in 0..1000 {
                let mut any = false;
                for i in 0..self.nodes.len() {
                    for o in self.nodes[i].take_outputs() {
                        any = true;
                        match o {
                            Output::Send { to, packet } => {
                                let Some(j) = self.idx(to) else { continue };
                                if self.cut.contains(&i) || self.cut.contains(&j) {
                                    continue;
                                }
                                let from = self.nodes[i].me().addr;
                                let now = self.now;
                                self.nodes[j].handle_datagram(now, from, &packet);
                            }
                            Output::PushPull { to, .. } => {
                                let Some(j) = self.idx(to) else { continue };
                                if self.cut.contains(&i) || self.cut.contains(&j) {
                                    continue;
                                }
                                let (si, sj) =
                                    (self.nodes[i].local_state(), self.nodes[j].local_state());
                                let now = self.now;
                                self.nodes[i].merge_remote(now, sj);
                                self.nodes[j].merge_remote(now, si);
                            }
                            _ => {}
                        }
                    }
                }
                if !any {
                    return;
                }
            }
        }

        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += Duration::from_millis(10);
                for i in 0..self.nodes.len() {
                    if self.nodes[i].next_deadline() <= self.now {
                        let now = self.now;
                        self.nodes[i].tick(now);
                    }
                }
                self.deliver();
            }
        }

        fn all_see(&self, name: &str, s: MemberStatus, except: Option<usize>) -> bool {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != except)
                .all(|(_, c)| status(c, name) == Some(s))
        }
    }

    #[test]
    fn sim_join_converges_and_detects_failure() {
        let mut sim = Sim::new(8);
        let seed = sim.nodes[0].me().addr;
        for i in 1..8 {
            sim.nodes[i].join(&[seed], 1);
            sim.deliver();
        }
        sim.run(Duration::from_secs(3));
        for i in 0..8 {
            let view: Vec<_> = sim
                .nodes
                .iter()
                .map(|c| status(c, &format!("n{i}")))
                .collect();
            assert!(
                sim.all_see(&format!("n{i}"), MemberStatus::Alive, None),
                "n{i} not alive everywhere: {view:?}"
            );
        }
        sim.cut.insert(3);
        sim.run(Duration::from_secs(30));
        assert!(sim.all_see("n3", MemberStatus::Dead, Some(3)));
        // Nobody else was falsely declared dead.
        for i in (0..8).filter(|&i| i != 3) {
            assert!(sim.all_see(&format!("n{i}"), MemberStatus::Alive, Some(3)));
        }
        // Graceful leave of n5 is seen as Left, not Dead.
        let now = sim.now;
        sim.nodes[5].leave(now);
        sim.run(Duration::from_secs(2));
        assert!(sim.nodes[5].has_left());
        assert!(sim.all_see("n5", MemberStatus::Left, Some(3)));
    }
}
