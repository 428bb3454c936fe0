//! The agent's security posture check: one clear warning at start when a
//! node is reachable from other hosts but runs open (no gossip key and no
//! TLS), so an operator notices before an intruder does.

use clusterfunk::Config;

/// Why this configuration is open to its network, or `None` when it is
/// not: every socket on loopback, or a gossip key or TLS is set.
pub fn open_to_network(c: &Config) -> Option<String> {
    if c.gossip.keyring.is_some() || c.auth.tls.is_some() {
        return None;
    }
    let exposed: Vec<String> = [
        ("gossip", Some(c.gossip_addr)),
        ("raft", Some(c.raft_addr)),
        ("management", c.management_addr),
    ]
    .into_iter()
    .filter_map(|(what, a)| {
        a.filter(|a| !a.ip().is_loopback())
            .map(|a| format!("{what} {a}"))
    })
    .collect();
    if exposed.is_empty() {
        return None;
    }
    let management = if c.auth.token.is_some() {
        "the management API needs the token, but Raft and gossip are open"
    } else {
        "the management API, Raft and gossip are open"
    };
    Some(format!(
        "OPEN CLUSTER: no --encrypt key and no TLS, listening on {}: any host that \
         reaches these ports can join, own shards and change the cluster ({management}). \
         For production: --encrypt $(head -c 32 /dev/urandom | base64), \
         --tls-cert/--tls-key/--tls-ca and --token (see README, Production)",
        exposed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_open_beyond_loopback() {
        let local = Config::local("n1");
        assert_eq!(open_to_network(&local), None, "loopback is fine");
        let mut wide = Config::local("n1");
        wide.gossip_addr = "0.0.0.0:7946".parse().unwrap();
        let msg = open_to_network(&wide).expect("warns");
        assert!(msg.contains("gossip 0.0.0.0:7946") && msg.contains("--encrypt"));
        assert!(!msg.contains("raft 127"), "{msg}");
        let mut keyed = wide.clone();
        keyed.gossip.keyring = Some(clusterfunk::gossip::Keyring::new(&[1u8; 32]).unwrap());
        assert_eq!(open_to_network(&keyed), None);
        let mut tls = wide;
        tls.auth.tls = Some(clusterfunk::config::TlsConfig {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: None,
            server_name: None,
        });
        assert_eq!(open_to_network(&tls), None);
    }
}
