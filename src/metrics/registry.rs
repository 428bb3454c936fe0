//! [`Metrics`]: the per-node Prometheus registry and every metric handle.

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::cumulative::{state_label, CumulativeCounter, CumulativeCounterVec, StateSet};
use super::error::MetricsError;
use super::gossip::GossipHealthMetrics;

/// Node states as the coordinator names them, exposed by
/// `clusterfunk_node_state{state=...}` from the first scrape.
pub const NODE_STATES: [&str; 6] = [
    "starting",
    "joining",
    "voting",
    "resharding",
    "operational",
    "stopping",
];

/// Node roles as the coordinator names them, exposed by
/// `clusterfunk_node_role{role=...}`.
pub const NODE_ROLES: [&str; 4] = ["leader", "voter", "learner", "non_member"];

/// Gossip member statuses exposed by `clusterfunk_gossip_members{status=...}`.
pub const GOSSIP_STATUSES: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// Reshard durations (proposal to commit): 1 ms to 10 s.
pub const RESHARD_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Liveness echo round-trip times: 50 µs to 1 s.
pub const RTT_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// One node's metrics: a private [`Registry`] whose every series carries the
/// label `node="<node id>"`, and typed handles for each metric.
///
/// Cheap to clone (one `Arc`); the fields of [`MetricSet`] are reached
/// through `Deref`, e.g. `metrics.raft_term.set(3)`. Several `Metrics` in one
/// process never share series: nothing is registered in the global default
/// registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<MetricSet>,
}

/// Every metric of a node. Reached through [`Metrics`] (`Deref`).
///
/// Gauges that mirror another component's state are `IntGauge`s that the
/// coordinator sets; counters are either incremented directly or fed from the
/// component's cumulative totals through [`CumulativeCounter`].
#[derive(Debug)]
pub struct MetricSet {
    node_id: String,
    registry: Registry,
    last_leader: Mutex<Option<String>>,
    gossip_seen_statuses: Mutex<BTreeSet<String>>,

    /// `clusterfunk_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `clusterfunk_cluster_nodes`: nodes that are members of the cluster
    /// (Raft voters and learners plus gossip-only members that are alive).
    pub cluster_nodes: IntGauge,
    /// `clusterfunk_gossip_members{status}`: gossip members by status; set
    /// with [`Metrics::set_gossip_members`].
    pub gossip_members: IntGaugeVec,
    /// `clusterfunk_raft_voters`: voters in the current Raft membership.
    pub raft_voters: IntGauge,
    /// `clusterfunk_raft_learners`: learners in the current Raft membership.
    pub raft_learners: IntGauge,
    /// `clusterfunk_raft_term`: this node's current Raft term.
    pub raft_term: IntGauge,
    /// `clusterfunk_raft_last_log_index`: index of the last log entry.
    pub raft_last_log_index: IntGauge,
    /// `clusterfunk_raft_applied_index`: index of the last applied entry.
    pub raft_applied_index: IntGauge,
    /// `clusterfunk_raft_is_leader`: 1 while this node is the Raft leader.
    pub raft_is_leader: IntGauge,
    /// `clusterfunk_raft_leader_changes_total`: leaders this node has seen
    /// come in; fed by [`Metrics::record_leader`].
    pub raft_leader_changes: IntCounter,
    /// `clusterfunk_node_state{state}`: state set of the node state machine.
    pub node_state: StateSet,
    /// `clusterfunk_node_role{role}`: state set of the node's role.
    pub node_role: StateSet,
    /// `clusterfunk_shard_map_epoch`: epoch of the last committed shard map.
    pub committed_epoch: IntGauge,
    /// `clusterfunk_shards_owned`: shards this node owns in the committed map.
    pub shards_owned: IntGauge,
    /// `clusterfunk_shards`: number of shards in the committed map.
    pub shards: IntGauge,
    /// `clusterfunk_reshard_duration_seconds`: leader only, from proposing a
    /// map to committing it.
    pub reshard_duration: Histogram,
    /// `clusterfunk_shards_moved_total`: shards that changed owner in
    /// committed maps.
    pub shards_moved: IntCounter,
    /// `clusterfunk_liveness_rtt_seconds`: echo round trips seen by the
    /// liveness checker.
    pub liveness_rtt: Histogram,
    /// `clusterfunk_liveness_transitions_total{to}`: nodes marked `dead` or
    /// `alive` again by the liveness checker.
    pub liveness_transitions: IntCounterVec,
    /// `clusterfunk_gossip_messages_sent_total{type}`.
    pub gossip_messages_sent: CumulativeCounterVec,
    /// `clusterfunk_gossip_messages_received_total{type}`.
    pub gossip_messages_received: CumulativeCounterVec,
    /// `clusterfunk_gossip_sent_bytes_total{type}`.
    pub gossip_bytes_sent: CumulativeCounterVec,
    /// `clusterfunk_gossip_received_bytes_total{type}`.
    pub gossip_bytes_received: CumulativeCounterVec,
    /// `clusterfunk_gossip_suspicions_total`: members this node suspected.
    pub gossip_suspicions: CumulativeCounter,
    /// `clusterfunk_gossip_refutations_total`: suspicions of this node that
    /// it refuted.
    pub gossip_refutations: CumulativeCounter,
    /// `clusterfunk_gossip_dropped_packets_total`: packets dropped because a
    /// queue was full.
    pub gossip_dropped_packets: CumulativeCounter,
    /// `clusterfunk_gossip_undecodable_packets_total`: packets with a bad
    /// magic, version or body.
    pub gossip_undecodable_packets: CumulativeCounter,
    /// `clusterfunk_gossip_decryption_failures_total`: packets no key in the
    /// keyring could decrypt.
    pub gossip_decryption_failures: CumulativeCounter,
    /// `clusterfunk_gossip_stream_rejections_total{reason}`: gossip stream
    /// connections or frames refused (`too_large`, `budget`, `timeout`,
    /// `busy`, `evicted_idle`).
    pub gossip_stream_rejections: CumulativeCounterVec,
    /// `clusterfunk_gossip_protocol_refused_total{kind}`: gossip frames
    /// (`frame`) and members (`member`) refused for a protocol version this
    /// node does not share.
    pub gossip_protocol_refused: CumulativeCounterVec,
    /// `clusterfunk_gossip_compressed_packets_total`: datagrams sent
    /// lz4-compressed.
    pub gossip_compressed_packets: CumulativeCounter,
    /// `clusterfunk_cidr_refused_total{listener}`: datagrams and
    /// connections dropped because their source is outside `--allow-cidr`
    /// (`gossip`, `raft`, `management`).
    pub cidr_refused: CumulativeCounterVec,
    /// `clusterfunk_liveness_bad_packets_total`: liveness datagrams dropped
    /// as malformed or unexpected (responder and checker).
    pub liveness_bad_packets: CumulativeCounter,
    /// `clusterfunk_raft_unauthenticated_calls_total`: Raft calls refused
    /// for a missing or wrong cluster credential.
    pub raft_unauthenticated_calls: CumulativeCounter,
    /// `clusterfunk_raft_admission_refusals_total{reason}`: leader only,
    /// admission checks a node failed before it could join Raft
    /// (`unreachable`, `unauthenticated`, `no_credential`, `other_cluster`,
    /// `wrong_node`, `failed`).
    pub raft_admission_refusals: IntCounterVec,
    /// `clusterfunk_raft_connections_closed_total{reason}`: Raft port
    /// connections closed by its bounds (`refused`, `evicted`, `timed_out`).
    pub raft_connections_closed: CumulativeCounterVec,
    /// `clusterfunk_management_connections_closed_total{reason}`: the same
    /// for the management port.
    pub management_connections_closed: CumulativeCounterVec,
    /// Gossip health: Lifeguard score, probe RTTs, push/pull failures,
    /// queue depth, coalesced events, lighthouse view validity.
    pub gossip_health: GossipHealthMetrics,
}

impl Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.inner
    }
}

/// Creates a metric, registers it and returns it.
fn reg<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> Result<C, MetricsError> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    reg(r, IntGauge::new(name, help)?)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntGaugeVec, MetricsError> {
    reg(r, IntGaugeVec::new(Opts::new(name, help), &[label])?)
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    reg(r, IntCounter::new(name, help)?)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntCounterVec, MetricsError> {
    reg(r, IntCounterVec::new(Opts::new(name, help), &[label])?)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, MetricsError> {
    reg(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
    )
}

impl Metrics {
    /// Creates the registry of node `node_id` with every metric registered
    /// (and, on Linux, the process collector: CPU, memory, file descriptors,
    /// threads of this process).
    pub fn new(node_id: impl Into<String>) -> Result<Metrics, MetricsError> {
        let node_id = node_id.into();
        let labels = HashMap::from([("node".to_owned(), node_id.clone())]);
        let r = Registry::new_custom(None, Some(labels))?;

        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let build_info = gauge_vec(
            &r,
            "clusterfunk_build_info",
            "Always 1; the label carries the clusterfunk version.",
            "version",
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let node_state = StateSet::new(
            gauge_vec(
                &r,
                "clusterfunk_node_state",
                "State of this node's state machine: 1 for the current state, 0 for the others.",
                "state",
            )?,
            &NODE_STATES,
        );
        let node_role = StateSet::new(
            gauge_vec(
                &r,
                "clusterfunk_node_role",
                "Role of this node: 1 for the current role, 0 for the others.",
                "role",
            )?,
            &NODE_ROLES,
        );
        let gossip_members = gauge_vec(
            &r,
            "clusterfunk_gossip_members",
            "Gossip members known to this node, by status.",
            "status",
        )?;
        for status in GOSSIP_STATUSES {
            gossip_members.with_label_values(&[status]).set(0);
        }
        let liveness_transitions = counter_vec(
            &r,
            "clusterfunk_liveness_transitions_total",
            "Nodes the liveness checker marked dead or alive again, by new state.",
            "to",
        )?;
        for to in ["dead", "alive"] {
            liveness_transitions.with_label_values(&[to]);
        }

        let set = MetricSet {
            node_id,
            last_leader: Mutex::new(None),
            gossip_seen_statuses: Mutex::new(
                GOSSIP_STATUSES.iter().map(|s| s.to_string()).collect(),
            ),
            build_info,
            cluster_nodes: gauge(
                &r,
                "clusterfunk_cluster_nodes",
                "Nodes that are members of the cluster as seen by this node.",
            )?,
            gossip_members,
            raft_voters: gauge(
                &r,
                "clusterfunk_raft_voters",
                "Voters in the Raft membership.",
            )?,
            raft_learners: gauge(
                &r,
                "clusterfunk_raft_learners",
                "Learners in the Raft membership.",
            )?,
            raft_term: gauge(
                &r,
                "clusterfunk_raft_term",
                "Current Raft term of this node.",
            )?,
            raft_last_log_index: gauge(
                &r,
                "clusterfunk_raft_last_log_index",
                "Index of the last entry in this node's Raft log.",
            )?,
            raft_applied_index: gauge(
                &r,
                "clusterfunk_raft_applied_index",
                "Index of the last Raft entry applied to this node's state machine.",
            )?,
            raft_is_leader: gauge(
                &r,
                "clusterfunk_raft_is_leader",
                "1 while this node is the Raft leader, 0 otherwise.",
            )?,
            raft_leader_changes: counter(
                &r,
                "clusterfunk_raft_leader_changes_total",
                "Times this node has seen a new Raft leader.",
            )?,
            node_state,
            node_role,
            committed_epoch: gauge(
                &r,
                "clusterfunk_shard_map_epoch",
                "Epoch of the last committed shard map.",
            )?,
            shards_owned: gauge(
                &r,
                "clusterfunk_shards_owned",
                "Shards this node owns in the last committed shard map.",
            )?,
            shards: gauge(
                &r,
                "clusterfunk_shards",
                "Number of shards in the last committed shard map.",
            )?,
            reshard_duration: histogram(
                &r,
                "clusterfunk_reshard_duration_seconds",
                "Time from proposing a shard map to committing it (leader only).",
                &RESHARD_BUCKETS,
            )?,
            shards_moved: counter(
                &r,
                "clusterfunk_shards_moved_total",
                "Shards that changed owner in committed shard maps.",
            )?,
            liveness_rtt: histogram(
                &r,
                "clusterfunk_liveness_rtt_seconds",
                "Round-trip time of liveness echo probes.",
                &RTT_BUCKETS,
            )?,
            liveness_transitions,
            gossip_messages_sent: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_messages_sent_total",
                "Gossip messages sent, by message type.",
                "type",
            )?),
            gossip_messages_received: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_messages_received_total",
                "Gossip messages received, by message type.",
                "type",
            )?),
            gossip_bytes_sent: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_sent_bytes_total",
                "Gossip bytes sent, by message type.",
                "type",
            )?),
            gossip_bytes_received: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_received_bytes_total",
                "Gossip bytes received, by message type.",
                "type",
            )?),
            gossip_suspicions: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_suspicions_total",
                "Gossip members this node started suspecting.",
            )?),
            gossip_refutations: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_refutations_total",
                "Suspicions of this node that it refuted.",
            )?),
            gossip_dropped_packets: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_dropped_packets_total",
                "Gossip packets dropped because a queue was full.",
            )?),
            gossip_undecodable_packets: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_undecodable_packets_total",
                "Gossip packets dropped because they could not be decoded.",
            )?),
            gossip_decryption_failures: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_decryption_failures_total",
                "Gossip packets that no key in the keyring could decrypt.",
            )?),
            gossip_protocol_refused: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_protocol_refused_total",
                "Gossip frames and members refused for a protocol version this node does not share, by kind.",
                "kind",
            )?),
            gossip_compressed_packets: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_gossip_compressed_packets_total",
                "Gossip datagrams sent lz4-compressed.",
            )?),
            cidr_refused: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_cidr_refused_total",
                "Datagrams and connections dropped because their source is outside --allow-cidr, by listener.",
                "listener",
            )?),
            gossip_stream_rejections: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_gossip_stream_rejections_total",
                "Gossip stream connections or frames refused by the port's bounds, by reason.",
                "reason",
            )?),
            liveness_bad_packets: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_liveness_bad_packets_total",
                "Liveness datagrams dropped as malformed or unexpected.",
            )?),
            raft_unauthenticated_calls: CumulativeCounter::new(counter(
                &r,
                "clusterfunk_raft_unauthenticated_calls_total",
                "Raft calls refused for a missing or wrong cluster credential.",
            )?),
            raft_connections_closed: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_raft_connections_closed_total",
                "Raft port connections closed by its bounds, by reason.",
                "reason",
            )?),
            management_connections_closed: CumulativeCounterVec::new(counter_vec(
                &r,
                "clusterfunk_management_connections_closed_total",
                "Management port connections closed by its bounds, by reason.",
                "reason",
            )?),
            raft_admission_refusals: counter_vec(
                &r,
                "clusterfunk_raft_admission_refusals_total",
                "Admission checks a node failed before joining Raft (leader), by reason.",
                "reason",
            )?,
            gossip_health: GossipHealthMetrics::new(&r)?,
            registry: r,
        };
        Ok(Metrics {
            inner: Arc::new(set),
        })
    }

    /// The node id carried by every series as the `node` label.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This node's registry, for applications that add their own metrics
    /// (they get the `node` label too).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Encodes every metric of this node in the Prometheus text exposition
    /// format 0.0.4.
    pub fn encode_text(&self) -> Result<String, MetricsError> {
        let families = self.registry.gather();
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf)?;
        // The encoder writes UTF-8 only (names, labels and help are `String`).
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Sets the node state (state set; names are normalised to snake_case,
    /// so the coordinator may pass its enum's `Debug` name).
    pub fn set_node_state(&self, state: &str) {
        self.node_state.set(state);
    }

    /// Sets the node role (state set, as [`set_node_state`](Self::set_node_state)).
    pub fn set_node_role(&self, role: &str) {
        self.node_role.set(role);
    }

    /// Sets the gossip member counts from a full snapshot of
    /// `(status, count)`; statuses seen before and absent now are set to 0.
    pub fn set_gossip_members<'a, I>(&self, counts: I)
    where
        I: IntoIterator<Item = (&'a str, u64)>,
    {
        let mut seen = self
            .gossip_seen_statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now = BTreeSet::new();
        for (status, count) in counts {
            let label = state_label(status);
            let value = i64::try_from(count).unwrap_or(i64::MAX);
            self.gossip_members
                .with_label_values(&[label.as_str()])
                .set(value);
            now.insert(label);
        }
        for status in seen.iter().filter(|s| !now.contains(*s)) {
            self.gossip_members
                .with_label_values(&[status.as_str()])
                .set(0);
        }
        seen.extend(now);
    }

    /// Records the leader this node currently sees. Each time it becomes a
    /// leader other than the last one seen (including the first one),
    /// `clusterfunk_raft_leader_changes_total` goes up; losing the leader
    /// (`None`) does not count. Also sets `clusterfunk_raft_is_leader`.
    pub fn record_leader(&self, leader: Option<&str>) {
        let mut last = self
            .last_leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = leader {
            if last.as_deref() != Some(id) {
                self.raft_leader_changes.inc();
                *last = Some(id.to_owned());
            }
        }
        self.raft_is_leader
            .set(i64::from(leader == Some(self.node_id.as_str())));
    }

    /// Records a committed reshard: its duration from proposal to commit and
    /// the number of shards that changed owner.
    pub fn record_reshard(&self, duration: Duration, shards_moved: u64) {
        self.reshard_duration.observe(duration.as_secs_f64());
        self.shards_moved.inc_by(shards_moved);
    }

    /// Records one liveness echo round trip.
    pub fn observe_liveness_rtt(&self, rtt: Duration) {
        self.liveness_rtt.observe(rtt.as_secs_f64());
    }

    /// Records the liveness checker marking a node alive (`true`) or dead.
    pub fn record_liveness_transition(&self, alive: bool) {
        let to = if alive { "alive" } else { "dead" };
        self.liveness_transitions.with_label_values(&[to]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    }

    #[test]
    fn two_nodes_in_one_process_do_not_mix() {
        let a = Metrics::new("node-a").unwrap();
        let b = Metrics::new("node-b").unwrap();
        a.raft_term.set(7);
        b.raft_term.set(3);
        a.gossip_suspicions.observe_total(5);

        let ta = a.encode_text().unwrap();
        let tb = b.encode_text().unwrap();
        let la = series_lines(&ta);
        let lb = series_lines(&tb);
        assert!(!la.is_empty() && !lb.is_empty());
        assert!(la.iter().all(|l| l.contains("node=\"node-a\"")), "{ta}");
        assert!(lb.iter().all(|l| l.contains("node=\"node-b\"")), "{tb}");
        assert!(!ta.contains("node-b") && !tb.contains("node-a"));
        assert!(
            ta.contains("clusterfunk_raft_term{node=\"node-a\"} 7"),
            "{ta}"
        );
        assert!(
            tb.contains("clusterfunk_raft_term{node=\"node-b\"} 3"),
            "{tb}"
        );
        assert!(ta.contains("clusterfunk_gossip_suspicions_total{node=\"node-a\"} 5"));
        assert!(tb.contains("clusterfunk_gossip_suspicions_total{node=\"node-b\"} 0"));
    }

    #[test]
    fn same_node_id_twice_is_fine() {
        // Two registries, not the global one: no "duplicate metrics" error.
        let a = Metrics::new("n").unwrap();
        let b = Metrics::new("n").unwrap();
        a.shards.set(1);
        assert_eq!(b.shards.get(), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed_on_linux() {
        let m = Metrics::new("p").unwrap();
        let text = m.encode_text().unwrap();
        assert!(
            text.contains("process_resident_memory_bytes{node=\"p\"}"),
            "{text}"
        );
        assert!(
            text.contains("process_cpu_seconds_total{node=\"p\"}"),
            "{text}"
        );
    }

    #[test]
    fn leader_changes_count_new_leaders_only() {
        let m = Metrics::new("n1").unwrap();
        m.record_leader(None);
        assert_eq!(m.raft_leader_changes.get(), 0);
        m.record_leader(Some("n2"));
        m.record_leader(Some("n2"));
        assert_eq!(m.raft_leader_changes.get(), 1);
        assert_eq!(m.raft_is_leader.get(), 0);
        m.record_leader(None);
        m.record_leader(Some("n2"));
        assert_eq!(m.raft_leader_changes.get(), 1);
        m.record_leader(Some("n1"));
        assert_eq!(m.raft_leader_changes.get(), 2);
        assert_eq!(m.raft_is_leader.get(), 1);
    }

    #[test]
    fn gossip_members_snapshot_zeroes_missing_statuses() {
        let m = Metrics::new("n").unwrap();
        m.set_gossip_members([("Alive", 4), ("Suspect", 1)]);
        assert_eq!(m.gossip_members.with_label_values(&["alive"]).get(), 4);
        assert_eq!(m.gossip_members.with_label_values(&["suspect"]).get(), 1);
        m.set_gossip_members([("alive", 5)]);
        assert_eq!(m.gossip_members.with_label_values(&["suspect"]).get(), 0);
        assert_eq!(m.gossip_members.with_label_values(&["alive"]).get(), 5);
    }

    #[test]
    fn node_state_is_a_state_set() {
        let m = Metrics::new("n").unwrap();
        m.set_node_state("Operational");
        let text = m.encode_text().unwrap();
        assert!(
            text.contains("clusterfunk_node_state{node=\"n\",state=\"operational\"} 1")
                || text.contains("clusterfunk_node_state{state=\"operational\",node=\"n\"} 1"),
            "{text}"
        );
        let ones = text
            .lines()
            .filter(|l| l.starts_with("clusterfunk_node_state{") && l.ends_with(" 1"))
            .count();
        assert_eq!(ones, 1, "{text}");
        let all = text
            .lines()
            .filter(|l| l.starts_with("clusterfunk_node_state{"))
            .count();
        assert_eq!(all, NODE_STATES.len());
    }

    #[test]
    fn reshard_and_liveness_helpers_record() {
        let m = Metrics::new("n").unwrap();
        m.record_reshard(Duration::from_millis(20), 3);
        m.observe_liveness_rtt(Duration::from_micros(300));
        m.record_liveness_transition(false);
        m.record_liveness_transition(true);
        m.record_liveness_transition(false);
        assert_eq!(m.reshard_duration.get_sample_count(), 1);
        assert_eq!(m.shards_moved.get(), 3);
        assert_eq!(m.liveness_rtt.get_sample_count(), 1);
        assert_eq!(m.liveness_transitions.with_label_values(&["dead"]).get(), 2);
        assert_eq!(
            m.liveness_transitions.with_label_values(&["alive"]).get(),
            1
        );
    }
}
