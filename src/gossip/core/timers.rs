//! Timers: the probe cycle (direct, indirect, stream fallback), nack
//! deadlines, suspicion expiry, gossip rounds, periodic push/pull,
//! reconnects and reaping.

use std::net::SocketAddr;

use rand::seq::SliceRandom;
use tokio::time::Instant;

use super::{
    push_pull_scale, Core, LeaveState, NodeState, Output, Probe, QUEUE_WARN_EVERY, REAP_CHECK,
};
use crate::gossip::codec::{self, Msg};
use crate::gossip::member::MemberStatus;
use crate::gossip::pb;

impl Core {
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
        let coalescing = [
            self.member_coalescer.deadline(),
            self.user_coalescer.deadline(),
        ];
        for t in coalescing.into_iter().flatten() {
            consider(t);
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
            self.warn_queue_depth(now);
        }
        self.flush_coalesced(now);
        self.check_leave_finished();
    }

    /// memberlist/Serf's queue depth warning: news is produced faster than
    /// gossip spreads it. Checked with the reaper (every second), logged at
    /// most every `QUEUE_WARN_EVERY`.
    pub(super) fn warn_queue_depth(&mut self, now: Instant) {
        let (depth, limit) = (self.queue.len(), self.cfg.queue_depth_warning);
        if limit == 0 || depth <= limit {
            return;
        }
        if self
            .queue_warned
            .is_some_and(|t| now < t + QUEUE_WARN_EVERY)
        {
            return;
        }
        self.queue_warned = Some(now);
        self.stats.queue_depth_warnings += 1;
        tracing::warn!(
            node = %self.name,
            depth,
            limit,
            max = self.cfg.max_broadcast_queue,
            "gossip broadcast queue is deep: news arrives faster than it spreads"
        );
    }

    pub(super) fn random_addr(&mut self, f: impl Fn(&NodeState) -> bool) -> Option<SocketAddr> {
        let c: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|n| n.name != self.name && f(n))
            .map(|n| n.addr)
            .collect();
        c.choose(&mut self.rng).copied()
    }

    pub(super) fn tick_probe(&mut self, now: Instant) {
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

    pub(super) fn next_probe_target(&mut self) -> Option<String> {
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

    pub(super) fn start_probe(&mut self, now: Instant) {
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

    pub(super) fn send_indirect(&mut self) {
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

    pub(super) fn fail_probe(&mut self, now: Instant) {
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

    pub(super) fn gossip(&mut self, now: Instant) {
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

    pub(super) fn reap(&mut self, now: Instant) {
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
}
