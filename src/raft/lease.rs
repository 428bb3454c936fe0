//! The serving lease: which node may serve until when, granted by a leader
//! that a quorum confirmed, piggybacked on AppendEntries.
//!
//! # The rule
//!
//! * The leader sends AppendEntries rounds; each records when it was sent.
//!   A round a follower accepted (any answer but "higher vote") counts for
//!   that follower at its *send* time. The leader's quorum instant `t0` is
//!   the newest send time that a quorum of every voter configuration
//!   accepted (the leader itself counts as "now").
//! * Every answer carries the follower's own stamp (its monotonic clock and
//!   an incarnation number). The leader echoes the newest stamp it received
//!   from that follower in its next request, with `remaining = t0 + lease -
//!   now_leader` and `required` = the leader's last log index. The follower
//!   holds the lease until `stamp + remaining` on its own clock. Its stamp
//!   was taken before the leader sent the echo, so that end is never later
//!   than `t0 + lease` in real time, whatever the delays: a delay only
//!   shortens a lease, never lengthens one.
//! * A lease counts only while the node's serving state reflects the log up
//!   to `required` (see [`Holder::valid_until`]): a node that has not
//!   applied a proposal that takes shards away cannot serve under a lease
//!   granted after that proposal was appended.
//! * Why no one else can serve meanwhile: openraft's voters refuse to vote
//!   for `vote_lease` after they last accepted the leader, and a
//!   candidate waits at least that long on its own timer, so no leader of a
//!   later term exists before `t0 + vote_lease`. A leader that
//!   loses its quorum stops advancing `t0` and so stops granting; leases end
//!   at most `lease` after its last quorum round. The next leader treats
//!   every lease of an earlier term as running until `term start + lease -
//!   vote_lease` ([`Granter::bound`]); its own grants it bounds by
//!   `echo received + remaining`. The coordinator commits a map that moves
//!   a shard only when the losing owner acknowledged or its bound passed.
//!
//! Clocks: only durations cross the wire, never instants, so nodes need no
//! synchronised clocks, only clocks of about the same rate; [`margin`]
//! covers the drift.
//!
//! Pure: every function takes `now`; [`LeaseState`] wraps them with a lock
//! for the network, the server and the coordinator.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{NodeId, RaftMetrics};

/// A node's stamp: its incarnation and microseconds since its clock base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub incarnation: u64,
    pub micros: u64,
}

/// A lease grant as it travels with an AppendEntries request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The receiver's own stamp, echoed.
    pub echo: Stamp,
    /// Lease left when the request was sent (leader's clock).
    pub remaining: Duration,
    /// Log index the receiver's serving state must reflect.
    pub required: u64,
}

/// Extra time added to every bound for clock-rate drift and scheduling:
/// 5 % of the lease plus 5 ms.
pub(crate) fn margin(lease: Duration) -> Duration {
    lease / 20 + Duration::from_millis(5)
}

/// The leases this node holds (from leaders, or its own as leader).
#[derive(Debug)]
pub(crate) struct Holder {
    incarnation: u64,
    base: Instant,
    /// `(end, required)`, none dominated by another (later end and lower
    /// requirement).
    grants: Vec<(Instant, u64)>,
}

impl Holder {
    pub fn new(incarnation: u64, base: Instant) -> Self {
        Self {
            incarnation,
            base,
            grants: Vec::new(),
        }
    }

    /// This node's stamp now.
    pub fn stamp(&self, now: Instant) -> Stamp {
        Stamp {
            incarnation: self.incarnation,
            micros: now.saturating_duration_since(self.base).as_micros() as u64,
        }
    }

    /// Takes a grant from a leader whose request this node accepted.
    /// Returns whether it was usable (our stamp, not from the future).
    pub fn accept(&mut self, g: &Grant, now: Instant) -> bool {
        if g.echo.incarnation != self.incarnation {
            return false;
        }
        let sent = self.base + Duration::from_micros(g.echo.micros);
        if sent > now {
            return false;
        }
        self.hold(sent + g.remaining, g.required, now);
        true
    }

    /// Holds a lease until `end` once the serving state reflects `required`.
    pub fn hold(&mut self, end: Instant, required: u64, now: Instant) {
        if end <= now {
            return;
        }
        self.grants.retain(|(e, _)| *e > now);
        if self.grants.iter().any(|(e, r)| *e >= end && *r <= required) {
            return;
        }
        self.grants.retain(|(e, r)| !(end >= *e && required <= *r));
        self.grants.push((end, required));
    }

    /// Until when this node may serve, given that its serving state
    /// reflects the log up to `applied`; `None` when no lease holds.
    pub fn valid_until(&self, applied: u64, now: Instant) -> Option<Instant> {
        self.grants
            .iter()
            .filter(|(e, r)| *r <= applied && *e > now)
            .map(|(e, _)| *e)
            .max()
    }
}

#[derive(Debug, Default)]
struct Peer {
    /// Send time of the newest round this peer accepted in the term.
    acked: Option<Instant>,
    /// The newest stamp received from it and when.
    echo: Option<(Stamp, Instant)>,
    /// The latest instant any lease granted to it this term can end.
    bound: Option<Instant>,
}

/// The leader's side: what each peer accepted and was granted in one term.
#[derive(Debug, Default)]
pub(crate) struct Granter {
    term: u64,
    /// When this node first sent as leader of `term`.
    term_start: Option<Instant>,
    peers: BTreeMap<NodeId, Peer>,
}

impl Granter {
    fn enter(&mut self, term: u64, now: Instant) {
        if term != self.term || self.term_start.is_none() {
            if term < self.term {
                return;
            }
            self.term = term;
            self.term_start = Some(now);
            self.peers.clear();
        }
    }

    /// A request of `term` is about to go to `target`: the grant to attach,
    /// if this leader's quorum lease (`quorum_at + lease`) still runs and
    /// the target answered before.
    pub fn on_send(
        &mut self,
        term: u64,
        target: NodeId,
        now: Instant,
        lease_end: Option<Instant>,
        required: u64,
    ) -> Option<Grant> {
        self.enter(term, now);
        if term != self.term {
            return None;
        }
        let remaining = lease_end?.checked_duration_since(now)?;
        if remaining.is_zero() {
            return None;
        }
        let peer = self.peers.entry(target).or_default();
        let (echo, received) = peer.echo?;
        let end = received + remaining;
        peer.bound = Some(peer.bound.map_or(end, |b| b.max(end)));
        Some(Grant {
            echo,
            remaining,
            required,
        })
    }

    /// `target` answered a request of `term` sent at `sent`: `accepted`
    /// unless it answered with a higher vote.
    pub fn on_response(
        &mut self,
        term: u64,
        target: NodeId,
        sent: Instant,
        accepted: bool,
        stamp: Option<Stamp>,
        now: Instant,
    ) {
        if term != self.term || !accepted {
            return;
        }
        let peer = self.peers.entry(target).or_default();
        peer.acked = Some(peer.acked.map_or(sent, |a| a.max(sent)));
        if let Some(s) = stamp {
            peer.echo = Some((s, now));
        }
    }

    /// The newest send time accepted by a majority of every configuration
    /// in `configs` (this node, `me`, counts as `now`).
    pub fn quorum_at(
        &self,
        term: u64,
        me: NodeId,
        configs: &[Vec<NodeId>],
        now: Instant,
    ) -> Option<Instant> {
        if term != self.term || configs.is_empty() {
            return None;
        }
        let mut result: Option<Instant> = None;
        for voters in configs {
            if voters.is_empty() {
                return None;
            }
            let mut times: Vec<Option<Instant>> = voters
                .iter()
                .map(|id| {
                    if *id == me {
                        Some(now)
                    } else {
                        self.peers.get(id).and_then(|p| p.acked)
                    }
                })
                .collect();
            times.sort_by(|a, b| b.cmp(a));
            let t = times[voters.len() / 2]?;
            result = Some(result.map_or(t, |r| r.min(t)));
        }
        result
    }

    /// Whether a quorum of every configuration accepted a round sent less
    /// than `window` ago: while it did, this leader refuses votes (see
    /// [`LeaseState::refuses_votes`]).
    pub fn confirmed_within(
        &self,
        term: u64,
        me: NodeId,
        configs: &[Vec<NodeId>],
        now: Instant,
        window: Duration,
    ) -> bool {
        self.quorum_at(term, me, configs, now)
            .is_some_and(|t0| now < t0 + window)
    }

    /// The instant after which `target` certainly serves under no lease
    /// that this leader or an earlier one granted; `None` when this node
    /// has not led yet.
    pub fn bound(&self, target: NodeId, lease: Duration, vote_lease: Duration) -> Option<Instant> {
        let start = self.term_start?;
        let earlier_terms = start + lease.saturating_sub(vote_lease);
        let mine = self.peers.get(&target).and_then(|p| p.bound);
        Some(mine.map_or(earlier_terms, |m| m.max(earlier_terms)) + margin(lease))
    }
}

/// The lease state of one Raft node, shared by its network client, its
/// server and the coordinator.
pub(crate) struct LeaseState {
    me: NodeId,
    lease: Duration,
    vote_lease: Duration,
    metrics: OnceLock<watch::Receiver<RaftMetrics>>,
    inner: Mutex<(Holder, Granter)>,
}

impl LeaseState {
    pub fn new(me: NodeId, lease: Duration, vote_lease: Duration) -> Self {
        let incarnation = crate::rng::random::<u64>();
        Self {
            me,
            lease,
            vote_lease,
            metrics: OnceLock::new(),
            inner: Mutex::new((Holder::new(incarnation, Instant::now()), Granter::default())),
        }
    }

    /// Connects openraft's metrics (term, role, voters, last log index).
    pub fn attach(&self, metrics: watch::Receiver<RaftMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Holder, Granter)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(term, voter configs, last log index)` while this node leads.
    fn leading(&self) -> Option<(u64, Vec<Vec<NodeId>>, u64)> {
        let m = self.metrics.get()?.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.me) {
            return None;
        }
        let configs = m
            .membership_config
            .membership()
            .get_joint_config()
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect();
        Some((m.current_term, configs, m.last_log_index.unwrap_or(0)))
    }

    /// Leader: the grant to attach to a request of `term` for `target`.
    pub fn on_send(&self, term: u64, target: NodeId, last_sent: u64) -> Option<Grant> {
        let (lead_term, configs, last) = self.leading()?;
        if lead_term != term {
            return None;
        }
        let now = Instant::now();
        let mut g = self.lock();
        g.1.enter(term, now);
        let end =
            g.1.quorum_at(term, self.me, &configs, now)
                .map(|t| t + self.lease);
        g.1.on_send(term, target, now, end, last.max(last_sent))
    }

    /// Leader: `target` answered a request of `term` sent at `sent`.
    pub fn on_response(
        &self,
        term: u64,
        target: NodeId,
        sent: Instant,
        accepted: bool,
        stamp: Option<Stamp>,
    ) {
        let now = Instant::now();
        let leading = self.leading();
        let mut g = self.lock();
        let (holder, granter) = &mut *g;
        granter.on_response(term, target, sent, accepted, stamp, now);
        // The leader's own lease follows its quorum.
        if let Some((lead_term, configs, last)) = leading {
            if lead_term == term {
                if let Some(t0) = granter.quorum_at(term, self.me, &configs, now) {
                    holder.hold(t0 + self.lease, last, now);
                }
            }
        }
    }

    /// Follower: this node's stamp for an answer.
    pub fn stamp(&self) -> Stamp {
        self.lock().0.stamp(Instant::now())
    }

    /// Follower: a grant from a leader whose request this node accepted.
    pub fn accept(&self, grant: &Grant) -> bool {
        self.lock().0.accept(grant, Instant::now())
    }

    /// Until when this node may serve, if its serving state reflects the
    /// log up to index `applied`.
    pub fn valid_until(&self, applied: u64) -> Option<Instant> {
        let now = Instant::now();
        if let Some(end) = self.lock().0.valid_until(applied, now) {
            return Some(end);
        }
        // A leader that is the only voter hears no answers: its quorum is
        // itself, now.
        let (term, configs, last) = self.leading()?;
        let mut g = self.lock();
        let (holder, granter) = &mut *g;
        granter.enter(term, now);
        let t0 = granter.quorum_at(term, self.me, &configs, now)?;
        holder.hold(t0 + self.lease, last, now);
        holder.valid_until(applied, now)
    }

    /// Leader: whether to refuse a vote to another candidate. openraft's
    /// followers refuse votes for `vote_lease` after they last
    /// accepted the leader, but a leader's own refusal runs only from its
    /// election, and [`Granter::quorum_at`] counts the leader itself as
    /// "now": without this, a candidate could win with the leader's vote
    /// and voters that never accepted the leader's last rounds, before
    /// those rounds are `vote_lease` old, and the leases they
    /// confirmed would outlive the new leader's bound on them. So a leader
    /// refuses while a quorum accepted a round it sent within
    /// `vote_lease`; one that lost its quorum that long, or that
    /// stopped its heartbeats to hand over, votes again.
    pub fn refuses_votes(&self) -> bool {
        let Some((term, configs, _)) = self.leading() else {
            return false;
        };
        let now = Instant::now();
        let mut g = self.lock();
        g.1.enter(term, now);
        g.1.confirmed_within(term, self.me, &configs, now, self.vote_lease)
    }

    /// Leader: whether `target` accepted a request of this leader's term
    /// (it runs and follows this leader).
    pub fn responded(&self, target: NodeId) -> bool {
        let Some((term, _, _)) = self.leading() else {
            return false;
        };
        let g = self.lock();
        g.1.term == term && g.1.peers.get(&target).is_some_and(|p| p.acked.is_some())
    }

    /// Leader: after this instant `target` serves under no lease granted so
    /// far (by this leader or an earlier one); `None` when not leading.
    pub fn bound(&self, target: NodeId) -> Option<Instant> {
        let (term, _, _) = self.leading()?;
        let mut g = self.lock();
        g.1.enter(term, Instant::now());
        g.1.bound(target, self.lease, self.vote_lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(250);
    const ETMAX: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_leader_refuses_votes_while_a_quorum_accepted_a_round_within_the_window() {
        let t = Instant::now();
        let mut leader = Granter::default();
        let configs = vec![vec![1, 2, 3, 4, 5]];
        leader.enter(7, t);
        // Only the leader itself: no quorum yet.
        assert!(!leader.confirmed_within(7, 1, &configs, t, ETMAX));
        leader.on_response(7, 2, t, true, None, t + ms(1));
        assert!(!leader.confirmed_within(7, 1, &configs, t + ms(1), ETMAX));
        leader.on_response(7, 3, t + ms(2), true, None, t + ms(3));
        // {1, 2, 3}: the quorum's round is the older one, sent at t.
        assert!(leader.confirmed_within(7, 1, &configs, t + ETMAX - ms(1), ETMAX));
        assert!(!leader.confirmed_within(7, 1, &configs, t + ETMAX, ETMAX));
        // Another term's answers do not count.
        assert!(!leader.confirmed_within(8, 1, &configs, t + ms(5), ETMAX));
    }

    #[test]
    fn a_grant_ends_no_later_than_the_quorum_round_plus_the_lease() {
        let t = Instant::now();
        let mut leader = Granter::default();
        let mut f = Holder::new(7, t);
        // Round 1 at t: the follower answers 30 ms later with its stamp.
        leader.enter(1, t);
        assert_eq!(leader.on_send(1, 2, t, None, 0), None);
        let stamp = f.stamp(t + ms(10));
        leader.on_response(1, 2, t, true, Some(stamp), t + ms(30));
        let t0 = leader.quorum_at(1, 1, &[vec![1, 2, 3]], t + ms(30));
        assert_eq!(t0, Some(t), "leader and one of two peers: a quorum at t");
        // Round 2 at t+50 carries the grant; it arrives 40 ms later.
        let g = leader
            .on_send(1, 2, t + ms(50), t0.map(|x| x + LEASE), 5)
            .expect("grant");
        assert_eq!(g.remaining, LEASE - ms(50));
        assert!(f.accept(&g, t + ms(90)));
        // The follower's lease ends at its stamp + remaining = t + 210 ms,
        // before t0 + lease, although the request travelled 40 ms.
        assert_eq!(f.valid_until(5, t + ms(90)), Some(t + ms(210)));
        assert!(t + ms(210) <= t + LEASE);
        assert_eq!(f.valid_until(4, t + ms(90)), None, "index 5 not applied");
        assert_eq!(f.valid_until(5, t + ms(210)), None, "expired");
        // The leader's bound for the follower covers it.
        let b = leader.bound(2, LEASE, ETMAX).expect("leading");
        assert!(b >= t + ms(30) + g.remaining);
    }

    #[test]
    fn a_stale_or_foreign_echo_gives_nothing_usable() {
        let t = Instant::now();
        let mut f = Holder::new(7, t);
        let future = Grant {
            echo: Stamp {
                incarnation: 7,
                micros: 1_000_000,
            },
            remaining: LEASE,
            required: 0,
        };
        assert!(!f.accept(&future, t + ms(1)), "a stamp from the future");
        let foreign = Grant {
            echo: Stamp {
                incarnation: 8,
                micros: 0,
            },
            ..future
        };
        assert!(!f.accept(&foreign, t + ms(1)), "another incarnation");
        let old = Grant {
            echo: f.stamp(t),
            remaining: ms(100),
            required: 0,
        };
        assert!(f.accept(&old, t + ms(150)));
        assert_eq!(f.valid_until(0, t + ms(150)), None, "already over");
    }

    #[test]
    fn an_older_grant_bridges_until_the_newer_requirement_is_applied() {
        let t = Instant::now();
        let mut f = Holder::new(1, t);
        f.hold(t + ms(200), 3, t);
        f.hold(t + ms(300), 9, t + ms(50));
        assert_eq!(f.valid_until(3, t + ms(100)), Some(t + ms(200)));
        assert_eq!(f.valid_until(9, t + ms(100)), Some(t + ms(300)));
        assert_eq!(f.valid_until(3, t + ms(200)), None);
        // A later grant with a lower requirement replaces both.
        f.hold(t + ms(400), 2, t + ms(60));
        assert_eq!(f.grants.len(), 1);
        assert_eq!(f.valid_until(2, t + ms(100)), Some(t + ms(400)));
    }

    #[test]
    fn a_leader_without_a_quorum_stops_granting() {
        let t = Instant::now();
        let mut l = Granter::default();
        l.enter(4, t);
        for p in [2, 3, 4, 5] {
            l.on_response(4, p, t, true, Some(Stamp::default_for_test()), t);
        }
        let cfg = [vec![1, 2, 3, 4, 5]];
        assert_eq!(l.quorum_at(4, 1, &cfg, t + ms(10)), Some(t));
        // Only one peer keeps answering newer rounds: no newer quorum.
        l.on_response(4, 2, t + ms(100), true, None, t + ms(101));
        assert_eq!(l.quorum_at(4, 1, &cfg, t + ms(300)), Some(t));
        let end = l.quorum_at(4, 1, &cfg, t + ms(300)).map(|x| x + LEASE);
        assert_eq!(l.on_send(4, 2, t + ms(300), end, 0), None, "lease over");
        // Answers with a higher vote never count.
        l.on_response(4, 3, t + ms(290), false, None, t + ms(295));
        assert_eq!(l.quorum_at(4, 1, &cfg, t + ms(300)), Some(t));
        // Joint configs need a majority of each.
        let joint = [vec![1, 2, 3], vec![6, 7, 8]];
        assert_eq!(l.quorum_at(4, 1, &joint, t), None);
    }

    #[test]
    fn a_new_leader_waits_out_earlier_terms() {
        let t = Instant::now();
        let mut l = Granter::default();
        assert_eq!(l.bound(9, LEASE, ETMAX), None, "never led");
        l.enter(5, t);
        let b = l.bound(9, LEASE, ETMAX).expect("leading");
        assert_eq!(b, t + (LEASE - ETMAX) + margin(LEASE));
        // A lease of at most vote_lease needs no wait.
        assert_eq!(l.bound(9, ETMAX, ETMAX), Some(t + margin(ETMAX)));
        // A new term forgets the old term's peers.
        l.on_response(5, 2, t, true, None, t);
        l.enter(6, t + ms(500));
        assert_eq!(l.quorum_at(6, 1, &[vec![1, 2, 3]], t + ms(500)), None);
    }

    impl Stamp {
        fn default_for_test() -> Self {
            Stamp {
                incarnation: 0,
                micros: 0,
            }
        }
    }
}
