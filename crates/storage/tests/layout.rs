//! `Layout` against a byte-by-byte model of piece space, over random torrents and requests;
//! and the refusal of file lists that do not match their geometry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use proptest::prelude::*;
use shoal_metainfo::{FileAttr, FileEntry, MetaVersion, TorrentPath};
use shoal_storage::{Layout, MemoryStore, StorageError};
use support::fixture;

fn version() -> impl Strategy<Value = MetaVersion> {
    prop_oneof![
        Just(MetaVersion::V1),
        Just(MetaVersion::V2),
        Just(MetaVersion::Hybrid)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn segments_match_the_byte_model(
        version in version(),
        lengths in prop::collection::vec(prop_oneof![Just(0u64), 1u64..40_000], 1..5),
        wide in any::<bool>(),
        request in (any::<u32>(), any::<u32>(), any::<u32>()),
    ) {
        prop_assume!(lengths.iter().any(|&l| l > 0));
        let names: Vec<String> = (0..lengths.len()).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, u64)> =
            names.iter().map(String::as_str).zip(lengths.iter().copied()).collect();
        let piece_length = match (version, wide) {
            (MetaVersion::V1, true) => 20_000,
            (_, true) => 32_768,
            (_, false) => 16_384,
        };
        let fx = fixture(version, &files, files.len() == 1, piece_length);
        let layout = Layout::new(&fx.info).unwrap();
        prop_assert_eq!(layout.piece_count(), fx.piece_count());

        let piece = request.0 % fx.piece_count();
        let span = fx.span(piece);
        prop_assert_eq!(layout.piece_span(piece).unwrap() as usize, span);
        let offset = request.1 as usize % (span + 1);
        let len = request.2 as usize % (span - offset + 1);
        let segments = layout.segments(piece, offset as u32, len).unwrap();

        // Expand the segments to one owner per byte and compare with the model.
        let mut got = vec![None; len];
        let mut last_end = 0;
        for seg in &segments {
            prop_assert!(seg.len > 0 && seg.at >= last_end, "ordered, disjoint, non-empty");
            last_end = seg.at + seg.len;
            let slot = &layout.files()[seg.file];
            prop_assert!(!slot.pad && seg.file_offset + seg.len as u64 <= slot.length);
            for i in 0..seg.len {
                got[seg.at + i] = Some((seg.file, seg.file_offset + i as u64));
            }
        }
        let start = piece as usize * fx.piece_length() + offset;
        let model: Vec<_> = (start..start + len)
            .map(|b| fx.owners.get(b).copied().flatten())
            .collect();
        prop_assert_eq!(got, model);

        // One byte more is refused.
        let too_long = layout.segments(piece, offset as u32, span - offset + 1);
        prop_assert!(
            matches!(too_long, Err(StorageError::RangeOutOfPiece { .. })),
            "{:?}",
            too_long
        );
    }
}

#[test]
fn pieces_of_each_file() {
    let fx = fixture(
        MetaVersion::Hybrid,
        &[("a", 40_000), ("b", 0), ("c", 100)],
        false,
        32_768,
    );
    let layout = Layout::new(&fx.info).unwrap();
    let by_name = |name: &str| {
        let i = layout
            .files()
            .iter()
            .position(|f| f.path.ends_with(name))
            .unwrap();
        layout.pieces_of(i)
    };
    assert_eq!(by_name("a"), 0..2);
    assert_eq!(by_name("b"), 0..0);
    assert_eq!(by_name("c"), 2..3);
    // Padding files are placed but own no piece.
    let pad = layout.files().iter().position(|f| f.pad).unwrap();
    assert_eq!(layout.pieces_of(pad), 0..0);
    assert_eq!(layout.pieces_of(99), 0..0);
    assert_eq!(layout.files()[0].path, std::path::Path::new("artifact/a"));
}

#[test]
fn a_file_list_that_does_not_match_the_geometry_is_refused() {
    let fx = fixture(
        MetaVersion::Hybrid,
        &[("a", 40_000), ("c", 100)],
        false,
        32_768,
    );
    // Remove the padding after `a`: `c` no longer starts on a piece boundary.
    let mut info = fx.info.clone();
    info.files
        .retain(|f| f.path.to_string() != format!(".pad/{}", 65_536 - 40_000));
    assert!(matches!(
        Layout::new(&info),
        Err(StorageError::Misplaced { path, .. }) if path == "c"
    ));
    // Padding that adds a piece the geometry does not have.
    let mut info = fx.info.clone();
    info.files.push(FileEntry {
        path: TorrentPath::parse(".pad/99999").unwrap(),
        length: 99_999,
        attr: FileAttr {
            pad: true,
            ..FileAttr::default()
        },
        pieces_root: None,
    });
    assert!(matches!(
        Layout::new(&info),
        Err(StorageError::Misplaced { .. })
    ));
}

#[test]
fn a_torrent_too_large_for_memory_is_an_error() {
    let mut info = fixture(MetaVersion::V1, &[("a", 10)], true, 16_384).info;
    info.piece_length = shoal_metainfo::PieceLength::new_v1(128 << 20).unwrap();
    info.files[0].length = 1 << 50;
    assert!(matches!(
        MemoryStore::new(&info),
        Err(StorageError::TooLargeForMemory { bytes }) if bytes == 1 << 50
    ));
}
