//! The tonic service: answers from the node's `Cluster` handle, forwards
//! leader-only writes to the leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::client::{Client, RawClient};
use super::config::ClientTls;
use super::pb::management_server::Management;
use super::{convert, pb, FORWARDED_HEADER};
use crate::cluster::{Cluster, ClusterError, ClusterEvent, UserEvent};

/// Drain waits this long unless told otherwise.
const DRAIN_DEFAULT: Duration = Duration::from_secs(30);
/// And never longer than this.
const DRAIN_MAX: Duration = Duration::from_secs(600);
/// Connecting to the leader and its answer, for a forwarded write.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long StepDown waits to name the new leader.
const STEP_DOWN_WAIT: Duration = Duration::from_secs(3);

/// How this node reaches the leader's management endpoint.
#[derive(Clone, Default)]
pub(crate) struct Forwarding {
    pub token: Option<String>,
    pub tls: Option<ClientTls>,
}

/// The management service of one node.
pub(crate) struct Service {
    cluster: Cluster,
    forwarding: Forwarding,
    shutdown: watch::Receiver<bool>,
    /// Events skipped by slow WatchEvents readers, all streams together.
    missed: Arc<AtomicU64>,
}

impl Service {
    pub(crate) fn new(
        cluster: Cluster,
        forwarding: Forwarding,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Service {
            cluster,
            forwarding,
            shutdown,
            missed: Arc::new(AtomicU64::new(0)),
        }
    }

    fn write_response(&self, message: String) -> pb::WriteResponse {
        pb::WriteResponse {
            leader: self.cluster.leader().unwrap_or_default(),
            epoch: self.cluster.epoch().unwrap_or(0),
            message,
            served_by: self.cluster.node_id().to_string(),
        }
    }

    /// Runs a leader-only write here; on a follower, forwards it once to
    /// the leader's management endpoint through `remote`.
    async fn leader_write<L, R, F>(
        &self,
        forwarded: bool,
        local: L,
        remote: R,
    ) -> Result<Response<pb::WriteResponse>, Status>
    where
        L: Future<Output = Result<String, ClusterError>>,
        R: FnOnce(RawClient) -> F,
        F: Future<Output = Result<Response<pb::WriteResponse>, Status>>,
    {
        match local.await {
            Ok(message) => Ok(Response::new(self.write_response(message))),
            Err(ClusterError::NotLeader(Some(leader)))
                if !forwarded && leader != self.cluster.node_id() =>
            {
                let addr = self
                    .cluster
                    .endpoint(&leader, "management")
                    .ok_or_else(|| {
                        Status::unavailable(format!(
                            "the leader {leader} publishes no management endpoint"
                        ))
                    })?;
                debug!(leader = %leader, addr = %addr, "forwarding a write to the leader");
                let call = async {
                    let client = Client::connect(
                        &addr,
                        self.forwarding.token.as_deref(),
                        self.forwarding.tls.as_ref(),
                    )
                    .await
                    .map_err(|e| {
                        Status::unavailable(format!("forward to the leader {leader}: {e}"))
                    })?;
                    remote(client.raw()).await
                };
                tokio::time::timeout(FORWARD_TIMEOUT, call)
                    .await
                    .map_err(|_| {
                        Status::unavailable(format!("the leader {leader} did not answer in time"))
                    })?
            }
            Err(ClusterError::NotLeader(leader)) => Err(Status::unavailable(format!(
                "the leadership is changing (leader: {}); retry",
                leader.as_deref().unwrap_or("none")
            ))),
            Err(e) => Err(convert::status(e)),
        }
    }

    /// Hands leadership over and waits a little to name the successor.
    async fn step_down_here(&self) -> Result<String, ClusterError> {
        self.cluster.step_down().await?;
        let me = self.cluster.node_id().to_string();
        let mut leader = self.cluster.watch_leader();
        let waited = tokio::time::timeout(
            STEP_DOWN_WAIT,
            leader.wait_for(|l| l.as_deref().is_some_and(|l| l != me)),
        )
        .await;
        Ok(match waited {
            Ok(Ok(l)) => format!(
                "{me} handed leadership to {}",
                l.as_deref().unwrap_or_default()
            ),
            _ => format!("{me} started handing leadership over"),
        })
    }
}

fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().get(FORWARDED_HEADER).is_some()
}

/// `msg` marked as forwarded, so the leader never forwards it again.
fn forward<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        FORWARDED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    r
}

fn node_arg(id: String) -> Result<String, Status> {
    if id.is_empty() {
        Err(Status::invalid_argument("node_id is required"))
    } else {
        Ok(id)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Management for Service {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(convert::status_response(
            self.cluster.status_now(),
        )))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let req = req.into_inner();
        const STATUSES: [&str; 4] = ["alive", "suspect", "dead", "left"];
        if !req.status.is_empty() && !STATUSES.iter().any(|s| s.eq_ignore_ascii_case(&req.status)) {
            return Err(Status::invalid_argument(format!(
                "unknown status {:?} (alive, suspect, dead or left)",
                req.status
            )));
        }
        let filter = super::NodeFilter {
            status: Some(req.status),
            tags: req.tags.into_iter().collect(),
        };
        let leader = self.cluster.leader();
        let nodes = self
            .cluster
            .node_infos()
            .await
            .map_err(convert::status)?
            .iter()
            .filter(|n| filter.matches(&n.gossip_status, &n.tags))
            .map(|n| convert::node(n, leader.as_deref()))
            .collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn list_shards(
        &self,
        req: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        let map = self.cluster.shard_map().borrow().clone();
        let map = map.ok_or_else(|| {
            Status::failed_precondition(format!(
                "no committed shard map yet (node {} is {})",
                self.cluster.node_id(),
                self.cluster.state().as_str()
            ))
        })?;
        Ok(Response::new(convert::shards(&map, req.get_ref().full_map)))
    }

    async fn list_endpoints(
        &self,
        req: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        let req = req.into_inner();
        let infos = self.cluster.node_infos().await.map_err(convert::status)?;
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints: convert::endpoints(&infos, &req.prefix, &req.node_id),
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let fwd = forwarded(&req);
        let node = node_arg(req.into_inner().node_id)?;
        info!(node = %node, forwarded = fwd, "management: add node");
        let local = async {
            self.cluster.add_node(&node).await?;
            Ok(format!("{node} will be added to Raft and the shard map"))
        };
        let msg = pb::AddNodeRequest {
            node_id: node.clone(),
        };
        self.leader_write(
            fwd,
            local,
            |mut c| async move { c.add_node(forward(msg)).await },
        )
        .await
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let fwd = forwarded(&req);
        let node = node_arg(req.into_inner().node_id)?;
        info!(node = %node, forwarded = fwd, "management: remove node");
        let local = async {
            self.cluster.remove_node(&node).await?;
            // A failed node also leaves gossip at once (Serf's force-leave),
            // rather than staying listed as dead until it is reaped.
            if self.cluster.is_failed(&node) && self.cluster.force_leave(&node, false).await.is_ok()
            {
                return Ok(format!(
                    "{node} will leave Raft and the shard map, and was marked left in gossip"
                ));
            }
            Ok(format!("{node} will leave Raft and the shard map"))
        };
        let msg = pb::RemoveNodeRequest {
            node_id: node.clone(),
        };
        self.leader_write(fwd, local, |mut c| async move {
            c.remove_node(forward(msg)).await
        })
        .await
    }

    async fn step_down(
        &self,
        req: Request<pb::StepDownRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let fwd = forwarded(&req);
        info!(forwarded = fwd, "management: step down");
        self.leader_write(fwd, self.step_down_here(), |mut c| async move {
            c.step_down(forward(pb::StepDownRequest {})).await
        })
        .await
    }

    async fn drain(
        &self,
        req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let node = node_arg(req.node_id)?;
        let timeout = match req.timeout_ms {
            0 => DRAIN_DEFAULT,
            ms => Duration::from_millis(ms).min(DRAIN_MAX),
        };
        info!(node = %node, ?timeout, "management: drain");
        self.cluster
            .set_weight(&node, 0)
            .await
            .map_err(convert::status)?;
        let mut maps = self.cluster.shard_map();
        let mut shutdown = self.shutdown.clone();
        let mut owned: Option<u32> = None;
        let wait = async {
            loop {
                let now = maps.borrow_and_update().as_ref().map(|m| {
                    (
                        m.epoch(),
                        m.counts().get(node.as_str()).copied().unwrap_or(0),
                    )
                });
                match now {
                    Some((epoch, 0)) => return Ok(epoch),
                    Some((_, n)) => owned = Some(n),
                    None => {}
                }
                tokio::select! {
                    r = maps.changed() => if r.is_err() {
                        return Err(Status::unavailable("the node is stopping"));
                    },
                    _ = shutdown.wait_for(|s| *s) => {
                        return Err(Status::unavailable("the management server is stopping"));
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(epoch)) => Ok(Response::new(pb::WriteResponse {
                epoch,
                ..self.write_response(format!("{node} owns no shard since epoch {epoch}"))
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{node} still owns {} shards after {} ms (its weight stays 0)",
                owned.map(|n| n.to_string()).unwrap_or_else(|| "its".into()),
                timeout.as_millis()
            ))),
        }
    }

    async fn set_weight(
        &self,
        req: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let node = node_arg(req.node_id)?;
        info!(node = %node, weight = req.weight, "management: set weight");
        self.cluster
            .set_weight(&node, req.weight)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(self.write_response(format!(
            "weight of {node} set to {}",
            req.weight
        ))))
    }

    async fn send_user_event(
        &self,
        req: Request<pb::SendUserEventRequest>,
    ) -> Result<Response<pb::SendUserEventResponse>, Status> {
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("name is required"));
        }
        self.cluster
            .send_user_event(&req.name, &req.payload, req.coalesce)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(pb::SendUserEventResponse {}))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let events = self.cluster.events();
        let user = if req.get_ref().user_events {
            Some(self.cluster.user_events().await.map_err(convert::status)?)
        } else {
            None
        };
        let feed = Feed {
            events,
            user,
            shutdown: self.shutdown.clone(),
            source: self.cluster.node_id().to_string(),
            missed: self.missed.clone(),
        };
        let stream = futures::stream::unfold(feed, |mut feed| async move {
            let ev = feed.next().await?;
            Some((Ok(ev), feed))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchShardMapStream = super::watch_map::MapStream;

    async fn watch_shard_map(
        &self,
        _req: Request<pb::WatchShardMapRequest>,
    ) -> Result<Response<Self::WatchShardMapStream>, Status> {
        let s = super::watch_map::stream(self.cluster.clone(), self.shutdown.clone());
        Ok(Response::new(s))
    }

    async fn keys(
        &self,
        req: Request<pb::KeysRequest>,
    ) -> Result<Response<pb::KeysResponse>, Status> {
        super::keys::serve(&self.cluster, &self.forwarding, req).await
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let addrs = req.into_inner().addresses;
        if addrs.is_empty() {
            return Err(Status::invalid_argument("addresses are required"));
        }
        info!(addrs = ?addrs, "management: join");
        let joined = self.cluster.join(&addrs).await.map_err(|e| match e {
            ClusterError::Gossip(g) => {
                Status::unavailable(format!("join {}: {g}", addrs.join(", ")))
            }
            e => convert::status(e),
        })?;
        Ok(Response::new(pb::JoinResponse {
            joined: joined as u32,
        }))
    }

    async fn append_log(
        &self,
        req: Request<pb::AppendLogRequest>,
    ) -> Result<Response<pb::AppendLogResponse>, Status> {
        super::app_log::append(&self.cluster, req.into_inner()).await
    }

    type WatchLogStream = super::app_log::LogStream;

    async fn watch_log(
        &self,
        req: Request<pb::WatchLogRequest>,
    ) -> Result<Response<Self::WatchLogStream>, Status> {
        super::app_log::watch(&self.cluster, self.shutdown.clone(), req.into_inner())
    }

    async fn force_leave(
        &self,
        req: Request<pb::ForceLeaveRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let node = node_arg(req.node_id)?;
        info!(node = %node, prune = req.prune, "management: force leave");
        self.cluster
            .force_leave(&node, req.prune)
            .await
            .map_err(convert::status)?;
        Ok(Response::new(self.write_response(if req.prune {
            format!("{node} was forced to leave and is forgotten everywhere")
        } else {
            format!("{node} was forced to leave (marked left everywhere)")
        })))
    }
}

/// What one WatchEvents stream reads from.
struct Feed {
    events: broadcast::Receiver<ClusterEvent>,
    user: Option<mpsc::Receiver<UserEvent>>,
    shutdown: watch::Receiver<bool>,
    source: String,
    missed: Arc<AtomicU64>,
}

enum Next {
    Event(pb::Event),
    UserClosed,
    End,
}

impl Feed {
    /// The next event; `None` ends the stream (server or node stopping).
    async fn next(&mut self) -> Option<pb::Event> {
        loop {
            let user_rx = &mut self.user;
            let user = async {
                match user_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|s| *s) => Next::End,
                r = self.events.recv() => match r {
                    Ok(ev) => Next::Event(convert::event(&ev, &self.source, unix_ms())),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let total = self.missed.fetch_add(n, Ordering::Relaxed) + n;
                        debug!(missed = n, total, "event stream reader too slow; skipped");
                        Next::Event(convert::gap(n, &self.source, unix_ms()))
                    }
                    Err(broadcast::error::RecvError::Closed) => Next::End,
                },
                u = user => match u {
                    Some(u) => Next::Event(convert::user_event(&u, &self.source, unix_ms())),
                    None => Next::UserClosed,
                },
            };
            match next {
                Next::Event(e) => return Some(e),
                Next::End => return None,
                Next::UserClosed => self.user = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_reader_gets_a_counted_gap_then_new_events() {
        let (tx, rx) = broadcast::channel(4);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let missed = Arc::new(AtomicU64::new(0));
        let mut feed = Feed {
            events: rx,
            user: None,
            shutdown: stop_rx,
            source: "n".into(),
            missed: missed.clone(),
        };
        for epoch in 0..10 {
            tx.send(ClusterEvent::MapProposed { epoch })
                .expect("receiver");
        }
        let first = feed.next().await.expect("event");
        assert_eq!((first.kind.as_str(), first.missed), ("gap", 6));
        assert_eq!(missed.load(Ordering::Relaxed), 6);
        let next = feed.next().await.expect("event");
        assert_eq!((next.kind.as_str(), next.epoch), ("map_proposed", 6));
    }

    #[tokio::test]
    async fn streams_end_on_shutdown_and_deliver_user_events() {
        let (_tx, rx) = broadcast::channel::<ClusterEvent>(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (utx, urx) = mpsc::channel(4);
        let mut feed = Feed {
            events: rx,
            user: Some(urx),
            shutdown: stop_rx,
            source: "n".into(),
            missed: Arc::new(AtomicU64::new(0)),
        };
        utx.send(UserEvent {
            ltime: 1,
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            coalesce: false,
        })
        .await
        .expect("send");
        let e = feed.next().await.expect("user event");
        assert_eq!(
            (e.kind.as_str(), e.detail.as_str()),
            ("user_event", "deploy")
        );
        assert_eq!(e.payload, b"v2");
        drop(utx);
        stop_tx.send(true).expect("receiver");
        assert!(feed.next().await.is_none());
    }
}
