//! Key rotation on one running node: the gossip keyring changes, and the
//! Raft credential derived from it follows (it sends the new primary's and
//! accepts that of every installed key), so Raft keeps working on every
//! step of a rolling rotation. Reaching every member is the management
//! API's job; this is the per-node step it calls.

use crate::gossip::{fingerprint, KeyOp, Keyring};

use super::{Cluster, ClusterError};

/// A node's keyring as operators see it: fingerprints, never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringState {
    /// Fingerprint of the primary key (used to send).
    pub primary: String,
    /// Fingerprints of every installed key, the primary first.
    pub keys: Vec<String>,
}

impl From<&Keyring> for KeyringState {
    fn from(k: &Keyring) -> Self {
        KeyringState {
            primary: fingerprint(k.primary_key()),
            keys: k.keys().map(fingerprint).collect(),
        }
    }
}

impl Cluster {
    /// Applies `op` to this node's gossip keyring and Raft credential and
    /// answers the keyring after it. Fails on a node without encryption,
    /// for `Use` of a key not installed and for removing the primary.
    pub async fn keys(&self, op: KeyOp) -> Result<KeyringState, ClusterError> {
        let (before, after) = self
            .shared
            .gossip
            .keys(op)
            .await
            .map_err(ClusterError::from_gossip)?;
        let raft = self.shared.raft.as_ref();
        if let Some((raft, auth)) = raft.and_then(|r| Some((r, r.auth()?))) {
            let old: Vec<&[u8]> = before.keys().collect();
            let new: Vec<&[u8]> = after.keys().collect();
            if let Some(next) = auth.rekeyed(&old, &new) {
                raft.set_auth(next);
            }
        }
        Ok(KeyringState::from(&after))
    }
}
