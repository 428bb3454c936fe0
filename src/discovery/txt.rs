//! Pure encoding of an [`Announcement`] into DNS-SD names and TXT properties,
//! and the strict parsing of TXT properties heard from the network.
//!
//! Nothing here does I/O; every function is a plain function with unit tests.
//! Anything heard from the network is treated as hostile: missing keys,
//! boolean keys, non-UTF-8 bytes, over-long values and unusable addresses are
//! rejected with a [`TxtError`], never a panic.

use std::net::{IpAddr, SocketAddr};

use super::error::TxtError;
use super::Announcement;

/// TXT key holding the cluster name.
pub const KEY_CLUSTER: &str = "cluster";
/// TXT key holding the node id.
pub const KEY_NODE: &str = "node";
/// TXT key holding the gossip address as `host:port`.
pub const KEY_GOSSIP: &str = "gossip";
/// TXT key holding the gossip protocol version (decimal).
pub const KEY_PROTO: &str = "proto";

/// Longest accepted cluster name, in bytes.
pub const MAX_CLUSTER_LEN: usize = 63;
/// Longest accepted node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 128;
/// Longest accepted `gossip` value (`[v6-with-zone]:port` fits easily).
pub const MAX_GOSSIP_LEN: usize = 64;
/// Longest accepted `proto` value (`u32::MAX` has 10 digits).
pub const MAX_PROTO_LEN: usize = 10;
/// Longest DNS label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Length of the `-xxxxxxxx` hash suffix added to altered labels.
const HASH_SUFFIX_LEN: usize = 9;

/// FNV-1a, 32 bits: a tiny hash that is stable across Rust releases and
/// machines (std's `DefaultHasher` is not), so every node names a peer the
/// same way.
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Turns arbitrary text into one DNS label: lower-case ASCII letters, digits
/// and single inner hyphens, at most [`MAX_LABEL_LEN`] bytes.
///
/// When the text had to be changed (case, characters, length) a hash of the
/// original is appended, so two ids that differ only in the dropped parts
/// (`a_b` vs `a.b`, `Node` vs `node`, long ids sharing a prefix) still get
/// different labels.
pub fn dns_label(raw: &str) -> String {
    let mut label = String::with_capacity(raw.len().min(MAX_LABEL_LEN));
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        let keep = if c.is_ascii_alphanumeric() { c } else { '-' };
        if keep == '-' && (label.is_empty() || label.ends_with('-')) {
            continue;
        }
        label.push(keep);
    }
    while label.ends_with('-') {
        label.pop();
    }
    if label == raw && label.len() <= MAX_LABEL_LEN {
        return label;
    }
    // Labels are pure ASCII here, so byte truncation is char-safe.
    label.truncate(MAX_LABEL_LEN - HASH_SUFFIX_LEN);
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        label.push('x');
    }
    label.push_str(&format!("-{:08x}", fnv1a32(raw.as_bytes())));
    label
}

/// The DNS-SD instance name of a node: `<cluster>-<node id>` as one DNS label.
pub fn instance_name(cluster: &str, node_id: &str) -> String {
    dns_label(&format!("{cluster}-{node_id}"))
}

/// The mDNS host name a node publishes its addresses under:
/// `<cluster>-<node id>.local.` (the instance label, so two clusters that
/// both have a `node1` on one LAN do not fight over a host name).
pub fn host_name(cluster: &str, node_id: &str) -> String {
    format!("{}.local.", instance_name(cluster, node_id))
}

/// Checks a cluster name or node id: not empty, not too long, no control
/// characters or white space.
fn check_ident(key: &'static str, value: &str, max: usize) -> Result<(), TxtError> {
    if value.is_empty() {
        return Err(TxtError::Empty(key));
    }
    if value.len() > max {
        return Err(TxtError::TooLong {
            key,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(TxtError::BadCharacters(key));
    }
    Ok(())
}

/// Checks that an address can be dialled by a peer: a real port and not a
/// multicast or broadcast address. An unspecified IP (`0.0.0.0`) is allowed
/// only when `allow_unspecified` (we announce it; the receiver substitutes
/// the addresses mDNS resolved for the host).
fn check_addr(addr: &SocketAddr, allow_unspecified: bool) -> Result<(), TxtError> {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if addr.port() == 0
        || ip.is_multicast()
        || broadcast
        || (ip.is_unspecified() && !allow_unspecified)
    {
        return Err(TxtError::UnusableAddress(addr.to_string()));
    }
    Ok(())
}

/// Validates an announcement before it is published.
pub fn validate(a: &Announcement) -> Result<(), TxtError> {
    check_ident(KEY_CLUSTER, &a.cluster, MAX_CLUSTER_LEN)?;
    check_ident(KEY_NODE, &a.node_id, MAX_NODE_ID_LEN)?;
    check_addr(&a.gossip_addr, true)
}

/// The TXT properties published for `a`, after [`validate`].
pub fn encode(a: &Announcement) -> Result<Vec<(&'static str, String)>, TxtError> {
    validate(a)?;
    Ok(vec![
        (KEY_CLUSTER, a.cluster.clone()),
        (KEY_NODE, a.node_id.clone()),
        (KEY_GOSSIP, a.gossip_addr.to_string()),
        (KEY_PROTO, a.protocol_version.to_string()),
    ])
}

/// Finds the first property named `key` (keys are case-insensitive and only
/// the first occurrence counts, RFC 6763 §6.4) and returns it as a bounded
/// UTF-8 string.
fn lookup<'a, I>(props: I, key: &'static str, max: usize) -> Result<&'a str, TxtError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
{
    let (_, val) = props
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .ok_or(TxtError::MissingKey(key))?;
    let bytes = val.ok_or(TxtError::NoValue(key))?;
    if bytes.len() > max {
        return Err(TxtError::TooLong {
            key,
            len: bytes.len(),
            max,
        });
    }
    std::str::from_utf8(bytes).map_err(|_| TxtError::NotUtf8(key))
}

/// Picks the address to stand in for an unspecified gossip IP: one of the
/// host's resolved addresses of the same family, preferring a non-loopback
/// one (a remote peer cannot reach our loopback), lowest first so every
/// receiver picks the same.
fn substitute_ip(unspecified: IpAddr, resolved: &[IpAddr]) -> Option<IpAddr> {
    let mut candidates: Vec<IpAddr> = resolved
        .iter()
        .copied()
        .filter(|ip| ip.is_ipv4() == unspecified.is_ipv4())
        .filter(|ip| !ip.is_unspecified() && !ip.is_multicast())
        // fe80::/10 cannot be dialled without a scope (interface) id.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    candidates.sort_by_key(|ip| (ip.is_loopback(), *ip));
    candidates.first().copied()
}

/// Parses the TXT properties of a resolved service into an announcement.
///
/// `props` yields `(key, value)` pairs as decoded from the TXT record
/// (`None` for a boolean key). `resolved` are the host addresses mDNS
/// resolved for the service, used when the `gossip` IP is unspecified.
pub fn decode<'a, I>(props: I, resolved: &[IpAddr]) -> Result<Announcement, TxtError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    I::IntoIter: Clone,
{
    let props = props.into_iter();
    let cluster = lookup(props.clone(), KEY_CLUSTER, MAX_CLUSTER_LEN)?;
    check_ident(KEY_CLUSTER, cluster, MAX_CLUSTER_LEN)?;
    let node = lookup(props.clone(), KEY_NODE, MAX_NODE_ID_LEN)?;
    check_ident(KEY_NODE, node, MAX_NODE_ID_LEN)?;

    let gossip = lookup(props.clone(), KEY_GOSSIP, MAX_GOSSIP_LEN)?;
    let mut gossip_addr: SocketAddr = gossip
        .parse()
        .map_err(|_| TxtError::BadAddress(gossip.to_string()))?;
    check_addr(&gossip_addr, true)?;
    if gossip_addr.ip().is_unspecified() {
        let ip = substitute_ip(gossip_addr.ip(), resolved)
            .ok_or_else(|| TxtError::UnusableAddress(gossip_addr.to_string()))?;
        gossip_addr.set_ip(ip);
    }

    let proto = lookup(props, KEY_PROTO, MAX_PROTO_LEN)?;
    if proto.is_empty() || !proto.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TxtError::BadVersion(proto.to_string()));
    }
    let protocol_version = proto
        .parse::<u32>()
        .map_err(|_| TxtError::BadVersion(proto.to_string()))?;

    Ok(Announcement {
        cluster: cluster.to_string(),
        node_id: node.to_string(),
        gossip_addr,
        protocol_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ann() -> Announcement {
        Announcement {
            cluster: "prod".into(),
            node_id: "node-1".into(),
            gossip_addr: "10.1.2.3:7946".parse().unwrap(),
            protocol_version: 3,
        }
    }

    fn as_props(v: &[(&'static str, String)]) -> Vec<(&'static str, Option<Vec<u8>>)> {
        v.iter()
            .map(|(k, v)| (*k, Some(v.clone().into_bytes())))
            .collect()
    }

    fn dec(
        props: &[(&str, Option<Vec<u8>>)],
        resolved: &[IpAddr],
    ) -> Result<Announcement, TxtError> {
        decode(props.iter().map(|(k, v)| (*k, v.as_deref())), resolved)
    }

    fn valid_props() -> Vec<(&'static str, Option<Vec<u8>>)> {
        as_props(&encode(&ann()).unwrap())
    }

    fn with(key: &'static str, val: Option<&[u8]>) -> Vec<(&'static str, Option<Vec<u8>>)> {
        let mut p: Vec<_> = valid_props()
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect();
        p.push((key, val.map(<[u8]>::to_vec)));
        p
    }

    #[test]
    fn round_trip() {
        assert_eq!(dec(&valid_props(), &[]).unwrap(), ann());
    }

    #[test]
    fn keys_are_case_insensitive_and_first_wins() {
        let mut p: Vec<(&str, Option<Vec<u8>>)> = vec![("CLUSTER", Some(b"prod".to_vec()))];
        p.extend(valid_props());
        p.push(("cluster", Some(b"other".to_vec())));
        assert_eq!(dec(&p, &[]).unwrap().cluster, "prod");
    }

    #[test]
    fn missing_keys_rejected() {
        for key in [KEY_CLUSTER, KEY_NODE, KEY_GOSSIP, KEY_PROTO] {
            let p: Vec<_> = valid_props()
                .into_iter()
                .filter(|(k, _)| *k != key)
                .collect();
            assert_eq!(dec(&p, &[]), Err(TxtError::MissingKey(key)), "{key}");
        }
        assert_eq!(dec(&[], &[]), Err(TxtError::MissingKey(KEY_CLUSTER)));
    }

    #[test]
    fn boolean_keys_rejected() {
        for key in [KEY_CLUSTER, KEY_NODE, KEY_GOSSIP, KEY_PROTO] {
            assert_eq!(dec(&with(key, None), &[]), Err(TxtError::NoValue(key)));
        }
    }

    #[test]
    fn non_utf8_rejected() {
        for key in [KEY_CLUSTER, KEY_NODE, KEY_GOSSIP, KEY_PROTO] {
            let bad: &[u8] = &[0xff, 0xfe, b'a'];
            assert_eq!(dec(&with(key, Some(bad)), &[]), Err(TxtError::NotUtf8(key)));
        }
    }

    #[test]
    fn over_long_values_rejected() {
        let long = vec![b'a'; 300];
        for (key, max) in [
            (KEY_CLUSTER, MAX_CLUSTER_LEN),
            (KEY_NODE, MAX_NODE_ID_LEN),
            (KEY_GOSSIP, MAX_GOSSIP_LEN),
            (KEY_PROTO, MAX_PROTO_LEN),
        ] {
            assert_eq!(
                dec(&with(key, Some(&long)), &[]),
                Err(TxtError::TooLong { key, len: 300, max })
            );
        }
    }

    #[test]
    fn empty_and_control_characters_rejected() {
        assert_eq!(
            dec(&with(KEY_NODE, Some(b"")), &[]),
            Err(TxtError::Empty(KEY_NODE))
        );
        assert_eq!(
            dec(&with(KEY_CLUSTER, Some(b"a\nb")), &[]),
            Err(TxtError::BadCharacters(KEY_CLUSTER))
        );
        assert_eq!(
            dec(&with(KEY_NODE, Some(b"a b")), &[]),
            Err(TxtError::BadCharacters(KEY_NODE))
        );
        assert_eq!(
            dec(&with(KEY_NODE, Some(b"a\0")), &[]),
            Err(TxtError::BadCharacters(KEY_NODE))
        );
    }

    #[test]
    fn bad_addresses_rejected() {
        for bad in [
            "",
            "host",
            "1.2.3.4",
            "1.2.3.4:99999",
            "::1:80",
            "example.com:80",
        ] {
            assert_eq!(
                dec(&with(KEY_GOSSIP, Some(bad.as_bytes())), &[]),
                Err(TxtError::BadAddress(bad.to_string())),
                "{bad}"
            );
        }
        for bad in [
            "1.2.3.4:0",
            "224.0.0.251:5353",
            "255.255.255.255:80",
            "[ff02::1]:80",
        ] {
            assert!(
                matches!(
                    dec(&with(KEY_GOSSIP, Some(bad.as_bytes())), &[]),
                    Err(TxtError::UnusableAddress(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_gossip_address_accepted() {
        let p = with(KEY_GOSSIP, Some(b"[fd00::2]:7946"));
        assert_eq!(
            dec(&p, &[]).unwrap().gossip_addr,
            "[fd00::2]:7946".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn unspecified_ip_takes_resolved_non_loopback_address() {
        let p = with(KEY_GOSSIP, Some(b"0.0.0.0:7946"));
        let resolved = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "192.0.2.9".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
        ];
        assert_eq!(
            dec(&p, &resolved).unwrap().gossip_addr,
            "192.0.2.7:7946".parse::<SocketAddr>().unwrap()
        );
        // Only loopback known: use it (single-host clusters).
        assert_eq!(
            dec(&p, &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
                .unwrap()
                .gossip_addr,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7946)
        );
        // Nothing to substitute: rejected.
        assert!(matches!(dec(&p, &[]), Err(TxtError::UnusableAddress(_))));
        assert!(matches!(
            dec(&p, &["fd00::2".parse().unwrap()]),
            Err(TxtError::UnusableAddress(_))
        ));
    }

    #[test]
    fn unspecified_ipv6_takes_a_routable_ipv6_address_not_a_link_local_one() {
        let p = with(KEY_GOSSIP, Some(b"[::]:7946"));
        let resolved: Vec<IpAddr> = ["fe80::1", "192.0.2.7", "fd00::9", "::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            dec(&p, &resolved).unwrap().gossip_addr,
            "[fd00::9]:7946".parse::<SocketAddr>().unwrap()
        );
        // Link-local only: it cannot be dialled without a scope.
        assert!(matches!(
            dec(&p, &["fe80::1".parse().unwrap()]),
            Err(TxtError::UnusableAddress(_))
        ));
    }

    #[test]
    fn bad_versions_rejected() {
        for bad in ["", "x", "-1", "+1", "1.0", "4294967296", " 1"] {
            assert!(
                matches!(
                    dec(&with(KEY_PROTO, Some(bad.as_bytes())), &[]),
                    Err(TxtError::BadVersion(_))
                ),
                "{bad}"
            );
        }
        let p = with(KEY_PROTO, Some(b"4294967295"));
        assert_eq!(dec(&p, &[]).unwrap().protocol_version, u32::MAX);
    }

    #[test]
    fn encode_validates() {
        let mut a = ann();
        a.cluster = String::new();
        assert_eq!(encode(&a), Err(TxtError::Empty(KEY_CLUSTER)));
        let mut a = ann();
        a.node_id = "n".repeat(MAX_NODE_ID_LEN + 1);
        assert!(matches!(encode(&a), Err(TxtError::TooLong { .. })));
        let mut a = ann();
        a.gossip_addr = "10.0.0.1:0".parse().unwrap();
        assert!(matches!(encode(&a), Err(TxtError::UnusableAddress(_))));
        let mut a = ann();
        a.gossip_addr = "0.0.0.0:7946".parse().unwrap();
        assert!(encode(&a).is_ok());
        // Every encoded property fits one TXT string (key=value <= 255 bytes).
        let mut a = ann();
        a.cluster = "c".repeat(MAX_CLUSTER_LEN);
        a.node_id = "n".repeat(MAX_NODE_ID_LEN);
        // The longest socket address text: full IPv6 with a zone index.
        a.gossip_addr = "[fe80:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
            .parse()
            .unwrap();
        let props = encode(&a).unwrap();
        for (k, v) in &props {
            assert!(k.len() + 1 + v.len() <= 255);
        }
        // ... and what we encode, we accept.
        assert_eq!(dec(&as_props(&props), &[]).unwrap(), a);
    }

    fn is_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LABEL_LEN
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    #[test]
    fn clean_names_are_kept() {
        assert_eq!(instance_name("prod", "node-1"), "prod-node-1");
        assert_eq!(host_name("prod", "node-1"), "prod-node-1.local.");
    }

    #[test]
    fn hostile_names_become_distinct_labels() {
        let long = "x".repeat(500);
        let inputs = [
            ("prod", "a_b"),
            ("prod", "a.b"),
            ("prod", "A.B"),
            ("prod", "Node"),
            ("prod", "node"),
            ("", ""),
            ("---", "..."),
            ("ünïcödé", "ノード"),
            ("prod", "a\u{0}b"),
            ("prod", long.as_str()),
            ("prod", &long[..499]),
            ("c", "evil._clusterfunk._udp.local."),
        ];
        let mut seen = std::collections::HashSet::new();
        for (c, n) in inputs {
            let label = instance_name(c, n);
            assert!(is_label(&label), "{c:?}/{n:?} -> {label:?}");
            assert!(seen.insert(label.clone()), "collision on {label}");
            let host = host_name(c, n);
            assert!(host.ends_with(".local.") && is_label(host.trim_end_matches(".local.")));
        }
    }

    #[test]
    fn labels_are_stable() {
        // The hash must not change between builds: peers on other versions
        // compute the same names.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(dns_label("A"), format!("a-{:08x}", fnv1a32(b"A")));
    }
}
