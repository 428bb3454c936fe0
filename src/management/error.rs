//! Errors of the management server setup and of the client.

use std::path::PathBuf;

/// Why a management call or the server setup failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// A PEM file could not be read.
    #[error("read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS settings were refused.
    #[error("tls: {0}")]
    Tls(String),
    /// The address is not usable.
    #[error("invalid address {addr:?}: {reason}")]
    Address {
        /// The address given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{}: {message}", code_name(*code))]
    Rpc {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// The server could not be set up.
    #[error("server setup: {0}")]
    Setup(String),
    /// The token cannot be sent as a header.
    #[error("invalid token: {0}")]
    Token(String),
    /// A streamed shard map did not decode.
    #[error("undecodable shard map: {0}")]
    Decode(#[source] crate::shards::ShardMapError),
    /// No node was found (zero-conf).
    #[error("discovery: {0}")]
    Discovery(String),
}

impl ManagementError {
    /// The gRPC code, for an error the server returned.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ManagementError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ManagementError {
    fn from(s: tonic::Status) -> Self {
        ManagementError::Rpc {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// The canonical upper-case gRPC name of `code` (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_read_as_one_line_with_the_code_name() {
        let e = ManagementError::from(tonic::Status::not_found("unknown node x"));
        assert_eq!(e.to_string(), "NOT_FOUND: unknown node x");
        assert_eq!(e.code(), Some(tonic::Code::NotFound));
    }
}
