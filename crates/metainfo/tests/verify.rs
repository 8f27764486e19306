//! Piece verification accepts exactly the right bytes, for every version and piece shape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use shoal_metainfo::{Fed, MetaVersion, PieceVerifier, Torrent};
use support::{build, byte, options};

const K16: u64 = 16 * 1024;

/// Each piece's bytes in the verifier's geometry (hybrid pieces end where their file's data
/// ends), rebuilt from the synthetic file contents by walking piece space.
fn piece_bytes(torrent: &Torrent) -> Vec<Vec<u8>> {
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
        if info.version == MetaVersion::V2 && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    let g = torrent.info().geometry().unwrap();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, mut data)| {
            data.truncate(g.piece_len(g.piece(i as u32).unwrap()) as usize);
            data
        })
        .collect()
}

#[test]
fn right_bytes_pass_and_any_flipped_byte_fails() {
    let files = [("a", 3 * K16 + 100), ("b", 500), ("c/d", K16), ("e", 0)];
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let torrent = build("t", &files, false, options(version));
        let verifier = PieceVerifier::new(&torrent).unwrap();
        let g = verifier.geometry().clone();
        let pieces = piece_bytes(&torrent);
        assert_eq!(pieces.len() as u32, g.piece_count(), "{version:?}");
        for (i, data) in pieces.iter().enumerate() {
            let piece = g.piece(i as u32).unwrap();
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

/// Options for `version` with 64 KiB pieces (four blocks each).
fn options_64k(version: MetaVersion) -> shoal_metainfo::create::CreateOptions {
    shoal_metainfo::create::CreateOptions {
        piece_length: Some(4 * K16),
        ..options(version)
    }
}

#[test]
fn hashing_blocks_as_they_arrive_judges_like_verify_in_any_order() {
    let files = [("a", 9 * K16 + 100), ("b", 500), ("c", 4 * K16)];
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let torrent = build("t", &files, false, options_64k(version));
        let verifier = PieceVerifier::new(&torrent).unwrap();
        let g = verifier.geometry().clone();
        for (i, data) in piece_bytes(&torrent).iter().enumerate() {
            let piece = g.piece(i as u32).unwrap();
            let blocks: Vec<(u32, &[u8])> = data
                .chunks(K16 as usize)
                .enumerate()
                .map(|(b, chunk)| (b as u32 * K16 as u32, chunk))
                .collect();
            // In order, reversed (SHA-1 holds early blocks back), and with one byte flipped.
            for order in [false, true] {
                for corrupt in [false, true] {
                    let mut hasher = verifier.hasher(piece);
                    let mut held = Vec::new();
                    let mut feed: Vec<(u32, Vec<u8>)> =
                        blocks.iter().map(|(o, d)| (*o, d.to_vec())).collect();
                    if corrupt {
                        feed[0].1[3] ^= 1;
                    }
                    if order {
                        feed.reverse();
                    }
                    for (offset, block) in feed {
                        if hasher.update(offset, &block) == Fed::Later {
                            held.push((offset, block));
                        }
                        while let Some(at) = held
                            .iter()
                            .position(|(o, _)| Some(*o) == hasher.next_offset())
                        {
                            let (o, b) = held.remove(at);
                            assert_eq!(hasher.update(o, &b), Fed::Taken);
                        }
                    }
                    assert!(held.is_empty(), "{version:?} piece {i}: blocks left over");
                    let judged = verifier.finish(hasher).expect("every byte was fed");
                    assert_eq!(
                        judged.passed, !corrupt,
                        "{version:?} piece {i} {order} {corrupt}"
                    );
                    if version != MetaVersion::V1 && !corrupt {
                        assert_eq!(
                            judged.block_digests.unwrap(),
                            PieceVerifier::block_digests(data),
                            "{version:?} piece {i}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_hasher_that_missed_bytes_or_saw_overlaps_asks_for_a_read_back() {
    let files = [("a", 8 * K16)];
    for version in [MetaVersion::V1, MetaVersion::V2, MetaVersion::Hybrid] {
        let torrent = build("t", &files, true, options_64k(version));
        let verifier = PieceVerifier::new(&torrent).unwrap();
        let piece = verifier.geometry().piece(0).unwrap();
        let data = &piece_bytes(&torrent)[0];
        let block = |b: usize| &data[b * K16 as usize..(b + 1) * K16 as usize];

        // A block never arrived.
        let mut missing = verifier.hasher(piece);
        for b in 0..3 {
            missing.update(b as u32 * K16 as u32, block(b));
        }
        assert_eq!(verifier.finish(missing), None, "{version:?} missing block");

        // Blocks that straddle leaves: SHA-1 only needs the bytes contiguous; Merkle leaves
        // need whole blocks.
        let mut misaligned = verifier.hasher(piece);
        misaligned.update(0, &data[..K16 as usize + 10]);
        misaligned.update(K16 as u32 + 10, &data[K16 as usize + 10..]);
        let judged = verifier.finish(misaligned);
        match version {
            MetaVersion::V1 => assert!(judged.unwrap().passed),
            _ => assert_eq!(judged, None, "{version:?} misaligned"),
        }

        // The same block twice: a Merkle leaf is replaced, SHA-1 cannot take it back.
        let mut twice = verifier.hasher(piece);
        for b in 0..4 {
            twice.update(b as u32 * K16 as u32, block(b));
        }
        twice.update(0, block(0));
        let judged = verifier.finish(twice);
        match version {
            MetaVersion::V1 => assert_eq!(judged, None),
            _ => assert!(judged.unwrap().passed, "{version:?} rewritten leaf"),
        }
    }
}

#[test]
fn padding_past_a_pieces_end_is_not_hashed() {
    // Hybrid: file "a" ends 100 bytes into its last piece; the v1 geometry pads it with zeros
    // that a peer may send as whole blocks.
    let files = [("a", 4 * K16 + 100), ("b", 4 * K16)];
    let torrent = build("t", &files, false, options_64k(MetaVersion::Hybrid));
    let verifier = PieceVerifier::new(&torrent).unwrap();
    let piece = verifier.geometry().piece(1).unwrap();
    let data = &piece_bytes(&torrent)[1];
    assert_eq!(data.len(), 100);
    let mut block = data.clone();
    block.resize(K16 as usize, 0);
    let mut hasher = verifier.hasher(piece);
    hasher.update(0, &block);
    for b in 1..4 {
        assert_eq!(
            hasher.update(b * K16 as u32, &[0; K16 as usize]),
            Fed::Taken
        );
    }
    assert!(verifier.finish(hasher).unwrap().passed);
}
