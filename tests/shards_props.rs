//! Property tests of `clusterfunk::shards`: balance, minimal movement,
//! determinism, worker ids, codec round trips, and a decoder that never
//! panics.

use std::collections::{BTreeMap, BTreeSet};

use clusterfunk::shards::{delta, rebalance, ShardMap};
use proptest::prelude::*;

type Live = Vec<(String, u32)>;

/// A live set: a subset of 12 node names (so successive sets overlap, giving
/// joins, leaves and weight changes) with weights biased towards small
/// values, some 0 and a few huge.
fn live() -> impl Strategy<Value = Live> {
    let weight = prop_oneof![
        1 => Just(0u32),
        6 => 1u32..=4,
        1 => any::<u32>(),
    ];
    proptest::collection::btree_map(0u8..12, weight, 0..=12).prop_map(|m| {
        m.into_iter()
            .map(|(i, w)| (format!("node-{i}"), w))
            .collect()
    })
}

fn shard_count() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=16, 1u32..=3000]
}

/// Applies `steps` from an empty map, returning every map (empty first).
fn run(shards: u32, steps: &[Live]) -> Vec<ShardMap> {
    let mut maps = vec![ShardMap::new(shards).unwrap()];
    for live in steps {
        let next = rebalance(maps.last().unwrap(), live).unwrap();
        maps.push(next);
    }
    maps
}

fn check_balance(map: &ShardMap, live: &Live) -> Result<(), TestCaseError> {
    let s = u128::from(map.shard_count());
    let total: u128 = live.iter().map(|(_, w)| u128::from(*w)).sum();
    let counts = map.counts();
    let ids: BTreeSet<&str> = live.iter().map(|(id, _)| id.as_str()).collect();
    prop_assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), ids);
    if total == 0 {
        prop_assert_eq!(map.unassigned(), map.shard_count());
        return Ok(());
    }
    prop_assert_eq!(map.unassigned(), 0);
    // Exact share of node i: s * w_i / total. Within one shard means
    // |c_i * total - s * w_i| < total; the largest remainder method also
    // means no node rounded down has a larger remainder than one rounded up.
    let mut max_rem_down = None::<u128>;
    let mut min_rem_up = None::<u128>;
    for (id, w) in live {
        let c = u128::from(counts[id.as_str()]);
        let exact = s * u128::from(*w);
        prop_assert!(
            c * total < exact + total && exact < (c + 1) * total,
            "{} owns {} shards, exact share {}/{}",
            id,
            c,
            exact,
            total
        );
        let rem = exact % total;
        if c == exact / total {
            max_rem_down = max_rem_down.max(Some(rem));
        } else {
            min_rem_up = Some(min_rem_up.map_or(rem, |m: u128| m.min(rem)));
        }
    }
    if let (Some(down), Some(up)) = (max_rem_down, min_rem_up) {
        prop_assert!(
            down <= up,
            "rounded down rem {} > rounded up rem {}",
            down,
            up
        );
    }
    Ok(())
}

/// The fewest moves any assignment with the new counts can make: every shard
/// whose owner left, every unassigned shard if some live weight is positive
/// (they must all be placed), plus each surviving node's excess over its new
/// count.
fn minimum_moves(prev: &ShardMap, next: &ShardMap, live: &Live) -> u32 {
    let old = prev.counts();
    let new = next.counts();
    let placing = live.iter().any(|(_, w)| *w > 0);
    let orphaned = (0..prev.shard_count())
        .filter(|&s| match prev.owner_of(s) {
            None => placing,
            Some(o) => next.node(o).is_none(),
        })
        .count() as u32;
    let excess: u32 = new
        .iter()
        .map(|(id, &c)| old.get(id).copied().unwrap_or(0).saturating_sub(c))
        .sum();
    orphaned + excess
}

fn check_step(prev: &ShardMap, next: &ShardMap, live: &Live) -> Result<(), TestCaseError> {
    check_balance(next, live)?;
    prop_assert_eq!(next.epoch(), prev.epoch() + 1);

    // Movement, counted here shard by shard, is the theoretical minimum.
    let moved: Vec<u32> = (0..prev.shard_count())
        .filter(|&s| prev.owner_of(s) != next.owner_of(s))
        .collect();
    prop_assert_eq!(moved.len() as u32, minimum_moves(prev, next, live));

    // delta agrees with the direct comparison.
    let d = delta(prev, next).unwrap();
    prop_assert_eq!(d.moved, moved.len() as u32);
    let mut want: BTreeMap<String, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    for &s in &moved {
        if let Some(o) = prev.owner_of(s) {
            want.entry(o.to_owned()).or_default().1.push(s);
        }
        if let Some(n) = next.owner_of(s) {
            want.entry(n.to_owned()).or_default().0.push(s);
        }
    }
    let got: BTreeMap<String, (Vec<u32>, Vec<u32>)> = d
        .nodes
        .into_iter()
        .map(|(id, nd)| (id, (nd.gained, nd.lost)))
        .collect();
    prop_assert_eq!(got, want);

    // Worker ids: kept by survivors, lowest free ones (in id order) for
    // newcomers, unique.
    let kept: BTreeSet<u32> = next
        .nodes()
        .iter()
        .filter_map(|n| prev.node(&n.id).map(|p| p.worker_id))
        .collect();
    let mut free = (0u32..).filter(|w| !kept.contains(w));
    for n in next.nodes() {
        match prev.node(&n.id) {
            Some(p) => prop_assert_eq!(n.worker_id, p.worker_id),
            None => prop_assert_eq!(Some(n.worker_id), free.next()),
        }
    }

    // Codec round trips.
    prop_assert_eq!(&ShardMap::decode(&next.encode()).unwrap(), next);
    let json = serde_json::to_string(next).unwrap();
    prop_assert_eq!(&serde_json::from_str::<ShardMap>(&json).unwrap(), next);
    Ok(())
}

proptest! {
    #[test]
    fn rebalance_is_balanced_minimal_and_consistent(
        shards in shard_count(),
        steps in proptest::collection::vec(live(), 1..6),
    ) {
        let maps = run(shards, &steps);
        for (i, live) in steps.iter().enumerate() {
            check_step(&maps[i], &maps[i + 1], live)?;
        }
    }

    #[test]
    fn input_order_does_not_matter(
        shards in shard_count(),
        steps in proptest::collection::vec(live(), 1..4),
        last in live().prop_shuffle(),
    ) {
        let maps = run(shards, &steps);
        let prev = maps.last().unwrap();
        let mut sorted = last.clone();
        sorted.sort();
        let a = rebalance(prev, &last).unwrap();
        let b = rebalance(prev, &sorted).unwrap();
        prop_assert_eq!(a.encode(), b.encode());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = ShardMap::decode(&bytes) {
            // Whatever decodes is a valid map and survives a round trip.
            prop_assert_eq!(ShardMap::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn decoding_mutated_encodings_never_panics(
        shards in 1u32..=64,
        live in live(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        insert in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let map = rebalance(&ShardMap::new(shards).unwrap(), &live).unwrap();
        let mut bytes = map.encode();
        for (at, b) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] ^= b;
            }
        }
        if let Some((at, b)) = insert {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, b);
        }
        if let Some(at) = cut {
            let i = at.index(bytes.len() + 1);
            bytes.truncate(i);
        }
        if let Ok(m) = ShardMap::decode(&bytes) {
            prop_assert_eq!(ShardMap::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn a_patch_between_any_two_maps_gives_back_the_second(
        shards in shard_count(),
        steps in proptest::collection::vec(live(), 2..5),
        epoch in 1u64..1_000,
    ) {
        let maps = run(shards, &steps);
        for base in &maps {
            for next in &maps {
                let patch = next.encode_patch(base).unwrap();
                let back = base.apply_patch(epoch, &patch).unwrap();
                prop_assert_eq!(back.encode(), next.clone().with_epoch(epoch).encode());
            }
        }
    }

    #[test]
    fn applying_random_or_mutated_patches_never_panics(
        shards in 1u32..=64,
        live in live(),
        other in live(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let base = rebalance(&ShardMap::new(shards).unwrap(), &live).unwrap();
        let _ = base.apply_patch(1, &bytes);
        let mut patch = rebalance(&base, &other).unwrap().encode_patch(&base).unwrap();
        for (at, b) in flips {
            if !patch.is_empty() {
                let i = at.index(patch.len());
                patch[i] ^= b;
            }
        }
        if let Ok(m) = base.apply_patch(1, &patch) {
            // Whatever applies is a valid map.
            prop_assert_eq!(ShardMap::decode(&m.encode()).unwrap(), m);
        }
    }
}
