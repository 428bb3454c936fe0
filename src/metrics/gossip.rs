//! Gossip health: Lifeguard's local health score, probe round-trip times,
//! push/pull failures, broadcast queue depth, coalesced events and
//! lighthouse-based view validity, as metrics ([`GossipHealthMetrics`]) and
//! as the `gossip` part of `/status` ([`GossipHealthView`]). The
//! coordinator fills a [`GossipHealthView`] from the gossip layer's stats;
//! this file knows nothing of that layer.

use prometheus::{GaugeVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use super::cumulative::CumulativeCounter;
use super::error::MetricsError;

/// A node's gossip health, as `/status` shows it under `gossip`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GossipHealthView {
    /// Lifeguard local health score: 0 is healthy; probe interval and
    /// timeout are multiplied by `score + 1` (memberlist's
    /// `GetHealthScore`). Rises when this node's own probes go unanswered.
    pub health_score: u32,
    /// Direct probe round-trip times measured.
    pub probe_rtt_count: u64,
    /// Most recent direct probe RTT, ms.
    pub probe_rtt_last_ms: f64,
    /// Mean direct probe RTT, ms.
    pub probe_rtt_mean_ms: f64,
    /// Largest direct probe RTT, ms.
    pub probe_rtt_max_ms: f64,
    /// Probes that ended with no ack (the target became suspect).
    pub probe_failures: u64,
    /// Push/pull exchanges completed.
    pub push_pulls: u64,
    /// Push/pull exchanges that failed.
    pub push_pull_failures: u64,
    /// Broadcasts queued now.
    pub broadcast_queue: u64,
    /// The depth above which the node warns (0: never).
    pub broadcast_queue_warning: u64,
    /// Events merged away by coalescing.
    pub events_coalesced: u64,
    /// False when lighthouses are known and none is alive in this node's
    /// view: it is cut off from the cluster that matters.
    pub view_valid: bool,
    /// Lighthouses known.
    pub lighthouses_known: u64,
    /// Lighthouses alive or suspect.
    pub lighthouses_alive: u64,
}

impl Default for GossipHealthView {
    fn default() -> Self {
        GossipHealthView {
            health_score: 0,
            probe_rtt_count: 0,
            probe_rtt_last_ms: 0.0,
            probe_rtt_mean_ms: 0.0,
            probe_rtt_max_ms: 0.0,
            probe_failures: 0,
            push_pulls: 0,
            push_pull_failures: 0,
            broadcast_queue: 0,
            broadcast_queue_warning: 0,
            events_coalesced: 0,
            view_valid: true,
            lighthouses_known: 0,
            lighthouses_alive: 0,
        }
    }
}

/// The gossip health metrics of one node.
#[derive(Debug)]
pub struct GossipHealthMetrics {
    /// `clusterfunk_gossip_health_score`: Lifeguard local health score.
    pub health_score: IntGauge,
    /// `clusterfunk_gossip_probe_rtt_seconds{stat}`: direct probe RTT
    /// (`last`, `mean`, `max`).
    pub probe_rtt: GaugeVec,
    /// `clusterfunk_gossip_probe_failures_total`.
    pub probe_failures: CumulativeCounter,
    /// `clusterfunk_gossip_push_pulls_total`.
    pub push_pulls: CumulativeCounter,
    /// `clusterfunk_gossip_push_pull_failures_total`.
    pub push_pull_failures: CumulativeCounter,
    /// `clusterfunk_gossip_broadcast_queue_depth`.
    pub queue_depth: IntGauge,
    /// `clusterfunk_gossip_events_coalesced_total`.
    pub events_coalesced: CumulativeCounter,
    /// `clusterfunk_gossip_view_valid`: 1 while a lighthouse is alive in
    /// this node's view (or none is known), else 0.
    pub view_valid: IntGauge,
    /// `clusterfunk_gossip_lighthouses{state}`: `known` and `alive`.
    pub lighthouses: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<CumulativeCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(CumulativeCounter::new(c))
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl GossipHealthMetrics {
    /// Registers every gossip health metric in `r`.
    pub fn new(r: &Registry) -> Result<Self, MetricsError> {
        let probe_rtt = GaugeVec::new(
            Opts::new(
                "clusterfunk_gossip_probe_rtt_seconds",
                "Round-trip time of direct gossip probes: last, mean and max.",
            ),
            &["stat"],
        )?;
        r.register(Box::new(probe_rtt.clone()))?;
        let lighthouses = IntGaugeVec::new(
            Opts::new(
                "clusterfunk_gossip_lighthouses",
                "Lighthouse nodes this node knows of (known) and sees alive (alive).",
            ),
            &["state"],
        )?;
        r.register(Box::new(lighthouses.clone()))?;
        let m = GossipHealthMetrics {
            health_score: gauge(
                r,
                "clusterfunk_gossip_health_score",
                "Lifeguard local health score (0 healthy; probe timing is scaled by score + 1).",
            )?,
            probe_rtt,
            probe_failures: counter(
                r,
                "clusterfunk_gossip_probe_failures_total",
                "Gossip probes that got no ack (the target became suspect).",
            )?,
            push_pulls: counter(
                r,
                "clusterfunk_gossip_push_pulls_total",
                "Gossip push/pull state exchanges completed.",
            )?,
            push_pull_failures: counter(
                r,
                "clusterfunk_gossip_push_pull_failures_total",
                "Gossip push/pull state exchanges that failed.",
            )?,
            queue_depth: gauge(
                r,
                "clusterfunk_gossip_broadcast_queue_depth",
                "Gossip broadcasts queued now.",
            )?,
            events_coalesced: counter(
                r,
                "clusterfunk_gossip_events_coalesced_total",
                "Member and user events merged away by coalescing.",
            )?,
            view_valid: gauge(
                r,
                "clusterfunk_gossip_view_valid",
                "1 while a lighthouse is alive in this node's gossip view (or none is known), else 0.",
            )?,
            lighthouses,
        };
        for stat in ["last", "mean", "max"] {
            m.probe_rtt.with_label_values(&[stat]).set(0.0);
        }
        for state in ["known", "alive"] {
            m.lighthouses.with_label_values(&[state]).set(0);
        }
        m.view_valid.set(1);
        Ok(m)
    }

    /// Sets every series from `h`.
    pub fn observe(&self, h: &GossipHealthView) {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.health_score.set(i64::from(h.health_score));
        for (stat, ms) in [
            ("last", h.probe_rtt_last_ms),
            ("mean", h.probe_rtt_mean_ms),
            ("max", h.probe_rtt_max_ms),
        ] {
            self.probe_rtt.with_label_values(&[stat]).set(ms / 1000.0);
        }
        self.probe_failures.observe_total(h.probe_failures);
        self.push_pulls.observe_total(h.push_pulls);
        self.push_pull_failures.observe_total(h.push_pull_failures);
        self.queue_depth.set(int(h.broadcast_queue));
        self.events_coalesced.observe_total(h.events_coalesced);
        self.view_valid.set(i64::from(h.view_valid));
        self.lighthouses
            .with_label_values(&["known"])
            .set(int(h.lighthouses_known));
        self.lighthouses
            .with_label_values(&["alive"])
            .set(int(h.lighthouses_alive));
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::{GossipHealthView, Metrics};

    /// The value of metric `name`'s series carrying `label` (label order
    /// in the text is not fixed).
    fn value(text: &str, name: &str, label: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn the_series_exist_from_the_start_and_follow_the_view() {
        let m = Metrics::new("n1").expect("metrics");
        let text = m.encode_text().expect("text");
        assert_eq!(
            value(&text, "clusterfunk_gossip_health_score", "node="),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "clusterfunk_gossip_view_valid", "node="),
            Some(1.0)
        );
        m.gossip_health.observe(&GossipHealthView {
            health_score: 3,
            probe_rtt_last_ms: 2.5,
            push_pull_failures: 4,
            broadcast_queue: 17,
            view_valid: false,
            lighthouses_known: 2,
            ..GossipHealthView::default()
        });
        let text = m.encode_text().expect("text");
        assert_eq!(
            value(&text, "clusterfunk_gossip_health_score", "node="),
            Some(3.0)
        );
        assert_eq!(
            value(&text, "clusterfunk_gossip_view_valid", "node="),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                "clusterfunk_gossip_push_pull_failures_total",
                "node="
            ),
            Some(4.0)
        );
        assert_eq!(
            value(&text, "clusterfunk_gossip_broadcast_queue_depth", "node="),
            Some(17.0)
        );
        assert_eq!(
            value(
                &text,
                "clusterfunk_gossip_probe_rtt_seconds",
                "stat=\"last\""
            ),
            Some(0.0025)
        );
        assert_eq!(
            value(&text, "clusterfunk_gossip_lighthouses", "state=\"known\""),
            Some(2.0)
        );
    }
}
