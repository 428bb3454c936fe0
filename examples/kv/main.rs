//! A sharded key-value service on clusterfunk: each node keeps the keys of
//! the shards it serves and forwards the others to their owner.
//!
//! Three nodes on one machine (each in its own shell):
//!
//! ```text
//! cargo run --example kv -- --node-id a --kv 127.0.0.1:9001 --gossip 127.0.0.1:7001
//! cargo run --example kv -- --node-id b --kv 127.0.0.1:9002 --gossip 127.0.0.1:7002 --join 127.0.0.1:7001
//! cargo run --example kv -- --node-id c --kv 127.0.0.1:9003 --gossip 127.0.0.1:7003 --join 127.0.0.1:7001
//! printf 'SET colour blue\nGET colour\n' | nc -q1 127.0.0.1 9003
//! ```
//!
//! Protocol: one request per line, `SET key value` -> `OK`, `GET key` ->
//! the value or `NOTFOUND`, errors as `ERR reason`. A demo, not a store:
//! values of a shard that moves are not handed over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use clusterfunk::routing::{Route, Routes};
use clusterfunk::{Agent, Config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    /// Unique node id.
    #[arg(long)]
    node_id: String,
    /// Address of this node's key-value listener.
    #[arg(long)]
    kv: SocketAddr,
    /// Gossip address.
    #[arg(long)]
    gossip: SocketAddr,
    /// Gossip address of a running node.
    #[arg(long)]
    join: Option<String>,
}

type Store = Arc<Mutex<HashMap<String, String>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config::local(args.node_id);
    config.cluster_name = "kv".into();
    config.gossip_addr = args.gossip;
    config.join = args.join.into_iter().collect();
    // Bound first, so `ep.kv` is in the node's first gossip tags.
    let listener = TcpListener::bind(args.kv).await?;
    config
        .endpoints
        .insert("kv".into(), config.advertised(listener.local_addr()?));
    // The agent adds the management API (`clusterfunk status` works) to the
    // cluster node; `Cluster::start` alone would run the node only.
    let node = Agent::start(config).await?;
    let routes = Routes::new(node.cluster().clone(), "kv");
    let store: Store = Arc::default();
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (conn, _) = conn?;
                tokio::spawn(serve(conn, routes.clone(), store.clone()));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.stop().await;
    Ok(())
}

async fn serve(conn: TcpStream, routes: Routes, store: Store) {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = answer(&line, &routes, &store).await;
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn answer(line: &str, routes: &Routes, store: &Store) -> String {
    let mut words = line.splitn(3, ' ');
    let (cmd, key) = match (words.next(), words.next()) {
        (Some(cmd), Some(key)) => (cmd, key),
        _ => return "ERR expected SET key value or GET key".into(),
    };
    match routes.route(key.as_bytes()) {
        Route::Local { .. } => {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            match (cmd, words.next()) {
                ("SET", Some(value)) => {
                    store.insert(key.to_string(), value.to_string());
                    "OK".into()
                }
                ("GET", None) => store.get(key).cloned().unwrap_or("NOTFOUND".into()),
                _ => "ERR expected SET key value or GET key".into(),
            }
        }
        Route::Forward { addr, .. } => forward(&addr, line)
            .await
            .unwrap_or_else(|e| format!("ERR forward to {addr}: {e}")),
        Route::Unavailable { reason, .. } => format!("ERR unavailable: {reason}"),
    }
}

async fn forward(addr: &str, line: &str) -> std::io::Result<String> {
    let conn = TcpStream::connect(addr).await?;
    let (read, mut write) = conn.into_split();
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let reply = BufReader::new(read).lines().next_line().await?;
    Ok(reply.unwrap_or_default())
}
