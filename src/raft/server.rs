//! The server side of the Raft gRPC service: decodes requests, hands them to
//! openraft, takes serving-lease grants and stamps answers (see `lease`),
//! records leader contact for the pre-vote, answers pre-votes, and forwards
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
use super::lease::LeaseState;
use super::types::{Ack, LeaderContact, Response};
use super::{NodeId, Raft};

/// Handles the RPCs of one node.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) contact: Arc<watch::Sender<Option<LeaderContact>>>,
    pub(crate) acks: Option<mpsc::Sender<Ack>>,
    pub(crate) acks_dropped: Arc<AtomicU64>,
    pub(crate) lease: Arc<LeaseState>,
    pub(crate) vote_lease: std::time::Duration,
    /// The replicated state (to refuse acknowledgements of unknown epochs).
    pub(crate) state: watch::Receiver<Arc<super::ClusterState>>,
    /// Set when this node was asked to take over (leader hand-over).
    pub(crate) handed_over: Arc<std::sync::atomic::AtomicBool>,
    /// This node's name and cluster name, for the admission answer.
    pub(crate) name: String,
    pub(crate) cluster_name: String,
    /// The credential this node sends (proves it in the admission answer).
    pub(crate) auth: Option<super::SharedAuth>,
}

/// Why the state machine refused an application log entry of `size` bytes.
pub(crate) fn log_refused(size: usize) -> String {
    format!(
        "application log entry of {size} bytes is over the cluster's hard limit of {} bytes",
        super::app_log::MAX_ENTRY_BYTES
    )
}

/// Longest admission nonce answered (the leader sends 16 bytes).
const MAX_NONCE: usize = 64;

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
    /// Refuses a caller that is not in the current Raft membership (voter
    /// or learner). With the cluster credential this is a consistency
    /// check: a credentialed node that Raft removed cannot steer the
    /// leader any more.
    /// Whether the current Raft membership has a node matching `pred`.
    fn has_member(&self, pred: impl Fn(&NodeId, &super::RaftNodeInfo) -> bool) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(id, n)| pred(id, n))
    }

    fn check_member(&self, from: NodeId, what: &str) -> Result<(), Status> {
        let member = self.has_member(|id, _| *id == from);
        if member {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{what} from {from}, which is not a Raft member"
            )))
        }
    }

    /// Records that a leader (or a candidate this node voted for) of `term`
    /// was heard from now: the pre-vote and election timers restart.
    fn record_contact(&self, vote: &openraft::Vote<NodeId>) {
        let contact = LeaderContact {
            at: Instant::now(),
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
        let mut pbreq = request.into_inner();
        let grant = pbreq.lease.take();
        let req = codec::append_request_from_pb(pbreq).map_err(bad_request)?;
        let vote = req.vote;
        let resp = self.raft.append_entries(req).await.map_err(stopped)?;
        let mut out = codec::append_response_to_pb(&resp);
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            // This node accepted the sender as leader: take its lease grant
            // (see `lease`) and stamp the answer for the next one.
            if let Some(g) = grant.as_ref().and_then(codec::grant_from_pb) {
                self.lease.accept(&g);
            }
            out.stamp = Some(codec::stamp_to_pb(&self.lease.stamp()));
            if vote.committed {
                self.record_contact(&vote);
            }
        }
        Ok(GrpcResponse::new(out))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<GrpcResponse<pb::VoteResponse>, Status> {
        let req = codec::vote_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let vote = req.vote;
        if self.lease.refuses_votes() {
            let m = self.raft.metrics().borrow().clone();
            tracing::debug!(candidate = ?vote, "refusing a vote: this leader holds its quorum");
            let refused = openraft::raft::VoteResponse {
                vote: m.vote,
                vote_granted: false,
                last_log_id: m.last_applied,
            };
            return Ok(GrpcResponse::new(codec::vote_response_to_pb(&refused)));
        }
        let resp = self.raft.vote(req).await.map_err(stopped)?;
        if resp.vote_granted {
            // As in Raft: granting a vote restarts this node's own timer.
            self.record_contact(&vote);
        }
        Ok(GrpcResponse::new(codec::vote_response_to_pb(&resp)))
    }

    async fn pre_vote(
        &self,
        request: Request<pb::PreVoteRequest>,
    ) -> Result<GrpcResponse<pb::PreVoteResponse>, Status> {
        let req = request.into_inner();
        let theirs = (
            req.last_applied.map(codec::log_id_from_pb),
            req.last_log_index,
        );
        let mine = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.last_applied, m.last_log_index.unwrap_or(0))
        };
        let quiet = self
            .contact
            .borrow()
            .is_none_or(|c| c.at.elapsed() > self.vote_lease);
        let leading = self.raft.metrics().borrow().state == openraft::ServerState::Leader;
        let granted = quiet && !leading && theirs.0 >= mine.0 && theirs.1 >= mine.1;
        tracing::debug!(
            node = self.id,
            candidate = req.candidate,
            granted,
            "pre-vote"
        );
        Ok(GrpcResponse::new(pb::PreVoteResponse { granted }))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<GrpcResponse<pb::InstallSnapshotResponse>, Status> {
        let req = codec::install_request_from_pb(request.into_inner()).map_err(bad_request)?;
        let vote = req.vote;
        let outcome = match self.raft.install_snapshot(req).await {
            Ok(resp) => {
                if resp.vote == vote {
                    self.record_contact(&vote);
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
        // Only a Raft member acknowledges, and only an epoch that was
        // proposed (this node may apply the proposal just after the
        // sender did, hence the one epoch of slack).
        let member = self.has_member(|_, n| n.name == req.node);
        if !member {
            return Err(Status::permission_denied(format!(
                "{} is not a Raft member",
                req.node
            )));
        }
        let last_epoch = self.state.borrow().last_epoch;
        if req.epoch == 0 || req.epoch > last_epoch + 1 {
            return Err(Status::failed_precondition(format!(
                "epoch {} was never proposed (last {last_epoch})",
                req.epoch
            )));
        }
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

    async fn admit(
        &self,
        request: Request<pb::AdmitRequest>,
    ) -> Result<GrpcResponse<pb::AdmitResponse>, Status> {
        // Reaching this point took the cluster credential (or mutual TLS):
        // answer who this node is and prove the credential it sends.
        let nonce = request.into_inner().nonce;
        if nonce.len() > MAX_NONCE {
            return Err(Status::invalid_argument("admission nonce too long"));
        }
        let proof = self
            .auth
            .as_ref()
            .map(|a| a.get().prove(&nonce, &self.name))
            .unwrap_or_default();
        Ok(GrpcResponse::new(pb::AdmitResponse {
            name: self.name.clone(),
            cluster_name: self.cluster_name.clone(),
            cluster_id: self.state.borrow().cluster_id.clone().unwrap_or_default(),
            proof,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<GrpcResponse<pb::ForwardResponse>, Status> {
        let req = request.into_inner();
        self.check_member(req.from, "forward")?;
        let cmd = req
            .command
            .ok_or_else(|| Status::invalid_argument("forward without a command"))?;
        let cmd = codec::command_from_pb(cmd).map_err(bad_request)?;
        let resp = match self.raft.client_write(cmd).await {
            Ok(r) => match r.data {
                Response::LogAppended { index } => pb::ForwardResponse {
                    app_index: index,
                    ..Default::default()
                },
                Response::LogRefused { size } => pb::ForwardResponse {
                    error: log_refused(size),
                    ..Default::default()
                },
                _ => pb::ForwardResponse::default(),
            },
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                pb::ForwardResponse {
                    error: "not the leader".into(),
                    leader_addr: f.leader_node.map(|n| n.addr).unwrap_or_default(),
                    app_index: 0,
                }
            }
            Err(e) => pb::ForwardResponse {
                error: e.to_string(),
                ..Default::default()
            },
        };
        Ok(GrpcResponse::new(resp))
    }

    async fn elect(
        &self,
        request: Request<pb::ElectRequest>,
    ) -> Result<GrpcResponse<pb::ElectResponse>, Status> {
        self.check_member(request.into_inner().from, "elect")?;
        self.handed_over.store(true, Ordering::Relaxed);
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
