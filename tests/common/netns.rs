//! A private LAN of network namespaces for tests: one namespace holds a
//! bridge, each "host" namespace has an `eth0` veth on it with
//! `<subnet>.<n>/24`. Both ends of every veth are created inside namespaces,
//! so nothing appears in the machine's own network namespace. Names carry
//! the pid; everything is deleted on drop, also when a test panics.

use std::io::Write;
use std::process::Command;

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces of one run.
pub struct Lan {
    pub bridge_ns: String,
    /// Host namespaces, in the order of `hosts` given to [`Lan::create`].
    pub hosts: Vec<String>,
}

impl Lan {
    /// Builds a LAN with one namespace per `(suffix, host number)`, or
    /// prints why it cannot (no root, no iproute2) and returns `None`.
    pub fn create(test: &str, tag: &str, subnet: &str, hosts: &[(&str, u8)]) -> Option<Lan> {
        let prefix = format!("cf{tag}{}", std::process::id());
        let bridge_ns = format!("{prefix}-lan");
        if let Err(e) = ip(&["netns", "add", &bridge_ns]) {
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: needs root and iproute2 to create network namespaces ({e})"
            );
            return None;
        }
        let mut lan = Lan {
            bridge_ns,
            hosts: Vec::new(),
        };
        if let Err(e) = lan.wire(&prefix, subnet, hosts) {
            panic!("building the namespace LAN failed: {e}");
        }
        Some(lan)
    }

    fn wire(&mut self, prefix: &str, subnet: &str, hosts: &[(&str, u8)]) -> Result<(), String> {
        let br = self.bridge_ns.clone();
        // No IGMP snooping: the bridge floods multicast like a dumb switch.
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, (suffix, host)) in hosts.iter().enumerate() {
            let ns = format!("{prefix}-{suffix}");
            ip(&["netns", "add", &ns])?;
            self.hosts.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let addr = format!("{subnet}.{host}/24");
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}
