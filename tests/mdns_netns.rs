//! Multi-host mDNS discovery: four network namespaces ("hosts"), each with
//! an `eth0` veth whose peer sits on a bridge in a fifth namespace, so the
//! hosts share one private LAN that touches no real interface. Three
//! discovery processes of cluster "a" and one of cluster "b" run there with
//! no addresses given: each "a" finds the other two (at their LAN address,
//! substituted for the `0.0.0.0` they announce), "b" finds nobody. The
//! same runs over IPv6 (mDNS on ff02::fb only, each host with a ULA
//! `fd00:231:77::<n>/64`, announcing `[::]`): skipped with a message when
//! the namespaces have no IPv6.
//!
//! The processes are this test binary itself, re-run inside a namespace
//! (`ip netns exec NS <binary> --exact <this test>`) with environment
//! variables giving it its role. They print `FOUND`/`READY`/`DONE` lines;
//! the parent closes their stdin to end them. Needs root and `ip`
//! (iproute2); skipped with a message otherwise. Namespaces are named after
//! the pid and removed on success and failure alike.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

mod common;

use common::netns::Lan;

use clusterfunk::discovery::{
    Announcement, DiscoveryEvent, Interfaces, IpVersion, MdnsConfig, MdnsDiscovery, PeerFilter,
};

const TEST_NAME: &str = "three_hosts_of_a_find_each_other_fourth_of_b_stays_out";
const TEST_NAME_V6: &str = "over_ipv6_three_hosts_of_a_find_each_other_fourth_of_b_stays_out";
/// Prefix of the hosts' IPv6 addresses (`<prefix><n>/64`).
const SUBNET_V6: &str = "fd00:231:77::";
const ROLE_ENV: &str = "CLUSTERFUNK_MDNS_NETNS_ROLE";
const PARENT_DEADLINE: Duration = Duration::from_secs(45);
const CHILD_DEADLINE: Duration = Duration::from_secs(40);
const SUBNET: &str = "10.231.77";
/// Prefix of the children's report lines.
const MARK: &str = "@@mdns ";

/// (namespace suffix, cluster, node id, host address)
const HOSTS: [(&str, &str, &str, u8); 4] = [
    ("h1", "a", "n1", 1),
    ("h2", "a", "n2", 2),
    ("h3", "a", "n3", 3),
    ("h4", "b", "n1", 4),
];

/// The address family a run uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn test(self) -> &'static str {
        match self {
            Family::V4 => TEST_NAME,
            Family::V6 => TEST_NAME_V6,
        }
    }

    /// Host `n`'s address with `port`.
    fn addr(self, host: u8, port: u16) -> SocketAddr {
        let text = match self {
            Family::V4 => format!("{SUBNET}.{host}:{port}"),
            Family::V6 => format!("[{SUBNET_V6}{host}]:{port}"),
        };
        text.parse().expect("addr")
    }

    /// The unspecified address of this family with `port`.
    fn any(self, port: u16) -> SocketAddr {
        match self {
            Family::V4 => SocketAddr::from(([0, 0, 0, 0], port)),
            Family::V6 => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
        }
    }

    fn mdns(self) -> IpVersion {
        match self {
            Family::V4 => IpVersion::V4,
            Family::V6 => IpVersion::V6,
        }
    }
}

#[test]
fn three_hosts_of_a_find_each_other_fourth_of_b_stays_out() {
    run(Family::V4);
}

#[test]
fn over_ipv6_three_hosts_of_a_find_each_other_fourth_of_b_stays_out() {
    run(Family::V6);
}

fn run(family: Family) {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        child(&role, family);
        return;
    }
    let hosts: Vec<(&str, u8)> = HOSTS.iter().map(|(s, _, _, h)| (*s, *h)).collect();
    let tag = if family == Family::V4 { "mdns" } else { "md6" };
    let Some(net) = Lan::create(family.test(), tag, SUBNET, &hosts) else {
        return;
    };
    if family == Family::V6 {
        for (ns, (_, host)) in net.hosts.iter().zip(&hosts) {
            let addr = format!("{SUBNET_V6}{host}/64");
            // nodad: usable at once, no duplicate address detection wait.
            let added =
                common::netns::ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0", "nodad"]);
            if let Err(e) = added {
                common::skip::skipped(family.test(), &format!("no IPv6 in the namespaces ({e})"));
                return;
            }
        }
    }
    parent(&net, family);
}

// ---------------------------------------------------------------- parent

/// A child process; killed (by its own pid) if still running on drop.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Default, Debug)]
struct Report {
    announced_port: Option<u16>,
    found: BTreeMap<String, SocketAddr>,
    ready: bool,
    done: Option<String>,
    lines: Vec<String>,
}

fn parent(lan: &Lan, family: Family) {
    let exe = std::env::current_exe().expect("test binary path");
    let (tx, rx) = std_mpsc::channel::<(usize, String)>();
    let mut procs = Vec::new();
    for (i, (_, cluster, node, _)) in HOSTS.iter().enumerate() {
        let expect: Vec<&str> = HOSTS
            .iter()
            .filter(|(_, c, n, _)| c == cluster && n != node)
            .map(|(_, _, n, _)| *n)
            .collect();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lan.hosts[i]])
            .arg(&exe)
            .args(["--exact", family.test(), "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, format!("{cluster}/{node}/{}", expect.join(",")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child in namespace");
        let stdout = child.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        procs.push(Proc {
            name: format!("{}:{cluster}/{node}", lan.hosts[i]),
            child,
        });
    }
    drop(tx);

    let mut reports: Vec<Report> = (0..HOSTS.len()).map(|_| Report::default()).collect();
    let deadline = Instant::now() + PARENT_DEADLINE;
    let record = |reports: &mut Vec<Report>, i: usize, line: String| {
        let r = &mut reports[i];
        // libtest may print "test NAME ... " on the same line first.
        let ours = line.find(MARK).map_or("", |at| &line[at + MARK.len()..]);
        let mut words = ours.split_whitespace();
        match words.next() {
            Some("ANNOUNCED") => r.announced_port = words.next().and_then(|p| p.parse().ok()),
            Some("FOUND") => {
                if let (Some(id), Some(addr)) = (words.next(), words.next()) {
                    if let Ok(addr) = addr.parse() {
                        r.found.insert(id.to_string(), addr);
                    }
                }
            }
            Some("READY") => r.ready = true,
            Some("DONE") => r.done = Some(ours.to_string()),
            _ => {}
        }
        r.lines.push(line);
    };

    // Phase 1: every process reports READY (found what it expects).
    while !reports.iter().all(|r| r.ready) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, line)) => record(&mut reports, i, line),
            Err(_) => break,
        }
    }
    // Phase 2: end them all (EOF on stdin) and collect their final lines.
    for p in procs.iter_mut() {
        drop(p.child.stdin.take());
    }
    while let Ok((i, line)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        record(&mut reports, i, line);
    }
    let mut failures = Vec::new();
    for (p, r) in procs.iter_mut().zip(&reports) {
        let status = p.child.wait().expect("wait child");
        let mut err = String::new();
        if let Some(mut e) = p.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if !status.success() || !r.ready || r.done.is_none() {
            failures.push(format!(
                "{} exited {status}, ready={}, stdout:\n{}\nstderr:\n{err}",
                p.name,
                r.ready,
                r.lines.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "children failed:\n{}",
        failures.join("\n\n")
    );

    // Each "a" host found the other two at their LAN address and announced
    // port; "b" found nobody.
    for (i, (_, cluster, node, _)) in HOSTS.iter().enumerate() {
        let want: BTreeMap<String, SocketAddr> = HOSTS
            .iter()
            .enumerate()
            .filter(|(_, (_, c, n, _))| c == cluster && n != node)
            .map(|(j, (_, c, n, host))| {
                let port = reports[j].announced_port.expect("announced port");
                let addr = family.addr(*host, port);
                (format!("{c}/{n}"), addr)
            })
            .collect();
        assert_eq!(
            reports[i].found, want,
            "{cluster}/{node}: {:#?}",
            reports[i].lines
        );
    }
    for (p, r) in procs.iter().zip(&reports) {
        eprintln!("{}: {}", p.name, r.done.as_deref().unwrap_or("-"));
    }
    let _ = std::io::stderr().flush();
}

// ----------------------------------------------------------------- child

/// Runs one discovery node: announces `0.0.0.0:<port>` (`[::]` over IPv6) (the receivers fill
/// in our LAN address), browses, prints what it finds, `READY` once it has
/// found `expect` (and has seen and ignored another cluster), and `DONE`
/// when stdin closes.
fn child(role: &str, family: Family) {
    let mut parts = role.splitn(3, '/');
    let (cluster, node, expect) = match (parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(n), Some(e)) => (c.to_string(), n.to_string(), e.to_string()),
        _ => panic!("bad role {role:?}"),
    };
    let expect: BTreeSet<String> = expect
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|n| format!("{cluster}/{n}"))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let socket = UdpSocket::bind(family.any(0)).expect("bind gossip stand-in");
        let port = socket.local_addr().expect("addr").port();
        let ann = Announcement {
            cluster: cluster.clone(),
            node_id: node.clone(),
            gossip_addr: family.any(port),
            protocol_version: 1,
        };
        let discovery = MdnsDiscovery::start(MdnsConfig {
            interfaces: Interfaces::Named("eth0".into()),
            ip_version: family.mdns(),
            ..Default::default()
        })
        .expect("start mDNS");
        discovery.announce(&ann).expect("announce");
        let mut rx = discovery
            .browse(PeerFilter::for_announcement(&ann))
            .expect("browse");
        println!("{MARK}ANNOUNCED {port}");

        // stdin EOF = the parent says stop.
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = stop_tx.send(());
        });

        let mut found: BTreeMap<String, SocketAddr> = BTreeMap::new();
        let mut ready = false;
        let deadline = tokio::time::sleep(CHILD_DEADLINE);
        tokio::pin!(deadline);
        let mut check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = &mut deadline => panic!(
                    "{cluster}/{node}: deadline; found {found:?}, stats {:?}",
                    discovery.stats()
                ),
                ev = rx.recv() => match ev {
                    Some(DiscoveryEvent::Found(p)) => {
                        let id = format!("{}/{}", p.cluster, p.node_id);
                        println!("{MARK}FOUND {id} {}", p.gossip_addr);
                        found.insert(id, p.gossip_addr);
                    }
                    Some(DiscoveryEvent::Lost { node_id, cluster: c }) => {
                        println!("{MARK}LOST {c}/{node_id}");
                        found.remove(&format!("{c}/{node_id}"));
                    }
                    None => panic!("browse channel closed"),
                },
                _ = check.tick() => {}
            }
            let keys: BTreeSet<String> = found.keys().cloned().collect();
            if !ready && keys == expect && discovery.stats().ignored_other_cluster >= 1 {
                ready = true;
                println!("{MARK}READY");
            }
        }
        let stats = discovery.stats();
        discovery.shutdown().await;
        drop(socket);
        println!(
            "{MARK}DONE found={:?} discovered={} ignored_other_cluster={} ignored_bad={}",
            found.keys().collect::<Vec<_>>(),
            stats.discovered,
            stats.ignored_other_cluster,
            stats.ignored_bad
        );
    });
}
