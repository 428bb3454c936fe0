//! The server side of the Raft gRPC service: decodes requests, hands them to
//! openraft, records leader contact for the serving lease, and forwards
//! acknowledgements to the coordinator's bounded queue.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use openraft::error::RaftError;
use openraft::raft::AppendEntriesResponse;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::{Request, Response as GrpcResponse, Status};

use super::codec::{self, pb};
use super::types::{Ack, LeaderContact};
use super::{NodeId, Raft};

/// Handles the RPCs of one node.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) contact: Arc<watch::Sender<Option<LeaderContact>>>,
    pub(crate) acks: Option<mpsc::Sender<Ack>>,
    pub(crate) acks_dropped: Arc<AtomicU64>,
}

fn bad_request(e: codec::DecodeError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A fatal error means this node's Raft has stopped: to the caller that is
/// the same as an unreachable node (it backs off and retries later).
fn stopped<E: std::error::Error>(e: RaftError<NodeId, E>) -> Status {
    match e {
        RaftError::Fatal(f) => Status::unavailable(format!("raft stopped: {f}")),
        RaftError::APIError(e) => Status::internal(e.to_string()),
    }
}

impl Handler {
    fn record_contact(&self, received: Instant, vote: &openraft::Vote<NodeId>) {
        let contact = LeaderContact {
            at: received,
            term: vote.leader_id.term,
            leader: vote.leader_id.voted_for(),
        };
        self.contact.send_if_modified(|cur| match cur {
            Some(c) if c.term > contact.term || (c.term == contact.term && c.at >= contact.at) => {
                false
            }
            _ => {
                *cur = Some(contact);
                true
            }
        });
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for Handler {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<GrpcResponse<pb::AppendEntriesResponse>, Status> {
        let received = Instant::now();
        let req = codec::append_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let vote = req.vote;
        // The serving lease is renewed only by a leader whose request leaves
        // this node holding every entry the leader has committed: a node
        // that hears heartbeats but lags behind (and so may not have applied
        // a proposal that takes shards away from it) lets its lease lapse.
        let matched = req
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(req.prev_log_id.map(|l| l.index));
        let caught_up = req
            .leader_commit
            .is_none_or(|c| matched.is_some_and(|m| m >= c.index));
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        if matches!(resp, AppendEntriesResponse::Success) && vote.committed && caught_up {
            self.record_contact(received, &vote);
        }
        Ok(GrpcResponse::new(codec::append_response_to_pb(&resp)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<GrpcResponse<pb::VoteResponse>, Status> {
        let req = codec::vote_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let resp = self.raft.vote(req).await.map_err(stopped)?;
        Ok(GrpcResponse::new(codec::vote_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<GrpcResponse<pb::InstallSnapshotResponse>, Status> {
        let received = Instant::now();
        let req = codec::install_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let vote = req.vote;
        let outcome = match self.raft.install_snapshot(req).await {
            Ok(resp) => {
                if resp.vote == vote {
                    self.record_contact(received, &vote);
                }
                Ok(resp)
            }
            Err(RaftError::APIError(e)) => Err(e),
            Err(RaftError::Fatal(f)) => {
                return Err(Status::unavailable(format!("raft stopped: {f}")));
            }
        };
        Ok(GrpcResponse::new(codec::install_response_to_pb(&outcome)))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<GrpcResponse<pb::AckResponse>, Status> {
        let req = request.into_inner();
        let ack = Ack {
            node: req.node,
            epoch: req.epoch,
        };
        let accepted = match &self.acks {
            Some(tx) => match tx.try_send(ack) {
                Ok(()) => true,
                Err(e) => {
                    let dropped = self.acks_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(node = self.id, dropped, error = %e, "dropped an acknowledgement");
                    false
                }
            },
            None => {
                self.acks_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        Ok(GrpcResponse::new(pb::AckResponse { accepted }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<GrpcResponse<pb::ForwardResponse>, Status> {
        let cmd = request
            .into_inner()
            .command
            .ok_or_else(|| Status::invalid_argument("forward without a command"))?;
        let cmd = codec::command_from_pb(cmd).map_err(bad_request)?;
        let resp = match self.raft.client_write(cmd).await {
            Ok(_) => pb::ForwardResponse::default(),
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                pb::ForwardResponse {
                    error: "not the leader".into(),
                    leader_addr: f.leader_node.map(|n| n.addr).unwrap_or_default(),
                }
            }
            Err(e) => pb::ForwardResponse {
                error: e.to_string(),
                leader_addr: String::new(),
            },
        };
        Ok(GrpcResponse::new(resp))
    }

    async fn elect(
        &self,
        _request: Request<pb::ElectRequest>,
    ) -> Result<GrpcResponse<pb::ElectResponse>, Status> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(GrpcResponse::new(pb::ElectResponse {}))
    }
}

/// The node's Raft gRPC service, ready to mount on a tonic server
/// (`Server::builder().add_service(node.service())`) or to register with an
/// in-process [`Router`](super::Router).
#[derive(Clone)]
pub struct RaftService {
    inner: pb::raft_server::RaftServer<Handler>,
}

impl RaftService {
    pub(crate) fn new(handler: Handler, max_message_size: usize) -> Self {
        Self {
            inner: pb::raft_server::RaftServer::new(handler)
                .max_decoding_message_size(max_message_size)
                .max_encoding_message_size(max_message_size),
        }
    }
}

impl<B> Service<http::Request<B>> for RaftService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(self.inner.call(req))
    }
}

impl NamedService for RaftService {
    const NAME: &'static str = <pb::raft_server::RaftServer<Handler> as NamedService>::NAME;
}
