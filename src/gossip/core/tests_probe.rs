//! Unit tests of the probe cycle, relays, piggybacking, checksums and a
//! small simulated cluster.

use super::test_util::*;
use super::*;

#[test]
fn probe_ack_and_failed_probe_with_nacks() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    c.on_alive(t0, alive("c", 3, 1));
    c.take_outputs();
    let t = c.next_probe;
    c.tick(t);
    let out = sends(&mut c);
    let (to, msgs) = &out[0];
    let Msg::Ping(p) = &msgs[0] else {
        panic!("expected a ping, got {msgs:?}")
    };
    let target = p.target.clone();
    assert_eq!(*to, c.members[&target].addr);
    c.on_ack(
        t + Duration::from_millis(3),
        pb::Ack {
            seq: p.seq,
            checksum: 0,
        },
    );
    assert!(c.probe.is_none());
    assert_eq!(c.stats.rtt.count, 1);
    assert_eq!(c.stats.rtt.last, Duration::from_millis(3));

    // Next probe: no ack. After the probe timeout an indirect ping goes
    // to the other member; no nack either, so at the end of the interval
    // the target is suspect and local health drops by one.
    let t = c.next_probe;
    c.tick(t);
    let out = sends(&mut c);
    let Msg::Ping(p) = &out[0].1[0] else { panic!() };
    let (seq, target) = (p.seq, p.target.clone());
    let helper = if target == "b" { "c" } else { "b" };
    c.tick(t + c.cfg.probe_timeout);
    let out = sends(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, c.members[helper].addr);
    assert!(
        matches!(&out[0].1[0], Msg::IndirectPing(ip) if ip.seq == seq && ip.nack && ip.target == target)
    );
    c.tick(t + c.cfg.probe_interval);
    assert_eq!(status(&c, &target), Some(MemberStatus::Suspect));
    assert_eq!(c.awareness.score(), 1);
    assert_eq!(c.stats.probe_failures, 1);

    // With the nack, the fault is the target's, not ours: no health change.
    let mut c2 = core("a", 1);
    c2.on_alive(t0, alive("b", 2, 1));
    c2.on_alive(t0, alive("c", 3, 1));
    c2.take_outputs();
    let t = c2.next_probe;
    c2.tick(t);
    let out = sends(&mut c2);
    let Msg::Ping(p) = &out[0].1[0] else { panic!() };
    let seq = p.seq;
    c2.tick(t + c2.cfg.probe_timeout);
    let stream: Vec<_> = c2
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::StreamPing { ping, .. } => Some(ping.seq),
            _ => None,
        })
        .collect();
    assert_eq!(stream, vec![seq], "a fallback stream probe goes along");
    c2.handle_msg(t, addr(9), Msg::Nack(pb::Nack { seq }));
    assert!(c2.probe.is_some(), "waits for the stream probe");
    c2.stream_ping_done(t, seq, false);
    // The only helper said no and the stream failed: the probe is over
    // at once, and the fault is the target's, not ours: no health change.
    assert!(c2.probe.is_none());
    assert!(c2
        .members
        .values()
        .any(|m| m.status == MemberStatus::Suspect));
    assert_eq!(c2.awareness.score(), 0);
    assert_eq!(c2.stats.nacks_received, 1);
}

#[test]
fn stream_answer_prevents_suspicion() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    c.take_outputs();
    let t = c.next_probe;
    c.tick(t);
    c.take_outputs();
    let seq = c.probe.as_ref().map(|p| p.seq).unwrap();
    c.tick(t + c.cfg.probe_timeout);
    c.stream_ping_done(t, seq + 1, true);
    assert!(c.probe.is_some(), "a result for another probe is ignored");
    c.stream_ping_done(t, seq, true);
    assert!(c.probe.is_none());
    c.tick(t + c.cfg.probe_interval);
    assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
    assert_eq!(c.stats.stream_probe_acks, 1);
    // No helper existed, so no nacks were expected: health unchanged.
    assert_eq!(c.awareness.score(), 0);
}

#[test]
fn differing_checksum_in_ack_triggers_push_pull_once_quiet() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    let probe = |c: &mut Core, t: Instant| {
        c.tick(t);
        let out = sends(c);
        match &out[0].1[0] {
            Msg::Ping(p) => p.seq,
            m => panic!("expected a ping, got {m:?}"),
        }
    };
    // News still queued: no sync, gossip will deliver it.
    let t = c.next_probe;
    let seq = probe(&mut c, t);
    c.queue.push(
        BroadcastKey::Node("zz".into()),
        Bytes::from_static(b"x"),
        None,
    );
    c.on_ack(
        t,
        pb::Ack {
            seq,
            checksum: 12345,
        },
    );
    assert!(!c
        .take_outputs()
        .iter()
        .any(|o| matches!(o, Output::PushPull { .. })));
    // Nothing left to gossip: a differing checksum starts a push/pull.
    c.queue = BroadcastQueue::new(16);
    let t = c.next_probe;
    let seq = probe(&mut c, t);
    let mine = c.checksum();
    c.on_ack(
        t,
        pb::Ack {
            seq,
            checksum: mine,
        },
    );
    assert!(
        c.take_outputs().is_empty(),
        "equal checksums: nothing to do"
    );
    let t = c.next_probe;
    let seq = probe(&mut c, t);
    c.on_ack(
        t,
        pb::Ack {
            seq,
            checksum: mine ^ 1,
        },
    );
    let pp: Vec<_> = c
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::PushPull { to, join, .. } => Some((to, join)),
            _ => None,
        })
        .collect();
    assert_eq!(pp, vec![(addr(2), false)]);
    assert_eq!(c.stats.checksum_syncs, 1);
    // The cache follows changes of the table.
    let before = c.checksum();
    c.on_alive(t, alive("b", 2, 2));
    assert_ne!(c.checksum(), before);
    assert_eq!(c.checksum(), c.compute_checksum());
}

#[test]
fn awareness_slows_probing() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    c.awareness.apply(3);
    let t = c.next_probe;
    c.tick(t);
    assert_eq!(c.next_probe, t + c.cfg.probe_interval * 4);
    assert_eq!(
        c.probe.as_ref().map(|p| p.timeout_at),
        Some(t + c.cfg.probe_timeout * 4)
    );
}

#[test]
fn relays_indirect_probe_with_ack_or_nack() {
    let mut c = core("c", 3);
    let t0 = Instant::now();
    let req = pb::IndirectPing {
        seq: 77,
        target: "b".into(),
        target_addr: addr(2).to_string(),
        nack: true,
        source: "a".into(),
        source_addr: addr(1).to_string(),
    };
    c.handle_msg(t0, addr(1), Msg::IndirectPing(req.clone()));
    let out = sends(&mut c);
    assert_eq!(out[0].0, addr(2));
    let Msg::Ping(p) = &out[0].1[0] else { panic!() };
    c.on_ack(
        t0,
        pb::Ack {
            seq: p.seq,
            checksum: 0,
        },
    );
    let out = sends(&mut c);
    assert_eq!(out[0].0, addr(1));
    assert!(matches!(out[0].1[0], Msg::Ack(pb::Ack { seq: 77, .. })));
    // No answer from the target: a nack after the probe timeout.
    c.handle_msg(t0, addr(1), Msg::IndirectPing(req));
    c.take_outputs();
    c.tick(t0 + c.cfg.probe_timeout);
    let out = sends(&mut c);
    assert!(out
        .iter()
        .any(|(to, m)| *to == addr(1) && matches!(m[0], Msg::Nack(pb::Nack { seq: 77 }))));
}

#[test]
fn misdirected_ping_is_dropped() {
    let mut c = core("a", 1);
    c.on_ping(
        Instant::now(),
        addr(2),
        pb::Ping {
            seq: 1,
            target: "someone-else".into(),
            ..Default::default()
        },
    );
    assert!(sends(&mut c).is_empty());
    assert_eq!(c.stats.bad_packets, 1);
}

#[test]
fn piggyback_respects_packet_size() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    for i in 0..200 {
        let mut a = alive(&format!("node-{i:03}"), 2 + i % 200, 1);
        a.tags.insert("ep.raft".into(), "10.0.0.1:7000".into());
        c.on_alive(t0, a);
    }
    c.take_outputs();
    c.on_ping(
        Instant::now(),
        addr(2),
        pb::Ping {
            seq: 1,
            target: "a".into(),
            ..Default::default()
        },
    );
    c.tick(c.next_gossip);
    let outs = c.take_outputs();
    let mut packets = 0;
    for o in outs {
        if let Output::Send { packet, .. } = o {
            packets += 1;
            assert!(
                packet.len() <= c.cfg.packet_size,
                "{} > {}",
                packet.len(),
                c.cfg.packet_size
            );
            assert!(packet.len() > c.cfg.packet_size / 2, "packets are filled");
        }
    }
    assert!(packets >= 2);
}

#[test]
fn checksum_is_order_independent_and_sensitive() {
    let a = [
        ("a", MemberStatus::Alive, 1),
        ("b", MemberStatus::Suspect, 4),
    ];
    let b = [
        ("b", MemberStatus::Suspect, 4),
        ("a", MemberStatus::Alive, 1),
    ];
    assert_eq!(
        membership_checksum(a.into_iter()),
        membership_checksum(b.into_iter())
    );
    let c = [
        ("a", MemberStatus::Alive, 1),
        ("b", MemberStatus::Suspect, 5),
    ];
    assert_ne!(
        membership_checksum(a.into_iter()),
        membership_checksum(c.into_iter())
    );
    let d = [("a", MemberStatus::Alive, 1), ("b", MemberStatus::Dead, 4)];
    assert_ne!(
        membership_checksum(a.into_iter()),
        membership_checksum(d.into_iter())
    );
    // Name boundaries matter: ("ab","c") != ("a","bc").
    let e = [
        ("ab", MemberStatus::Alive, 1),
        ("c", MemberStatus::Alive, 1),
    ];
    let f = [
        ("a", MemberStatus::Alive, 1),
        ("bc", MemberStatus::Alive, 1),
    ];
    assert_ne!(
        membership_checksum(e.into_iter()),
        membership_checksum(f.into_iter())
    );
}

#[test]
fn sim_join_converges_and_detects_failure() {
    let mut sim = Sim::new(8);
    let seed = sim.nodes[0].me().addr;
    for i in 1..8 {
        sim.nodes[i].join(&[seed], 1);
        sim.deliver();
    }
    sim.run(Duration::from_secs(3));
    for i in 0..8 {
        let view: Vec<_> = sim
            .nodes
            .iter()
            .map(|c| status(c, &format!("n{i}")))
            .collect();
        assert!(
            sim.all_see(&format!("n{i}"), MemberStatus::Alive, None),
            "n{i} not alive everywhere: {view:?}"
        );
    }
    sim.cut.insert(3);
    sim.run(Duration::from_secs(30));
    assert!(sim.all_see("n3", MemberStatus::Dead, Some(3)));
    // Nobody else was falsely declared dead.
    for i in (0..8).filter(|&i| i != 3) {
        assert!(sim.all_see(&format!("n{i}"), MemberStatus::Alive, Some(3)));
    }
    // Graceful leave of n5 is seen as Left, not Dead.
    let now = sim.now;
    sim.nodes[5].leave(now);
    sim.run(Duration::from_secs(2));
    assert!(sim.nodes[5].has_left());
    assert!(sim.all_see("n5", MemberStatus::Left, Some(3)));
}
