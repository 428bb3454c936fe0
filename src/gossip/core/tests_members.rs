//! Unit tests of member rules: alive/suspect/dead, refutation, leave,
//! force-leave, merges, user events and tags.

use super::test_util::*;
use super::*;
use crate::gossip::error::GossipError;
use crate::gossip::suspicion::suspicion_timeout;

#[test]
fn alive_rules() {
    let mut c = core("a", 1);
    let now = Instant::now();
    c.on_alive(now, alive("b", 2, 5));
    assert_eq!(events(&mut c), vec![(MemberEventKind::Join, "b".into())]);
    // Our own alive (queued at start) and the news about b.
    assert_eq!(c.queue.len(), 2, "news is re-broadcast");
    // Same or older incarnation: ignored.
    let mut stale = alive("b", 2, 5);
    stale.tags.insert("x".into(), "y".into());
    c.on_alive(now, stale.clone());
    c.on_alive(now, alive("b", 2, 4));
    assert!(events(&mut c).is_empty());
    // Newer incarnation with new tags: Updated.
    stale.incarnation = 6;
    c.on_alive(now, stale);
    assert_eq!(events(&mut c), vec![(MemberEventKind::Updated, "b".into())]);
    assert_eq!(c.members["b"].tags["x"], "y");
    // Garbage address: counted, ignored.
    let mut bad = alive("z", 3, 1);
    bad.addr = "nope".into();
    c.on_alive(now, bad);
    assert_eq!(status(&c, "z"), None);
    assert_eq!(c.stats.bad_packets, 1);
}

#[test]
fn suspicion_times_out_into_failure() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    for (i, n) in ["b", "c", "d"].iter().enumerate() {
        c.on_alive(t0, alive(n, i + 2, 1));
    }
    c.take_outputs();
    // Older incarnation: ignored.
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 0,
            node: "b".into(),
            from: "c".into(),
        },
    );
    assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "b".into(),
            from: "c".into(),
        },
    );
    assert_eq!(status(&c, "b"), Some(MemberStatus::Suspect));
    assert_eq!(events(&mut c), vec![(MemberEventKind::Suspect, "b".into())]);
    assert_eq!(c.stats.suspicions, 1);
    // n = 4, mult 3: k = 1 but n - 2 = 2 >= 1, so confirmations count.
    let s = &c.suspicions["b"];
    let min = suspicion_timeout(3, 4, Duration::from_secs(1));
    assert_eq!(s.deadline, t0 + min * c.cfg.suspicion_max_timeout_mult);
    // One independent confirmation brings it down to the minimum.
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "b".into(),
            from: "d".into(),
        },
    );
    assert_eq!(c.suspicions["b"].deadline, t0 + min);
    c.tick(t0 + min - Duration::from_millis(1));
    assert_eq!(status(&c, "b"), Some(MemberStatus::Suspect));
    c.tick(t0 + min);
    assert_eq!(status(&c, "b"), Some(MemberStatus::Dead));
    let ev = events(&mut c);
    assert!(
        ev.contains(&(MemberEventKind::Failed, "b".into())),
        "{ev:?}"
    );
    // A later alive at a higher incarnation brings it back.
    c.on_alive(t0 + min, alive("b", 2, 2));
    assert_eq!(
        events(&mut c),
        vec![(MemberEventKind::AliveAgain, "b".into())]
    );
}

#[test]
fn refuted_suspicion_is_cleared() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "b".into(),
            from: "x".into(),
        },
    );
    c.on_alive(t0, alive("b", 2, 2));
    assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
    assert!(c.suspicions.is_empty());
    c.tick(t0 + Duration::from_secs(3600));
    assert_eq!(status(&c, "b"), Some(MemberStatus::Alive));
}

#[test]
fn node_refutes_suspicion_and_death_of_itself() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    assert_eq!(c.me().incarnation, 1);
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "a".into(),
            from: "b".into(),
        },
    );
    assert_eq!(c.me().incarnation, 2);
    assert_eq!(c.me().status, MemberStatus::Alive);
    assert_eq!(c.stats.refutations, 1);
    assert_eq!(c.awareness.score(), 1, "being suspected hurts local health");
    // A stale suspicion (older incarnation) is ignored.
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "a".into(),
            from: "b".into(),
        },
    );
    assert_eq!(c.me().incarnation, 2);
    c.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 7,
            node: "a".into(),
            from: "b".into(),
        },
    );
    assert_eq!(c.me().incarnation, 8);
    // The refutation goes out with the next packet.
    c.on_alive(t0, alive("b", 2, 1));
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
    let out = sends(&mut c);
    let carried: Vec<_> = out[0]
        .1
        .iter()
        .filter_map(|m| match m {
            Msg::Alive(a) if a.node == "a" => Some(a.incarnation),
            _ => None,
        })
        .collect();
    assert_eq!(carried, vec![8]);
    // An alive about us with a different address at our incarnation is
    // refuted too (a stale or conflicting view).
    let mut other = alive("a", 9, 8);
    other.addr = addr(9).to_string();
    c.on_alive(t0, other);
    assert_eq!(c.me().incarnation, 9);
}

#[test]
fn leave_is_not_failure() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 3));
    c.take_outputs();
    c.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: "b".into(),
        },
    );
    assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
    assert_eq!(events(&mut c), vec![(MemberEventKind::Leave, "b".into())]);
    // Suspect/dead after leaving change nothing.
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 3,
            node: "b".into(),
            from: "c".into(),
        },
    );
    c.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: "c".into(),
        },
    );
    assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
    assert!(events(&mut c).is_empty());
    // Reaped after reap_left_after.
    c.tick(t0 + c.cfg.reap_left_after + REAP_CHECK);
    assert_eq!(status(&c, "b"), None);
    assert!(c.members.contains_key("a"));
}

#[test]
fn force_leave_turns_failed_into_left() {
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 3));
    assert!(!c.remove_failed(t0, "b", false), "only failed members");
    c.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: "c".into(),
        },
    );
    c.take_outputs();
    assert!(c.remove_failed(t0, "b", false));
    assert_eq!(status(&c, "b"), Some(MemberStatus::Left));
    assert_eq!(events(&mut c), vec![(MemberEventKind::Leave, "b".into())]);
    // Others apply it the same way from the broadcast.
    let mut d = core("d", 4);
    d.on_alive(t0, alive("b", 2, 3));
    d.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: "c".into(),
        },
    );
    d.on_dead(
        t0,
        pb::Dead {
            prune: false,
            incarnation: 3,
            node: "b".into(),
            from: "b".into(),
        },
    );
    assert_eq!(status(&d, "b"), Some(MemberStatus::Left));
    assert!(!c.remove_failed(t0, "nobody", false));
}

#[test]
fn force_leave_with_prune_forgets_the_member_everywhere() {
    let t0 = Instant::now();
    let dead = |from: &str| pb::Dead {
        prune: false,
        incarnation: 3,
        node: "b".into(),
        from: from.into(),
    };
    let mut c = core("a", 1);
    c.on_alive(t0, alive("b", 2, 3));
    assert!(!c.remove_failed(t0, "b", true), "an alive member stays");
    c.on_dead(t0, dead("c"));
    c.take_outputs();
    assert!(c.remove_failed(t0, "b", true));
    assert_eq!(status(&c, "b"), None);
    // A node that saw b fail forgets it from the broadcast; one that
    // already had it as left (a plain force-leave) forgets it too.
    let prune = pb::Dead {
        prune: true,
        ..dead("b")
    };
    let mut d = core("d", 4);
    d.on_alive(t0, alive("b", 2, 3));
    d.on_dead(t0, dead("c"));
    d.on_dead(t0, prune.clone());
    assert_eq!(status(&d, "b"), None);
    let mut e = core("e", 5);
    e.on_alive(t0, alive("b", 2, 3));
    e.on_dead(t0, dead("c"));
    e.on_dead(t0, dead("b"));
    assert_eq!(status(&e, "b"), Some(MemberStatus::Left));
    e.on_dead(t0, prune.clone());
    assert_eq!(status(&e, "b"), None);
    // A left member can be pruned from the command too.
    let mut f = core("f", 6);
    f.on_alive(t0, alive("b", 2, 3));
    f.on_dead(t0, dead("b"));
    assert!(!f.remove_failed(t0, "b", false));
    assert!(f.remove_failed(t0, "b", true));
    assert_eq!(status(&f, "b"), None);
}

#[test]
fn merge_treats_remote_death_as_suspicion() {
    let mut a = core("a", 1);
    let mut b = core("b", 2);
    let t0 = Instant::now();
    a.on_alive(t0, alive("c", 3, 1));
    b.on_alive(t0, alive("c", 3, 1));
    b.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "c".into(),
            from: "b".into(),
        },
    );
    b.tick(t0 + Duration::from_secs(3600));
    assert_eq!(status(&b, "c"), Some(MemberStatus::Dead));
    assert_ne!(a.checksum(), b.checksum());
    a.merge_remote(t0, b.local_state());
    assert_eq!(status(&a, "b"), Some(MemberStatus::Alive));
    assert_eq!(status(&a, "c"), Some(MemberStatus::Suspect));
    // A remote view saying *we* are dead makes us refute.
    let mut st = b.local_state();
    st.nodes.push(pb::NodeRecord {
        name: "a".into(),
        addr: addr(1).to_string(),
        incarnation: 1,
        status: pb::NodeStatus::Dead as i32,
        tags: Default::default(),
    });
    a.merge_remote(t0, st);
    assert_eq!(a.me().incarnation, 2);
}

#[test]
fn user_events_dedup_and_clock() {
    let mut a = core("a", 1);
    a.user_event(Instant::now(), "deploy".into(), b"v1".to_vec(), false)
        .unwrap();
    let e = pb::UserEvent {
        ltime: 10,
        name: "x".into(),
        payload: vec![1],
        coalesce: false,
    };
    a.on_user_event(Instant::now(), e.clone());
    a.on_user_event(Instant::now(), e);
    let users: Vec<_> = a
        .take_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::User(u) => Some((u.ltime, u.name)),
            _ => None,
        })
        .collect();
    assert_eq!(
        users,
        vec![(0, "deploy".to_string()), (10, "x".to_string())]
    );
    assert_eq!(a.ltime, 11);
    assert!(matches!(
        a.user_event(Instant::now(), "big".into(), vec![0; 1000], false),
        Err(GossipError::EventTooLarge { .. })
    ));
    // Coalescing: an older event of the same name after a newer one is
    // not delivered.
    a.on_user_event(
        Instant::now(),
        pb::UserEvent {
            ltime: 20,
            name: "c".into(),
            payload: vec![2],
            coalesce: true,
        },
    );
    a.on_user_event(
        Instant::now(),
        pb::UserEvent {
            ltime: 15,
            name: "c".into(),
            payload: vec![1],
            coalesce: true,
        },
    );
    let n = a
        .take_outputs()
        .into_iter()
        .filter(|o| matches!(o, Output::User(_)))
        .count();
    assert_eq!(n, 1);
}

#[test]
fn set_tags_bumps_incarnation_and_checks_size() {
    let mut a = core("a", 1);
    let mut t = BTreeMap::new();
    t.insert("ep.kv".to_string(), "10.0.0.1:9000".to_string());
    a.set_tags(t).unwrap();
    assert_eq!(a.me().incarnation, 2);
    assert_eq!(a.queue.len(), 1);
    let mut big = BTreeMap::new();
    big.insert("x".to_string(), "y".repeat(600));
    assert!(a.set_tags(big).is_err());
    assert_eq!(a.me().incarnation, 2);
}

#[test]
fn a_deep_broadcast_queue_warns_at_most_every_ten_seconds() {
    let mut c = cfg("a");
    c.queue_depth_warning = 5;
    let now = Instant::now();
    let mut a = Core::new(c, addr(1), now);
    // Alone, nothing drains the queue: each user event stays queued.
    for i in 0..10u8 {
        a.user_event(now, format!("e{i}"), vec![i], false).unwrap();
    }
    assert!(a.queue.len() > 5);
    a.tick(now + Duration::from_secs(1));
    assert_eq!(a.stats().queue_depth_warnings, 1);
    a.tick(now + Duration::from_secs(5));
    assert_eq!(a.stats().queue_depth_warnings, 1, "rate-limited");
    a.tick(now + Duration::from_secs(12));
    assert_eq!(a.stats().queue_depth_warnings, 2);

    // Zero never warns.
    let mut c = cfg("b");
    c.queue_depth_warning = 0;
    let mut b = Core::new(c, addr(2), now);
    for i in 0..10u8 {
        b.user_event(now, format!("e{i}"), vec![i], false).unwrap();
    }
    b.tick(now + Duration::from_secs(1));
    assert_eq!(b.stats().queue_depth_warnings, 0);
}

#[test]
fn a_member_flapping_between_suspect_and_alive_is_one_event_per_quiet_period() {
    let mut c = cfg("a");
    c.coalesce_period = Duration::from_secs(10);
    c.quiescent_period = Duration::from_millis(500);
    let t0 = Instant::now();
    let mut a = Core::new(c, addr(1), t0);
    // Only the flaps below change b: no probe of our own meanwhile.
    a.next_probe = t0 + Duration::from_secs(3600);
    a.on_alive(t0, alive("b", 2, 1));
    a.tick(t0 + Duration::from_millis(500));
    assert_eq!(events(&mut a), [(MemberEventKind::Join, "b".to_string())]);

    // 20 flaps in 2 s: suspected by c, refuted by b, every 100 ms.
    let mut now = t0 + Duration::from_secs(1);
    for round in 0..2u64 {
        for i in 0..10u64 {
            let inc = 2 + 2 * (round * 10 + i);
            a.on_suspect(
                now,
                pb::Suspect {
                    incarnation: inc - 1,
                    node: "b".into(),
                    from: "c".into(),
                },
            );
            now += Duration::from_millis(50);
            a.on_alive(now, alive("b", 2, inc));
            now += Duration::from_millis(50);
            a.tick(now);
            assert!(events(&mut a).is_empty(), "held while flapping");
        }
        // The second round ends suspected: an AliveAgain again would be
        // skipped as a repeat of the kind last delivered (Serf's rule).
        let kind = if round == 0 {
            MemberEventKind::AliveAgain
        } else {
            let s = pb::Suspect {
                incarnation: 2 + 2 * (round * 10 + 9),
                node: "b".into(),
                from: "c".into(),
            };
            a.on_suspect(now, s);
            MemberEventKind::Suspect
        };
        // Quiet for the quiescent period: one event with the latest state.
        assert!(a.next_deadline() <= now + Duration::from_millis(500));
        now += Duration::from_millis(500);
        a.tick(now);
        assert_eq!(events(&mut a), [(kind, "b".to_string())], "round {round}");
        now += Duration::from_secs(1);
    }
    assert!(a.stats().events_coalesced >= 38);
}

#[test]
fn a_stale_suspicion_of_us_is_answered_with_our_current_alive() {
    // `b` missed our refutation (it was cut off) and still suspects our
    // old incarnation; its buddy-system suspect rides on a probe of us.
    let mut c = core("a", 1);
    let t0 = Instant::now();
    c.on_alive(t0, alive("b", 2, 1));
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "a".into(),
            from: "c".into(),
        },
    );
    assert_eq!(c.me().incarnation, 2);
    c.take_outputs();
    c.on_suspect(
        t0,
        pb::Suspect {
            incarnation: 1,
            node: "a".into(),
            from: "b".into(),
        },
    );
    assert_eq!(c.me().incarnation, 2, "no new incarnation for a stale one");
    assert_eq!(c.stats.refutations, 1);
    let to_b: Vec<u64> = sends(&mut c)
        .into_iter()
        .filter(|(to, _)| *to == addr(2))
        .flat_map(|(_, msgs)| msgs)
        .filter_map(|m| match m {
            Msg::Alive(a) if a.node == "a" => Some(a.incarnation),
            _ => None,
        })
        .collect();
    assert!(
        !to_b.is_empty() && to_b.iter().all(|i| *i == 2),
        "b hears our current incarnation directly: {to_b:?}"
    );
}
