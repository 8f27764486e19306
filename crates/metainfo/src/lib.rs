//! BitTorrent metainfo, sans I/O: `.torrent` files (v1 BEP 3, v2 BEP 52, hybrid BEP 47),
//! magnet links (BEP 9, 53), piece and block geometry, SHA-256 Merkle trees, and the pure
//! half of torrent creation.
//!
//! Nothing here reads a file, a socket or the clock: callers pass bytes in and get typed values
//! or typed errors out. Every number from a torrent is checked before it sizes anything, and
//! every path is checked by the rule in [`path`] before it can name a file.
//!
//! ```
//! # use shoal_metainfo::{Torrent, create::{CreateOptions, InputFile, Plan}, PathComponent, TorrentPath};
//! let data = b"hello, swarm".to_vec();
//! let name = PathComponent::new("hello.txt")?;
//! let input = InputFile { path: TorrentPath::new(vec![name.clone()])?, length: data.len() as u64, executable: false };
//! let plan = Plan::new(name, vec![input], true, CreateOptions::default())?;
//! let results = plan
//!     .units()
//!     .iter()
//!     .enumerate()
//!     .map(|(i, unit)| unit.hash(i, &data[unit.reads[0].offset as usize..][..unit.len() as usize]))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let torrent = plan.finish(&results)?;
//! let again = Torrent::from_bytes(&torrent.to_bytes())?;
//! assert_eq!(again.info_hashes(), torrent.info_hashes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod bitfield;
pub mod create;
mod error;
mod fields;
pub mod geometry;
mod hash;
mod info;
pub mod magnet;
pub mod merkle;
pub mod path;
mod torrent;
pub mod verify;
pub mod web_seed;

pub use bitfield::{Bitfield, BitfieldError};
pub use error::{CreateError, MagnetError, MetainfoError};
pub use geometry::{BLOCK_SIZE, BlockRef, Geometry, GeometryError, PieceIndex, PieceLength};
pub use hash::{HexError, InfoHashes, Sha1Hash, Sha256Hash};
pub use info::{FileAttr, FileEntry, Info, MetaVersion};
pub use magnet::Magnet;
pub use path::{PathComponent, PathError, TorrentPath};
pub use torrent::{MAX_TORRENT_SIZE, TORRENT_LIMITS, Torrent};
pub use verify::{Fed, HashedPiece, MissingPieceLayer, PieceHasher, PieceVerifier};
