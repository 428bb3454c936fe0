//! Fixed cases for rebalance, delta and the codec.

use super::*;

fn nodes(specs: &[(&str, u32)]) -> Vec<(String, u32)> {
    specs.iter().map(|&(id, w)| (id.to_owned(), w)).collect()
}

fn counts(m: &ShardMap) -> Vec<(String, u32)> {
    m.counts()
        .into_iter()
        .map(|(id, c)| (id.to_owned(), c))
        .collect()
}

fn moved(a: &ShardMap, b: &ShardMap) -> u32 {
    delta(a, b).map(|d| d.moved).unwrap_or(u32::MAX)
}

fn first(n: u32, specs: &[(&str, u32)]) -> ShardMap {
    rebalance(&ShardMap::new(n).unwrap(), &nodes(specs)).unwrap()
}

#[test]
fn new_map_is_unassigned() {
    let m = ShardMap::new(10).unwrap();
    assert_eq!(m.shard_count(), 10);
    assert_eq!(m.unassigned(), 10);
    assert_eq!(m.owner_of(0), None);
    assert_eq!(m.epoch(), 0);
    assert!(m.nodes().is_empty());
    assert_eq!(ShardMap::default().shard_count(), DEFAULT_SHARD_COUNT);
    assert_eq!(ShardMap::new(0), Err(ShardMapError::InvalidShardCount(0)));
    assert!(ShardMap::new(MAX_SHARD_COUNT).is_ok());
    assert!(ShardMap::new(MAX_SHARD_COUNT + 1).is_err());
}

#[test]
fn first_map_from_empty() {
    let m = first(10, &[("c", 1), ("a", 1), ("b", 1)]);
    // 10 / 3: equal remainders, so the extra shard goes to the smallest id.
    assert_eq!(counts(&m), nodes(&[("a", 4), ("b", 3), ("c", 3)]));
    assert_eq!(m.epoch(), 1);
    assert_eq!(m.unassigned(), 0);
    assert_eq!(m.shards_of("a"), vec![0, 1, 2, 3]);
    assert_eq!(m.owner_of(9), Some("c"));
    assert_eq!(m.owner_of(10), None);
    let workers: Vec<u32> = m.nodes().iter().map(|n| n.worker_id).collect();
    assert_eq!(workers, vec![0, 1, 2]);
}

#[test]
fn join_moves_only_what_the_newcomer_needs() {
    let a = first(10_000, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
    let b = rebalance(
        &a,
        &nodes(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]),
    )
    .unwrap();
    assert!(b.counts().values().all(|&c| c == 2000));
    assert_eq!(moved(&a, &b), 2000);
    let d = delta(&a, &b).unwrap();
    assert_eq!(d.nodes["e"].gained.len(), 2000);
    assert!(d.nodes["e"].lost.is_empty());
    assert_eq!(d.nodes["a"].lost.len(), 500);
    assert_eq!(b.node("e").unwrap().worker_id, 4);
    assert_eq!(b.epoch(), 2);
}

#[test]
fn leave_moves_only_the_leavers_shards() {
    let a = first(10_000, &[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]);
    let b = rebalance(&a, &nodes(&[("a", 1), ("b", 1), ("c", 1), ("e", 1)])).unwrap();
    assert_eq!(moved(&a, &b), 2000);
    assert!(b.counts().values().all(|&c| c == 2500));
    assert!(b.node("d").is_none());
    // Survivors keep their worker ids; a newcomer takes the freed id 3.
    assert_eq!(b.node("e").unwrap().worker_id, 4);
    let c = rebalance(
        &b,
        &nodes(&[("a", 1), ("b", 1), ("c", 1), ("e", 1), ("f", 1)]),
    )
    .unwrap();
    assert_eq!(c.node("f").unwrap().worker_id, 3);
}

#[test]
fn weight_change_moves_the_difference() {
    let a = first(9, &[("a", 1), ("b", 1), ("c", 1)]);
    let b = rebalance(&a, &nodes(&[("a", 1), ("b", 1), ("c", 4)])).unwrap();
    // 9 * [1,1,4] / 6 = [1.5, 1.5, 6]: one extra shard for a (tie, smaller id).
    assert_eq!(counts(&b), nodes(&[("a", 2), ("b", 1), ("c", 6)]));
    assert_eq!(moved(&a, &b), 3);
    // The shards c already had stay with it.
    for s in a.shards_of("c") {
        assert_eq!(b.owner_of(s), Some("c"));
    }
}

#[test]
fn weight_zero_drains() {
    let a = first(100, &[("a", 1), ("b", 1)]);
    let b = rebalance(&a, &nodes(&[("a", 1), ("b", 0)])).unwrap();
    assert_eq!(counts(&b), nodes(&[("a", 100), ("b", 0)]));
    assert_eq!(moved(&a, &b), 50);
    assert_eq!(b.node("b").map(|n| (n.weight, n.worker_id)), Some((0, 1)));
    assert!(b.shards_of("b").is_empty());
}

#[test]
fn all_nodes_gone_leaves_everything_unassigned() {
    let a = first(100, &[("a", 1), ("b", 1)]);
    let gone = rebalance(&a, &Vec::<(String, u32)>::new()).unwrap();
    assert_eq!(gone.unassigned(), 100);
    assert!(gone.nodes().is_empty());
    assert_eq!(moved(&a, &gone), 100);
    let zero = rebalance(&a, &nodes(&[("a", 0), ("b", 0)])).unwrap();
    assert_eq!(zero.unassigned(), 100);
    assert_eq!(zero.nodes().len(), 2);
    let back = rebalance(&gone, &nodes(&[("b", 1)])).unwrap();
    assert_eq!(back.unassigned(), 0);
    assert_eq!(back.node("b").unwrap().worker_id, 0);
}

#[test]
fn one_shard() {
    let a = first(1, &[("a", 1), ("b", 1)]);
    assert_eq!(a.owner_of(0), Some("a"));
    // Tie on remainder: the current owner keeps it rather than a smaller id.
    let b = rebalance(&a, &nodes(&[("0", 1), ("a", 1), ("b", 1)])).unwrap();
    assert_eq!(b.owner_of(0), Some("a"));
    assert_eq!(moved(&a, &b), 0);
}

#[test]
fn more_nodes_than_shards() {
    let specs: Vec<(String, u32)> = (0..10).map(|i| (format!("n{i}"), 1)).collect();
    let a = rebalance(&ShardMap::new(4).unwrap(), &specs).unwrap();
    let c = a.counts();
    assert_eq!(c.values().sum::<u32>(), 4);
    assert!(c.values().all(|&n| n <= 1));
    // Removing a node that owns nothing moves nothing.
    let idle = c
        .iter()
        .find(|(_, &n)| n == 0)
        .map(|(id, _)| id.to_string())
        .unwrap();
    let rest: Vec<(String, u32)> = specs.iter().filter(|s| s.0 != idle).cloned().collect();
    let b = rebalance(&a, &rest).unwrap();
    assert_eq!(moved(&a, &b), 0);
}

#[test]
fn input_order_does_not_matter() {
    let a = first(1000, &[("a", 3), ("b", 1), ("c", 2)]);
    let b = first(1000, &[("c", 2), ("a", 3), ("b", 1)]);
    assert_eq!(a, b);
    assert_eq!(a.encode(), b.encode());
}

#[test]
fn bad_input_is_rejected() {
    let empty = ShardMap::new(10).unwrap();
    assert_eq!(
        rebalance(&empty, &nodes(&[("a", 1), ("a", 2)])),
        Err(ShardMapError::DuplicateNode("a".into()))
    );
    assert_eq!(
        rebalance(&empty, &nodes(&[("", 1)])),
        Err(ShardMapError::EmptyNodeId)
    );
    let many: Vec<(String, u32)> = (0..=MAX_NODES).map(|i| (i.to_string(), 1)).collect();
    assert_eq!(
        rebalance(&empty, &many),
        Err(ShardMapError::TooManyNodes(MAX_NODES + 1))
    );
}

#[test]
fn targets_follow_largest_remainder() {
    // 10 * [5, 3, 2] / 10 exactly.
    assert_eq!(
        rebalance::targets(10, &[5, 3, 2], &[0, 0, 0]),
        vec![5, 3, 2]
    );
    // 10 * [1,1,1] / 3: remainders tie; held count then index decide.
    assert_eq!(
        rebalance::targets(10, &[1, 1, 1], &[0, 0, 0]),
        vec![4, 3, 3]
    );
    assert_eq!(
        rebalance::targets(10, &[1, 1, 1], &[0, 0, 5]),
        vec![3, 3, 4]
    );
    // 7 * [2, 1] / 3 = [4.67, 2.33].
    assert_eq!(rebalance::targets(7, &[2, 1], &[0, 7]), vec![5, 2]);
    assert_eq!(rebalance::targets(7, &[0, 0], &[0, 0]), vec![0, 0]);
    assert_eq!(
        rebalance::targets(MAX_SHARD_COUNT, &[u32::MAX, u32::MAX, 1], &[0, 0, 0]),
        vec![1 << 19, 1 << 19, 0]
    );
}

#[test]
fn delta_reports_both_sides() {
    let a = first(4, &[("a", 1)]);
    let b = rebalance(&a, &nodes(&[("b", 1)])).unwrap();
    let d = delta(&a, &b).unwrap();
    assert_eq!(d.moved, 4);
    assert_eq!(d.nodes["a"].lost, vec![0, 1, 2, 3]);
    assert_eq!(d.nodes["b"].gained, vec![0, 1, 2, 3]);
    assert_eq!(delta(&a, &a).unwrap(), ShardDelta::default());
    assert_eq!(
        delta(&a, &ShardMap::new(5).unwrap()),
        Err(ShardMapError::ShardCountMismatch(4, 5))
    );
    assert!(b.same_assignment(&b.clone().with_epoch(9)));
    assert!(!a.same_assignment(&b));
}

#[test]
fn encode_decode_round_trip() {
    let a = first(100, &[("a", 1), ("b", 2), ("c", 0)]).with_epoch(77);
    let back = ShardMap::decode(&a.encode()).unwrap();
    assert_eq!(back, a);
    let empty = ShardMap::new(3).unwrap();
    assert_eq!(ShardMap::decode(&empty.encode()).unwrap(), empty);
}

#[test]
fn serde_round_trip_checks_input() {
    let a = first(6, &[("a", 1), ("b", 1)]);
    let json = serde_json::to_string(&a).unwrap();
    assert!(json.contains(r#""owners":[1,1,1,2,2,2]"#), "{json}");
    assert_eq!(serde_json::from_str::<ShardMap>(&json).unwrap(), a);
    let bad = json.replace("[1,1,1,2,2,2]", "[1,1,1,2,2,3]");
    assert!(serde_json::from_str::<ShardMap>(&bad).is_err());
}

/// Builds raw protobuf bytes with the generated-compatible layout, so that
/// the decoder's checks can be reached with inputs `encode` never makes.
fn raw(shard_count: u32, nodes: &[(&str, u32)], owners: &[u32]) -> Vec<u8> {
    let m = ShardMapRepr {
        epoch: 1,
        shard_count,
        nodes: nodes
            .iter()
            .map(|&(id, worker_id)| NodeInfo {
                id: id.to_owned(),
                weight: 1,
                worker_id,
            })
            .collect(),
        owners: owners.to_vec(),
    };
    codec::encode_repr(&m)
}

use codec::ShardMapRepr;

#[test]
fn decode_rejects_bad_maps() {
    use ShardMapError as E;
    let ok = raw(2, &[("a", 0), ("b", 1)], &[1, 2]);
    assert!(ShardMap::decode(&ok).is_ok());
    let cases: Vec<(Vec<u8>, ShardMapError)> = vec![
        (raw(0, &[], &[]), E::InvalidShardCount(0)),
        (
            raw(MAX_SHARD_COUNT + 1, &[], &[]),
            E::InvalidShardCount(u64::from(MAX_SHARD_COUNT) + 1),
        ),
        (
            raw(2, &[("a", 0)], &[1]),
            E::OwnersLength {
                expected: 2,
                found: 1,
            },
        ),
        (
            raw(2, &[("a", 0)], &[1, 2]),
            E::UnknownNodeIndex {
                shard: 1,
                index: 2,
                nodes: 1,
            },
        ),
        (
            raw(1, &[("a", 0), ("a", 1)], &[0]),
            E::DuplicateNode("a".into()),
        ),
        (
            raw(1, &[("b", 0), ("a", 1)], &[0]),
            E::NodesNotSorted("a".into(), "b".into()),
        ),
        (raw(1, &[("a", 3), ("b", 3)], &[0]), E::DuplicateWorkerId(3)),
        (raw(1, &[("", 0)], &[0]), E::EmptyNodeId),
    ];
    for (bytes, want) in cases {
        assert_eq!(ShardMap::decode(&bytes), Err(want));
    }
    assert!(matches!(ShardMap::decode(&[0xff, 0xff]), Err(E::Decode(_))));
}
