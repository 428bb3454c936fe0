//! One kv node: the line protocol, serving and forwarding, and the
//! service's side of the shard hand-off.
//!
//! Requests (one per line): `SET key value` -> `OK`; `GET key` -> `VAL
//! value` or `NOTFOUND`; `RETRY reason` when the shard is in hand-off or
//! unowned (nothing was written); `ERR reason` otherwise. Between nodes:
//! `FWD epoch hops <request>` (a forwarded request; `NOTOWNER epoch` when
//! the receiver does not serve the shard) and `PULL shard requester epoch`
//! (`KV key value` lines then `END`, or `NOTREADY`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clusterfunk::cluster::{Gate, HandoffEvent, HandoffEvents};
use clusterfunk::routing::{ForwardError, Forwarded, Hop, Reply, Routes};
use clusterfunk::Cluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::store::Store;

pub struct Node {
    pub cluster: Cluster,
    pub routes: Routes,
    pub store: Store,
    /// Shards released and not yet pulled by their new owner.
    pub owed: Mutex<BTreeSet<u32>>,
    /// Shards being pulled now.
    pulling: Mutex<BTreeSet<u32>>,
    gate: Mutex<Option<Gate>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Req<'a> {
    Set(&'a str, &'a str),
    Get(&'a str),
}

fn parse(line: &str) -> Option<Req<'_>> {
    let mut w = line.splitn(3, ' ');
    match (w.next()?, w.next(), w.next()) {
        ("SET", Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => Some(Req::Set(k, v)),
        ("GET", Some(k), None) if !k.is_empty() => Some(Req::Get(k)),
        _ => None,
    }
}

/// `FWD epoch hops rest` -> (hop, rest); a client's line -> (default, line).
fn split_hop(line: &str) -> Option<(Hop, &str)> {
    let Some(rest) = line.strip_prefix("FWD ") else {
        return Some((Hop::default(), line));
    };
    let mut w = rest.splitn(3, ' ');
    let epoch = w.next()?.parse().ok()?;
    let hops = w.next()?.parse().ok()?;
    Some((Hop { epoch, hops }, w.next()?))
}

impl Node {
    pub fn new(cluster: Cluster, store: Store) -> Arc<Node> {
        Arc::new(Node {
            routes: clusterfunk::Routes::new(cluster.clone(), "kv"),
            cluster,
            store,
            owed: Mutex::default(),
            pulling: Mutex::default(),
            gate: Mutex::default(),
        })
    }

    /// Accepts connections until the process ends.
    pub async fn serve(self: Arc<Node>, listener: TcpListener) {
        while let Ok((conn, _)) = listener.accept().await {
            let _ = conn.set_nodelay(true);
            tokio::spawn(self.clone().connection(conn));
        }
    }

    async fn connection(self: Arc<Node>, conn: TcpStream) {
        let (read, mut write) = conn.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match line.strip_prefix("PULL ") {
                Some(args) => self.pull_reply(args).await,
                None => self.answer(&line).await,
            };
            if write.write_all(reply.as_bytes()).await.is_err()
                || write.write_all(b"\n").await.is_err()
            {
                return;
            }
        }
    }

    async fn answer(&self, line: &str) -> String {
        let Some((hop, rest)) = split_hop(line) else {
            return "ERR bad FWD header".into();
        };
        let Some(req) = parse(rest) else {
            return "ERR expected SET key value or GET key".into();
        };
        let key = match req {
            Req::Set(k, _) | Req::Get(k) => k,
        };
        let sent = self
            .routes
            .forward(key.as_bytes(), hop, |t, hop| forward_to(t.addr, hop, rest))
            .await;
        let epoch = self.cluster.epoch().unwrap_or(0);
        match sent {
            Ok(Forwarded::Local { shard }) => self.local(shard, req, hop).await,
            Ok(Forwarded::Remote(reply)) => reply,
            Err(ForwardError::Loop { .. } | ForwardError::NotOwner { .. }) if hop.hops > 0 => {
                format!("NOTOWNER {epoch}")
            }
            Err(e @ (ForwardError::NoOwner { .. } | ForwardError::NotOwner { .. })) => {
                format!("RETRY {e}")
            }
            Err(e) => format!("ERR {e}"),
        }
    }

    /// Serves a request for a shard the routes said is ours, under the
    /// shard's lock (a release waits for it).
    async fn local(&self, shard: u32, req: Req<'_>, hop: Hop) -> String {
        let Some(lock) = self.store.lock(shard) else {
            return "ERR shard out of range".into();
        };
        let _held = lock.read().await;
        if !self.cluster.is_serving(shard) {
            return match hop.hops {
                0 => "RETRY shard in hand-off".into(),
                _ => format!("NOTOWNER {}", self.cluster.epoch().unwrap_or(0)),
            };
        }
        let r = match req {
            Req::Set(k, v) => self.store.set(shard, k, v).await.map(|()| "OK".into()),
            Req::Get(k) => self.store.get(shard, k).map(|v| match v {
                Some(v) => format!("VAL {v}"),
                None => "NOTFOUND".into(),
            }),
        };
        r.unwrap_or_else(|e| format!("ERR store: {e}"))
    }

    /// A new owner pulls `shard` from us: `PULL shard requester epoch`,
    /// `epoch` being that of the map it got the shard in.
    async fn pull_reply(&self, args: &str) -> String {
        let mut w = args.split(' ');
        let (Some(Ok(shard)), Some(requester), Some(Ok(their_epoch))) = (
            w.next().map(str::parse::<u32>),
            w.next(),
            w.next().map(str::parse::<u64>),
        ) else {
            return "ERR expected PULL shard requester epoch".into();
        };
        if self.cluster.is_serving(shard) {
            return "NOTREADY".into();
        }
        match self.store.pending_pull(shard) {
            // We wait for the requester's copy, and it waits for ours from
            // an earlier map: it got the shard from us while we were away
            // and never had its data (it serves a shard only after its
            // pull), so our copy is the newest. Keep it and send it.
            Some((from, epoch)) if from == requester && epoch > their_epoch => {
                if let Err(e) = self.store.keep_local(shard).await {
                    return format!("ERR store: {e}");
                }
            }
            Some(_) => return "NOTREADY".into(),
            None => {}
        }
        match self.store.dump(shard) {
            Ok(pairs) => {
                locked(&self.owed).remove(&shard);
                let mut out = String::new();
                for (k, v) in pairs {
                    out.push_str(&format!("KV {k} {v}\n"));
                }
                out.push_str("END");
                out
            }
            Err(e) => format!("ERR store: {e}"),
        }
    }

    /// Takes part in every move (see `clusterfunk::cluster::handoff`).
    pub async fn handoff(self: Arc<Node>, mut events: HandoffEvents) {
        for (shard, (from, epoch)) in self.store.pending_pulls() {
            self.start_pull(shard, from, epoch);
        }
        while let Some(ev) = events.recv().await {
            match ev {
                HandoffEvent::Proposed(p) => {
                    // is_serving is already false for these: wait for the
                    // writes that got in before, then let the node ack.
                    for m in &p.release {
                        locked(&self.owed).insert(m.shard);
                        if let Some(lock) = self.store.lock(m.shard) {
                            drop(lock.write().await);
                        }
                    }
                    p.released();
                }
                HandoffEvent::Committed(c) => {
                    *locked(&self.gate) = Some(c.gate());
                    for m in &c.acquire {
                        let pull = match &m.from {
                            Some(from) => Some((from.clone(), c.epoch)),
                            None => self.store.pending_pull(m.shard),
                        };
                        match pull {
                            None => c.ready(m.shard),
                            Some((from, epoch)) => {
                                let r = self.store.pull_pending(m.shard, &from, epoch).await;
                                if let Err(e) = r {
                                    warn!(shard = m.shard, error = %e, "cannot record pull");
                                }
                                self.start_pull(m.shard, from, epoch);
                            }
                        }
                    }
                }
            }
        }
    }

    fn start_pull(self: &Arc<Node>, shard: u32, from: String, epoch: u64) {
        if !locked(&self.pulling).insert(shard) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(20);
            loop {
                if node.store.pending_pull(shard).is_none() {
                    break;
                }
                match node.pull_once(shard, &from, epoch).await {
                    Ok(n) => {
                        info!(shard, from = %from, keys = n, "shard pulled");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(shard, from = %from, error = %e, "pull failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                }
            }
            locked(&node.pulling).remove(&shard);
            if let Some(g) = locked(&node.gate).as_ref() {
                g.ready(shard);
            }
        });
    }

    async fn pull_once(&self, shard: u32, from: &str, epoch: u64) -> anyhow::Result<usize> {
        let addr = self
            .cluster
            .endpoint(from, "kv")
            .ok_or_else(|| anyhow::anyhow!("{from} publishes no kv endpoint"))?;
        let conn = TcpStream::connect(&addr).await?;
        let (read, mut write) = conn.into_split();
        let me = self.cluster.node_id();
        write
            .write_all(format!("PULL {shard} {me} {epoch}\n").as_bytes())
            .await?;
        let mut lines = BufReader::new(read).lines();
        let mut pairs = Vec::new();
        loop {
            let line = lines
                .next_line()
                .await?
                .ok_or_else(|| anyhow::anyhow!("connection closed mid-pull"))?;
            if line == "END" {
                break;
            }
            let Some(kv) = line.strip_prefix("KV ") else {
                anyhow::bail!("{from} answered {line}");
            };
            let (k, v) = kv
                .split_once(' ')
                .ok_or_else(|| anyhow::anyhow!("bad KV line"))?;
            pairs.push((k.to_string(), v.to_string()));
        }
        self.store.replace(shard, &pairs).await?;
        Ok(pairs.len())
    }
}

/// Sends a forwarded request and reads the one-line answer.
async fn forward_to(addr: String, hop: Hop, line: &str) -> std::io::Result<Reply<String>> {
    let msg = format!("FWD {} {} {line}\n", hop.epoch, hop.hops);
    let conn = TcpStream::connect(&addr).await?;
    conn.set_nodelay(true)?;
    let (read, mut write) = conn.into_split();
    write.write_all(msg.as_bytes()).await?;
    let reply = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .unwrap_or_default();
    Ok(match reply.strip_prefix("NOTOWNER ") {
        Some(e) => Reply::NotOwner {
            epoch: e.parse().unwrap_or(0),
        },
        None => Reply::Done(reply),
    })
}
