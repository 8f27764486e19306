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

/// Starts `shoal agent` on `ip` with the given control plane (`None`: embedded, with its API
/// and tracker on free ports of `ip`) and extra environment; returns it and its API URL.
fn start_agent(
    dir: &Path,
    name: &str,
    ip: Ipv4Addr,
    control_plane: Option<&str>,
    env: &[(&str, &Path)],
) -> (Running, String, Option<String>) {
    let api = free_port(ip);
    let mut command = Command::new(SHOAL);
    command
        .arg("agent")
        .arg("--data-dir")
        .arg(dir.join(format!("data-{name}")))
        .args(["--node-id", name])
        .args(["--api-listen", &format!("{ip}:{api}")])
        .args(["--peer-listen", &format!("{ip}:{}", free_port(ip))])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    let server = match control_plane {
        Some(url) => {
            command.args(["--control-plane", url]);
            None
        }
        None => {
            let server = free_port(ip);
            command
                .args(["--server-api-listen", &format!("{ip}:{server}")])
                .args(["--tracker-listen", &format!("{ip}:{}", free_port(ip))]);
            Some(format!("http://{ip}:{server}"))
        }
    };
    for (key, value) in env {
        command.env(key, value);
    }
    let running = Running(command.spawn().unwrap());
    wait_for_port(ip, api);
    (running, format!("http://{ip}:{api}"), server)
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with `openssl`; returns the CA
/// certificate, the server certificate and its key (PEM files in `dir`).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        run(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(60),
            "openssl",
        )
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Shoal test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// `shoal get` takes an https URL of a `.torrent`: the agent checks the server's certificate
/// against the CA store it is given (`SSL_CERT_FILE`), follows a redirect, and downloads the
/// artifact from its publisher. An agent that does not trust the certificate refuses the URL
/// and says why.
#[test]
fn get_takes_an_https_torrent_url_and_checks_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (publisher, publisher_url, server) = start_agent(dir.path(), "publisher", LOCAL, None, &[]);
    let source = payload(&dir.path().join("src"), true);
    run(
        Command::new(SHOAL).args([
            "publish",
            source.to_str().unwrap(),
            "--name",
            "tls/tree:1",
            "--agent",
            &publisher_url,
        ]),
        Duration::from_secs(60),
        "shoal publish",
    );
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    run(
        Command::new(SHOAL)
            .args(["info", "tls/tree:1", "--agent", &publisher_url, "--torrent"])
            .arg(www.join("tree.torrent")),
        Duration::from_secs(30),
        "shoal info --torrent",
    );
    let (ca, cert, key) = certificates(dir.path());
    let nginx = common::nginx::Nginx::serve_tls(
        &www,
        &dir.path().join("nginx"),
        &cert,
        &key,
        "location = /latest.torrent { return 302 /tree.torrent; }",
    );

    let second = Ipv4Addr::new(127, 0, 0, 2);
    let (_agent, agent_url, _) = start_agent(
        dir.path(),
        "fetcher",
        second,
        server.as_deref(),
        &[("SSL_CERT_FILE", &ca)],
    );
    let dest = dir.path().join("out");
    run(
        Command::new(SHOAL)
            .args([
                "get",
                &nginx.https_url("latest.torrent"),
                "--agent",
                &agent_url,
                "-o",
            ])
            .arg(&dest),
        Duration::from_secs(90),
        "shoal get https://...",
    );
    same_tree(&source, &dest, false);

    // The publisher trusts only the system's CAs, which did not sign this certificate.
    let child = Command::new(SHOAL)
        .args([
            "info",
            &nginx.https_url("tree.torrent"),
            "--agent",
            &publisher_url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within(child, Duration::from_secs(60)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
    assert!(err.contains("certificate"), "{err}");
    drop(publisher);
}
