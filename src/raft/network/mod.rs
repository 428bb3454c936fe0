//! The client side of the Raft network: openraft's `RaftNetworkFactory`
//! ([`Network`]) over a [`Connector`] seam that turns a peer address into a
//! [`RaftChannel`]. [`GrpcConnector`] makes lazy tonic channels (one per peer,
//! reused); [`Router`] connects nodes of one process directly, through the
//! full gRPC codec, and can cut and restore links.
//!
//! Timeouts come from openraft's `RPCOption::hard_ttl()`. A peer that cannot
//! be reached (connection refused, link cut, Raft stopped) is reported as
//! `RPCError::Unreachable`, so openraft backs off
//! ([`RaftConfig::unreachable_backoff`](super::RaftConfig)) before retrying.

// openraft's StorageError and RPCError are large by design and are the
// return types its traits mandate; boxing them here would only add copies.
#![allow(clippy::result_large_err)]

mod router;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use router::LocalChannel;
pub use router::Router;

use super::codec::{self, pb};
use super::error::NetError;
use super::lease::LeaseState;
use super::{NodeId, RaftConfig, RaftNodeInfo, TypeConfig};

/// Turns a peer's Raft address into a channel. The seam between the Raft
/// client and sockets: tests use a [`Router`], a simulation can supply its
/// own (e.g. a tonic `Channel` made with a custom connector).
///
/// Called for every RPC, so implementations cache their channels.
pub trait Connector: Send + Sync + 'static {
    /// A channel to `addr`. Connecting is lazy: errors reaching the peer
    /// surface on the RPC, not here.
    fn connect(&self, addr: &str) -> Result<RaftChannel, NetError>;

    /// Calls to `addr` keep failing: drop its cached channel, so that the
    /// next [`connect`](Connector::connect) opens a fresh connection. A TCP
    /// connection that lived through a partition sits in retransmission
    /// backoff (up to seconds after the heal); a fresh one sends its SYN at
    /// once.
    fn forget(&self, _addr: &str) {}
}

/// A channel to one peer: a tonic [`Channel`] or an in-process link, and
/// the credential its calls carry.
#[derive(Clone)]
pub struct RaftChannel {
    kind: ChannelKind,
    /// Read at every call, so a key rotation applies to connections that
    /// openraft keeps open.
    auth: Option<super::SharedAuth>,
}

#[derive(Clone)]
enum ChannelKind {
    Grpc(Channel),
    Local(LocalChannel),
}

impl From<Channel> for RaftChannel {
    fn from(c: Channel) -> Self {
        Self {
            kind: ChannelKind::Grpc(c),
            auth: None,
        }
    }
}

impl Service<http::Request<tonic::body::Body>> for RaftChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.kind {
            ChannelKind::Grpc(c) => Service::poll_ready(c, cx).map_err(Into::into),
            ChannelKind::Local(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(a) = &self.auth {
            super::auth::attach(&mut req, &a.header_value());
        }
        match &mut self.kind {
            ChannelKind::Grpc(c) => {
                let fut = Service::call(c, req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            ChannelKind::Local(l) => l.call(req),
        }
    }
}

/// Lazily connected tonic channels, one per peer address, reused.
pub struct GrpcConnector {
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcConnector {
    /// A connector whose TCP connects time out after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self::with_tls(connect_timeout, None)
    }

    /// The same over TLS (`https`) when `tls` is given.
    pub fn with_tls(connect_timeout: Duration, tls: Option<ClientTlsConfig>) -> Self {
        Self {
            connect_timeout,
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for GrpcConnector {
    fn default() -> Self {
        Self::new(RaftConfig::default().connect_timeout)
    }
}

impl Connector for GrpcConnector {
    fn connect(&self, addr: &str) -> Result<RaftChannel, NetError> {
        let mut channels = self.channels.lock().map_err(|e| NetError::BadAddress {
            addr: addr.to_string(),
            reason: format!("connector lock poisoned: {e}"),
        })?;
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone().into());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let bad = |e: tonic::transport::Error| NetError::BadAddress {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(bad)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
        }
        // connect_lazy spawns the channel's worker: needs a tokio runtime,
        // which every caller (openraft's tasks) has.
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel.into())
    }

    fn forget(&self, addr: &str) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.remove(addr);
        }
    }
}

/// Consecutive failed calls (timeouts, unreachable) after which a peer's
/// channel is dropped and reconnected ([`Connector::forget`]): three missed
/// heartbeats, 150 ms with the defaults.
const STUCK_AFTER: u32 = 3;

/// openraft's network factory: hands out per-peer connections that share
/// the [`Connector`].
#[derive(Clone)]
pub struct Network {
    connector: Arc<dyn Connector>,
    lease: Option<Arc<LeaseState>>,
    self_id: NodeId,
    backoff: Duration,
    max_message_size: usize,
    auth: Option<super::SharedAuth>,
}

impl Network {
    /// A network over `connector`, with timing from `RaftConfig::default()`
    /// until [`RaftNode::start`](super::RaftNode::start) applies the node's.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        let d = RaftConfig::default();
        Self {
            connector,
            lease: None,
            self_id: 0,
            backoff: d.unreachable_backoff,
            max_message_size: d.max_message_size,
            auth: None,
        }
    }

    /// Every call carries `auth`'s credential (peers that require one refuse
    /// calls without it). `RaftNode::start` sets it from `RaftConfig::auth`
    /// when that is set.
    pub fn with_auth(mut self, auth: Option<&super::RaftAuth>) -> Self {
        self.auth = auth.map(|a| super::SharedAuth::new(a.clone()));
        self
    }

    /// A network of lazy tonic channels configured from `config`.
    pub fn grpc(config: &RaftConfig) -> Self {
        Self::grpc_tls(config, None)
    }

    /// The same over TLS when `tls` is given (peers must serve TLS too).
    pub fn grpc_tls(config: &RaftConfig, tls: Option<ClientTlsConfig>) -> Self {
        let connector = GrpcConnector::with_tls(config.connect_timeout, tls);
        let mut n = Self::new(Arc::new(connector));
        n.configure(0, config, None);
        n
    }

    pub(crate) fn configure(
        &mut self,
        self_id: NodeId,
        config: &RaftConfig,
        lease: Option<Arc<LeaseState>>,
    ) {
        self.self_id = self_id;
        self.lease = lease;
        self.backoff = config.unreachable_backoff;
        self.max_message_size = config.max_message_size;
        if let Some(a) = &config.auth {
            self.auth = Some(super::SharedAuth::new(a.clone()));
        }
    }

    /// The credential cell every call reads (shared with the node's server
    /// by `RaftNode`, so a rotation switches both).
    pub(crate) fn shared_auth(&self) -> Option<super::SharedAuth> {
        self.auth.clone()
    }

    fn client(&self, addr: &str) -> Result<pb::raft_client::RaftClient<RaftChannel>, NetError> {
        let mut channel = self.connector.connect(addr)?;
        channel.auth = self.auth.clone();
        Ok(pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }

    /// Sends an acknowledgement (`node` applied the proposal of `epoch`) to
    /// the node at `addr`, normally the leader.
    pub async fn ack(
        &self,
        addr: &str,
        node: &str,
        epoch: u64,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::AckRequest {
            node: node.to_string(),
            epoch,
        });
        req.set_timeout(timeout);
        match self.call(addr, timeout, client.ack(req)).await? {
            r if r.accepted => Ok(()),
            _ => Err(NetError::Dropped {
                addr: addr.to_string(),
            }),
        }
    }
}

/// What the node a command was forwarded to did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// Appended and applied; for an application log entry, its index
    /// (0 for other commands).
    Applied {
        /// The application log index.
        app_index: u64,
    },
    /// That node is not the leader and names this address.
    Redirect(String),
}

impl Network {
    /// Sends `cmd` to the node at `addr` to append (it must be the leader).
    /// Errors: unreachable, timeout, or refused.
    pub async fn forward(
        &self,
        addr: &str,
        cmd: &super::Command,
        timeout: Duration,
    ) -> Result<Forwarded, NetError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::ForwardRequest {
            command: Some(codec::command_to_pb(cmd)),
            from: self.self_id,
        });
        req.set_timeout(timeout);
        let resp = self.call(addr, timeout, client.forward(req)).await?;
        match (resp.error.is_empty(), resp.leader_addr.is_empty()) {
            (true, _) => Ok(Forwarded::Applied {
                app_index: resp.app_index,
            }),
            (false, false) => Ok(Forwarded::Redirect(resp.leader_addr)),
            (false, true) => Err(NetError::Refused {
                addr: addr.to_string(),
                reason: resp.error,
            }),
        }
    }

    /// Asks the node at `addr` whether it would vote for `candidate` with
    /// this last applied log id and last log index (pre-vote). Any failure counts as "no".
    pub(crate) async fn pre_vote(
        &self,
        addr: &str,
        candidate: NodeId,
        last: (Option<super::LogId>, u64),
        timeout: Duration,
    ) -> bool {
        let Ok(mut client) = self.client(addr) else {
            return false;
        };
        let mut req = tonic::Request::new(pb::PreVoteRequest {
            candidate,
            last_applied: last.0.as_ref().map(codec::log_id_to_pb),
            last_log_index: last.1,
        });
        req.set_timeout(timeout);
        self.call(addr, timeout, client.pre_vote(req))
            .await
            .is_ok_and(|r| r.granted)
    }

    /// Whether the node at `addr` is certainly not running: a call to it
    /// failed as unreachable within `timeout` (over sockets: its host
    /// refused the connection, so no process listens on its Raft port; or
    /// its Raft stopped). A node that answers, a slow or frozen one and a
    /// lost path (the call times out) are not gone.
    ///
    /// Like any connection reset this is an unauthenticated hint: the
    /// elector uses it only to skip the random part of its wait, never to
    /// start an election before openraft's voters would vote (see
    /// `RaftNode`'s elector).
    pub(crate) async fn gone(&self, addr: &str, timeout: Duration) -> bool {
        let Ok(mut client) = self.client(addr) else {
            return false;
        };
        // A pre-vote question is harmless to answer, and any answer at all
        // says the node runs.
        let mut req = tonic::Request::new(pb::PreVoteRequest {
            candidate: self.self_id,
            last_applied: None,
            last_log_index: 0,
        });
        req.set_timeout(timeout);
        matches!(
            self.call(addr, timeout, client.pre_vote(req)).await,
            Err(NetError::Unreachable { .. })
        )
    }

    /// Asks the node at `addr` to start an election now (leader hand-over).
    pub async fn elect(&self, addr: &str, timeout: Duration) -> Result<(), NetError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::ElectRequest { from: self.self_id });
        req.set_timeout(timeout);
        self.call(addr, timeout, client.elect(req))
            .await
            .map(|_| ())
    }

    /// Asks the node at `addr` who it is, with a proof of its credential
    /// over `nonce` (the admission check, see `RaftNode::admit`).
    pub(crate) async fn admit(
        &self,
        addr: &str,
        nonce: Vec<u8>,
        timeout: Duration,
    ) -> Result<pb::AdmitResponse, NetError> {
        let mut client = self.client(addr)?;
        let mut req = tonic::Request::new(pb::AdmitRequest { nonce });
        req.set_timeout(timeout);
        self.call(addr, timeout, client.admit(req)).await
    }

    /// One call to `addr` bounded by `timeout`; a timeout or an unreachable
    /// peer drops the cached channel (a single call fails rarely, and these
    /// calls are not the heartbeat path, so one failure is enough).
    async fn call<T>(
        &self,
        addr: &str,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, NetError> {
        let r = match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(NetError::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) if is_unreachable(&s) => Err(NetError::Unreachable {
                addr: addr.to_string(),
                reason: s.message().to_string(),
            }),
            Ok(Err(s)) => Err(NetError::Status {
                addr: addr.to_string(),
                status: Box::new(s),
            }),
        };
        let stuck = match &r {
            Err(NetError::Timeout { .. } | NetError::Unreachable { .. }) => true,
            Err(NetError::Status { status, .. }) => {
                matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded)
            }
            _ => false,
        };
        if stuck {
            self.connector.forget(addr);
        }
        r
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &RaftNodeInfo) -> Self::Network {
        PeerConnection {
            net: self.clone(),
            target,
            node: node.clone(),
            client: None,
            failures: 0,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerConnection {
    net: Network,
    target: NodeId,
    node: RaftNodeInfo,
    client: Option<pb::raft_client::RaftClient<RaftChannel>>,
    /// Consecutive failed calls (see [`STUCK_AFTER`]).
    failures: u32,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, RaftNodeInfo, RaftError<NodeId, E>>;

fn is_unreachable(s: &Status) -> bool {
    // Unavailable: connect failure, link cut, or the peer's Raft stopped.
    matches!(s.code(), Code::Unavailable)
}

impl PeerConnection {
    fn client<E: std::error::Error>(
        &mut self,
    ) -> Result<pb::raft_client::RaftClient<RaftChannel>, RpcErr<E>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self
            .net
            .client(&self.node.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Counts a call's outcome: after [`STUCK_AFTER`] failures in a row the
    /// channel is dropped and the next call reconnects.
    fn outcome<T, E>(&mut self, r: Result<T, RpcErr<E>>) -> Result<T, RpcErr<E>>
    where
        E: std::error::Error,
    {
        match &r {
            // A request timeout reported by tonic itself arrives as a
            // Cancelled status, mapped to a network error.
            Err(RPCError::Timeout(_) | RPCError::Unreachable(_) | RPCError::Network(_)) => {
                self.failures += 1;
                if self.failures >= STUCK_AFTER {
                    tracing::debug!(
                        target_node = self.target,
                        "raft channel stuck; reconnecting"
                    );
                    self.failures = 0;
                    self.client = None;
                    self.net.connector.forget(&self.node.addr);
                }
            }
            _ => self.failures = 0,
        }
        r
    }

    fn timeout<E: std::error::Error>(&self, action: RPCTypes, ttl: Duration) -> RpcErr<E> {
        RPCError::Timeout(Timeout {
            action,
            id: self.net.self_id,
            target: self.target,
            timeout: ttl,
        })
    }

    fn status<E: std::error::Error>(&self, s: Status) -> RpcErr<E> {
        tracing::debug!(target_node = self.target, code = ?s.code(), message = s.message(), "raft rpc failed");
        if is_unreachable(&s) {
            RPCError::Unreachable(Unreachable::new(&s))
        } else {
            RPCError::Network(NetworkError::new(&s))
        }
    }

    fn decode<E: std::error::Error>(e: codec::DecodeError) -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&e))
    }
}

impl PeerConnection {
    async fn send_append(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let ttl = option.hard_ttl();
        let mut client = self.client()?;
        let term = rpc.vote.leader_id.term;
        let last_sent = rpc.entries.last().map_or(0, |e| e.log_id.index);
        let mut msg = codec::append_request_to_pb(&rpc);
        let lease = self.net.lease.clone();
        // Taken before the grant is computed and the request leaves: an
        // accepted round counts from no later than its real send time.
        let sent = tokio::time::Instant::now();
        if let Some(l) = &lease {
            msg.lease = l
                .on_send(term, self.target, last_sent)
                .map(|g| codec::grant_to_pb(&g));
        }
        let mut req = tonic::Request::new(msg);
        req.set_timeout(ttl);
        let resp = tokio::time::timeout(ttl, client.append_entries(req))
            .await
            .map_err(|_| self.timeout(RPCTypes::AppendEntries, ttl))?
            .map_err(|s| self.status(s))?
            .into_inner();
        let stamp = resp.stamp.as_ref().map(codec::stamp_from_pb);
        let resp = codec::append_response_from_pb(resp).map_err(Self::decode)?;
        if let Some(l) = &lease {
            let accepted = !matches!(resp, AppendEntriesResponse::HigherVote(_));
            l.on_response(term, self.target, sent, accepted, stamp);
        }
        Ok(resp)
    }

    async fn send_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let ttl = option.hard_ttl();
        let mut client = self.client()?;
        let mut req = tonic::Request::new(codec::install_request_to_pb(&rpc));
        req.set_timeout(ttl);
        let resp = tokio::time::timeout(ttl, client.install_snapshot(req))
            .await
            .map_err(|_| self.timeout(RPCTypes::InstallSnapshot, ttl))?
            .map_err(|s| self.status(s))?;
        match codec::install_response_from_pb(resp.into_inner()).map_err(Self::decode)? {
            Ok(r) => Ok(r),
            Err(e) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                RaftError::APIError(e),
            ))),
        }
    }

    async fn send_vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let ttl = option.hard_ttl();
        let mut client = self.client()?;
        let mut req = tonic::Request::new(codec::vote_request_to_pb(&rpc));
        req.set_timeout(ttl);
        let resp = tokio::time::timeout(ttl, client.vote(req))
            .await
            .map_err(|_| self.timeout(RPCTypes::Vote, ttl))?
            .map_err(|s| self.status(s))?;
        codec::vote_response_from_pb(resp.into_inner()).map_err(Self::decode)
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let r = self.send_append(rpc, option).await;
        self.outcome(r)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let r = self.send_snapshot(rpc, option).await;
        self.outcome(r)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let r = self.send_vote(rpc, option).await;
        self.outcome(r)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;

    /// A peer that accepts TCP connections and never answers, as a link
    /// that went silent does: after [`STUCK_AFTER`] timed-out calls the
    /// next call must come on a new connection.
    #[tokio::test]
    async fn a_channel_that_keeps_timing_out_is_replaced() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        let mut net = Network::grpc(&RaftConfig::default());
        let mut peer = net.new_client(2, &RaftNodeInfo::new("n2", &addr)).await;
        async fn call(peer: &mut PeerConnection) -> Result<VoteResponse<NodeId>, RpcErr> {
            let rpc = VoteRequest::new(Vote::new(1, 1), None);
            peer.vote(rpc, RPCOption::new(Duration::from_millis(100)))
                .await
        }
        let wait = Duration::from_secs(10);
        for i in 0..STUCK_AFTER {
            let r = call(&mut peer).await;
            assert!(r.is_err(), "call {i}: {r:?}");
        }
        tokio::time::timeout(wait, accepted.recv())
            .await
            .expect("first connection");
        assert!(
            accepted.try_recv().is_err(),
            "reconnected before {STUCK_AFTER} failures"
        );
        let r = call(&mut peer).await;
        assert!(r.is_err(), "{r:?}");
        tokio::time::timeout(wait, accepted.recv())
            .await
            .expect("no new connection after the channel kept timing out");
    }
}
