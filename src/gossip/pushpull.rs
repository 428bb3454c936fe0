//! The push/pull exchange over a stream (join and anti-entropy):
//!
//! 1. initiator → responder: `PushPullRequest { join, checksum }`;
//! 2. responder → initiator: `PushPullResponse { in_sync }` when not a join
//!    and the membership checksums agree (done), else its full state;
//! 3. initiator → responder: its full state. Both sides merge what they got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::codec::{read_stream_msg, write_stream_msg, StreamError, StreamLimits, StreamMsg};
use super::config::{GossipConfig, Opener};
use super::error::CodecError;
use super::keyring::Keyring;
use super::pb;
use super::transport::{BoxStream, Transport};
use super::version::ProtocolRange;

/// What every stream task needs to frame, seal, open and bound its frames.
#[derive(Clone, Debug)]
pub(crate) struct StreamCtx {
    keyring: Option<Keyring>,
    verify_incoming: bool,
    verify_outgoing: bool,
    limits: StreamLimits,
    /// Versions accepted.
    range: ProtocolRange,
    /// Version of the frames this exchange writes.
    version: u8,
    /// Deadline of connecting and of each frame read or written (a slow
    /// peer trickling a frame is cut off here, not per byte).
    pub(crate) timeout: Duration,
}

impl StreamCtx {
    pub(crate) fn new(cfg: &GossipConfig) -> Self {
        StreamCtx {
            keyring: cfg.keyring.clone(),
            verify_incoming: cfg.verify_incoming,
            verify_outgoing: cfg.verify_outgoing,
            limits: StreamLimits::new(cfg.max_stream_frame, cfg.stream_memory_budget),
            range: cfg.protocol,
            version: cfg.protocol.min,
            timeout: cfg.stream_timeout,
        }
    }

    /// The same, writing frames in protocol `version` (negotiated with the
    /// peer).
    pub(crate) fn at_version(&self, version: u8) -> Self {
        StreamCtx {
            version,
            ..self.clone()
        }
    }

    /// The same with another frame deadline.
    pub(crate) fn with_timeout(&self, timeout: Duration) -> Self {
        StreamCtx {
            timeout,
            ..self.clone()
        }
    }

    fn seal(&self) -> Option<&Keyring> {
        self.keyring.as_ref().filter(|_| self.verify_outgoing)
    }

    fn opener(&self) -> Opener<'_> {
        Opener {
            keyring: self.keyring.as_ref(),
            require: self.verify_incoming,
            range: self.range,
        }
    }

    /// Reads a frame and the version it was written in.
    async fn read_versioned(&self, s: &mut BoxStream) -> Result<(StreamMsg, u8), StreamError> {
        with_timeout(
            self.timeout,
            read_stream_msg(s, self.opener(), &self.limits),
        )
        .await
    }

    async fn read(&self, s: &mut BoxStream) -> Result<StreamMsg, StreamError> {
        Ok(self.read_versioned(s).await?.0)
    }

    async fn write(&self, s: &mut BoxStream, msg: &StreamMsg) -> Result<(), StreamError> {
        with_timeout(
            self.timeout,
            write_stream_msg(s, msg, self.seal(), self.version),
        )
        .await
    }
}

/// Why a stream exchange failed, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A frame did not open with the keyring (or was plaintext while
    /// encryption is required).
    Decrypt,
    /// A frame declared a body above `max_stream_frame`.
    TooLarge,
    /// The stream memory budget had no room for a frame.
    Budget,
    /// Connecting, or a frame, took longer than the stream timeout.
    Timeout,
    /// A frame written in a protocol version outside our range, by `peer`.
    Version {
        /// The frame's version.
        version: u8,
        /// Who sent it.
        peer: SocketAddr,
    },
    /// A frame that does not decode (bad magic, type or body).
    Malformed,
    /// Anything else (connection refused or reset, peer gone).
    Other,
}

impl Failure {
    fn of(e: &StreamError, peer: SocketAddr) -> Failure {
        match e {
            StreamError::Codec(CodecError::Version(version)) => Failure::Version {
                version: *version,
                peer,
            },
            StreamError::Codec(CodecError::Decrypt) => Failure::Decrypt,
            StreamError::Codec(CodecError::TooLong(_)) => Failure::TooLarge,
            StreamError::Codec(_) => Failure::Malformed,
            StreamError::Budget => Failure::Budget,
            StreamError::Timeout => Failure::Timeout,
            StreamError::Io(_) => Failure::Other,
        }
    }
}

/// What a push/pull task reports to the gossip task.
#[derive(Debug)]
pub(crate) enum Internal {
    /// The responder asks for the local checksum and state.
    Snapshot {
        reply: oneshot::Sender<(u64, pb::PushPullState)>,
    },
    /// A remote state to merge (from either side of an exchange).
    Merge(pb::PushPullState),
    /// A fallback stream probe ended; `ok` if the member answered.
    StreamPingDone { seq: u64, ok: bool },
    /// An exchange ended: `Ok(true)` if checksums agreed and nothing was
    /// exchanged.
    Done {
        op: Option<u64>,
        to: Option<SocketAddr>,
        result: Result<bool, String>,
        /// Why it failed, when it did.
        failure: Option<Failure>,
    },
}

async fn with_timeout<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, StreamError>>,
) -> Result<T, StreamError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| StreamError::Timeout)?
}

/// Runs the initiator side against `to` and reports `Done` (and `Merge`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn initiate<T: Transport>(
    transport: Arc<T>,
    to: SocketAddr,
    join: bool,
    op: Option<u64>,
    checksum: u64,
    local: pb::PushPullState,
    ctx: StreamCtx,
    tx: mpsc::Sender<Internal>,
) {
    let result = async {
        let mut s: BoxStream = tokio::time::timeout(ctx.timeout, transport.connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        let req = StreamMsg::Request(pb::PushPullRequest {
            from: local.from.clone(),
            join,
            checksum,
        });
        ctx.write(&mut s, &req).await?;
        let resp = ctx.read(&mut s).await?;
        let StreamMsg::Response(resp) = resp else {
            return Err(StreamError::Codec(CodecError::Unexpected(0)));
        };
        if resp.in_sync {
            return Ok(None);
        }
        ctx.write(&mut s, &StreamMsg::State(local)).await?;
        Ok(Some(resp.state.unwrap_or_default()))
    }
    .await;
    report(&tx, op, Some(to), to, result).await;
}

/// Serves an accepted stream: a fallback probe (answered at once, if it is
/// meant for `name`) or the responder side of a push/pull. `active` is set
/// once a valid first frame arrived: until then the connection counts as
/// idle and may be closed to make room for another.
pub(crate) async fn respond(
    mut s: BoxStream,
    from: SocketAddr,
    name: String,
    ctx: StreamCtx,
    active: Arc<AtomicBool>,
    tx: mpsc::Sender<Internal>,
) {
    let first = ctx.read_versioned(&mut s).await;
    if first.is_ok() {
        active.store(true, Ordering::Relaxed);
    }
    // Answer in the version the peer wrote in: it is in both ranges.
    let (first, ctx) = match first {
        Ok((m, v)) => (Ok(m), ctx.at_version(v)),
        Err(e) => (Err(e), ctx),
    };
    let req = match first {
        Ok(StreamMsg::Request(req)) => req,
        Ok(StreamMsg::Ping(p)) => {
            if p.target.is_empty() || p.target == name {
                let ack = StreamMsg::Ack(pb::Ack {
                    seq: p.seq,
                    checksum: 0,
                });
                let _ = ctx.write(&mut s, &ack).await;
            }
            return;
        }
        Ok(_) => {
            report(
                &tx,
                None,
                None,
                from,
                Err(StreamError::Codec(CodecError::Unexpected(0))),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::debug!(peer = %from, error = %e, "bad first stream frame");
            report(&tx, None, None, from, Err(e)).await;
            return;
        }
    };
    let result = async {
        let (reply, rx) = oneshot::channel();
        if tx.send(Internal::Snapshot { reply }).await.is_err() {
            return Err(StreamError::Io(std::io::ErrorKind::BrokenPipe.into()));
        }
        let (checksum, state) = rx
            .await
            .map_err(|_| StreamError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
        if !req.join && req.checksum == checksum {
            let resp = StreamMsg::Response(pb::PushPullResponse {
                in_sync: true,
                state: None,
            });
            ctx.write(&mut s, &resp).await?;
            return Ok(None);
        }
        let resp = StreamMsg::Response(pb::PushPullResponse {
            in_sync: false,
            state: Some(state),
        });
        ctx.write(&mut s, &resp).await?;
        match ctx.read(&mut s).await? {
            StreamMsg::State(st) => Ok(Some(st)),
            _ => Err(StreamError::Codec(CodecError::Unexpected(0))),
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::debug!(peer = %from, error = %e, "push/pull from peer failed");
    }
    report(&tx, None, None, from, result).await;
}

/// Probes `to` over a stream and reports `StreamPingDone`.
pub(crate) async fn stream_ping<T: Transport>(
    transport: Arc<T>,
    to: SocketAddr,
    ping: pb::Ping,
    ctx: StreamCtx,
    tx: mpsc::Sender<Internal>,
) {
    let seq = ping.seq;
    let answered = async {
        let mut s: BoxStream = tokio::time::timeout(ctx.timeout, transport.connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        ctx.write(&mut s, &StreamMsg::Ping(ping)).await?;
        match ctx.read(&mut s).await? {
            StreamMsg::Ack(a) => Ok::<bool, StreamError>(a.seq == seq),
            _ => Ok(false),
        }
    }
    .await;
    let ok = matches!(answered, Ok(true));
    let _ = tx.send(Internal::StreamPingDone { seq, ok }).await;
}

/// Hands a received state to the gossip task for merging, then reports how
/// the exchange with `peer` ended.
async fn report(
    tx: &mpsc::Sender<Internal>,
    op: Option<u64>,
    to: Option<SocketAddr>,
    peer: SocketAddr,
    result: Result<Option<pb::PushPullState>, StreamError>,
) {
    let failure = result.as_ref().err().map(|e| Failure::of(e, peer));
    let result = match result {
        Ok(Some(state)) => {
            let _ = tx.send(Internal::Merge(state)).await;
            Ok(false)
        }
        Ok(None) => Ok(true),
        Err(e) => Err(e.to_string()),
    };
    let _ = tx
        .send(Internal::Done {
            op,
            to,
            result,
            failure,
        })
        .await;
}
