//! The BitTorrent peer wire protocol, sans I/O.
//!
//! - [`handshake`]: the 68-byte opening, with the reserved bits Shoal sets and reads (BEP 6
//!   fast extension, BEP 10 extension protocol, BEP 52 v2 upgrade).
//! - [`message`]: every length-prefixed message: BEP 3 core, BEP 6 fast extension, BEP 10
//!   extended, BEP 52 hash request / hashes / hash reject.
//! - [`frame`]: splitting a byte stream into messages, with the length prefix checked against
//!   a limit before anything is sliced or reserved.
//! - [`extension`]: the BEP 10 extension handshake and BEP 9 `ut_metadata` messages.
//!
//! The codec knows nothing of any torrent: piece indexes and offsets come out as the numbers the
//! peer sent. The swarm validates them against its geometry (`shoal_metainfo::Geometry`) at its
//! own boundary, before they can reach any other code. Decoding borrows payloads (blocks,
//! bitfields) from the input; encoding appends to a caller's buffer.
#![forbid(unsafe_code)]

mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod message;

pub use error::WireError;
pub use extension::{ExtensionHandshake, MetadataMessage};
pub use frame::{DEFAULT_MAX_FRAME, decode_frame, may_overtake_blocks};
pub use handshake::{HANDSHAKE_LEN, Handshake, Reserved};
pub use message::{HashRequest, Message};
