//! The chaos run's private LAN: one network namespace holds a bridge, each
//! agent's namespace has an `eth0` veth on it with `10.77.0.<n>/24`, and an
//! iptables chain `CHAOS` (jumped to from INPUT and OUTPUT) that holds the
//! partition rules. Both ends of every veth live inside namespaces created
//! here, so nothing touches the machine's own network; deleting the
//! namespaces (on drop, also after a panic) removes links and rules alike.
//! Names carry the pid; namespaces left by a run that was killed are
//! removed by the next run.

use std::process::Command;

/// Prefix of every namespace this module creates.
const PREFIX: &str = "cfchaos";
/// The private subnet inside the namespaces.
pub const SUBNET: &str = "10.77.0";
/// The iptables chain holding the partition rules.
const CHAIN: &str = "CHAOS";

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// Why this machine cannot run the chaos scenario, if it cannot.
pub fn missing_requirements() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("needs root (effective uid 0) to create network namespaces".into());
    }
    if let Err(e) = ip(&["-V"]) {
        return Some(format!("needs iproute2: {e}"));
    }
    if let Err(e) = run("iptables", &["-V"]) {
        return Some(format!("needs iptables: {e}"));
    }
    None
}

/// Deletes namespaces of earlier runs whose process is gone.
pub fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// The namespaces of one run; dropped, it deletes them.
pub struct Lan {
    bridge: String,
    /// Host namespaces; host `i` has address `SUBNET.(i+1)`.
    pub hosts: Vec<String>,
}

impl Lan {
    /// Builds a LAN of `n` hosts.
    pub fn create(n: usize) -> Result<Lan, String> {
        let prefix = format!("{PREFIX}{}", std::process::id());
        let bridge = format!("{prefix}-br");
        ip(&["netns", "add", &bridge])?;
        let mut lan = Lan {
            bridge,
            hosts: Vec::new(),
        };
        lan.wire(&prefix, n)?;
        Ok(lan)
    }

    fn wire(&mut self, prefix: &str, n: usize) -> Result<(), String> {
        let br = self.bridge.clone();
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{prefix}-h{}", i + 1);
            ip(&["netns", "add", &ns])?;
            self.hosts.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            self.iptables(i, &["-N", CHAIN])?;
            self.iptables(i, &["-I", "INPUT", "-j", CHAIN])?;
            self.iptables(i, &["-I", "OUTPUT", "-j", CHAIN])?;
        }
        Ok(())
    }

    /// Address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("{SUBNET}.{}", i + 1)
    }

    /// The command prefix that runs a program on host `i`.
    pub fn exec_prefix(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.hosts[i]]
    }

    fn iptables(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.hosts[i], "iptables", "-w"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Host `i` drops packets from host `j` (`inbound`) or to host `j`.
    pub fn drop_link(&self, i: usize, j: usize, inbound: bool) -> Result<(), String> {
        let peer = self.addr(j);
        let dir = if inbound { "-s" } else { "-d" };
        self.iptables(i, &["-A", CHAIN, dir, &peer, "-j", "DROP"])
            .map(|_| ())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), String> {
        for i in 0..self.hosts.len() {
            self.iptables(i, &["-F", CHAIN])?;
        }
        Ok(())
    }

    /// Process ids running on host `i` (the agent).
    pub fn pids(&self, i: usize) -> Vec<u32> {
        ip(&["netns", "pids", &self.hosts[i]])
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.bridge)) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}
