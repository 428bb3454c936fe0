//! Wire framing: a 4-byte header (magic, protocol version, message type) in
//! front of every datagram and stream frame, compound packing of several
//! messages into one datagram, and the optional AES-256-GCM envelope.
//!
//! Datagram: `magic(2) version(1) type(1) body`. A compound's body is a
//! `Compound` whose parts are `type(1) body`. An encrypted datagram has type
//! [`MsgType::Encrypted`] and body `nonce || AES-GCM(inner datagram)` with the
//! outer header as associated data. Stream frame: `magic version type
//! len(4, big endian) body`, encrypted the same way. [`MsgType::Compressed`]
//! is reserved for a compression flag; no codec is built in, so such frames
//! are counted and dropped.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::Opener;
use super::error::CodecError;
use super::keyring::Keyring;
use super::pb;

/// First two bytes of every frame ("cf").
pub(crate) const MAGIC: [u8; 2] = *b"cf";
/// Protocol version spoken and accepted.
pub(crate) const PROTOCOL_VERSION: u8 = 1;
/// Header length (magic, version, type).
pub(crate) const HEADER_LEN: usize = 4;
/// Largest stream frame body any configuration accepts (a full state of
/// many thousands of nodes fits well below it); `max_stream_frame` is
/// usually lower.
pub(crate) const MAX_STREAM_FRAME: usize = 16 * 1024 * 1024;
/// Stream bodies are read (and counted against the memory budget) in
/// pieces of at most this many bytes.
const STREAM_CHUNK: usize = 64 * 1024;

/// The message type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum MsgType {
    Ping = 1,
    IndirectPing = 2,
    Ack = 3,
    Nack = 4,
    Alive = 5,
    Suspect = 6,
    Dead = 7,
    UserEvent = 8,
    Compound = 16,
    Encrypted = 17,
    Compressed = 18,
    PushPullRequest = 32,
    PushPullResponse = 33,
    PushPullState = 34,
}

impl MsgType {
    fn from_u8(b: u8) -> Result<Self, CodecError> {
        Ok(match b {
            1 => MsgType::Ping,
            2 => MsgType::IndirectPing,
            3 => MsgType::Ack,
            4 => MsgType::Nack,
            5 => MsgType::Alive,
            6 => MsgType::Suspect,
            7 => MsgType::Dead,
            8 => MsgType::UserEvent,
            16 => MsgType::Compound,
            17 => MsgType::Encrypted,
            18 => MsgType::Compressed,
            32 => MsgType::PushPullRequest,
            33 => MsgType::PushPullResponse,
            34 => MsgType::PushPullState,
            other => return Err(CodecError::UnknownType(other)),
        })
    }

    /// Name used in statistics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MsgType::Ping => "ping",
            MsgType::IndirectPing => "indirect_ping",
            MsgType::Ack => "ack",
            MsgType::Nack => "nack",
            MsgType::Alive => "alive",
            MsgType::Suspect => "suspect",
            MsgType::Dead => "dead",
            MsgType::UserEvent => "user_event",
            MsgType::Compound => "compound",
            MsgType::Encrypted => "encrypted",
            MsgType::Compressed => "compressed",
            MsgType::PushPullRequest => "push_pull_request",
            MsgType::PushPullResponse => "push_pull_response",
            MsgType::PushPullState => "push_pull_state",
        }
    }
}

/// One datagram message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Msg {
    Ping(pb::Ping),
    IndirectPing(pb::IndirectPing),
    Ack(pb::Ack),
    Nack(pb::Nack),
    Alive(pb::Alive),
    Suspect(pb::Suspect),
    Dead(pb::Dead),
    UserEvent(pb::UserEvent),
}

impl Msg {
    pub(crate) fn msg_type(&self) -> MsgType {
        match self {
            Msg::Ping(_) => MsgType::Ping,
            Msg::IndirectPing(_) => MsgType::IndirectPing,
            Msg::Ack(_) => MsgType::Ack,
            Msg::Nack(_) => MsgType::Nack,
            Msg::Alive(_) => MsgType::Alive,
            Msg::Suspect(_) => MsgType::Suspect,
            Msg::Dead(_) => MsgType::Dead,
            Msg::UserEvent(_) => MsgType::UserEvent,
        }
    }

    /// `type(1) body`: a compound part, or a datagram once a header is added.
    pub(crate) fn encode_part(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + self.body_len());
        b.put_u8(self.msg_type() as u8);
        // Encoding into a growable BytesMut cannot run out of space.
        let _ = match self {
            Msg::Ping(m) => m.encode(&mut b),
            Msg::IndirectPing(m) => m.encode(&mut b),
            Msg::Ack(m) => m.encode(&mut b),
            Msg::Nack(m) => m.encode(&mut b),
            Msg::Alive(m) => m.encode(&mut b),
            Msg::Suspect(m) => m.encode(&mut b),
            Msg::Dead(m) => m.encode(&mut b),
            Msg::UserEvent(m) => m.encode(&mut b),
        };
        b.freeze()
    }

    pub(crate) fn body_len(&self) -> usize {
        match self {
            Msg::Ping(m) => m.encoded_len(),
            Msg::IndirectPing(m) => m.encoded_len(),
            Msg::Ack(m) => m.encoded_len(),
            Msg::Nack(m) => m.encoded_len(),
            Msg::Alive(m) => m.encoded_len(),
            Msg::Suspect(m) => m.encoded_len(),
            Msg::Dead(m) => m.encoded_len(),
            Msg::UserEvent(m) => m.encoded_len(),
        }
    }

    fn decode_part(part: &[u8]) -> Result<Msg, CodecError> {
        let (&t, body) = part.split_first().ok_or(CodecError::Truncated(0))?;
        let ty = MsgType::from_u8(t)?;
        let bad = |_| CodecError::Body(t);
        Ok(match ty {
            MsgType::Ping => Msg::Ping(pb::Ping::decode(body).map_err(bad)?),
            MsgType::IndirectPing => {
                Msg::IndirectPing(pb::IndirectPing::decode(body).map_err(bad)?)
            }
            MsgType::Ack => Msg::Ack(pb::Ack::decode(body).map_err(bad)?),
            MsgType::Nack => Msg::Nack(pb::Nack::decode(body).map_err(bad)?),
            MsgType::Alive => Msg::Alive(pb::Alive::decode(body).map_err(bad)?),
            MsgType::Suspect => Msg::Suspect(pb::Suspect::decode(body).map_err(bad)?),
            MsgType::Dead => Msg::Dead(pb::Dead::decode(body).map_err(bad)?),
            MsgType::UserEvent => Msg::UserEvent(pb::UserEvent::decode(body).map_err(bad)?),
            MsgType::Compressed => return Err(CodecError::Compressed),
            other => return Err(CodecError::Unexpected(other as u8)),
        })
    }
}

/// Statistics name of a type byte (`"unknown"` for others).
pub(crate) fn type_name(b: u8) -> &'static str {
    MsgType::from_u8(b).map(MsgType::name).unwrap_or("unknown")
}

fn header(ty: MsgType) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], PROTOCOL_VERSION, ty as u8]
}

/// Bytes a part of `len` bytes costs inside a compound.
pub(crate) fn compound_part_cost(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Bytes the datagram header and envelope take, before any part.
pub(crate) fn datagram_overhead(encrypted: bool) -> usize {
    HEADER_LEN
        + if encrypted {
            HEADER_LEN + Keyring::overhead()
        } else {
            0
        }
}

/// Builds a datagram from parts made by [`Msg::encode_part`]: a single
/// message when there is one part, a compound otherwise; sealed when a
/// keyring is given.
pub(crate) fn encode_datagram(parts: &[Bytes], keyring: Option<&Keyring>) -> Bytes {
    let mut b = BytesMut::new();
    if parts.len() == 1 {
        b.put_slice(&MAGIC);
        b.put_u8(PROTOCOL_VERSION);
        b.put_slice(&parts[0]);
    } else {
        b.put_slice(&header(MsgType::Compound));
        let c = pb::Compound {
            parts: parts.iter().map(|p| p.to_vec()).collect(),
        };
        let _ = c.encode(&mut b);
    }
    match keyring {
        None => b.freeze(),
        Some(k) => seal(&b, k),
    }
}

fn seal(inner: &[u8], k: &Keyring) -> Bytes {
    let h = header(MsgType::Encrypted);
    let sealed = k.seal(inner, &h);
    let mut out = BytesMut::with_capacity(HEADER_LEN + sealed.len());
    out.put_slice(&h);
    out.put_slice(&sealed);
    out.freeze()
}

fn check_header(buf: &[u8]) -> Result<MsgType, CodecError> {
    if buf.len() < HEADER_LEN {
        return Err(CodecError::Truncated(buf.len()));
    }
    if buf[0..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if buf[2] != PROTOCOL_VERSION {
        return Err(CodecError::Version(buf[2]));
    }
    MsgType::from_u8(buf[3])
}

/// Opens the envelope when a keyring is set; plaintext is refused then
/// unless the opener allows it (a rolling switch to encryption).
fn unwrap_envelope(buf: &[u8], o: Opener<'_>) -> Result<Option<Vec<u8>>, CodecError> {
    let ty = check_header(buf)?;
    match (ty, o.keyring) {
        (MsgType::Encrypted, Some(k)) => {
            let inner = k
                .open(&buf[HEADER_LEN..], &buf[..HEADER_LEN])
                .ok_or(CodecError::Decrypt)?;
            Ok(Some(inner))
        }
        (MsgType::Encrypted, None) => Err(CodecError::Decrypt),
        (_, Some(_)) if o.require => Err(CodecError::Decrypt),
        (_, _) => Ok(None),
    }
}

/// A decoded datagram: its messages and how many compound parts were
/// skipped as undecodable.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) msgs: Vec<Msg>,
    pub(crate) skipped: usize,
}

/// Decodes a datagram, refusing plaintext when `keyring` is set.
#[cfg(test)]
pub(crate) fn decode_datagram(
    buf: &[u8],
    keyring: Option<&Keyring>,
) -> Result<Decoded, CodecError> {
    decode_datagram_with(buf, Opener::strict(keyring))
}

/// Decodes a datagram. A bad header fails the whole datagram; inside a
/// compound a bad part is skipped and counted.
pub(crate) fn decode_datagram_with(buf: &[u8], o: Opener<'_>) -> Result<Decoded, CodecError> {
    let opened = unwrap_envelope(buf, o)?;
    let buf = opened.as_deref().unwrap_or(buf);
    let ty = check_header(buf)?;
    let body = &buf[HEADER_LEN..];
    match ty {
        MsgType::Compound => {
            let c = pb::Compound::decode(body).map_err(|_| CodecError::Body(ty as u8))?;
            let mut d = Decoded::default();
            for p in &c.parts {
                match p.first().map(|&t| MsgType::from_u8(t)) {
                    Some(Ok(MsgType::Compound | MsgType::Encrypted)) => d.skipped += 1,
                    _ => match Msg::decode_part(p) {
                        Ok(m) => d.msgs.push(m),
                        Err(_) => d.skipped += 1,
                    },
                }
            }
            Ok(d)
        }
        MsgType::Encrypted => Err(CodecError::Unexpected(ty as u8)),
        _ => Ok(Decoded {
            msgs: vec![Msg::decode_part(&buf[HEADER_LEN - 1..])?],
            skipped: 0,
        }),
    }
}

/// One message of the push/pull stream protocol.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StreamMsg {
    /// Fallback probe over a stream (when datagrams went unanswered).
    Ping(pb::Ping),
    Ack(pb::Ack),
    Request(pb::PushPullRequest),
    Response(pb::PushPullResponse),
    State(pb::PushPullState),
}

impl StreamMsg {
    fn encode(&self) -> (MsgType, Vec<u8>) {
        match self {
            StreamMsg::Ping(m) => (MsgType::Ping, m.encode_to_vec()),
            StreamMsg::Ack(m) => (MsgType::Ack, m.encode_to_vec()),
            StreamMsg::Request(m) => (MsgType::PushPullRequest, m.encode_to_vec()),
            StreamMsg::Response(m) => (MsgType::PushPullResponse, m.encode_to_vec()),
            StreamMsg::State(m) => (MsgType::PushPullState, m.encode_to_vec()),
        }
    }

    fn decode(ty: MsgType, body: &[u8]) -> Result<Self, CodecError> {
        let bad = |_| CodecError::Body(ty as u8);
        Ok(match ty {
            MsgType::Ping => StreamMsg::Ping(pb::Ping::decode(body).map_err(bad)?),
            MsgType::Ack => StreamMsg::Ack(pb::Ack::decode(body).map_err(bad)?),
            MsgType::PushPullRequest => {
                StreamMsg::Request(pb::PushPullRequest::decode(body).map_err(bad)?)
            }
            MsgType::PushPullResponse => {
                StreamMsg::Response(pb::PushPullResponse::decode(body).map_err(bad)?)
            }
            MsgType::PushPullState => {
                StreamMsg::State(pb::PushPullState::decode(body).map_err(bad)?)
            }
            MsgType::Compressed => return Err(CodecError::Compressed),
            other => return Err(CodecError::Unexpected(other as u8)),
        })
    }
}

/// Encodes a stream frame (`header len(4) body`), sealed when a keyring is
/// given. Returns the bytes to write.
pub(crate) fn encode_stream_frame(msg: &StreamMsg, keyring: Option<&Keyring>) -> Vec<u8> {
    let (ty, body) = msg.encode();
    let (ty, body) = match keyring {
        None => (ty, body),
        Some(k) => {
            let mut inner = header(ty).to_vec();
            inner.extend_from_slice(&body);
            (
                MsgType::Encrypted,
                k.seal(&inner, &header(MsgType::Encrypted)),
            )
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + body.len());
    out.extend_from_slice(&header(ty));
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a complete stream frame held in memory (header, length, body).
#[cfg(test)]
pub(crate) fn decode_stream_frame(
    buf: &[u8],
    keyring: Option<&Keyring>,
) -> Result<StreamMsg, CodecError> {
    let ty = check_header(buf)?;
    let rest = &buf[HEADER_LEN..];
    if rest.len() < 4 {
        return Err(CodecError::Truncated(buf.len()));
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len > MAX_STREAM_FRAME {
        return Err(CodecError::TooLong(len));
    }
    let body = &rest[4..];
    if body.len() != len {
        return Err(CodecError::Truncated(buf.len()));
    }
    decode_stream_body(ty, body, Opener::strict(keyring))
}

fn decode_stream_body(ty: MsgType, body: &[u8], o: Opener<'_>) -> Result<StreamMsg, CodecError> {
    match (ty, o.keyring) {
        (MsgType::Encrypted, Some(k)) => {
            let inner = k
                .open(body, &header(MsgType::Encrypted))
                .ok_or(CodecError::Decrypt)?;
            let ity = check_header(&inner)?;
            if ity == MsgType::Encrypted {
                return Err(CodecError::Unexpected(ity as u8));
            }
            StreamMsg::decode(ity, &inner[HEADER_LEN..])
        }
        (MsgType::Encrypted, None) => Err(CodecError::Decrypt),
        (_, Some(_)) if o.require => Err(CodecError::Decrypt),
        (ty, _) => StreamMsg::decode(ty, body),
    }
}

/// Error reading a stream frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("stream frame: {0}")]
    Codec(#[from] CodecError),
    #[error("stream timed out")]
    Timeout,
    #[error("stream memory budget exhausted")]
    Budget,
}

/// Bounds on reading stream frames, shared by every stream of one node.
#[derive(Clone, Debug)]
pub(crate) struct StreamLimits {
    /// Largest body accepted.
    pub(crate) max_frame: usize,
    /// Bytes of frame bodies that may be held at once, across streams.
    pub(crate) budget: Arc<Semaphore>,
}

impl StreamLimits {
    pub(crate) fn new(max_frame: usize, budget_bytes: usize) -> Self {
        StreamLimits {
            max_frame: max_frame.min(MAX_STREAM_FRAME),
            budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self::new(MAX_STREAM_FRAME, 4 * MAX_STREAM_FRAME)
    }
}

/// Writes one stream frame.
pub(crate) async fn write_stream_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &StreamMsg,
    keyring: Option<&Keyring>,
) -> Result<(), StreamError> {
    let frame = encode_stream_frame(msg, keyring);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one stream frame, refusing bodies above `limits.max_frame`. The
/// body is read in pieces as it arrives, each first taken from the shared
/// memory budget (and given back once the frame is decoded), so a peer
/// that declares a huge length and sends nothing costs nothing, and many
/// peers sending large frames at once cannot exceed the budget.
pub(crate) async fn read_stream_msg<R: AsyncRead + Unpin>(
    r: &mut R,
    o: Opener<'_>,
    limits: &StreamLimits,
) -> Result<StreamMsg, StreamError> {
    let mut h = [0u8; HEADER_LEN + 4];
    r.read_exact(&mut h).await?;
    let ty = check_header(&h)?;
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > limits.max_frame {
        return Err(CodecError::TooLong(len).into());
    }
    let mut body = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while body.len() < len {
        let want = (len - body.len()).min(STREAM_CHUNK);
        let permit = Arc::clone(&limits.budget)
            .try_acquire_many_owned(want as u32)
            .map_err(|_| StreamError::Budget)?;
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        let start = body.len();
        body.resize(start + want, 0);
        r.read_exact(&mut body[start..]).await?;
    }
    let msg = decode_stream_body(ty, &body, o)?;
    drop(held);
    Ok(msg)
}

#[cfg(test)]
mod tests {
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
        let one = encode_datagram(&[ping(7).encode_part()], None);
        assert_eq!(&one[..3], &[b'c', b'f', PROTOCOL_VERSION]);
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
        let c = encode_datagram(&parts, None);
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
        assert_eq!(
            decode_datagram(&[b'c', b'f', 1, 18, 0], None).unwrap_err(),
            CodecError::Compressed
        );
        assert!(decode_datagram(&[b'c', b'f', 1, 1, 0xff, 0xff, 0xff], None).is_err());
        // Every prefix and many random buffers: never panics.
        let good = encode_datagram(&[ping(1).encode_part(), ping(2).encode_part()], None);
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
        let mut buf = header(MsgType::Compound).to_vec();
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
        let sealed = encode_datagram(&parts, Some(&k));
        assert_eq!(sealed[3], MsgType::Encrypted as u8);
        let plain_len = encode_datagram(&parts, None).len();
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
        let plain = encode_datagram(&parts, None);
        assert_eq!(
            decode_datagram(&plain, Some(&k)).unwrap_err(),
            CodecError::Decrypt
        );
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
            write_stream_msg(&mut a, &msg, keyring).await.unwrap();
            let limits = StreamLimits::default();
            let got = read_stream_msg(&mut b, Opener::strict(keyring), &limits);
            assert_eq!(got.await.unwrap(), msg);
            let frame = encode_stream_frame(&msg, keyring);
            assert_eq!(decode_stream_frame(&frame, keyring).unwrap(), msg);
            assert!(decode_stream_frame(&frame[..frame.len() - 1], keyring).is_err());
        }
        // An absurd declared length is refused before allocating.
        let mut bad = header(MsgType::PushPullState).to_vec();
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
        let frame = encode_stream_frame(&big, None);
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
        assert_eq!(got.unwrap(), big);
        assert_eq!(limits.budget.available_permits(), 1_000_000);
    }

    #[test]
    fn rolling_switch_accepts_plaintext_only_when_allowed() {
        let k = Keyring::new(&[7u8; 32]).unwrap();
        let plain = encode_datagram(&[ping(1).encode_part()], None);
        let sealed = encode_datagram(&[ping(1).encode_part()], Some(&k));
        let lenient = Opener {
            keyring: Some(&k),
            require: false,
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
        let foreign = encode_datagram(&[ping(1).encode_part()], Some(&other));
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
                    .prop_map(|(incarnation, node, addr, tags)| Msg::Alive(
                        pb::Alive {
                            incarnation,
                            node,
                            addr,
                            tags
                        }
                    )),
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
                let d = decode_datagram(&encode_datagram(&parts, None), None).unwrap();
                prop_assert_eq!(d.msgs, msgs);
                prop_assert_eq!(d.skipped, 0);
            }

            #[test]
            fn any_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode_datagram(&buf, None);
                let _ = decode_stream_frame(&buf, None);
                let mut framed = vec![b'c', b'f', PROTOCOL_VERSION];
                framed.extend_from_slice(&buf);
                let _ = decode_datagram(&framed, None);
                let _ = decode_stream_frame(&framed, None);
            }
        }
    }
}
