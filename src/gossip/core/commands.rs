//! Commands from the gossip task: join, merge of a push/pull state,
//! force-leave, tags, leave and user events.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::time::Instant;

use super::{Core, LeaveState, Output, MAX_COALESCED};
use crate::gossip::codec::Msg;
use crate::gossip::error::{GossipError, TagsError};
use crate::gossip::member::{MemberStatus, UserEvent};
use crate::gossip::pb;
use crate::gossip::queue::BroadcastKey;
use crate::gossip::tags::check_tags;
use crate::gossip::version::ProtocolRange;

impl Core {
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
            self.on_user_event(now, e);
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
        self.cfg.advertise(&mut tags);
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
        now: Instant,
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
        self.on_user_event(now, e);
        Ok(())
    }

    pub(super) fn on_user_event(&mut self, now: Instant, e: pb::UserEvent) {
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
        let ev = UserEvent {
            ltime: e.ltime,
            name: e.name,
            payload: e.payload,
            coalesce: e.coalesce,
        };
        self.user_out(now, ev);
    }
}
