//! The push/pull exchange over a stream (join and anti-entropy):
//!
//! 1. initiator → responder: `PushPullRequest { join, checksum }`;
//! 2. responder → initiator: `PushPullResponse { in_sync }` when not a join
//!    and the membership checksums agree (done), else its full state;
//! 3. initiator → responder: its full state. Both sides merge what they got.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::codec::{read_stream_msg, write_stream_msg, StreamError, StreamMsg};
use super::error::CodecError;
use super::keyring::Keyring;
use super::pb;
use super::transport::{BoxStream, Transport};

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
        /// The failure was a frame that did not decrypt.
        decrypt_failure: bool,
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
    keyring: Option<Keyring>,
    timeout: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let result = async {
        let mut s: BoxStream = tokio::time::timeout(timeout, transport.connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        let k = keyring.as_ref();
        let req = StreamMsg::Request(pb::PushPullRequest {
            from: local.from.clone(),
            join,
            checksum,
        });
        with_timeout(timeout, write_stream_msg(&mut s, &req, k)).await?;
        let resp = with_timeout(timeout, read_stream_msg(&mut s, k)).await?;
        let StreamMsg::Response(resp) = resp else {
            return Err(StreamError::Codec(CodecError::Unexpected(0)));
        };
        if resp.in_sync {
            return Ok(None);
        }
        with_timeout(
            timeout,
            write_stream_msg(&mut s, &StreamMsg::State(local), k),
        )
        .await?;
        Ok(Some(resp.state.unwrap_or_default()))
    }
    .await;
    report(&tx, op, Some(to), result).await;
}

/// Serves an accepted stream: a fallback probe (answered at once, if it is
/// meant for `name`) or the responder side of a push/pull.
pub(crate) async fn respond(
    mut s: BoxStream,
    from: SocketAddr,
    name: String,
    keyring: Option<Keyring>,
    timeout: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let k = keyring.as_ref();
    let req = match with_timeout(timeout, read_stream_msg(&mut s, k)).await {
        Ok(StreamMsg::Request(req)) => req,
        Ok(StreamMsg::Ping(p)) => {
            if p.target.is_empty() || p.target == name {
                let ack = StreamMsg::Ack(pb::Ack {
                    seq: p.seq,
                    checksum: 0,
                });
                let _ = with_timeout(timeout, write_stream_msg(&mut s, &ack, k)).await;
            }
            return;
        }
        Ok(_) => {
            report(
                &tx,
                None,
                None,
                Err(StreamError::Codec(CodecError::Unexpected(0))),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::debug!(peer = %from, error = %e, "bad first stream frame");
            report(&tx, None, None, Err(e)).await;
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
            with_timeout(timeout, write_stream_msg(&mut s, &resp, k)).await?;
            return Ok(None);
        }
        let resp = StreamMsg::Response(pb::PushPullResponse {
            in_sync: false,
            state: Some(state),
        });
        with_timeout(timeout, write_stream_msg(&mut s, &resp, k)).await?;
        match with_timeout(timeout, read_stream_msg(&mut s, k)).await? {
            StreamMsg::State(st) => Ok(Some(st)),
            _ => Err(StreamError::Codec(CodecError::Unexpected(0))),
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::debug!(peer = %from, error = %e, "push/pull from peer failed");
    }
    report(&tx, None, None, result).await;
}

/// Probes `to` over a stream and reports `StreamPingDone`.
pub(crate) async fn stream_ping<T: Transport>(
    transport: Arc<T>,
    to: SocketAddr,
    ping: pb::Ping,
    keyring: Option<Keyring>,
    timeout: Duration,
    tx: mpsc::Sender<Internal>,
) {
    let seq = ping.seq;
    let answered = async {
        let mut s: BoxStream = tokio::time::timeout(timeout, transport.connect(to))
            .await
            .map_err(|_| StreamError::Timeout)??;
        let k = keyring.as_ref();
        with_timeout(timeout, write_stream_msg(&mut s, &StreamMsg::Ping(ping), k)).await?;
        match with_timeout(timeout, read_stream_msg(&mut s, k)).await? {
            StreamMsg::Ack(a) => Ok::<bool, StreamError>(a.seq == seq),
            _ => Ok(false),
        }
    }
    .await;
    let ok = matches!(answered, Ok(true));
    let _ = tx.send(Internal::StreamPingDone { seq, ok }).await;
}

/// Hands a received state to the gossip task for merging, then reports how
/// the exchange ended.
async fn report(
    tx: &mpsc::Sender<Internal>,
    op: Option<u64>,
    to: Option<SocketAddr>,
    result: Result<Option<pb::PushPullState>, StreamError>,
) {
    let decrypt_failure = matches!(result, Err(StreamError::Codec(CodecError::Decrypt)));
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
            decrypt_failure,
        })
        .await;
}
