//! Receiving: datagrams and the SWIM messages in them (ping, indirect
//! ping, ack, alive, suspect, dead), and refuting news about ourselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{Core, LeaveState, NodeState, Output, Relay, MAX_RELAYS};
use crate::gossip::codec::{self, Msg};
use crate::gossip::error::CodecError;
use crate::gossip::member::{MemberEventKind, MemberStatus};
use crate::gossip::pb;
use crate::gossip::suspicion::{suspicion_timeout, Suspicion};

impl Core {
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

    pub(super) fn handle_msg(&mut self, now: Instant, from: SocketAddr, m: Msg) {
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
            Msg::UserEvent(e) => self.on_user_event(now, e),
        }
    }

    pub(super) fn on_ping(&mut self, now: Instant, from: SocketAddr, p: pb::Ping) {
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

    pub(super) fn on_indirect_ping(&mut self, now: Instant, from: SocketAddr, p: pb::IndirectPing) {
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
    pub(super) fn nack_timeout(&self) -> Duration {
        let room = self
            .cfg
            .probe_interval
            .saturating_sub(self.cfg.probe_timeout);
        self.cfg.probe_timeout.min(room * 4 / 5)
    }

    pub(super) fn on_ack(&mut self, now: Instant, ack: pb::Ack) {
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
    pub(super) fn maybe_checksum_sync(&mut self, now: Instant, addr: SocketAddr, theirs: u64) {
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

    pub(super) fn on_alive(&mut self, now: Instant, a: pb::Alive) {
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
        self.lighthouses.saw(&name, &self.members[&name].tags);
        let msg = Msg::Alive(self.members[&name].alive_msg());
        self.broadcast(&name, msg, None);
        match prev {
            None | Some(MemberStatus::Left) => self.event(now, MemberEventKind::Join, &name),
            Some(MemberStatus::Suspect | MemberStatus::Dead) => {
                self.event(now, MemberEventKind::AliveAgain, &name);
                if changed {
                    self.event(now, MemberEventKind::Updated, &name);
                }
            }
            Some(MemberStatus::Alive) => {
                if changed {
                    self.event(now, MemberEventKind::Updated, &name);
                }
            }
        }
    }

    pub(super) fn on_suspect(&mut self, now: Instant, s: pb::Suspect) {
        let n_live = self.num_live();
        let Some(st) = self.members.get(&s.node) else {
            return;
        };
        if s.incarnation < st.incarnation {
            if s.node == self.name && self.leave == LeaveState::Member {
                self.reassert(&s.from);
            }
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
        self.event(now, MemberEventKind::Suspect, &name);
    }

    pub(super) fn on_dead(&mut self, now: Instant, d: pb::Dead) {
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
        if left {
            self.lighthouses.forget(&name);
        }
        self.broadcast(&name, Msg::Dead(d), None);
        let kind = if left {
            MemberEventKind::Leave
        } else {
            MemberEventKind::Failed
        };
        self.event(now, kind, &name);
        if prune {
            self.members.remove(&name);
            self.mark_changed();
        }
    }

    /// Forgets a left member at once and passes the prune on.
    pub(super) fn prune(&mut self, d: pb::Dead) {
        let name = d.node.clone();
        self.members.remove(&name);
        self.suspicions.remove(&name);
        self.lighthouses.forget(&name);
        self.mark_changed();
        tracing::debug!(node = %self.name, member = %name, "member pruned");
        self.broadcast(&name, Msg::Dead(d), None);
    }

    /// `from` still suspects an incarnation of us that we already refuted
    /// (it missed the refutation, say while it was cut off; the buddy
    /// system's suspect rides on its probes of us). Without an answer its
    /// stale timer would declare us dead: send it our current alive
    /// directly and gossip it again. No new incarnation is needed.
    fn reassert(&mut self, from: &str) {
        let msg = Msg::Alive(self.me().alive_msg());
        if let Some(addr) = self.members.get(from).map(|m| m.addr) {
            self.send(addr, std::slice::from_ref(&msg));
        }
        let name = self.name.clone();
        self.broadcast(&name, msg, None);
    }

    /// Someone thinks we are suspect/dead (or holds a newer view of us):
    /// outbid it with a higher incarnation.
    pub(super) fn refute(&mut self, seen: u64) {
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
}
