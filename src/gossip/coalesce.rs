//! Serf's event coalescing, sans-IO: member events (`coalesce_period` /
//! `quiescent_period`) and user events sent with `coalesce`
//! (`user_coalesce_period` / `user_quiescent_period`).
//!
//! The first event held opens a window; the window is flushed when no new
//! event arrived for the quiescent period, or when the coalesce period has
//! passed since the first one, whichever comes first. Within a window a
//! member keeps only its latest event (a join then a leave yields only the
//! leave), and a member whose flushed kind equals the last one delivered
//! for it is skipped (Serf's `lastEvents`; updates always pass). For user
//! events, only the newest Lamport time of each name is kept (several
//! events of that same time all pass). A zero period disables coalescing
//! (the default, as in Serf); events then pass through at once.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::member::{MemberEvent, MemberEventKind, UserEvent};

/// Most members whose last delivered kind is remembered; beyond it the
/// memory is cleared (a repeated kind may then pass once more).
const MAX_REMEMBERED: usize = 4096;

/// One coalescing window: when it opened and when its last event came.
#[derive(Debug, Clone)]
struct Window {
    period: Duration,
    quiescent: Duration,
    open: Option<(Instant, Instant)>,
}

impl Window {
    fn new(period: Duration, quiescent: Duration) -> Self {
        Window {
            period,
            quiescent,
            open: None,
        }
    }

    fn enabled(&self) -> bool {
        !self.period.is_zero() && !self.quiescent.is_zero()
    }

    /// An event arrived: open the window or extend its quiet time.
    fn touch(&mut self, now: Instant) {
        let first = self.open.map_or(now, |(first, _)| first);
        self.open = Some((first, now));
    }

    fn deadline(&self) -> Option<Instant> {
        self.open
            .map(|(first, last)| (first + self.period).min(last + self.quiescent))
    }

    /// Closes the window if its deadline has passed; true if it did.
    fn close_if_due(&mut self, now: Instant) -> bool {
        if self.deadline().is_some_and(|d| now >= d) {
            self.open = None;
            return true;
        }
        false
    }
}

/// Coalesces membership events per member.
#[derive(Debug)]
pub(crate) struct MemberCoalescer {
    window: Window,
    latest: BTreeMap<String, MemberEvent>,
    delivered: BTreeMap<String, MemberEventKind>,
    /// Events merged away or skipped as repeats.
    pub(crate) coalesced: u64,
}

impl MemberCoalescer {
    pub(crate) fn new(period: Duration, quiescent: Duration) -> Self {
        MemberCoalescer {
            window: Window::new(period, quiescent),
            latest: BTreeMap::new(),
            delivered: BTreeMap::new(),
            coalesced: 0,
        }
    }

    /// Takes `ev`; returns it at once when coalescing is off.
    pub(crate) fn push(&mut self, now: Instant, ev: MemberEvent) -> Option<MemberEvent> {
        if !self.window.enabled() {
            return Some(ev);
        }
        self.window.touch(now);
        if self.latest.insert(ev.member.name.clone(), ev).is_some() {
            self.coalesced += 1;
        }
        None
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.window.deadline()
    }

    /// The events of a window whose time is up (none otherwise), in member
    /// name order.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<MemberEvent> {
        if !self.window.close_if_due(now) {
            return Vec::new();
        }
        if self.delivered.len() > MAX_REMEMBERED {
            self.delivered.clear();
        }
        let mut out = Vec::new();
        for (name, ev) in std::mem::take(&mut self.latest) {
            let repeat =
                self.delivered.get(&name) == Some(&ev.kind) && ev.kind != MemberEventKind::Updated;
            if repeat {
                self.coalesced += 1;
                continue;
            }
            self.delivered.insert(name, ev.kind);
            out.push(ev);
        }
        out
    }
}

/// Coalesces user events sent with `coalesce` by name.
#[derive(Debug)]
pub(crate) struct UserCoalescer {
    window: Window,
    latest: BTreeMap<String, Vec<UserEvent>>,
    /// Events dropped for a newer one of the same name.
    pub(crate) coalesced: u64,
}

impl UserCoalescer {
    pub(crate) fn new(period: Duration, quiescent: Duration) -> Self {
        UserCoalescer {
            window: Window::new(period, quiescent),
            latest: BTreeMap::new(),
            coalesced: 0,
        }
    }

    /// Takes `ev`; returns it at once when coalescing is off or the event
    /// was not sent with `coalesce`.
    pub(crate) fn push(&mut self, now: Instant, ev: UserEvent) -> Option<UserEvent> {
        if !self.window.enabled() || !ev.coalesce {
            return Some(ev);
        }
        self.window.touch(now);
        let held = self.latest.entry(ev.name.clone()).or_default();
        match held.first().map(|e| e.ltime) {
            Some(t) if t > ev.ltime => self.coalesced += 1,
            Some(t) if t == ev.ltime => held.push(ev),
            Some(_) => {
                self.coalesced += held.len() as u64;
                *held = vec![ev];
            }
            None => held.push(ev),
        }
        None
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.window.deadline()
    }

    /// The events of a window whose time is up (none otherwise), by name.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<UserEvent> {
        if !self.window.close_if_due(now) {
            return Vec::new();
        }
        std::mem::take(&mut self.latest)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::member::{Member, MemberStatus};
    use std::collections::BTreeMap as Map;

    fn ev(kind: MemberEventKind, name: &str) -> MemberEvent {
        MemberEvent {
            kind,
            member: Member {
                name: name.into(),
                addr: "127.0.0.1:1".parse().expect("addr"),
                status: MemberStatus::Alive,
                incarnation: 1,
                tags: Map::new(),
            },
        }
    }

    fn user(name: &str, ltime: u64, coalesce: bool) -> UserEvent {
        UserEvent {
            ltime,
            name: name.into(),
            payload: ltime.to_le_bytes().to_vec(),
            coalesce,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_periods_pass_events_through() {
        let now = Instant::now();
        let mut m = MemberCoalescer::new(Duration::ZERO, 100 * MS);
        assert!(m.push(now, ev(MemberEventKind::Join, "a")).is_some());
        assert_eq!(m.deadline(), None);
        let mut u = UserCoalescer::new(100 * MS, Duration::ZERO);
        assert!(u.push(now, user("x", 1, true)).is_some());
    }

    #[test]
    fn a_flapping_member_yields_its_latest_state_once_quiet() {
        let t0 = Instant::now();
        let mut m = MemberCoalescer::new(10_000 * MS, 300 * MS);
        let mut now = t0;
        for i in 0..20 {
            let kind = if i % 2 == 0 {
                MemberEventKind::Failed
            } else {
                MemberEventKind::AliveAgain
            };
            assert!(m.push(now, ev(kind, "a")).is_none());
            assert!(m.flush(now).is_empty());
            now += 100 * MS;
        }
        m.push(now, ev(MemberEventKind::Join, "b"));
        // Quiet for less than the quiescent period: nothing yet.
        assert!(m.flush(now + 299 * MS).is_empty());
        assert_eq!(m.deadline(), Some(now + 300 * MS));
        let out = m.flush(now + 300 * MS);
        let kinds: Vec<_> = out
            .iter()
            .map(|e| (e.kind, e.member.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (MemberEventKind::AliveAgain, "a"),
                (MemberEventKind::Join, "b")
            ]
        );
        assert_eq!(m.coalesced, 19);
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn the_coalesce_period_bounds_a_busy_window_and_repeats_are_skipped() {
        let t0 = Instant::now();
        let mut m = MemberCoalescer::new(500 * MS, 200 * MS);
        let mut now = t0;
        // An event every 100 ms never leaves 200 ms of quiet: the 500 ms
        // period closes the window.
        let mut flushed = Vec::new();
        for _ in 0..8 {
            m.push(now, ev(MemberEventKind::Updated, "a"));
            m.push(now, ev(MemberEventKind::Join, "b"));
            now += 100 * MS;
            flushed.push(m.flush(now));
        }
        let first = flushed.iter().position(|f| !f.is_empty()).expect("a flush");
        assert_eq!(first, 4, "the window closes 500 ms after it opened");
        // The second window delivers the update again but not b's join,
        // which was the last kind delivered for b.
        let later: Vec<_> = flushed[first + 1..].iter().flatten().collect();
        let second = m.flush(now + 200 * MS);
        let all: Vec<_> = later.into_iter().chain(second.iter()).collect();
        assert!(all.iter().all(|e| e.member.name == "a"), "{all:?}");
        assert!(!all.is_empty());
    }

    #[test]
    fn join_then_leave_in_one_window_is_only_the_leave() {
        let now = Instant::now();
        let mut m = MemberCoalescer::new(MS * 1000, MS * 100);
        m.push(now, ev(MemberEventKind::Join, "a"));
        m.push(now + MS, ev(MemberEventKind::Leave, "a"));
        let out = m.flush(now + MS * 101);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, MemberEventKind::Leave);
    }

    #[test]
    fn user_events_keep_the_newest_of_each_name() {
        let now = Instant::now();
        let mut u = UserCoalescer::new(1000 * MS, 100 * MS);
        assert!(u.push(now, user("deploy", 1, true)).is_none());
        assert!(u.push(now, user("deploy", 3, true)).is_none());
        assert!(u.push(now, user("deploy", 2, true)).is_none());
        assert!(u.push(now, user("cfg", 5, true)).is_none());
        assert!(u.push(now, user("cfg", 5, true)).is_none());
        // Not coalesced: passes at once.
        assert!(u.push(now, user("deploy", 0, false)).is_some());
        let out = u.flush(now + 100 * MS);
        let got: Vec<_> = out.iter().map(|e| (e.name.as_str(), e.ltime)).collect();
        assert_eq!(got, [("cfg", 5), ("cfg", 5), ("deploy", 3)]);
        assert_eq!(u.coalesced, 2);
    }
}
