//! What can go wrong in a piece store, and what to do about it.
//!
//! Two kinds of failure are kept apart (see [`StorageError::is_bad_request`]): a request that
//! is refused while the store is fine (a range the torrent does not have, a write to data that
//! is verified or read-only), and a store that cannot go on (I/O errors, a full disk).

use std::io;
use std::path::{Path, PathBuf};

use shoal_metainfo::{MetainfoError, PathError};

/// Why a piece store refused a request or could not carry it out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A piece index at or past the piece count. Nothing was read or written.
    #[error("piece {piece} does not exist: the torrent has {count} pieces")]
    PieceOutOfRange {
        /// The index given.
        piece: u32,
        /// The torrent's piece count.
        count: u32,
    },
    /// A byte range that does not lie inside its piece. Nothing was read or written.
    #[error("{len} bytes at offset {offset} do not fit piece {piece} of {piece_len} bytes")]
    RangeOutOfPiece {
        /// The piece.
        piece: u32,
        /// The offset given.
        offset: u32,
        /// The length given.
        len: u64,
        /// How many bytes the piece has.
        piece_len: u32,
    },
    /// A write to a piece that is verified: verified data is never rewritten, so a late
    /// duplicate block cannot corrupt it. Harmless to drop; to replace the piece on purpose,
    /// call `mark_unverified` first.
    #[error("piece {piece} is already verified; its data is not rewritten")]
    AlreadyVerified {
        /// The piece.
        piece: u32,
    },
    /// A write (or `mark_unverified`) to a store that only serves data: one seeding existing
    /// data in place, or one whose download is finished or being moved to its destination.
    #[error(
        "this store is read-only (seeding in place, or the download is finished); the change was refused"
    )]
    ReadOnly,
    /// `finish` before every piece is verified. Nothing was moved.
    #[error(
        "cannot finish: only {verified} of {total} pieces are verified; keep downloading (or re-check the data) and finish again"
    )]
    NotComplete {
        /// Pieces verified.
        verified: u32,
        /// The piece count.
        total: u32,
    },
    /// `finish` found something at a path it would move a file to. Shoal never overwrites:
    /// the complete download stays in staging until the path is free.
    #[error(
        "{}: already exists at the destination; refusing to overwrite it. Move it away (or pick another destination) and finish again: the complete download waits in staging",
        path.display()
    )]
    DestinationExists {
        /// The path that is taken.
        path: PathBuf,
    },
    /// A file given for seeding in place whose size differs from the torrent's.
    #[error(
        "{}: is {found} bytes but the torrent says {expected}; point the data path at the torrent's exact content",
        path.display()
    )]
    WrongSize {
        /// The file.
        path: PathBuf,
        /// The size the torrent gives.
        expected: u64,
        /// The size on disk.
        found: u64,
    },
    /// The filesystem is full (or a quota is reached). Everything flushed before stays
    /// recorded: free some space and the download resumes where it stopped.
    #[error(
        "{}: the disk is full; free some space and the download resumes where it stopped (nothing flushed is lost)",
        path.display()
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure on a file or directory of the store.
    #[error("{action} {}", path.display())]
    Io {
        /// What the store was doing, e.g. "writing".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A staging id that cannot name a directory (it must be one safe path component, such
    /// as a hex info-hash).
    #[error("staging id {id:?} cannot name a directory")]
    BadId {
        /// The id given.
        id: String,
        /// The rule it breaks.
        #[source]
        source: PathError,
    },
    /// A torrent whose pieces cannot be laid out (more than 2^32 pieces).
    #[error("the torrent's piece geometry is unusable")]
    Geometry(#[source] MetainfoError),
    /// A file list that does not match the piece geometry (for example a hybrid file off a
    /// piece boundary). Torrents parsed by `shoal_metainfo` never have one; an `Info` built
    /// by hand might.
    #[error("{path}: {problem}")]
    Misplaced {
        /// The file's path in the torrent (or the torrent's name).
        path: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A torrent too large to hold in memory.
    #[error("the torrent needs {bytes} bytes, more than this memory store can allocate")]
    TooLargeForMemory {
        /// The bytes needed.
        bytes: u64,
    },
}

impl StorageError {
    /// Returns true if and only if this error refuses one request and leaves the store fine:
    /// a piece or range the torrent does not have (from a peer: drop or ban it), or a write to
    /// verified or read-only data. False means the store itself cannot go on (I/O failure,
    /// disk full, unusable torrent): pause the download and report it.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::PieceOutOfRange { .. }
                | Self::RangeOutOfPiece { .. }
                | Self::AlreadyVerified { .. }
                | Self::ReadOnly
        )
    }

    /// Wraps an I/O error on `path`, turning "no space" and "quota exceeded" into
    /// [`StorageError::DiskFull`].
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::DiskFull {
                path: path.to_owned(),
                source,
            },
            _ => Self::Io {
                action,
                path: path.to_owned(),
                source,
            },
        }
    }
}
