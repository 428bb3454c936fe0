//! Merges the probe logs of every node with the faults the chaos run
//! injected, and measures: overlaps (a shard served by two nodes at the
//! same instant), unserved shard-time, leader changes and the time from
//! each heal until the cluster serves everything again.
//!
//! Pure: records in, report out; the chaos run calls it while it runs (to
//! wait for convergence and find the leader) and once at the end.
//!
//! What a node serves at instant `t` is what its probe last recorded before
//! `t`, except while it cannot answer at all: from a `kill -9` until its
//! probe starts again, and from a SIGSTOP until the probe's first record
//! after the SIGCONT (the sample that notices the gap). A probe that is
//! merely starved keeps its last state, which can only make overlaps look
//! longer, never hide one.

use std::collections::BTreeSet;

/// One line of a probe log (see `cli/probe.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Rec {
    /// The probe (re)started; the node serves nothing yet.
    Start {
        /// Shards in the cluster.
        shards: u32,
    },
    /// Half-open shard ranges gained and lost.
    Serve {
        /// Gained.
        add: Vec<[u32; 2]>,
        /// Lost.
        del: Vec<[u32; 2]>,
    },
    /// Role or leader changed.
    Role {
        /// This node is the leader.
        leader: bool,
    },
    /// Samples were more than 20 ms apart.
    Gap {
        /// Time of the previous sample.
        from: u64,
    },
    /// The full `is_serving` check disagreed on this many shards.
    Check {
        /// Shards that disagreed.
        mismatch: u64,
    },
    /// The agent left gracefully.
    Stop,
}

/// Parses one probe line into `(t_us, record)`; `None` for a torn or
/// unknown line.
pub fn parse(line: &str) -> Option<(u64, Rec)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let t = v["t"].as_u64()?;
    let ranges = |key: &str| -> Option<Vec<[u32; 2]>> {
        v[key]
            .as_array()?
            .iter()
            .map(|r| Some([r[0].as_u64()? as u32, r[1].as_u64()? as u32]))
            .collect()
    };
    let rec = match v["k"].as_str()? {
        "start" => Rec::Start {
            shards: v["shards"].as_u64()? as u32,
        },
        "serve" => Rec::Serve {
            add: ranges("add")?,
            del: ranges("del")?,
        },
        "role" => Rec::Role {
            leader: v["role"]
                .as_str()
                .is_some_and(|r| r.eq_ignore_ascii_case("leader")),
        },
        "gap" => Rec::Gap {
            from: v["from"].as_u64()?,
        },
        "check" => Rec::Check {
            mismatch: v["mismatch"].as_u64()?,
        },
        "stop" => Rec::Stop,
        _ => return None,
    };
    Some((t, rec))
}

/// What the chaos run did to a node, or to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `kill -9` of the node.
    Kill,
    /// SIGSTOP of the node.
    Freeze,
    /// SIGCONT of the node.
    Thaw,
    /// Fault number `i` was healed (partition removed, node restarted or
    /// resumed).
    Heal(usize),
}

/// One runner action, stamped just before it was carried out.
#[derive(Debug, Clone, Copy)]
pub struct RunnerEvent {
    /// Wall-clock µs.
    pub t: u64,
    /// The node it was done to (index), if any.
    pub node: Option<usize>,
    /// What was done.
    pub what: Action,
}

/// An injected fault: its type and when it started.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Fault type (`kill-leader`, `leader-minority`, ...).
    pub kind: &'static str,
    /// Wall-clock µs of the injection.
    pub t_inject: u64,
}

/// One shard served by two or more nodes for an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    /// The shard.
    pub shard: u32,
    /// Start (µs).
    pub start: u64,
    /// End (µs).
    pub end: u64,
    /// Nodes serving it when the overlap began.
    pub nodes: Vec<usize>,
}

impl Overlap {
    /// Its length in µs.
    pub fn len_us(&self) -> u64 {
        self.end - self.start
    }
}

/// Measurements charged to one fault (from its injection to the next).
#[derive(Debug, Clone, Default)]
pub struct FaultStats {
    /// Shard overlaps that began in the window.
    pub overlaps: u32,
    /// The longest of them (µs).
    pub worst_overlap_us: u64,
    /// Most shards overlapping at once.
    pub max_shards: u32,
    /// Leadership acquisitions in the window.
    pub leader_changes: u32,
    /// Unserved shard-µs in the window.
    pub unserved_shard_us: u128,
    /// From the heal to every node serving and all shards served (µs);
    /// `None`: not seen before the next fault or the end.
    pub convergence_us: Option<u64>,
    /// When it was healed.
    pub t_heal: Option<u64>,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Shards in the cluster.
    pub shards: u32,
    /// First instant at which every node served and every shard was served.
    pub formed_at: Option<u64>,
    /// Every shard overlap.
    pub overlaps: Vec<Overlap>,
    /// Leadership acquisitions after the first: `(t, node)`.
    pub leader_changes: Vec<(u64, usize)>,
    /// Unserved shard-µs after formation.
    pub unserved_shard_us: u128,
    /// Per fault, in the order given.
    pub faults: Vec<FaultStats>,
    /// At the end: every node serves, every shard is served, none twice.
    pub converged_now: bool,
    /// At the end: the node that most recently became leader and still is.
    pub leader_now: Option<usize>,
    /// Sum of the probes' full-check disagreements.
    pub check_mismatches: u64,
    /// Probe gaps outside SIGSTOPs (a starved probe): count and worst µs.
    pub starved_gaps: (u32, u64),
}

/// A fixed-size set of shards.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(shards: u32) -> Bits {
        Bits(vec![0; shards.div_ceil(64) as usize])
    }

    fn set_ranges(&mut self, ranges: &[[u32; 2]], on: bool, shards: u32) {
        for r in ranges {
            for s in r[0]..r[1].min(shards) {
                let (w, b) = (s as usize / 64, s % 64);
                if on {
                    self.0[w] |= 1 << b;
                } else {
                    self.0[w] &= !(1 << b);
                }
            }
        }
    }

    fn contains(&self, s: u32) -> bool {
        self.0[s as usize / 64] & (1 << (s % 64)) != 0
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Shards in `self` and not in `other`.
    fn minus<'a>(&'a self, other: &'a Bits) -> impl Iterator<Item = u32> + 'a {
        self.0
            .iter()
            .zip(&other.0)
            .enumerate()
            .flat_map(|(i, (a, b))| {
                let mut w = a & !b;
                std::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let s = i as u32 * 64 + w.trailing_zeros();
                    w &= w - 1;
                    Some(s)
                })
            })
    }
}

#[derive(Debug, Clone)]
struct Node {
    /// What the probe last recorded.
    probe: Bits,
    /// What the node is taken to serve (empty while dead or frozen).
    eff: Bits,
    started: bool,
    dead: bool,
    frozen: bool,
    /// SIGCONT time while still frozen.
    thaw_at: Option<u64>,
    leader: bool,
    leader_since: u64,
}

enum Ev<'a> {
    Probe(usize, &'a Rec),
    Runner(&'a RunnerEvent),
}

struct Sweep<'a> {
    shards: u32,
    nodes: Vec<Node>,
    count: Vec<u8>,
    unserved: u32,
    overlapping: u32,
    open: Vec<Option<(u64, Vec<usize>)>>,
    faults: &'a [Fault],
    report: Report,
    pending_heals: BTreeSet<usize>,
    acquisitions: u32,
    last_t: u64,
}

/// Measures `probes` (per node: `(t, record)` in file order) against the
/// runner's actions and faults, up to `t_end`.
pub fn analyse(
    probes: &[Vec<(u64, Rec)>],
    runner: &[RunnerEvent],
    faults: &[Fault],
    t_end: u64,
) -> Report {
    let shards = probes
        .iter()
        .flatten()
        .filter_map(|(_, r)| match r {
            Rec::Start { shards } => Some(*shards),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut events: Vec<(u64, Ev)> = Vec::new();
    for (n, recs) in probes.iter().enumerate() {
        events.extend(recs.iter().map(|(t, r)| (*t, Ev::Probe(n, r))));
    }
    events.extend(runner.iter().map(|e| (e.t, Ev::Runner(e))));
    // Stable: records of one node keep their file order at equal times.
    events.sort_by_key(|(t, _)| *t);
    let node = Node {
        probe: Bits::new(shards),
        eff: Bits::new(shards),
        started: false,
        dead: false,
        frozen: false,
        thaw_at: None,
        leader: false,
        leader_since: 0,
    };
    let mut sweep = Sweep {
        shards,
        nodes: vec![node; probes.len()],
        count: vec![0; shards as usize],
        unserved: shards,
        overlapping: 0,
        open: vec![None; shards as usize],
        faults,
        report: Report {
            shards,
            faults: vec![FaultStats::default(); faults.len()],
            ..Report::default()
        },
        pending_heals: BTreeSet::new(),
        acquisitions: 0,
        last_t: events.first().map(|(t, _)| *t).unwrap_or(t_end),
    };
    for (t, ev) in &events {
        if *t > t_end {
            break;
        }
        sweep.advance(*t);
        match ev {
            Ev::Probe(n, r) => sweep.probe(*n, *t, r),
            Ev::Runner(e) => sweep.runner(e),
        }
        sweep.check_converged(*t);
    }
    sweep.finish(t_end)
}

impl Sweep<'_> {
    /// The fault whose window holds `t`.
    fn fault_at(&self, t: u64) -> Option<usize> {
        self.faults.iter().rposition(|f| f.t_inject <= t)
    }

    /// Charges unserved time up to `t`.
    fn advance(&mut self, t: u64) {
        let dt = t.saturating_sub(self.last_t);
        if self.report.formed_at.is_some() && dt > 0 {
            let cost = self.unserved as u128 * dt as u128;
            self.report.unserved_shard_us += cost;
            if let Some(f) = self.fault_at(self.last_t) {
                self.report.faults[f].unserved_shard_us += cost;
            }
        }
        self.last_t = self.last_t.max(t);
    }

    fn probe(&mut self, n: usize, t: u64, rec: &Rec) {
        let shards = self.shards;
        let fault = self.fault_at(t);
        let node = &mut self.nodes[n];
        if matches!(rec, Rec::Start { .. }) {
            node.started = true;
            node.dead = false;
            node.frozen = false;
            node.thaw_at = None;
            node.probe = Bits::new(shards);
            node.leader = false;
        }
        if node.dead || !node.started {
            return;
        }
        if node.frozen && node.thaw_at.is_some_and(|c| t >= c) {
            node.frozen = false;
            node.thaw_at = None;
        } else if let Rec::Gap { from } = rec {
            if !node.frozen {
                let g = &mut self.report.starved_gaps;
                g.0 += 1;
                g.1 = g.1.max(t - from);
            }
        }
        match rec {
            Rec::Serve { add, del } => {
                node.probe.set_ranges(del, false, shards);
                node.probe.set_ranges(add, true, shards);
            }
            Rec::Role { leader } => {
                if *leader && !node.leader {
                    node.leader_since = t;
                    self.acquisitions += 1;
                    if self.acquisitions > 1 {
                        self.report.leader_changes.push((t, n));
                        if let Some(f) = fault {
                            self.report.faults[f].leader_changes += 1;
                        }
                    }
                }
                node.leader = *leader;
            }
            Rec::Check { mismatch } => self.report.check_mismatches += mismatch,
            Rec::Stop => {
                node.dead = true;
                node.probe = Bits::new(shards);
                node.leader = false;
            }
            Rec::Start { .. } | Rec::Gap { .. } => {}
        }
        self.update(n, t);
    }

    fn runner(&mut self, e: &RunnerEvent) {
        if let Action::Heal(f) = e.what {
            if let Some(s) = self.report.faults.get_mut(f) {
                s.t_heal = Some(e.t);
                self.pending_heals.insert(f);
            }
        }
        let Some(n) = e.node else { return };
        let shards = self.shards;
        let node = &mut self.nodes[n];
        match e.what {
            Action::Kill => {
                node.dead = true;
                node.frozen = false;
                node.thaw_at = None;
                node.probe = Bits::new(shards);
                node.leader = false;
            }
            Action::Freeze => {
                node.frozen = true;
                node.thaw_at = None;
            }
            Action::Thaw => node.thaw_at = Some(e.t),
            Action::Heal(_) => {}
        }
        self.update(n, e.t);
    }

    /// Recomputes what node `n` serves and applies the difference.
    fn update(&mut self, n: usize, t: u64) {
        let node = &self.nodes[n];
        let eff = if node.dead || node.frozen || !node.started {
            Bits::new(self.shards)
        } else {
            node.probe.clone()
        };
        if eff == node.eff {
            return;
        }
        let gained: Vec<u32> = eff.minus(&node.eff).collect();
        let lost: Vec<u32> = node.eff.minus(&eff).collect();
        self.nodes[n].eff = eff;
        for s in lost {
            let c = &mut self.count[s as usize];
            *c -= 1;
            match *c {
                0 => self.unserved += 1,
                1 => self.close(s, t),
                _ => {}
            }
        }
        for s in gained {
            let c = &mut self.count[s as usize];
            *c += 1;
            match *c {
                1 => self.unserved -= 1,
                2 => {
                    let nodes = (0..self.nodes.len())
                        .filter(|i| self.nodes[*i].eff.contains(s))
                        .collect();
                    self.open[s as usize] = Some((t, nodes));
                    self.overlapping += 1;
                    if let Some(f) = self.fault_at(t) {
                        let st = &mut self.report.faults[f];
                        st.max_shards = st.max_shards.max(self.overlapping);
                    }
                }
                _ => {}
            }
        }
    }

    fn close(&mut self, s: u32, t: u64) {
        let Some((start, nodes)) = self.open[s as usize].take() else {
            return;
        };
        self.overlapping -= 1;
        if t == start {
            return; // two records of one instant; no time overlapped
        }
        let o = Overlap {
            shard: s,
            start,
            end: t,
            nodes,
        };
        if let Some(f) = self.fault_at(start) {
            let st = &mut self.report.faults[f];
            st.overlaps += 1;
            st.worst_overlap_us = st.worst_overlap_us.max(o.len_us());
        }
        self.report.overlaps.push(o);
    }

    fn converged(&self) -> bool {
        self.shards > 0
            && self.unserved == 0
            && self.overlapping == 0
            && self.nodes.iter().all(|n| !n.eff.is_empty())
    }

    fn check_converged(&mut self, t: u64) {
        if !self.converged() {
            return;
        }
        if self.report.formed_at.is_none() {
            self.report.formed_at = Some(t);
        }
        for f in std::mem::take(&mut self.pending_heals) {
            let st = &mut self.report.faults[f];
            st.convergence_us = st.t_heal.map(|h| t.saturating_sub(h));
        }
    }

    fn finish(mut self, t_end: u64) -> Report {
        self.advance(t_end);
        for s in 0..self.shards {
            if self.open[s as usize].is_some() {
                self.close(s, t_end.max(self.last_t));
            }
        }
        self.report.converged_now = self.converged();
        self.report.leader_now = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.leader && !n.dead && !n.frozen)
            .max_by_key(|(_, n)| n.leader_since)
            .map(|(i, _)| i);
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(add: &[[u32; 2]], del: &[[u32; 2]]) -> Rec {
        Rec::Serve {
            add: add.to_vec(),
            del: del.to_vec(),
        }
    }

    fn start() -> Rec {
        Rec::Start { shards: 10 }
    }

    #[test]
    fn parses_probe_lines_and_skips_torn_ones() {
        let line = r#"{"t":5,"k":"serve","add":[[0,3]],"del":[]}"#;
        assert_eq!(parse(line), Some((5, serve(&[[0, 3]], &[]))));
        let role = r#"{"t":6,"k":"role","role":"Leader","leader":"n1"}"#;
        assert_eq!(parse(role), Some((6, Rec::Role { leader: true })));
        assert_eq!(parse(r#"{"t":7,"k":"ser"#), None);
    }

    #[test]
    fn counts_an_overlap_from_the_second_server_until_one_stops() {
        let probes = vec![
            vec![
                (0, start()),
                (10, serve(&[[0, 5]], &[])),
                (100, serve(&[], &[[0, 5]])),
            ],
            vec![
                (0, start()),
                (10, serve(&[[5, 10]], &[])),
                (60, serve(&[[3, 5]], &[])),
            ],
        ];
        let r = analyse(&probes, &[], &[], 200);
        assert_eq!(r.formed_at, Some(10));
        assert_eq!(r.overlaps.len(), 2);
        assert!(r.overlaps.iter().all(|o| o.len_us() == 40));
        assert_eq!(r.overlaps[0].nodes, vec![0, 1]);
        // Shards 0..3 unserved from 100 to 200.
        assert_eq!(r.unserved_shard_us, 3 * 100);
        assert!(!r.converged_now);
    }

    #[test]
    fn a_frozen_node_serves_nothing_until_its_first_sample_after_the_thaw() {
        let probes = vec![
            vec![
                (0, start()),
                (10, serve(&[[0, 5]], &[])),
                // Thawed at 500; the first sample (560) still serves 0..5.
                (560, Rec::Gap { from: 100 }),
                (561, serve(&[], &[[0, 5]])),
            ],
            vec![
                (0, start()),
                (10, serve(&[[5, 10]], &[])),
                (300, serve(&[[0, 5]], &[])),
            ],
        ];
        let runner = [
            RunnerEvent {
                t: 100,
                node: Some(0),
                what: Action::Freeze,
            },
            RunnerEvent {
                t: 500,
                node: Some(0),
                what: Action::Thaw,
            },
            RunnerEvent {
                t: 500,
                node: None,
                what: Action::Heal(0),
            },
        ];
        let faults = [Fault {
            kind: "pause-follower",
            t_inject: 100,
        }];
        let r = analyse(&probes, &runner, &faults, 1000);
        assert_eq!(r.overlaps.len(), 5, "{r:?}");
        assert!(r.overlaps.iter().all(|o| o.start == 560 && o.end == 561));
        assert_eq!(r.faults[0].overlaps, 5);
        assert_eq!(r.faults[0].worst_overlap_us, 1);
        // Shards 0..5 unserved from the freeze (100) to node 1 taking them (300).
        assert_eq!(r.unserved_shard_us, 5 * 200);
        // Node 0 serves nothing after 561, so the cluster never converges again.
        assert_eq!(r.faults[0].convergence_us, None);
        assert_eq!(r.starved_gaps.0, 0);
    }

    #[test]
    fn kill_ends_serving_and_convergence_is_timed_from_the_heal() {
        let probes = vec![
            vec![
                (0, start()),
                (10, serve(&[[0, 5]], &[])),
                // A record written as the kill landed is ignored.
                (101, serve(&[[9, 10]], &[])),
                (400, start()),
                (450, serve(&[[0, 5]], &[])),
            ],
            vec![
                (0, start()),
                (10, serve(&[[5, 10]], &[])),
                (200, serve(&[[0, 5]], &[])),
                (440, serve(&[], &[[0, 5]])),
                (449, Rec::Role { leader: true }),
            ],
        ];
        let runner = [
            RunnerEvent {
                t: 100,
                node: Some(0),
                what: Action::Kill,
            },
            RunnerEvent {
                t: 390,
                node: None,
                what: Action::Heal(0),
            },
        ];
        let faults = [Fault {
            kind: "kill-follower",
            t_inject: 100,
        }];
        let r = analyse(&probes, &runner, &faults, 1000);
        assert!(r.overlaps.is_empty(), "{r:?}");
        assert_eq!(r.faults[0].convergence_us, Some(60));
        assert_eq!(r.unserved_shard_us, 5 * 100 + 5 * 10);
        assert!(r.converged_now);
        assert_eq!(r.leader_now, Some(1));
        assert!(r.leader_changes.is_empty(), "the first leader is no change");
    }
}
