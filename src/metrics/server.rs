//! [`MetricsServer`]: the node's HTTP endpoint for Prometheus and people.
//!
//! Routes: `GET /metrics` (text exposition 0.0.4 of the node's registry),
//! `GET /healthz` (200 `ok` while Operational, 503 otherwise), `GET /status`
//! (JSON [`StatusView`]), `GET /` (the HTML status page). Anything else is
//! 404 (405 for another method on a known path).
//!
//! One accept task owns the listener and a `JoinSet` of connection tasks, so
//! stopping the server stops and awaits every task it started.
//!
//! Bounds: idle or slow clients cannot keep scrapes out. A client must send
//! its request headers within [`HEADER_READ_TIMEOUT`], a kept-alive
//! connection is closed after [`IDLE_TIMEOUT`] without a request, and when
//! [`MAX_CONNECTIONS`] are open a new connection closes the oldest one not
//! in the middle of a request (so a flood of idle connections only evicts
//! itself, and a real scrape gets through).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::{debug, info, warn, Instrument};

use super::error::MetricsError;
use super::html::render_page;
use super::registry::Metrics;
use super::status::StatusView;

/// At most this many HTTP connections at once; beyond it the oldest idle
/// one is closed for each new one (or the new one, if all are busy).
pub const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A kept-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the stop signal, open connections get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

struct Shared {
    metrics: Metrics,
    status: watch::Receiver<StatusView>,
    /// Connections closed to make room, or refused.
    shed: AtomicU64,
}

/// One open connection, in accept order.
struct Open {
    id: tokio::task::Id,
    abort: AbortHandle,
    /// True while a request is being answered.
    busy: Arc<AtomicBool>,
}

/// A running metrics/health/status HTTP server.
///
/// Dropping the handle stops the server as well (the accept task then
/// drains in the background); call [`shutdown`](Self::shutdown) to stop it
/// and wait until every task has ended.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Starts serving on `listener` (bind it to port 0 in tests and read
    /// [`local_addr`](Self::local_addr) back). The server stops when
    /// `shutdown` completes, when [`shutdown`](Self::shutdown) is called or
    /// when the handle is dropped.
    ///
    /// `/healthz` answers 200 while the latest [`StatusView`] says
    /// `operational`, and 503 otherwise or once its sender is gone.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn serve<F>(
        listener: TcpListener,
        metrics: Metrics,
        status: watch::Receiver<StatusView>,
        shutdown: F,
    ) -> Result<MetricsServer, MetricsError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = oneshot::channel();
        let span =
            tracing::info_span!("metrics_http", node = %metrics.node_id(), addr = %local_addr);
        let shared = Arc::new(Shared {
            metrics,
            status,
            shed: AtomicU64::new(0),
        });
        let task = tokio::spawn(
            async move {
                let stop_signal = async move {
                    tokio::select! {
                        () = shutdown => {}
                        // Either an explicit stop or the handle was dropped.
                        _ = stop_rx => {}
                    }
                };
                accept_loop(listener, shared, stop_signal).await;
            }
            .instrument(span),
        );
        Ok(MetricsServer {
            local_addr,
            stop,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, gives open connections a short time to finish, and
    /// waits until every server task has ended.
    pub async fn shutdown(self) -> Result<(), MetricsError> {
        let MetricsServer { stop, task, .. } = self;
        // Err: the task already ended (its shutdown future fired).
        let _ = stop.send(());
        task.await?;
        Ok(())
    }

    /// Waits until the server has stopped because its `shutdown` future
    /// completed, without stopping it.
    pub async fn join(self) -> Result<(), MetricsError> {
        let MetricsServer { stop, task, .. } = self;
        let result = task.await;
        drop(stop);
        result?;
        Ok(())
    }
}

async fn accept_loop<S>(listener: TcpListener, shared: Arc<Shared>, stop_signal: S)
where
    S: Future<Output = ()>,
{
    tokio::pin!(stop_signal);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut open: VecDeque<Open> = VecDeque::new();
    info!("serving /metrics, /healthz, /status and /");
    loop {
        tokio::select! {
            () = &mut stop_signal => break,
            Some(done) = conns.join_next_with_id(), if !conns.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.retain(|o| o.id != id);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if open.len() >= MAX_CONNECTIONS {
                        let idle = open.iter().position(|o| !o.busy.load(Ordering::Relaxed));
                        shared.shed.fetch_add(1, Ordering::Relaxed);
                        match idle.and_then(|i| open.remove(i)) {
                            Some(old) => old.abort.abort(),
                            None => {
                                debug!(%peer, limit = MAX_CONNECTIONS, "every connection busy, closing");
                                drop(stream);
                                continue;
                            }
                        }
                    }
                    let shared = Arc::clone(&shared);
                    let drain = drain_rx.clone();
                    let busy = Arc::new(AtomicBool::new(false));
                    let abort = conns.spawn(serve_connection(stream, peer, shared, drain, busy.clone()));
                    open.push_back(Open { id: abort.id(), abort, busy });
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = conns.len(),
            "connections did not finish in time, aborting them"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    info!("stopped");
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
    busy: Arc<AtomicBool>,
) {
    // Requests are answered synchronously, so "busy" spans exactly one
    // request; `last` tells the idle timer when the latest one ended.
    let (last_tx, mut last_rx) = watch::channel(tokio::time::Instant::now());
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let busy = Arc::clone(&busy);
        let last_tx = last_tx.clone();
        async move {
            busy.store(true, Ordering::Relaxed);
            let resp = route(&shared, &req);
            busy.store(false, Ordering::Relaxed);
            last_tx.send_replace(tokio::time::Instant::now());
            Ok::<_, Infallible>(resp)
        }
    });
    let idle = async move {
        loop {
            let deadline = *last_rx.borrow_and_update() + IDLE_TIMEOUT;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if *last_rx.borrow() + IDLE_TIMEOUT <= tokio::time::Instant::now() {
                        return;
                    }
                }
                r = last_rx.changed() => if r.is_err() { std::future::pending::<()>().await },
            }
        }
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = idle => {
            debug!(%peer, "idle http connection closed");
            return;
        }
        // The guard `wait_for` returns must not live across the await below.
        () = async { let _ = drain.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "http connection ended with an error");
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Answers one request. Pure apart from reading the shared state.
fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let known = matches!(path, "/" | "/metrics" | "/healthz" | "/status");
    if !known {
        return response(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => match shared.metrics.encode_text() {
            Ok(text) => response(StatusCode::OK, prometheus::TEXT_FORMAT, text),
            Err(error) => {
                warn!(%error, "encoding metrics failed");
                response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    format!("{error}\n"),
                )
            }
        },
        "/healthz" => {
            // A closed channel means the coordinator is gone: not healthy.
            let publisher_alive = shared.status.has_changed().is_ok();
            if publisher_alive && shared.status.borrow().operational {
                response(StatusCode::OK, TEXT, "ok\n")
            } else {
                response(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not operational\n")
            }
        }
        "/status" => {
            let view = shared.status.borrow().clone();
            match serde_json::to_vec(&view) {
                Ok(json) => response(StatusCode::OK, "application/json", json),
                Err(error) => {
                    warn!(%error, "encoding status failed");
                    response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        format!("{error}\n"),
                    )
                }
            }
        }
        _ => {
            let page = render_page(&shared.status.borrow());
            response(StatusCode::OK, "text/html; charset=utf-8", page)
        }
    }
}
