//! Micro-benchmarks of `clusterfunk::shards`: rebalance, codec, key → shard.
//!
//! `cargo bench --bench shards`

use std::hint::black_box;

use clusterfunk::shards::{rebalance, shard_for_bytes, ShardMap, DEFAULT_SHARD_COUNT};
use criterion::{criterion_group, criterion_main, Criterion};

fn live(n: usize) -> Vec<(String, u32)> {
    (0..n).map(|i| (format!("node-{i:03}"), 1)).collect()
}

fn map_10k_50() -> ShardMap {
    let empty = ShardMap::new(DEFAULT_SHARD_COUNT).expect("valid shard count");
    rebalance(&empty, &live(50)).expect("valid nodes")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shards");

    let prev = map_10k_50();
    let joined = live(51);
    g.bench_function("rebalance_10k_50", |b| {
        b.iter(|| rebalance(black_box(&prev), black_box(&joined)))
    });

    g.bench_function("encode_10k", |b| b.iter(|| black_box(&prev).encode()));

    let bytes = prev.encode();
    g.bench_function("decode_10k", |b| {
        b.iter(|| ShardMap::decode(black_box(&bytes)))
    });

    let key = "user:0123456789a";
    assert_eq!(key.len(), 16);
    g.bench_function("key_to_shard_str", |b| {
        b.iter(|| shard_for_bytes(black_box(key).as_bytes(), black_box(DEFAULT_SHARD_COUNT)))
    });

    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
