//! [`RaftConfig`]: timing, snapshot and storage knobs, with defaults tuned for
//! fast failover on a LAN, validation, and conversion into `openraft::Config`.

use std::time::Duration;

use super::error::ConfigError;

/// When the state machine is snapshotted (and the log before it purged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Build a snapshot once this many entries were committed since the last.
    LogsSinceLast(u64),
    /// Never build snapshots on this node (it can still receive them).
    Never,
}

/// Configuration of a Raft node.
///
/// Defaults (see [`RaftConfig::default`]) target a LAN and fast failover:
/// a heartbeat every 20 ms (each AppendEntries RPC may take 50 ms), a
/// 110 ms vote lease and an election timeout drawn from 130..210 ms.
///
/// Failover timing: openraft's own election timer is off; the node's
/// elector starts a pre-vote once it heard from no leader for
/// `vote_lease` plus a random election timeout (240-320 ms with the
/// defaults), or, when the leader's process is certainly gone (its Raft
/// port refuses connections), as soon as the voters will vote. Voters
/// refuse votes for `vote_lease` after they last accepted the leader
/// (openraft 0.9's "leader lease", which is its `election_timeout_max`; it
/// is given `vote_lease` as that), so no leader of a later term can be
/// elected sooner than `vote_lease` after a quorum last accepted the old
/// one; the serving lease rule (see `lease`) builds on exactly this bound,
/// whatever the other values. A serving lease no longer than `vote_lease`
/// costs a new leader no wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// Cluster name, used by openraft for log context. Default `clusterfunk`.
    pub cluster_name: String,
    /// Leader heartbeat period: every heartbeat renews the serving leases,
    /// so a lease must span a few of them. Default 20 ms.
    pub heartbeat_interval: Duration,
    /// Timeout of one AppendEntries RPC (openraft's `heartbeat_interval`,
    /// which openraft also uses as the RPC timeout and, times 1.5, as its
    /// own heartbeat tick). It must cover a follower's fsync under load and
    /// be below `election_timeout_min`. Default 50 ms.
    pub append_timeout: Duration,
    /// How long a voter refuses votes after it last accepted the leader,
    /// and so the earliest a crashed leader's successor can be elected
    /// after its last heartbeat. Must exceed `append_timeout`. Default
    /// 110 ms.
    pub vote_lease: Duration,
    /// Lower bound of the random election timeout, which a quiet follower
    /// waits on top of `vote_lease` (no false elections while the leader
    /// is only slow). Default 130 ms.
    pub election_timeout_min: Duration,
    /// Upper bound (exclusive) of the random election timeout. Default
    /// 210 ms.
    pub election_timeout_max: Duration,
    /// Timeout of one InstallSnapshot chunk RPC. Default 1 s.
    pub install_snapshot_timeout: Duration,
    /// Snapshot policy. Default `LogsSinceLast(1000)`: coordinator state is
    /// small, so snapshots are cheap and keep the log short.
    pub snapshot_policy: SnapshotPolicy,
    /// Entries kept in the log below the last snapshot (so slightly lagging
    /// followers catch up from the log, not a snapshot). Default 1000.
    pub max_in_snapshot_log_to_keep: u64,
    /// Maximum entries in one AppendEntries RPC. Default 300.
    pub max_payload_entries: u64,
    /// How far behind (in entries) a follower may be before it is fed a
    /// snapshot instead of log entries. Default 5000.
    pub replication_lag_threshold: u64,
    /// Snapshot chunk size. Default 1 MiB (well below `max_message_size`).
    pub snapshot_max_chunk_size: u64,
    /// Pause before retrying a peer that was unreachable (connection
    /// refused or reset, node stopped). Default 40 ms: two heartbeats, well
    /// under the election timeout, so that one refused or reset call (a
    /// forged reset, too) does not leave a follower quiet long enough to
    /// start an election.
    pub unreachable_backoff: Duration,
    /// TCP connect timeout of a peer channel. Default 500 ms.
    pub connect_timeout: Duration,
    /// Largest gRPC message accepted or sent, in bytes. Default 64 MiB
    /// (an AppendEntries batch can carry many shard maps).
    pub max_message_size: usize,
    /// sled page cache size in bytes. Default 8 MiB: a coordinator's log and
    /// state are small.
    pub sled_cache_capacity: u64,
    /// How long a serving lease lasts from the quorum round that confirmed
    /// it (see the `lease` module). Default 80 ms; the coordinator sets
    /// it from its own `Config::lease`.
    pub serving_lease: Duration,
    /// Credential every Raft call must carry and that this node sends
    /// (derived from the cluster secret); `None` accepts calls without one.
    /// Default `None`.
    pub auth: Option<super::RaftAuth>,
    /// Bounds of the Raft listener (connections, idle and handshake
    /// timeouts, keepalives).
    pub listener: super::ListenerLimits,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            cluster_name: "clusterfunk".to_string(),
            heartbeat_interval: Duration::from_millis(20),
            append_timeout: Duration::from_millis(50),
            vote_lease: Duration::from_millis(110),
            election_timeout_min: Duration::from_millis(130),
            election_timeout_max: Duration::from_millis(210),
            install_snapshot_timeout: Duration::from_millis(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 1000,
            max_payload_entries: 300,
            replication_lag_threshold: 5000,
            snapshot_max_chunk_size: 1024 * 1024,
            unreachable_backoff: Duration::from_millis(40),
            connect_timeout: Duration::from_millis(500),
            max_message_size: 64 * 1024 * 1024,
            sled_cache_capacity: 8 * 1024 * 1024,
            serving_lease: Duration::from_millis(80),
            auth: None,
            listener: super::ListenerLimits::default(),
        }
    }
}

/// Room left in a gRPC message for everything but the snapshot chunk.
const MESSAGE_OVERHEAD: u64 = 64 * 1024;

impl RaftConfig {
    /// How long one registry write (weight, removal, ...) may wait for its
    /// commit before it fails with a timeout: ten election timeouts
    /// (2.1 s with the defaults), time for a new leader to take over.
    pub fn write_timeout(&self) -> Duration {
        self.election_timeout_max * 10
    }

    /// Checks the values for consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms = |d: Duration| d.as_millis();
        for (field, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("append_timeout", self.append_timeout),
            ("election_timeout_min", self.election_timeout_min),
            ("vote_lease", self.vote_lease),
            ("install_snapshot_timeout", self.install_snapshot_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if ms(d) == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        for (field, v) in [
            ("max_payload_entries", self.max_payload_entries),
            ("snapshot_max_chunk_size", self.snapshot_max_chunk_size),
            ("sled_cache_capacity", self.sled_cache_capacity),
            ("max_message_size", self.max_message_size as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if let SnapshotPolicy::LogsSinceLast(0) = self.snapshot_policy {
            return Err(ConfigError::Zero {
                field: "snapshot_policy",
            });
        }
        if ms(self.election_timeout_min) >= ms(self.election_timeout_max) {
            return Err(ConfigError::ElectionTimeoutRange {
                min: self.election_timeout_min,
                max: self.election_timeout_max,
            });
        }
        if ms(self.heartbeat_interval) >= ms(self.election_timeout_min) {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat: self.heartbeat_interval,
                election_timeout_min: self.election_timeout_min,
            });
        }
        if ms(self.append_timeout) >= ms(self.election_timeout_min) {
            return Err(ConfigError::AppendTimeoutTooLong {
                append_timeout: self.append_timeout,
                election_timeout_min: self.election_timeout_min,
            });
        }
        // openraft is given `vote_lease - 1 ms .. vote_lease` as its
        // election timeout, which must exceed its heartbeat (our
        // `append_timeout`).
        if ms(self.vote_lease) <= ms(self.append_timeout) + 1 {
            return Err(ConfigError::VoteLeaseTooShort {
                vote_lease: self.vote_lease,
                append_timeout: self.append_timeout,
            });
        }
        if self.snapshot_max_chunk_size + MESSAGE_OVERHEAD > self.max_message_size as u64 {
            return Err(ConfigError::ChunkTooLarge {
                chunk: self.snapshot_max_chunk_size,
                max_message_size: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Validates and converts into openraft's configuration.
    pub fn to_openraft(&self) -> Result<openraft::Config, ConfigError> {
        self.validate()?;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: millis(self.append_timeout),
            // openraft's election timer is off; its election_timeout_max is
            // the leader lease its voters keep, and its minimum times out
            // a vote RPC.
            election_timeout_min: millis(self.vote_lease) - 1,
            election_timeout_max: millis(self.vote_lease),
            install_snapshot_timeout: millis(self.install_snapshot_timeout),
            snapshot_policy: match self.snapshot_policy {
                SnapshotPolicy::LogsSinceLast(n) => openraft::SnapshotPolicy::LogsSinceLast(n),
                SnapshotPolicy::Never => openraft::SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            max_payload_entries: self.max_payload_entries,
            replication_lag_threshold: self.replication_lag_threshold,
            snapshot_max_chunk_size: self.snapshot_max_chunk_size,
            // Elections start from the pre-vote elector in `node`.
            enable_elect: false,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ConfigError::Openraft(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_convert() {
        let c = RaftConfig::default();
        c.validate().unwrap();
        let o = c.to_openraft().unwrap();
        let ms = |d: Duration| d.as_millis() as u64;
        assert_eq!(o.heartbeat_interval, ms(c.append_timeout));
        assert_eq!(o.election_timeout_max, ms(c.vote_lease));
        // An election can't come before a follower's lease ran out.
        assert!(c.heartbeat_interval * 2 <= c.election_timeout_min);
        assert_eq!(
            o.snapshot_policy,
            openraft::SnapshotPolicy::LogsSinceLast(1000)
        );
    }

    #[test]
    fn rejects_inconsistent_values() {
        let bad = RaftConfig {
            election_timeout_min: Duration::from_millis(300),
            election_timeout_max: Duration::from_millis(300),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::ElectionTimeoutRange { .. })
        ));
        let bad = RaftConfig {
            vote_lease: Duration::from_millis(50),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::VoteLeaseTooShort { .. })
        ));
        let bad = RaftConfig {
            heartbeat_interval: Duration::from_millis(150),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::HeartbeatTooSlow { .. })
        ));
        let bad = RaftConfig {
            append_timeout: Duration::from_millis(140),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::AppendTimeoutTooLong { .. })
        ));
        let bad = RaftConfig {
            sled_cache_capacity: 0,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Zero {
                field: "sled_cache_capacity"
            })
        ));
        let bad = RaftConfig {
            snapshot_max_chunk_size: 64 * 1024 * 1024,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::ChunkTooLarge { .. })
        ));
        assert!(bad.to_openraft().is_err());
    }
}
