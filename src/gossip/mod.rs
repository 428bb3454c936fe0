//! SWIM membership with Lifeguard, Serf-style tags and user events.
//!
//! Every node, member or client, learns who is in the cluster, whether each
//! is alive, and which endpoints each publishes as tags (`ep.<name>` →
//! `host:port`). Failure detection is SWIM (probe one member per interval in
//! a shuffled round-robin, then ask `indirect_checks` others with nacks, then
//! suspect) with Lifeguard's refinements (suspicion timeouts that shrink with
//! independent confirmations, local health awareness); state changes
//! piggyback on probes and on periodic gossip from a transmit-limited queue;
//! a push/pull of the full state over a stream runs on join and
//! periodically, skipped when the membership checksums agree.
//!
//! Where it departs from memberlist, and why: news triggers gossip rounds
//! at once (`eager_gossip`) rather than on the next tick; relays send nacks
//! early enough to reach the prober within its probe interval (memberlist's
//! LAN values make them arrive just too late, wrongly hurting the prober's
//! health); a probe ends as soon as every helper has nacked; members others
//! suspect are probed next; and, as in ringpop, pings and acks carry the
//! membership checksum so a node with nothing left to gossip repairs a
//! divergent view with a push/pull at once. As in memberlist, a probe that
//! times out is also tried over a stream (TCP), so a member whose datagrams
//! are lost is not declared failed. Not built: name-conflict resolution.
//!
//! Serf's event coalescing ([`GossipConfig::coalesce_period`] and the user
//! event periods, `coalesce`) and Seafoam's lighthouses
//! ([`GossipConfig::lighthouse`], [`ViewValidity`]) sit in the core too:
//! `coalesce` and `lighthouse` are plain structs the core feeds.
//!
//! Versions: every node advertises the protocol range it speaks (the
//! `cf.proto` tag, memberlist's min/max/current); peers talk in the
//! highest version both speak, large frames are lz4-compressed between
//! peers that speak version 2, and a node with no version in common is
//! refused with a log line and a counter (see [`version`]).
//!
//! Layout: `codec` frames messages (magic, version, type; compound
//! datagrams; AES-256-GCM envelope with a [`Keyring`]; `compress` for lz4
//! bodies), `core` is the sans-IO
//! state machine (`core/receive` handles messages, `core/timers` the
//! probe cycle and rounds, `core/commands` the handle's requests), `actor` runs it on tokio behind the [`Gossip`] handle,
//! `pushpull` is the stream exchange, [`transport`] holds the UDP/TCP and
//! in-memory networks, [`node`] the standalone runner behind
//! `clusterfunk gossip-node`.
//!
//! Imports: std, tokio, prost (its generated types stay private here),
//! serde, rand, aes-gcm, lz4_flex, tracing, and the crate's plain `actor`
//! and `cidr` helpers. Independent of `raft` and `liveness`: it
//! reports only through channels (`watch` for the member list, bounded
//! `mpsc` per subscriber for events).

mod actor;
mod coalesce;
mod codec;
mod compress;
mod config;
mod core;
mod error;
mod keyring;
mod lighthouse;
mod member;
pub mod node;
mod pushpull;
mod queue;
mod snapshot;
mod stats;
mod suspicion;
mod tags;
pub mod transport;
pub mod version;

#[allow(clippy::all, missing_docs)]
mod pb {
    tonic::include_proto!("clusterfunk.v1.gossip");
}

pub use actor::Gossip;
pub use config::GossipConfig;
pub use error::{CodecError, ConfigError, GossipError, TagsError};
pub use keyring::{fingerprint, KeyOp, Keyring};
pub use lighthouse::{ViewValidity, LIGHTHOUSE_TAG};
pub use member::{Member, MemberEvent, MemberEventKind, MemberStatus, UserEvent};
pub use stats::{GossipStats, RttStats, Traffic};
pub use tags::{encoded_tags_size, endpoint_key, endpoints, ENDPOINT_PREFIX, MAX_TAGS_SIZE};
pub use transport::{MemNetwork, MemTransport, NetTransport, Transport};
pub use version::{ProtocolRange, PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_TAG};
