//! Validated piece and block geometry: piece lengths, piece indexes and block references.
//!
//! Numbers that arrive from a torrent or a peer become these types at the boundary, so code
//! further in cannot hold an out-of-range piece or a block that crosses a piece end.
//!
//! Pieces live in a *piece space*: the files laid end to end. In v1 torrents a piece may span
//! files. In v2 and hybrid torrents every non-empty file starts on a piece boundary (hybrid
//! torrents say so with BEP 47 padding files), so a file's last piece may be short.

/// The size of a block: the unit of requests on the wire and the leaf of v2 Merkle trees.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// The largest piece length accepted: 128 MiB (libtorrent's limit too).
pub const MAX_PIECE_LENGTH: u64 = 128 << 20;

/// A validated piece length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceLength(u32);

/// Why a piece length, piece or block is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeometryError {
    /// A piece length of zero or above [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is out of range (1 byte to 128 MiB)")]
    PieceLengthOutOfRange(u64),
    /// A v2 piece length that is not a power of two of at least 16 KiB (BEP 52).
    #[error("piece length {0} is not a power of two of at least 16 KiB, as BEP 52 requires")]
    PieceLengthNotV2(u64),
    /// More pieces than a 32-bit index can name.
    #[error("{0} pieces is more than a torrent may have")]
    TooManyPieces(u64),
    /// A piece index at or past the piece count.
    #[error("piece {index} is out of range: the torrent has {count} pieces")]
    PieceOutOfRange {
        /// The index given.
        index: u32,
        /// The piece count.
        count: u32,
    },
    /// A block that is not aligned, has the wrong length, or crosses the end of its piece.
    #[error(
        "block at offset {offset} of length {len} does not fit piece {piece} of {piece_len} bytes"
    )]
    BadBlock {
        /// The piece.
        piece: u32,
        /// The offset given.
        offset: u32,
        /// The length given.
        len: u32,
        /// The piece's length.
        piece_len: u32,
    },
}

impl PieceLength {
    /// A v1 piece length: any length from 1 byte to [`MAX_PIECE_LENGTH`].
    ///
    /// # Errors
    /// [`GeometryError::PieceLengthOutOfRange`].
    pub fn new_v1(len: u64) -> Result<Self, GeometryError> {
        if len == 0 || len > MAX_PIECE_LENGTH {
            return Err(GeometryError::PieceLengthOutOfRange(len));
        }
        // In range, so it fits a u32.
        Ok(Self(len as u32))
    }

    /// A v2 (or hybrid) piece length: a power of two from 16 KiB to [`MAX_PIECE_LENGTH`].
    ///
    /// # Errors
    /// [`GeometryError::PieceLengthOutOfRange`] or [`GeometryError::PieceLengthNotV2`].
    pub fn new_v2(len: u64) -> Result<Self, GeometryError> {
        let v1 = Self::new_v1(len)?;
        if !len.is_power_of_two() || len < u64::from(BLOCK_SIZE) {
            return Err(GeometryError::PieceLengthNotV2(len));
        }
        Ok(v1)
    }

    /// A length the caller has computed to be a valid v2 length.
    pub(crate) const fn from_valid_v2(len: u32) -> Self {
        debug_assert!(len.is_power_of_two() && len >= BLOCK_SIZE && len as u64 <= MAX_PIECE_LENGTH);
        Self(len)
    }

    /// The length in bytes.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The length in bytes, widened.
    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// The number of pieces needed for `len` bytes.
    pub fn pieces_for(self, len: u64) -> u64 {
        len.div_ceil(self.bytes())
    }

    /// The number of 16 KiB blocks in a full piece (rounded up for odd v1 lengths).
    pub fn blocks_per_piece(self) -> u32 {
        self.0.div_ceil(BLOCK_SIZE)
    }
}

/// A piece index known to be below its torrent's piece count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A block request or delivery known to lie inside one piece: aligned to [`BLOCK_SIZE`], and
/// exactly one block long (shorter only at the end of a piece).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// The piece.
    pub piece: PieceIndex,
    /// The byte offset inside the piece; a multiple of [`BLOCK_SIZE`].
    pub offset: u32,
    /// The length in bytes; at most [`BLOCK_SIZE`].
    pub len: u32,
}

/// The piece layout of one torrent: piece length, piece count and the length of every piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    piece_length: PieceLength,
    /// Runs of piece space that hold data, as `(first piece, data length)`, sorted. One run for
    /// a v1 torrent; one per non-empty file for v2 and hybrid.
    extents: Vec<(u32, u64)>,
    piece_count: u32,
}

impl Geometry {
    /// The geometry of data runs that each start on a piece boundary, in order: one run (the
    /// total length) for v1, one per non-empty file for v2 and hybrid. Empty runs are skipped.
    ///
    /// # Errors
    /// [`GeometryError::TooManyPieces`] if the pieces do not fit 32-bit indexes.
    pub fn new(
        piece_length: PieceLength,
        runs: impl IntoIterator<Item = u64>,
    ) -> Result<Self, GeometryError> {
        let mut extents = Vec::new();
        let mut next: u64 = 0;
        for len in runs.into_iter().filter(|&len| len > 0) {
            let first = u32::try_from(next).map_err(|_| GeometryError::TooManyPieces(next))?;
            extents.push((first, len));
            next += piece_length.pieces_for(len);
        }
        let piece_count = u32::try_from(next).map_err(|_| GeometryError::TooManyPieces(next))?;
        Ok(Self {
            piece_length,
            extents,
            piece_count,
        })
    }

    /// The piece length.
    pub fn piece_length(&self) -> PieceLength {
        self.piece_length
    }

    /// The number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Every piece index, in order.
    pub fn pieces(&self) -> impl ExactSizeIterator<Item = PieceIndex> + use<> {
        (0..self.piece_count).map(PieceIndex)
    }

    /// Validates a piece index.
    ///
    /// # Errors
    /// [`GeometryError::PieceOutOfRange`].
    pub fn piece(&self, index: u32) -> Result<PieceIndex, GeometryError> {
        if index < self.piece_count {
            Ok(PieceIndex(index))
        } else {
            Err(GeometryError::PieceOutOfRange {
                index,
                count: self.piece_count,
            })
        }
    }

    /// The number of data bytes in `piece` (short for the last piece of a run).
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        let at = self.extents.partition_point(|&(first, _)| first <= piece.0);
        // A `PieceIndex` from this geometry always has a run at or before it; one from another
        // geometry gets 0 rather than a panic.
        let Some(&(first, len)) = at.checked_sub(1).and_then(|i| self.extents.get(i)) else {
            return 0;
        };
        let start = u64::from(piece.0 - first) * self.piece_length.bytes();
        // At most the piece length, so it fits a u32.
        len.saturating_sub(start).min(self.piece_length.bytes()) as u32
    }

    /// The number of blocks in `piece`.
    pub fn blocks_in(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// Validates a block: `offset` must be a multiple of [`BLOCK_SIZE`] inside the piece and
    /// `len` exactly the block's length (a full block, or the rest of the piece).
    ///
    /// # Errors
    /// [`GeometryError::PieceOutOfRange`] or [`GeometryError::BadBlock`].
    pub fn block(&self, piece: u32, offset: u32, len: u32) -> Result<BlockRef, GeometryError> {
        let index = self.piece(piece)?;
        let piece_len = self.piece_len(index);
        let expected = piece_len.saturating_sub(offset).min(BLOCK_SIZE);
        if !offset.is_multiple_of(BLOCK_SIZE) || offset >= piece_len || len != expected {
            return Err(GeometryError::BadBlock {
                piece,
                offset,
                len,
                piece_len,
            });
        }
        Ok(BlockRef {
            piece: index,
            offset,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K16: u64 = BLOCK_SIZE as u64;

    #[test]
    fn piece_lengths() {
        assert_eq!(
            PieceLength::new_v1(0),
            Err(GeometryError::PieceLengthOutOfRange(0))
        );
        assert_eq!(
            PieceLength::new_v1(MAX_PIECE_LENGTH + 1),
            Err(GeometryError::PieceLengthOutOfRange(MAX_PIECE_LENGTH + 1))
        );
        assert_eq!(
            PieceLength::new_v1(20_000).map(PieceLength::get),
            Ok(20_000)
        );
        assert_eq!(
            PieceLength::new_v2(20_000),
            Err(GeometryError::PieceLengthNotV2(20_000))
        );
        assert_eq!(
            PieceLength::new_v2(8192),
            Err(GeometryError::PieceLengthNotV2(8192))
        );
        assert_eq!(
            PieceLength::new_v2(K16).map(PieceLength::blocks_per_piece),
            Ok(1)
        );
        assert_eq!(
            PieceLength::new_v1(20_000).map(PieceLength::blocks_per_piece),
            Ok(2)
        );
    }

    #[test]
    fn v1_geometry_has_one_run() {
        let len = PieceLength::new_v1(2 * K16).unwrap();
        let g = Geometry::new(len, [5 * K16 + 100]).unwrap();
        assert_eq!(g.piece_count(), 3);
        assert_eq!(g.piece_len(g.piece(0).unwrap()), 2 * BLOCK_SIZE);
        assert_eq!(g.piece_len(g.piece(2).unwrap()), BLOCK_SIZE + 100);
        assert_eq!(g.blocks_in(g.piece(2).unwrap()), 2);
        assert_eq!(
            g.piece(3),
            Err(GeometryError::PieceOutOfRange { index: 3, count: 3 })
        );
    }

    #[test]
    fn aligned_geometry_has_short_pieces_at_each_file_end() {
        let len = PieceLength::new_v2(2 * K16).unwrap();
        // Files of 3 blocks, 0 bytes (skipped), 100 bytes, 4 blocks.
        let g = Geometry::new(len, [3 * K16, 0, 100, 4 * K16]).unwrap();
        assert_eq!(g.piece_count(), 2 + 1 + 2);
        let lens: Vec<u32> = (0..5).map(|i| g.piece_len(g.piece(i).unwrap())).collect();
        assert_eq!(
            lens,
            [
                2 * BLOCK_SIZE,
                BLOCK_SIZE,
                100,
                2 * BLOCK_SIZE,
                2 * BLOCK_SIZE
            ]
        );
    }

    #[test]
    fn blocks_must_be_aligned_and_exact() {
        let len = PieceLength::new_v2(2 * K16).unwrap();
        let g = Geometry::new(len, [K16 + 100]).unwrap();
        assert!(g.block(0, 0, BLOCK_SIZE).is_ok());
        assert!(g.block(0, BLOCK_SIZE, 100).is_ok());
        for (offset, block_len) in [
            (1, BLOCK_SIZE),
            (BLOCK_SIZE, 99),
            (BLOCK_SIZE, BLOCK_SIZE),
            (2 * BLOCK_SIZE, 1),
            (0, 0),
        ] {
            assert!(
                matches!(
                    g.block(0, offset, block_len),
                    Err(GeometryError::BadBlock { .. })
                ),
                "{offset}+{block_len}"
            );
        }
        assert!(matches!(
            g.block(1, 0, 1),
            Err(GeometryError::PieceOutOfRange { .. })
        ));
    }

    #[test]
    fn too_many_pieces_is_an_error() {
        let len = PieceLength::new_v1(1).unwrap();
        assert!(matches!(
            Geometry::new(len, [u64::from(u32::MAX) + 1]),
            Err(GeometryError::TooManyPieces(_))
        ));
    }
}
