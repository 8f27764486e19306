//! Piece verification accepts exactly the right bytes, for every version and piece shape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use shoal_metainfo::{MetaVersion, PieceVerifier};
use support::{build, byte, options};

const K16: u64 = 16 * 1024;

#[test]
fn right_bytes_pass_and_any_flipped_byte_fails() {
    let files = [("a", 3 * K16 + 100), ("b", 500), ("c/d", K16), ("e", 0)];
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let torrent = build("t", &files, false, options(version));
        let verifier = PieceVerifier::new(&torrent).unwrap();
        let g = verifier.geometry().clone();
        // Rebuild each piece's bytes from the synthetic file contents, walking piece space.
        let info = torrent.info();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        for file in &info.files {
            let seed = file
                .path
                .to_string()
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            for offset in 0..file.length {
                current.push(if file.attr.pad { 0 } else { byte(seed, offset) });
                if current.len() as u64 == info.piece_length.bytes() {
                    pieces.push(std::mem::take(&mut current));
                }
            }
            if version == MetaVersion::V2 && !current.is_empty() {
                pieces.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            pieces.push(current);
        }
        assert_eq!(pieces.len() as u32, g.piece_count(), "{version:?}");
        for (i, data) in pieces.iter().enumerate() {
            let piece = g.piece(i as u32).unwrap();
            // Hybrid pieces end where the file's data ends; the padding is not data.
            let data = &data[..g.piece_len(piece) as usize];
            assert!(verifier.verify(piece, data), "{version:?} piece {i}");
            let mut bad = data.to_vec();
            bad[data.len() / 2] ^= 1;
            assert!(
                !verifier.verify(piece, &bad),
                "{version:?} piece {i} corrupted"
            );
            assert!(
                !verifier.verify(piece, &data[..data.len() - 1]),
                "{version:?} piece {i} short"
            );
        }
    }
}

#[test]
fn hybrid_without_piece_layers_falls_back_to_sha1_with_padding() {
    let files = [("a", 3 * K16 + 100), ("b", 500)];
    let mut torrent = build("t", &files, false, options(MetaVersion::Hybrid));
    torrent.piece_layers.clear();
    let verifier = PieceVerifier::new(&torrent).unwrap();
    let g = verifier.geometry().clone();
    let seed = |path: &str| {
        path.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    let a: Vec<u8> = (0..3 * K16 + 100).map(|o| byte(seed("a"), o)).collect();
    let b: Vec<u8> = (0..500).map(|o| byte(seed("b"), o)).collect();
    let pieces = [
        &a[..K16 as usize],
        &a[K16 as usize..2 * K16 as usize],
        &a[2 * K16 as usize..3 * K16 as usize],
        &a[3 * K16 as usize..],
        &b[..],
    ];
    assert_eq!(g.piece_count(), 5);
    for (i, data) in pieces.iter().enumerate() {
        let piece = g.piece(i as u32).unwrap();
        assert!(verifier.verify(piece, data), "piece {i}");
        let mut bad = data.to_vec();
        bad[0] ^= 1;
        assert!(!verifier.verify(piece, &bad), "piece {i} corrupted");
    }
}

#[test]
fn v2_without_piece_layers_cannot_verify() {
    let mut torrent = build("t", &[("big", 3 * K16)], false, options(MetaVersion::V2));
    torrent.piece_layers.clear();
    assert_eq!(PieceVerifier::new(&torrent).unwrap_err().file, "big");
}
