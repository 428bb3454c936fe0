//! `GossipConfig`: every knob of the protocol, with memberlist's presets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
use super::keyring::Keyring;
use super::lighthouse::LIGHTHOUSE_TAG;
use super::tags::check_tags;
use super::version::ProtocolRange;
use crate::cidr::AllowList;

/// Configuration of one gossip node.
///
/// Start from [`GossipConfig::lan`] (memberlist's `DefaultLANConfig`),
/// [`GossipConfig::wan`] or [`GossipConfig::local`] and change fields; call
/// [`validate`](Self::validate) (done by `Gossip::start`) to check it.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Unique node id in the cluster.
    pub name: String,
    /// Address other nodes use to reach this one; `None` = the transport's
    /// bound address (set it when binding 0.0.0.0 or behind NAT).
    pub advertise_addr: Option<SocketAddr>,
    /// Initial tags (endpoint tags are `ep.<name>` → `host:port`); at most
    /// [`MAX_TAGS_SIZE`](super::MAX_TAGS_SIZE) bytes encoded.
    pub tags: BTreeMap<String, String>,
    /// Timeout for connecting a stream and for each read/write on it
    /// (push/pull). memberlist's `TCPTimeout`.
    pub stream_timeout: Duration,
    /// How many members are asked to probe a node whose direct probe failed.
    pub indirect_checks: usize,
    /// A broadcast is sent `retransmit_mult * ceil(log10(N + 1))` times.
    pub retransmit_mult: usize,
    /// Suspicion timeout = `suspicion_mult * max(1, log10(max(1, N))) *
    /// probe_interval`; the floor reached once enough members confirm.
    pub suspicion_mult: u32,
    /// Upper bound of the suspicion timeout, as a multiple of the floor above;
    /// the timeout starts here and shrinks with each independent confirmation.
    pub suspicion_max_timeout_mult: u32,
    /// Interval of full state exchanges with a random member (scaled up
    /// beyond 32 nodes as memberlist does). Zero disables them.
    pub push_pull_interval: Duration,
    /// Interval between probes of one member (round-robin over a shuffled
    /// list). Scaled by the local health score.
    pub probe_interval: Duration,
    /// Time to wait for a direct ack before asking others to probe; about
    /// the 99th percentile RTT. Scaled by the local health score.
    pub probe_timeout: Duration,
    /// When a direct probe times out, also probe the member over a stream
    /// (TCP), alongside the indirect probes; if that answers, the member is
    /// not suspected (its datagrams are being lost, not the member).
    /// memberlist's TCP fallback ping (`DisableTcpPings = false`).
    pub stream_fallback_ping: bool,
    /// Lifeguard local health: the score ranges over `0..max`, and probe
    /// interval and timeout are multiplied by `score + 1`.
    pub awareness_max_multiplier: u32,
    /// Interval between gossip rounds (queued broadcasts sent to
    /// `gossip_nodes` random members). Zero disables gossip rounds
    /// (broadcasts then only piggyback on probes).
    pub gossip_interval: Duration,
    /// Members gossiped to per round.
    pub gossip_nodes: usize,
    /// A dead member still receives gossip for this long, so it can refute.
    pub gossip_to_the_dead_time: Duration,
    /// When set, newly queued broadcasts trigger a gossip round as soon as
    /// this long has passed since the previous round, and rounds go on at
    /// this pace until the queue has used up its transmits, instead of one
    /// round per `gossip_interval`. News then travels a hop in tens of
    /// milliseconds; the transmit limit still bounds how often each
    /// broadcast is sent, so only the batching changes (more, smaller
    /// packets while news spreads; nothing extra when idle). `None` keeps
    /// memberlist's purely periodic rounds.
    pub eager_gossip: Option<Duration>,
    /// Interval of push/pull attempts with a random failed (not left) member,
    /// which heals partitions (Serf's `ReconnectInterval`). Zero disables.
    pub reconnect_interval: Duration,
    /// A failed member is forgotten after this long (Serf's
    /// `ReconnectTimeout`).
    pub reap_failed_after: Duration,
    /// A member that left is forgotten after this long (Serf's
    /// `TombstoneTimeout`).
    pub reap_left_after: Duration,
    /// Largest datagram sent, in bytes (memberlist's `UDPBufferSize`).
    pub packet_size: usize,
    /// Most broadcasts kept queued; beyond it the most transmitted are
    /// dropped and counted.
    pub max_broadcast_queue: usize,
    /// Capacity of each subscriber's event channel; events that do not fit
    /// are dropped and counted, the protocol never waits.
    pub event_channel_capacity: usize,
    /// Capacity of the command channel between handles and the gossip task.
    pub command_channel_capacity: usize,
    /// Largest user event (name + payload) in bytes.
    pub max_user_event_size: usize,
    /// User events remembered for de-duplication and sent on push/pull.
    pub recent_user_events: usize,
    /// AES-GCM keys (the cluster secret); `None` sends and accepts
    /// plaintext. With a keyring every message is authenticated: what does
    /// not open with one of its keys is dropped and counted in
    /// [`GossipStats::decrypt_failures`](super::GossipStats).
    pub keyring: Option<Keyring>,
    /// With a keyring: refuse plaintext messages (memberlist's
    /// `GossipVerifyIncoming`). Turn it off only while switching a running
    /// cluster from plaintext to encrypted: first every node gets the key
    /// with both `verify_*` off, then `verify_outgoing` on, then this on.
    /// Default true.
    pub verify_incoming: bool,
    /// With a keyring: encrypt what is sent (memberlist's
    /// `GossipVerifyOutgoing`). Default true.
    pub verify_outgoing: bool,
    /// Where a changed keyring is saved (Serf's keyring file), so that a
    /// node restarted after a rotation comes back with the current keys.
    /// `None`: changes live in memory only.
    pub keyring_path: Option<std::path::PathBuf>,
    /// Largest stream frame body read, in bytes; a longer declared length
    /// closes the stream (counted). Bodies are read in chunks as they
    /// arrive, never allocated at the declared length. Default 8 MiB (the
    /// full state of tens of thousands of members).
    pub max_stream_frame: usize,
    /// Bytes of stream frames that may be buffered at once across every
    /// connection; a frame that would exceed it closes its stream
    /// (counted). Default 64 MiB.
    pub stream_memory_budget: usize,
    /// Incoming streams served at once. When full, the oldest connection
    /// that has not yet sent a complete first frame (an idle one) is
    /// closed to make room; if every one is busy the new one is closed.
    /// Both are counted. Default 64.
    pub max_incoming_streams: usize,
    /// File keeping the live peers and the event clock (Serf's
    /// `SnapshotPath`), written at most once a second while membership
    /// changes. At start a node rejoins the peers found there unless its
    /// last run ended with a graceful leave. `None`: no snapshot.
    pub snapshot_path: Option<PathBuf>,
    /// Rejoin the snapshot's peers even after a graceful leave (Serf's
    /// `RejoinAfterLeave`). Default false.
    pub rejoin_after_leave: bool,
    /// Protocol versions spoken (advertised in the `cf.proto` tag). Default:
    /// this build's whole range, sending its newest version; lower `cur`
    /// with [`ProtocolRange::sending`] while older builds are still in the
    /// cluster (see [`version`](super::version)).
    pub protocol: ProtocolRange,
    /// Sources allowed to send datagrams and open streams; others are
    /// dropped and counted in [`GossipStats::cidr_refused`](super::GossipStats).
    /// Default: empty, every address.
    pub allow: AllowList,
    /// Serf's `CoalescePeriod`: membership events are held and merged per
    /// member (only the latest of each is delivered) until this long after
    /// the first, or until `quiescent_period` passes with none. Zero (the
    /// default, as in Serf) delivers every event at once.
    pub coalesce_period: Duration,
    /// Serf's `QuiescentPeriod`: flush held membership events once no new
    /// one came for this long. Zero disables coalescing.
    pub quiescent_period: Duration,
    /// Serf's `UserCoalescePeriod`: user events sent with `coalesce` are held
    /// and only the newest of each name delivered. Zero (default) disables.
    pub user_coalesce_period: Duration,
    /// Serf's `UserQuiescentPeriod`. Zero disables user event coalescing.
    pub user_quiescent_period: Duration,
    /// This node is a lighthouse (Seafoam): it publishes the tag
    /// `cf.lighthouse=1`, and every view that has lost all lighthouses is
    /// reported invalid (see [`ViewValidity`](super::ViewValidity)).
    /// Default false.
    pub lighthouse: bool,
    /// Log a warning (at most every 10 s) while more broadcasts than this
    /// are queued: the cluster produces news faster than gossip spreads it
    /// (Serf's `QueueDepthWarning`; memberlist's handoff queue is 1024).
    /// Zero never warns. Default 1024.
    pub queue_depth_warning: usize,
}

impl GossipConfig {
    /// memberlist's `DefaultLANConfig`: 1 s probes, 500 ms probe timeout,
    /// 200 ms gossip to 3 nodes, 30 s push/pull.
    pub fn lan(name: impl Into<String>) -> Self {
        GossipConfig {
            name: name.into(),
            advertise_addr: None,
            tags: BTreeMap::new(),
            stream_timeout: Duration::from_secs(10),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            push_pull_interval: Duration::from_secs(30),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            awareness_max_multiplier: 8,
            stream_fallback_ping: true,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead_time: Duration::from_secs(30),
            eager_gossip: Some(Duration::from_millis(20)),
            reconnect_interval: Duration::from_secs(30),
            reap_failed_after: Duration::from_secs(24 * 3600),
            reap_left_after: Duration::from_secs(24 * 3600),
            packet_size: 1400,
            max_broadcast_queue: 4096,
            event_channel_capacity: 1024,
            command_channel_capacity: 64,
            max_user_event_size: 512,
            recent_user_events: 256,
            keyring: None,
            verify_incoming: true,
            verify_outgoing: true,
            keyring_path: None,
            max_stream_frame: 8 * 1024 * 1024,
            stream_memory_budget: 64 * 1024 * 1024,
            max_incoming_streams: 64,
            snapshot_path: None,
            rejoin_after_leave: false,
            protocol: ProtocolRange::default(),
            allow: AllowList::default(),
            coalesce_period: Duration::ZERO,
            quiescent_period: Duration::ZERO,
            user_coalesce_period: Duration::ZERO,
            user_quiescent_period: Duration::ZERO,
            lighthouse: false,
            queue_depth_warning: 1024,
        }
    }

    /// memberlist's `DefaultWANConfig`: 5 s probes, 3 s probe timeout, 500 ms
    /// gossip to 4 nodes, 60 s push/pull, longer suspicion.
    pub fn wan(name: impl Into<String>) -> Self {
        GossipConfig {
            stream_timeout: Duration::from_secs(30),
            suspicion_mult: 6,
            push_pull_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(3),
            probe_interval: Duration::from_secs(5),
            gossip_nodes: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead_time: Duration::from_secs(60),
            eager_gossip: Some(Duration::from_millis(50)),
            ..Self::lan(name)
        }
    }

    /// memberlist's `DefaultLocalConfig` (one host or a fast LAN): 200 ms
    /// probe timeout, 100 ms gossip, 15 s push/pull, 1 indirect check.
    pub fn local(name: impl Into<String>) -> Self {
        GossipConfig {
            stream_timeout: Duration::from_secs(1),
            indirect_checks: 1,
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            probe_timeout: Duration::from_millis(200),
            probe_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead_time: Duration::from_secs(15),
            eager_gossip: Some(Duration::from_millis(10)),
            reconnect_interval: Duration::from_secs(10),
            ..Self::lan(name)
        }
    }

    /// Checks every field; returns the config unchanged when it is usable.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        for (d, what) in [
            (self.stream_timeout, "stream_timeout"),
            (self.probe_interval, "probe_interval"),
            (self.probe_timeout, "probe_timeout"),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(what));
            }
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeoutTooLong {
                timeout_ms: self.probe_timeout.as_millis(),
                interval_ms: self.probe_interval.as_millis(),
            });
        }
        for (n, what) in [
            (self.retransmit_mult, "retransmit_mult"),
            (self.suspicion_mult as usize, "suspicion_mult"),
            (
                self.suspicion_max_timeout_mult as usize,
                "suspicion_max_timeout_mult",
            ),
            (
                self.awareness_max_multiplier as usize,
                "awareness_max_multiplier",
            ),
            (self.gossip_nodes, "gossip_nodes"),
            (self.max_broadcast_queue, "max_broadcast_queue"),
            (self.event_channel_capacity, "event_channel_capacity"),
            (self.command_channel_capacity, "command_channel_capacity"),
            (self.max_user_event_size, "max_user_event_size"),
            (self.max_stream_frame, "max_stream_frame"),
            (self.max_incoming_streams, "max_incoming_streams"),
        ] {
            if n == 0 {
                return Err(ConfigError::ZeroCount(what));
            }
        }
        if self.eager_gossip.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("eager_gossip"));
        }
        for (a, an, b, bn) in [
            (
                self.coalesce_period,
                "coalesce_period",
                self.quiescent_period,
                "quiescent_period",
            ),
            (
                self.user_coalesce_period,
                "user_coalesce_period",
                self.user_quiescent_period,
                "user_quiescent_period",
            ),
        ] {
            match (a.is_zero(), b.is_zero()) {
                (false, true) => return Err(ConfigError::CoalesceHalf { set: an, zero: bn }),
                (true, false) => return Err(ConfigError::CoalesceHalf { set: bn, zero: an }),
                _ => {}
            }
        }
        if !(512..=65000).contains(&self.packet_size) {
            return Err(ConfigError::PacketSize(self.packet_size));
        }
        if self.stream_memory_budget < self.max_stream_frame {
            return Err(ConfigError::StreamBudget {
                budget: self.stream_memory_budget,
                frame: self.max_stream_frame,
            });
        }
        self.protocol.validate()?;
        // As published: with the protocol range and lighthouse tags.
        let mut tags = self.tags.clone();
        self.advertise(&mut tags);
        check_tags(&tags)?;
        Ok(self)
    }

    /// Adds the tags this node always publishes: its protocol range and,
    /// on a lighthouse, [`LIGHTHOUSE_TAG`].
    pub(crate) fn advertise(&self, tags: &mut BTreeMap<String, String>) {
        self.protocol.advertise(tags);
        if self.lighthouse {
            tags.insert(LIGHTHOUSE_TAG.to_string(), "1".to_string());
        } else {
            tags.remove(LIGHTHOUSE_TAG);
        }
    }

    /// The keyring to seal outgoing messages with (none while
    /// `verify_outgoing` is off).
    pub(crate) fn seal_keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref().filter(|_| self.verify_outgoing)
    }

    /// How incoming messages are opened.
    pub(crate) fn opener(&self) -> Opener<'_> {
        Opener {
            keyring: self.keyring.as_ref(),
            require: self.verify_incoming,
            range: self.protocol,
        }
    }
}

/// How incoming frames are opened: with `keyring`, and whether plaintext is
/// refused when a keyring is set.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Opener<'a> {
    pub(crate) keyring: Option<&'a Keyring>,
    pub(crate) require: bool,
    /// Versions accepted in frame headers.
    pub(crate) range: ProtocolRange,
}

#[cfg(test)]
impl<'a> Opener<'a> {
    /// Opens with `keyring` and refuses plaintext when one is given.
    pub(crate) fn strict(keyring: Option<&'a Keyring>) -> Self {
        Opener {
            keyring,
            require: true,
            range: ProtocolRange::default(),
        }
    }
}

impl Default for GossipConfig {
    /// The LAN preset with an empty name (which `validate` rejects).
    fn default() -> Self {
        Self::lan(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_match_memberlist() {
        let lan = GossipConfig::lan("a").validate().unwrap();
        assert_eq!(lan.probe_interval, Duration::from_secs(1));
        assert_eq!(lan.probe_timeout, Duration::from_millis(500));
        assert_eq!(lan.suspicion_mult, 4);
        let wan = GossipConfig::wan("a").validate().unwrap();
        assert_eq!(wan.probe_interval, Duration::from_secs(5));
        assert_eq!(wan.suspicion_mult, 6);
        let local = GossipConfig::local("a").validate().unwrap();
        assert_eq!(local.probe_timeout, Duration::from_millis(200));
        assert_eq!(local.indirect_checks, 1);
    }

    #[test]
    fn validate_rejects_bad_values() {
        assert_eq!(
            GossipConfig::default().validate().unwrap_err(),
            ConfigError::EmptyName
        );
        let c = GossipConfig {
            probe_timeout: Duration::from_secs(2),
            ..GossipConfig::lan("a")
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ProbeTimeoutTooLong { .. })
        ));
        let c = GossipConfig {
            packet_size: 100,
            ..GossipConfig::lan("a")
        };
        assert_eq!(c.validate().unwrap_err(), ConfigError::PacketSize(100));
        let c = GossipConfig {
            gossip_nodes: 0,
            ..GossipConfig::lan("a")
        };
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::ZeroCount("gossip_nodes")
        );
        let mut c = GossipConfig::lan("a");
        c.tags.insert("big".into(), "x".repeat(600));
        assert!(matches!(c.validate(), Err(ConfigError::Tags(_))));
        let c = GossipConfig {
            user_quiescent_period: Duration::from_millis(100),
            ..GossipConfig::lan("a")
        };
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            ConfigError::CoalesceHalf {
                set: "user_quiescent_period",
                zero: "user_coalesce_period"
            }
        );
        assert!(e.to_string().contains("needs both"), "{e}");
        let c = GossipConfig {
            coalesce_period: Duration::from_secs(5),
            quiescent_period: Duration::from_millis(500),
            lighthouse: true,
            ..GossipConfig::lan("a")
        };
        assert!(c.validate().is_ok());
    }
}
