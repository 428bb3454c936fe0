//! A private LAN of network namespaces for tests: one namespace holds a
//! bridge, each "host" namespace has an `eth0` veth on it with
//! `<subnet>.<n>/24`. Both ends of every veth are created inside namespaces,
//! so nothing appears in the machine's own network namespace. Names carry
//! the pid; everything is deleted on drop, also when a test panics.

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
            super::skip::skipped(
                test,
                &format!("needs root and iproute2 to create network namespaces ({e})"),
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

/// Set in the copy of a test that runs inside the private namespace.
const IN_PRIVATE_NETNS: &str = "CLUSTERFUNK_TEST_IN_PRIVATE_NETNS";
/// Printed by that copy when the scenario held.
const SCENARIO_OK: &str = "PRIVATE_NETNS_SCENARIO_OK";

/// Runs `scenario` in a private network namespace that holds only `lo`
/// (up, multicast on), so nothing it sends (mDNS, IGMP joins) reaches the
/// machine's interfaces: the test binary re-runs test `test` under
/// `unshare --net` and this asserts that the copy succeeded. Skips with a
/// message without root, `unshare` or `ip`.
pub fn run_in_private_netns(test: &str, scenario: impl FnOnce()) {
    if std::env::var_os(IN_PRIVATE_NETNS).is_some() {
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "lo", "multicast", "on"][..],
        ] {
            if let Err(e) = ip(args) {
                panic!("{e}");
            }
        }
        scenario();
        println!("{SCENARIO_OK}");
        return;
    }
    let probe = Command::new("unshare")
        .args(["--net", "ip", "link", "set", "lo", "up"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        super::skip::skipped(
            test,
            &format!(
                "needs root, `unshare --net` (util-linux) and `ip` (iproute2) to run in a \
                 private network namespace; probe: {probe:?}"
            ),
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_PRIVATE_NETNS, "1")
        .output()
        .expect("run the test inside a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(SCENARIO_OK),
        "scenario failed in the namespace ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// A two-thread tokio runtime for a scenario run by [`run_in_private_netns`].
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
