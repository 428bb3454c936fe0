//! The metrics HTTP server over real sockets on 127.0.0.1:0, with a raw
//! HTTP/1.1 client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clusterfunk::metrics::{Liveness, Metrics, MetricsServer, NodeView, RaftRole, StatusView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);
const HOSTILE: &str = "<script>alert('pwned')</script>";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn decode_chunked(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk header"))?;
        let size_text = std::str::from_utf8(&raw[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        raw = raw
            .get(size + 2..)
            .ok_or_else(|| anyhow!("short chunk end"))?;
    }
}

/// Sends one request with `Connection: close` and reads the whole reply.
async fn request(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: raw-test\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = timeout(DEADLINE, exchange)
        .await
        .context("request timed out")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| anyhow!("empty reply"))?;
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = parts.next().ok_or_else(|| anyhow!("no status"))?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    let body = &raw[split + 4..];
    let body = if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        decode_chunked(body)?
    } else {
        body.to_vec()
    };
    reply.body = String::from_utf8(body)?;
    Ok(reply)
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    request(addr, "GET", path).await
}

fn sample_view() -> StatusView {
    StatusView {
        node_id: "n1".into(),
        cluster_name: "demo".into(),
        cluster_id: Some("c-42".into()),
        leader: Some(HOSTILE.into()),
        role: "voter".into(),
        state: "joining".into(),
        operational: false,
        epoch: 3,
        shard_count: 16,
        uptime_ms: 65_000,
        nodes: vec![
            NodeView {
                id: HOSTILE.into(),
                role: "leader".into(),
                gossip_status: "alive".into(),
                liveness: Liveness::Alive,
                raft_role: RaftRole::Voter,
                endpoints: BTreeMap::from([("raft".into(), "10.0.0.1:7000".into())]),
                zone: Some("z1".into()),
                weight: 1,
                shards: 12,
            },
            NodeView {
                id: "n1".into(),
                role: "voter".into(),
                gossip_status: "suspect".into(),
                liveness: Liveness::Unknown,
                raft_role: RaftRole::Learner,
                endpoints: BTreeMap::new(),
                zone: None,
                weight: 2,
                shards: 4,
            },
        ],
        ..StatusView::default()
    }
}

async fn start(
    view: StatusView,
) -> anyhow::Result<(MetricsServer, Metrics, watch::Sender<StatusView>)> {
    let metrics = Metrics::new("n1")?;
    let (tx, rx) = watch::channel(view);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = MetricsServer::serve(listener, metrics.clone(), rx, std::future::pending())?;
    Ok((server, metrics, tx))
}

#[tokio::test]
async fn routes_answer_as_documented() -> anyhow::Result<()> {
    let (server, metrics, tx) = start(sample_view()).await?;
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    metrics.raft_term.set(11);

    // /metrics
    let r = get(addr, "/metrics").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(
        r.body.lines().any(|l| l.starts_with("clusterfunk_")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("clusterfunk_raft_term{node=\"n1\"} 11"),
        "{}",
        r.body
    );

    // /healthz: 503 until the coordinator says Operational
    let r = get(addr, "/healthz").await?;
    assert_eq!(r.status, 503, "{}", r.body);
    tx.send_modify(|v| {
        v.operational = true;
        v.state = "operational".into();
    });
    let r = get(addr, "/healthz").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");

    // /status round-trips to the published view
    let r = get(addr, "/status").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let back: StatusView = serde_json::from_str(&r.body)?;
    assert_eq!(back, *tx.borrow());

    // / is HTML with every user string escaped
    let r = get(addr, "/").await?;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/html")));
    assert!(r.body.starts_with("<!doctype html>"));
    assert!(!r.body.contains(HOSTILE), "hostile id appears raw");
    assert!(!r.body.contains("<script>alert"));
    assert!(r
        .body
        .contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert!(r.body.contains("width:75.0%"), "shard bar of 12/16");
    assert!(r.body.contains("width:25.0%"), "shard bar of 4/16");
    assert!(
        !r.body.contains("src=") && !r.body.contains("href="),
        "external assets"
    );

    // unknown paths and methods
    assert_eq!(get(addr, "/nope").await?.status, 404);
    assert_eq!(get(addr, "/metrics/extra").await?.status, 404);
    let r = request(addr, "POST", "/metrics").await?;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    timeout(DEADLINE, server.shutdown()).await??;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open after shutdown"
    );
    Ok(())
}

#[tokio::test]
async fn healthz_fails_when_the_publisher_is_gone() -> anyhow::Result<()> {
    let mut view = sample_view();
    view.operational = true;
    let (server, _metrics, tx) = start(view).await?;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").await?.status, 200);
    drop(tx);
    assert_eq!(get(addr, "/healthz").await?.status, 503);
    // the last view is still shown
    assert_eq!(get(addr, "/status").await?.status, 200);
    timeout(DEADLINE, server.shutdown()).await??;
    Ok(())
}

#[tokio::test]
async fn shutdown_future_stops_the_server_even_with_an_idle_connection() -> anyhow::Result<()> {
    let metrics = Metrics::new("n2")?;
    let (_tx, rx) = watch::channel(StatusView::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = MetricsServer::serve(listener, metrics, rx, async {
        let _ = stop_rx.await;
    })?;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").await?.status, 503);

    // A keep-alive client that went quiet must not hold the server open.
    let mut idle = TcpStream::connect(addr).await?;
    idle.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 4096];
    let n = timeout(DEADLINE, idle.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    stop_tx
        .send(())
        .map_err(|()| anyhow!("server ended early"))?;
    timeout(DEADLINE, server.join()).await??;
    // The idle connection was closed by the server.
    let closed = timeout(DEADLINE, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection left open");
    Ok(())
}
