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
    /// "Port unreachable" reports about a target's current probe (each
    /// counted as a miss at once).
    pub refusals: u64,
    /// Reports that name no current probe of a target (old, foreign,
    /// unknown address, or unreadable payload): ignored.
    pub refusals_ignored: u64,
    /// Targets reported dead because of refusals, before their deadlines.
    pub refused_dead: u64,
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
    /// Consecutive refusals (reset by a fresh reply).
    refusals: u32,
    /// Queued for an extra probe right away.
    reprobe: bool,
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
    /// Slots to probe again at once after a refusal, ahead of the round.
    reprobe: VecDeque<usize>,
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
            reprobe: VecDeque::new(),
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
            refusals: 0,
            reprobe: false,
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
        self.reprobe.clear();
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
    /// a target is to be probed again after a refusal, or a round is being
    /// sent and its next batch is due.
    pub fn probe_due(&self, now: Instant) -> bool {
        !self.reprobe.is_empty()
            || (self.round_cursor.is_some() && (self.batch_left > 0 || now >= self.batch_gate))
    }

    /// Encodes the next probe of the current round into `out` and returns
    /// where to send it, or `None` when the round is complete or the current
    /// batch is (the next one is due at [`CheckerCore::next_wakeup`]). A
    /// target whose previous probe is still pending (possible only when
    /// sending lags) gets that probe counted as missed.
    pub fn next_probe(&mut self, now: Instant, out: &mut [u8; PACKET_LEN]) -> Option<SocketAddr> {
        while let Some(idx) = self.reprobe.pop_front() {
            let queued = match self.slots.get_mut(idx) {
                Some(Some(t)) => std::mem::replace(&mut t.reprobe, false),
                _ => false,
            };
            if queued {
                return self.probe_slot(idx, now, out);
            }
        }
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
        self.probe_slot(idx, now, out)
    }

    /// Starts a new probe of slot `idx` (counting a still pending one as
    /// missed) and encodes it into `out`.
    fn probe_slot(
        &mut self,
        idx: usize,
        now: Instant,
        out: &mut [u8; PACKET_LEN],
    ) -> Option<SocketAddr> {
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

    /// Handles a report that a datagram sent to `to` hit a closed port;
    /// `data` is the original datagram as reported. It counts only if it is
    /// this checker's current, still pending probe of the target at `to`:
    /// that probe is counted as missed at once, and the target is reported
    /// dead after `refused_retries` such reports in a row, or else probed
    /// again at once. Anything else is counted and ignored.
    pub fn on_refused(&mut self, to: SocketAddr, data: &[u8]) {
        let limit = self.config.refused_retries;
        let probe = Packet::decode(data)
            .ok()
            .filter(|p| p.kind == PacketKind::Probe && p.nonce == self.nonce);
        let idx = self.by_addr.get(&to).copied();
        let current = match (probe, idx.and_then(|i| self.slots[i].as_ref())) {
            (Some(p), Some(Target { probe: Some(q), .. })) => {
                q.seq == p.seq
                    && q.timestamp_micros == p.timestamp_micros
                    && q.state == ProbeState::Pending
            }
            _ => false,
        };
        let (Some(idx), true, true) = (idx, current, limit > 0) else {
            self.stats.refusals_ignored += 1;
            return;
        };
        self.stats.refusals += 1;
        self.set_probe_state(idx, ProbeState::Missed);
        let Some(t) = self.slots[idx].as_mut() else {
            return;
        };
        t.refusals = t.refusals.saturating_add(1);
        if t.refusals >= limit && t.status != TargetStatus::Dead {
            self.stats.refused_dead += 1;
            t.misses = t.misses.max(self.config.retries.saturating_sub(1));
        } else if t.refusals < limit && !t.reprobe {
            t.reprobe = true;
            self.reprobe.push_back(idx);
        }
        self.record_miss(idx);
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
            t.refusals = 0;
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
#[path = "core_tests.rs"]
mod tests;
