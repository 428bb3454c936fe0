//! Key → shard: XXH64 (seed 0) reduced to `0..shard_count` by multiply-shift.
//!
//! **This is part of the contract with stored data**: services place data by
//! these shard numbers, so changing the hash or the reduction would move
//! every key. The algorithm is the published XXH64 (written out here so that
//! no crate update can change it, and any language's XXH64 library can
//! reproduce it), and the known-answer tests below pin both the hash and the
//! final shard numbers.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

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

#[inline]
fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[inline]
fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

#[inline]
fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline]
fn merge_round(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 with seed 0 of `input`: the stable 64-bit hash behind
/// [`shard_for_bytes`], also used for ids that must agree on every machine
/// (Raft node ids are the hash of the node name).
pub fn stable_hash64(input: &[u8]) -> u64 {
    xxh64(input, 0)
}

/// XXH64 of `input` with `seed`, as specified by the xxHash project.
pub(crate) fn xxh64(input: &[u8], seed: u64) -> u64 {
    let len = input.len() as u64;
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while rest.len() >= 32 {
            v1 = round(v1, read_u64(rest));
            v2 = round(v2, read_u64(&rest[8..]));
            v3 = round(v3, read_u64(&rest[16..]));
            v4 = round(v4, read_u64(&rest[24..]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge_round(h, v1);
        h = merge_round(h, v2);
        h = merge_round(h, v3);
        merge_round(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        h ^= round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= u64::from(read_u32(rest)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
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
