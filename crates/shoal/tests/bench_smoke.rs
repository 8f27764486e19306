//! Smoke test of the swarm benchmark harness (`bench/swarm.py`): a small configuration (4
//! downloaders, 16 MiB, 100 Mbit/s links) runs end to end for Shoal, libtorrent and HTTP with
//! this build's `shoal`, every copy byte-exact (the harness checks each copy's SHA-256 and
//! fails otherwise), and the report has a time per host for each system; and the two-site
//! mode (`SITES=2`) runs and reports what crossed the inter-site link. No timing is asserted:
//! the numbers belong in BENCHMARKS.md, not in a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `bench/swarm.py` with `settings` into a fresh directory and returns its JSON report.
fn run_harness(settings: &[(&str, &str)]) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/swarm.py");
    let child = Command::new("python3")
        .arg(script)
        .envs(settings.iter().copied())
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
    (out, report)
}

#[test]
fn swarm_harness_runs_every_system_with_byte_exact_copies() {
    let (out, report) = run_harness(&[("N", "4"), ("SIZE_MIB", "16")]);
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

#[test]
fn two_site_harness_reports_the_bytes_that_crossed_between_sites() {
    let (_out, report) = run_harness(&[
        ("N", "4"),
        ("SIZE_MIB", "8"),
        ("SITES", "2"),
        ("SYSTEMS", "shoal,http"),
    ]);
    assert_eq!(report["sites"], 2, "{report}");
    // The seed and hosts 1-2 in site a, hosts 3-4 in site b.
    let sites: Vec<&str> = (0..5)
        .map(|host| report["site_of_host"][host.to_string()].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["a", "a", "a", "b", "b"], "{report}");
    let size = report["size_bytes"].as_f64().unwrap();
    for system in ["shoal", "http"] {
        let result = &report["systems"][system];
        assert_eq!(
            result["seconds"].as_array().unwrap().len(),
            4,
            "{system}: {report}"
        );
        // Site b's copies need every byte to enter it at least once; the counters are whole
        // frames, so a little more than S however well the system does.
        let crossed = result["wan_bytes_a_to_b"].as_f64().unwrap();
        assert!(
            crossed >= size,
            "{system}: {crossed} bytes crossed for {size}: {report}"
        );
        let ratio = result["wan_over_size"].as_f64().unwrap();
        assert!(
            (ratio * size - result["wan_bytes"].as_f64().unwrap()).abs() < 1.0,
            "{report}"
        );
    }
    // HTTP fetches every copy from the seed in site a: both of site b's copies cross.
    assert!(
        report["systems"]["http"]["wan_bytes_a_to_b"]
            .as_f64()
            .unwrap()
            >= 2.0 * size,
        "{report}"
    );
}
