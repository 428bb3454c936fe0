//! lz4 compression of large gossip frames (protocol version 2, see
//! [`version`](super::version)). A compressed frame keeps the usual header
//! with type [`Compressed`](super::codec::MsgType::Compressed); its body is
//! `inflated length (4, big endian) || lz4 block of (type(1) body)`.
//! Compression comes before encryption (sealed bytes do not compress).
//!
//! Only frames of at least [`MIN_COMPRESS`] bytes are compressed, and only
//! when that saves bytes: small probes and acks go as they are. The
//! inflated length is checked against the caller's limit before anything
//! is allocated, so a small frame cannot claim a huge body.

use super::error::CodecError;

/// Smallest frame (type byte and body) worth compressing.
pub(crate) const MIN_COMPRESS: usize = 256;
/// Bytes before the lz4 block.
const LEN_PREFIX: usize = 4;

/// `part` (a type byte and its body) compressed, or `None` when it is
/// small or does not shrink.
pub(crate) fn compress(part: &[u8]) -> Option<Vec<u8>> {
    if part.len() < MIN_COMPRESS || part.len() > u32::MAX as usize {
        return None;
    }
    let block = lz4_flex::block::compress(part);
    if block.len() + LEN_PREFIX >= part.len() {
        return None;
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + block.len());
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(&block);
    Some(out)
}

/// The type byte and body inside a compressed frame's `body`, refusing an
/// inflated length above `max` (or one that does not match the block).
pub(crate) fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, CodecError> {
    let (len, block) = body
        .split_first_chunk::<LEN_PREFIX>()
        .ok_or(CodecError::Truncated(body.len()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > max {
        return Err(CodecError::TooLong(len));
    }
    if len == 0 {
        return Err(CodecError::Compressed);
    }
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == len => Ok(out),
        _ => Err(CodecError::Compressed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let part: Vec<u8> = std::iter::once(34)
            .chain((0..4000u32).map(|i| (i % 7) as u8))
            .collect();
        let c = compress(&part).expect("repetitive bytes compress");
        assert!(c.len() < part.len() / 4, "{} of {}", c.len(), part.len());
        assert_eq!(decompress(&c, 10_000).unwrap(), part);
        // The declared length is checked before inflating.
        assert_eq!(decompress(&c, 100), Err(CodecError::TooLong(part.len())));
        // A wrong declared length or a damaged block is refused.
        let mut wrong = c.clone();
        wrong[3] ^= 1;
        assert!(decompress(&wrong, 10_000).is_err());
        assert!(decompress(&c[..c.len() - 3], 10_000).is_err());
        assert!(decompress(&[0, 0], 10_000).is_err());
        // Small or random bytes are left alone.
        assert!(compress(&[1; 100]).is_none());
        let mut x: u32 = 12345;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(compress(&noise).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decompress(&buf, 1 << 16);
        }
    }
}
