//! Serf-style snapshot of known peers: where they were and the event clock,
//! so a restarted node rejoins on its own and does not replay old user
//! events. After a graceful leave the snapshot says so and no rejoin
//! happens.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Contents of the snapshot file (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    /// Live peers: name and gossip address.
    pub(crate) alive: Vec<(String, SocketAddr)>,
    /// Lamport time of user events.
    pub(crate) event_ltime: u64,
    /// The node left gracefully: do not rejoin.
    pub(crate) left: bool,
}

/// Reads a snapshot; `None` if there is none or it is unreadable (a
/// corrupt snapshot only costs the automatic rejoin).
pub(crate) fn load(path: &Path) -> Option<Snapshot> {
    let data = std::fs::read(path).ok()?;
    match serde_json::from_slice(&data) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable gossip snapshot");
            None
        }
    }
}

/// Writes a snapshot atomically (temporary file, then rename).
pub(crate) fn save(path: &Path, s: &Snapshot) -> io::Result<()> {
    let data = serde_json::to_vec(s).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peers.json");
        assert_eq!(load(&p), None);
        let s = Snapshot {
            alive: vec![("b".into(), "10.1.2.3:7946".parse().unwrap())],
            event_ltime: 9,
            left: false,
        };
        save(&p, &s).unwrap();
        assert_eq!(load(&p), Some(s));
        std::fs::write(&p, b"not json").unwrap();
        assert_eq!(load(&p), None);
    }
}
