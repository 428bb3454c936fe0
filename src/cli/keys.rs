//! `clusterfunk keys list|install|use|remove`: gossip key rotation on every
//! alive member, through any node's management API (Serf's `keys`).
//!
//! A rotation: `install NEW` (every node accepts it), `use NEW` (every node
//! sends with it), `remove OLD`. Each step must succeed on every node
//! before the next; the command exits 1 when any node failed, naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use clusterfunk::cluster::KeyOp;
use clusterfunk::management::NodeKeys;

use super::mgmt::{connect, emit, table, RpcArgs};

/// `keys` subcommands.
#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    op: KeysCmd,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Show each key's fingerprint and how many nodes have it (and use it
    /// as primary).
    List(RpcArgs),
    /// Add KEY (base64, 16/24/32 bytes) to every node's keyring.
    Install(KeyArgs),
    /// Make KEY, already installed everywhere, every node's primary.
    Use(KeyArgs),
    /// Remove KEY from every node's keyring (refused where it is primary).
    Remove(KeyArgs),
}

/// A key and how to reach a node.
#[derive(Args, Debug)]
struct KeyArgs {
    /// The key, base64.
    key: String,
    #[command(flatten)]
    rpc: RpcArgs,
}

/// Decodes a key as `--encrypt` does: standard base64 of 16, 24 or 32 bytes.
fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the key must be base64 (e.g. from `head -c 32 /dev/urandom | base64`)")?;
    anyhow::ensure!(
        matches!(key.len(), 16 | 24 | 32),
        "the key must decode to 16, 24 or 32 bytes, got {}",
        key.len()
    );
    Ok(key)
}

/// Runs `keys`; on failure prints one line on stderr and exits with 1.
pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the runtime")
        .and_then(|rt| rt.block_on(execute(args)));
    if let Err(e) = result {
        let line = format!("{e:#}").replace(['\n', '\r'], " ");
        eprintln!("clusterfunk: {line}");
        std::process::exit(1);
    }
    Ok(())
}

async fn execute(args: KeysArgs) -> anyhow::Result<()> {
    let (op, rpc) = match &args.op {
        KeysCmd::List(rpc) => (KeyOp::List, rpc),
        KeysCmd::Install(a) => (KeyOp::Install(parse_key(&a.key)?), &a.rpc),
        KeysCmd::Use(a) => (KeyOp::Use(parse_key(&a.key)?), &a.rpc),
        KeysCmd::Remove(a) => (KeyOp::Remove(parse_key(&a.key)?), &a.rpc),
    };
    let work = async {
        let client = connect(rpc).await?;
        Ok::<_, anyhow::Error>(client.keys(&op).await?)
    };
    let wait = Duration::from_secs(30);
    let nodes = tokio::time::timeout(wait, work)
        .await
        .map_err(|_| anyhow!("no answer within {} s", wait.as_secs()))??;
    emit(rpc.format, &nodes, || text(&op, &nodes))?;
    let failed: Vec<&str> = nodes
        .iter()
        .filter(|n| n.error.is_some())
        .map(|n| n.node_id.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} failed on {} of {} nodes: {}",
        op.as_str(),
        failed.len(),
        nodes.len(),
        failed.join(", ")
    );
    Ok(())
}

/// Per-node lines, then (for `list`) each key with its node counts.
fn text(op: &KeyOp, nodes: &[NodeKeys]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.clone(),
                n.error.clone().unwrap_or_else(|| "ok".into()),
                n.primary.clone(),
                n.keys.len().to_string(),
            ]
        })
        .collect();
    let mut out = table(&["NODE", "RESULT", "PRIMARY", "KEYS"], rows);
    if matches!(op, KeyOp::List) {
        let mut count: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.error.is_none()) {
            for k in &n.keys {
                let c = count.entry(k).or_default();
                c.0 += 1;
                c.1 += usize::from(*k == n.primary);
            }
        }
        let ok = nodes.iter().filter(|n| n.error.is_none()).count();
        let rows = count
            .into_iter()
            .map(|(k, (has, primary))| {
                vec![k.to_string(), format!("{has}/{ok}"), primary.to_string()]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["KEY", "NODES", "PRIMARY ON"], rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_before_any_call() {
        assert!(parse_key("not base64!").is_err());
        assert!(parse_key("AAAA").is_err());
        assert_eq!(
            parse_key(&format!("{}=", "A".repeat(43))).unwrap().len(),
            32
        );
    }
}
