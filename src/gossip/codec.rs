//! Wire framing: a 4-byte header (magic, protocol version, message type) in
//! front of every datagram and stream frame, compound packing of several
//! messages into one datagram, and the optional AES-256-GCM envelope.
//!
//! Datagram: `magic(2) version(1) type(1) body`. A compound's body is a
//! `Compound` whose parts are `type(1) body`. An encrypted datagram has type
//! [`MsgType::Encrypted`] and body `nonce || AES-GCM(inner datagram)` with the
//! outer header as associated data. Stream frame: `magic version type
//! len(4, big endian) body`, encrypted the same way. From protocol version
//! 2 on, a large datagram or frame body may be lz4-compressed (type
//! [`MsgType::Compressed`], see [`compress`](super::compress)) before it is
//! sealed. The version byte is the one negotiated with the peer (see
//! [`version`](super::version)); a frame of a version outside the
//! receiver's range is refused.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::compress;
use super::config::Opener;
use super::error::CodecError;
use super::keyring::Keyring;
use super::pb;
use super::version::{ProtocolRange, COMPRESSION_VERSION};

/// First two bytes of every frame ("cf").
pub(crate) const MAGIC: [u8; 2] = *b"cf";
/// Largest datagram content a compressed datagram may inflate to.
const MAX_INFLATED_DATAGRAM: usize = 1024 * 1024;
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
            other => return Err(CodecError::Unexpected(other as u8)),
        })
    }
}

/// Statistics name of a type byte (`"unknown"` for others).
pub(crate) fn type_name(b: u8) -> &'static str {
    MsgType::from_u8(b).map(MsgType::name).unwrap_or("unknown")
}

fn header(version: u8, ty: MsgType) -> [u8; HEADER_LEN] {
    [MAGIC[0], MAGIC[1], version, ty as u8]
}

/// `(ty, body)` compressed when `version` allows it and it pays.
fn maybe_compress(version: u8, ty: MsgType, body: &[u8]) -> Option<Vec<u8>> {
    if version < COMPRESSION_VERSION {
        return None;
    }
    let mut part = Vec::with_capacity(1 + body.len());
    part.push(ty as u8);
    part.extend_from_slice(body);
    compress::compress(&part)
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

/// Builds a datagram in protocol `version` from parts made by
/// [`Msg::encode_part`]: a single message when there is one part, a
/// compound otherwise; compressed when the version allows and it pays;
/// sealed when a keyring is given.
#[cfg(test)]
pub(crate) fn encode_datagram(parts: &[Bytes], keyring: Option<&Keyring>, version: u8) -> Bytes {
    encode_datagram_with(parts, keyring, version).0
}

/// [`encode_datagram`], also telling whether the datagram was compressed.
pub(crate) fn encode_datagram_with(
    parts: &[Bytes],
    keyring: Option<&Keyring>,
    version: u8,
) -> (Bytes, bool) {
    let mut b = BytesMut::new();
    if parts.len() == 1 {
        b.put_slice(&MAGIC);
        b.put_u8(version);
        b.put_slice(&parts[0]);
    } else {
        b.put_slice(&header(version, MsgType::Compound));
        let c = pb::Compound {
            parts: parts.iter().map(|p| p.to_vec()).collect(),
        };
        let _ = c.encode(&mut b);
    }
    let mut compressed = false;
    if version >= COMPRESSION_VERSION {
        if let Some(c) = compress::compress(&b[HEADER_LEN - 1..]) {
            b.clear();
            b.put_slice(&header(version, MsgType::Compressed));
            b.put_slice(&c);
            compressed = true;
        }
    }
    let packet = match keyring {
        None => b.freeze(),
        Some(k) => seal(&b, k, version),
    };
    (packet, compressed)
}

fn seal(inner: &[u8], k: &Keyring, version: u8) -> Bytes {
    let h = header(version, MsgType::Encrypted);
    let sealed = k.seal(inner, &h);
    let mut out = BytesMut::with_capacity(HEADER_LEN + sealed.len());
    out.put_slice(&h);
    out.put_slice(&sealed);
    out.freeze()
}

/// The type of a frame whose header is good and whose version `range`
/// speaks.
fn check_header(buf: &[u8], range: &ProtocolRange) -> Result<MsgType, CodecError> {
    if buf.len() < HEADER_LEN {
        return Err(CodecError::Truncated(buf.len()));
    }
    if buf[0..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if !range.accepts(buf[2]) {
        return Err(CodecError::Version(buf[2]));
    }
    MsgType::from_u8(buf[3])
}

/// Opens the envelope when a keyring is set; plaintext is refused then
/// unless the opener allows it (a rolling switch to encryption).
fn unwrap_envelope(buf: &[u8], o: Opener<'_>) -> Result<Option<Vec<u8>>, CodecError> {
    let ty = check_header(buf, &o.range)?;
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
    let mut ty = check_header(buf, &o.range)?;
    let inflated;
    let mut buf = buf;
    if ty == MsgType::Compressed {
        // `magic version` and the inflated `type body`: a datagram again.
        let mut d = buf[..HEADER_LEN - 1].to_vec();
        d.extend(compress::decompress(
            &buf[HEADER_LEN..],
            MAX_INFLATED_DATAGRAM,
        )?);
        inflated = d;
        buf = &inflated;
        ty = check_header(buf, &o.range)?;
        if matches!(ty, MsgType::Compressed | MsgType::Encrypted) {
            return Err(CodecError::Compressed);
        }
    }
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
            other => return Err(CodecError::Unexpected(other as u8)),
        })
    }
}

/// Encodes a stream frame (`header len(4) body`) in protocol `version`,
/// compressed when the version allows and it pays, sealed when a keyring
/// is given. Returns the bytes to write.
pub(crate) fn encode_stream_frame(
    msg: &StreamMsg,
    keyring: Option<&Keyring>,
    version: u8,
) -> Vec<u8> {
    let (ty, body) = msg.encode();
    let (ty, body) = match maybe_compress(version, ty, &body) {
        Some(c) => (MsgType::Compressed, c),
        None => (ty, body),
    };
    let (ty, body) = match keyring {
        None => (ty, body),
        Some(k) => {
            let mut inner = header(version, ty).to_vec();
            inner.extend_from_slice(&body);
            (
                MsgType::Encrypted,
                k.seal(&inner, &header(version, MsgType::Encrypted)),
            )
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + body.len());
    out.extend_from_slice(&header(version, ty));
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
    let o = Opener::strict(keyring);
    let ty = check_header(buf, &o.range)?;
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
    decode_stream_body(ty, buf[2], body, o, MAX_STREAM_FRAME)
}

/// Decodes the body of a stream frame of type `ty` written in `version`,
/// inflating a compressed one up to `max` bytes.
fn decode_stream_body(
    ty: MsgType,
    version: u8,
    body: &[u8],
    o: Opener<'_>,
    max: usize,
) -> Result<StreamMsg, CodecError> {
    let opened;
    let (ty, body) = match (ty, o.keyring) {
        (MsgType::Encrypted, Some(k)) => {
            opened = k
                .open(body, &header(version, MsgType::Encrypted))
                .ok_or(CodecError::Decrypt)?;
            let ity = check_header(&opened, &o.range)?;
            if ity == MsgType::Encrypted {
                return Err(CodecError::Unexpected(ity as u8));
            }
            (ity, &opened[HEADER_LEN..])
        }
        (MsgType::Encrypted, None) => return Err(CodecError::Decrypt),
        (_, Some(_)) if o.require => return Err(CodecError::Decrypt),
        (ty, _) => (ty, body),
    };
    if ty != MsgType::Compressed {
        return StreamMsg::decode(ty, body);
    }
    let part = compress::decompress(body, max)?;
    match part.split_first().map(|(&t, b)| (MsgType::from_u8(t), b)) {
        Some((Ok(MsgType::Compressed | MsgType::Encrypted), _)) | None => {
            Err(CodecError::Compressed)
        }
        Some((t, b)) => StreamMsg::decode(t?, b),
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

/// Writes one stream frame in protocol `version`.
pub(crate) async fn write_stream_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &StreamMsg,
    keyring: Option<&Keyring>,
    version: u8,
) -> Result<(), StreamError> {
    let frame = encode_stream_frame(msg, keyring, version);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one stream frame, refusing bodies above `limits.max_frame`. The
/// body is read in pieces as it arrives, each first taken from the shared
/// memory budget (and given back once the frame is decoded), so a peer
/// that declares a huge length and sends nothing costs nothing, and many
/// peers sending large frames at once cannot exceed the budget. A
/// compressed frame inflates to at most `limits.max_frame`. Returns the
/// message and the protocol version it was written in.
pub(crate) async fn read_stream_msg<R: AsyncRead + Unpin>(
    r: &mut R,
    o: Opener<'_>,
    limits: &StreamLimits,
) -> Result<(StreamMsg, u8), StreamError> {
    let mut h = [0u8; HEADER_LEN + 4];
    r.read_exact(&mut h).await?;
    let ty = check_header(&h, &o.range)?;
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
    let msg = decode_stream_body(ty, h[2], &body, o, limits.max_frame)?;
    drop(held);
    Ok((msg, h[2]))
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
