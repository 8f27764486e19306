//! Helpers shared by the end-to-end test files: children that die with their test, free ports,
//! waiting for a listener, payloads, `shoal torrent create`, and byte-exact tree comparison.
#![allow(dead_code, reason = "each test file uses the helpers it needs")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a panic is the failure report"
)]

pub mod netns;
pub mod nginx;
pub mod server_cluster;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `shoal` binary under test.
pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// How long a process may take to start listening (a seed hash-checks its data first).
pub const START_WITHIN: Duration = Duration::from_secs(60);

/// Kills the child when dropped, so a failing assertion leaves no process behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port on `ip` for a process to listen on. Ports come from below the kernel's
/// ephemeral range (32768-60999 by default), so no outgoing connection or `bind(0)` elsewhere
/// can take one between this check and its use (a port from `bind(0)` could be, and a client
/// then failed with "address already in use"); each test process starts at its own offset, so
/// tests running in parallel (one process each under nextest) stay apart.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    const LOW: u32 = 20_000;
    // 30000-31999 is for the ports `interop/clients.py` picks.
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = (LOW + offset) as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip} in {LOW}..{}", LOW + SPAN)
}

/// Waits until something accepts connections on `ip:port`, failing the test after
/// [`START_WITHIN`].
pub fn wait_for_port(ip: Ipv4Addr, port: u16) {
    let start = Instant::now();
    while TcpStream::connect((ip, port)).is_err() {
        assert!(
            start.elapsed() < START_WITHIN,
            "nothing listens on {ip}:{port} after {START_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a payload under `root`: one 6.5 MB file, or a directory `artifact` with nested
/// files, a short file and an empty one. Returns its path.
pub fn payload(root: &Path, multi: bool) -> PathBuf {
    let data = |len: usize, seed: u32| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    };
    std::fs::create_dir_all(root).unwrap();
    if multi {
        let dir = root.join("artifact");
        std::fs::create_dir_all(dir.join("lib/deep")).unwrap();
        std::fs::write(dir.join("lib/a.so"), data(3_000_123, 1)).unwrap();
        std::fs::write(dir.join("lib/deep/b.bin"), data(1_048_576, 2)).unwrap();
        std::fs::write(dir.join("README"), data(777, 3)).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        dir
    } else {
        let file = root.join("image.bin");
        std::fs::write(&file, data(6_500_001, 4)).unwrap();
        file
    }
}

/// A torrent made by `shoal torrent create`, with its info-hashes (hex).
pub struct Made {
    pub torrent: PathBuf,
    pub v1: Option<String>,
    pub v2: Option<String>,
}

/// `shoal torrent create INPUT -o TORRENT --VERSION` with 64 KiB pieces, no date, and `extra`
/// arguments (trackers, web seeds).
pub fn create(input: &Path, torrent: &Path, version: &str, extra: &[&str]) -> Made {
    let out = Command::new(SHOAL)
        .args(["torrent", "create"])
        .arg(input)
        .arg("-o")
        .arg(torrent)
        .args([
            &format!("--{version}"),
            "--piece-length",
            "64KiB",
            "--no-date",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hash = |key: &str| json[key].as_str().map(str::to_owned);
    Made {
        torrent: torrent.to_owned(),
        v1: hash("info_hash_v1"),
        v2: hash("info_hash_v2"),
    }
}

/// Compares every file under `expected` with the same path under `actual`, byte for byte.
/// Skips BEP 47 padding (`.pad/`, present in a v1-only client's seed directory). With
/// `empty_may_be_missing`, a zero-length file may be absent from `actual`.
pub fn same_tree(expected: &Path, actual: &Path, empty_may_be_missing: bool) {
    if expected.is_file() {
        let want = std::fs::read(expected).unwrap();
        if want.is_empty() && empty_may_be_missing && !actual.exists() {
            return;
        }
        let got = std::fs::read(actual)
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", actual.display()));
        assert!(want == got, "{} differs", actual.display());
        return;
    }
    for entry in std::fs::read_dir(expected).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".pad" {
            continue;
        }
        same_tree(
            &entry.path(),
            &actual.join(entry.file_name()),
            empty_may_be_missing,
        );
    }
}

/// Waits for `child` (stdout and stderr piped) to exit; kills it after `limit`, returning
/// `None`, so a stuck command fails its test with a report instead of hanging it.
pub fn wait_within(mut child: Child, limit: Duration) -> Option<std::process::Output> {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}
