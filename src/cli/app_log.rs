//! `clusterfunk log append|watch`: the application log through a node's
//! management API. A child module of `mgmt`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use clusterfunk::management::{AppLogEntry, Client, LogEntries};

use super::{emit, Format, RpcArgs};

/// `log` flags.
#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(subcommand)]
    cmd: LogCmd,
}

/// The `log` subcommands.
#[derive(Subcommand, Debug)]
enum LogCmd {
    /// Append an entry (the text given, or a file's bytes) and print its
    /// index once a quorum holds it.
    Append {
        #[command(flatten)]
        rpc: RpcArgs,
        /// The entry as UTF-8 text.
        #[arg(conflicts_with = "file", required_unless_present = "file")]
        data: Option<String>,
        /// Read the entry from this file (`-`: standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print entries from an index (0: the oldest retained); with
    /// `--follow`, keep printing new ones until Ctrl-C.
    Watch {
        #[command(flatten)]
        rpc: RpcArgs,
        /// First index to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Keep the stream open for new entries.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

impl LogArgs {
    /// How to reach the node.
    pub(super) fn rpc(&self) -> &RpcArgs {
        match &self.cmd {
            LogCmd::Append { rpc, .. } | LogCmd::Watch { rpc, .. } => rpc,
        }
    }

    /// Whether this call streams until the operator stops it (no timeout).
    pub(super) fn streams(&self) -> bool {
        matches!(self.cmd, LogCmd::Watch { follow: true, .. })
    }
}

/// Runs a `log` subcommand against `client`.
pub(super) async fn run(args: LogArgs, client: &Client, format: Format) -> anyhow::Result<()> {
    match args.cmd {
        LogCmd::Append { data, file, .. } => {
            let bytes = match (data, file) {
                (Some(d), _) => d.into_bytes(),
                (None, Some(p)) if p.as_os_str() == "-" => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                        .context("read standard input")?;
                    buf
                }
                (None, Some(p)) => {
                    std::fs::read(&p).with_context(|| format!("read {}", p.display()))?
                }
                (None, None) => bail!("give the entry or --file"),
            };
            let index = client.append_log(&bytes).await?;
            emit(
                format,
                &serde_json::json!({ "index": index, "bytes": bytes.len() }),
                || format!("appended entry {index} ({} bytes)", bytes.len()),
            )
        }
        LogCmd::Watch { from, follow, .. } => {
            let entries = client.watch_log(from, follow).await?;
            print_entries(entries, format).await
        }
    }
}

/// Prints every entry as it comes: `index text` (non-UTF-8 bytes shown
/// lossily), or one JSON object per line (`data` as UTF-8 text when it is,
/// plus `hex`).
async fn print_entries(mut entries: LogEntries, format: Format) -> anyhow::Result<()> {
    while let Some(e) = entries.next().await {
        let line = line(&e?, format);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

fn line(e: &AppLogEntry, format: Format) -> String {
    match format {
        Format::Text => format!(
            "{} {}",
            e.index,
            String::from_utf8_lossy(&e.data).replace(['\n', '\r'], " ")
        ),
        Format::Json => {
            let hex: String = e.data.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({
                "index": e.index,
                "data": std::str::from_utf8(&e.data).ok(),
                "hex": hex,
            })
            .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_text_and_bytes() {
        let e = AppLogEntry {
            index: 7,
            data: bytes::Bytes::from_static(b"schema=v2\n"),
        };
        assert_eq!(line(&e, Format::Text), "7 schema=v2 ");
        let j: serde_json::Value = serde_json::from_str(&line(&e, Format::Json)).unwrap();
        assert_eq!(j["index"], 7);
        assert_eq!(j["data"], "schema=v2\n");
        let raw = AppLogEntry {
            index: 8,
            data: bytes::Bytes::from_static(&[0xff, 0x00]),
        };
        let j: serde_json::Value = serde_json::from_str(&line(&raw, Format::Json)).unwrap();
        assert!(j["data"].is_null());
        assert_eq!(j["hex"], "ff00");
    }
}
