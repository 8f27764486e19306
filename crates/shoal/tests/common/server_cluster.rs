//! A replicated control plane of real `shoal server` processes in a [`Lab`]: server node `id`
//! runs on host `id - 1`, its API (which also carries Raft) on `:7421` and its tracker on
//! `:6969`. Nodes can be killed and restarted from their data directories, stopped and resumed.
//! Dropping it stops every node (waking stopped ones first), then deletes the lab.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::netns::Lab;
use super::{Running, SHOAL, START_WITHIN};

/// The server nodes of one cluster, on hosts `0..count` of their lab.
pub struct ServerCluster {
    nodes: Vec<Option<Running>>,
    /// Nodes stopped with SIGSTOP: they accept connections and answer nothing.
    stopped: Mutex<BTreeSet<usize>>,
    dir: tempfile::TempDir,
    // Last: the namespaces go once the processes in them are gone.
    lab: Lab,
}

impl ServerCluster {
    /// Starts `count` server nodes (ids `1..=count` on hosts `0..count`) as one cluster and
    /// waits until node 1 has bootstrapped it (its admin token exists).
    pub fn start(lab: Lab, count: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.secret"), "lab-cluster-secret\n").unwrap();
        let mut cluster = Self {
            nodes: (0..count).map(|_| None).collect(),
            stopped: Mutex::default(),
            dir,
            lab,
        };
        for host in 0..count {
            cluster.spawn(host);
        }
        let start = Instant::now();
        while !cluster.admin_token().exists() {
            assert!(
                start.elapsed() < START_WITHIN,
                "the cluster did not bootstrap:\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Starts server node `host + 1` on its data directory (new or left by an earlier run),
    /// appending to its log.
    fn spawn(&mut self, host: usize) {
        let count = self.nodes.len();
        let members: Vec<String> = (0..count)
            .map(|h| format!("{}={}:7421", h + 1, self.lab.addr(h)))
            .collect();
        let trackers: Vec<String> = (0..count)
            .map(|h| format!("http://{}:6969/announce", self.lab.addr(h)))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(host))
            .unwrap();
        let child = self
            .lab
            .command(host, SHOAL)
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("server-{host}")))
            .args(["--api-listen", &format!("{}:7421", self.lab.addr(host))])
            .args(["--tracker-listen", &format!("{}:6969", self.lab.addr(host))])
            .args(["--announce-url", &trackers[host]])
            .args(["--announce-urls", &trackers.join(",")])
            .args(["--announce-interval", "10"])
            .args(["--node-id", &(host + 1).to_string()])
            .arg("--cluster-secret-file")
            .arg(self.dir.path().join("cluster.secret"))
            .args(["--initial-members", &members.join(",")])
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[host] = Some(Running(child));
    }

    /// The lab the nodes run in (more hosts may follow theirs).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// A directory that lives as long as the cluster, for the test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many server nodes the cluster has.
    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    /// The API URL of the node on `host`.
    pub fn url(&self, host: usize) -> String {
        format!("http://{}:7421", self.lab.addr(host))
    }

    /// Every node's API URL, comma-separated (an agent's `--control-plane`).
    pub fn urls(&self) -> String {
        (0..self.count())
            .map(|h| self.url(h))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The bootstrap admin's token file: written by node 1, which initialized the cluster.
    pub fn admin_token(&self) -> PathBuf {
        self.dir.path().join("server-0/admin.token")
    }

    /// True if and only if the node on `host` runs and is not stopped: it can answer.
    pub fn answering(&self, host: usize) -> bool {
        self.nodes[host].is_some() && !self.stopped.lock().unwrap().contains(&host)
    }

    /// True if and only if the node on `host` runs (perhaps stopped).
    pub fn running(&self, host: usize) -> bool {
        self.nodes[host].is_some()
    }

    /// Sends `signal` (`-KILL`, `-STOP`, ...) to the node on `host`, which must be running.
    pub fn signal(&self, host: usize, signal: &str) {
        let pid = self.nodes[host].as_ref().unwrap().0.id().to_string();
        // `ip netns exec` execs the program, so the child's pid is the server's.
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }

    /// Kills the node on `host` with SIGKILL and reaps it; its data directory stays.
    pub fn kill(&mut self, host: usize) {
        self.signal(host, "-KILL");
        if let Some(mut node) = self.nodes[host].take() {
            let _ = node.0.wait();
        }
        self.stopped.lock().unwrap().remove(&host);
    }

    /// Starts the killed node on `host` again, from its data directory.
    pub fn restart(&mut self, host: usize) {
        assert!(self.nodes[host].is_none(), "node on host {host} runs");
        self.spawn(host);
    }

    /// Stops the node on `host` with SIGSTOP.
    pub fn stop(&self, host: usize) {
        self.signal(host, "-STOP");
        self.stopped.lock().unwrap().insert(host);
    }

    /// Resumes the stopped node on `host` with SIGCONT.
    pub fn resume(&self, host: usize) {
        self.signal(host, "-CONT");
        self.stopped.lock().unwrap().remove(&host);
    }

    fn log_path(&self, host: usize) -> PathBuf {
        self.dir.path().join(format!("server-{host}.log"))
    }

    /// The last lines of every node's log, for failure reports.
    pub fn logs(&self) -> String {
        (0..self.count())
            .map(|h| {
                let log = std::fs::read_to_string(self.log_path(h)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- server {h} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// Waits until a node that answers names a leader other than `not` that runs; that
    /// leader's host. Asks each node through `shoal server status` run on its own host.
    pub fn leader(&self, not: Option<usize>) -> usize {
        let start = Instant::now();
        loop {
            for server in (0..self.count()).filter(|h| self.answering(*h)) {
                let out = self
                    .lab
                    .command(server, SHOAL)
                    .args(["server", "status", "--json", "--server", &self.url(server)])
                    .arg("--token-file")
                    .arg(self.admin_token())
                    .output()
                    .unwrap();
                if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                    && let Some(leader) = status["leaderId"]
                        .as_str()
                        .and_then(|l| l.parse::<usize>().ok())
                    && Some(leader - 1) != not
                    && self.running(leader - 1)
                {
                    return leader - 1;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no leader (other than {not:?}) after 30 s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ServerCluster {
    fn drop(&mut self) {
        // A stopped node is woken to die.
        let stopped = std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|e| e.into_inner()));
        for node in stopped.iter().filter_map(|h| self.nodes[*h].as_ref()) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &node.0.id().to_string()])
                .status();
        }
        self.nodes.clear();
    }
}
