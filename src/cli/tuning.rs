//! Gossip and Raft timing for `clusterfunk agent`: the main knobs as flags
//! (each with a `CLUSTERFUNK_` variable), every knob in the JSON config
//! file under `"gossip"` and `"raft"`. Unset knobs keep the preset's value;
//! the result is checked by `Config::validate`, whose errors name the
//! field.

use std::time::Duration;

use clusterfunk::config::{GossipConfig, RaftConfig};

/// Raft timing knobs, in ms (the serving lease is `--lease-ms`).
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuningArgs {
    /// Raft: leader heartbeat period, ms; every heartbeat renews the
    /// serving leases, so --lease-ms must span at least three (lan and
    /// local 20, wan 150).
    #[arg(long, env = "CLUSTERFUNK_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Raft: timeout of one AppendEntries RPC, ms; below
    /// --election-timeout-min-ms (lan and local 50, wan 300).
    #[arg(long, env = "CLUSTERFUNK_APPEND_TIMEOUT_MS")]
    pub append_timeout_ms: Option<u64>,
    /// Raft: how long voters refuse votes after they last heard the
    /// leader, ms; a crashed leader is replaced at the earliest this long
    /// after its last heartbeat (lan and local 110, wan 1000).
    #[arg(long, env = "CLUSTERFUNK_VOTE_LEASE_MS")]
    pub vote_lease_ms: Option<u64>,
    /// Raft: lower bound of the random election timeout a quiet follower
    /// waits on top of the vote lease, ms (lan and local 130, wan 500).
    #[arg(long, env = "CLUSTERFUNK_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Raft: upper bound of that random election timeout, ms (lan and
    /// local 210, wan 1000).
    #[arg(long, env = "CLUSTERFUNK_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
}

impl RaftTuningArgs {
    /// Fills knobs unset here from `file` (flags and variables win).
    pub fn fill_from(&mut self, file: RaftTuningArgs) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            heartbeat_ms,
            append_timeout_ms,
            vote_lease_ms,
            election_timeout_min_ms,
            election_timeout_max_ms
        );
    }

    /// Sets every knob given on `r`.
    pub fn apply(&self, r: &mut RaftConfig) {
        let ms = Duration::from_millis;
        macro_rules! set_ms {
            ($($f:ident => $to:ident),*) => { $( if let Some(v) = self.$f { r.$to = ms(v); } )* };
        }
        set_ms!(
            heartbeat_ms => heartbeat_interval,
            append_timeout_ms => append_timeout,
            vote_lease_ms => vote_lease,
            election_timeout_min_ms => election_timeout_min,
            election_timeout_max_ms => election_timeout_max
        );
    }
}
use serde::Deserialize;

/// Gossip timing and size knobs (memberlist's names, in ms where a time).
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuningArgs {
    /// Gossip: interval between probes of one member, ms (lan 1000, wan
    /// 5000, local 1000).
    #[arg(long, env = "CLUSTERFUNK_PROBE_INTERVAL_MS")]
    pub probe_interval_ms: Option<u64>,
    /// Gossip: wait for a direct ack before asking others to probe, ms;
    /// below --probe-interval-ms (lan 500, wan 3000, local 200).
    #[arg(long, env = "CLUSTERFUNK_PROBE_TIMEOUT_MS")]
    pub probe_timeout_ms: Option<u64>,
    /// Gossip: members asked to probe a node whose direct probe failed
    /// (lan 3, local 1).
    #[arg(long, env = "CLUSTERFUNK_INDIRECT_CHECKS")]
    pub indirect_checks: Option<usize>,
    /// Gossip: suspicion timeout multiplier: a suspect is declared failed
    /// after about mult x log10(N) x probe interval (lan 4, wan 6, local 3).
    #[arg(long, env = "CLUSTERFUNK_SUSPICION_MULT")]
    pub suspicion_mult: Option<u32>,
    /// Gossip: the suspicion timeout starts at this multiple of its floor
    /// and shrinks with each independent confirmation (default 6).
    #[arg(long, env = "CLUSTERFUNK_SUSPICION_MAX_TIMEOUT_MULT")]
    pub suspicion_max_timeout_mult: Option<u32>,
    /// Gossip: interval between gossip rounds, ms; 0 only piggybacks on
    /// probes (lan 200, wan 500, local 100).
    #[arg(long, env = "CLUSTERFUNK_GOSSIP_INTERVAL_MS")]
    pub gossip_interval_ms: Option<u64>,
    /// Gossip: members gossiped to per round (lan 3, wan 4).
    #[arg(long, env = "CLUSTERFUNK_GOSSIP_NODES")]
    pub gossip_nodes: Option<usize>,
    /// Gossip: each broadcast is sent mult x ceil(log10(N + 1)) times (lan
    /// 4, local 2).
    #[arg(long, env = "CLUSTERFUNK_RETRANSMIT_MULT")]
    pub retransmit_mult: Option<usize>,
    /// Gossip: interval of full state exchanges with a random member, ms;
    /// 0 never (lan 30000, wan 60000, local 15000).
    #[arg(long, env = "CLUSTERFUNK_PUSH_PULL_INTERVAL_MS")]
    pub push_pull_interval_ms: Option<u64>,
    /// Gossip: largest datagram sent, bytes, 512..=65000 (default 1400).
    #[arg(long, env = "CLUSTERFUNK_PACKET_SIZE")]
    pub packet_size: Option<usize>,
    /// Gossip: this node is a lighthouse, a node that must be in the
    /// cluster; a node whose view has lost every lighthouse reports it
    /// invalid (default off).
    #[arg(long, env = "CLUSTERFUNK_LIGHTHOUSE", num_args = 0..=1, default_missing_value = "true")]
    pub lighthouse: Option<bool>,
    /// Gossip: hold member events and deliver only each member's latest,
    /// at most this long after the first, ms (Serf's CoalescePeriod; 0
    /// off, the default).
    #[arg(long, env = "CLUSTERFUNK_COALESCE_PERIOD_MS")]
    pub coalesce_period_ms: Option<u64>,
    /// Gossip: deliver held member events once none came for this long, ms
    /// (Serf's QuiescentPeriod; 0 off, the default).
    #[arg(long, env = "CLUSTERFUNK_QUIESCENT_PERIOD_MS")]
    pub quiescent_period_ms: Option<u64>,
    /// Gossip: as --coalesce-period-ms for user events sent with coalesce
    /// (Serf's UserCoalescePeriod; 0 off, the default).
    #[arg(long, env = "CLUSTERFUNK_USER_COALESCE_PERIOD_MS")]
    pub user_coalesce_period_ms: Option<u64>,
    /// Gossip: as --quiescent-period-ms for user events (Serf's
    /// UserQuiescentPeriod; 0 off, the default).
    #[arg(long, env = "CLUSTERFUNK_USER_QUIESCENT_PERIOD_MS")]
    pub user_quiescent_period_ms: Option<u64>,
    /// JSON only: warn while more broadcasts than this are queued (default
    /// 1024; 0 never).
    #[arg(skip)]
    pub queue_depth_warning: Option<usize>,
    /// JSON only: Lifeguard health score ceiling (default 8).
    #[arg(skip)]
    pub awareness_max_multiplier: Option<u32>,
    /// JSON only: a dead member still gets gossip this long, ms.
    #[arg(skip)]
    pub gossip_to_the_dead_time_ms: Option<u64>,
    /// JSON only: pace of gossip rounds while news spreads, ms; 0 turns
    /// eager rounds off (memberlist's purely periodic rounds).
    #[arg(skip)]
    pub eager_gossip_ms: Option<u64>,
    /// JSON only: connect and per-frame deadline of streams, ms.
    #[arg(skip)]
    pub stream_timeout_ms: Option<u64>,
    /// JSON only: also probe over TCP when a datagram probe times out.
    #[arg(skip)]
    pub stream_fallback_ping: Option<bool>,
    /// JSON only: most broadcasts queued.
    #[arg(skip)]
    pub max_broadcast_queue: Option<usize>,
    /// JSON only: largest user event (name + payload), bytes.
    #[arg(skip)]
    pub max_user_event_size: Option<usize>,
    /// JSON only: user events remembered for de-duplication.
    #[arg(skip)]
    pub recent_user_events: Option<usize>,
    /// JSON only: largest stream frame read, bytes.
    #[arg(skip)]
    pub max_stream_frame: Option<usize>,
    /// JSON only: bytes of stream frames buffered at once.
    #[arg(skip)]
    pub stream_memory_budget: Option<usize>,
    /// JSON only: incoming streams served at once.
    #[arg(skip)]
    pub max_incoming_streams: Option<usize>,
}

impl TuningArgs {
    /// Fills knobs unset here from `file` (flags and variables win).
    pub fn fill_from(&mut self, file: TuningArgs) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            probe_interval_ms,
            probe_timeout_ms,
            indirect_checks,
            suspicion_mult,
            suspicion_max_timeout_mult,
            gossip_interval_ms,
            gossip_nodes,
            retransmit_mult,
            push_pull_interval_ms,
            packet_size,
            lighthouse,
            coalesce_period_ms,
            quiescent_period_ms,
            user_coalesce_period_ms,
            user_quiescent_period_ms,
            queue_depth_warning,
            awareness_max_multiplier,
            gossip_to_the_dead_time_ms,
            eager_gossip_ms,
            stream_timeout_ms,
            stream_fallback_ping,
            max_broadcast_queue,
            max_user_event_size,
            recent_user_events,
            max_stream_frame,
            stream_memory_budget,
            max_incoming_streams
        );
    }

    /// Sets every knob given on `g`.
    pub fn apply(&self, g: &mut GossipConfig) {
        let ms = Duration::from_millis;
        macro_rules! set {
            ($($f:ident => $to:ident),*) => { $( if let Some(v) = self.$f { g.$to = v; } )* };
        }
        macro_rules! set_ms {
            ($($f:ident => $to:ident),*) => { $( if let Some(v) = self.$f { g.$to = ms(v); } )* };
        }
        set_ms!(
            probe_interval_ms => probe_interval,
            probe_timeout_ms => probe_timeout,
            gossip_interval_ms => gossip_interval,
            push_pull_interval_ms => push_pull_interval,
            gossip_to_the_dead_time_ms => gossip_to_the_dead_time,
            stream_timeout_ms => stream_timeout,
            coalesce_period_ms => coalesce_period,
            quiescent_period_ms => quiescent_period,
            user_coalesce_period_ms => user_coalesce_period,
            user_quiescent_period_ms => user_quiescent_period
        );
        set!(
            indirect_checks => indirect_checks,
            suspicion_mult => suspicion_mult,
            suspicion_max_timeout_mult => suspicion_max_timeout_mult,
            gossip_nodes => gossip_nodes,
            retransmit_mult => retransmit_mult,
            packet_size => packet_size,
            awareness_max_multiplier => awareness_max_multiplier,
            stream_fallback_ping => stream_fallback_ping,
            max_broadcast_queue => max_broadcast_queue,
            max_user_event_size => max_user_event_size,
            recent_user_events => recent_user_events,
            max_stream_frame => max_stream_frame,
            stream_memory_budget => stream_memory_budget,
            max_incoming_streams => max_incoming_streams,
            lighthouse => lighthouse,
            queue_depth_warning => queue_depth_warning
        );
        if let Some(v) = self.eager_gossip_ms {
            g.eager_gossip = (v > 0).then(|| ms(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_unset_knobs_keep_the_preset() {
        let mut flags = TuningArgs {
            probe_interval_ms: Some(700),
            ..TuningArgs::default()
        };
        let file: TuningArgs = serde_json::from_str(
            r#"{"probe_interval_ms": 900, "suspicion_mult": 7, "eager_gossip_ms": 0,
                "lighthouse": true, "coalesce_period_ms": 5000, "quiescent_period_ms": 500}"#,
        )
        .unwrap();
        flags.fill_from(file);
        let mut g = GossipConfig::lan("a");
        flags.apply(&mut g);
        assert!(g.lighthouse);
        assert_eq!(g.coalesce_period, Duration::from_secs(5));
        assert_eq!(g.quiescent_period, Duration::from_millis(500));
        assert_eq!(g.user_coalesce_period, Duration::ZERO);
        assert_eq!(g.probe_interval, Duration::from_millis(700));
        assert_eq!(g.suspicion_mult, 7);
        assert_eq!(g.eager_gossip, None);
        assert_eq!(g.gossip_nodes, GossipConfig::lan("a").gossip_nodes);
        assert!(serde_json::from_str::<TuningArgs>(r#"{"probe_intervl_ms": 1}"#).is_err());
    }

    #[test]
    fn raft_flags_win_over_the_file() {
        let mut flags = RaftTuningArgs {
            heartbeat_ms: Some(25),
            ..RaftTuningArgs::default()
        };
        let file: RaftTuningArgs =
            serde_json::from_str(r#"{"heartbeat_ms": 30, "election_timeout_max_ms": 150}"#)
                .unwrap();
        flags.fill_from(file);
        let mut r = RaftConfig::default();
        flags.apply(&mut r);
        assert_eq!(r.heartbeat_interval, Duration::from_millis(25));
        assert_eq!(r.election_timeout_max, Duration::from_millis(150));
        assert_eq!(r.append_timeout, RaftConfig::default().append_timeout);
        assert!(serde_json::from_str::<RaftTuningArgs>(r#"{"heartbeat": 1}"#).is_err());
    }
}
