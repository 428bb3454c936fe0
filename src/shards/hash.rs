//! Key → shard: XXH64 (seed 0) reduced to `0..shard_count` by multiply-shift.
//!
//! **This is part of the contract with stored data**: services place data by
//! these shard numbers, so changing the hash or the reduction would move
//! every key. The hash is the published XXH64 (from the `xxhash-rust`
//! crate; any language's XXH64 library reproduces it), and the known-answer
//! tests below pin both the hash and the final shard numbers, so a crate
//! update that changed either would fail them.

use xxhash_rust::xxh64::xxh64;

/// Shard of a byte-string key: `xxh64(key, seed 0)` mapped onto
/// `0..shard_count` by Lemire's multiply-shift, `(h * n) >> 64` in 128-bit
/// arithmetic. It uses the hash's high bits, never a modulo, and its bias is
/// at most `n / 2^64`. String keys use their UTF-8 bytes.
/// `shard_count` 0 yields 0 (there is no valid answer).
#[inline]
pub fn shard_for_bytes(key: &[u8], shard_count: u32) -> u32 {
    reduce(xxh64(key, 0), shard_count)
}

/// Shard of an integer key: the same as
/// `shard_for_bytes(&key.to_le_bytes(), shard_count)`.
#[inline]
pub fn shard_for_u64(key: u64, shard_count: u32) -> u32 {
    shard_for_bytes(&key.to_le_bytes(), shard_count)
}

#[inline]
fn reduce(hash: u64, n: u32) -> u32 {
    ((u128::from(hash) * u128::from(n)) >> 64) as u32
}

/// XXH64 with seed 0 of `input`: the stable 64-bit hash behind
/// [`shard_for_bytes`], also used for ids that must agree on every machine
/// (Raft node ids are the hash of the node name).
pub fn stable_hash64(input: &[u8]) -> u64 {
    xxh64(input, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published XXH64 test vectors (seed 0) plus values covering every
    /// tail path (8-, 4- and 1-byte steps) and the 32-byte stripe loop.
    #[test]
    fn xxh64_known_answers() {
        let cases: &[(&[u8], u64)] = &[
            (b"", 0xEF46_DB37_51D8_E999),
            (b"a", 0xD24E_C4F1_A98C_6E5B),
            (b"abc", 0x44BC_2CF5_AD77_0999),
            (b"0123456789abcdef", 0x5C5B_90C3_4E37_6D0B),
            (b"hello world, 27", 0x4D87_EE61_5330_479C),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x0B24_2D36_1FDA_71BC,
            ),
        ];
        for &(input, want) in cases {
            assert_eq!(xxh64(input, 0), want, "input {input:?}");
        }
        let bytes: Vec<u8> = (0..100).collect();
        assert_eq!(xxh64(&bytes, 0), 0x6AC1_E580_3216_6597);
    }

    /// Fixed keys must land on fixed shards forever: stored data depends on it.
    #[test]
    fn shard_known_answers() {
        let cases: &[(&[u8], u32, u32)] = &[
            (b"", 10_000, 9346),
            (b"a", 10_000, 8215),
            (b"0123456789abcdef", 10_000, 3607),
            (b"0123456789abcdef", 1 << 20, 378_297),
            (b"user:1234", 10_000, 9677),
            (b"user:1234", 16, 15),
            (b"", 7, 6),
        ];
        for &(key, n, want) in cases {
            assert_eq!(shard_for_bytes(key, n), want, "key {key:?} n {n}");
        }
        assert_eq!(shard_for_u64(0, 10_000), 2061);
        assert_eq!(shard_for_u64(1, 10_000), 6217);
        assert_eq!(shard_for_u64(42, 10_000), 7083);
        assert_eq!(shard_for_u64(u64::MAX, 10_000), 5227);
    }

    #[test]
    fn reduction_stays_in_range() {
        for n in [1u32, 2, 3, 10_000, 1 << 20] {
            for k in 0..1000u64 {
                assert!(shard_for_u64(k, n) < n);
            }
        }
        assert_eq!(shard_for_bytes(b"x", 0), 0);
    }
}
