//! Settings of the management client: TLS towards a server. The server's
//! settings (TLS, token) are [`crate::config::AuthConfig`], shared with Raft.

use std::path::PathBuf;

use crate::config::TlsConfig;

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

/// The client settings a node uses to forward to another node.
pub(crate) fn forwarding_client(tls: &TlsConfig) -> ClientTls {
    let mut c = ClientTls {
        ca: Some(tls.ca.clone().unwrap_or_else(|| tls.cert.clone())),
        domain: tls.server_name.clone(),
        ..ClientTls::default()
    };
    if tls.ca.is_some() {
        c.cert = Some(tls.cert.clone());
        c.key = Some(tls.key.clone());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_uses_the_ca_and_own_identity_for_mutual_tls() {
        let mut tls = TlsConfig {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: None,
            server_name: Some("mgmt".into()),
        };
        let c = forwarding_client(&tls);
        assert_eq!(c.ca, Some("node.pem".into()));
        assert_eq!(c.cert, None);
        assert_eq!(c.domain.as_deref(), Some("mgmt"));
        tls.ca = Some("ca.pem".into());
        let c = forwarding_client(&tls);
        assert_eq!(c.ca, Some("ca.pem".into()));
        assert_eq!(c.cert, Some("node.pem".into()));
        assert_eq!(c.key, Some("node.key".into()));
    }
}
