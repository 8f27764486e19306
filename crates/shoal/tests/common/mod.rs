//! Process helpers shared by the end-to-end test files: children that die with their test,
//! free ports, waiting for a listener.
#![allow(dead_code, reason = "each test file uses the helpers it needs")]
#![allow(
    clippy::unwrap_used,
    reason = "test support: a panic is the failure report"
)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
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

/// A free port on `ip` (bound then released: good enough for tests on one machine).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
