//! Smoke test of the load generator: 20 simulated agents for a 2 s window against a control
//! plane served in this test's process over real gRPC. Every report must be accepted, every
//! agent counted in the placement, and the JSON must have the shape `bench/control-plane.py`
//! reads. No timing is asserted: the numbers belong in BENCHMARKS.md, not in a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

/// Serves a fresh control plane's API on a loopback port from a thread of this process.
fn control_plane(data_dir: &std::path::Path) -> SocketAddr {
    let control = shoal_server::ControlPlane::open(shoal_server::ServerConfig {
        data_dir: data_dir.to_owned(),
        announce_url: "http://127.0.0.1:1/announce".to_owned(),
        announce_urls: Vec::new(),
        tracker: shoal_control::TrackerConfig::default(),
        nodes: shoal_control::NodeConfig::default(),
    })
    .unwrap();
    let router = shoal_server::api_router(&control, shoal_api::router::Access::Open).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
    });
    addr
}

#[test]
fn twenty_agents_report_and_every_report_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let addr = control_plane(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_shoal-loadgen"))
        .args(["--server", &format!("http://{addr}")])
        .args(["--agents", "20", "--agents-per-connection", "3"])
        .args(["--warmup", "1", "--seconds", "2", "--size-mib", "16"])
        .args(["--fail-every", "10", "--walk-every-ms", "500"])
        // The control plane is this process: its /proc entries are read like a server's.
        .args(["--server-pid", &std::process::id().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["agents"], 20, "{report}");
    assert_eq!(report["connections"], 7, "{report}");
    let reports = &report["reports"];
    // 20 agents, one report each per second of a 2 s window.
    assert_eq!(reports["due"], 40, "{report}");
    assert_eq!(reports["sent"], 40, "{report}");
    assert_eq!(reports["ok"], 40, "{report}");
    assert_eq!(reports["errors"], serde_json::json!({}), "{report}");
    assert!(
        report["every_agent_reported"].as_bool().unwrap(),
        "{report}"
    );
    assert_eq!(report["final_totals"]["nodes"], 20, "{report}");
    assert_eq!(report["show"]["errors"], 0, "{report}");
    assert!(
        report["show"]["latency"]["count"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["walk"]["latency"]["count"].as_u64().unwrap() > 0,
        "{report}"
    );
    let server = &report["server"];
    assert!(server["end"]["rss_kib"].as_u64().unwrap() > 0, "{report}");
    for key in ["cpu_seconds", "cpu_cores", "cpu_us_per_report"] {
        assert!(server[key].as_f64().is_some(), "{key}: {report}");
    }
    assert!(report["machine_cpu_busy"].as_f64().is_some(), "{report}");
    assert!(report["generator_cpu_cores"].as_f64().is_some(), "{report}");
}
