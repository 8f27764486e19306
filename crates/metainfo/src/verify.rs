//! Checking a downloaded piece against the torrent: SHA-256 Merkle (v2 and hybrid torrents,
//! from the piece layers or, for files of one piece, the file's root) or SHA-1 (v1 torrents).
//!
//! Hybrid torrents are checked with v2 only: SHA-256 is the integrity anchor, and the v1 hashes
//! of a hybrid cover padding bytes that are not data.

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
        let expected = match info.version {
            MetaVersion::V1 => info.pieces.iter().copied().map(Expected::Sha1).collect(),
            MetaVersion::V2 | MetaVersion::Hybrid => {
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
        Ok(Self { geometry, expected })
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
            Some(Expected::Sha1(hash)) => Sha1Hash(Sha1::digest(data).into()) == *hash,
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
