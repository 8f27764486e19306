//! Interop: `shoal torrent create/show` agree on info-hashes with libtorrent (v1, v2, hybrid),
//! mktorrent (v1) and transmission-create (v1), in both directions, on inputs covering a single
//! file, nested directories, an empty file, and sizes that are and are not a multiple of the
//! piece length.
//!
//! The reference tools are installed by `scripts/install-test-deps.sh` (run by
//! `scripts/test.sh` and CI). A missing tool fails the test with that instruction: these tests
//! are never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test and bench code: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const INSTALL_HINT: &str = "install the reference clients with scripts/install-test-deps.sh";

fn lt_tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_tool.py")
}

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} ({INSTALL_HINT})"));
    assert!(
        out.status.success(),
        "{shown} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[derive(Debug, PartialEq, Eq)]
struct Hashes {
    v1: Option<String>,
    v2: Option<String>,
}

fn shoal_create(input: &Path, out: &Path, mode: &str, piece_length: u64) -> Hashes {
    let json = run(Command::new(SHOAL)
        .args(["torrent", "create"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .args([
            &format!("--{mode}"),
            "--piece-length",
            &piece_length.to_string(),
            "--no-date",
            "--force",
            "--json",
        ]));
    hashes_of_report(&json)
}

fn shoal_show(torrent: &Path) -> Hashes {
    hashes_of_report(&run(Command::new(SHOAL)
        .args(["torrent", "show", "--json"])
        .arg(torrent)))
}

fn hashes_of_report(json: &str) -> Hashes {
    let report: Value = serde_json::from_str(json).expect("JSON report");
    let text = |key: &str| report[key].as_str().map(str::to_owned);
    Hashes {
        v1: text("info_hash_v1"),
        v2: text("info_hash_v2"),
    }
}

fn libtorrent_hashes(torrent: &Path) -> Hashes {
    let json: Value = serde_json::from_str(&run(Command::new("python3")
        .arg(lt_tool())
        .arg("hashes")
        .arg(torrent)))
    .expect("JSON from lt_tool");
    Hashes {
        v1: json["v1"].as_str().map(str::to_owned),
        v2: json["v2"].as_str().map(str::to_owned),
    }
}

fn write(path: &Path, len: usize, seed: u8) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect();
    std::fs::write(path, data).expect("write fixture");
}

/// The fixtures: (label, path to hand to the tools). Sizes are chosen against 32 KiB pieces.
fn fixtures(root: &Path, with_empty_file: bool) -> Vec<(&'static str, PathBuf)> {
    const P: usize = 32 * 1024;
    write(&root.join("single/odd.bin"), 3 * P + 1234, 1);
    write(&root.join("exact/exact.bin"), 4 * P, 2);
    let tree = root.join("tree");
    write(&tree.join("a.bin"), P + 7, 3);
    write(&tree.join("sub/b.bin"), 2 * P, 4);
    write(&tree.join("sub/deeper/c.txt"), 100, 5);
    write(&tree.join("sub/deeper/deepest/d.dat"), 5 * P - 1, 6);
    write(&tree.join("z-last.bin"), 5000, 7);
    if with_empty_file {
        write(&tree.join("sub/empty"), 0, 0);
    }
    let multiple = root.join("multiple");
    write(&multiple.join("one.bin"), P, 8);
    write(&multiple.join("two.bin"), 3 * P, 9);
    vec![
        (
            "single file, not a multiple of the piece length",
            root.join("single/odd.bin"),
        ),
        (
            "single file, an exact multiple",
            root.join("exact/exact.bin"),
        ),
        ("nested directory", tree),
        ("directory of exact multiples", multiple),
    ]
}

#[test]
fn libtorrent_agrees_on_v1_v2_and_hybrid() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, input) in fixtures(dir.path(), true) {
        for mode in ["v1", "v2", "hybrid"] {
            for piece_length in [16 * 1024u64, 32 * 1024, 64 * 1024] {
                let case = format!("{label}, {mode}, {piece_length}-byte pieces");
                let ours_path = dir.path().join("ours.torrent");
                let theirs_path = dir.path().join("theirs.torrent");
                let ours = shoal_create(&input, &ours_path, mode, piece_length);
                assert_eq!(ours.v1.is_some(), mode != "v2", "{case}");
                assert_eq!(ours.v2.is_some(), mode != "v1", "{case}");
                // Our torrent loads in libtorrent with the info-hashes we print.
                assert_eq!(
                    libtorrent_hashes(&ours_path),
                    ours,
                    "libtorrent reading ours: {case}"
                );
                // libtorrent's torrent of the same input parses in ours with its info-hashes...
                run(Command::new("python3")
                    .arg(lt_tool())
                    .args(["create", mode, &piece_length.to_string()])
                    .arg(&input)
                    .arg(&theirs_path));
                let theirs = libtorrent_hashes(&theirs_path);
                assert_eq!(
                    shoal_show(&theirs_path),
                    theirs,
                    "shoal reading libtorrent's: {case}"
                );
                // ...and is the same torrent: the info dictionaries are byte-identical.
                assert_eq!(ours, theirs, "same input, same info-hash: {case}");
            }
        }
    }
}

#[test]
fn mktorrent_agrees_on_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, input) in fixtures(dir.path(), true) {
        // mktorrent takes the piece length as a power of two, from 2^15.
        for (exponent, piece_length) in [(15, 32 * 1024u64), (16, 64 * 1024)] {
            let case = format!("{label}, 2^{exponent}-byte pieces");
            let theirs_path = dir.path().join("mk.torrent");
            let _ = std::fs::remove_file(&theirs_path);
            run(Command::new("mktorrent")
                .args(["-d", "-l", &exponent.to_string(), "-o"])
                .arg(&theirs_path)
                .arg(&input));
            let theirs = shoal_show(&theirs_path);
            assert_eq!(
                theirs,
                libtorrent_hashes(&theirs_path),
                "shoal and libtorrent reading mktorrent's: {case}"
            );
            let ours = shoal_create(&input, &dir.path().join("ours.torrent"), "v1", piece_length);
            assert_eq!(
                ours, theirs,
                "same input, same v1 info-hash as mktorrent: {case}"
            );
        }
    }
}

/// transmission-create writes `private: 0` into every info dictionary (Shoal, libtorrent and
/// mktorrent leave an unset flag out) and drops empty files, so its info-hash for the same
/// input differs by design. What must hold: each side reads the other's torrent with the
/// other's info-hash.
#[test]
fn transmission_agrees_on_v1_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, input) in fixtures(dir.path(), true) {
        let theirs_path = dir.path().join("tr.torrent");
        let _ = std::fs::remove_file(&theirs_path);
        run(Command::new("transmission-create")
            .args(["-s", "32", "-o"])
            .arg(&theirs_path)
            .arg(&input));
        let printed = transmission_show_hash(&theirs_path);
        assert_eq!(
            shoal_show(&theirs_path).v1.as_deref(),
            Some(printed.as_str()),
            "shoal reading transmission's: {label}"
        );

        let ours_path = dir.path().join("ours.torrent");
        let ours = shoal_create(&input, &ours_path, "v1", 32 * 1024);
        assert_eq!(
            Some(transmission_show_hash(&ours_path)),
            ours.v1,
            "transmission reading ours: {label}"
        );
    }
}

fn transmission_show_hash(torrent: &Path) -> String {
    let out = run(Command::new("transmission-show").arg(torrent));
    out.lines()
        .find_map(|line| line.trim().strip_prefix("Hash: "))
        .unwrap_or_else(|| panic!("no Hash: line in transmission-show output:\n{out}"))
        .to_owned()
}

#[test]
fn magnet_links_agree_with_libtorrent_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, input) = fixtures(dir.path(), false).swap_remove(2);
    for mode in ["v1", "v2", "hybrid"] {
        let torrent = dir.path().join(format!("{mode}.torrent"));
        let report: Value = serde_json::from_str(&run(Command::new(SHOAL)
            .args(["torrent", "create"])
            .arg(&input)
            .arg("-o")
            .arg(&torrent)
            .args([
                &format!("--{mode}"),
                "--tracker",
                "http://tracker.example:6969/announce",
                "--no-date",
                "--json",
            ])))
        .expect("JSON report");
        let ours = Hashes {
            v1: report["info_hash_v1"].as_str().map(str::to_owned),
            v2: report["info_hash_v2"].as_str().map(str::to_owned),
        };
        // Our magnet link, read by libtorrent.
        let our_magnet = report["magnet"].as_str().expect("a magnet link");
        let parsed: Value = serde_json::from_str(&run(Command::new("python3")
            .arg(lt_tool())
            .arg("parse-magnet")
            .arg(our_magnet)))
        .expect("JSON");
        assert_eq!(
            parsed["v1"].as_str(),
            ours.v1.as_deref(),
            "{mode}: {our_magnet}"
        );
        assert_eq!(
            parsed["v2"].as_str(),
            ours.v2.as_deref(),
            "{mode}: {our_magnet}"
        );
        assert_eq!(parsed["name"], "tree");
        assert_eq!(
            parsed["trackers"],
            serde_json::json!(["http://tracker.example:6969/announce"])
        );
        // libtorrent's magnet link, read by us.
        let their_magnet = run(Command::new("python3")
            .arg(lt_tool())
            .arg("magnet")
            .arg(&torrent));
        let shown: Value = serde_json::from_str(&run(Command::new(SHOAL).args([
            "torrent",
            "show",
            "--json",
            their_magnet.trim(),
        ])))
        .expect("JSON");
        assert_eq!(
            hashes_of_report(&shown.to_string()),
            ours,
            "{mode}: {their_magnet}"
        );
        assert_eq!(shown["name"], "tree");
    }
}
