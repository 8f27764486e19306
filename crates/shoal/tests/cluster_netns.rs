//! The classic swarm scenarios through a replicated control plane: three `shoal server`
//! processes (a Raft cluster, each also a tracker) and agents, every one in its own network
//! namespace on one bridge. Agents know all three server nodes (API and trackers, one BEP 12
//! tier each) and fail over between them.
//!
//! - Nine agents serve an artifact to a tenth while the Raft leader is killed (SIGKILL) as
//!   they announce; it never returns: the tenth completes byte-exact, the catalog stays
//!   writable, the survivors elect a new leader.
//! - Four honest agents and five malicious peers (seeds that corrupt every block, announced to
//!   the cluster's trackers) serve an artifact: the tenth agent completes with the right bytes
//!   and bans exactly the five.
//! - A server node is stopped (SIGSTOP) while agents announce and publish, and resumed after
//!   5 s: it catches up and then answers reads with everything published meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::Lab;
use common::server_cluster::ServerCluster;
use common::{Running, SHOAL, same_tree};

/// Server nodes are hosts 0..3; agents from 3 on.
const SERVERS: usize = 3;

/// A 3-node control plane and its agents in one lab.
struct Cluster {
    // First: agents stop before the servers and their lab go.
    agents: Vec<(usize, Running, PathBuf)>,
    servers: ServerCluster,
}

impl Cluster {
    /// Starts three server nodes (ids 1..=3 on hosts 0..3) and waits for a leader.
    fn start(tag: &str, hosts: usize) -> Self {
        let servers = ServerCluster::start(Lab::new(tag, hosts), SERVERS);
        servers.leader(None);
        Self {
            agents: Vec::new(),
            servers,
        }
    }

    fn lab(&self) -> &Lab {
        self.servers.lab()
    }

    fn dir(&self) -> &Path {
        self.servers.dir()
    }

    fn server_logs(&self) -> String {
        self.servers.logs()
    }

    /// `shoal ARGS --json` run on `host` against server node `server`, which must succeed.
    fn admin_json(&self, host: usize, server: usize, args: &[&str]) -> serde_json::Value {
        let out = self
            .lab()
            .command(host, SHOAL)
            .args(args)
            .args(["--server", &self.servers.url(server)])
            .arg("--token-file")
            .arg(self.servers.admin_token())
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shoal {args:?} against server {server}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.server_logs()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Starts an agent on `host`, pointed at all three server nodes with its own `agent`
    /// credential.
    fn start_agent(&mut self, host: usize) {
        let token = self.dir().join(format!("agent-{host}.token"));
        let out = self
            .lab()
            .command(host, SHOAL)
            .args([
                "token",
                "issue",
                "--role",
                "agent",
                &format!("agent-{host}"),
            ])
            .args(["--server", &self.servers.url(0)])
            .arg("--token-file")
            .arg(self.servers.admin_token())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&token, &out.stdout).unwrap();
        let log = self.dir().join(format!("agent-{host}.log"));
        let child = self
            .lab()
            .command(host, SHOAL)
            .arg("agent")
            .arg("--data-dir")
            .arg(self.dir().join(format!("agent-{host}")))
            .args(["--node-id", &format!("host-{host}")])
            .args(["--control-plane", &self.servers.urls()])
            .arg("--server-token-file")
            .arg(&token)
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.agents.push((host, Running(child), log));
        let start = Instant::now();
        while !self.shoal(host, &["status", "--json"]).status.success() {
            assert!(
                start.elapsed() < common::START_WITHIN,
                "agent on host {host} did not start:\n{}",
                self.agent_log(host)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn agent_log(&self, host: usize) -> String {
        self.agents
            .iter()
            .find(|(h, _, _)| *h == host)
            .map(|(_, _, log)| std::fs::read_to_string(log).unwrap_or_default())
            .unwrap_or_default()
    }

    fn shoal(&self, host: usize, args: &[&str]) -> Output {
        self.lab().command(host, SHOAL).args(args).output().unwrap()
    }

    /// `shoal publish SOURCE --name NAME_TAG` through the agent on `host`; the artifact.
    fn publish(&self, host: usize, source: &Path, name_tag: &str) -> serde_json::Value {
        // A publish carries the caller's credential (an agent's own may not publish).
        let admin = self.servers.admin_token();
        let out = self.shoal(
            host,
            &[
                "publish",
                source.to_str().unwrap(),
                "--name",
                name_tag,
                "--json",
                "--token-file",
                admin.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "publish {name_tag} on host {host}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.agent_log(host),
            self.server_logs()
        );
        let published: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        published["artifact"].clone()
    }

    /// `shoal get NAME_TAG -o DEST` on `host`, which must finish within 2 minutes.
    fn get(&self, host: usize, name_tag: &str, dest: &Path) {
        let child = self
            .lab()
            .command(host, SHOAL)
            .args(["get", name_tag, "-o"])
            .arg(dest)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = common::wait_within(child, Duration::from_secs(120)).unwrap_or_else(|| {
            panic!(
                "get {name_tag} on host {host} did not finish in 2 minutes\n--- agent ---\n{}\n{}",
                self.agent_log(host),
                self.server_logs()
            )
        });
        assert!(
            out.status.success(),
            "get {name_tag} on host {host}: {}\n--- agent ---\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.agent_log(host),
            self.server_logs()
        );
    }

    /// The status entry of `content_id` on the agent of `host`.
    fn torrent(&self, host: usize, content_id: &str) -> serde_json::Value {
        let out = self.shoal(host, &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["contentId"] == content_id)
            .cloned()
            .unwrap_or_else(|| panic!("host {host} does not hold {content_id}: {status}"))
    }

    /// The names in the catalog, read through server node `server` (its REST API).
    fn catalog(&self, server: usize) -> BTreeSet<String> {
        let token = std::fs::read_to_string(self.servers.admin_token()).unwrap();
        let out = self
            .lab()
            .command(SERVERS, "curl")
            .args(["-sS", "--fail", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!(
                "{}/v1/catalog/artifacts?page_size=1000",
                self.servers.url(server)
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "listing through server {server}: {}
{}",
            String::from_utf8_lossy(&out.stderr),
            self.server_logs()
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        listed["artifacts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["nameTag"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One file of `len` bytes (a single file: the malicious seeds serve it as one).
fn file(dir: &Path, name: &str, len: usize, seed: u32) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn nine_agents_serve_a_tenth_while_the_leader_is_killed() {
    const AGENTS: usize = 10;
    let mut cluster = Cluster::start("clkill", SERVERS + AGENTS);
    for host in SERVERS..SERVERS + AGENTS {
        cluster.start_agent(host);
    }
    let src = cluster.dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let source = file(&src, "image.bin", 24 << 20, 7);
    let first = SERVERS;
    let last = SERVERS + AGENTS - 1;
    let artifact = cluster.publish(first, &source, "lab/image:1");
    let content_id = artifact["contentId"].as_str().unwrap().to_owned();
    // Nine agents hold it.
    for host in first + 1..last {
        cluster.get(
            host,
            "lab/image:1",
            &cluster.dir().join(format!("out-{host}")),
        );
    }

    // Kill the leader while the nine announce (every 10 s): it never comes back.
    let leader = cluster.servers.leader(None);
    cluster.servers.kill(leader);
    let elected_after = Instant::now();
    let new_leader = cluster.servers.leader(Some(leader));
    eprintln!(
        "killed leader on host {leader}; host {new_leader} leads {:?} later",
        elected_after.elapsed()
    );

    // The tenth gets it through the survivors, byte for byte.
    let dest = cluster.dir().join("out-last");
    cluster.get(last, "lab/image:1", &dest);
    same_tree(&source, &dest, false);
    let torrent = cluster.torrent(last, &content_id);
    assert_eq!(torrent["state"], "TORRENT_STATE_SEEDING", "{torrent}");

    // The catalog stays writable, and every survivor reads what was written.
    let second = file(&src, "image2.bin", 1 << 20, 8);
    cluster.publish(last, &second, "lab/image:2");
    for server in (0..SERVERS).filter(|s| *s != leader) {
        let names = cluster.catalog(server);
        assert!(
            names.contains("lab/image:1") && names.contains("lab/image:2"),
            "server {server} lists {names:?}"
        );
    }
}

#[test]
fn honest_and_malicious_agents_through_the_cluster() {
    // Hosts: 3 servers, 4 honest agents, 5 malicious seeds, 1 leecher.
    let mut cluster = Cluster::start("clbad", SERVERS + 10);
    let honest: Vec<usize> = (SERVERS..SERVERS + 4).collect();
    let liars: Vec<usize> = (SERVERS + 4..SERVERS + 9).collect();
    let leecher = SERVERS + 9;
    for &host in honest.iter().chain([&leecher]) {
        cluster.start_agent(host);
    }
    let src = cluster.dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let source = file(&src, "data.bin", 16 << 20, 3);
    let artifact = cluster.publish(honest[0], &source, "lab/data:1");
    let content_id = artifact["contentId"].as_str().unwrap().to_owned();
    for &host in &honest[1..] {
        cluster.get(
            host,
            "lab/data:1",
            &cluster.dir().join(format!("out-{host}")),
        );
    }
    let info: serde_json::Value = serde_json::from_slice(
        &cluster
            .shoal(leecher, &["info", "lab/data:1", "--json"])
            .stdout,
    )
    .unwrap();
    let v1 = info["infoHashV1"].as_str().unwrap().to_owned();
    let piece_length = info["pieceLength"]
        .as_str()
        .map(|s| s.parse::<u64>().unwrap())
        .or_else(|| info["pieceLength"].as_u64())
        .unwrap();

    // The liars serve corrupt blocks, and tell every tracker of the cluster they seed it.
    let fake_peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/fake_peer.py");
    let mut fakes = Vec::new();
    for &host in &liars {
        let addr = cluster.lab().addr(host);
        let mut child = cluster
            .lab()
            .command(host, "python3")
            .arg(&fake_peer)
            .arg("--data")
            .arg(&source)
            .args(["--piece-length", &piece_length.to_string()])
            .args(["--info-hash", &v1])
            .args(["--listen", &format!("{addr}:6881")])
            .arg("--corrupt")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "listening");
        fakes.push(Running(child));
        let escaped: String = (0..20)
            .map(|i| format!("%{}", &v1[2 * i..2 * i + 2]))
            .collect();
        for server in 0..SERVERS {
            let url = format!(
                "http://{}:6969/announce?info_hash={escaped}&peer_id=-FK0001-{host:012}&port=6881&uploaded=0&downloaded=0&left=0&compact=1&event=started",
                cluster.lab().addr(server)
            );
            let out = cluster
                .lab()
                .command(host, "curl")
                .args(["-sS", "--fail", &url])
                .output()
                .unwrap();
            assert!(out.status.success(), "announce from liar {host}: {out:?}");
        }
    }

    let dest = cluster.dir().join("out-leecher");
    cluster.get(leecher, "lab/data:1", &dest);
    same_tree(&source, &dest, false);
    let torrent = cluster.torrent(leecher, &content_id);
    let banned = torrent["bannedPeers"].as_u64().unwrap_or(0);
    assert_eq!(
        banned,
        5,
        "the leecher bans exactly the five liars: {torrent}\n{}",
        cluster.agent_log(leecher)
    );
    drop(fakes);
}

#[test]
fn a_stalled_server_node_catches_up_and_reads_consistently() {
    const AGENTS: usize = 4;
    let mut cluster = Cluster::start("clstall", SERVERS + AGENTS);
    for host in SERVERS..SERVERS + AGENTS {
        cluster.start_agent(host);
    }
    let src = cluster.dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let source = file(&src, "a.bin", 4 << 20, 1);
    cluster.publish(SERVERS, &source, "lab/stall:0");

    // Stop the leader: the others elect a new one; agents announce and publish meanwhile.
    let stalled = cluster.servers.leader(None);
    cluster.servers.stop(stalled);
    let stopped_at = Instant::now();
    let new_leader = cluster.servers.leader(Some(stalled));
    // Publishes and a download run meanwhile (agents that were talking to the stopped node
    // fail over when their calls time out); the node is resumed after 5 s regardless.
    let mut published = vec!["lab/stall:0".to_owned()];
    for i in 1..=3u32 {
        published.push(format!("lab/stall:{i}"));
    }
    std::thread::scope(|scope| {
        let cluster = &cluster;
        let src = &src;
        let work: Vec<_> = (1..=3u32)
            .map(|i| {
                scope.spawn(move || {
                    let f = file(src, &format!("b{i}.bin"), 256 << 10, i);
                    cluster.publish(
                        SERVERS + (i as usize % AGENTS),
                        &f,
                        &format!("lab/stall:{i}"),
                    );
                })
            })
            .chain(std::iter::once(scope.spawn(move || {
                cluster.get(SERVERS + 1, "lab/stall:0", &cluster.dir().join("out-stall"));
            })))
            .collect();
        std::thread::sleep(Duration::from_secs(5).saturating_sub(stopped_at.elapsed()));
        cluster.servers.resume(stalled);
        eprintln!(
            "stalled host {stalled} for {:?}; host {new_leader} led meanwhile",
            stopped_at.elapsed()
        );
        for w in work {
            w.join().unwrap();
        }
    });

    // It rejoins, catches up, and its reads (linearizable) show every publish.
    let start = Instant::now();
    loop {
        let status = cluster.admin_json(SERVERS, stalled, &["server", "status"]);
        let leader = status["leaderId"]
            .as_str()
            .and_then(|l| l.parse::<usize>().ok());
        let applied = status["appliedIndex"]
            .as_str()
            .and_then(|a| a.parse::<u64>().ok());
        let commit = status["commitIndex"]
            .as_str()
            .and_then(|a| a.parse::<u64>().ok());
        if leader.is_some() && applied.is_some() && applied == commit {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server {stalled} did not catch up: {status}\n{}",
            cluster.server_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let names = cluster.catalog(stalled);
    let want: BTreeSet<String> = published.into_iter().collect();
    assert_eq!(names, want, "the resumed node reads every publish");
    // And a write through it lands everywhere.
    let f = file(&src, "c.bin", 1 << 20, 9);
    cluster.publish(SERVERS, &f, "lab/stall:after");
    for server in 0..SERVERS {
        assert!(cluster.catalog(server).contains("lab/stall:after"));
    }
}
