//! What the trust tests share: an encrypted node's configuration, the test
//! CA and node certificate for mutual TLS, and counters read from a node's
//! metrics.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clusterfunk::config::TlsConfig;
use clusterfunk::gossip::Keyring;
use clusterfunk::raft::{RaftAuth, AUTH_HEADER};
use clusterfunk::{Cluster, Config};
use tonic::metadata::MetadataValue;

/// The Raft wire types, for raw calls.
#[allow(clippy::all, missing_docs, dead_code)]
pub mod pb {
    tonic::include_proto!("clusterfunk.v1.raft");
}

/// Asserts, for each `(secret, code)`, that a raw `Elect` from a stranger
/// carrying the Raft credential of `secret` gets `code` at the Raft port
/// `addr`: UNAUTHENTICATED when the port refuses the credential,
/// PERMISSION_DENIED when it takes it (and then refuses the stranger).
pub async fn assert_credentials(addr: &str, cases: &[(&[u8], tonic::Code)]) {
    let mut raft = pb::raft_client::RaftClient::connect(format!("http://{addr}"))
        .await
        .expect("connect raft");
    for (secret, want) in cases {
        let cred = RaftAuth::from_secret(secret).header_value();
        let mut req = tonic::Request::new(pb::ElectRequest { from: 1 });
        req.metadata_mut().insert(
            AUTH_HEADER,
            MetadataValue::try_from(cred.to_str().expect("ascii")).expect("value"),
        );
        let got = raft.elect(req).await.expect_err("elect from a stranger");
        assert_eq!(got.code(), *want, "{addr}: {got:?}");
    }
}

/// A loopback node of cluster `cluster` with 256 shards and a metrics
/// port; with `key`, gossip is encrypted with it and Raft calls carry the
/// credential the library derives from it.
pub fn keyed(name: &str, cluster: &str, key: Option<&[u8]>) -> Config {
    let mut c = Config::local(name);
    c.cluster_name = cluster.into();
    c.shard_count = 256;
    c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    c.gossip.keyring = key.map(|k| Keyring::new(k).expect("key"));
    c
}

/// The Raft members (voters and learners) `c` knows of.
pub fn raft_members(c: &Cluster) -> BTreeSet<String> {
    c.raft_status()
        .map(|r| r.voters.into_iter().chain(r.learners).collect())
        .unwrap_or_default()
}

/// The sum of every series of the metric `name` on `c`.
pub fn counter(c: &Cluster, name: &str) -> u64 {
    labeled(c, name, "")
}

/// The sum of the series of `name` whose labels hold the value `label`
/// (every series when `label` is empty).
pub fn labeled(c: &Cluster, name: &str, label: &str) -> u64 {
    let text = c.metrics().encode_text().expect("metrics");
    let want = format!("\"{label}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && (label.is_empty() || l.contains(&want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

// A test CA and a node certificate it signed (P-256, SAN 127.0.0.1 and
// localhost, server and client auth, valid until 2126).
const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBpDCCAUmgAwIBAgIURpWJf0h1/YgU9OBWiqNblBYUbPEwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTY2x1c3RlcmZ1bmsgdGVzdCBDQTAgFw0yNjExMjMxNTIzMDRa
GA8yMTI2MTAzMDE1MjMwNFowHjEcMBoGA1UEAwwTY2x1c3RlcmZ1bmsgdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMO63Uv0f947FnRdedxlMBh1442H
cf5PaVLQ0yb2W8mNREekjTW/L1AxLS67l7gL8iIRPQikEA2pNbBt8Lji/I2jYzBh
MB0GA1UdDgQWBBRe2chBiQ9OJKRyNVG+I5AXXYf7KzAfBgNVHSMEGDAWgBRe2chB
iQ9OJKRyNVG+I5AXXYf7KzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB
BjAKBggqhkjOPQQDAgNJADBGAiEAhTqa0wueakxf3XobDv10uL3WP5SNtYF/5nt4
/JukG+8CIQDXsvCNg8jpd/GwTT5iVXYVlMU47hmlAvqYAMTTevWGnQ==
-----END CERTIFICATE-----
";
const NODE_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIB2zCCAYCgAwIBAgIUGiupcM9J0NpPRmajrHbMzbzlyqowCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTY2x1c3RlcmZ1bmsgdGVzdCBDQTAgFw0yNjExMjMxNTIzMDRa
GA8yMTI2MTAzMDE1MjMwNFowGzEZMBcGA1UEAwwQY2x1c3RlcmZ1bmsgbm9kZTBZ
MBMGByqGSM49AgEGCCqGSM49AwEHA0IABK9HLU2EGE9diNyAUki8Y8+GEPh6RPIQ
0B/RYHSxh5VP//uGN+eLcUH4wK4tPAt2iMpjgBkR2Uc6SPyVJMmloyujgZwwgZkw
DAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwHQYDVR0lBBYwFAYIKwYBBQUH
AwEGCCsGAQUFBwMCMBoGA1UdEQQTMBGHBH8AAAGCCWxvY2FsaG9zdDAdBgNVHQ4E
FgQUH2j/PJK3D7x3QkvnwnVLfUvELXgwHwYDVR0jBBgwFoAUXtnIQYkPTiSkcjVR
viOQF12H+yswCgYIKoZIzj0EAwIDSQAwRgIhAP8JYK2bVygo1U/ZQ/6c/rIbDoVB
GKV5rfU1x5eiO1beAiEA/s7oqOGp+sfe5ir2MML1Y8+NKWPufLCXmQvyPgJJw9s=
-----END CERTIFICATE-----
";
const NODE_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn8lFlIUCME6pe8fQ
+lNeGyn7SJBWDbiuUq3FWLjisKyhRANCAASvRy1NhBhPXYjcgFJIvGPPhhD4ekTy
ENAf0WB0sYeVT//7hjfni3FB+MCuLTwLdojKY4AZEdlHOkj8lSTJpaMr
-----END PRIVATE KEY-----
";

/// PEM files in a temporary dir (removed on drop).
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test CA, node certificate and key, written to a temporary dir.
pub fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write pem");
        p
    };
    Certs {
        ca: write("ca.pem", CA_PEM),
        cert: write("node.pem", NODE_PEM),
        key: write("node.key", NODE_KEY),
        _dir: dir,
    }
}

impl Certs {
    /// Mutual TLS with the node certificate, trusting the test CA.
    pub fn tls(&self) -> TlsConfig {
        TlsConfig {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: Some(self.ca.clone()),
            server_name: None,
        }
    }
}
