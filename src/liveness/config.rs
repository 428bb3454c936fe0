//! Checker configuration.

use std::time::Duration;

/// Why a [`LivenessConfig`] was rejected by [`LivenessConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `interval` is zero.
    #[error("liveness interval must be greater than zero")]
    ZeroInterval,
    /// `retries` is zero.
    #[error("liveness retries must be at least 1")]
    ZeroRetries,
    /// `deadline_floor` is zero or longer than `interval`.
    #[error("liveness deadline floor {floor:?} must be in (0, interval {interval:?}]")]
    DeadlineFloor {
        /// The configured floor.
        floor: Duration,
        /// The configured interval.
        interval: Duration,
    },
    /// `rtt_multiplier` is not a finite number >= 1.
    #[error("liveness rtt multiplier must be a finite number >= 1")]
    RttMultiplier,
    /// `rtt_alpha` is not in (0, 1].
    #[error("liveness rtt alpha must be in (0, 1]")]
    RttAlpha,
    /// A channel capacity or batch size is zero.
    #[error("liveness {0} must be greater than zero")]
    ZeroCapacity(&'static str),
}

/// Settings of a [`crate::liveness::Checker`].
///
/// Detection time: a target that stops answering is reported dead at most
/// `retries × interval + deadline` after it stopped (up to one interval until
/// the next probe, then `retries - 1` more intervals, then the last probe's
/// deadline), and `(retries - 1) × interval + deadline` after the first probe
/// it did not answer. At the defaults on a LAN (deadline = floor) that is
/// 270 ms and 220 ms: as many missed probes as a 100 ms interval with 3
/// retries would take, so a stall must last as long to raise a false alarm,
/// while a crashed process (port unreachable) is found within one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct LivenessConfig {
    /// Time between two probes to the same target. Default 50 ms.
    pub interval: Duration,
    /// Consecutive missed replies after which a target is reported dead.
    /// Default 5.
    pub retries: u32,
    /// Smallest reply deadline. A probe's deadline is
    /// `clamp(rtt_multiplier × average RTT, deadline_floor, interval)`, or
    /// `interval` while the target has no RTT sample yet. A reply after its
    /// deadline counts as a miss (its RTT is still measured, so a slower path
    /// raises the deadline). Default 20 ms: far above LAN round trips, small
    /// enough to keep detection near 250 ms.
    pub deadline_floor: Duration,
    /// Multiplier on the average RTT for the deadline. Default 4.0.
    pub rtt_multiplier: f64,
    /// Weight of a new RTT sample in the moving average (EWMA), as in TCP's
    /// SRTT. The first sample sets the average. Default 0.125.
    pub rtt_alpha: f64,
    /// Capacity of the event channel. When the consumer falls behind, events
    /// are dropped and counted (probing never waits); the `watch` state stays
    /// exact. Default 1024.
    pub event_capacity: usize,
    /// Capacity of the command channel between handles and the checker task.
    /// Default 64.
    pub command_capacity: usize,
    /// Probes sent back to back; a round with more targets is sent in
    /// batches `send_pace` apart, so the replies of one batch are read before
    /// the next batch goes out and a large round never overflows the socket's
    /// receive buffer (about 200 small datagrams at Linux defaults).
    /// Default 64.
    pub send_batch: usize,
    /// Consecutive "port unreachable" reports for this checker's own
    /// probes (no reply in between) after which a target is reported dead at
    /// once, without waiting for `retries` deadlines. A report counts as a
    /// miss; below this number the target is probed again at once, so a
    /// crashed process on a live host is found about one round trip after
    /// the next probe. Zero ignores the reports (missed replies alone
    /// decide). Such reports are unauthenticated hints: they only speed up
    /// a verdict that never moves a shard by itself (see the module docs).
    /// Default 2.
    pub refused_retries: u32,
    /// Gap between two batches of one round; zero sends the whole round at
    /// once. A round of `n` targets takes about `n / send_batch × send_pace`
    /// to send, which must stay well under `interval` (the checker counts
    /// `round_overruns` otherwise). Default 1 ms: 6,400 targets per 100 ms.
    pub send_pace: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            interval: Duration::from_millis(50),
            retries: 5,
            deadline_floor: Duration::from_millis(20),
            rtt_multiplier: 4.0,
            rtt_alpha: 0.125,
            event_capacity: 1024,
            command_capacity: 64,
            send_batch: 64,
            send_pace: Duration::from_millis(1),
            refused_retries: 2,
        }
    }
}

impl LivenessConfig {
    /// Checks the settings and returns them unchanged if they are usable.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::ZeroInterval);
        }
        if self.retries == 0 {
            return Err(ConfigError::ZeroRetries);
        }
        if self.deadline_floor.is_zero() || self.deadline_floor > self.interval {
            return Err(ConfigError::DeadlineFloor {
                floor: self.deadline_floor,
                interval: self.interval,
            });
        }
        if !self.rtt_multiplier.is_finite() || self.rtt_multiplier < 1.0 {
            return Err(ConfigError::RttMultiplier);
        }
        if !(self.rtt_alpha > 0.0 && self.rtt_alpha <= 1.0) {
            return Err(ConfigError::RttAlpha);
        }
        if self.event_capacity == 0 {
            return Err(ConfigError::ZeroCapacity("event_capacity"));
        }
        if self.command_capacity == 0 {
            return Err(ConfigError::ZeroCapacity("command_capacity"));
        }
        if self.send_batch == 0 {
            return Err(ConfigError::ZeroCapacity("send_batch"));
        }
        Ok(self)
    }

    /// Reply deadline for a target with the given average RTT (see
    /// [`LivenessConfig::deadline_floor`]).
    pub fn deadline_for(&self, avg_rtt: Option<Duration>) -> Duration {
        match avg_rtt {
            None => self.interval,
            Some(rtt) => rtt
                .mul_f64(self.rtt_multiplier)
                .clamp(self.deadline_floor, self.interval),
        }
    }

    /// Longest time from the first unanswered probe to the dead report, for a
    /// target whose deadline is `deadline`: `(retries - 1) × interval +
    /// deadline`. Add up to one `interval` when measuring from the moment the
    /// target stopped.
    pub fn detection_bound(&self, deadline: Duration) -> Duration {
        self.interval * self.retries.saturating_sub(1) + deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = LivenessConfig::default().validate().expect("defaults");
        assert_eq!(c.interval, Duration::from_millis(50));
        assert_eq!(c.retries, 5);
        assert_eq!(
            c.detection_bound(c.deadline_floor),
            Duration::from_millis(220)
        );
    }

    #[test]
    fn rejects_bad_values() {
        let d = LivenessConfig::default;
        let bad = [
            (
                LivenessConfig {
                    interval: Duration::ZERO,
                    ..d()
                },
                ConfigError::ZeroInterval,
            ),
            (
                LivenessConfig { retries: 0, ..d() },
                ConfigError::ZeroRetries,
            ),
            (
                LivenessConfig {
                    rtt_multiplier: f64::NAN,
                    ..d()
                },
                ConfigError::RttMultiplier,
            ),
            (
                LivenessConfig {
                    rtt_alpha: 0.0,
                    ..d()
                },
                ConfigError::RttAlpha,
            ),
            (
                LivenessConfig {
                    event_capacity: 0,
                    ..d()
                },
                ConfigError::ZeroCapacity("event_capacity"),
            ),
        ];
        for (cfg, want) in bad {
            assert_eq!(cfg.validate(), Err(want));
        }
        let floor_too_big = LivenessConfig {
            deadline_floor: Duration::from_millis(200),
            ..d()
        };
        assert!(matches!(
            floor_too_big.validate(),
            Err(ConfigError::DeadlineFloor { .. })
        ));
    }

    #[test]
    fn deadline_adapts_within_floor_and_interval() {
        let c = LivenessConfig::default();
        assert_eq!(c.deadline_for(None), c.interval);
        assert_eq!(
            c.deadline_for(Some(Duration::from_micros(100))),
            c.deadline_floor
        );
        assert_eq!(
            c.deadline_for(Some(Duration::from_millis(10))),
            Duration::from_millis(40)
        );
        assert_eq!(c.deadline_for(Some(Duration::from_secs(1))), c.interval);
    }
}
