//! The errors of reading and creating torrents and magnet links.

use shoal_bencode::DecodeError;

use crate::geometry::GeometryError;
use crate::path::PathError;

/// Why a torrent (or its info dictionary) was refused. Each variant names the field, so the
/// message says where the problem is: `info.files[3].path: ...`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetainfoError {
    /// The bytes are not canonical bencode.
    #[error("not a valid torrent: the bencode is malformed")]
    Bencode(#[from] DecodeError),
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    Missing {
        /// The field's path, e.g. `info.piece length`.
        field: String,
    },
    /// A field of the wrong bencode type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field's path.
        field: String,
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// An integer outside the range its field allows.
    #[error("{field}: {value} is out of range")]
    OutOfRange {
        /// The field's path.
        field: String,
        /// The value found.
        value: i64,
    },
    /// A text field that is not UTF-8.
    #[error("{field}: not valid UTF-8")]
    NotUtf8 {
        /// The field's path.
        field: String,
    },
    /// A bad piece length.
    #[error("info.piece length: invalid")]
    PieceLength(#[source] GeometryError),
    /// More pieces than a torrent may have.
    #[error("info: invalid piece layout")]
    Geometry(#[source] GeometryError),
    /// A path component that could escape the download directory or is otherwise unsafe.
    #[error("{field}: unsafe path")]
    Path {
        /// The field's path.
        field: String,
        /// The rule broken.
        #[source]
        source: PathError,
    },
    /// Two files with the same path, or a file where another file needs a directory.
    #[error("{path}: appears twice, or as both a file and a directory")]
    PathConflict {
        /// The conflicting path.
        path: String,
    },
    /// `info.pieces` is not a whole number of SHA-1 hashes.
    #[error("info.pieces: {len} bytes is not a whole number of 20-byte SHA-1 hashes")]
    PiecesNotWhole {
        /// Its length.
        len: usize,
    },
    /// `info.pieces` holds the wrong number of hashes for the total size.
    #[error("info.pieces: {found} piece hashes, but the files need {expected} pieces")]
    PieceCount {
        /// Pieces needed by the file sizes.
        expected: u64,
        /// Hashes present.
        found: u64,
    },
    /// Both or neither of `length` and `files`, or other contradictory fields.
    #[error("{field}: {problem}")]
    Contradiction {
        /// The field's path.
        field: String,
        /// What contradicts what.
        problem: &'static str,
    },
    /// A torrent with no files, or whose files are all empty.
    #[error("info: the torrent holds no data (no files, or only empty ones)")]
    Empty,
    /// Sizes that add up past the largest supported torrent.
    #[error("info: the total size overflows")]
    TooLarge,
    /// A `meta version` other than 2.
    #[error("info.meta version: version {0} is not supported (Shoal reads 1 and 2)")]
    UnsupportedVersion(i64),
    /// A malformed v2 file tree.
    #[error("info.file tree/{path}: {problem}")]
    FileTree {
        /// The node's path inside the tree.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A hybrid torrent whose v1 and v2 descriptions of the files disagree.
    #[error("hybrid torrent: the v1 file list and the v2 file tree disagree at {path}: {problem}")]
    HybridMismatch {
        /// The file where they first disagree.
        path: String,
        /// How they disagree.
        problem: &'static str,
    },
    /// A piece layer that does not belong to a file or does not match its root.
    #[error("piece layers: {file}: {problem}")]
    PieceLayer {
        /// The file (or the key, in hex, when no file has it).
        file: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A symbolic link entry (BEP 47 attribute `l`), which Shoal does not distribute.
    #[error("{field}: symbolic links (BEP 47 attribute 'l') are not supported")]
    Symlink {
        /// The field's path.
        field: String,
    },
}

/// Why a magnet link was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MagnetError {
    /// The text does not start with `magnet:?`.
    #[error("not a magnet link: it must start with \"magnet:?\"")]
    NotMagnet,
    /// A link longer than [`crate::magnet::MAX_MAGNET_LEN`].
    #[error("magnet link of {0} bytes is longer than the 65536-byte limit")]
    TooLong(usize),
    /// No `xt=urn:btih:` or `xt=urn:btmh:` parameter.
    #[error("magnet link has no BitTorrent info-hash (xt=urn:btih:... or xt=urn:btmh:...)")]
    NoInfoHash,
    /// An info-hash that is not 40 hex / 32 base32 digits (v1) or a SHA-256 multihash (v2).
    #[error("magnet link has a malformed info-hash {0:?}")]
    BadInfoHash(String),
    /// Two different info-hashes of the same version.
    #[error("magnet link has two different {0} info-hashes")]
    ConflictingInfoHash(&'static str),
    /// An `xl` that is not a decimal byte count.
    #[error("magnet link has a malformed exact length (xl) {0:?}")]
    BadLength(String),
}

/// Why a torrent could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A bad piece length was asked for.
    #[error("invalid piece length")]
    PieceLength(#[source] GeometryError),
    /// The input holds no data.
    #[error("nothing to share: the input has no files, or only empty ones")]
    Empty,
    /// Two inputs with the same path, or a file where a directory is needed.
    #[error("{0}: appears twice, or as both a file and a directory")]
    PathConflict(String),
    /// Sizes that add up past the largest supported torrent.
    #[error("the input is too large for one torrent")]
    TooLarge,
    /// A piece layout the torrent cannot express.
    #[error("invalid piece layout")]
    Geometry(#[source] GeometryError),
    /// Hash results that do not match the plan (a bug in the caller).
    #[error("hash unit {unit}: expected {expected} bytes of data, got {got}")]
    UnitLength {
        /// The unit.
        unit: usize,
        /// Bytes the plan expects.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
    /// Fewer or more unit results than units.
    #[error("expected {expected} hash results, got {got}")]
    ResultCount {
        /// Units in the plan.
        expected: usize,
        /// Results given.
        got: usize,
    },
}
