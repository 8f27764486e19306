//! `scan` and `create` against a real filesystem: what is included, what is refused, and that
//! the torrent made from disk equals the one made from the same bytes in memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use shoal_create::{Error, create, scan};
use shoal_metainfo::create::{CreateOptions, Plan};
use shoal_metainfo::{MetaVersion, PathError, Torrent};

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn options(version: MetaVersion) -> CreateOptions {
    CreateOptions {
        version,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    }
}

#[test]
fn scan_finds_nested_files_follows_symlinks_and_marks_executables() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pkg");
    write(&root.join("b/inner.bin"), &bytes(100, 1));
    write(&root.join("a.txt"), &bytes(10, 2));
    write(&root.join("b/empty"), b"");
    write(&dir.path().join("outside.bin"), &bytes(33, 3));
    std::os::unix::fs::symlink(dir.path().join("outside.bin"), root.join("link.bin")).unwrap();
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let source = scan(&root).unwrap();
    assert_eq!(source.name.as_str(), "pkg");
    assert!(!source.single_file);
    let mut found: Vec<(String, u64, bool)> = source
        .files
        .iter()
        .map(|f| (f.path.to_string(), f.length, f.executable))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("a.txt".to_owned(), 10, true),
            ("b/empty".to_owned(), 0, false),
            ("b/inner.bin".to_owned(), 100, false),
            ("link.bin".to_owned(), 33, false),
        ]
    );
    assert_eq!(source.total_size(), 143);
}

#[test]
fn a_file_is_a_single_file_source() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("image.iso"), &bytes(5000, 4));
    let source = scan(&dir.path().join("image.iso")).unwrap();
    assert!(source.single_file);
    assert_eq!(source.name.as_str(), "image.iso");
    assert_eq!(source.files.len(), 1);
}

#[test]
fn refusals_name_the_offending_path() {
    let dir = tempfile::tempdir().unwrap();

    let bad_name = dir.path().join("bad");
    write(&bad_name.join("back\\slash"), b"x");
    match scan(&bad_name) {
        Err(Error::BadName {
            path,
            source: PathError::ForbiddenChar { ch: '\\', .. },
        }) => {
            assert!(path.ends_with("back\\slash"));
        }
        other => panic!("{other:?}"),
    }

    let fifo_dir = dir.path().join("fifo");
    std::fs::create_dir(&fifo_dir).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(fifo_dir.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(scan(&fifo_dir), Err(Error::NotRegular { path }) if path.ends_with("pipe")));

    let looped = dir.path().join("loop");
    std::fs::create_dir(&looped).unwrap();
    std::os::unix::fs::symlink(&looped, looped.join("again")).unwrap();
    assert!(
        matches!(scan(&looped), Err(Error::SymlinkLoop { path }) if path.ends_with("loop/again"))
    );

    let mut deep = dir.path().join("deep");
    for _ in 0..=shoal_create::MAX_DEPTH {
        deep = deep.join("d");
    }
    write(&deep.join("f"), b"x");
    assert!(matches!(
        scan(&dir.path().join("deep")),
        Err(Error::TooDeep { .. })
    ));

    assert!(matches!(
        scan(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn disk_and_memory_give_the_same_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    let files: [(&str, Vec<u8>); 4] = [
        ("x/one.bin", bytes(3 * 16 * 1024 + 5, 5)),
        ("two.bin", bytes(16 * 1024, 6)),
        ("x/y/three", bytes(7, 7)),
        ("x/zero", Vec::new()),
    ];
    for (path, data) in &files {
        write(&root.join(path), data);
    }
    let source = scan(&root).unwrap();
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        for threads in [1, 2, 7] {
            let from_disk = create(&source, options(version), None, threads, &|_| {}).unwrap();

            let plan = Plan::new(
                source.name.clone(),
                source.files.clone(),
                false,
                options(version),
            )
            .unwrap();
            let contents: Vec<&Vec<u8>> = plan
                .inputs()
                .iter()
                .map(|i| {
                    &files
                        .iter()
                        .find(|(p, _)| *p == i.path.to_string())
                        .unwrap()
                        .1
                })
                .collect();
            let results: Vec<_> = plan
                .units()
                .iter()
                .enumerate()
                .map(|(n, unit)| {
                    let data: Vec<u8> = unit
                        .reads
                        .iter()
                        .flat_map(|r| {
                            contents[r.file][r.offset as usize..(r.offset + r.len) as usize]
                                .to_vec()
                        })
                        .collect();
                    unit.hash(n, &data).unwrap()
                })
                .collect();
            let in_memory = plan.finish(&results).unwrap();
            assert_eq!(from_disk, in_memory, "{version:?} on {threads} threads");
            Torrent::from_bytes(&from_disk.to_bytes()).unwrap();
        }
    }
}

#[test]
fn progress_adds_up_to_the_total() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("f"), &bytes(200_000, 8));
    let source = scan(&dir.path().join("f")).unwrap();
    let seen = std::sync::atomic::AtomicU64::new(0);
    create(&source, options(MetaVersion::Hybrid), None, 2, &|n| {
        seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen.into_inner(), 200_000);
}

#[test]
fn a_file_that_shrinks_after_the_scan_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.log");
    write(&path, &bytes(100_000, 9));
    let source = scan(&path).unwrap();
    write(&path, &bytes(50_000, 9));
    let err = create(&source, options(MetaVersion::V1), None, 2, &|_| {}).unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("changed while it was being hashed")
    );
}

#[test]
fn name_override_renames_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("build-1234.tar"), &bytes(1000, 10));
    let source = scan(&dir.path().join("build-1234.tar")).unwrap();
    let name = shoal_metainfo::PathComponent::new("app.tar").unwrap();
    let torrent = create(
        &source,
        options(MetaVersion::Hybrid),
        Some(name),
        1,
        &|_| {},
    )
    .unwrap();
    assert_eq!(torrent.info().name.as_str(), "app.tar");
    assert_eq!(torrent.info().files[0].path.to_string(), "app.tar");
}
