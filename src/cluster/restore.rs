//! Rolling restarts keep weights. A graceful stop drains the node (weight 0
//! in the replicated registry, so its shards move before it leaves) and
//! leaves a mark in its data dir saying what the registry held for it
//! before: an operator's weight, or nothing. The restarted node undoes its
//! own drain through the leader: it writes the operator's weight back, or
//! removes its registry entry so that its `--weight` (gossip tag) counts
//! again. An operator's `SetWeight` thus survives restarts and wins over
//! the flag; a drain done by a stop never does.
//!
//! Without a data dir (in-memory storage) there is nothing to restart from
//! and no mark.

use std::path::PathBuf;

use crate::config::{Config, StorageConfig};
use crate::raft::Command;

/// The mark file of one node.
#[derive(Debug, Clone)]
pub(super) struct DrainMark {
    path: PathBuf,
}

impl DrainMark {
    /// The mark of the node configured by `cfg`, if it has a data dir.
    pub fn of(cfg: &Config) -> Option<DrainMark> {
        match &cfg.storage {
            StorageConfig::DataDir(dir) => Some(DrainMark {
                path: dir.join("drained-by-stop"),
            }),
            StorageConfig::Memory => None,
        }
    }

    /// Records that a stop drains the node; `before` is the registry's
    /// weight for it before the drain (`None`: no registry entry).
    pub fn write(&self, before: Option<u32>) -> std::io::Result<()> {
        let text = before.map_or_else(|| "none".to_string(), |w| w.to_string());
        std::fs::write(&self.path, text)
    }

    /// What a previous stop recorded: `None` when there is no mark (or it
    /// is unreadable, which is logged by the caller as "nothing to undo").
    pub fn read(&self) -> Option<Option<u32>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match text.trim() {
            "none" => Some(None),
            w => w.parse().ok().map(Some),
        }
    }

    /// Removes the mark (the drain was undone).
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The registry write that undoes a stop's drain of `me`.
pub(super) fn undo(me: &str, before: Option<u32>, zone: &str) -> Command {
    match before {
        Some(weight) => Command::SetMember {
            name: me.to_string(),
            weight,
            zone: zone.to_string(),
        },
        None => Command::RemoveMember {
            name: me.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_undoes_to_the_right_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::local("n1");
        cfg.storage = StorageConfig::DataDir(dir.path().to_path_buf());
        let mark = DrainMark::of(&cfg).expect("data dir");
        assert_eq!(mark.read(), None);
        mark.write(Some(3)).expect("write");
        assert_eq!(mark.read(), Some(Some(3)));
        mark.write(None).expect("write");
        assert_eq!(mark.read(), Some(None));
        mark.clear().expect("clear");
        mark.clear().expect("clearing twice is fine");
        assert_eq!(mark.read(), None);
        assert!(DrainMark::of(&Config::local("n2")).is_none());
        assert!(matches!(
            undo("n1", Some(2), "z"),
            Command::SetMember { weight: 2, .. }
        ));
        assert!(matches!(undo("n1", None, ""), Command::RemoveMember { .. }));
    }
}
