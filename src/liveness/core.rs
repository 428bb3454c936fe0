//! The checker's state machine: targets, probe rounds, deadlines, counting.
//!
//! No I/O and no clock of its own: the caller passes `now` into every method,
//! hands it received datagrams ([`CheckerCore::on_packet`]), asks it for the
//! probes to send ([`CheckerCore::next_probe`]), and wakes it at
//! [`CheckerCore::next_wakeup`] ([`CheckerCore::on_tick`]). Status changes and
//! events queue up inside and are drained with [`CheckerCore::pop_change`] and
//! [`CheckerCore::pop_event`].
//!
//! Steady state allocates nothing: targets live in a slab (`Vec<Option<_>>`
//! plus a free list) with `addr → slot` and `id → slot` maps, deadlines in a
//! binary heap that keeps its capacity, and probes are encoded into a buffer
//! the caller owns. Allocation happens only on add/remove and on status
//! changes (the event carries the id).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::config::LivenessConfig;
use super::error::LivenessError;
use super::wire::{Packet, PacketKind, PACKET_LEN};

/// What the checker currently believes about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetStatus {
    /// Added, and has neither answered nor missed `retries` probes yet.
    /// Treat it as alive: no event is emitted when it first answers.
    Unknown,
    /// Answered its most recent probes in time.
    Alive,
    /// Missed `retries` consecutive probes.
    Dead,
}

/// An event for the consumer of a checker.
///
/// Event rules: a target starts [`TargetStatus::Unknown`]. `Dead(id)` is
/// emitted when it misses `retries` consecutive probes, whether it was alive
/// or had never answered (so a node that never came up is reported).
/// `Alive(id)` is emitted only when a dead target answers again; the first
/// answer of a new target changes the `watch` state but emits nothing, so
/// adding many healthy targets produces no event spam.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LivenessEvent {
    /// The target stopped answering.
    Dead(String),
    /// A dead target answers again.
    Alive(String),
}

impl LivenessEvent {
    /// The target id the event is about.
    pub fn id(&self) -> &str {
        match self {
            LivenessEvent::Dead(id) | LivenessEvent::Alive(id) => id,
        }
    }
}

/// A change of one target's status, for the `watch` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The target id.
    pub id: String,
    /// The new status, or `None` when the target was removed.
    pub status: Option<TargetStatus>,
}

/// Per-target figures, as returned by a targets query.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetInfo {
    /// The target id.
    pub id: String,
    /// Where its responder listens.
    pub addr: SocketAddr,
    /// Current status.
    pub status: TargetStatus,
    /// Consecutive missed probes so far.
    pub consecutive_misses: u32,
    /// Round-trip time of the most recent reply to a current probe.
    pub last_rtt: Option<Duration>,
    /// Moving average (EWMA) of the round-trip time.
    pub avg_rtt: Option<Duration>,
    /// Reply deadline the next probe gets.
    pub deadline: Duration,
    /// When the last fresh reply arrived.
    pub last_reply: Option<Instant>,
}

/// Counters of a checker. All only grow, except when noted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckerStats {
    /// Probes handed out for sending.
    pub probes_sent: u64,
    /// Sends the socket refused.
    pub send_errors: u64,
    /// Receive errors from the socket (counted, then ignored).
    pub recv_errors: u64,
    /// Replies that arrived before their deadline.
    pub replies: u64,
    /// Replies after their deadline, to an older probe, or duplicates.
    pub late_replies: u64,
    /// Probes that got no reply by their deadline (or a late one).
    pub misses: u64,
    /// Datagrams that do not decode, are not replies, or do not match the
    /// probe they claim to answer.
    pub bad_packets: u64,
    /// Well-formed replies carrying another checker instance's nonce.
    pub foreign_nonce: u64,
    /// Well-formed replies from an address no target has.
    pub unknown_source: u64,
    /// Events dropped because the event channel was full or closed.
    pub events_dropped: u64,
    /// Rounds that were due while the previous one was still being sent.
    pub round_overruns: u64,
    /// Targets currently checked (not a counter).
    pub targets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeState {
    Pending,
    Answered,
    Missed,
    MissedThenAnswered,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u64,
    timestamp_micros: u64,
    sent_at: Instant,
    deadline_at: Instant,
    state: ProbeState,
}

#[derive(Debug)]
struct Target {
    id: String,
    addr: SocketAddr,
    status: TargetStatus,
    misses: u32,
    probe: Option<Probe>,
    last_rtt: Option<Duration>,
    avg_rtt_secs: Option<f64>,
    last_reply: Option<Instant>,
}

impl Target {
    fn avg_rtt(&self) -> Option<Duration> {
        self.avg_rtt_secs.map(Duration::from_secs_f64)
    }
}

/// The checker's pure state machine (see the module docs).
#[derive(Debug)]
pub struct CheckerCore {
    config: LivenessConfig,
    nonce: u64,
    epoch: Instant,
    next_seq: u64,
    next_round: Instant,
    /// Next slot to probe while a round is being sent.
    round_cursor: Option<usize>,
    /// Probes left in the current batch, and when the next batch may start.
    batch_left: usize,
    batch_gate: Instant,
    slots: Vec<Option<Target>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_id: HashMap<String, usize>,
    /// (deadline, seq, slot). Entries of answered or removed probes stay
    /// until due and are then skipped (their seq no longer matches).
    deadlines: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    changes: VecDeque<StatusChange>,
    events: VecDeque<LivenessEvent>,
    stats: CheckerStats,
}

impl CheckerCore {
    /// A checker with no targets. `nonce` identifies this instance on the
    /// wire; `now` is its epoch (probe timestamps count from it) and the time
    /// of the first round.
    pub fn new(config: LivenessConfig, nonce: u64, now: Instant) -> Self {
        CheckerCore {
            config,
            nonce,
            epoch: now,
            next_seq: 1,
            next_round: now,
            round_cursor: None,
            batch_left: 0,
            batch_gate: now,
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            deadlines: BinaryHeap::new(),
            changes: VecDeque::new(),
            events: VecDeque::new(),
            stats: CheckerStats::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// This instance's wire nonce.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Starts checking `id` at `addr`. Returns `Ok(false)` if exactly this
    /// target is already checked (nothing changes). Re-adding an id with a
    /// new address restarts it as a new target (status unknown).
    pub fn add(&mut self, id: &str, addr: SocketAddr) -> Result<bool, LivenessError> {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(LivenessError::InvalidAddress {
                id: id.to_owned(),
                addr,
            });
        }
        if let Some(&idx) = self.by_addr.get(&addr) {
            if let Some(t) = &self.slots[idx] {
                if t.id == id {
                    return Ok(false);
                }
                return Err(LivenessError::AddressInUse {
                    addr,
                    existing: t.id.clone(),
                });
            }
        }
        // Same id at another address: a new target.
        self.remove(id);
        let target = Target {
            id: id.to_owned(),
            addr,
            status: TargetStatus::Unknown,
            misses: 0,
            probe: None,
            last_rtt: None,
            avg_rtt_secs: None,
            last_reply: None,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx] = Some(target);
                idx
            }
            None => {
                self.slots.push(Some(target));
                self.slots.len() - 1
            }
        };
        self.by_addr.insert(addr, idx);
        self.by_id.insert(id.to_owned(), idx);
        self.changes.push_back(StatusChange {
            id: id.to_owned(),
            status: Some(TargetStatus::Unknown),
        });
        Ok(true)
    }

    /// Stops checking `id`. Its pending probe and any later replies are
    /// ignored (replies count as `unknown_source`). Returns whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(idx) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(t) = self.slots[idx].take() {
            self.by_addr.remove(&t.addr);
            self.changes.push_back(StatusChange {
                id: t.id,
                status: None,
            });
        }
        self.free.push(idx);
        true
    }

    /// Stops checking every target. Returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.by_id.len();
        for t in self.slots.drain(..).flatten() {
            self.changes.push_back(StatusChange {
                id: t.id,
                status: None,
            });
        }
        self.free.clear();
        self.by_addr.clear();
        self.by_id.clear();
        self.deadlines.clear();
        self.round_cursor = None;
        n
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Current status of `id`.
    pub fn status(&self, id: &str) -> Option<TargetStatus> {
        let idx = *self.by_id.get(id)?;
        self.slots[idx].as_ref().map(|t| t.status)
    }

    /// Figures for every target, in slot order.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.slots
            .iter()
            .flatten()
            .map(|t| TargetInfo {
                id: t.id.clone(),
                addr: t.addr,
                status: t.status,
                consecutive_misses: t.misses,
                last_rtt: t.last_rtt,
                avg_rtt: t.avg_rtt(),
                deadline: self.config.deadline_for(t.avg_rtt()),
                last_reply: t.last_reply,
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> CheckerStats {
        CheckerStats {
            targets: self.by_id.len() as u64,
            ..self.stats
        }
    }

    /// When [`CheckerCore::on_tick`] must run next: the next round or the
    /// earliest pending deadline.
    pub fn next_wakeup(&self) -> Instant {
        let mut at = self.next_round;
        if let Some(Reverse((d, _, _))) = self.deadlines.peek() {
            at = at.min(*d);
        }
        if self.round_cursor.is_some() && self.batch_left == 0 {
            at = at.min(self.batch_gate);
        }
        at
    }

    /// Advances time: counts a miss for every probe whose deadline is at or
    /// before `now` without a reply, and starts a probe round when one is due
    /// (then fetch the probes with [`CheckerCore::next_probe`]).
    pub fn on_tick(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, seq, idx))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let pending = matches!(
                self.slots.get(idx),
                Some(Some(Target { probe: Some(p), .. }))
                    if p.seq == seq && p.state == ProbeState::Pending
            );
            if pending {
                self.set_probe_state(idx, ProbeState::Missed);
                self.record_miss(idx);
            }
        }
        if now >= self.next_round {
            if self.round_cursor.is_some() {
                // Still sending the previous round: finish it rather than
                // restart from slot 0, which would starve the last slots.
                self.stats.round_overruns += 1;
            } else {
                self.round_cursor = Some(0);
                self.batch_left = self.config.send_batch;
            }
            self.next_round += self.config.interval;
            if self.next_round <= now {
                // Fell behind by more than an interval: skip, don't burst.
                self.next_round = now + self.config.interval;
            }
        }
    }

    /// Whether a round has probes left to send.
    pub fn round_pending(&self) -> bool {
        self.round_cursor.is_some()
    }

    /// Whether [`CheckerCore::next_probe`] has a probe to hand out at `now`:
    /// a round is being sent and its next batch is due.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.round_cursor.is_some() && (self.batch_left > 0 || now >= self.batch_gate)
    }

    /// Encodes the next probe of the current round into `out` and returns
    /// where to send it, or `None` when the round is complete or the current
    /// batch is (the next one is due at [`CheckerCore::next_wakeup`]). A
    /// target whose previous probe is still pending (possible only when
    /// sending lags) gets that probe counted as missed.
    pub fn next_probe(&mut self, now: Instant, out: &mut [u8; PACKET_LEN]) -> Option<SocketAddr> {
        let mut idx = self.round_cursor?;
        if self.batch_left == 0 {
            if now < self.batch_gate {
                return None;
            }
            self.batch_left = self.config.send_batch;
        }
        loop {
            if idx >= self.slots.len() {
                self.round_cursor = None;
                return None;
            }
            if self.slots[idx].is_some() {
                break;
            }
            idx += 1;
        }
        self.round_cursor = Some(idx + 1);
        self.batch_left -= 1;
        if self.batch_left == 0 {
            self.batch_gate = now + self.config.send_pace;
        }
        let superseded = matches!(
            &self.slots[idx],
            Some(Target { probe: Some(p), .. }) if p.state == ProbeState::Pending
        );
        if superseded {
            self.set_probe_state(idx, ProbeState::Missed);
            self.record_miss(idx);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let timestamp_micros = u64::try_from(now.saturating_duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX);
        let t = self.slots[idx].as_mut()?;
        let deadline_at = now + self.config.deadline_for(t.avg_rtt());
        t.probe = Some(Probe {
            seq,
            timestamp_micros,
            sent_at: now,
            deadline_at,
            state: ProbeState::Pending,
        });
        let addr = t.addr;
        self.deadlines.push(Reverse((deadline_at, seq, idx)));
        Packet {
            kind: PacketKind::Probe,
            nonce: self.nonce,
            seq,
            timestamp_micros,
        }
        .encode(out);
        self.stats.probes_sent += 1;
        Some(addr)
    }

    /// Counts a failed send of the probe just returned by `next_probe`. The
    /// probe stays pending and will count as a miss at its deadline.
    pub fn on_send_error(&mut self) {
        self.stats.send_errors += 1;
    }

    /// Counts a receive error.
    pub fn on_recv_error(&mut self) {
        self.stats.recv_errors += 1;
    }

    /// Handles one received datagram from `from`. Anything that is not a
    /// valid reply from a target to its current probe is counted and dropped.
    pub fn on_packet(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let packet = match Packet::decode(data) {
            Ok(p) if p.kind == PacketKind::Reply => p,
            _ => {
                self.stats.bad_packets += 1;
                return;
            }
        };
        if packet.nonce != self.nonce {
            self.stats.foreign_nonce += 1;
            return;
        }
        let Some(&idx) = self.by_addr.get(&from) else {
            self.stats.unknown_source += 1;
            return;
        };
        self.on_reply(idx, packet.seq, packet.timestamp_micros, now);
    }

    fn on_reply(&mut self, idx: usize, seq: u64, timestamp_micros: u64, now: Instant) {
        if seq >= self.next_seq {
            // Never sent: not a reply to us.
            self.stats.bad_packets += 1;
            return;
        }
        let alpha = self.config.rtt_alpha;
        let Some(t) = self.slots[idx].as_mut() else {
            return;
        };
        let Some(probe) = t.probe.as_mut() else {
            self.stats.late_replies += 1;
            return;
        };
        if probe.seq != seq {
            // Answer to an older probe: that one was already counted missed.
            self.stats.late_replies += 1;
            return;
        }
        if probe.timestamp_micros != timestamp_micros {
            self.stats.bad_packets += 1;
            return;
        }
        let in_time = now <= probe.deadline_at;
        let was = probe.state;
        match was {
            ProbeState::Answered | ProbeState::MissedThenAnswered => {
                self.stats.late_replies += 1;
                return;
            }
            ProbeState::Missed => probe.state = ProbeState::MissedThenAnswered,
            ProbeState::Pending if in_time => probe.state = ProbeState::Answered,
            ProbeState::Pending => probe.state = ProbeState::Missed,
        }
        // Every first answer to the current probe is an RTT sample, late or
        // not: that is how a slower path raises the deadline again.
        let rtt = now.saturating_duration_since(probe.sent_at);
        t.last_rtt = Some(rtt);
        let sample = rtt.as_secs_f64();
        t.avg_rtt_secs = Some(match t.avg_rtt_secs {
            None => sample,
            Some(avg) => avg + alpha * (sample - avg),
        });
        if was == ProbeState::Pending && in_time {
            self.stats.replies += 1;
            t.misses = 0;
            t.last_reply = Some(now);
            let before = t.status;
            if before != TargetStatus::Alive {
                t.status = TargetStatus::Alive;
                let id = t.id.clone();
                if before == TargetStatus::Dead {
                    self.events.push_back(LivenessEvent::Alive(id.clone()));
                }
                self.changes.push_back(StatusChange {
                    id,
                    status: Some(TargetStatus::Alive),
                });
            }
        } else {
            self.stats.late_replies += 1;
            if was == ProbeState::Pending {
                // Past its deadline, but the deadline timer has not run yet.
                self.record_miss(idx);
            }
        }
    }

    fn set_probe_state(&mut self, idx: usize, state: ProbeState) {
        if let Some(Some(Target { probe: Some(p), .. })) = self.slots.get_mut(idx) {
            p.state = state;
        }
    }

    fn record_miss(&mut self, idx: usize) {
        self.stats.misses += 1;
        let retries = self.config.retries;
        let Some(Some(t)) = self.slots.get_mut(idx) else {
            return;
        };
        t.misses = t.misses.saturating_add(1);
        if t.misses >= retries && t.status != TargetStatus::Dead {
            t.status = TargetStatus::Dead;
            self.events.push_back(LivenessEvent::Dead(t.id.clone()));
            self.changes.push_back(StatusChange {
                id: t.id.clone(),
                status: Some(TargetStatus::Dead),
            });
        }
    }

    /// Takes the oldest queued event.
    pub fn pop_event(&mut self) -> Option<LivenessEvent> {
        self.events.pop_front()
    }

    /// Takes the oldest queued status change.
    pub fn pop_change(&mut self) -> Option<StatusChange> {
        self.changes.pop_front()
    }

    /// Whether status changes are queued.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Counts an event the caller could not deliver.
    pub fn on_event_dropped(&mut self) {
        self.stats.events_dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Drives a core by hand: time only moves when the test says so. Targets
    /// in `answering` reply `delay` after each probe.
    struct Sim {
        core: CheckerCore,
        now: Instant,
        start: Instant,
        answering: Vec<SocketAddr>,
        delay: Duration,
        in_flight: Vec<(Instant, SocketAddr, [u8; PACKET_LEN])>,
    }

    impl Sim {
        fn new() -> Self {
            Self::with(LivenessConfig::default())
        }

        fn with(config: LivenessConfig) -> Self {
            let start = Instant::now();
            Sim {
                core: CheckerCore::new(config, 7, start),
                now: start,
                start,
                answering: Vec::new(),
                delay: MS,
                in_flight: Vec::new(),
            }
        }

        fn at(&self) -> Duration {
            self.now - self.start
        }

        /// Moves time forward to `t` after start, delivering replies and
        /// waking the core at every wakeup on the way. Returns the probes
        /// sent, as (destination, reply packet, send time).
        fn run_until(&mut self, t: Duration) -> Vec<(SocketAddr, [u8; PACKET_LEN], Duration)> {
            let end = self.start + t;
            let mut sent = Vec::new();
            loop {
                let mut wake = self.core.next_wakeup();
                if let Some(r) = self.in_flight.iter().map(|f| f.0).min() {
                    wake = wake.min(r);
                }
                if wake > end {
                    break;
                }
                self.now = self.now.max(wake);
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) =
                    self.in_flight.drain(..).partition(|f| f.0 <= now);
                self.in_flight = later;
                for (_, from, p) in due {
                    self.core.on_packet(from, &p, now);
                }
                self.core.on_tick(now);
                let mut buf = [0u8; PACKET_LEN];
                while let Some(to) = self.core.next_probe(now, &mut buf) {
                    let p = Packet::decode(&buf).expect("own probe decodes");
                    let reply = p.into_reply().to_bytes();
                    if self.answering.contains(&to) {
                        self.in_flight.push((now + self.delay, to, reply));
                    }
                    sent.push((to, reply, self.at()));
                }
            }
            self.now = end;
            sent
        }

        fn reply(&mut self, from: SocketAddr, packet: &[u8]) {
            self.core.on_packet(from, packet, self.now);
        }

        fn events(&mut self) -> Vec<LivenessEvent> {
            std::iter::from_fn(|| self.core.pop_event()).collect()
        }

        fn changes(&mut self) -> Vec<StatusChange> {
            std::iter::from_fn(|| self.core.pop_change()).collect()
        }

        /// Runs `rounds` whole probe rounds (up to just before the next
        /// one) in which the targets in `answering` reply `delay` after each
        /// probe and all others are silent.
        fn rounds(&mut self, rounds: u32, answering: &[SocketAddr], delay: Duration) {
            self.answering = answering.to_vec();
            self.delay = delay;
            let t = self.core.next_round - self.start + self.core.config().interval * rounds
                - Duration::from_nanos(1);
            self.run_until(t);
        }
    }

    #[test]
    fn first_answer_is_silent_but_visible() {
        let mut s = Sim::new();
        assert!(s.core.add("a", addr(1000)).expect("add"));
        assert_eq!(
            s.changes(),
            vec![StatusChange {
                id: "a".into(),
                status: Some(TargetStatus::Unknown)
            }]
        );
        s.rounds(1, &[addr(1000)], MS);
        assert_eq!(s.core.status("a"), Some(TargetStatus::Alive));
        assert!(s.events().is_empty(), "no Alive event for a new target");
        assert_eq!(
            s.changes(),
            vec![StatusChange {
                id: "a".into(),
                status: Some(TargetStatus::Alive)
            }]
        );
        assert_eq!(s.core.stats().replies, 1);
    }

    #[test]
    fn never_answering_target_is_reported_dead_once() {
        let mut s = Sim::new();
        s.core.add("ghost", addr(1001)).expect("add");
        // No RTT sample yet: each probe waits a whole interval, so the third
        // miss is at the start of round 3 (300 ms).
        s.run_until(299 * MS);
        assert!(s.events().is_empty());
        s.run_until(300 * MS);
        assert_eq!(s.events(), vec![LivenessEvent::Dead("ghost".into())]);
        assert_eq!(s.core.status("ghost"), Some(TargetStatus::Dead));
        s.run_until(2000 * MS);
        assert!(s.events().is_empty(), "Dead is reported once");
        assert!(s.core.stats().misses >= 19);
    }

    #[test]
    fn stopped_target_dead_after_retries_times_deadline() {
        let mut s = Sim::new();
        let a = addr(1002);
        s.core.add("a", a).expect("add");
        s.rounds(5, &[a], MS / 2);
        assert_eq!(s.core.status("a"), Some(TargetStatus::Alive));
        assert_eq!(s.core.next_round - s.start, 500 * MS);
        s.answering.clear();
        // Stops answering now; the probe at 500 ms is the first unanswered.
        // Deadline = floor (20 ms). Misses at 520, 620, 720 ms.
        s.run_until(719 * MS);
        assert!(s.events().is_empty());
        assert_eq!(
            s.core
                .targets()
                .first()
                .map(|t| (t.consecutive_misses, t.deadline)),
            Some((2, 20 * MS))
        );
        s.run_until(720 * MS);
        assert_eq!(s.events(), vec![LivenessEvent::Dead("a".into())]);
        let bound = s.core.config().detection_bound(20 * MS);
        assert_eq!(bound, 220 * MS);
    }

    #[test]
    fn dead_target_that_answers_is_alive_again() {
        let mut s = Sim::new();
        let a = addr(1003);
        s.core.add("a", a).expect("add");
        s.rounds(2, &[a], MS);
        s.rounds(3, &[], MS);
        assert_eq!(s.events(), vec![LivenessEvent::Dead("a".into())]);
        s.rounds(1, &[a], MS);
        assert_eq!(s.events(), vec![LivenessEvent::Alive("a".into())]);
        assert_eq!(s.core.targets()[0].consecutive_misses, 0);
        s.rounds(3, &[a], MS);
        assert!(s.events().is_empty());
    }

    #[test]
    fn misses_must_be_consecutive() {
        let mut s = Sim::new();
        let a = addr(1004);
        s.core.add("a", a).expect("add");
        for _ in 0..5 {
            s.rounds(2, &[], MS);
            s.rounds(1, &[a], MS);
        }
        assert!(s.events().is_empty());
        assert_eq!(s.core.stats().misses, 10);
    }

    #[test]
    fn reply_after_deadline_is_a_miss_but_raises_the_deadline() {
        let mut s = Sim::new();
        let a = addr(1005);
        s.core.add("a", a).expect("add");
        s.rounds(3, &[a], MS);
        // Path slows to 30 ms, past the 20 ms deadline.
        s.rounds(1, &[a], 30 * MS);
        let st = s.core.stats();
        assert_eq!((st.late_replies, st.misses), (1, 1));
        let info = &s.core.targets()[0];
        assert_eq!(info.last_rtt, Some(30 * MS));
        assert_eq!(info.consecutive_misses, 1);
        // avg = 1 + (30 - 1) / 8 = 4.625 ms -> deadline 4 × 4.625 = 18.5 ms,
        // still under the floor; a couple more slow samples lift it.
        s.rounds(1, &[a], 30 * MS);
        assert_eq!(s.core.targets()[0].consecutive_misses, 2);
        let d = s.core.targets()[0].deadline;
        assert!(d > 20 * MS, "deadline adapted: {d:?}");
        s.rounds(1, &[a], 30 * MS);
        assert_eq!(s.core.targets()[0].consecutive_misses, 0);
        assert!(s.events().is_empty(), "never three misses in a row");
    }

    #[test]
    fn late_reply_processed_before_the_deadline_timer_counts_as_miss() {
        let mut s = Sim::new();
        let a = addr(1006);
        s.core.add("a", a).expect("add");
        s.rounds(1, &[a], MS);
        s.answering.clear();
        let probes = s.run_until(100 * MS);
        // Reply arrives at 150 ms but on_tick has not run since 100 ms.
        s.now = s.start + 150 * MS;
        s.reply(a, &probes[0].1);
        assert_eq!(s.core.targets()[0].consecutive_misses, 1);
        assert_eq!(s.core.stats().late_replies, 1);
        // The deadline timer then finds it already resolved: no double count.
        s.core.on_tick(s.now);
        assert_eq!(s.core.stats().misses, 1);
    }

    #[test]
    fn old_and_duplicate_replies_are_not_fresh() {
        let mut s = Sim::new();
        let a = addr(1007);
        s.core.add("a", a).expect("add");
        let first = s.run_until(MS);
        s.reply(a, &first[0].1);
        s.reply(a, &first[0].1); // duplicate
        assert_eq!(s.core.stats().replies, 1);
        assert_eq!(s.core.stats().late_replies, 1);
        // Three rounds unanswered, then the very first reply shows up again.
        s.run_until(400 * MS);
        assert_eq!(s.events(), vec![LivenessEvent::Dead("a".into())]);
        s.reply(a, &first[0].1);
        assert!(s.events().is_empty(), "old seq does not revive");
        assert_eq!(s.core.status("a"), Some(TargetStatus::Dead));
        assert_eq!(s.core.stats().late_replies, 2);
    }

    #[test]
    fn bad_input_is_counted_and_dropped() {
        let mut s = Sim::new();
        let a = addr(1008);
        s.core.add("a", a).expect("add");
        let probes = s.run_until(MS);
        let good = probes[0].1;
        s.reply(a, b"hello");
        s.reply(a, &good[..20]);
        s.reply(a, &[]);
        // A probe instead of a reply.
        let mut probe = good;
        probe[5] = 1;
        s.reply(a, &probe);
        // Tampered timestamp.
        let mut ts = good;
        ts[31] ^= 1;
        s.reply(a, &ts);
        // Sequence never sent.
        let mut seq = Packet::decode(&good).expect("decodes");
        seq.seq = 999;
        s.reply(a, &seq.to_bytes());
        assert_eq!(s.core.stats().bad_packets, 6);
        // Another checker's reply.
        let mut foreign = Packet::decode(&good).expect("decodes");
        foreign.nonce = 8;
        s.reply(a, &foreign.to_bytes());
        assert_eq!(s.core.stats().foreign_nonce, 1);
        // Valid reply from an address nobody checks.
        s.reply(addr(9), &good);
        assert_eq!(s.core.stats().unknown_source, 1);
        assert_eq!(s.core.stats().replies, 0);
        s.reply(a, &good);
        assert_eq!(s.core.stats().replies, 1);
    }

    #[test]
    fn removed_target_emits_nothing_and_slot_reuse_is_safe() {
        let mut s = Sim::new();
        let (a, b) = (addr(1010), addr(1011));
        s.core.add("a", a).expect("add");
        let probes = s.run_until(MS);
        assert!(s.core.remove("a"));
        assert!(!s.core.remove("a"));
        s.changes();
        // b takes a's slot; a's stale reply and deadline must not touch it.
        s.core.add("b", b).expect("add");
        s.reply(a, &probes[0].1);
        assert_eq!(s.core.stats().unknown_source, 1);
        s.rounds(10, &[b], MS);
        assert!(s.events().is_empty());
        assert_eq!(s.core.status("b"), Some(TargetStatus::Alive));
        assert_eq!(s.core.status("a"), None);
    }

    #[test]
    fn clear_removes_everything() {
        let mut s = Sim::new();
        for p in 0..5 {
            s.core.add(&format!("n{p}"), addr(2000 + p)).expect("add");
        }
        s.run_until(MS);
        s.changes();
        assert_eq!(s.core.clear(), 5);
        assert!(s.core.is_empty());
        let removed = s.changes();
        assert_eq!(removed.len(), 5);
        assert!(removed.iter().all(|c| c.status.is_none()));
        s.run_until(1000 * MS);
        assert!(s.events().is_empty());
        assert_eq!(s.core.stats().probes_sent, 5);
        s.core.add("n0", addr(2000)).expect("re-add after clear");
        assert_eq!(s.core.len(), 1);
    }

    #[test]
    fn add_rules() {
        let mut s = Sim::new();
        assert!(s.core.add("a", addr(3000)).expect("add"));
        assert!(!s.core.add("a", addr(3000)).expect("same again"));
        assert!(matches!(
            s.core.add("b", addr(3000)),
            Err(LivenessError::AddressInUse { existing, .. }) if existing == "a"
        ));
        assert!(matches!(
            s.core.add("c", addr(0)),
            Err(LivenessError::InvalidAddress { .. })
        ));
        assert!(matches!(
            s.core.add("c", SocketAddr::from(([0, 0, 0, 0], 5))),
            Err(LivenessError::InvalidAddress { .. })
        ));
        // Moving "a" frees its old address.
        assert!(s.core.add("a", addr(3001)).expect("move"));
        assert!(s.core.add("b", addr(3000)).expect("old address free"));
        assert_eq!(s.core.len(), 2);
    }

    #[test]
    fn many_targets_independent() {
        let mut s = Sim::new();
        let addrs: Vec<_> = (0..100).map(|p| addr(4000 + p)).collect();
        for (i, a) in addrs.iter().enumerate() {
            s.core.add(&format!("n{i}"), *a).expect("add");
        }
        s.rounds(2, &addrs, MS);
        let answering: Vec<_> = addrs
            .iter()
            .copied()
            .filter(|a| a.port() % 10 != 0)
            .collect();
        s.rounds(3, &answering, MS);
        let mut dead: Vec<_> = s.events().into_iter().map(|e| e.id().to_owned()).collect();
        dead.sort();
        let mut want: Vec<_> = (0..100).step_by(10).map(|i| format!("n{i}")).collect();
        want.sort();
        assert_eq!(dead, want);
        assert_eq!(s.core.stats().probes_sent, 500);
    }

    #[test]
    fn round_overrun_is_counted_not_restarted() {
        let mut s = Sim::new();
        s.core.add("a", addr(5000)).expect("add");
        s.core.add("b", addr(5001)).expect("add");
        s.core.on_tick(s.now);
        let mut buf = [0u8; PACKET_LEN];
        assert_eq!(s.core.next_probe(s.now, &mut buf), Some(addr(5000)));
        s.now += 100 * MS;
        s.core.on_tick(s.now);
        assert_eq!(s.core.stats().round_overruns, 1);
        assert_eq!(s.core.next_probe(s.now, &mut buf), Some(addr(5001)));
        assert_eq!(s.core.next_probe(s.now, &mut buf), None);
    }

    #[test]
    fn large_rounds_are_sent_in_paced_batches() {
        let mut s = Sim::with(LivenessConfig {
            send_batch: 64,
            send_pace: 2 * MS,
            ..LivenessConfig::default()
        });
        let addrs: Vec<_> = (0..150).map(|p| addr(6000 + p)).collect();
        for (i, a) in addrs.iter().enumerate() {
            s.core.add(&format!("n{i}"), *a).expect("add");
        }
        let sent = s.run_until(99 * MS);
        let at = |t: Duration| sent.iter().filter(|p| p.2 == t).count();
        assert_eq!((at(Duration::ZERO), at(2 * MS), at(4 * MS)), (64, 64, 22));
        assert_eq!(sent.len(), 150);
        assert!(!s.core.round_pending());
        // Every target keeps its place: each is probed once per interval.
        s.rounds(3, &addrs, MS);
        assert!(s.events().is_empty());
        assert_eq!(s.core.stats().probes_sent, 600);
        assert_eq!(s.core.stats().replies, 450);
    }
}
