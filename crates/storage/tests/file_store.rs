//! File-store behaviours beyond the conformance suite: crash safety, staging and the move to
//! the destination, seeding in place, and a full disk (on a real, small tmpfs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_metainfo::create::InputFile;
use shoal_metainfo::{MetaVersion, TorrentPath};
use shoal_storage::{FileStore, PieceStore, ResumeError, ResumeState, StorageError};
use support::{Fixture, fixture, fixture_of, shapes};

const ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// A scratch directory with a staging root and a destination.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn staging(&self) -> PathBuf {
        self.dir.path().join("staging")
    }
    fn destination(&self) -> PathBuf {
        self.dir.path().join("destination")
    }
    fn open(&self, fx: &Fixture) -> FileStore {
        FileStore::open(&fx.info, ID, &self.staging(), &self.destination()).unwrap()
    }
    fn resume_file(&self) -> PathBuf {
        self.staging().join(ID).join("resume")
    }
}

fn hybrid_multi() -> Fixture {
    shapes()
        .into_iter()
        .find(|(name, _)| *name == "hybrid multi")
        .unwrap()
        .1
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// The data files of `fx` as they must appear in a download directory, with contents.
fn expected_files(fx: &Fixture) -> Vec<(PathBuf, &[u8])> {
    let mut out: Vec<(PathBuf, &[u8])> = fx
        .info
        .files
        .iter()
        .zip(&fx.contents)
        .filter(|(f, _)| !f.attr.pad)
        .map(|(f, bytes)| {
            let path = if fx.info.single_file {
                f.path.to_path_buf()
            } else {
                Path::new(fx.info.name.as_str()).join(f.path.to_path_buf())
            };
            (path, bytes.as_slice())
        })
        .collect();
    out.sort();
    out
}

fn assert_download_dir(dir: &Path, fx: &Fixture) {
    let expected = expected_files(fx);
    let paths: Vec<PathBuf> = expected.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(files_under(dir), paths, "files under {}", dir.display());
    for (path, bytes) in expected {
        assert!(
            fs::read(dir.join(&path)).unwrap() == bytes,
            "{}",
            path.display()
        );
    }
}

fn complete(store: &FileStore, fx: &Fixture) {
    fx.write_all(store);
    for piece in 0..fx.piece_count() {
        store.mark_verified(piece).unwrap();
    }
}

#[test]
fn staging_holds_sparse_files_and_the_destination_stays_empty() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    let store = scratch.open(&fx);
    assert!(matches!(store.resume_state(), ResumeState::Fresh));
    let staged = store.staging_dir().unwrap().to_owned();
    assert_eq!(staged, scratch.staging().join(ID));
    // Every data file (empty ones too) at its final length; no padding file.
    let mut expected: Vec<PathBuf> = expected_files(&fx).into_iter().map(|(p, _)| p).collect();
    assert_eq!(files_under(&staged), expected);
    for (path, bytes) in expected_files(&fx) {
        assert_eq!(
            fs::metadata(staged.join(path)).unwrap().len(),
            bytes.len() as u64
        );
    }
    complete(&store, &fx);
    store.flush().unwrap();
    expected.push("resume".into());
    expected.sort();
    assert_eq!(files_under(&staged), expected);
    assert!(!scratch.destination().exists());
}

#[test]
fn a_crash_keeps_exactly_what_the_last_flush_recorded() {
    for (name, fx) in shapes() {
        let scratch = Scratch::new();
        let count = fx.piece_count();
        let flushed: Vec<u32> = (0..count).filter(|p| p % 3 != 1).collect();
        {
            let store = scratch.open(&fx);
            fx.write_all(&store);
            for &p in &flushed {
                store.mark_verified(p).unwrap();
            }
            store.flush().unwrap();
            // After the flush: more verified, and garbage in an unverified piece, then a
            // crash (drop without flush).
            store.mark_verified(1).unwrap();
            store.write(1, 0, &[0xEE; 3]).unwrap_err();
            if count > 4 {
                store.write(4, 0, &[0xEE; 100]).unwrap();
            }
        }
        let store = scratch.open(&fx);
        assert_eq!(
            store.verified().iter().collect::<Vec<_>>(),
            flushed,
            "{name}"
        );
        assert!(
            matches!(store.resume_state(), ResumeState::Restored { verified, reset } if *verified == flushed.len() as u32 && reset.is_empty()),
            "{name}: {:?}",
            store.resume_state()
        );
        for &p in &flushed {
            let mut buf = vec![0; fx.span(p)];
            store.read(p, 0, &mut buf).unwrap();
            assert!(buf == fx.piece(p), "{name}: piece {p}");
        }
        // Unrecorded data is kept but not trusted: the caller re-verifies it and marks it.
        for p in (0..count).filter(|p| !flushed.contains(p)) {
            if p != 4 {
                store.mark_verified(p).unwrap();
            }
        }
        if count > 4 {
            fx.write_piece(&store, 4);
            store.mark_verified(4).unwrap();
        }
        store.finish().unwrap();
        assert_download_dir(&scratch.destination(), &fx);
    }
}

#[test]
fn a_store_that_never_flushed_reopens_with_nothing_verified() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    {
        let store = scratch.open(&fx);
        complete(&store, &fx);
    }
    let store = scratch.open(&fx);
    assert!(matches!(store.resume_state(), ResumeState::Fresh));
    assert_eq!(store.verified().count(), 0);
    // The bytes are still there for the caller to re-verify.
    fx.check_all(&store);
}

#[test]
fn an_unusable_resume_file_means_nothing_verified_with_a_reason() {
    let fx = hybrid_multi();
    type Damage = fn(&mut Vec<u8>);
    type Check = fn(&ResumeError) -> bool;
    let cases: &[(&str, Damage, Check)] = &[
        (
            "empty",
            |b| b.clear(),
            |e| matches!(e, ResumeError::Corrupt(_)),
        ),
        (
            "truncated",
            |b| b.truncate(b.len() - 1),
            |e| matches!(e, ResumeError::Corrupt(_)),
        ),
        (
            "flipped bit",
            |b| b[21] ^= 0x10,
            |e| matches!(e, ResumeError::Corrupt("checksum mismatch")),
        ),
        (
            "garbage",
            |b| b.iter_mut().for_each(|x| *x = 0x5A),
            |e| matches!(e, ResumeError::Corrupt(_)),
        ),
        (
            "other version",
            |b| b[8] = 9,
            |e| matches!(e, ResumeError::Version { found: 9 }),
        ),
        (
            "other piece count",
            |b| b[16] ^= 1,
            |e| matches!(e, ResumeError::PieceCount { .. }),
        ),
    ];
    for (case, damage, check) in cases {
        let scratch = Scratch::new();
        {
            let store = scratch.open(&fx);
            complete(&store, &fx);
            store.flush().unwrap();
        }
        let mut bytes = fs::read(scratch.resume_file()).unwrap();
        damage(&mut bytes);
        fs::write(scratch.resume_file(), bytes).unwrap();
        let store = scratch.open(&fx);
        let ResumeState::Discarded(reason) = store.resume_state() else {
            panic!("{case}: {:?}", store.resume_state());
        };
        assert!(check(reason), "{case}: {reason:?}");
        assert!(
            reason.to_string().contains("re-verified"),
            "{case}: {reason}"
        );
        assert_eq!(store.verified().count(), 0, "{case}");
        // The next flush writes a good record again.
        store.mark_verified(0).unwrap();
        store.flush().unwrap();
        drop(store);
        assert_eq!(scratch.open(&fx).verified().iter().collect::<Vec<_>>(), [0]);
    }
}

#[test]
fn a_damaged_staging_file_is_recreated_and_its_pieces_dropped_durably() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    {
        let store = scratch.open(&fx);
        complete(&store, &fx);
        store.flush().unwrap();
    }
    let staged = scratch.staging().join(ID);
    let lost = Path::new("artifact").join("f");
    let shrunk = Path::new("artifact").join("a");
    fs::remove_file(staged.join(&lost)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(staged.join(&shrunk))
        .unwrap()
        .set_len(10)
        .unwrap();
    let store = scratch.open(&fx);
    let (f, a) = (
        fx.info
            .files
            .iter()
            .position(|f| f.path.to_string() == "f")
            .unwrap(),
        fx.info
            .files
            .iter()
            .position(|f| f.path.to_string() == "a")
            .unwrap(),
    );
    let dropped: Vec<u32> = store
        .layout()
        .pieces_of(a)
        .chain(store.layout().pieces_of(f))
        .collect();
    let kept: Vec<u32> = (0..fx.piece_count())
        .filter(|p| !dropped.contains(p))
        .collect();
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), kept);
    let ResumeState::Restored { verified, reset } = store.resume_state() else {
        panic!("{:?}", store.resume_state());
    };
    assert_eq!(*verified, kept.len() as u32);
    assert_eq!(reset, &[staged.join(&shrunk), staged.join(&lost)]);
    assert_eq!(fs::metadata(staged.join(&lost)).unwrap().len(), 70_000);
    // The loss is on record at once: a crash now must not bring the pieces back.
    drop(store);
    let store = scratch.open(&fx);
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), kept);
    for &p in &dropped {
        fx.write_piece(&store, p);
        store.mark_verified(p).unwrap();
    }
    store.finish().unwrap();
    assert_download_dir(&scratch.destination(), &fx);
}

#[test]
fn mark_unverified_is_durable_before_the_piece_is_rewritten() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    {
        let store = scratch.open(&fx);
        complete(&store, &fx);
        store.flush().unwrap();
        store.mark_unverified(2).unwrap();
        store.write(2, 0, &[0xEE; 64]).unwrap();
    }
    let store = scratch.open(&fx);
    assert!(!store.verified().contains(2));
    assert_eq!(store.verified().count(), fx.piece_count() - 1);
}

#[test]
fn finish_moves_every_file_and_removes_staging() {
    for (name, fx) in shapes() {
        let scratch = Scratch::new();
        let store = scratch.open(&fx);
        complete(&store, &fx);
        store.finish().unwrap();
        assert_download_dir(&scratch.destination(), &fx);
        assert!(!scratch.staging().join(ID).exists(), "{name}");
        // Reads now come from the destination.
        fx.check_all(&store);
    }
}

#[test]
fn finish_marks_executables() {
    let scratch = Scratch::new();
    let input = |path: &str, length, executable| InputFile {
        path: TorrentPath::parse(path).unwrap(),
        length,
        executable,
    };
    let fx = fixture_of(
        MetaVersion::Hybrid,
        vec![input("bin/tool", 20_000, true), input("doc", 300, false)],
        false,
        16_384,
    );
    let store = scratch.open(&fx);
    complete(&store, &fx);
    store.finish().unwrap();
    let mode = |p: &str| {
        fs::metadata(scratch.destination().join("artifact").join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    // Execute wherever read is allowed (0o644 becomes 0o755).
    assert_eq!(mode("bin/tool") & 0o111, (mode("bin/tool") & 0o444) >> 2);
    assert_ne!(mode("bin/tool") & 0o100, 0);
    assert_eq!(mode("doc") & 0o111, 0);
}

#[test]
fn finish_refuses_to_overwrite_and_moves_nothing() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    let taken = scratch.destination().join("artifact").join("f");
    fs::create_dir_all(taken.parent().unwrap()).unwrap();
    fs::write(&taken, b"mine").unwrap();
    let store = scratch.open(&fx);
    complete(&store, &fx);
    let e = store.finish().unwrap_err();
    assert!(
        matches!(&e, StorageError::DestinationExists { path } if *path == taken),
        "{e:?}"
    );
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(fs::read(&taken).unwrap(), b"mine");
    assert_eq!(
        files_under(&scratch.destination()),
        [Path::new("artifact/f")]
    );
    // Still whole in staging, still writable state: nothing was sealed.
    assert!(store.verified().is_full());
    store.mark_unverified(0).unwrap();
    fx.write_piece(&store, 0);
    store.mark_verified(0).unwrap();
    fs::remove_file(&taken).unwrap();
    store.finish().unwrap();
    assert_download_dir(&scratch.destination(), &fx);
}

#[test]
fn seed_in_place_serves_existing_data_read_only() {
    for (name, fx) in shapes() {
        let scratch = Scratch::new();
        let root = scratch.dir.path().join("data");
        for (path, bytes) in expected_files(&fx) {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        // The file itself, or the torrent's own directory.
        let data_path = root.join(fx.info.name.as_str());
        let store = FileStore::seed_in_place(&fx.info, &data_path).unwrap();
        assert!(store.staging_dir().is_none(), "{name}");
        assert_eq!(store.verified().count(), 0, "{name}");
        fx.check_all(&store);
        assert!(matches!(
            store.write(0, 0, &[1]),
            Err(StorageError::ReadOnly)
        ));
        assert!(matches!(
            store.finish(),
            Err(StorageError::NotComplete { .. })
        ));
        for piece in 0..fx.piece_count() {
            store.mark_verified(piece).unwrap();
        }
        store.flush().unwrap();
        store.finish().unwrap();
        fx.check_all(&store);
        // Nothing was written beside the data.
        assert_download_dir(&root, &fx);
    }
}

#[test]
fn seed_in_place_refuses_missing_or_wrong_sized_data() {
    let fx = fixture(
        MetaVersion::V1,
        &[("a", 1_000), ("b", 2_000)],
        false,
        16_384,
    );
    let scratch = Scratch::new();
    let root = scratch.dir.path().join("artifact");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("a"), vec![0; 1_000]).unwrap();
    let e = FileStore::seed_in_place(&fx.info, &root).unwrap_err();
    assert!(
        matches!(&e, StorageError::Io { path, source, .. } if *path == root.join("b") && source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    fs::write(root.join("b"), vec![0; 1_999]).unwrap();
    let e = FileStore::seed_in_place(&fx.info, &root).unwrap_err();
    assert!(
        matches!(&e, StorageError::WrongSize { path, expected: 2_000, found: 1_999 } if *path == root.join("b")),
        "{e:?}"
    );
    fs::remove_file(root.join("b")).unwrap();
    fs::create_dir(root.join("b")).unwrap();
    assert!(matches!(
        FileStore::seed_in_place(&fx.info, &root),
        Err(StorageError::Io { .. })
    ));
}

#[test]
fn a_staging_id_must_be_one_safe_component() {
    let scratch = Scratch::new();
    let fx = hybrid_multi();
    for id in ["", "..", "a/b", "x\0"] {
        let r = FileStore::open(&fx.info, id, &scratch.staging(), &scratch.destination());
        assert!(matches!(r, Err(StorageError::BadId { .. })), "{id:?}");
    }
    assert!(!scratch.staging().exists());
}

/// A tmpfs of a given size, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs failed; this test needs root (CI runs it as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file open: detach now, the kernel finishes later.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn disk_full_is_typed_and_the_flushed_state_survives() {
    // Declared first so it is dropped last, after every store on it.
    let tmpfs = Tmpfs::mount("512k");
    let destination = tempfile::tempdir().unwrap();
    // 1 MiB on a 512 KiB filesystem.
    let fx = fixture(MetaVersion::V1, &[("big", 1 << 20)], true, 16_384);
    let open = || FileStore::open(&fx.info, ID, tmpfs.path(), destination.path()).unwrap();
    let staged_file = tmpfs.path().join(ID).join("big");
    let mut recorded = Vec::new();
    {
        let store = open();
        for piece in 0..8 {
            fx.write_piece(&store, piece);
            store.mark_verified(piece).unwrap();
        }
        store.flush().unwrap();
        recorded.extend(0..8);
        let mut full = None;
        for piece in 8..fx.piece_count() {
            let data = fx.piece(piece);
            if let Err(e) = store.write(piece, 0, data) {
                full = Some(e);
                break;
            }
            store.mark_verified(piece).unwrap();
        }
        let e = full.expect("a 1 MiB download fits no 512 KiB tmpfs");
        assert!(
            matches!(&e, StorageError::DiskFull { path, .. } if *path == staged_file),
            "{e:?}"
        );
        assert!(!e.is_bad_request());
        assert!(e.to_string().contains("free some space"), "{e}");
        // Flushing on a full disk records the newly verified pieces or leaves the old record.
        match store.flush() {
            Ok(()) => recorded = store.verified().iter().collect(),
            Err(StorageError::DiskFull { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    let store = open();
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), recorded);
    assert!(
        matches!(store.resume_state(), ResumeState::Restored { reset, .. } if reset.is_empty())
    );
    for &p in &recorded {
        let mut buf = vec![0; fx.span(p)];
        store.read(p, 0, &mut buf).unwrap();
        assert!(buf == fx.piece(p), "piece {p}");
    }
}

#[test]
fn finish_copies_across_filesystems() {
    let tmpfs = Tmpfs::mount("4m");
    let destination = tempfile::tempdir().unwrap();
    let fx = hybrid_multi();
    let store = FileStore::open(&fx.info, ID, tmpfs.path(), destination.path()).unwrap();
    complete(&store, &fx);
    store.finish().unwrap();
    assert_download_dir(destination.path(), &fx);
    assert!(!tmpfs.path().join(ID).exists());
    fx.check_all(&store);
    drop(store);
}

#[test]
fn a_full_destination_interrupts_finish_and_reopening_completes_it() {
    let tmpfs = Tmpfs::mount("512k");
    let scratch = Scratch::new();
    let fx = fixture(
        MetaVersion::V1,
        &[("a", 100_000), ("b", 300_000)],
        false,
        16_384,
    );
    let filler = tmpfs.path().join("filler");
    fs::write(&filler, vec![1; 200_000]).unwrap();
    let open = || FileStore::open(&fx.info, ID, &scratch.staging(), tmpfs.path()).unwrap();
    {
        let store = open();
        complete(&store, &fx);
        let e = store.finish().unwrap_err();
        assert!(matches!(e, StorageError::DiskFull { .. }), "{e:?}");
        // `a` made it, `b` did not, and no partial copy is left behind.
        assert!(tmpfs.path().join("artifact/a").exists());
        assert_eq!(
            files_under(tmpfs.path()),
            [Path::new("artifact/a"), Path::new("filler")]
        );
        // Finishing has begun: the store no longer takes changes.
        assert!(matches!(
            store.mark_unverified(0),
            Err(StorageError::ReadOnly)
        ));
        fx.check_all(&store);
    }
    fs::remove_file(&filler).unwrap();
    let store = open();
    assert!(store.verified().is_full());
    fx.check_all(&store);
    store.finish().unwrap();
    assert_download_dir(tmpfs.path(), &fx);
    assert!(!scratch.staging().join(ID).exists());
    drop(store);
}
