//! Fast failure detection by UDP echo: every node runs a [`Responder`], the
//! leader runs one [`Checker`] that probes every target each `interval` and
//! reports a target dead after `retries` consecutive missed replies (about
//! 300 ms at the defaults, where gossip takes seconds). This module imports
//! only std, tokio, tracing, thiserror and rand; it knows nothing of gossip or
//! raft and reports through channels: [`LivenessEvent`]s on a bounded `mpsc`
//! (dropped and counted when the consumer lags, so probing never stalls) and
//! the status of every target on a `tokio::sync::watch` ([`LivenessSnapshot`]).
//!
//! # Design
//!
//! - Wire ([`wire`]): one 32-byte packet, magic + version + type (probe or
//!   reply) + checker nonce + sequence + send timestamp. The responder flips
//!   the type and sends it back; everything else is counted and dropped.
//! - [`CheckerCore`] is the whole decision logic as a plain struct (time is a
//!   parameter), tested without sockets. The [`Checker`] task wraps it: one
//!   task and one socket for all targets, buffers reused, targets in a slab
//!   with an address map, so steady-state probing allocates nothing. A
//!   round is sent in batches (`send_batch`, `send_pace` apart) and the loop
//!   reads replies before sending more, so 1,000 targets never overflow the
//!   socket's receive buffer; a flood of datagrams still cannot stall the
//!   timers or the sending (fairness turn after a streak of receives).
//! - Deadlines: a probe's reply must arrive within
//!   `clamp(rtt_multiplier × EWMA RTT, deadline_floor, interval)` (`interval`
//!   until the first RTT sample); later replies count as misses but still
//!   feed the RTT average, so a slower path raises the deadline instead of
//!   flapping forever. Replies to older probes, duplicates and replies with
//!   another checker's nonce are never counted as fresh, so a reply to a
//!   previous leader's checker cannot revive anything.
//! - Events: a new target is [`TargetStatus::Unknown`]. `Dead` is emitted on
//!   the `retries`-th consecutive miss, also for a target that never answered;
//!   `Alive` only when a dead target answers again (a new target's first
//!   answer only updates the watch state). A target restarted on the same
//!   address is picked up with no extra step: responders are stateless, so
//!   its replies simply resume.
//! - Socket seam: [`DatagramSocket`] (`send_to`, `recv_from`, `local_addr`),
//!   implemented here for `tokio::net::UdpSocket` (steady state allocates
//!   nothing). The coordinator implements it for the in-memory network that
//!   gossip also uses (`gossip::MemTransport`, adapted in `cluster`, since
//!   this module may not import gossip), so a whole node's liveness can run
//!   in memory and be cut, delayed or made lossy on its own.
//!
//! # Connection refused is deliberately ignored
//!
//! When a process crashes on a live host, the host answers probes with ICMP
//! port unreachable, which could cut detection to one round trip. We do not
//! use it: on Linux an unconnected UDP socket only reports such errors with
//! `IP_RECVERR`, and then through the `MSG_ERRQUEUE` side channel that tokio
//! does not expose; other systems report a bare `ECONNREFUSED` from a later
//! `recv_from` with no address, which cannot be attributed to a target when
//! one socket probes them all (a connected socket per target would fix that
//! at the price of one socket per target). ICMP is also rate-limited and
//! unauthenticated. Receive errors are therefore counted and ignored (never
//! fatal), and a crashed process is found by missed replies like any other
//! failure, within `retries × interval + deadline`.

mod checker;
mod config;
mod core;
mod error;
mod responder;
mod socket;
pub mod wire;

pub use checker::{Checker, CheckerHandle, LivenessSnapshot};
pub use config::{ConfigError, LivenessConfig};
pub use core::{CheckerCore, CheckerStats, LivenessEvent, StatusChange, TargetInfo, TargetStatus};
pub use error::LivenessError;
pub use responder::{Responder, ResponderStats};
pub use socket::DatagramSocket;
