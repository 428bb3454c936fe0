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
/// a heartbeat every 20 ms (each AppendEntries RPC may take 50 ms) and an
/// election timeout drawn from 80..160 ms.
///
/// Failover timing: openraft's own election timer is off; the node's
/// elector starts a pre-vote once it heard from no leader for
/// `election_timeout_max` plus a random part of the election timeout
/// (240-320 ms with the defaults), or, when the leader's process is
/// certainly gone (its Raft port refuses connections), as soon as the
/// voters will vote. openraft 0.9 voters refuse votes for
/// `election_timeout_max` after they last accepted the leader (its
/// "leader lease", fixed to that value), so no leader of a later term can
/// be elected sooner than `election_timeout_max` after a quorum last
/// accepted the old one; the serving lease rule (see `lease`) builds on
/// exactly this bound, whatever the other values. A serving lease no
/// longer than `election_timeout_max` costs a new leader no wait.
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
    /// Lower bound of the randomised election timeout. Default 80 ms.
    pub election_timeout_min: Duration,
    /// Upper bound (exclusive) of the randomised election timeout; also
    /// how long openraft's voters refuse to vote after they last accepted
    /// the leader. Default 160 ms.
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
    /// refused, node stopped). Default 200 ms.
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
            election_timeout_min: Duration::from_millis(80),
            election_timeout_max: Duration::from_millis(160),
            install_snapshot_timeout: Duration::from_millis(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 1000,
            max_payload_entries: 300,
            replication_lag_threshold: 5000,
            snapshot_max_chunk_size: 1024 * 1024,
            unreachable_backoff: Duration::from_millis(200),
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
    /// (1.6 s with the defaults), time for a new leader to take over.
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
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
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
        assert_eq!(o.election_timeout_min, ms(c.election_timeout_min));
        assert_eq!(o.election_timeout_max, ms(c.election_timeout_max));
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
            heartbeat_interval: Duration::from_millis(150),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::HeartbeatTooSlow { .. })
        ));
        let bad = RaftConfig {
            append_timeout: Duration::from_millis(80),
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
