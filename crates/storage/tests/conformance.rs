//! The conformance suite: behaviours every [`PieceStore`] must have, run against each store.
//!
//! A new store joins by implementing [`Harness`] and adding one `conformance!` line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_metainfo::{Info, MetaVersion};
use shoal_storage::{FileStore, MemoryStore, PieceStore, StorageError};
use support::{BLOCK, Fixture, fixture, shapes};

/// Opens fresh, empty stores.
trait Harness {
    fn open(&self, info: &Info) -> Box<dyn PieceStore>;
}

struct Memory;

impl Harness for Memory {
    fn open(&self, info: &Info) -> Box<dyn PieceStore> {
        Box::new(MemoryStore::new(info).unwrap())
    }
}

/// File stores side by side in one temporary directory, each with its own staging id and
/// destination.
struct Files {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Harness for Files {
    fn open(&self, info: &Info) -> Box<dyn PieceStore> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let staging = self.dir.path().join("staging");
        let destination = self.dir.path().join(format!("destination-{n}"));
        Box::new(FileStore::open(info, &format!("{n:040x}"), &staging, &destination).unwrap())
    }
}

macro_rules! conformance {
    ($store:ident, $harness:expr) => {
        mod $store {
            use super::*;

            #[test]
            fn every_shape_round_trips() {
                super::every_shape_round_trips(&$harness);
            }

            #[test]
            fn unaligned_ranges_cross_file_boundaries() {
                super::unaligned_ranges_cross_file_boundaries(&$harness);
            }

            #[test]
            fn padding_reads_zero_and_drops_writes() {
                super::padding_reads_zero_and_drops_writes(&$harness);
            }

            #[test]
            fn out_of_range_requests_are_typed_errors() {
                super::out_of_range_requests_are_typed_errors(&$harness);
            }

            #[test]
            fn verified_set_bookkeeping() {
                super::verified_set_bookkeeping(&$harness);
            }

            #[test]
            fn finish_requires_every_piece() {
                super::finish_requires_every_piece(&$harness);
            }

            #[test]
            fn concurrent_writers() {
                super::concurrent_writers(&$harness);
            }
        }
    };
}

conformance!(memory, Memory);
conformance!(files, Files::new());

fn v1_multi() -> Fixture {
    shapes().swap_remove(0).1
}

fn every_shape_round_trips(h: &dyn Harness) {
    for (name, fx) in shapes() {
        fx.check_model();
        let store = h.open(&fx.info);
        assert_eq!(store.verified().len(), fx.piece_count(), "{name}");
        fx.write_all(&*store);
        fx.check_all(&*store);
        // Blocks in reverse order land in the same places.
        let store = h.open(&fx.info);
        for piece in (0..fx.piece_count()).rev() {
            fx.write_piece(&*store, piece);
        }
        fx.check_all(&*store);
    }
}

fn unaligned_ranges_cross_file_boundaries(h: &dyn Harness) {
    // 20 000-byte pieces over files of 0, 40 000, 0, 5, 100, 65 536 and 70 000 bytes.
    let fx = v1_multi();
    let store = h.open(&fx.info);
    for piece in 0..fx.piece_count() {
        let expected = fx.piece(piece);
        for (i, chunk) in expected.chunks(7_777).enumerate() {
            store.write(piece, (i * 7_777) as u32, chunk).unwrap();
        }
    }
    for piece in 0..fx.piece_count() {
        let expected = fx.piece(piece);
        let span = expected.len();
        for offset in (0..span).step_by(4_999) {
            for len in [0, 1, 6_007, span - offset] {
                let len = len.min(span - offset);
                let mut buf = vec![0xAA; len];
                store.read(piece, offset as u32, &mut buf).unwrap();
                assert!(
                    buf == expected[offset..offset + len],
                    "piece {piece} at {offset}+{len}"
                );
            }
        }
    }
}

fn padding_reads_zero_and_drops_writes(h: &dyn Harness) {
    let (_, fx) = shapes()
        .into_iter()
        .find(|(name, _)| *name == "hybrid multi")
        .unwrap();
    let store = h.open(&fx.info);
    let padded: Vec<u32> = (0..fx.piece_count())
        .filter(|&p| fx.data_len(p) < fx.span(p))
        .collect();
    assert!(padded.len() >= 3, "the shape has padded pieces");
    for piece in 0..fx.piece_count() {
        // A v1 peer sends the whole piece; make its padding garbage to see it dropped.
        let mut data = fx.piece(piece).to_vec();
        data[fx.data_len(piece)..].fill(0xFF);
        for (i, block) in data.chunks(BLOCK).enumerate() {
            store.write(piece, (i * BLOCK) as u32, block).unwrap();
        }
    }
    fx.check_all(&*store);
    for &piece in &padded {
        let (data, span) = (fx.data_len(piece), fx.span(piece));
        store
            .write(piece, data as u32, &vec![0xEE; span - data])
            .unwrap();
        let mut buf = vec![0xAA; span - data];
        store.read(piece, data as u32, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "padding of piece {piece}");
    }
    fx.check_all(&*store);
}

fn out_of_range_requests_are_typed_errors(h: &dyn Harness) {
    for (name, fx) in shapes() {
        let store = h.open(&fx.info);
        let count = fx.piece_count();
        let last = count - 1;
        let span = fx.span(last) as u32;
        let mut buf = [0u8; 32];
        let piece_errors = [count, u32::MAX];
        for piece in piece_errors {
            let check = |r: Result<(), StorageError>| {
                assert!(
                    matches!(r, Err(StorageError::PieceOutOfRange { piece: p, count: c }) if p == piece && c == count),
                    "{name}: piece {piece}: {r:?}"
                );
            };
            check(store.write(piece, 0, &[1]));
            check(store.read(piece, 0, &mut buf[..1]));
            check(store.mark_verified(piece));
            check(store.mark_unverified(piece));
        }
        // Past the end, straddling the end, and offsets that would overflow a u32 sum.
        for (offset, len) in [
            (span, 1),
            (0, span as usize + 1),
            (span - 10, 20),
            (u32::MAX, 1),
            (u32::MAX - 5, 32),
        ] {
            let check = |r: Result<(), StorageError>| {
                let Err(e) = r else {
                    panic!("{name}: {offset}+{len} accepted")
                };
                assert!(e.is_bad_request(), "{name}: {e}");
                assert!(
                    matches!(e, StorageError::RangeOutOfPiece { piece, offset: o, len: l, piece_len }
                        if piece == last && o == offset && l == len as u64 && piece_len == span),
                    "{name}: {offset}+{len}: {e:?}"
                );
            };
            let mut big = vec![0u8; len];
            check(store.write(last, offset, &vec![7; len]));
            check(store.read(last, offset, &mut big));
        }
        if fx.info.version == MetaVersion::V2 {
            // After a short piece, the rest of its last 16 KiB block reads as zeros (libtorrent
            // asks for whole blocks); past that block nothing is addressable.
            // (Fixtures whose pieces are one block long have no such gap.)
            if let Some(short) = (0..count).find(|&p| fx.span(p) < fx.piece_length()) {
                let span = fx.span(short) as u32;
                assert!(matches!(
                    store.write(short, span, &[1]),
                    Err(StorageError::RangeOutOfPiece { .. })
                ));
            }
        }
        // Nothing was written or marked.
        assert_eq!(store.verified().count(), 0, "{name}");
        let mut whole = vec![0xAA; span as usize];
        store.read(last, 0, &mut whole).unwrap();
        assert!(
            whole.iter().all(|&b| b == 0),
            "{name}: refused write landed"
        );
    }
}

fn verified_set_bookkeeping(h: &dyn Harness) {
    let fx = v1_multi();
    let store = h.open(&fx.info);
    let count = fx.piece_count();
    assert_eq!(store.verified().len(), count);
    assert_eq!(store.verified().count(), 0);
    fx.write_all(&*store);
    store.mark_verified(0).unwrap();
    store.mark_verified(2).unwrap();
    store.mark_verified(2).unwrap();
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), [0, 2]);

    // Verified data is never rewritten.
    let e = store.write(0, 0, &[1, 2, 3]).unwrap_err();
    assert!(
        matches!(e, StorageError::AlreadyVerified { piece: 0 }),
        "{e:?}"
    );
    assert!(e.is_bad_request());
    store.write(1, 0, &[1, 2, 3]).unwrap();

    // Unmarking makes it writable again; unmarking an unverified piece is a no-op.
    store.mark_unverified(0).unwrap();
    store.mark_unverified(1).unwrap();
    store.write(0, 0, &fx.piece(0)[..3]).unwrap();
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), [2]);

    // Flushing changes nothing visible.
    store.flush().unwrap();
    store.flush().unwrap();
    assert_eq!(store.verified().iter().collect::<Vec<_>>(), [2]);
    let mut buf = vec![0; fx.span(2)];
    store.read(2, 0, &mut buf).unwrap();
    assert!(buf == fx.piece(2));
}

fn finish_requires_every_piece(h: &dyn Harness) {
    for (name, fx) in shapes() {
        let store = h.open(&fx.info);
        let count = fx.piece_count();
        fx.write_all(&*store);
        for piece in 0..count - 1 {
            store.mark_verified(piece).unwrap();
        }
        let e = store.finish().unwrap_err();
        assert!(
            matches!(e, StorageError::NotComplete { verified, total } if verified == count - 1 && total == count),
            "{name}: {e:?}"
        );
        assert!(!e.is_bad_request());
        // Refusing changed nothing: the last piece can still be rewritten and verified.
        fx.write_piece(&*store, count - 1);
        store.mark_verified(count - 1).unwrap();
        store.finish().unwrap();
        assert!(store.verified().is_full(), "{name}");

        // A finished store serves reads and refuses changes.
        fx.check_all(&*store);
        assert!(matches!(
            store.write(0, 0, &[1]),
            Err(StorageError::ReadOnly)
        ));
        assert!(matches!(
            store.mark_unverified(0),
            Err(StorageError::ReadOnly)
        ));
        store.mark_verified(0).unwrap();
        store.flush().unwrap();
        store.finish().unwrap();
        fx.check_all(&*store);
    }
}

fn concurrent_writers(h: &dyn Harness) {
    let fx = fixture(
        MetaVersion::V1,
        &[("a", 300_000), ("b", 1), ("c", 123_456)],
        false,
        16_384,
    );
    let store = h.open(&fx.info);
    let count = fx.piece_count();
    std::thread::scope(|s| {
        for lane in 0..2 {
            let (fx, store) = (&fx, &*store);
            s.spawn(move || {
                for piece in (lane..count).step_by(2) {
                    fx.write_piece(store, piece);
                    store.mark_verified(piece).unwrap();
                    if piece % 5 == 0 {
                        store.flush().unwrap();
                    }
                }
            });
        }
    });
    assert!(store.verified().is_full());
    fx.check_all(&*store);
    store.finish().unwrap();
}
