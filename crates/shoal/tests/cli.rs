//! The CLI's behaviour at its edges: clear errors and exit codes for bad input, no
//! overwriting, no panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

use std::process::{Command, Output};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn shoal(args: &[&str]) -> Output {
    Command::new(SHOAL).args(args).output().expect("run shoal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
