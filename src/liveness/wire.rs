//! The probe packet: 32 bytes, fixed layout, big-endian.
//!
//! ```text
//! offset size field
//!      0    4 magic      b"CFLV"
//!      4    1 version    PROTOCOL_VERSION (1)
//!      5    1 type       1 = probe, 2 = reply
//!      6    2 reserved   must be zero
//!      8    8 nonce      random per checker instance
//!     16    8 sequence   unique per probe within one checker instance
//!     24    8 timestamp  micros since the checker started, at send time
//! ```
//!
//! A reply is the probe with the type byte changed, so it is never larger than
//! the probe: the responder cannot be used to amplify traffic. Decoding checks
//! every field and returns a [`DecodeError`]; it never panics, whatever the
//! input.

/// The first four bytes of every liveness packet.
pub const MAGIC: [u8; 4] = *b"CFLV";
/// The wire protocol version this code speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Exact size of every liveness packet in bytes.
pub const PACKET_LEN: usize = 32;

/// Whether a packet asks for an echo or is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Sent by a checker; a responder echoes it back as a [`PacketKind::Reply`].
    Probe,
    /// Sent by a responder in answer to a probe.
    Reply,
}

impl PacketKind {
    fn to_byte(self) -> u8 {
        match self {
            PacketKind::Probe => 1,
            PacketKind::Reply => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(PacketKind::Probe),
            2 => Some(PacketKind::Reply),
            _ => None,
        }
    }
}

/// A decoded liveness packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Probe or reply.
    pub kind: PacketKind,
    /// The checker instance that sent the probe (random per instance), so a
    /// reply to an earlier checker on the same address is not taken as fresh.
    pub nonce: u64,
    /// Probe sequence number, unique within one checker instance.
    pub seq: u64,
    /// Send time of the probe, micros since the checker started.
    pub timestamp_micros: u64,
}

/// Why a datagram is not a valid liveness packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram is not exactly [`PACKET_LEN`] bytes long.
    #[error("liveness packet has {0} bytes, expected {PACKET_LEN}")]
    Length(usize),
    /// The first four bytes are not [`MAGIC`].
    #[error("liveness packet has a bad magic")]
    Magic,
    /// A protocol version this code does not speak.
    #[error("liveness packet has unsupported version {0}")]
    Version(u8),
    /// An unknown message type byte.
    #[error("liveness packet has unknown type {0}")]
    Type(u8),
    /// The reserved bytes are not zero.
    #[error("liveness packet has non-zero reserved bytes")]
    Reserved,
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Packet {
    /// Writes the packet into `out` (no allocation).
    pub fn encode(&self, out: &mut [u8; PACKET_LEN]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = PROTOCOL_VERSION;
        out[5] = self.kind.to_byte();
        out[6] = 0;
        out[7] = 0;
        out[8..16].copy_from_slice(&self.nonce.to_be_bytes());
        out[16..24].copy_from_slice(&self.seq.to_be_bytes());
        out[24..32].copy_from_slice(&self.timestamp_micros.to_be_bytes());
    }

    /// Returns the packet as a fresh byte array.
    pub fn to_bytes(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        self.encode(&mut out);
        out
    }

    /// Parses and checks a datagram. Any length, any content: never panics.
    pub fn decode(data: &[u8]) -> Result<Packet, DecodeError> {
        if data.len() != PACKET_LEN {
            return Err(DecodeError::Length(data.len()));
        }
        if data[0..4] != MAGIC {
            return Err(DecodeError::Magic);
        }
        if data[4] != PROTOCOL_VERSION {
            return Err(DecodeError::Version(data[4]));
        }
        let kind = PacketKind::from_byte(data[5]).ok_or(DecodeError::Type(data[5]))?;
        if data[6] != 0 || data[7] != 0 {
            return Err(DecodeError::Reserved);
        }
        Ok(Packet {
            kind,
            nonce: read_u64(data, 8),
            seq: read_u64(data, 16),
            timestamp_micros: read_u64(data, 24),
        })
    }

    /// The reply a responder sends for this packet: same fields, type reply.
    pub fn into_reply(self) -> Packet {
        Packet {
            kind: PacketKind::Reply,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Packet {
        Packet {
            kind: PacketKind::Probe,
            nonce: 0x0102_0304_0506_0708,
            seq: 42,
            timestamp_micros: 1_234_567,
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(Packet::decode(&p.to_bytes()), Ok(p));
        let r = p.into_reply();
        assert_eq!(r.kind, PacketKind::Reply);
        assert_eq!(Packet::decode(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn layout_is_stable() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..4], b"CFLV");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 1);
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[16..24], &42u64.to_be_bytes());
    }

    #[test]
    fn rejects_each_bad_field() {
        let good = sample().to_bytes();
        assert_eq!(Packet::decode(&good[..31]), Err(DecodeError::Length(31)));
        assert_eq!(Packet::decode(&[]), Err(DecodeError::Length(0)));
        let mut long = [0u8; 33];
        long[..32].copy_from_slice(&good);
        assert_eq!(Packet::decode(&long), Err(DecodeError::Length(33)));
        let mut b = good;
        b[1] = b'X';
        assert_eq!(Packet::decode(&b), Err(DecodeError::Magic));
        let mut b = good;
        b[4] = 2;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Version(2)));
        let mut b = good;
        b[5] = 9;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Type(9)));
        let mut b = good;
        b[7] = 1;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Reserved));
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Packet::decode(&data);
        }

        #[test]
        fn any_packet_round_trips(nonce: u64, seq: u64, ts: u64, probe: bool) {
            let p = Packet {
                kind: if probe { PacketKind::Probe } else { PacketKind::Reply },
                nonce,
                seq,
                timestamp_micros: ts,
            };
            prop_assert_eq!(Packet::decode(&p.to_bytes()), Ok(p));
        }
    }
}
