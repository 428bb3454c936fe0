//! `AppendLog` and `WatchLog`: the application log over the management
//! API (server side and the client's methods).
//!
//! A watch stream follows the serving node's [`AppLogWatch`]: entries in
//! index order, then new ones as the node applies them. It ends when the
//! server or the node stops, after the entries applied when the call
//! arrived (without `follow`), or with OUT_OF_RANGE when an entry it needed
//! was compacted.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Response, Status};
use tracing::debug;

use super::client::Client;
use super::{convert, pb, ManagementError};
use crate::cluster::{AppLogEntry, AppLogWatch, Cluster};

pub(crate) type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

/// Serves `AppendLog`.
pub(crate) async fn append(
    cluster: &Cluster,
    req: pb::AppendLogRequest,
) -> Result<Response<pb::AppendLogResponse>, Status> {
    let size = req.data.len();
    let index = cluster
        .append_log(req.data)
        .await
        .map_err(convert::status)?;
    debug!(index, size, "management: appended to the application log");
    Ok(Response::new(pb::AppendLogResponse {
        index,
        served_by: cluster.node_id().to_string(),
    }))
}

struct Feed {
    log: AppLogWatch,
    shutdown: watch::Receiver<bool>,
    /// Without `follow`: the index the stream stops before.
    end: Option<u64>,
    done: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Result<pb::LogEntry, Status>> {
        if self.done || self.end.is_some_and(|end| self.log.next_index() >= end) {
            return None;
        }
        let next = tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|s| *s) => return None,
            next = self.log.next() => next,
        };
        Some(match next {
            Ok(AppLogEntry { index, data }) => Ok(pb::LogEntry {
                index,
                data: data.to_vec(),
            }),
            Err(e) => {
                self.done = true;
                Err(convert::status(e))
            }
        })
    }
}

/// Serves `WatchLog`.
pub(crate) fn watch(
    cluster: &Cluster,
    shutdown: watch::Receiver<bool>,
    req: pb::WatchLogRequest,
) -> Result<Response<LogStream>, Status> {
    let log = cluster
        .app_log_watch(req.from_index)
        .map_err(convert::status)?;
    let end = match req.follow {
        true => None,
        false => Some(cluster.app_log_bounds().map_err(convert::status)?.1),
    };
    let feed = Feed {
        log,
        shutdown,
        end,
        done: false,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let item = feed.next().await?;
        Some((item, feed))
    });
    Ok(Response::new(Box::pin(stream)))
}

/// A stream of application log entries from [`Client::watch_log`].
pub struct LogEntries {
    inner: tonic::Streaming<pb::LogEntry>,
}

impl std::fmt::Debug for LogEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogEntries")
    }
}

impl LogEntries {
    /// The next entry; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<AppLogEntry, ManagementError>> {
        match self.inner.message().await {
            Ok(Some(e)) => Some(Ok(AppLogEntry {
                index: e.index,
                data: e.data.into(),
            })),
            Ok(None) => None,
            Err(s) => Some(Err(s.into())),
        }
    }
}

impl Client {
    /// Appends `data` to the application log; returns its index once a
    /// quorum holds it.
    pub async fn append_log(&self, data: &[u8]) -> Result<u64, ManagementError> {
        let req = pb::AppendLogRequest {
            data: data.to_vec(),
        };
        Ok(self.raw().append_log(req).await?.into_inner().index)
    }

    /// Application log entries from `from` (0: the oldest retained); with
    /// `follow`, new ones too until the stream is dropped.
    pub async fn watch_log(&self, from: u64, follow: bool) -> Result<LogEntries, ManagementError> {
        let req = pb::WatchLogRequest {
            from_index: from,
            follow,
        };
        let r = self.raw().watch_log(req).await?;
        Ok(LogEntries {
            inner: r.into_inner(),
        })
    }
}
