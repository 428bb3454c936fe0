//! Counters and timings of one gossip node, returned by `Gossip::stats`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Messages and bytes of one message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Messages.
    pub messages: u64,
    /// Bytes of those messages (type byte and body, without packet framing).
    pub bytes: u64,
}

/// Round-trip times of direct probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RttStats {
    /// Acks measured.
    pub count: u64,
    /// Most recent RTT.
    pub last: Duration,
    /// Smallest RTT.
    pub min: Duration,
    /// Largest RTT.
    pub max: Duration,
    /// Mean RTT.
    pub mean: Duration,
    #[serde(skip)]
    total: Duration,
}

impl RttStats {
    pub(crate) fn record(&mut self, rtt: Duration) {
        self.count += 1;
        self.last = rtt;
        self.min = if self.count == 1 {
            rtt
        } else {
            self.min.min(rtt)
        };
        self.max = self.max.max(rtt);
        self.total += rtt;
        self.mean = self.total / self.count as u32;
    }
}

/// Counters and timings of one node since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GossipStats {
    /// Lifeguard health score (0 = healthy; timeouts scale by score + 1).
    pub health_score: u32,
    /// Members by status (the local node included).
    pub alive: usize,
    /// Members suspected.
    pub suspect: usize,
    /// Members failed and not yet reaped.
    pub dead: usize,
    /// Members that left and are not yet reaped.
    pub left: usize,
    /// Direct probes sent.
    pub probes: u64,
    /// Probes that ended without any ack (the target became suspect).
    pub probe_failures: u64,
    /// Indirect probe requests sent.
    pub indirect_probes: u64,
    /// Fallback probes sent over a stream.
    pub stream_probes: u64,
    /// Fallback stream probes answered while datagram probes were not (the
    /// member is reachable, its datagrams are lost: a network problem).
    pub stream_probe_acks: u64,
    /// Nacks received for our indirect probes.
    pub nacks_received: u64,
    /// RTT of direct probes.
    pub rtt: RttStats,
    /// Messages and bytes sent, by message type.
    pub sent: BTreeMap<&'static str, Traffic>,
    /// Messages and bytes received, by message type.
    pub received: BTreeMap<&'static str, Traffic>,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagram bytes sent (framing included).
    pub bytes_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Datagram bytes received.
    pub bytes_received: u64,
    /// Datagrams or compound parts dropped as undecodable (bad magic,
    /// version, type, length or body).
    pub bad_packets: u64,
    /// Datagrams and incoming streams dropped because their source is
    /// outside the allow-list (`GossipConfig::allow`).
    pub cidr_refused: u64,
    /// Datagrams sent lz4-compressed (protocol version 2 peers only).
    pub packets_compressed: u64,
    /// Datagrams or stream frames refused because their protocol version
    /// is outside the range this node speaks.
    pub protocol_refused_frames: u64,
    /// Member announcements (alive messages, push/pull records) refused
    /// because the protocol range they advertise has no version in common
    /// with this node's; the member is never added.
    pub protocol_refused_members: u64,
    /// Datagrams or stream frames that failed to decrypt (or arrived in
    /// plaintext while a keyring is set).
    pub decrypt_failures: u64,
    /// Stream frames refused because they declared a body above
    /// `max_stream_frame`.
    pub stream_frames_too_large: u64,
    /// Stream frames refused because `stream_memory_budget` was used up.
    pub stream_budget_exhausted: u64,
    /// Streams closed because connecting or a frame took longer than
    /// `stream_timeout` (idle or slow peers).
    pub stream_timeouts: u64,
    /// Incoming streams closed at once because `max_incoming_streams` were
    /// busy.
    pub streams_rejected: u64,
    /// Idle incoming streams (no valid first frame yet) closed to make room
    /// for a new one.
    pub streams_evicted: u64,
    /// Datagram send errors reported by the transport.
    pub send_errors: u64,
    /// Members that became suspect here.
    pub suspicions: u64,
    /// Times this node refuted a suspicion or death of itself.
    pub refutations: u64,
    /// Push/pull exchanges completed (either side).
    pub push_pulls: u64,
    /// Push/pull exchanges skipped because the checksums agreed.
    pub push_pulls_in_sync: u64,
    /// Push/pulls started because a probed node's checksum differed while
    /// nothing was left to gossip.
    pub checksum_syncs: u64,
    /// Push/pull exchanges that failed.
    pub push_pull_failures: u64,
    /// Events dropped because a subscriber was full.
    pub events_dropped: u64,
    /// Broadcasts dropped because the queue was full.
    pub broadcasts_dropped: u64,
    /// Broadcasts queued now.
    pub broadcasts_queued: usize,
    /// User events delivered (sent or received, after de-duplication).
    pub user_events: u64,
    /// Member and user events merged away by coalescing
    /// (`coalesce_period`, `user_coalesce_period`).
    pub events_coalesced: u64,
    /// Times the broadcast queue was found deeper than
    /// `queue_depth_warning` (each logged as a warning, at most every 10 s).
    pub queue_depth_warnings: u64,
    /// False when lighthouses are known and none is alive here
    /// (see [`ViewValidity`](super::ViewValidity)).
    pub view_valid: bool,
    /// Lighthouses known (this node included if it is one).
    pub lighthouses_known: usize,
    /// Lighthouses alive or suspect now.
    pub lighthouses_alive: usize,
}

impl GossipStats {
    pub(crate) fn sent(&mut self, ty: &'static str, bytes: usize) {
        let t = self.sent.entry(ty).or_default();
        t.messages += 1;
        t.bytes += bytes as u64;
    }

    pub(crate) fn received(&mut self, ty: &'static str, bytes: usize) {
        let t = self.received.entry(ty).or_default();
        t.messages += 1;
        t.bytes += bytes as u64;
    }
}
