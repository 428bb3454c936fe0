//! Errors of the gossip module.

use std::net::SocketAddr;

/// Why a [`GossipConfig`](super::GossipConfig) was rejected by `validate()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The node name is empty.
    #[error("node name must not be empty")]
    EmptyName,
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A count or multiplier that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
    /// The probe timeout does not fit inside the probe interval.
    #[error(
        "probe_timeout ({timeout_ms} ms) must be shorter than probe_interval ({interval_ms} ms)"
    )]
    ProbeTimeoutTooLong {
        /// probe_timeout in milliseconds.
        timeout_ms: u128,
        /// probe_interval in milliseconds.
        interval_ms: u128,
    },
    /// Only one of a coalescing pair is set: coalescing would silently
    /// stay off.
    #[error("{set} is set but {zero} is 0: coalescing needs both (or neither)")]
    CoalesceHalf {
        /// The period that is set.
        set: &'static str,
        /// The period left at zero.
        zero: &'static str,
    },
    /// The packet size leaves no room for messages.
    #[error("packet_size {0} is outside 512..=65000")]
    PacketSize(usize),
    /// The initial tags are larger than [`MAX_TAGS_SIZE`](super::MAX_TAGS_SIZE).
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// The stream memory budget cannot hold one largest frame.
    #[error("stream_memory_budget ({budget}) must be at least max_stream_frame ({frame})")]
    StreamBudget {
        /// `stream_memory_budget`.
        budget: usize,
        /// `max_stream_frame`.
        frame: usize,
    },
    /// A protocol range is not `min-max/cur` with `1 <= min <= cur <= max`.
    #[error("protocol range {0:?} must read min-max/cur with 1 <= min <= cur <= max")]
    ProtocolRange(String),
    /// A protocol version this build does not speak.
    #[error("protocol version {version} is not spoken by this build ({min}..={max})")]
    ProtocolVersion {
        /// The version asked for.
        version: u8,
        /// Lowest version of this build.
        min: u8,
        /// Highest version of this build.
        max: u8,
    },
    /// A keyring key has the wrong length.
    #[error("encryption key must be 16, 24 or 32 bytes (AES-128/192/256), got {0}")]
    KeyLength(usize),
}

/// Tags that cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    /// The encoded tags exceed the limit.
    #[error("encoded tags are {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit ([`MAX_TAGS_SIZE`](super::MAX_TAGS_SIZE)).
        limit: usize,
    },
}

/// Errors returned by the [`Gossip`](super::Gossip) handle.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The configuration is invalid.
    #[error("invalid gossip config: {0}")]
    Config(#[from] ConfigError),
    /// Tags rejected by `set_tags`.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// No seed answered a join.
    #[error("could not join any of {tried} addresses (last error: {last})")]
    JoinFailed {
        /// How many addresses were tried.
        tried: usize,
        /// The last failure, for the log.
        last: String,
    },
    /// `join` was called with no address.
    #[error("join needs at least one address")]
    NoSeeds,
    /// The leave intent was not confirmed within the timeout (the node is
    /// marked Left locally all the same).
    #[error("leave was not confirmed within the timeout")]
    LeaveTimeout,
    /// A user event is larger than the configured limit.
    #[error("user event is {size} bytes, the limit is {limit}")]
    EventTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The gossip task has stopped (after `shutdown`, or it failed).
    #[error("gossip has shut down")]
    Shutdown,
    /// A key operation on a node that runs without encryption.
    #[error("gossip encryption is off on this node (no keyring to change)")]
    NoKeyring,
    /// The key (named by its fingerprint) is not in the keyring.
    #[error("key {0} is not installed")]
    UnknownKey(String),
    /// The primary key (named by its fingerprint) cannot be removed.
    #[error("key {0} is the primary key: make another key primary first")]
    PrimaryKey(String),
    /// Binding or using a socket failed.
    #[error("transport error on {addr:?}: {source}")]
    Io {
        /// The address involved, when known.
        addr: Option<SocketAddr>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a datagram or stream frame could not be decoded. Counted and dropped,
/// never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Shorter than the header or the declared length.
    #[error("frame too short ({0} bytes)")]
    Truncated(usize),
    /// The first two bytes are not the magic.
    #[error("bad magic")]
    BadMagic,
    /// A protocol version this node does not speak.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// An unknown message type byte.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A type that is not allowed here (e.g. a nested compound).
    #[error("message type {0} not allowed here")]
    Unexpected(u8),
    /// The protobuf body did not decode.
    #[error("malformed body for message type {0}")]
    Body(u8),
    /// A stream frame declares a length above the limit.
    #[error("frame length {0} exceeds the limit")]
    TooLong(usize),
    /// The frame is encrypted and no key opened it, or it is not encrypted
    /// and this node requires encryption.
    #[error("decryption failed")]
    Decrypt,
    /// A compressed frame that does not decompress, or inflates beyond
    /// the size limit, or is nested in another compressed frame.
    #[error("bad compressed frame")]
    Compressed,
    /// A field holds an unparsable value (e.g. an address).
    #[error("bad field {0}")]
    BadField(&'static str),
}
