//! Fast failure detection by UDP echo: every node runs a [`Responder`], the
//! leader runs one [`Checker`] that probes every target each `interval` and
//! reports a target dead after `retries` consecutive missed replies (about
//! 250 ms at the defaults, where gossip takes seconds), or at once when the
//! target's host reports its port closed (a crashed process; see below).
//! This module imports only std, tokio, tracing, thiserror, rand and (on
//! Linux) libc; it knows nothing of gossip or raft and reports through
//! channels: [`LivenessEvent`]s on a bounded `mpsc` (dropped and counted
//! when the consumer lags, so probing never stalls) and the status of every
//! target on a `tokio::sync::watch` ([`LivenessSnapshot`]).
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
//! # Port unreachable: a hint that shortens detection
//!
//! When a process dies on a host that stays up, the host answers the next
//! probe with ICMP port unreachable. The checker's socket asks for these
//! reports (`IP_RECVERR`; Linux only, see `errqueue`); the checker reads
//! them, with the original destination and payload, after every turn of
//! its loop ([`DatagramSocket::take_refused`]: a pending error also fails
//! the next send or receive, which ends a turn), and
//! [`CheckerCore::on_refused`] counts one only when it quotes this
//! checker's current pending probe of that target (nonce, sequence and
//! timestamp). Such a report is a miss at once and triggers an immediate
//! re-probe; `refused_retries` (default 2) in a row report the target dead,
//! about one round trip after the first probe that found the port closed,
//! instead of `retries` deadlines later. A fresh reply resets the count.
//! Where ICMP is filtered (or the socket seam has no such signal) nothing
//! changes: missed replies decide as before.
//!
//! ## Why a forged report cannot move a shard twice
//!
//! ICMP is unauthenticated: anyone on the path can forge "port
//! unreachable" (or filter the real one). A forged report can at worst
//! make the leader believe a live node is dead, exactly like a lost link.
//! That verdict never moves a shard by itself: the leader then proposes a
//! map without the node, and `cluster::reshard::Tracker` commits it only
//! when the node acknowledged (it stopped serving what it loses) or when
//! its serving lease has certainly ended (`RaftNode::lease_bound`, taken
//! when the proposal is made; leases granted after the proposal require
//! the node to have applied it, so they cannot extend serving of the lost
//! shards). So the failure detector decides *when* a map without the node
//! is proposed, never whether two nodes serve one shard; the simulation
//! injects forged reports to check this (`tests/safety_forged.rs`). The
//! cost of a forged report is availability: one needless map change.

mod checker;
mod config;
mod core;
mod error;
#[cfg(target_os = "linux")]
mod errqueue;
mod responder;
mod socket;
pub mod wire;

pub use checker::{Checker, CheckerHandle, LivenessSnapshot};
pub use config::{ConfigError, LivenessConfig};
pub use core::{CheckerCore, CheckerStats, LivenessEvent, StatusChange, TargetInfo, TargetStatus};
pub use error::LivenessError;
pub use responder::{Responder, ResponderStats};
pub use socket::{enable_refusals, DatagramSocket};
