//! The CLI's behaviour at its edges: clear errors and exit codes for bad input, no
//! overwriting, no panics; credentials issued, listed and revoked against a real `shoal
//! server`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

mod common;

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use common::{Running, free_port, wait_for_port};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn shoal(args: &[&str]) -> Output {
    Command::new(SHOAL).args(args).output().expect("run shoal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `shoal token issue|revoke` and `shoal tokens` against a `shoal server` that trusts no
/// caller without a credential: the bootstrap admin's token file works, a token is printed once
/// and never listed, a reader is refused with exit 6 naming its role, a revoked token is
/// refused from the next call, an unknown name is exit 3.
#[test]
fn tokens_are_issued_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (api, tracker) = (
        free_port(Ipv4Addr::LOCALHOST),
        free_port(Ipv4Addr::LOCALHOST),
    );
    let _server = Running(
        Command::new(SHOAL)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--tracker-listen", &format!("127.0.0.1:{tracker}")])
            .args([
                "--announce-url",
                &format!("http://127.0.0.1:{tracker}/announce"),
            ])
            .arg("--no-trust-loopback")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(Ipv4Addr::LOCALHOST, api);
    let server = format!("http://127.0.0.1:{api}");
    let admin_file = data.join("admin.token");
    let admin = admin_file.to_str().unwrap();
    let as_admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &server, "--token-file", admin]);
        shoal(&all)
    };

    // Without a token even loopback is refused, and told what to do.
    let out = shoal(&["tokens", "--server", &server]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs a credential"),
        "{}",
        stderr(&out)
    );

    let out = as_admin(&["token", "issue", "--role", "publisher", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ci = stdout(&out).trim().to_owned();
    assert!(ci.starts_with("shoal_") && ci.len() == 87, "{ci:?}");
    assert!(stderr(&out).contains("shown only now"), "{}", stderr(&out));
    let out = as_admin(&["token", "issue", "--role", "reader", "viewer", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let issued: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(issued["credential"]["role"], "reader");
    assert_eq!(issued["credential"]["createdBy"], "bootstrap");
    let viewer = issued["token"].as_str().unwrap().to_owned();

    let out = as_admin(&["tokens"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    for name in ["bootstrap", "ci", "viewer"] {
        assert!(listed.contains(name), "{listed}");
    }
    let secret = |t: &str| t.rsplit('_').next().unwrap().to_owned();
    assert!(!listed.contains(&secret(&ci)) && !listed.contains(&secret(&viewer)));

    // A reader may read, not manage credentials.
    let out = shoal(&["nodes", "--server", &server, "--token", &viewer]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(SHOAL)
        .args([
            "token", "issue", "--role", "admin", "sneaky", "--server", &server,
        ])
        .env("SHOAL_TOKEN", &viewer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the reader role may not manage credentials"),
        "{}",
        stderr(&out)
    );

    let out = as_admin(&["token", "revoke", "ci"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = shoal(&["nodes", "--server", &server, "--token", &ci]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("credential ci was revoked"),
        "{}",
        stderr(&out)
    );
    let out = as_admin(&["tokens", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let revoked: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["revokedAt"].is_string())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ["ci"]);
    let out = as_admin(&["token", "revoke", "ci"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = as_admin(&["token", "issue", "--role", "root", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn malformed_torrent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[u8], &str)] = &[
        (
            b"d4:infod4:name1:x6:lengthi1eee",
            "dictionary keys out of order",
        ),
        (
            b"d4:infod6:lengthi5e4:name2:..12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
            "would leave its directory",
        ),
        (b"not bencode", "unexpected byte"),
    ];
    for (bytes, expected) in cases {
        let path = dir.path().join("bad.torrent");
        std::fs::write(&path, bytes).unwrap();
        let out = shoal(&["torrent", "show", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(
            err.contains("is not a valid torrent") && err.contains(expected),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn create_refuses_to_overwrite_and_to_hash_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, b"some bytes").unwrap();
    let out_path = dir.path().join("out.torrent");
    std::fs::write(&out_path, b"precious").unwrap();
    let out = shoal(&[
        "torrent",
        "create",
        data.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists; pass --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), b"precious");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("zero"), b"").unwrap();
    let out = shoal(&[
        "torrent",
        "create",
        empty.to_str().unwrap(),
        "-o",
        dir.path().join("e.torrent").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to share"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("e.torrent").exists());
}

#[test]
fn v2_rejects_a_bad_piece_length_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, vec![1u8; 100_000]).unwrap();
    let out = shoal(&[
        "torrent",
        "create",
        data.to_str().unwrap(),
        "-o",
        dir.path().join("x.torrent").to_str().unwrap(),
        "--v2",
        "--piece-length",
        "20000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a power of two of at least 16 KiB"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn show_prints_the_essentials() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("pkg");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/tool"), vec![7u8; 70_000]).unwrap();
    std::fs::write(src.join("README"), b"read me").unwrap();
    let torrent = dir.path().join("pkg.torrent");
    let out = shoal(&[
        "torrent",
        "create",
        src.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "-t",
        "http://a/ann,http://b/ann",
        "-t",
        "http://c/ann",
        "--private",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text =
        String::from_utf8(shoal(&["torrent", "show", torrent.to_str().unwrap()]).stdout).unwrap();
    for expected in [
        "name:         pkg",
        "version:      hybrid (v1 + v2)",
        "total size:   68.4 KiB (70007 bytes)",
        "piece length: 16.0 KiB (6 pieces)",
        "private:      yes",
        "tier 1: http://a/ann, http://b/ann",
        "tier 2: http://c/ann",
        "files (2):",
        "README",
        "bin/tool",
        "magnet:       magnet:?xt=urn:btih:",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// A server node that accepts connections and never answers (SIGSTOPped, or cut off behind a
/// proxy) fails the call after `--timeout` with exit 5 and a message that says what to try,
/// instead of hanging the operator's terminal.
#[test]
fn a_control_plane_that_never_answers_times_out_with_advice() {
    let silent = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1).collect();
        let _ = wait.recv_timeout(std::time::Duration::from_secs(120));
        drop(held);
    });
    let start = std::time::Instant::now();
    let out = shoal(&["nodes", "--server", &url, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not answer in time") && stderr(&out).contains(&url),
        "{}",
        stderr(&out)
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "it waited for the server"
    );
    done.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn a_bad_magnet_link_is_a_clear_error() {
    let out = shoal(&["torrent", "show", "magnet:?dn=nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no BitTorrent info-hash"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn download_with_nowhere_to_download_from_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, vec![7u8; 100_000]).unwrap();
    let torrent = dir.path().join("t.torrent");
    let made = shoal(&[
        "torrent",
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out_dir = dir.path().join("out");
    let out = shoal(&[
        "torrent",
        "download",
        torrent.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nothing to download from") && err.contains("--peer"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing is created");
}
