//! Standard clients fetch what an agent published, knowing only what Shoal hands out: the
//! `.torrent` from `shoal info --torrent` (libtorrent) or from the REST API (qBittorrent), and
//! the embedded tracker named in it. Nobody tells the clients where the agent is.
//!
//! Published artifacts are hybrid (v1 + v2) torrents, which Debian 12's aria2 1.36 and
//! Transmission 3.00 cannot join (see `interop_clients.rs`: aria2 computes a wrong v1
//! info-hash, Transmission refuses the torrent), so the clients here are libtorrent-based.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Running, SHOAL, free_port, payload, same_tree, wait_for_port, wait_within};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn interop(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script)
}

/// Runs `command` to completion within `limit`; its stdout. Fails the test on error.
fn run(command: &mut Command, limit: Duration, what: &str) -> Vec<u8> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within(child, limit).unwrap_or_else(|| panic!("{what}: timed out"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn libtorrent_and_qbittorrent_download_from_the_tracker_and_torrent_shoal_hands_out() {
    let dir = tempfile::tempdir().unwrap();
    let (api, peer, server, tracker) = (
        free_port(LOCAL),
        free_port(LOCAL),
        free_port(LOCAL),
        free_port(LOCAL),
    );
    let agent_url = format!("http://127.0.0.1:{api}");
    let _agent = Running(
        Command::new(SHOAL)
            .arg("agent")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--node-id", "interop"])
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
            .args(["--server-api-listen", &format!("127.0.0.1:{server}")])
            .args(["--tracker-listen", &format!("127.0.0.1:{tracker}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(LOCAL, api);

    let source = payload(&dir.path().join("src"), false);
    run(
        Command::new(SHOAL).args([
            "publish",
            source.to_str().unwrap(),
            "--name",
            "interop/image:1",
            "--agent",
            &agent_url,
        ]),
        Duration::from_secs(60),
        "shoal publish",
    );

    // libtorrent, with the torrent from `shoal info --torrent`.
    let lt_torrent = dir.path().join("lt.torrent");
    run(
        Command::new(SHOAL)
            .args([
                "info",
                "interop/image:1",
                "--agent",
                &agent_url,
                "--torrent",
            ])
            .arg(&lt_torrent),
        Duration::from_secs(30),
        "shoal info --torrent",
    );
    let lt_dir = dir.path().join("lt");
    std::fs::create_dir(&lt_dir).unwrap();
    run(
        Command::new("python3")
            .arg(interop("lt_tool.py"))
            .args(["download"])
            .arg(&lt_torrent)
            .arg(&lt_dir)
            .args(["tracker", "60"]),
        Duration::from_secs(90),
        "libtorrent download",
    );
    same_tree(&source, &lt_dir.join("image.bin"), false);

    // qBittorrent, with the torrent from the REST API (proto3 JSON: bytes are base64).
    let info = run(
        Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            &format!(
                "{agent_url}/v1/artifacts:info?ref.name_tag=interop/image:1&include_torrent=true"
            ),
        ]),
        Duration::from_secs(30),
        "REST GetArtifact",
    );
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let torrent = data_encoding::BASE64
        .decode(info["torrent"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(
        torrent,
        std::fs::read(&lt_torrent).unwrap(),
        "REST and gRPC hand out different torrents"
    );
    let qb_torrent = dir.path().join("qb.torrent");
    std::fs::write(&qb_torrent, torrent).unwrap();
    let (qb_dir, qb_state) = (dir.path().join("qb"), dir.path().join("qb-state"));
    std::fs::create_dir(&qb_dir).unwrap();
    std::fs::create_dir(&qb_state).unwrap();
    run(
        Command::new("python3")
            .arg(interop("clients.py"))
            .args(["download", "qbittorrent"])
            .arg(&qb_torrent)
            .arg(&qb_dir)
            .arg(&qb_state)
            .args([&free_port(LOCAL).to_string(), "60"]),
        Duration::from_secs(90),
        "qBittorrent download",
    );
    same_tree(&source, &qb_dir.join("image.bin"), false);
}
