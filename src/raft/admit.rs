//! The admission check: before the leader adds a node to Raft, the node
//! must answer an `Admit` call over the Raft transport, as the cluster's
//! nodes talk to each other (mutual TLS when configured, the cluster
//! credential otherwise), with its own name, the cluster name, no other
//! cluster's id, and a proof that it holds the credential it sends (an
//! HMAC of the leader's random nonce, see [`RaftAuth::prove`]).
//!
//! A node that fails it would fail every later call too: a plaintext node
//! in a TLS cluster, a node with another credential (it refuses the
//! leader's calls, or the leader refuses its acknowledgements), a node of
//! another cluster. Added anyway, it owns shards it never acknowledges,
//! and the leader proposes, times out and proposes again. Checked first,
//! it is simply left out.

use super::{NetError, RaftAuth, RaftNode};

/// Why a node was not admitted to Raft. [`as_str`](Self::as_str) names the
/// reason in logs and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The call did not get through: nothing listens, the transport does
    /// not match (TLS against plaintext, another CA), or no answer in time.
    #[error("not reachable over the Raft transport (TLS or address mismatch?): {0}")]
    Unreachable(String),
    /// The node refused this node's cluster credential.
    #[error("refused the cluster credential (another key or token)")]
    Unauthenticated,
    /// The node answered without a proof of a credential this node accepts.
    #[error("cannot prove it holds the cluster credential (another key or token, or none)")]
    NoCredential,
    /// Another node answered at that address.
    #[error("answered as {got:?}, not {want:?}")]
    WrongNode {
        /// The name gossip gave.
        want: String,
        /// The name in the answer.
        got: String,
    },
    /// The node belongs to another cluster (name or id).
    #[error("belongs to cluster {got:?}, not {want:?}")]
    OtherCluster {
        /// This cluster (name, or name/id).
        want: String,
        /// The node's.
        got: String,
    },
    /// The call failed otherwise.
    #[error("the admission call failed: {0}")]
    Failed(String),
}

impl AdmitError {
    /// The reason as one word (logs, the metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            AdmitError::Unreachable(_) => "unreachable",
            AdmitError::Unauthenticated => "unauthenticated",
            AdmitError::NoCredential => "no_credential",
            AdmitError::WrongNode { .. } => "wrong_node",
            AdmitError::OtherCluster { .. } => "other_cluster",
            AdmitError::Failed(_) => "failed",
        }
    }

    fn from_net(e: NetError) -> AdmitError {
        match e {
            NetError::Status { status, .. } if status.code() == tonic::Code::Unauthenticated => {
                AdmitError::Unauthenticated
            }
            e @ (NetError::Unreachable { .. }
            | NetError::Timeout { .. }
            | NetError::BadAddress { .. }) => AdmitError::Unreachable(e.to_string()),
            e => AdmitError::Failed(e.to_string()),
        }
    }
}

/// What the leader expects of a node's answer.
pub(crate) struct Expect<'a> {
    pub name: &'a str,
    pub cluster_name: &'a str,
    /// The cluster id the leader applied (`None` before one is set).
    pub cluster_id: Option<&'a str>,
    pub nonce: &'a [u8],
    /// The leader's credential (`None`: the cluster has none).
    pub auth: Option<&'a RaftAuth>,
}

/// Judges an answer. Pure, so every refusal is unit tested.
pub(crate) fn judge(
    e: &Expect,
    name: &str,
    cluster_name: &str,
    cluster_id: &str,
    proof: &[u8],
) -> Result<(), AdmitError> {
    if name != e.name {
        return Err(AdmitError::WrongNode {
            want: e.name.to_string(),
            got: name.to_string(),
        });
    }
    // A node that applied no cluster id yet is new; one that did must have
    // this cluster's (the same rule as the gossip tag's).
    let id_ok = cluster_id.is_empty() || Some(cluster_id) == e.cluster_id;
    if cluster_name != e.cluster_name || !id_ok {
        return Err(AdmitError::OtherCluster {
            want: format!("{}/{}", e.cluster_name, e.cluster_id.unwrap_or("")),
            got: format!("{cluster_name}/{cluster_id}"),
        });
    }
    if let Some(auth) = e.auth {
        // A node without a credential is fine only while this one accepts
        // calls without one (a rolling switch to a cluster secret).
        let ok = if proof.is_empty() {
            !auth.required()
        } else {
            auth.check_proof(e.nonce, e.name, proof)
        };
        if !ok {
            return Err(AdmitError::NoCredential);
        }
    }
    Ok(())
}

impl RaftNode {
    /// The admission check of the node `name` at Raft address `addr`,
    /// which is to join this node's cluster (id `cluster_id`, if set). `Ok`
    /// when it answered over the Raft transport as `name`, of this cluster,
    /// with a proof of a credential this node accepts (when it has one).
    pub async fn admit(
        &self,
        name: &str,
        addr: &str,
        cluster_id: Option<&str>,
    ) -> Result<(), AdmitError> {
        let nonce: [u8; 16] = rand::random();
        let timeout = self.config.connect_timeout + self.config.election_timeout_max;
        let answer = self
            .network()
            .admit(addr, nonce.to_vec(), timeout)
            .await
            .map_err(AdmitError::from_net)?;
        let auth = self.auth();
        let expect = Expect {
            name,
            cluster_name: &self.config.cluster_name,
            cluster_id,
            nonce: &nonce,
            auth: auth.as_ref(),
        };
        judge(
            &expect,
            &answer.name,
            &answer.cluster_name,
            &answer.cluster_id,
            &answer.proof,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_and_the_admissions() {
        let key = RaftAuth::from_secret(b"cluster key");
        let nonce = b"0123456789abcdef";
        let e = Expect {
            name: "n4",
            cluster_name: "c",
            cluster_id: Some("id1"),
            nonce,
            auth: Some(&key),
        };
        let good = key.prove(nonce, "n4");
        assert_eq!(judge(&e, "n4", "c", "", &good), Ok(()));
        assert_eq!(judge(&e, "n4", "c", "id1", &good), Ok(()));
        let r = |name, cluster, id, proof: &[u8]| judge(&e, name, cluster, id, proof).unwrap_err();
        assert_eq!(r("n5", "c", "", &good).as_str(), "wrong_node");
        assert_eq!(r("n4", "other", "", &good).as_str(), "other_cluster");
        assert_eq!(r("n4", "c", "id2", &good).as_str(), "other_cluster");
        assert_eq!(r("n4", "c", "", &[]).as_str(), "no_credential");
        let wrong = RaftAuth::from_secret(b"another key").prove(nonce, "n4");
        assert_eq!(r("n4", "c", "", &wrong).as_str(), "no_credential");
        // A proof for another nonce (a replayed answer) does not pass.
        assert_eq!(
            r("n4", "c", "", &key.prove(b"old", "n4")).as_str(),
            "no_credential"
        );
        // No proof is fine while the leader accepts calls without one.
        let optional = key.clone().optional();
        let e2 = Expect {
            auth: Some(&optional),
            ..e
        };
        assert_eq!(judge(&e2, "n4", "c", "", &[]), Ok(()));
        assert!(judge(&e2, "n4", "c", "", &wrong).is_err());
        // A cluster without a credential (open, or mutual TLS only).
        let open = Expect { auth: None, ..e2 };
        assert_eq!(judge(&open, "n4", "c", "", &[]), Ok(()));
        // Before the leader has an id, a node with one is of another cluster.
        let no_id = Expect {
            cluster_id: None,
            ..open
        };
        assert_eq!(judge(&no_id, "n4", "c", "", &[]), Ok(()));
        assert!(judge(&no_id, "n4", "c", "id1", &[]).is_err());
    }

    #[test]
    fn transport_errors_map_to_reasons() {
        let status = |code| NetError::Status {
            addr: "a".into(),
            status: Box::new(tonic::Status::new(code, "x")),
        };
        assert_eq!(
            AdmitError::from_net(status(tonic::Code::Unauthenticated)),
            AdmitError::Unauthenticated
        );
        assert_eq!(
            AdmitError::from_net(status(tonic::Code::Unimplemented)).as_str(),
            "failed"
        );
        let unreachable = NetError::Unreachable {
            addr: "a".into(),
            reason: "tls handshake".into(),
        };
        assert_eq!(AdmitError::from_net(unreachable).as_str(), "unreachable");
    }
}
