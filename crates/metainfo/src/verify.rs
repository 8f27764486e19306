//! Checking a downloaded piece against the torrent: SHA-256 Merkle (v2 and hybrid torrents,
//! from the piece layers or, for files of one piece, the file's root) or SHA-1 (v1 torrents).
//!
//! Hybrid torrents are checked with v2: SHA-256 is the integrity anchor. A hybrid torrent
//! without its piece layers (metadata fetched from a magnet link) falls back to its v1 SHA-1
//! piece hashes, which cover each piece's data followed by its BEP 47 padding zeros.

use sha1::{Digest, Sha1};

use crate::geometry::{BLOCK_SIZE, Geometry, PieceIndex};
use crate::hash::{Sha1Hash, Sha256Hash};
use crate::info::MetaVersion;
use crate::merkle;
use crate::torrent::Torrent;

/// What one piece must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// v1: the SHA-1 of the piece.
    Sha1(Sha1Hash),
    /// v2: the root of the piece's subtree, `width` leaves wide.
    Merkle { root: Sha256Hash, width: u32 },
}

/// A torrent whose v2 piece layers are not known yet (a torrent made from a magnet link, before
/// peers sent the layers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the torrent has no piece layer for {file}, so its pieces cannot be verified yet")]
pub struct MissingPieceLayer {
    /// The file whose layer is missing.
    pub file: String,
}

/// Checks pieces of one torrent. Cheap to share; holds one expected hash per piece.
#[derive(Clone, Debug)]
pub struct PieceVerifier {
    geometry: Geometry,
    expected: Vec<Expected>,
    /// For a hybrid checked with SHA-1: each piece's v1 length (data plus padding).
    v1_span: Vec<u32>,
}

impl PieceVerifier {
    /// The verifier for `torrent`.
    ///
    /// # Errors
    /// [`MissingPieceLayer`] for a v2 or hybrid torrent lacking a file's piece layer.
    pub fn new(torrent: &Torrent) -> Result<Self, MissingPieceLayer> {
        let info = torrent.info();
        let geometry = info.geometry().map_err(|_| MissingPieceLayer {
            file: info.name.to_string(),
        })?;
        let layers_complete = info
            .data_files()
            .filter(|f| f.length > info.piece_length.bytes())
            .all(|f| {
                f.pieces_root
                    .is_some_and(|root| torrent.piece_layers.contains_key(&root))
            });
        let use_v1 = match info.version {
            MetaVersion::V1 => true,
            // A hybrid torrent fetched from a magnet link has no piece layers yet: its SHA-1
            // piece hashes still verify every byte.
            MetaVersion::Hybrid => !layers_complete,
            MetaVersion::V2 => false,
        };
        let expected = match use_v1 {
            true => info.pieces.iter().copied().map(Expected::Sha1).collect(),
            false => {
                let blocks_per_piece = info.piece_length.blocks_per_piece();
                let mut expected = Vec::with_capacity(geometry.piece_count() as usize);
                for file in info.data_files().filter(|f| f.length > 0) {
                    let missing = || MissingPieceLayer {
                        file: file.path.to_string(),
                    };
                    let root = file.pieces_root.ok_or_else(missing)?;
                    if file.length <= info.piece_length.bytes() {
                        let width = file
                            .length
                            .div_ceil(u64::from(BLOCK_SIZE))
                            .next_power_of_two() as u32;
                        expected.push(Expected::Merkle { root, width });
                    } else {
                        let layer = torrent.piece_layers.get(&root).ok_or_else(missing)?;
                        expected.extend(layer.iter().map(|&root| Expected::Merkle {
                            root,
                            width: blocks_per_piece,
                        }));
                    }
                }
                expected
            }
        };
        let v1_span = if use_v1 && info.version == MetaVersion::Hybrid {
            let v1_length: u64 = info.files.iter().map(|f| f.length).sum();
            let v1 =
                Geometry::new(info.piece_length, [v1_length]).map_err(|_| MissingPieceLayer {
                    file: info.name.to_string(),
                })?;
            v1.pieces().map(|p| v1.piece_len(p)).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            geometry,
            expected,
            v1_span,
        })
    }

    /// The torrent's piece geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Returns true if and only if `data` is exactly piece `piece`.
    pub fn verify(&self, piece: PieceIndex, data: &[u8]) -> bool {
        if data.len() != self.geometry.piece_len(piece) as usize {
            return false;
        }
        match self.expected.get(piece.get() as usize) {
            Some(Expected::Sha1(hash)) => {
                let mut sha1 = Sha1::new();
                sha1.update(data);
                // Hybrid pieces are hashed in v1 with their padding: zeros up to the v1 span.
                let pad = self
                    .v1_span
                    .get(piece.get() as usize)
                    .map_or(0, |&span| span as usize - data.len());
                let zeros = [0u8; 4096];
                let mut left = pad;
                while left > 0 {
                    let n = left.min(zeros.len());
                    sha1.update(&zeros[..n]);
                    left -= n;
                }
                Sha1Hash(sha1.finalize().into()) == *hash
            }
            Some(Expected::Merkle { root, width }) => {
                merkle::root(
                    &merkle::leaves(data),
                    *width as usize,
                    Sha256Hash::default(),
                ) == *root
            }
            None => false,
        }
    }

    /// The SHA-256 of each 16 KiB block of `data`: what the swarm compares to find which peer
    /// sent which bad block after a piece fails.
    pub fn block_digests(data: &[u8]) -> Vec<Sha256Hash> {
        merkle::leaves(data)
    }
}
