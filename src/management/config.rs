//! Settings of the management server and client: TLS and the shared token.

use std::fmt;
use std::path::PathBuf;

/// How a node serves its management API. The default serves plaintext
/// with no token (fine on loopback; set TLS and a token elsewhere).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ManagementConfig {
    /// Serve over TLS with this certificate and key.
    pub tls: Option<ManagementTls>,
    /// When set, every management call (not gRPC health) must carry
    /// `authorization: Bearer <token>`; others get UNAUTHENTICATED. Nodes
    /// of a cluster share it: forwarded writes carry it too.
    pub token: Option<String>,
}

impl fmt::Debug for ManagementConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementConfig")
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// TLS for the management server (PEM files, read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementTls {
    /// Certificate chain of this node.
    pub cert: PathBuf,
    /// Private key of `cert`.
    pub key: PathBuf,
    /// With a CA, clients must present a certificate it signed (mutual
    /// TLS), and a follower forwarding a write trusts this CA and presents
    /// its own certificate. Without one, clients are not authenticated by
    /// TLS and a forwarding follower trusts only `cert` itself (every node
    /// shares one certificate).
    pub ca: Option<PathBuf>,
    /// Name a forwarding follower expects in the leader's certificate;
    /// default: the host of the leader's management address.
    pub server_name: Option<String>,
}

/// TLS for a management client (the CLI, or a follower forwarding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificate (PEM) that signed the server's certificate. Required.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require one.
    pub cert: Option<PathBuf>,
    /// Key of `cert`.
    pub key: Option<PathBuf>,
    /// Name expected in the server's certificate; default: the host of the
    /// address dialled.
    pub domain: Option<String>,
}

impl ManagementTls {
    /// The client settings a node uses to forward to another node.
    pub(crate) fn forwarding_client(&self) -> ClientTls {
        let mut c = ClientTls {
            ca: Some(self.ca.clone().unwrap_or_else(|| self.cert.clone())),
            domain: self.server_name.clone(),
            ..ClientTls::default()
        };
        if self.ca.is_some() {
            c.cert = Some(self.cert.clone());
            c.key = Some(self.key.clone());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = ManagementConfig {
            tls: None,
            token: Some("s3cret".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn forwarding_uses_the_ca_and_own_identity_for_mutual_tls() {
        let mut tls = ManagementTls {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: None,
            server_name: Some("mgmt".into()),
        };
        let c = tls.forwarding_client();
        assert_eq!(c.ca, Some("node.pem".into()));
        assert_eq!(c.cert, None);
        assert_eq!(c.domain.as_deref(), Some("mgmt"));
        tls.ca = Some("ca.pem".into());
        let c = tls.forwarding_client();
        assert_eq!(c.ca, Some("ca.pem".into()));
        assert_eq!(c.cert, Some("node.pem".into()));
        assert_eq!(c.key, Some("node.key".into()));
    }
}
