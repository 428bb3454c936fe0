//! Unit tests of the checker core, driven by a hand-moved clock.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A probe sent: (destination, its reply, send time, the probe itself).
type Sent = (SocketAddr, [u8; PACKET_LEN], Duration, [u8; PACKET_LEN]);

/// Drives a core by hand: time only moves when the test says so. Targets
/// in `answering` reply `delay` after each probe; probes to targets in
/// `refusing` come back as "port unreachable" reports after `delay`.
struct Sim {
    core: CheckerCore,
    now: Instant,
    start: Instant,
    answering: Vec<SocketAddr>,
    refusing: Vec<SocketAddr>,
    delay: Duration,
    /// (arrival, peer, packet, is a refusal report quoting the probe).
    in_flight: Vec<(Instant, SocketAddr, [u8; PACKET_LEN], bool)>,
}

/// The timings these tests are written for (100 ms rounds, 3 retries),
/// fixed whatever the defaults are.
fn base() -> LivenessConfig {
    LivenessConfig {
        interval: Duration::from_millis(100),
        retries: 3,
        ..LivenessConfig::default()
    }
}

impl Sim {
    fn new() -> Self {
        Self::with(base())
    }

    fn with(config: LivenessConfig) -> Self {
        let start = Instant::now();
        Sim {
            core: CheckerCore::new(config, 7, start),
            now: start,
            start,
            answering: Vec::new(),
            refusing: Vec::new(),
            delay: MS,
            in_flight: Vec::new(),
        }
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    /// Moves time forward to `t` after start, delivering replies and
    /// waking the core at every wakeup on the way. Returns the probes
    /// sent, as (destination, reply packet, send time, probe packet).
    fn run_until(&mut self, t: Duration) -> Vec<Sent> {
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
            let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|f| f.0 <= now);
            self.in_flight = later;
            for (_, from, p, refused) in due {
                if refused {
                    self.core.on_refused(from, &p);
                } else {
                    self.core.on_packet(from, &p, now);
                }
            }
            self.core.on_tick(now);
            let mut buf = [0u8; PACKET_LEN];
            while let Some(to) = self.core.next_probe(now, &mut buf) {
                let p = Packet::decode(&buf).expect("own probe decodes");
                let reply = p.into_reply().to_bytes();
                if self.answering.contains(&to) {
                    self.in_flight.push((now + self.delay, to, reply, false));
                }
                if self.refusing.contains(&to) {
                    self.in_flight.push((now + self.delay, to, buf, true));
                }
                sent.push((to, reply, self.at(), buf));
            }
        }
        self.now = end;
        sent
    }

    fn reply(&mut self, from: SocketAddr, packet: &[u8]) {
        self.core.on_packet(from, packet, self.now);
    }

    fn reply_refused(&mut self, to: SocketAddr, probe: &[u8]) {
        self.core.on_refused(to, probe);
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
        ..base()
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

#[test]
fn crashed_target_is_dead_one_round_trip_after_its_next_probe() {
    let mut s = Sim::new();
    let a = addr(7000);
    s.core.add("a", a).expect("add");
    s.rounds(3, &[a], MS);
    // The process dies at 300 ms; its host answers every probe with port
    // unreachable 0.2 ms later. The probe at 300 ms is refused at 300.2,
    // re-probed at once and refused again at 300.4: dead.
    s.refusing = vec![a];
    s.answering.clear();
    s.delay = MS / 5;
    s.run_until(300 * MS);
    assert!(s.events().is_empty());
    s.run_until(300 * MS + MS / 2);
    assert_eq!(s.events(), vec![LivenessEvent::Dead("a".into())]);
    let st = s.core.stats();
    assert_eq!((st.refusals, st.refused_dead, st.probes_sent), (2, 1, 5));
    // Dead targets are not re-probed outside the rounds.
    s.run_until(1000 * MS);
    assert_eq!(s.core.stats().probes_sent, 12);
}

#[test]
fn one_forged_refusal_of_a_live_target_costs_a_reprobe_not_a_verdict() {
    let mut s = Sim::new();
    let a = addr(7001);
    s.core.add("a", a).expect("add");
    s.rounds(2, &[a], MS);
    // The target keeps answering; a forger quotes its probe back as port
    // unreachable before the real reply arrives.
    let probes = s.run_until(200 * MS);
    s.reply_refused(a, &probes[0].3);
    assert_eq!(s.core.stats().refusals, 1);
    s.rounds(5, &[a], MS);
    assert!(s.events().is_empty(), "the re-probe is answered");
    assert_eq!(s.core.status("a"), Some(TargetStatus::Alive));
    assert_eq!(s.core.targets()[0].consecutive_misses, 0);
    // One refusal, then answers, then one more refusal: never two in a row.
    let probes = s.run_until(800 * MS);
    s.reply_refused(a, &probes[0].3);
    s.rounds(1, &[a], MS);
    assert!(s.events().is_empty());
}

#[test]
fn refusals_not_quoting_the_current_probe_are_ignored() {
    let mut s = Sim::new();
    let (a, b) = (addr(7002), addr(7003));
    s.core.add("a", a).expect("add");
    s.core.add("b", b).expect("add");
    let first = s.run_until(MS);
    s.rounds(1, &[a, b], MS);
    let current = s.run_until(200 * MS);
    // An old probe, another target's probe, garbage, another checker's
    // probe, an unknown address, a reply instead of a probe.
    s.reply_refused(a, &first[0].3);
    s.reply_refused(a, &current[1].3);
    s.reply_refused(a, b"garbage");
    let mut foreign = Packet::decode(&current[0].3).expect("decodes");
    foreign.nonce = 8;
    s.reply_refused(a, &foreign.to_bytes());
    s.reply_refused(addr(9), &current[0].3);
    s.reply_refused(a, &current[0].1);
    assert_eq!(s.core.stats().refusals_ignored, 6);
    assert_eq!(s.core.stats().refusals, 0);
    // The current one counts, once.
    s.reply_refused(a, &current[0].3);
    s.reply_refused(a, &current[0].3);
    assert_eq!(s.core.stats().refusals, 1);
    assert_eq!(s.core.stats().refusals_ignored, 7);
}

#[test]
fn refusals_can_be_switched_off() {
    let mut s = Sim::with(LivenessConfig {
        refused_retries: 0,
        ..base()
    });
    let a = addr(7004);
    s.core.add("a", a).expect("add");
    s.rounds(3, &[a], MS / 2);
    s.answering.clear();
    s.refusing = vec![a];
    // Only the deadlines count: misses at 320, 420 and 520 ms.
    s.run_until(519 * MS);
    assert!(s.events().is_empty());
    s.run_until(520 * MS);
    assert_eq!(s.events(), vec![LivenessEvent::Dead("a".into())]);
    assert_eq!(s.core.stats().refusals, 0);
}
