//! Checking a downloaded piece against the torrent: SHA-256 Merkle (v2 and hybrid torrents,
//! from the piece layers or, for files of one piece, the file's root) or SHA-1 (v1 torrents).
//!
//! Hybrid torrents are checked with v2: SHA-256 is the integrity anchor. A hybrid torrent
//! without its piece layers (metadata fetched from a magnet link) falls back to its v1 SHA-1
//! piece hashes, which cover each piece's data followed by its BEP 47 padding zeros.
//!
//! A downloader hashes blocks as they arrive with a [`PieceHasher`], so a finished piece is
//! judged without reading it back: v2 leaves are order-independent; SHA-1 takes blocks in
//! order and tells the caller to hold back one that comes early.

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
                update_zeros(&mut sha1, pad);
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

    /// A hasher for `piece`, fed block by block as the blocks arrive.
    pub fn hasher(&self, piece: PieceIndex) -> PieceHasher {
        let len = self.geometry.piece_len(piece);
        let state = match self.expected.get(piece.get() as usize) {
            Some(Expected::Merkle { .. }) => HasherState::Merkle {
                leaves: vec![None; len.div_ceil(BLOCK_SIZE) as usize],
            },
            Some(Expected::Sha1(_)) => HasherState::Sha1 {
                sha1: Sha1::new(),
                next: 0,
            },
            None => HasherState::Broken,
        };
        PieceHasher { piece, len, state }
    }

    /// Judges the piece `hasher` was fed: `None` when the hasher did not see every byte exactly
    /// once in a usable order (the caller then reads the piece back and calls [`Self::verify`]).
    pub fn finish(&self, hasher: PieceHasher) -> Option<HashedPiece> {
        let piece = hasher.piece;
        match (hasher.state, self.expected.get(piece.get() as usize)?) {
            (HasherState::Merkle { leaves }, Expected::Merkle { root, width }) => {
                let leaves: Vec<Sha256Hash> = leaves.into_iter().collect::<Option<_>>()?;
                let passed = merkle::root(&leaves, *width as usize, Sha256Hash::default()) == *root;
                Some(HashedPiece {
                    passed,
                    block_digests: Some(leaves),
                })
            }
            (HasherState::Sha1 { mut sha1, next }, Expected::Sha1(hash)) => {
                if next != hasher.len {
                    return None;
                }
                let pad = self
                    .v1_span
                    .get(piece.get() as usize)
                    .map_or(0, |&span| span.saturating_sub(hasher.len) as usize);
                update_zeros(&mut sha1, pad);
                Some(HashedPiece {
                    passed: Sha1Hash(sha1.finalize().into()) == *hash,
                    block_digests: None,
                })
            }
            _ => None,
        }
    }
}

/// Feeds `count` zero bytes to `sha1` (a hybrid piece's BEP 47 padding).
fn update_zeros(sha1: &mut Sha1, count: usize) {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut left = count;
    while left > 0 {
        let n = left.min(ZEROS.len());
        sha1.update(&ZEROS[..n]);
        left -= n;
    }
}

/// A piece judged from the blocks fed to its [`PieceHasher`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedPiece {
    /// Whether the piece matches the torrent.
    pub passed: bool,
    /// The SHA-256 of each block, when the hash kept them (v2 leaves), for finding who sent a
    /// bad block.
    pub block_digests: Option<Vec<Sha256Hash>>,
}

/// What [`PieceHasher::update`] did with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// The block is hashed (or was unusable, and the piece will be read back).
    Taken,
    /// SHA-1 needs the bytes before this block first: feed it again after those.
    Later,
}

/// Hashes one piece incrementally from the blocks written for it.
#[derive(Clone, Debug)]
pub struct PieceHasher {
    piece: PieceIndex,
    len: u32,
    state: HasherState,
}

#[derive(Clone, Debug)]
enum HasherState {
    /// One leaf per 16 KiB block, in any order; a rewritten block replaces its leaf.
    Merkle { leaves: Vec<Option<Sha256Hash>> },
    /// SHA-1 over the bytes so far; `next` is the offset it expects.
    Sha1 { sha1: Sha1, next: u32 },
    /// The blocks did not fit the piece (overlap, misalignment): read the piece back.
    Broken,
}

impl PieceHasher {
    /// The SHA-1 offset this hasher needs next, if it hashes in order.
    pub fn next_offset(&self) -> Option<u32> {
        match self.state {
            HasherState::Sha1 { next, .. } => Some(next),
            _ => None,
        }
    }

    /// Feeds the block written at `offset`. Bytes past the piece's end (the padding a hybrid's
    /// v1 geometry adds, or a v2 block rounded up) are not part of the piece and are skipped.
    pub fn update(&mut self, offset: u32, data: &[u8]) -> Fed {
        let end = u64::from(offset) + data.len() as u64;
        let usable = (u64::from(self.len).min(end)).saturating_sub(u64::from(offset)) as usize;
        let data = &data[..usable.min(data.len())];
        if data.is_empty() {
            // Entirely past the end: padding, nothing to hash.
            return Fed::Taken;
        }
        match &mut self.state {
            HasherState::Merkle { leaves } => {
                let whole_block = data.len() == BLOCK_SIZE as usize
                    || u64::from(offset) + data.len() as u64 == u64::from(self.len);
                match leaves.get_mut((offset / BLOCK_SIZE) as usize) {
                    Some(leaf) if offset.is_multiple_of(BLOCK_SIZE) && whole_block => {
                        *leaf = Some(merkle::block_hash(data));
                    }
                    _ => self.state = HasherState::Broken,
                }
                Fed::Taken
            }
            HasherState::Sha1 { sha1, next } => {
                if offset > *next {
                    return Fed::Later;
                }
                if offset < *next {
                    // Overlap: the store keeps the later bytes, the hash has the earlier.
                    self.state = HasherState::Broken;
                    return Fed::Taken;
                }
                sha1.update(data);
                *next += data.len() as u32;
                Fed::Taken
            }
            HasherState::Broken => Fed::Taken,
        }
    }
}
