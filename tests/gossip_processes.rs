//! Real UDP/TCP on 127.0.0.1: five `clusterfunk gossip-node` processes
//! converge; one killed with SIGKILL is reported failed by the others; one
//! stopped with SIGTERM leaves gracefully and is reported as left.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (node index, parsed JSON event line)
type Lines = mpsc::Receiver<(usize, serde_json::Value)>;

fn spawn(i: usize, join: Option<&str>, tx: mpsc::Sender<(usize, serde_json::Value)>) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clusterfunk"));
    cmd.args([
        "gossip-node",
        "--name",
        &format!("p{i}"),
        "--bind",
        "127.0.0.1:0",
        "--preset",
        "local",
    ]);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gossip-node");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let addr = first
        .strip_prefix("listening ")
        .expect("listening line")
        .to_string();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                if tx.send((i, v)).is_err() {
                    return;
                }
            }
        }
    });
    Node { child, addr }
}

/// Each node's view, built from its event lines: name -> last event kind.
#[derive(Default)]
struct Views(BTreeMap<usize, BTreeMap<String, String>>);

impl Views {
    fn pump_until(&mut self, rx: &Lines, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, v)) => {
                    let kind = v["kind"].as_str().unwrap_or_default().to_string();
                    let name = v["member"]["name"].as_str().unwrap_or_default().to_string();
                    self.0.entry(i).or_default().insert(name, kind);
                }
                Err(_) => return done(self),
            }
        }
        true
    }

    fn sees(&self, i: usize, name: &str, kinds: &[&str]) -> bool {
        self.0
            .get(&i)
            .and_then(|m| m.get(name))
            .is_some_and(|k| kinds.contains(&k.as_str()))
    }
}

#[test]
fn five_processes_converge_detect_failure_and_leave() {
    let (tx, rx) = mpsc::channel();
    let mut nodes = vec![spawn(0, None, tx.clone())];
    let seed = nodes[0].addr.clone();
    assert!(
        seed.starts_with("127.0.0.1:") && !seed.ends_with(":0"),
        "{seed}"
    );
    for i in 1..5 {
        nodes.push(spawn(i, Some(&seed), tx.clone()));
    }
    let mut views = Views::default();
    let alive = ["join", "alive_again", "updated"];
    let all: BTreeSet<usize> = (0..5).collect();
    let converged = views.pump_until(&rx, Duration::from_secs(60), |v| {
        all.iter().all(|&i| {
            all.iter()
                .filter(|&&j| j != i)
                .all(|&j| v.sees(i, &format!("p{j}"), &alive))
        })
    });
    assert!(converged, "did not converge: {:?}", views.0);

    // kill -9 one node: every other reports it failed.
    nodes[3].child.kill().expect("kill");
    let _ = nodes[3].child.wait();
    let failed = views.pump_until(&rx, Duration::from_secs(90), |v| {
        [0, 1, 2, 4].iter().all(|&i| v.sees(i, "p3", &["failed"]))
    });
    assert!(failed, "failure not reported everywhere: {:?}", views.0);

    // SIGTERM another: it leaves gracefully and exits by itself.
    let pid = nodes[4].child.id().to_string();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    let left = views.pump_until(&rx, Duration::from_secs(30), |v| {
        [0, 1, 2].iter().all(|&i| v.sees(i, "p4", &["leave"]))
    });
    assert!(left, "leave not reported: {:?}", views.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = nodes[4].child.try_wait().expect("try_wait") {
            assert!(status.success(), "gossip-node exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gossip-node did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
