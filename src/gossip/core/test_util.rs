//! Helpers shared by the core's unit tests.

use super::*;
use std::collections::BTreeSet;

pub(super) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8], 7946))
}

pub(super) fn cfg(name: &str) -> GossipConfig {
    GossipConfig {
        push_pull_interval: Duration::ZERO,
        reconnect_interval: Duration::ZERO,
        ..GossipConfig::local(name)
    }
}

pub(super) fn core(name: &str, i: usize) -> Core {
    Core::new(cfg(name), addr(i), Instant::now())
}

pub(super) fn alive(name: &str, i: usize, inc: u64) -> pb::Alive {
    pb::Alive {
        incarnation: inc,
        node: name.into(),
        addr: addr(i).to_string(),
        tags: Default::default(),
    }
}

pub(super) fn events(c: &mut Core) -> Vec<(MemberEventKind, String)> {
    c.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some((e.kind, e.member.name)),
            _ => None,
        })
        .collect()
}

pub(super) fn sends(c: &mut Core) -> Vec<(SocketAddr, Vec<Msg>)> {
    c.take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, packet } => {
                Some((to, codec::decode_datagram(&packet, None).ok()?.msgs))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn status(c: &Core, n: &str) -> Option<MemberStatus> {
    c.members.get(n).map(|m| m.status)
}

/// A tiny deterministic simulation: cores exchange datagrams instantly,
/// push/pulls are applied synchronously, links can be cut.
pub(super) struct Sim {
    pub(super) nodes: Vec<Core>,
    pub(super) now: Instant,
    pub(super) cut: BTreeSet<usize>,
}

impl Sim {
    pub(super) fn new(n: usize) -> Sim {
        let now = Instant::now();
        // Anti-entropy on: gossip alone with retransmit_mult 2 may miss
        // a node, push/pull repairs it.
        let nodes = (0..n)
            .map(|i| {
                let c = GossipConfig {
                    push_pull_interval: Duration::from_secs(1),
                    ..cfg(&format!("n{i}"))
                };
                Core::new(c, addr(i + 1), now)
            })
            .collect();
        Sim {
            nodes,
            now,
            cut: BTreeSet::new(),
        }
    }

    pub(super) fn idx(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|c| c.me().addr == a)
    }

    pub(super) fn deliver(&mut self) {
        for _ in 0..1000 {
            let mut any = false;
            for i in 0..self.nodes.len() {
                for o in self.nodes[i].take_outputs() {
                    any = true;
                    match o {
                        Output::Send { to, packet } => {
                            let Some(j) = self.idx(to) else { continue };
                            if self.cut.contains(&i) || self.cut.contains(&j) {
                                continue;
                            }
                            let from = self.nodes[i].me().addr;
                            let now = self.now;
                            self.nodes[j].handle_datagram(now, from, &packet);
                        }
                        Output::PushPull { to, .. } => {
                            let Some(j) = self.idx(to) else { continue };
                            if self.cut.contains(&i) || self.cut.contains(&j) {
                                continue;
                            }
                            let (si, sj) =
                                (self.nodes[i].local_state(), self.nodes[j].local_state());
                            let now = self.now;
                            self.nodes[i].merge_remote(now, sj);
                            self.nodes[j].merge_remote(now, si);
                        }
                        _ => {}
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    pub(super) fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for i in 0..self.nodes.len() {
                if self.nodes[i].next_deadline() <= self.now {
                    let now = self.now;
                    self.nodes[i].tick(now);
                }
            }
            self.deliver();
        }
    }

    pub(super) fn all_see(&self, name: &str, s: MemberStatus, except: Option<usize>) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != except)
            .all(|(_, c)| status(c, name) == Some(s))
    }
}
