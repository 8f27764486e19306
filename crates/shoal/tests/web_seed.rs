//! Web seeds (BEP 19) against a real web server: nginx (Debian's `nginx-light`, installed by
//! `scripts/install-test-deps.sh`) serving the files, and Shoal downloading with no peer at
//! all; a web seed with wrong bytes is banned while an honest peer completes the download; a
//! web seed that fails at first is retried until it answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::nginx::Nginx;
use common::{Running, SHOAL, create, free_port, payload, same_tree};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `shoal torrent download TORRENT -o OUT --json` with `extra` arguments.
fn download(torrent: &Path, out: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let output = Command::new(SHOAL)
        .args(["torrent", "download"])
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(extra)
        .env("SHOAL_LOG", "warn")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output, json)
}

#[test]
fn downloads_from_a_web_seed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let nginx = Nginx::serve(&www, &dir.path().join("nginx"));
    for multi in [false, true] {
        let input = payload(&www, multi);
        // Single file: the URL names the file. Multi-file: the directory holding the torrent's
        // directory (the name is appended).
        let url = match multi {
            false => nginx.url("image.bin"),
            true => nginx.url(""),
        };
        for version in ["v1", "v2", "hybrid"] {
            let torrent = dir.path().join(format!("{version}-{multi}.torrent"));
            create(&input, &torrent, version, &["--web-seed", &url]);
            let out = dir.path().join(format!("out-{version}-{multi}"));
            let (output, json) = download(&torrent, &out, &[]);
            assert!(
                output.status.success(),
                "{version} multi={multi}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            same_tree(&input, &out.join(input.file_name().unwrap()), false);
            assert_eq!(json["pieces_failed"], 0, "{version} multi={multi}: {json}");
        }
    }
}

#[test]
fn a_web_seed_with_wrong_bytes_is_banned_and_a_peer_completes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let input = payload(&good, false);
    let torrent = dir.path().join("t.torrent");
    // The web server holds a copy with every byte flipped.
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let bad: Vec<u8> = std::fs::read(&input).unwrap().iter().map(|b| !b).collect();
    std::fs::write(www.join("image.bin"), bad).unwrap();
    let nginx = Nginx::serve(&www, &dir.path().join("nginx"));
    let url = nginx.url("image.bin");
    create(&input, &torrent, "hybrid", &["--web-seed", &url]);

    // The honest seed comes up a few seconds after the download starts (which dials it again
    // every 3 s), so the web seed is asked for pieces first.
    let port = free_port(LOOPBACK);
    let starter = {
        let (torrent, input) = (torrent.clone(), input.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            let child = Command::new(SHOAL)
                .args(["torrent", "seed"])
                .arg(&torrent)
                .arg("--data")
                .arg(&input)
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--seed-for",
                    "60s",
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Running(child)
        })
    };
    let out = dir.path().join("out");
    let (output, json) = download(&torrent, &out, &["--peer", &format!("127.0.0.1:{port}")]);
    let _seed = starter.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    same_tree(&input, &out.join("image.bin"), false);
    assert_eq!(json["banned_web_seeds"], serde_json::json!([url]), "{json}");
    assert!(json["pieces_failed"].as_u64().unwrap() >= 1, "{json}");
    assert_eq!(json["peers_banned"], 0, "the honest peer stays: {json}");
}

#[test]
fn a_failing_web_seed_is_retried_until_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let input = payload(&dir.path().join("src"), false);
    let torrent = dir.path().join("t.torrent");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let work = dir.path().join("nginx");
    let nginx = Nginx::serve(&www, &work);
    create(
        &input,
        &torrent,
        "v2",
        &["--web-seed", &nginx.url("image.bin")],
    );

    // The file appears on the server two seconds in: until then every GET is a 404.
    let publish = {
        let (input, www) = (input.clone(), www.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            std::fs::copy(&input, www.join("image.bin.tmp")).unwrap();
            std::fs::rename(www.join("image.bin.tmp"), www.join("image.bin")).unwrap();
        })
    };
    let out = dir.path().join("out");
    let (output, json) = download(&torrent, &out, &[]);
    publish.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    same_tree(&input, &out.join("image.bin"), false);
    let log = std::fs::read_to_string(work.join("access.log")).unwrap();
    assert!(log.contains("\" 404 "), "the first GETs failed:\n{log}");
    assert!(log.contains("\" 206 "), "later ones got ranges:\n{log}");
    assert!(Nginx::requests(&work) > 2, "{json}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("web seed failed") && stderr.contains("404"),
        "the failure is logged with its cause: {stderr}"
    );
}
