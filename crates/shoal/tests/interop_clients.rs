//! Interop transfers with the BitTorrent clients people run — Transmission 3.00
//! (`transmission-daemon`), aria2 1.36 (`aria2c`), qBittorrent 4.5 (`qbittorrent-nox`, on
//! libtorrent 2.0) — and with libtorrent (PyPI), over loopback, both directions, each transfer
//! ending in a byte-exact comparison. Peers find each other two ways, tested separately:
//!
//! - **via tracker**: the torrent names a real opentracker (`shoal torrent create --tracker`);
//!   nobody is given a peer address. The seed announces first (the test waits until a scrape
//!   counts it, since opentracker asks clients to re-announce only every 30 minutes), then the
//!   leecher announces and connects to the peers the tracker returns. Transmission ignores
//!   loopback peers from trackers, so when it leeches the order is reversed: it announces
//!   first and the Shoal seed finds it through the tracker and dials it.
//! - **direct**: Shoal is given the client's address with `--peer`. Transmission 3.00 and aria2
//!   have no way to add a peer by address, so when they leech, the Shoal seed dials them;
//!   qBittorrent is handed the Shoal seed through its Web API (`/api/v2/torrents/addPeers`).
//!
//! Cases per client: v1 and hybrid torrents, one file and a directory (nested files and an
//! empty one). Client limitations that rule cases out or bend the comparison, each checked
//! against the installed version rather than assumed (see [`hybrid_capable`], [`Client`]):
//!
//! - Transmission before 4.0 refuses every torrent with a v2 `file tree` ("invalid or corrupt
//!   torrent file": its bencode parser cannot hold the empty-string keys; transmission#1339),
//!   so hybrid torrents are tested with Transmission 4.0 and later only.
//! - aria2 before 1.37 parses hybrid torrents but computes a wrong v1 info-hash (its bencode
//!   decoder mangles empty-string keys, aria2#1903, fixed in 1.37), so it can never meet another
//!   peer of a hybrid torrent; hybrid torrents are tested with aria2 1.37 and later only.
//! - Transmission 3.00 does not create zero-length files.
//! - v1-only clients treat a hybrid torrent's BEP 47 padding files as real files; `clients.py`
//!   writes them (zeros) before such a client seeds, and the comparison skips `.pad/`.
//!
//! qBittorrent also runs v2 torrents, and libtorrent v1, v2 and hybrid through the tracker.
//! The clients and opentracker are Debian packages and libtorrent a PyPI package, installed by
//! `scripts/install-test-deps.sh`; a missing one fails the test with that hint. Everything
//! listens on 127.0.0.1 on ports picked at run time; every process is killed when its test ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]
#![allow(
    clippy::print_stderr,
    reason = "a note says which cases the installed client versions rule out"
)]

mod common;

use common::{Made, payload, same_tree};

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const HINT: &str = "install the interop clients with scripts/install-test-deps.sh";
/// How long any one transfer, check or start-up may take before the test fails.
const WITHIN: Duration = Duration::from_secs(90);

fn clients_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/clients.py")
}

/// A free loopback port (see `common::free_port`).
fn free_port() -> u16 {
    common::free_port(std::net::Ipv4Addr::LOCALHOST)
}

/// A child in its own process group, killed with the whole group when dropped, so a failing
/// assertion leaves nothing behind (`clients.py` also ties each client to its own life).
struct Running {
    child: Child,
    what: String,
}

impl Running {
    /// Starts `command` with its stderr in `log`; `what` names it in failures.
    fn spawn(mut command: Command, what: &str, log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}; {HINT}"));
        Self {
            child,
            what: what.to_owned(),
        }
    }

    /// Waits for the process to exit; an error if it does not within `within` or exits
    /// non-zero.
    fn wait_success(mut self, within: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if status.success() {
                    return Ok(());
                }
                return Err(format!("{} failed ({status})", self.what));
            }
            if start.elapsed() >= within {
                return Err(format!("{} not done after {within:?}", self.what));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the process prints `line` on stdout (it must have been piped).
    fn wait_line(&mut self, line: &str, within: Duration) -> Result<(), String> {
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(l) if l == line => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("{}: no {line:?} after {within:?}", self.what));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    return Err(format!("{} exited ({status}) before {line:?}", self.what));
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The group id is the child's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!("--- {} ---\n{}", log.display(), lines[from..].join("\n"))
}

fn wait_for_port(port: u16, within: Duration) -> Result<(), String> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() >= within {
            return Err(format!("nothing listens on port {port} after {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Made {
    /// The 20-byte hashes peers announce: the v1 info-hash, the v2 one truncated (BEP 52).
    fn announced(&self) -> Vec<String> {
        let v2 = self.v2.as_ref().map(|h| h[..40].to_owned());
        self.v1.iter().cloned().chain(v2).collect()
    }

    /// The hash whose seeds we wait for: v1 when there is one (every client announces it),
    /// else the truncated v2 hash.
    fn scraped(&self) -> String {
        self.announced().into_iter().next().unwrap()
    }
}

fn create(input: &Path, torrent: &Path, version: &str, tracker: Option<&str>) -> Made {
    match tracker {
        Some(url) => common::create(input, torrent, version, &["--tracker", url]),
        None => common::create(input, torrent, version, &[]),
    }
}

/// A client driven through `clients.py`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Transmission,
    Aria2,
    QBittorrent,
    Libtorrent,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Transmission => "transmission",
            Client::Aria2 => "aria2",
            Client::QBittorrent => "qbittorrent",
            Client::Libtorrent => "libtorrent",
        }
    }

    /// Whether the client can be handed a peer address (else the seed must dial it).
    fn takes_peer_addresses(self) -> bool {
        matches!(self, Client::QBittorrent | Client::Libtorrent)
    }

    /// Transmission drops every peer a tracker returns on 127.0.0.0/8 ("martian" addresses,
    /// libtransmission's `isMartianAddr`), so on loopback it never dials a peer it learns from
    /// a tracker; it still accepts connections, and still announces so that others find it.
    fn dials_loopback_peers_from_trackers(self) -> bool {
        self != Client::Transmission
    }

    /// Transmission 3.00 never creates zero-length files (4.0 does).
    fn skips_empty_files(self) -> bool {
        self == Client::Transmission && version_of("transmission-daemon", "-V").0 < 4
    }
}

/// The first `major.minor` in a tool's version output.
fn version_of(program: &str, flag: &str) -> (u32, u32) {
    let out = Command::new(program)
        .arg(flag)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}; {HINT}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|word| {
            let mut parts = word.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
        .unwrap_or_else(|| panic!("{program} {flag}: no version in {text:?}"))
}

/// Whether the installed client can join a hybrid torrent's swarm at all (see the module
/// docs). When it cannot, its hybrid cases are left out, and the test says so on stderr.
#[allow(
    clippy::print_stderr,
    reason = "a case left out is said out loud, never skipped silently"
)]
fn hybrid_capable(client: Client) -> bool {
    let capable = match client {
        Client::Transmission => version_of("transmission-daemon", "-V") >= (4, 0),
        Client::Aria2 => version_of("aria2c", "--version") >= (1, 37),
        Client::QBittorrent | Client::Libtorrent => true,
    };
    if !capable {
        eprintln!(
            "note: the installed {} cannot join hybrid swarms (see interop_clients.rs); \
             testing v1 torrents with it",
            client.name()
        );
    }
    capable
}

/// The (version, multi-file) cases for a client.
fn cases(client: Client) -> Vec<(&'static str, bool)> {
    let mut versions = vec!["v1"];
    if hybrid_capable(client) {
        versions.push("hybrid");
    }
    if client == Client::QBittorrent {
        versions.push("v2");
    }
    versions
        .into_iter()
        .flat_map(|v| [(v, false), (v, true)])
        .collect()
}

/// How the leecher learns where the seed is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Tracker,
    Direct,
}

/// One test case's directory, payload, torrent and (via tracker) running opentracker.
struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
    made: Made,
    tracker: Option<(Running, String)>,
    label: String,
}

impl Case {
    fn new(client: Client, version: &str, multi: bool, via: Via) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let input = payload(&data, multi);
        let torrent = dir.path().join("t.torrent");
        let label = format!("{} {version} multi={multi} {via:?}", client.name());
        if via == Via::Direct {
            let made = create(&input, &torrent, version, None);
            return Self {
                dir,
                input,
                made,
                tracker: None,
                label,
            };
        }
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/announce");
        let made = create(&input, &torrent, version, Some(&url));
        let tracker_dir = dir.path().join("tracker");
        std::fs::create_dir(&tracker_dir).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(clients_py())
            .arg("tracker")
            .arg(port.to_string())
            .arg(&tracker_dir)
            .args(made.announced())
            .stdout(Stdio::null());
        let tracker = Running::spawn(command, "opentracker", &dir.path().join("tracker.log"));
        let case = Self {
            dir,
            input,
            made,
            tracker: Some((tracker, url)),
            label,
        };
        case.check(|| wait_for_port(port, WITHIN));
        case
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Via tracker: waits until the tracker counts one `seeds` or `leechers` for the torrent.
    fn wait_for_announce(&self, kind: &str) -> Result<(), String> {
        let Some((_, url)) = &self.tracker else {
            return Ok(());
        };
        let mut command = Command::new("python3");
        command
            .arg(clients_py())
            .args(["wait-peers", url, &self.made.scraped(), kind, "1"])
            .arg(WITHIN.as_secs().to_string())
            .stdout(Stdio::null());
        Running::spawn(
            command,
            &format!("{}: waiting for the tracker to list {kind}", self.label),
            &self.path(&format!("wait-{kind}.log")),
        )
        .wait_success(WITHIN + Duration::from_secs(10))
    }

    fn shoal_seed(&self, port: u16, peer: Option<u16>) -> Running {
        let mut command = Command::new(SHOAL);
        command
            .args(["torrent", "seed"])
            .arg(&self.made.torrent)
            .arg("--data")
            .arg(&self.input)
            .args(["--listen", &port.to_string(), "--seed-for", "300s"])
            .env("SHOAL_LOG", "debug")
            .stdout(Stdio::null());
        if let Some(p) = peer {
            command.args(["--peer", &format!("127.0.0.1:{p}")]);
        }
        Running::spawn(
            command,
            &format!("{}: shoal seed", self.label),
            &self.path("shoal-seed.log"),
        )
    }

    fn shoal_download(&self, out: &Path, peer: Option<u16>) -> Result<(), String> {
        let mut command = Command::new(SHOAL);
        command
            .args(["torrent", "download"])
            .arg(&self.made.torrent)
            .arg("-o")
            .arg(out)
            .env("SHOAL_LOG", "debug")
            .stdout(Stdio::null());
        if let Some(p) = peer {
            command.args(["--peer", &format!("127.0.0.1:{p}")]);
        }
        Running::spawn(
            command,
            &format!("{}: shoal download", self.label),
            &self.path("shoal-download.log"),
        )
        .wait_success(WITHIN)
    }

    fn client_seed(&self, client: Client, port: u16) -> Result<Running, String> {
        let mut command = Command::new("python3");
        command
            .arg(clients_py())
            .args(["seed", client.name()])
            .arg(&self.made.torrent)
            .arg(self.input.parent().unwrap())
            .arg(self.path(&format!("{}-state", client.name())))
            .arg(port.to_string())
            .stdout(Stdio::piped());
        let mut seed = Running::spawn(
            command,
            &format!("{}: {} seed", self.label, client.name()),
            &self.path("client-seed.log"),
        );
        seed.wait_line("seeding", WITHIN + Duration::from_secs(30))?;
        Ok(seed)
    }

    fn client_download(
        &self,
        client: Client,
        save: &Path,
        port: u16,
        peer: Option<u16>,
    ) -> Running {
        std::fs::create_dir_all(save).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(clients_py())
            .args(["download", client.name()])
            .arg(&self.made.torrent)
            .arg(save)
            .arg(self.path(&format!("{}-state", client.name())))
            .arg(port.to_string())
            .arg(WITHIN.as_secs().to_string())
            .stdout(Stdio::null());
        if let Some(p) = peer {
            command.arg(format!("127.0.0.1:{p}"));
        }
        Running::spawn(
            command,
            &format!("{}: {} download", self.label, client.name()),
            &self.path("client-download.log"),
        )
    }

    /// Runs `f`; if it fails, panics with its error and the tail of every log of the case
    /// (Shoal's, the helpers', the clients' own).
    fn check(&self, f: impl FnOnce() -> Result<(), String>) {
        if let Err(e) = f() {
            let mut logs = Vec::new();
            collect_logs(self.dir.path(), &mut logs);
            logs.sort();
            let tails: Vec<String> = logs.iter().map(|l| tail(l)).collect();
            panic!("{}: {e}\n\n{}", self.label, tails.join("\n"));
        }
    }
}

fn collect_logs(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "data") {
                collect_logs(&path, into);
            }
        } else if path.extension().is_some_and(|e| e == "log") {
            into.push(path);
        }
    }
}

/// Shoal seeds, `client` downloads, the bytes are compared.
fn shoal_seeds_to(client: Client, via: Via, cases: &[(&'static str, bool)]) {
    let within = WITHIN + Duration::from_secs(30);
    for &(version, multi) in cases {
        let case = Case::new(client, version, multi, via);
        let seed_port = free_port();
        let client_port = free_port();
        let save = case.path("client");
        case.check(|| match via {
            Via::Tracker if !client.dials_loopback_peers_from_trackers() => {
                // The leecher announces first; the seed finds it through the tracker and dials.
                let download = case.client_download(client, &save, client_port, None);
                case.wait_for_announce("leechers")?;
                let _seed = case.shoal_seed(seed_port, None);
                download.wait_success(within)
            }
            Via::Tracker => {
                let _seed = case.shoal_seed(seed_port, None);
                case.wait_for_announce("seeds")?;
                case.client_download(client, &save, client_port, None)
                    .wait_success(within)
            }
            Via::Direct if client.takes_peer_addresses() => {
                let _seed = case.shoal_seed(seed_port, None);
                wait_for_port(seed_port, WITHIN)?;
                case.client_download(client, &save, client_port, Some(seed_port))
                    .wait_success(within)
            }
            Via::Direct => {
                // The client cannot be told where the seed is: the seed dials the client
                // (and dials again until it answers).
                let download = case.client_download(client, &save, client_port, None);
                let _seed = case.shoal_seed(seed_port, Some(client_port));
                download.wait_success(within)
            }
        });
        same_tree(
            &case.input,
            &save.join(case.input.file_name().unwrap()),
            client.skips_empty_files(),
        );
    }
}

/// `client` seeds, Shoal downloads, the bytes are compared.
fn seeds_to_shoal(client: Client, via: Via, cases: &[(&'static str, bool)]) {
    for &(version, multi) in cases {
        let case = Case::new(client, version, multi, via);
        let client_port = free_port();
        let out = case.path("shoal");
        case.check(|| {
            let _seed = case.client_seed(client, client_port)?;
            match via {
                Via::Tracker => {
                    case.wait_for_announce("seeds")?;
                    case.shoal_download(&out, None)
                }
                Via::Direct => case.shoal_download(&out, Some(client_port)),
            }
        });
        same_tree(
            &case.input,
            &out.join(case.input.file_name().unwrap()),
            false,
        );
    }
}

// --- Transmission ------------------------------------------------------------------------------

#[test]
fn shoal_seeds_to_transmission_direct() {
    shoal_seeds_to(
        Client::Transmission,
        Via::Direct,
        &cases(Client::Transmission),
    );
}

#[test]
fn shoal_seeds_to_transmission_via_tracker() {
    shoal_seeds_to(
        Client::Transmission,
        Via::Tracker,
        &cases(Client::Transmission),
    );
}

#[test]
fn transmission_seeds_to_shoal_direct() {
    seeds_to_shoal(
        Client::Transmission,
        Via::Direct,
        &cases(Client::Transmission),
    );
}

#[test]
fn transmission_seeds_to_shoal_via_tracker() {
    seeds_to_shoal(
        Client::Transmission,
        Via::Tracker,
        &cases(Client::Transmission),
    );
}

// --- aria2 -------------------------------------------------------------------------------------

#[test]
fn shoal_seeds_to_aria2_direct() {
    shoal_seeds_to(Client::Aria2, Via::Direct, &cases(Client::Aria2));
}

#[test]
fn shoal_seeds_to_aria2_via_tracker() {
    shoal_seeds_to(Client::Aria2, Via::Tracker, &cases(Client::Aria2));
}

#[test]
fn aria2_seeds_to_shoal_direct() {
    seeds_to_shoal(Client::Aria2, Via::Direct, &cases(Client::Aria2));
}

#[test]
fn aria2_seeds_to_shoal_via_tracker() {
    seeds_to_shoal(Client::Aria2, Via::Tracker, &cases(Client::Aria2));
}

// --- qBittorrent -------------------------------------------------------------------------------

/// qBittorrent's v1 and hybrid cases as leecher; v2 is [`shoal_seeds_v2_to_qbittorrent`].
fn qbittorrent_leech_cases() -> Vec<(&'static str, bool)> {
    cases(Client::QBittorrent)
        .into_iter()
        .filter(|&(v, _)| v != "v2")
        .collect()
}

#[test]
fn shoal_seeds_to_qbittorrent_direct() {
    shoal_seeds_to(Client::QBittorrent, Via::Direct, &qbittorrent_leech_cases());
}

#[test]
fn shoal_seeds_to_qbittorrent_via_tracker() {
    shoal_seeds_to(
        Client::QBittorrent,
        Via::Tracker,
        &qbittorrent_leech_cases(),
    );
}

/// libtorrent 2.0 (qBittorrent 4.5) asks for whole 16 KiB blocks at the end of a v2 file's
/// last piece, past the file's end (the implicit padding up to the piece boundary); kept
/// apart so that this one behaviour has its own name when it fails.
#[test]
fn shoal_seeds_v2_to_qbittorrent_direct() {
    shoal_seeds_to(
        Client::QBittorrent,
        Via::Direct,
        &[("v2", false), ("v2", true)],
    );
}

#[test]
fn qbittorrent_seeds_to_shoal_direct() {
    seeds_to_shoal(
        Client::QBittorrent,
        Via::Direct,
        &cases(Client::QBittorrent),
    );
}

#[test]
fn qbittorrent_seeds_to_shoal_via_tracker() {
    seeds_to_shoal(
        Client::QBittorrent,
        Via::Tracker,
        &cases(Client::QBittorrent),
    );
}

// --- libtorrent through the tracker (direct transfers are in interop_transfer.rs) ----------

const ALL_VERSIONS: [(&str, bool); 3] = [("v1", true), ("v2", true), ("hybrid", true)];

#[test]
fn libtorrent_seeds_to_shoal_via_tracker() {
    seeds_to_shoal(Client::Libtorrent, Via::Tracker, &ALL_VERSIONS);
}

#[test]
fn shoal_seeds_to_libtorrent_via_tracker() {
    shoal_seeds_to(Client::Libtorrent, Via::Tracker, &ALL_VERSIONS);
}
