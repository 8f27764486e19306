//! Smoke test of the swarm benchmark harness (`bench/swarm.py`): a small configuration (4
//! downloaders, 16 MiB, 100 Mbit/s links) runs end to end for Shoal, libtorrent and HTTP with
//! this build's `shoal`, every copy byte-exact (the harness checks each copy's SHA-256 and
//! fails otherwise), and the report has a time per host for each system. No timing is
//! asserted: the numbers belong in BENCHMARKS.md, not in a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn swarm_harness_runs_every_system_with_byte_exact_copies() {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/swarm.py");
    let child = Command::new("python3")
        .arg(script)
        .env("N", "4")
        .env("SIZE_MIB", "16")
        .env("SHOAL_BIN", common::SHOAL)
        .env("OUT", out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = common::wait_within(child, Duration::from_secs(300)).expect("the harness finishes");
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    for system in ["shoal", "libtorrent", "http"] {
        let seconds = report["systems"][system]["seconds"].as_array().unwrap();
        assert_eq!(seconds.len(), 4, "{system}: {report}");
        assert!(
            seconds.iter().all(|s| s.as_f64().unwrap() > 0.0),
            "{report}"
        );
    }
    assert!(report["t_star_seconds"].as_f64().unwrap() > 0.0);
    let svg = std::fs::read_to_string(out.path().join("cdf.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}
