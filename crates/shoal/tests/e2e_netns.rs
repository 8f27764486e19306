//! End to end, with real processes on real addresses: six hosts in network namespaces on one
//! bridge. Host 0 runs an agent with the embedded control plane and publishes an artifact;
//! hosts 1-5 run agents pointed at it and `shoal get` the artifact by name. Every copy must be
//! byte-exact, the control plane must list the six nodes with their labels, and the tracker's
//! peer list must show all six hosts.
//!
//! Host 0's embedded control plane is reached over the lab's network, never over loopback, so
//! every caller presents a credential: the other agents an `agent` token each (issued with
//! `shoal token issue` using host 0's bootstrap `admin.token`), the CLI's `--server` commands the
//! admin token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::Lab;
use common::{Running, SHOAL, payload, same_tree};
use shoal_tracker_proto::{AnnounceReply, AnnounceRequest, Event};

/// One agent process in the lab.
struct Agent {
    host: usize,
    log: PathBuf,
    _process: Running,
}

impl Agent {
    /// Starts `shoal agent` on `host`; `control_plane` is `None` for the embedded one.
    fn start(lab: &Lab, host: usize, dir: &Path, control_plane: Option<&str>) -> Self {
        Self::start_with(lab, host, dir, control_plane, &[])
    }

    /// [`Agent::start`] with more `--label KEY=VALUE`s.
    fn start_with(
        lab: &Lab,
        host: usize,
        dir: &Path,
        control_plane: Option<&str>,
        labels: &[&str],
    ) -> Self {
        let log = (0..)
            .map(|run| dir.join(format!("agent-{host}.{run}.log")))
            .find(|log| !log.exists())
            .unwrap();
        let mut command = lab.command(host, SHOAL);
        command
            .arg("agent")
            .arg("--data-dir")
            .arg(dir.join(format!("data-{host}")))
            .args(["--node-id", &format!("host-{host}")])
            .args(["--label", &format!("rack=r{}", host % 2)])
            .args(["--label", "region=lab"])
            .args(labels.iter().flat_map(|l| ["--label", l]))
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = control_plane {
            command
                .args(["--control-plane", url])
                .arg("--server-token-file")
                .arg(agent_token(lab, host, dir, url));
        }
        let agent = Self {
            host,
            log,
            _process: Running(command.spawn().unwrap()),
        };
        agent.wait_ready(lab);
        agent
    }

    /// Waits until `shoal status` answers inside the host.
    fn wait_ready(&self, lab: &Lab) {
        let start = Instant::now();
        loop {
            if shoal(lab, self.host, &["status", "--json"])
                .status
                .success()
            {
                return;
            }
            assert!(
                start.elapsed() < common::START_WITHIN,
                "agent on host {} did not start:\n{}",
                self.host,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent's status entry for `content_id`, if it holds it.
    fn torrent(&self, lab: &Lab, content_id: &str) -> Option<serde_json::Value> {
        let status = shoal_json(lab, self.host, &["status"]);
        status["torrents"]
            .as_array()?
            .iter()
            .find(|t| t["contentId"] == content_id)
            .cloned()
    }

    /// Polls the agent's status until `done` holds for `content_id`'s entry; that entry.
    fn wait_for(
        &self,
        lab: &Lab,
        content_id: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(torrent) = self.torrent(lab, content_id).filter(|t| done(t)) {
                return torrent;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "host {}: not {what} after 2 minutes: {:?}\n--- log ---\n{}",
                self.host,
                self.torrent(lab, content_id),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The bootstrap admin token file of host 0's embedded control plane.
fn admin_token(dir: &Path) -> String {
    dir.join("data-0/catalog/admin.token")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A file holding an `agent` token for `host`, issued by the admin from host 0 the first time
/// (a restarted agent keeps its credential).
fn agent_token(lab: &Lab, host: usize, dir: &Path, server: &str) -> PathBuf {
    let file = dir.join(format!("agent-{host}.token"));
    if !file.exists() {
        let name = format!("agent-host-{host}");
        let out = shoal(
            lab,
            0,
            &[
                "token",
                "issue",
                "--role",
                "agent",
                &name,
                "--server",
                server,
                "--token-file",
                &admin_token(dir),
            ],
        );
        assert!(
            out.status.success(),
            "issuing {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&file, &out.stdout).unwrap();
    }
    file
}

/// A number field of a status entry (proto3 JSON writes 64-bit integers as strings).
fn number(torrent: &serde_json::Value, field: &str) -> u64 {
    match &torrent[field] {
        serde_json::Value::String(s) => s.parse().unwrap(),
        serde_json::Value::Number(n) => n.as_u64().unwrap(),
        serde_json::Value::Null => 0, // proto3 JSON omits zeros
        other => panic!("{field} is {other}"),
    }
}

/// Runs `shoal ARGS` inside host `host`.
fn shoal(lab: &Lab, host: usize, args: &[&str]) -> Output {
    lab.command(host, SHOAL).args(args).output().unwrap()
}

/// Starts `shoal get REFERENCE -o DEST` inside `host`, its output piped, without waiting.
fn spawn_get(lab: &Lab, host: usize, reference: &str, dest: &Path) -> Child {
    lab.command(host, SHOAL)
        .args(["get", reference, "-o"])
        .arg(dest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `shoal ARGS --json` inside `host`, which must succeed; its JSON.
fn shoal_json(lab: &Lab, host: usize, args: &[&str]) -> serde_json::Value {
    let out = lab
        .command(host, SHOAL)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shoal {args:?} on host {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `shoal publish SOURCE --name NAME_TAG` on `host`; the published artifact's JSON.
fn publish(lab: &Lab, host: usize, source: &Path, name_tag: &str) -> serde_json::Value {
    let published = shoal_json(
        lab,
        host,
        &["publish", source.to_str().unwrap(), "--name", name_tag],
    );
    let artifact = published["artifact"].clone();
    assert!(
        artifact["contentId"].is_string(),
        "no content id in {published}"
    );
    artifact
}

/// Asks the tracker (from inside host 0, over HTTP with curl) for the peers of `info_hash`,
/// as a leecher would, then withdraws the asking peer.
fn tracker_peers(lab: &Lab, announce: &str, info_hash: [u8; 20]) -> BTreeSet<SocketAddr> {
    let mut request = AnnounceRequest {
        info_hash,
        peer_id: *b"-XX0000-e2e-observer",
        port: 9,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Some(Event::Started),
        compact: true,
        numwant: Some(50),
        key: None,
        ip: None,
        no_peer_id: true,
        tracker_id: None,
        site: None,
    };
    let curl = |request: &AnnounceRequest| {
        let out = lab
            .command(0, "curl")
            .args(["-sS", "--fail", &request.url(announce)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match AnnounceReply::parse(&out.stdout).unwrap() {
            AnnounceReply::Ok(response) => response,
            AnnounceReply::Failure(reason) => panic!("tracker refused: {reason}"),
        }
    };
    let response = curl(&request);
    request.event = Some(Event::Stopped);
    curl(&request);
    response.peers.into_iter().collect()
}

fn hex20(hex: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn five_agents_get_a_published_artifact_by_name() {
    const HOSTS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new("e2e", HOSTS);
    let control_plane = format!("http://{}:7421", lab.addr(0));

    let mut agents = vec![Agent::start(&lab, 0, dir.path(), None)];
    for host in 1..HOSTS {
        agents.push(Agent::start(&lab, host, dir.path(), Some(&control_plane)));
    }

    let source = payload(&dir.path().join("src"), true);
    let content_id = publish(&lab, 0, &source, "e2e/tools:1.0")["contentId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every other host retrieves it by name, all at once.
    let gets: Vec<_> = (1..HOSTS)
        .map(|host| {
            let dest = dir.path().join(format!("out-{host}"));
            let child = spawn_get(&lab, host, "e2e/tools:1.0", &dest);
            (host, dest, child)
        })
        .collect();
    for (host, dest, child) in gets {
        let out = common::wait_within(child, Duration::from_secs(120)).unwrap_or_else(|| {
            panic!(
                "get on host {host} did not finish in 2 minutes\n--- agent log ---\n{}\n--- publisher log ---\n{}",
                agents[host].logs(),
                agents[0].logs()
            )
        });
        assert!(
            out.status.success(),
            "get on host {host}: {}\n--- agent log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            agents[host].logs()
        );
        same_tree(&source, &dest, false);
    }

    // The control plane knows every node, alive, with its labels.
    let admin = admin_token(dir.path());
    let nodes = shoal_json(
        &lab,
        1,
        &["nodes", "--server", &control_plane, "--token-file", &admin],
    );
    let nodes = nodes["nodes"].as_array().unwrap();
    let ids: BTreeSet<&str> = nodes
        .iter()
        .map(|n| n["nodeId"].as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = (0..HOSTS).map(|h| format!("host-{h}")).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect(), "{nodes:?}");
    for node in nodes {
        assert_eq!(node["alive"], true, "{node}");
        assert_eq!(node["labels"]["region"], "lab", "{node}");
        let peer: SocketAddr = node["peerAddress"].as_str().unwrap().parse().unwrap();
        let host: usize = node["nodeId"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(lab.addr(host)), "{node}");
    }

    // Each agent's status shows the artifact seeding.
    for host in 0..HOSTS {
        let status = shoal_json(&lab, host, &["status"]);
        let torrent = status["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["contentId"] == content_id.as_str())
            .unwrap_or_else(|| panic!("host {host} does not hold {content_id}: {status}"));
        assert_eq!(torrent["state"], "TORRENT_STATE_SEEDING", "{torrent}");
    }

    // The tracker lists all six hosts in the swarm (agents announce "completed" when done;
    // poll briefly for the last announce to land).
    let info = shoal_json(&lab, 0, &["info", "e2e/tools:1.0"]);
    let v1 = info["infoHashV1"].as_str().unwrap();
    let announce = format!("http://{}:6969/announce", lab.addr(0));
    let want: BTreeSet<IpAddr> = (0..HOSTS).map(|h| IpAddr::V4(lab.addr(h))).collect();
    let start = Instant::now();
    loop {
        let peers = tracker_peers(&lab, &announce, hex20(v1));
        let ips: BTreeSet<IpAddr> = peers.iter().map(SocketAddr::ip).collect();
        if want.is_subset(&ips) {
            assert!(
                peers.iter().all(|p| p.port() == 6881 || p.port() == 9),
                "{peers:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the tracker lists {ips:?}, not every host {want:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each agent's metrics count its announces to the control plane's tracker.
    for host in 0..HOSTS {
        let out = lab
            .command(host, "curl")
            .args(["-sS", "--fail", "http://127.0.0.1:7420/metrics"])
            .output()
            .unwrap();
        let metrics = String::from_utf8_lossy(&out.stdout);
        let ok: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("shoal_tracker_announces_total{result=\"ok\"} "))
            .unwrap_or_else(|| panic!("host {host}: no announce metric in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(ok >= 1, "host {host}: {metrics}");
        assert!(
            metrics.contains("shoal_tracker_announce_duration_seconds_count"),
            "{metrics}"
        );
    }

    // `agents` drops before `lab`: the processes stop before their namespaces go.
}

/// The restart rules: an agent killed with SIGKILL mid-download resumes the download by itself
/// when it starts again, fetching only what it had not verified; an agent killed mid-seed
/// seeds again at once, trusting its record instead of hashing the data again.
#[test]
fn killed_agents_resume_downloading_and_seeding() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new("restart", 3);
    // 5 MB/s out of the publisher: slow enough to kill a download in its middle.
    lab.shape_egress(0, "40mbit");
    let control_plane = format!("http://{}:7421", lab.addr(0));
    let mut seed = Agent::start(&lab, 0, dir.path(), None);
    let mut leech = Agent::start(&lab, 1, dir.path(), Some(&control_plane));

    let source = dir.path().join("src/big.bin");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    let artifact = &publish(&lab, 0, &source, "restart/big:1");
    let content_id = artifact["contentId"].as_str().unwrap().to_owned();
    let total = number(artifact, "size");
    let piece = number(artifact, "pieceLength");

    // Kill the downloader a quarter of the way through.
    let dest = dir.path().join("out-1");
    let get = spawn_get(&lab, 1, "restart/big:1", &dest);
    let before = leech.wait_for(&lab, &content_id, "a quarter verified", |t| {
        number(t, "bytesVerified") >= total / 4
    });
    drop(leech); // SIGKILL
    let verified_before = number(&before, "bytesVerified");
    assert!(
        verified_before < total,
        "finished before the kill: {before}"
    );
    let out = common::wait_within(get, Duration::from_secs(30)).expect("get ends with its agent");
    assert!(!out.status.success(), "get succeeded without its agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!dest.exists(), "a partial copy was exposed");

    // Started again, it resumes by itself, and fetches only what it had not verified (what
    // was in flight at the kill may come again: a few pieces).
    leech = Agent::start(&lab, 1, dir.path(), Some(&control_plane));
    let resumed = leech.wait_for(&lab, &content_id, "seeding", |t| {
        t["state"] == "TORRENT_STATE_SEEDING"
    });
    let downloaded = number(&resumed, "downloaded");
    let slack = 8 * piece;
    assert!(
        downloaded <= total - verified_before + slack,
        "after the restart it downloaded {downloaded} bytes; {verified_before} of {total} were verified before"
    );
    let out = shoal(
        &lab,
        1,
        &["get", "restart/big:1", "-o", dest.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_tree(&source, &dest, false);

    // Kill the seed while a third host downloads from it alone.
    drop(leech);
    let third = Agent::start(&lab, 2, dir.path(), Some(&control_plane));
    let dest = dir.path().join("out-2");
    let get = spawn_get(&lab, 2, "restart/big:1", &dest);
    third.wait_for(&lab, &content_id, "a tenth verified", |t| {
        number(t, "bytesVerified") >= total / 10
    });
    drop(seed); // SIGKILL
    seed = Agent::start(&lab, 0, dir.path(), None);
    let seeding = seed
        .torrent(&lab, &content_id)
        .expect("the restarted seed holds the artifact");
    assert_eq!(seeding["state"], "TORRENT_STATE_SEEDING", "{seeding}");
    assert_eq!(number(&seeding, "bytesVerified"), total, "{seeding}");
    assert_eq!(
        number(&seeding, "piecesRechecked"),
        0,
        "the seed hashed its verified data again: {seeding}"
    );
    let out = common::wait_within(get, Duration::from_secs(150)).unwrap_or_else(|| {
        panic!(
            "the download did not finish after the seed came back\n--- downloader ---\n{}\n--- seed ---\n{}",
            third.logs(),
            seed.logs()
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    same_tree(&source, &dest, false);
    let after = seed.torrent(&lab, &content_id).unwrap();
    assert!(
        number(&after, "uploaded") > 0,
        "the restarted seed sent nothing: {after}"
    );
}

/// Central management end to end: eight agents, four of them `role=web`; a placement to
/// `role=web` reaches exactly those four without anyone acting on them, an agent started later
/// with `role=web` gets it too, `placement show` counts them, `placement watch` returns once
/// all are done, and `placement rm` ends it.
#[test]
fn a_placement_reaches_exactly_the_matching_hosts_and_those_that_join_later() {
    const HOSTS: usize = 9;
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new("place", HOSTS);
    let server = format!("http://{}:7421", lab.addr(0));
    let role = |host: usize| if host % 2 == 1 { "role=web" } else { "role=db" };
    let mut agents = vec![Agent::start_with(
        &lab,
        0,
        dir.path(),
        None,
        &["role=origin"],
    )];
    for host in 1..HOSTS - 1 {
        agents.push(Agent::start_with(
            &lab,
            host,
            dir.path(),
            Some(&server),
            &[role(host)],
        ));
    }
    let admin = admin_token(dir.path());
    let source = payload(&dir.path().join("src"), true);
    let content_id = publish(&lab, 0, &source, "e2e/site:1.0")["contentId"]
        .as_str()
        .unwrap()
        .to_owned();

    let placed = shoal_json(
        &lab,
        0,
        &[
            "distribute",
            "e2e/site:1.0",
            "--to",
            "role=web",
            "--name",
            "site",
            "--server",
            &server,
            "--token-file",
            &admin,
        ],
    );
    assert_eq!(placed["name"], "site", "{placed}");
    assert_eq!(placed["selector"], "role=web", "{placed}");
    assert_eq!(placed["totals"]["nodes"], "4", "{placed}");

    let web: Vec<usize> = (1..HOSTS - 1).filter(|h| h % 2 == 1).collect();
    for &host in &web {
        agents[host].wait_for(&lab, &content_id, "seeding", |t| {
            t["state"] == "TORRENT_STATE_SEEDING"
        });
    }
    // The control plane hears of it within a report interval or two.
    let show = |lab: &Lab| {
        shoal_json(
            lab,
            0,
            &[
                "placement",
                "show",
                "site",
                "--server",
                &server,
                "--token-file",
                &admin,
            ],
        )
    };
    let wait_done = |want: &str| {
        let start = Instant::now();
        loop {
            let status = show(&lab);
            if status["placement"]["totals"]["done"] == want {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not {want} done: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let status = wait_done("4");
    let nodes: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["host-1", "host-3", "host-5", "host-7"], "{status}");
    // No db host was given it.
    for host in [2, 4, 6] {
        assert!(
            agents[host].torrent(&lab, &content_id).is_none(),
            "host {host} holds it"
        );
    }

    // An agent that joins later with the label gets it with nobody acting.
    agents.push(Agent::start_with(
        &lab,
        HOSTS - 1,
        dir.path(),
        Some(&server),
        &["role=web"],
    ));
    agents[HOSTS - 1].wait_for(&lab, &content_id, "seeding", |t| {
        t["state"] == "TORRENT_STATE_SEEDING"
    });
    wait_done("5");
    let watched = shoal(
        &lab,
        0,
        &[
            "placement",
            "watch",
            "site",
            "--server",
            &server,
            "--token-file",
            &admin,
        ],
    );
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(String::from_utf8_lossy(&watched.stdout).contains("all 5 nodes done"));
    for host in [2, 4, 6] {
        assert!(
            agents[host].torrent(&lab, &content_id).is_none(),
            "host {host} holds it"
        );
    }

    // Ended: gone from the list; asking for it says so with the not-found exit code.
    let removed = shoal(
        &lab,
        0,
        &[
            "placement",
            "rm",
            "site",
            "--server",
            &server,
            "--token-file",
            &admin,
        ],
    );
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let gone = shoal(
        &lab,
        0,
        &[
            "placement",
            "show",
            "site",
            "--server",
            &server,
            "--token-file",
            &admin,
        ],
    );
    assert_eq!(
        gone.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no placement site"));
}

/// Writes `mib` MiB of data that differs from MiB to MiB at `path`.
fn big_file(path: &Path, mib: usize) -> PathBuf {
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut data = Vec::with_capacity(mib << 20);
    for m in 0..mib {
        data.extend(block.iter().map(|b| b ^ m as u8));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    path.to_owned()
}

/// Central policies end to end. A `metered=true` host under a leech-only policy completes a
/// placement while uploading nothing, though its two peers trade pieces with each other. A
/// host under a download cap downloads at the cap, and when the admin raises the cap the
/// running transfer follows: each measured rate within 10 % of its cap.
#[test]
fn policies_keep_metered_hosts_from_uploading_and_rate_caps_change_live() {
    const MIB: f64 = 1_048_576.0;
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new("policy", 5);
    let server = format!("http://{}:7421", lab.addr(0));
    let token = admin_token(dir.path());
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &server, "--token-file", &token]);
        shoal_json(&lab, 0, &all)
    };
    let agents = [
        Agent::start_with(&lab, 0, dir.path(), None, &["role=origin"]),
        Agent::start_with(
            &lab,
            1,
            dir.path(),
            Some(&server),
            &["role=web", "metered=true"],
        ),
        Agent::start_with(&lab, 2, dir.path(), Some(&server), &["role=web"]),
        Agent::start_with(&lab, 3, dir.path(), Some(&server), &["role=web"]),
        Agent::start_with(&lab, 4, dir.path(), Some(&server), &["role=capped"]),
    ];
    let set = admin(&[
        "policy",
        "set",
        "metered",
        "--to",
        "metered=true",
        "--leech-only",
    ]);
    assert_eq!(set["rules"]["uploadRate"], "0", "{set}");
    let node = admin(&["policy", "node", "host-1"]);
    assert_eq!(node["policies"], serde_json::json!(["metered"]), "{node}");

    // Leech-only: the metered host gets the artifact and sends nobody a byte of it.
    let web = big_file(&dir.path().join("src/web.bin"), 24);
    let web_id = publish(&lab, 0, &web, "e2e/web:1")["contentId"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(&[
        "distribute",
        "e2e/web:1",
        "--to",
        "role=web",
        "--name",
        "web",
    ]);
    let done: Vec<serde_json::Value> = (1..=3)
        .map(|h| {
            agents[h].wait_for(&lab, &web_id, "seeding", |t| {
                t["state"] == "TORRENT_STATE_SEEDING"
            })
        })
        .collect();
    assert_eq!(
        number(&done[0], "uploaded"),
        0,
        "the metered host uploaded: {}",
        done[0]
    );
    assert!(
        number(&done[1], "uploaded") + number(&done[2], "uploaded") > 0,
        "the other web hosts traded nothing, so the metered host's zero proves nothing: {done:?}"
    );
    let status = shoal_json(&lab, 1, &["status"]);
    assert_eq!(status["policy"]["rules"]["uploadRate"], "0", "{status}");
    assert_eq!(
        status["policy"]["policies"],
        serde_json::json!(["metered"]),
        "{status}"
    );
    let text = String::from_utf8(shoal(&lab, 1, &["status"]).stdout).unwrap();
    assert!(
        text.contains("policy: leech-only (no uploads) (from metered)"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let later = agents[1].torrent(&lab, &web_id).unwrap();
    assert_eq!(
        number(&later, "uploaded"),
        0,
        "the metered host uploaded: {later}"
    );

    // A download cap, then a higher one while the transfer runs.
    // Low enough that a debug build on a busy two-core CI machine keeps up with the hashing.
    let cap = 1u64 << 20;
    admin(&[
        "policy",
        "set",
        "cap",
        "--to",
        "role=capped",
        "--download-rate",
        &format!("{cap}"),
    ]);
    let image = big_file(&dir.path().join("src/image.bin"), 40);
    let image_id = publish(&lab, 0, &image, "e2e/image:1")["contentId"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(&[
        "distribute",
        "e2e/image:1",
        "--to",
        "role=capped",
        "--name",
        "image",
    ]);
    let capped = &agents[4];
    let downloaded = || {
        capped
            .torrent(&lab, &image_id)
            .map_or(0, |t| number(&t, "downloaded"))
    };
    // The rate over `window`, once the transfer is under way.
    let measure = |window: Duration| {
        let (t0, b0) = (Instant::now(), downloaded());
        std::thread::sleep(window);
        let (t1, b1) = (Instant::now(), downloaded());
        (b1 - b0) as f64 / (t1 - t0).as_secs_f64()
    };
    let start = Instant::now();
    while downloaded() < 1 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the capped download did not start:\n{}",
            capped.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = measure(Duration::from_secs(4));
    admin(&[
        "policy",
        "set",
        "cap",
        "--to",
        "role=capped",
        "--download-rate",
        &format!("{}", 2 * cap),
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let second = measure(Duration::from_secs(4));
    let left = capped.torrent(&lab, &image_id).unwrap();
    assert_ne!(
        left["state"], "TORRENT_STATE_SEEDING",
        "the download ended inside the measurement: {left}"
    );
    for (rate, cap) in [(first, cap), (second, 2 * cap)] {
        let error = (rate - cap as f64).abs() / cap as f64;
        assert!(
            error < 0.10,
            "measured {:.2} MiB/s under a cap of {:.2} MiB/s ({:.0} % off)",
            rate / MIB,
            cap as f64 / MIB,
            error * 100.0
        );
    }
    eprintln!(
        "download rate {:.2} MiB/s under 1 MiB/s, then {:.2} MiB/s under 2 MiB/s",
        first / MIB,
        second / MIB
    );
    capped.wait_for(&lab, &image_id, "seeding", |t| {
        t["state"] == "TORRENT_STATE_SEEDING"
    });
    let copy = capped
        .torrent(&lab, &image_id)
        .map(|t| number(&t, "bytesVerified"))
        .unwrap();
    assert_eq!(copy, 40 << 20);
}
