//! Protocol versions, as memberlist and Serf carry them: every node speaks
//! a range of versions `min..=max` and sends at most `cur`. The range is
//! advertised in the reserved tag [`PROTOCOL_TAG`] (`"min-max/cur"`), so it
//! travels with every `Alive`, push/pull state and snapshot, and nodes that
//! predate ranges relay it untouched. A member without the tag was built
//! before ranges existed and speaks exactly version 1.
//!
//! Every frame's header carries the version it is written in. A node sends
//! a known peer `min(cur, peer.max)` (at least both minimums), and an
//! unknown address its own `min`, so a node that only speaks version 1
//! still understands everything sent to it. A frame whose version is
//! outside the receiver's range is refused, counted and logged; a member
//! whose advertised range does not overlap ours is refused too (never
//! added), so a build that cannot talk to this one stays out of the
//! membership instead of splitting it silently.
//!
//! Versions: 1 is the original wire format; 2 adds lz4-compressed frames
//! ([`COMPRESSION_VERSION`]), used only towards peers that speak 2.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use super::error::ConfigError;

/// Lowest protocol version this build speaks.
pub const PROTOCOL_MIN: u8 = 1;
/// Highest protocol version this build speaks (and sends by default).
pub const PROTOCOL_MAX: u8 = 2;
/// The reserved tag carrying a node's range: `"min-max/cur"`, e.g. `1-2/2`.
pub const PROTOCOL_TAG: &str = "cf.proto";
/// First version whose frames may be compressed.
pub(crate) const COMPRESSION_VERSION: u8 = 2;

/// Distinct senders a node remembers having warned about (beyond it the
/// refusals are still counted, but logged at debug level only).
const MAX_WARNED: usize = 256;

/// The protocol versions a node speaks (memberlist's `pmin`, `pmax`,
/// `pcur`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolRange {
    /// Lowest version understood.
    pub min: u8,
    /// Highest version understood.
    pub max: u8,
    /// Highest version sent (`min..=max`): lower it during a rolling
    /// upgrade until every node runs a build that understands more.
    pub cur: u8,
}

impl Default for ProtocolRange {
    /// This build's range, sending its newest version.
    fn default() -> Self {
        ProtocolRange {
            min: PROTOCOL_MIN,
            max: PROTOCOL_MAX,
            cur: PROTOCOL_MAX,
        }
    }
}

impl fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}/{}", self.min, self.max, self.cur)
    }
}

impl std::str::FromStr for ProtocolRange {
    type Err = ConfigError;

    /// Parses `"min-max/cur"` (or `"min-max"`, sending `max`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::ProtocolRange(s.to_string());
        let (range, cur) = match s.split_once('/') {
            Some((r, c)) => (r, Some(c)),
            None => (s, None),
        };
        let (min, max) = range.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| t.trim().parse::<u8>().map_err(|_| bad());
        let (min, max) = (num(min)?, num(max)?);
        let cur = match cur {
            Some(c) => num(c)?,
            None => max,
        };
        ProtocolRange { min, max, cur }.validate()
    }
}

impl ProtocolRange {
    /// A member that advertises no range: built before ranges, it speaks
    /// version 1 only.
    pub const LEGACY: ProtocolRange = ProtocolRange {
        min: 1,
        max: 1,
        cur: 1,
    };

    /// This build's range, sending `cur` (a rolling upgrade's first step:
    /// new binaries that still send what the old ones understand).
    pub fn sending(cur: u8) -> Result<Self, ConfigError> {
        if !(PROTOCOL_MIN..=PROTOCOL_MAX).contains(&cur) {
            return Err(ConfigError::ProtocolVersion {
                version: cur,
                min: PROTOCOL_MIN,
                max: PROTOCOL_MAX,
            });
        }
        Ok(ProtocolRange {
            cur,
            ..Self::default()
        })
    }

    /// Checks `1 <= min <= cur <= max`.
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.min == 0 || self.min > self.cur || self.cur > self.max {
            return Err(ConfigError::ProtocolRange(self.to_string()));
        }
        Ok(self)
    }

    /// The range `tags` advertise: [`Self::LEGACY`] without the tag,
    /// `None` when the tag does not parse.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        match tags.get(PROTOCOL_TAG) {
            None => Some(Self::LEGACY),
            Some(v) => v.parse().ok(),
        }
    }

    /// Whether a frame written in version `v` is understood.
    pub(crate) fn accepts(&self, v: u8) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// Whether this node and `peer` can talk: what each sends the other
    /// lies in the other's range.
    pub fn compatible(&self, peer: &ProtocolRange) -> bool {
        peer.accepts(self.send_version(Some(peer))) && self.accepts(peer.send_version(Some(self)))
    }

    /// The version of frames sent to `peer` (`None`: an address whose
    /// range is not known yet, sent our lowest version). Never above
    /// `cur`: when that is below what `peer` accepts, the two are not
    /// [`compatible`](Self::compatible).
    pub(crate) fn send_version(&self, peer: Option<&ProtocolRange>) -> u8 {
        match peer {
            None => self.min,
            Some(p) => self.cur.min(p.max).max(self.min),
        }
    }

    /// Adds the range tag to `tags` (a node's own tags).
    pub(crate) fn advertise(&self, tags: &mut BTreeMap<String, String>) {
        tags.insert(PROTOCOL_TAG.to_string(), self.to_string());
    }
}

/// What happened to input refused for its protocol version, and who was
/// already warned about, so the log names each offender once.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    warned_addrs: HashSet<SocketAddr>,
    warned_members: HashSet<String>,
    /// Frames written in a version outside our range.
    pub(crate) frames: u64,
    /// Members whose advertised range does not overlap ours.
    pub(crate) members: u64,
}

impl Refusals {
    /// A frame of version `v` from `from` was refused.
    pub(crate) fn frame(&mut self, node: &str, own: &ProtocolRange, from: SocketAddr, v: u8) {
        self.frames += 1;
        if self.warned_addrs.len() < MAX_WARNED && self.warned_addrs.insert(from) {
            tracing::warn!(
                node,
                peer = %from,
                version = v,
                speaks = %own,
                "refused gossip from a node speaking protocol version {v}: this node speaks \
                 {}..={}; run builds whose version ranges overlap (upgrade the older node)",
                own.min,
                own.max
            );
        } else {
            tracing::debug!(node, peer = %from, version = v, "refused frame of another protocol version");
        }
    }

    /// Whether member `name` with `tags` may be added or updated: its
    /// advertised range must be readable and compatible with `own`.
    /// Refusals are counted and logged.
    pub(crate) fn admit(
        &mut self,
        node: &str,
        own: &ProtocolRange,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> bool {
        let theirs = ProtocolRange::from_tags(tags);
        if theirs.is_some_and(|r| own.compatible(&r)) {
            return true;
        }
        self.member(node, own, name, theirs);
        false
    }

    /// Member `name` advertising `theirs` (`None`: unparsable) was refused.
    fn member(
        &mut self,
        node: &str,
        own: &ProtocolRange,
        name: &str,
        theirs: Option<ProtocolRange>,
    ) {
        self.members += 1;
        let theirs = theirs.map_or_else(|| "unreadable".to_string(), |r| r.to_string());
        if self.warned_members.len() < MAX_WARNED && self.warned_members.insert(name.to_string()) {
            tracing::warn!(
                node,
                member = name,
                theirs = %theirs,
                ours = %own,
                "refused member {name}: it speaks protocol {theirs}, this node {own}, and no \
                 version is understood by both; it is not added to the membership"
            );
        } else {
            tracing::debug!(
                node,
                member = name,
                "refused member of an incompatible protocol"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u8, max: u8, cur: u8) -> ProtocolRange {
        ProtocolRange { min, max, cur }
    }

    #[test]
    fn parse_print_and_validate() {
        assert_eq!("1-2/2".parse::<ProtocolRange>().unwrap(), r(1, 2, 2));
        assert_eq!("1-3".parse::<ProtocolRange>().unwrap(), r(1, 3, 3));
        assert_eq!(r(1, 2, 1).to_string(), "1-2/1");
        for bad in ["", "2", "2-1", "0-1/1", "1-2/3", "a-b/c", "1-2/0"] {
            assert!(bad.parse::<ProtocolRange>().is_err(), "{bad:?}");
        }
        assert!(ProtocolRange::sending(PROTOCOL_MAX + 1).is_err());
        assert_eq!(ProtocolRange::sending(1).unwrap().cur, 1);
    }

    #[test]
    fn missing_tag_means_version_one_only() {
        let mut tags = BTreeMap::new();
        assert_eq!(ProtocolRange::from_tags(&tags), Some(ProtocolRange::LEGACY));
        ProtocolRange::default().advertise(&mut tags);
        assert_eq!(
            ProtocolRange::from_tags(&tags),
            Some(ProtocolRange::default())
        );
        tags.insert(PROTOCOL_TAG.into(), "junk".into());
        assert_eq!(ProtocolRange::from_tags(&tags), None);
    }

    #[test]
    fn negotiation_and_compatibility() {
        let new = ProtocolRange::default();
        let old = ProtocolRange::LEGACY;
        // An old node gets version 1 frames; two new nodes use 2.
        assert_eq!(new.send_version(Some(&old)), 1);
        assert_eq!(new.send_version(Some(&new)), 2);
        assert_eq!(new.send_version(None), 1);
        assert!(new.compatible(&old) && old.compatible(&new));
        // A new binary held at version 1 never sends 2.
        let held = ProtocolRange::sending(1).unwrap();
        assert_eq!(held.send_version(Some(&new)), 1);
        // A future build that dropped version 1 still talks to this one,
        // not to the old one.
        let future = r(2, 3, 3);
        assert!(future.compatible(&new) && new.compatible(&future));
        assert_eq!(new.send_version(Some(&future)), 2);
        assert_eq!(future.send_version(Some(&new)), 2);
        assert!(!future.compatible(&old) && !old.compatible(&future));
        // Held at a version the future build dropped: no common version.
        assert!(!held.compatible(&future));
        // Disjoint ranges never talk.
        let far = r(3, 3, 3);
        assert!(!far.compatible(&new) && !new.compatible(&far));
        assert!(!new.accepts(far.send_version(None)));
    }
}
