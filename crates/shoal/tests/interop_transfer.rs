//! Interop transfers over loopback, both directions, byte-exact: Shoal seed -> libtorrent
//! leecher and libtorrent seed -> Shoal leecher, for v1, v2 and hybrid torrents, with peers
//! given directly (`--peer`).
//!
//! libtorrent (PyPI) is installed by `scripts/install-test-deps.sh`; a missing install fails
//! the test with that hint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn lt_tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_tool.py")
}

/// A free loopback port (bound then released; good enough for a test on one machine).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped, so a failing assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, within: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < within,
            "nothing listens on port {port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A payload: one file, or a directory with nested files and an empty one.
fn payload(root: &Path, multi: bool) -> PathBuf {
    let data = |len: usize, seed: u32| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    };
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

fn create(input: &Path, torrent: &Path, version: &str) {
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
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn same_tree(a: &Path, b: &Path) {
    if a.is_file() {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{} differs",
            b.display()
        );
        return;
    }
    for entry in std::fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        same_tree(&entry.path(), &b.join(entry.file_name()));
    }
}

#[test]
fn shoal_seeds_to_libtorrent() {
    for version in ["v1", "v2", "hybrid"] {
        for multi in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let input = payload(dir.path(), multi);
            let torrent = dir.path().join("t.torrent");
            create(&input, &torrent, version);
            let port = free_port();
            let _seed = Running(
                Command::new(SHOAL)
                    .args(["torrent", "seed"])
                    .arg(&torrent)
                    .arg("--data")
                    .arg(&input)
                    .args(["--listen", &port.to_string(), "--seed-for", "120s"])
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            wait_for_port(port, Duration::from_secs(30));
            let save = dir.path().join("lt");
            std::fs::create_dir(&save).unwrap();
            let out = Command::new("python3")
                .arg(lt_tool())
                .arg("download")
                .arg(&torrent)
                .arg(&save)
                .arg(format!("127.0.0.1:{port}"))
                .arg("90")
                .output()
                .expect("python3 with libtorrent (scripts/install-test-deps.sh)");
            assert!(
                out.status.success(),
                "{version} multi={multi}: libtorrent did not complete: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            same_tree(&input, &save.join(input.file_name().unwrap()));
        }
    }
}

#[test]
fn libtorrent_seeds_to_shoal() {
    for version in ["v1", "v2", "hybrid"] {
        for multi in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let input = payload(dir.path(), multi);
            let torrent = dir.path().join("t.torrent");
            create(&input, &torrent, version);
            let port = free_port();
            let _seed = Running(
                Command::new("python3")
                    .arg(lt_tool())
                    .arg("seed")
                    .arg(&torrent)
                    .arg(dir.path())
                    .arg(port.to_string())
                    .arg("120")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("python3 with libtorrent (scripts/install-test-deps.sh)"),
            );
            wait_for_port(port, Duration::from_secs(30));
            let out_dir = dir.path().join("shoal");
            let out = Command::new(SHOAL)
                .args(["torrent", "download"])
                .arg(&torrent)
                .arg("-o")
                .arg(&out_dir)
                .args(["--peer", &format!("127.0.0.1:{port}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{version} multi={multi}: shoal did not complete: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            same_tree(&input, &out_dir.join(input.file_name().unwrap()));
        }
    }
}

/// Magnet download from a libtorrent seed: the metadata comes over BEP 9 and is checked against
/// the info-hash. (v2-only magnet links need BEP 52 hash requests for the piece layers, which
/// Shoal does not send yet; hybrid links verify with their SHA-1 piece hashes meanwhile.)
#[test]
fn magnet_download_from_libtorrent() {
    for version in ["v1", "hybrid"] {
        let dir = tempfile::tempdir().unwrap();
        let input = payload(dir.path(), true);
        let torrent = dir.path().join("t.torrent");
        create(&input, &torrent, version);
        let shown = Command::new(SHOAL)
            .args(["torrent", "show", "--json"])
            .arg(&torrent)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        let magnet = report["magnet"].as_str().unwrap().to_owned();
        let port = free_port();
        let _seed = Running(
            Command::new("python3")
                .arg(lt_tool())
                .arg("seed")
                .arg(&torrent)
                .arg(dir.path())
                .arg(port.to_string())
                .arg("120")
                .stdout(Stdio::null())
                .spawn()
                .expect("python3 with libtorrent (scripts/install-test-deps.sh)"),
        );
        wait_for_port(port, Duration::from_secs(30));
        let out_dir = dir.path().join("shoal");
        let out = Command::new(SHOAL)
            .args(["torrent", "download", &magnet, "-o"])
            .arg(&out_dir)
            .args(["--peer", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{version}: magnet download failed: {stderr}"
        );
        assert!(stderr.contains("metadata verified"), "{stderr}");
        same_tree(&input, &out_dir.join(input.file_name().unwrap()));
    }
}

/// Shoal to Shoal as separate processes, every version, single and multi-file (a multi-file
/// hybrid has short pieces at file ends that v1 peers see padded and v2 peers see exact).
#[test]
fn shoal_seeds_to_shoal() {
    for version in ["v1", "v2", "hybrid"] {
        for multi in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let input = payload(dir.path(), multi);
            let torrent = dir.path().join("t.torrent");
            create(&input, &torrent, version);
            let port = free_port();
            let _seed = Running(
                Command::new(SHOAL)
                    .args(["torrent", "seed"])
                    .arg(&torrent)
                    .arg("--data")
                    .arg(&input)
                    .args([
                        "--listen",
                        &format!("127.0.0.1:{port}"),
                        "--seed-for",
                        "120s",
                    ])
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            wait_for_port(port, Duration::from_secs(30));
            let out_dir = dir.path().join("copy");
            let out = Command::new(SHOAL)
                .args(["torrent", "download"])
                .arg(&torrent)
                .arg("-o")
                .arg(&out_dir)
                .args(["--peer", &format!("127.0.0.1:{port}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{version} multi={multi}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            same_tree(&input, &out_dir.join(input.file_name().unwrap()));
        }
    }
}
