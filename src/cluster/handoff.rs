//! Shard hand-off hooks: how a stateful service takes part in a move.
//!
//! A service that keeps data per shard creates a [`Handoff`] with
//! [`handoff`] and passes it to [`Cluster::start_with_handoff`] (or
//! [`Agent::start_with_handoff`](crate::Agent::start_with_handoff)); it
//! reads [`HandoffEvent`]s from the [`HandoffEvents`] it got back. With no
//! handoff registered a node behaves as before: it acknowledges a proposal
//! as soon as it applied it and serves what it gains at the commit.
//!
//! # The protocol
//!
//! 1. **Proposal.** When the node applies `Propose{epoch, map}` it first
//!    stops serving every shard the proposal takes away from it (its
//!    [`ServingSet`](super::ServingSet) drops them;
//!    [`Cluster::is_serving`] is false for them from then on). Then it sends
//!    [`HandoffEvent::Proposed`] listing the shards it releases (with their
//!    new owner) and the shards it will acquire (with their current owner).
//!    When it releases shards it acknowledges the epoch to the leader only
//!    once the service called [`Proposed::released`] (or dropped the
//!    event), or when [`HandoffSettings::release_deadline`] passed,
//!    whichever comes first. The deadline must be below the cluster's
//!    `ack_timeout`; raise `ack_timeout` to give a slow service more room.
//! 2. **Commit.** When the node applies `Commit{epoch}` it sends
//!    [`HandoffEvent::Committed`] with the shards it acquires, each with the
//!    previous owner and that owner's endpoint for the service
//!    ([`HandoffSettings::endpoint`]). Those shards are *withheld*:
//!    [`Cluster::is_serving`] stays false for them until the service
//!    calls [`Committed::ready`] for the shard (after pulling its data from the
//!    previous owner). A restart delivers one `Committed` with every shard
//!    the node owns in the committed map it loaded, with no previous owner.
//!
//! # Guarantees
//!
//! * The hooks never widen what a node serves: released shards leave the
//!   serving set before the event is sent, acquired shards join it only
//!   after both the commit and `ready`. So the ownership guarantee of the
//!   serving lease (no two nodes serve one shard at any instant) holds
//!   unchanged, with or without a handler.
//! * A releasing owner **must not accept writes** for a released shard: the
//!   service checks `is_serving` when it accepts a write and makes
//!   `released` wait for writes already accepted (a per-shard lock held
//!   across the check and the write is enough). After that it **may still
//!   answer hand-off reads** (the new owner pulling the shard's data), and
//!   should keep the data until the new owner has it.
//! * The new owner pulls after the commit, when the previous owner has
//!   acknowledged and thus finished releasing: the data it pulls is final,
//!   unless the release ran past its deadline (counted in
//!   [`NodeStats::handoff_release_timeouts`](super::NodeStats) and logged),
//!   when a write accepted before the proposal may still land after the
//!   pull.
//!
//! # Not guaranteed
//!
//! * A previous owner that is dead (kill -9, partition) cannot be pulled
//!   from; the map still commits once its lease has certainly ended. The
//!   service decides: wait and retry until it is back with its data (the
//!   shard stays unavailable), or serve without it (its data is lost).
//! * Events are queued (bounded). If the service falls so far behind that
//!   the queue is full, the node counts the event as dropped
//!   (`NodeStats::handoff_dropped`), acknowledges
//!   after the deadline and does not withhold the shards of a dropped
//!   commit, as if no handoff were registered for that map.
//! * A node that restarts between acknowledging a proposal and its commit
//!   learns the commit as part of its loaded state: the shards come with no
//!   previous owner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::shards::ShardMap;
#[cfg(doc)]
use crate::Cluster;

/// How a service's hand-off hooks are run.
#[derive(Debug, Clone)]
pub struct HandoffSettings {
    /// The service's endpoint name (`ep.<name>` tag): the previous owner's
    /// address for it comes with each acquired shard.
    pub endpoint: String,
    /// How long a proposal's acknowledgement waits for
    /// [`Proposed::released`]; below the cluster's `ack_timeout`.
    pub release_deadline: Duration,
    /// Events queued for the service before new ones are dropped.
    pub queue: usize,
}

impl HandoffSettings {
    /// Settings for the service published as endpoint `endpoint`, with a
    /// 200 ms release deadline and a queue of 64 events.
    pub fn new(endpoint: impl Into<String>) -> HandoffSettings {
        HandoffSettings {
            endpoint: endpoint.into(),
            release_deadline: Duration::from_millis(200),
            queue: 64,
        }
    }
}

/// One shard changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMove {
    /// The shard.
    pub shard: u32,
    /// Its owner in the committed map before the move (`None`: unowned).
    pub from: Option<String>,
    /// Its owner after the move (`None`: unowned).
    pub to: Option<String>,
    /// For an acquired shard, the previous owner's endpoint for the
    /// service, when it published one.
    pub from_endpoint: Option<String>,
}

/// What a node tells its service about a move.
#[derive(Debug)]
pub enum HandoffEvent {
    /// A proposal was applied: stop taking writes for `release`, then call
    /// [`Proposed::released`].
    Proposed(Proposed),
    /// A map was committed: pull `acquire`, then call
    /// [`Committed::ready`] for each shard.
    Committed(Committed),
}

/// A proposal this node applied.
#[derive(Debug)]
pub struct Proposed {
    /// The proposal's epoch.
    pub epoch: u64,
    /// Shards this node releases (`from` is this node).
    pub release: Vec<ShardMove>,
    /// Shards this node will acquire if the proposal commits.
    pub acquire: Vec<ShardMove>,
    done: Option<oneshot::Sender<()>>,
}

impl Proposed {
    /// The service has stopped writing to every released shard: the node
    /// may acknowledge. Dropping the event has the same effect.
    pub fn released(mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// A map this node applied as committed.
#[derive(Debug)]
pub struct Committed {
    /// The committed epoch.
    pub epoch: u64,
    /// Shards this node acquires, withheld from serving until ready.
    pub acquire: Vec<ShardMove>,
    gate: Gate,
}

impl Committed {
    /// A handle that marks acquired shards ready (cloneable, for tasks that
    /// pull shards in parallel).
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// `shard`'s data is in place: this node may serve it (under its lease).
    pub fn ready(&self, shard: u32) {
        self.gate.ready(shard);
    }
}

/// Shards withheld from serving until the service has their data.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    withheld: Arc<Mutex<BTreeSet<u32>>>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.withheld.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `shard` ready: it is no longer withheld.
    pub fn ready(&self, shard: u32) {
        self.lock().remove(&shard);
    }

    /// Whether `shard` is withheld.
    pub fn is_withheld(&self, shard: u32) -> bool {
        self.lock().contains(&shard)
    }

    /// How many shards are withheld.
    pub fn withheld(&self) -> usize {
        self.lock().len()
    }
}

/// The receiving end of a service's hand-off events.
pub type HandoffEvents = mpsc::Receiver<HandoffEvent>;

/// A service's registration, passed to the node at start.
#[derive(Debug)]
pub struct Handoff {
    settings: HandoffSettings,
    tx: mpsc::Sender<HandoffEvent>,
    gate: Gate,
}

/// A registration and the events it will deliver.
pub fn handoff(settings: HandoffSettings) -> (Handoff, HandoffEvents) {
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let gate = Gate::default();
    (Handoff { settings, tx, gate }, rx)
}

impl Handoff {
    pub(super) fn settings(&self) -> &HandoffSettings {
        &self.settings
    }

    pub(super) fn gate(&self) -> Gate {
        self.gate.clone()
    }
}

/// The node's side: turns applied maps into events. No awaits: the node
/// task waits for releases in a job.
#[derive(Debug)]
pub(super) struct Hooks {
    reg: Handoff,
    /// Acquisitions computed when a proposal was applied, by epoch: its
    /// `from` is the owner in the map committed just before it.
    planned: BTreeMap<u64, Vec<ShardMove>>,
    /// Events the service's queue refused.
    pub dropped: u64,
    /// Releases that ran past the deadline.
    pub timeouts: u64,
}

/// What the node task must wait for before acknowledging.
pub(super) struct Release {
    pub epoch: u64,
    pub done: oneshot::Receiver<()>,
    pub deadline: Duration,
}

/// Owner moves from `old` to `new` that concern `me`: (released, acquired).
pub(super) fn moves(
    me: &str,
    old: Option<&ShardMap>,
    new: &ShardMap,
) -> (Vec<ShardMove>, Vec<ShardMove>) {
    let (mut release, mut acquire) = (Vec::new(), Vec::new());
    let same_size = old.is_none_or(|o| o.shard_count() == new.shard_count());
    for shard in 0..new.shard_count() {
        let from = old
            .filter(|_| same_size)
            .and_then(|o| o.owner_of(shard).map(str::to_string));
        let to = new.owner_of(shard).map(str::to_string);
        if from == to {
            continue;
        }
        let mv = ShardMove {
            shard,
            from: from.clone(),
            to: to.clone(),
            from_endpoint: None,
        };
        if from.as_deref() == Some(me) {
            release.push(mv);
        } else if to.as_deref() == Some(me) {
            acquire.push(mv);
        }
    }
    (release, acquire)
}

impl Hooks {
    pub(super) fn new(reg: Handoff) -> Hooks {
        Hooks {
            reg,
            planned: BTreeMap::new(),
            dropped: 0,
            timeouts: 0,
        }
    }

    fn send(&mut self, ev: HandoffEvent) -> bool {
        match self.reg.tx.try_send(ev) {
            Ok(()) => true,
            Err(e) => {
                self.dropped += 1;
                tracing::warn!(error = %e, "hand-off event dropped");
                false
            }
        }
    }

    /// A proposal of `pending` was applied over `committed`, and this node
    /// is to acknowledge it. Returns what to wait for before acknowledging
    /// (`None`: acknowledge now).
    pub(super) fn proposed(
        &mut self,
        me: &str,
        committed: Option<&ShardMap>,
        pending: &ShardMap,
    ) -> Option<Release> {
        let epoch = pending.epoch();
        let (release, acquire) = moves(me, committed, pending);
        self.planned.insert(epoch, acquire.clone());
        let (tx, rx) = oneshot::channel();
        let waits = !release.is_empty();
        let ev = Proposed {
            epoch,
            release,
            acquire,
            done: waits.then_some(tx),
        };
        // A refused event still waits out the deadline: the service may
        // still be finishing writes it accepted.
        self.send(HandoffEvent::Proposed(ev));
        waits.then_some(Release {
            epoch,
            done: rx,
            deadline: self.reg.settings.release_deadline,
        })
    }

    /// A map was committed over `previous`: withholds what this node
    /// acquires and tells the service. `endpoint` resolves a node's
    /// endpoint for the service. Call before the new serving set is
    /// published.
    pub(super) fn committed(
        &mut self,
        me: &str,
        previous: Option<&ShardMap>,
        map: &ShardMap,
        endpoint: impl Fn(&str, &str) -> Option<String>,
    ) {
        let epoch = map.epoch();
        let planned = self.planned.remove(&epoch);
        self.planned.retain(|e, _| *e > epoch);
        let mut acquire = match planned {
            Some(p) => p,
            None => moves(me, previous, map).1,
        };
        // Only what it owns in the committed map counts (a plan is for the
        // very map committed, but be strict).
        acquire.retain(|m| map.owner_of(m.shard) == Some(me));
        for m in &mut acquire {
            m.from_endpoint = m
                .from
                .as_deref()
                .and_then(|n| endpoint(n, &self.reg.settings.endpoint));
        }
        let owned: BTreeSet<u32> = map.shards_of(me).into_iter().collect();
        let gate = self.reg.gate.clone();
        {
            let mut w = gate.lock();
            // Shards no longer owned are not withheld any more: a later
            // acquisition withholds them afresh.
            w.retain(|s| owned.contains(s));
            w.extend(acquire.iter().map(|m| m.shard));
        }
        if acquire.is_empty() {
            return;
        }
        let shards: Vec<u32> = acquire.iter().map(|m| m.shard).collect();
        let ev = Committed {
            epoch,
            acquire,
            gate: gate.clone(),
        };
        if !self.send(HandoffEvent::Committed(ev)) {
            for s in shards {
                gate.ready(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::rebalance;

    fn maps() -> (ShardMap, ShardMap) {
        let empty = ShardMap::new(64).expect("map");
        let m1 = rebalance(&empty, &[("a", 1), ("b", 1)])
            .expect("map")
            .with_epoch(1);
        let m2 = rebalance(&m1, &[("a", 1), ("b", 1), ("c", 1)])
            .expect("map")
            .with_epoch(2);
        (m1, m2)
    }

    #[test]
    fn a_proposal_lists_releases_and_waits_for_them() {
        let (m1, m2) = maps();
        let (reg, mut rx) = handoff(HandoffSettings::new("kv"));
        let mut hooks = Hooks::new(reg);
        let wait = hooks.proposed("a", Some(&m1), &m2).expect("a releases");
        let Ok(HandoffEvent::Proposed(p)) = rx.try_recv() else {
            panic!("no proposed event");
        };
        assert_eq!(p.epoch, 2);
        assert!(!p.release.is_empty() && p.acquire.is_empty());
        assert!(p.release.iter().all(|m| m.to.as_deref() == Some("c")));
        let mut done = wait.done;
        assert!(done.try_recv().is_err(), "not released yet");
        p.released();
        assert!(done.try_recv().is_ok());
        // The gaining node does not wait, but learns what comes.
        assert!(hooks.proposed("c", Some(&m1), &m2).is_none());
        let Ok(HandoffEvent::Proposed(p)) = rx.try_recv() else {
            panic!("no proposed event");
        };
        assert!(p.release.is_empty() && !p.acquire.is_empty());
    }

    #[test]
    fn acquired_shards_are_withheld_until_ready() {
        let (m1, m2) = maps();
        let (reg, mut rx) = handoff(HandoffSettings::new("kv"));
        let gate = reg.gate();
        let mut hooks = Hooks::new(reg);
        hooks.proposed("c", Some(&m1), &m2);
        let _ = rx.try_recv();
        let ep = |n: &str, name: &str| Some(format!("{n}/{name}"));
        hooks.committed("c", Some(&m1), &m2, ep);
        let Ok(HandoffEvent::Committed(c)) = rx.try_recv() else {
            panic!("no committed event");
        };
        assert_eq!(c.acquire.len(), m2.shards_of("c").len());
        let first = c.acquire[0].clone();
        assert_eq!(first.from_endpoint, first.from.map(|f| format!("{f}/kv")));
        assert_eq!(gate.withheld(), c.acquire.len());
        c.ready(first.shard);
        assert!(!gate.is_withheld(first.shard));
        assert_eq!(gate.withheld(), c.acquire.len() - 1);
        // A later map that takes them away un-withholds them.
        let m3 = rebalance(&m2, &[("a", 1), ("b", 1)])
            .expect("map")
            .with_epoch(3);
        hooks.committed("c", Some(&m2), &m3, ep);
        assert_eq!(gate.withheld(), 0);
    }

    #[test]
    fn a_full_queue_does_not_withhold() {
        let (m1, m2) = maps();
        let mut s = HandoffSettings::new("kv");
        s.queue = 1;
        let (reg, _rx) = handoff(s);
        let gate = reg.gate();
        let mut hooks = Hooks::new(reg);
        hooks.proposed("c", Some(&m1), &m2); // fills the queue
        hooks.committed("c", Some(&m1), &m2, |_, _| None);
        assert_eq!(hooks.dropped, 1);
        assert_eq!(gate.withheld(), 0);
    }
}
