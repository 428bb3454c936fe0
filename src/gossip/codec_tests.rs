//! Unit tests of the wire framing (a child module of `codec`).

use super::*;

fn ping(seq: u64) -> Msg {
    Msg::Ping(pb::Ping {
        seq,
        target: "b".into(),
        source: "a".into(),
        source_addr: "127.0.0.1:1".into(),
        checksum: 5,
    })
}

#[test]
fn single_and_compound_roundtrip() {
    let one = encode_datagram(&[ping(7).encode_part()], None, 1);
    assert_eq!(&one[..3], &[b'c', b'f', 1]);
    assert_eq!(one[3], MsgType::Ping as u8);
    let d = decode_datagram(&one, None).unwrap();
    assert_eq!(d.msgs, vec![ping(7)]);

    let alive = Msg::Alive(pb::Alive {
        incarnation: 3,
        node: "n".into(),
        addr: "127.0.0.1:2".into(),
        tags: [("ep.raft".to_string(), "x:1".to_string())].into(),
    });
    let parts = vec![
        ping(1).encode_part(),
        alive.encode_part(),
        Msg::Ack(pb::Ack {
            seq: 9,
            checksum: 1,
        })
        .encode_part(),
    ];
    let expected_len = HEADER_LEN
        + parts
            .iter()
            .map(|p| compound_part_cost(p.len()))
            .sum::<usize>();
    let c = encode_datagram(&parts, None, 1);
    assert_eq!(c.len(), expected_len, "size accounting must be exact");
    let d = decode_datagram(&c, None).unwrap();
    assert_eq!(d.msgs.len(), 3);
    assert_eq!(d.msgs[1], alive);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert_eq!(
        decode_datagram(&[], None).unwrap_err(),
        CodecError::Truncated(0)
    );
    assert_eq!(
        decode_datagram(b"xxxx", None).unwrap_err(),
        CodecError::BadMagic
    );
    assert_eq!(
        decode_datagram(&[b'c', b'f', 9, 1], None).unwrap_err(),
        CodecError::Version(9)
    );
    assert_eq!(
        decode_datagram(&[b'c', b'f', 1, 99], None).unwrap_err(),
        CodecError::UnknownType(99)
    );
    assert!(decode_datagram(&[b'c', b'f', 1, 18, 0], None).is_err());
    assert!(decode_datagram(&[b'c', b'f', 1, 1, 0xff, 0xff, 0xff], None).is_err());
    // Every prefix and many random buffers: never panics.
    let good = encode_datagram(&[ping(1).encode_part(), ping(2).encode_part()], None, 1);
    for i in 0..good.len() {
        let _ = decode_datagram(&good[..i], None);
    }
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        let mut buf = vec![b'c', b'f', 1, 16];
        for _ in 0..(x % 64) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        let _ = decode_datagram(&buf, None);
    }
}

#[test]
fn bad_compound_part_is_skipped() {
    let c = pb::Compound {
        parts: vec![ping(1).encode_part().to_vec(), vec![99, 1, 2], vec![16]],
    };
    let mut buf = header(1, MsgType::Compound).to_vec();
    buf.extend(c.encode_to_vec());
    let d = decode_datagram(&buf, None).unwrap();
    assert_eq!(d.msgs.len(), 1);
    assert_eq!(d.skipped, 2);
}

#[test]
fn encrypted_datagrams() {
    let k = Keyring::new(&[7u8; 32]).unwrap();
    let other = Keyring::new(&[8u8; 32]).unwrap();
    let parts = vec![ping(1).encode_part(), ping(2).encode_part()];
    let sealed = encode_datagram(&parts, Some(&k), 1);
    assert_eq!(sealed[3], MsgType::Encrypted as u8);
    let plain_len = encode_datagram(&parts, None, 1).len();
    assert_eq!(
        sealed.len(),
        plain_len + datagram_overhead(true) - datagram_overhead(false)
    );
    assert_eq!(decode_datagram(&sealed, Some(&k)).unwrap().msgs.len(), 2);
    assert_eq!(
        decode_datagram(&sealed, Some(&other)).unwrap_err(),
        CodecError::Decrypt
    );
    assert_eq!(
        decode_datagram(&sealed, None).unwrap_err(),
        CodecError::Decrypt
    );
    let plain = encode_datagram(&parts, None, 1);
    assert_eq!(
        decode_datagram(&plain, Some(&k)).unwrap_err(),
        CodecError::Decrypt
    );
}

fn big_alive(i: u64) -> Msg {
    Msg::Alive(pb::Alive {
        incarnation: i,
        node: format!("node-{i}"),
        addr: "127.0.0.1:7946".into(),
        tags: (0..8)
            .map(|t| (format!("ep.service-{t}"), format!("10.0.0.{t}:9000")))
            .collect(),
    })
}

fn opener(range: ProtocolRange) -> Opener<'static> {
    Opener {
        keyring: None,
        require: false,
        range,
    }
}

#[test]
fn version_two_compresses_large_datagrams_and_version_one_never() {
    let k = Keyring::new(&[7u8; 32]).unwrap();
    let parts: Vec<Bytes> = (0..4).map(|i| big_alive(i).encode_part()).collect();
    let v1 = encode_datagram(&parts, None, 1);
    let v2 = encode_datagram(&parts, None, 2);
    assert_eq!(v1[3], MsgType::Compound as u8);
    assert_eq!((v2[2], v2[3]), (2, MsgType::Compressed as u8));
    assert!(v2.len() < v1.len() / 2, "{} vs {}", v2.len(), v1.len());
    let new = ProtocolRange::default();
    for d in [&v1, &v2] {
        let got = decode_datagram_with(d, opener(new)).unwrap();
        assert_eq!(got.msgs.len(), 4);
    }
    // A node that speaks only version 1 refuses version 2 frames by their
    // header, before looking inside.
    let legacy = opener(ProtocolRange::LEGACY);
    assert_eq!(
        decode_datagram_with(&v2, legacy).unwrap_err(),
        CodecError::Version(2)
    );
    assert_eq!(decode_datagram_with(&v1, legacy).unwrap().msgs.len(), 4);
    // Compressed, then sealed: opens and inflates.
    let sealed = encode_datagram(&parts, Some(&k), 2);
    let o = Opener {
        keyring: Some(&k),
        require: true,
        range: new,
    };
    assert_eq!(decode_datagram_with(&sealed, o).unwrap().msgs.len(), 4);
    // Small datagrams stay as they are.
    let small = encode_datagram(&[ping(1).encode_part()], None, 2);
    assert_eq!(small[3], MsgType::Ping as u8);
}

/// A push/pull state of `n` members with an agent's tags.
fn agent_state(n: u32) -> StreamMsg {
    let tags = |i: u32| {
        let host = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let mut t: std::collections::HashMap<String, String> = [
            "gossip:7946",
            "raft:7948",
            "liveness:7949",
            "management:7947",
            "metrics:9100",
        ]
        .iter()
        .map(|e| {
            let (name, port) = e.split_once(':').unwrap();
            (format!("ep.{name}"), format!("{host}:{port}"))
        })
        .collect();
        t.insert("cf.cluster".into(), "production-eu".into());
        t.insert(
            "cf.id".into(),
            "3f9c2a7e-1b44-4c1d-9a0e-6b2f5d8c1e70".into(),
        );
        t.insert("cf.kind".into(), "member".into());
        t.insert("cf.weight".into(), "1".into());
        t.insert("cf.proto".into(), "1-2/2".into());
        t
    };
    StreamMsg::State(pb::PushPullState {
        from: "node-0".into(),
        nodes: (0..n)
            .map(|i| pb::NodeRecord {
                name: format!("node-{i}"),
                addr: format!("10.0.{}.{}:7946", i / 250, i % 250 + 1),
                incarnation: u64::from(i % 7 + 1),
                status: 0,
                tags: tags(i),
            })
            .collect(),
        ..Default::default()
    })
}

/// Figures, not asserts: how much lz4 saves on realistic full states.
#[test]
fn compression_figures_for_agent_states() {
    for n in [10, 100, 1000] {
        let state = agent_state(n);
        let plain = encode_stream_frame(&state, None, 1).len();
        let t = std::time::Instant::now();
        let frame = encode_stream_frame(&state, None, 2);
        let encoded = t.elapsed();
        let packed = frame.len();
        let t = std::time::Instant::now();
        let decoded = decode_stream_frame(&frame, None).unwrap();
        let took = t.elapsed();
        assert_eq!(decoded, state);
        println!(
            "push/pull state of {n} members: {plain} bytes, lz4 {packed} ({:.0} %), \
             encode {encoded:?}, decode {took:?} (debug build)",
            100.0 * packed as f64 / plain as f64
        );
        assert!(packed <= plain);
    }
}

#[tokio::test]
async fn version_two_compresses_large_stream_frames() {
    let state = StreamMsg::State(pb::PushPullState {
        from: "a".into(),
        nodes: (0..200)
            .map(|i| pb::NodeRecord {
                name: format!("node-{i}"),
                addr: format!("127.0.0.1:{}", 7000 + i),
                incarnation: i,
                status: 0,
                tags: [("ep.raft".to_string(), format!("127.0.0.1:{}", 8000 + i))].into(),
            })
            .collect(),
        ..Default::default()
    });
    let k = Keyring::new(&[7u8; 32]).unwrap();
    for keyring in [None, Some(&k)] {
        let plain = encode_stream_frame(&state, keyring, 1);
        let packed = encode_stream_frame(&state, keyring, 2);
        assert!(
            packed.len() < plain.len() / 2,
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(&packed).await.unwrap();
        let limits = StreamLimits::default();
        let got = read_stream_msg(&mut b, Opener::strict(keyring), &limits).await;
        assert_eq!(got.unwrap(), (state.clone(), 2));
        // Inflating beyond max_frame is refused even when the compressed
        // frame itself is small.
        let limits = StreamLimits::new(packed.len() + 100, 1 << 20);
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(&packed).await.unwrap();
        let got = read_stream_msg(&mut b, Opener::strict(keyring), &limits).await;
        assert!(matches!(
            got,
            Err(StreamError::Codec(CodecError::TooLong(_)))
        ));
    }
}

#[tokio::test]
async fn stream_frames_roundtrip() {
    let k = Keyring::new(&[7u8; 32]).unwrap();
    for keyring in [None, Some(&k)] {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msg = StreamMsg::Request(pb::PushPullRequest {
            from: "a".into(),
            join: true,
            checksum: 42,
        });
        write_stream_msg(&mut a, &msg, keyring, 1).await.unwrap();
        let limits = StreamLimits::default();
        let got = read_stream_msg(&mut b, Opener::strict(keyring), &limits);
        assert_eq!(got.await.unwrap(), (msg.clone(), 1));
        let frame = encode_stream_frame(&msg, keyring, 1);
        assert_eq!(decode_stream_frame(&frame, keyring).unwrap(), msg);
        assert!(decode_stream_frame(&frame[..frame.len() - 1], keyring).is_err());
    }
    // An absurd declared length is refused before allocating.
    let mut bad = header(1, MsgType::PushPullState).to_vec();
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    let (mut a, mut b) = tokio::io::duplex(64);
    a.write_all(&bad).await.unwrap();
    let limits = StreamLimits::default();
    assert!(matches!(
        read_stream_msg(&mut b, Opener::default(), &limits).await,
        Err(StreamError::Codec(CodecError::TooLong(_)))
    ));
}

#[tokio::test]
async fn stream_frames_are_bounded() {
    let big = StreamMsg::State(pb::PushPullState {
        from: "x".repeat(300_000),
        ..Default::default()
    });
    let frame = encode_stream_frame(&big, None, 1);
    // Above the configured maximum: refused from the header alone.
    let limits = StreamLimits::new(100_000, 1_000_000);
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    a.write_all(&frame[..HEADER_LEN + 4]).await.unwrap();
    assert!(matches!(
        read_stream_msg(&mut b, Opener::default(), &limits).await,
        Err(StreamError::Codec(CodecError::TooLong(_)))
    ));
    // Within the maximum but above what the budget has left: refused,
    // and the budget is whole again afterwards.
    let limits = StreamLimits::new(1_000_000, 200_000);
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    a.write_all(&frame).await.unwrap();
    assert!(matches!(
        read_stream_msg(&mut b, Opener::default(), &limits).await,
        Err(StreamError::Budget)
    ));
    assert_eq!(limits.budget.available_permits(), 200_000);
    // With room: read whole, budget given back.
    let limits = StreamLimits::new(1_000_000, 1_000_000);
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    a.write_all(&frame).await.unwrap();
    let got = read_stream_msg(&mut b, Opener::default(), &limits).await;
    assert_eq!(got.unwrap().0, big);
    assert_eq!(limits.budget.available_permits(), 1_000_000);
}

#[test]
fn rolling_switch_accepts_plaintext_only_when_allowed() {
    let k = Keyring::new(&[7u8; 32]).unwrap();
    let plain = encode_datagram(&[ping(1).encode_part()], None, 1);
    let sealed = encode_datagram(&[ping(1).encode_part()], Some(&k), 1);
    let lenient = Opener {
        keyring: Some(&k),
        require: false,
        range: ProtocolRange::default(),
    };
    assert_eq!(decode_datagram_with(&plain, lenient).unwrap().msgs.len(), 1);
    assert_eq!(
        decode_datagram_with(&sealed, lenient).unwrap().msgs.len(),
        1
    );
    assert_eq!(
        decode_datagram_with(&plain, Opener::strict(Some(&k))).unwrap_err(),
        CodecError::Decrypt
    );
    // A lenient node still refuses what it cannot open.
    let other = Keyring::new(&[8u8; 32]).unwrap();
    let foreign = encode_datagram(&[ping(1).encode_part()], Some(&other), 1);
    assert_eq!(
        decode_datagram_with(&foreign, lenient).unwrap_err(),
        CodecError::Decrypt
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_msg() -> impl Strategy<Value = Msg> {
        let s = || "[a-z0-9.:]{0,24}";
        prop_oneof![
            (any::<u64>(), s(), s(), s(), any::<u64>()).prop_map(
                |(seq, target, source, source_addr, checksum)| {
                    Msg::Ping(pb::Ping {
                        seq,
                        target,
                        source,
                        source_addr,
                        checksum,
                    })
                }
            ),
            (any::<u64>(), any::<u64>())
                .prop_map(|(seq, checksum)| Msg::Ack(pb::Ack { seq, checksum })),
            any::<u64>().prop_map(|seq| Msg::Nack(pb::Nack { seq })),
            (
                any::<u64>(),
                s(),
                s(),
                proptest::collection::hash_map(s(), s(), 0..4)
            )
                .prop_map(|(incarnation, node, addr, tags)| Msg::Alive(pb::Alive {
                    incarnation,
                    node,
                    addr,
                    tags
                })),
            (any::<u64>(), s(), s()).prop_map(|(incarnation, node, from)| {
                Msg::Suspect(pb::Suspect {
                    incarnation,
                    node,
                    from,
                })
            }),
            (any::<u64>(), s(), s()).prop_map(|(incarnation, node, from)| {
                Msg::Dead(pb::Dead {
                    prune: false,
                    incarnation,
                    node,
                    from,
                })
            }),
            (
                any::<u64>(),
                s(),
                proptest::collection::vec(any::<u8>(), 0..32),
                any::<bool>()
            )
                .prop_map(|(ltime, name, payload, coalesce)| Msg::UserEvent(
                    pb::UserEvent {
                        ltime,
                        name,
                        payload,
                        coalesce
                    }
                )),
        ]
    }

    proptest! {
        #[test]
        fn any_messages_roundtrip(msgs in proptest::collection::vec(arb_msg(), 1..8)) {
            let parts: Vec<Bytes> = msgs.iter().map(Msg::encode_part).collect();
            let d = decode_datagram(&encode_datagram(&parts, None, 1), None).unwrap();
            prop_assert_eq!(d.msgs, msgs);
            prop_assert_eq!(d.skipped, 0);
        }

        #[test]
        fn any_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_datagram(&buf, None);
            let _ = decode_stream_frame(&buf, None);
            let mut framed = vec![b'c', b'f', 1];
            framed.extend_from_slice(&buf);
            let _ = decode_datagram(&framed, None);
            let _ = decode_stream_frame(&framed, None);
        }
    }
}
