//! Key rotation across the cluster (Serf's key manager): the node that
//! receives a `Keys` call applies it to itself and, concurrently, to every
//! other alive member through that member's `ep.management` endpoint (with
//! `local_only`, so nobody fans out twice), and answers one entry per node.
//! A member that cannot be reached, or refuses (no encryption, a `use` of
//! a key it lacks, removing its primary), is named with its error; the
//! others are still changed, as Serf does, so the operator can retry.

use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use tracing::info;

use super::client::Client;
use super::service::Forwarding;
use super::{convert, pb, ManagementError};
use crate::cluster::{Cluster, KeyOp, KeyringState};

/// Connecting to one member and its answer.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(10);

/// One node's answer to a key operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeys {
    /// Node id.
    pub node_id: String,
    /// Why the operation failed there (`None`: it succeeded).
    pub error: Option<String>,
    /// Fingerprint of its primary key afterwards.
    pub primary: String,
    /// Fingerprints of its installed keys, the primary first.
    pub keys: Vec<String>,
}

fn to_pb(op: &KeyOp) -> (pb::KeyOp, Vec<u8>) {
    match op {
        KeyOp::List => (pb::KeyOp::List, Vec::new()),
        KeyOp::Install(k) => (pb::KeyOp::Install, k.clone()),
        KeyOp::Use(k) => (pb::KeyOp::Use, k.clone()),
        KeyOp::Remove(k) => (pb::KeyOp::Remove, k.clone()),
    }
}

fn from_pb(req: &pb::KeysRequest) -> Result<KeyOp, Status> {
    let key = || {
        if req.key.is_empty() {
            Err(Status::invalid_argument("key is required"))
        } else {
            Ok(req.key.clone())
        }
    };
    match pb::KeyOp::try_from(req.op) {
        Ok(pb::KeyOp::List) => Ok(KeyOp::List),
        Ok(pb::KeyOp::Install) => Ok(KeyOp::Install(key()?)),
        Ok(pb::KeyOp::Use) => Ok(KeyOp::Use(key()?)),
        Ok(pb::KeyOp::Remove) => Ok(KeyOp::Remove(key()?)),
        _ => Err(Status::invalid_argument(
            "op must be list, install, use or remove",
        )),
    }
}

fn answer(node: &str, r: Result<KeyringState, String>) -> pb::NodeKeys {
    match r {
        Ok(k) => pb::NodeKeys {
            node_id: node.to_string(),
            error: String::new(),
            primary: k.primary,
            keys: k.keys,
        },
        Err(error) => pb::NodeKeys {
            node_id: node.to_string(),
            error,
            ..Default::default()
        },
    }
}

/// One member's part of a fanned-out call.
async fn on_member(
    node: &str,
    addr: Option<String>,
    req: pb::KeysRequest,
    forwarding: &Forwarding,
) -> pb::NodeKeys {
    let Some(addr) = addr else {
        return answer(node, Err("publishes no management endpoint".into()));
    };
    let call = async {
        let client =
            Client::connect(&addr, forwarding.token.as_deref(), forwarding.tls.as_ref()).await?;
        let r = client.raw().keys(req).await?.into_inner();
        Ok::<_, ManagementError>(r.nodes)
    };
    match tokio::time::timeout(MEMBER_TIMEOUT, call).await {
        Ok(Ok(nodes)) => nodes
            .into_iter()
            .next()
            .unwrap_or_else(|| answer(node, Err("empty answer".into()))),
        Ok(Err(e)) => answer(node, Err(format!("{addr}: {e}"))),
        Err(_) => answer(node, Err(format!("{addr}: no answer in time"))),
    }
}

/// Serves `Keys`: this node alone with `local_only`, else every alive member.
pub(crate) async fn serve(
    cluster: &Cluster,
    forwarding: &Forwarding,
    req: Request<pb::KeysRequest>,
) -> Result<Response<pb::KeysResponse>, Status> {
    let req = req.into_inner();
    let op = from_pb(&req)?;
    let me = cluster.node_id().to_string();
    if !matches!(op, KeyOp::List) {
        info!(op = ?op, local_only = req.local_only, "management: keys");
    }
    let here = async {
        let r = cluster.keys(op.clone()).await;
        answer(&me, r.map_err(|e| convert::status(e).message().to_string()))
    };
    if req.local_only {
        return Ok(Response::new(pb::KeysResponse {
            nodes: vec![here.await],
        }));
    }
    let endpoints = cluster.endpoints("management");
    let peers: Vec<String> = cluster.nodes().into_iter().filter(|n| *n != me).collect();
    let remote = pb::KeysRequest {
        local_only: true,
        ..req
    };
    let others = join_all(
        peers
            .iter()
            .map(|n| on_member(n, endpoints.get(n).cloned(), remote.clone(), forwarding)),
    );
    let (mine, others) = tokio::join!(here, others);
    let mut nodes = vec![mine];
    nodes.extend(others);
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(Response::new(pb::KeysResponse { nodes }))
}

impl Client {
    /// Applies `op` to the gossip keyring of every alive member, through
    /// the node this client talks to; one answer per node, sorted by id.
    pub async fn keys(&self, op: &KeyOp) -> Result<Vec<NodeKeys>, ManagementError> {
        let (op, key) = to_pb(op);
        let req = pb::KeysRequest {
            op: op as i32,
            key,
            local_only: false,
        };
        let r = self.raw().keys(req).await?.into_inner();
        Ok(r.nodes
            .into_iter()
            .map(|n| NodeKeys {
                node_id: n.node_id,
                error: (!n.error.is_empty()).then_some(n.error),
                primary: n.primary,
                keys: n.keys,
            })
            .collect())
    }
}
