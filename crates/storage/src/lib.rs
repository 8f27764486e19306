//! Piece storage: where a torrent's bytes live while it downloads and after.
//!
//! - [`Layout`] places a torrent's files in *piece space* (v1, v2 and hybrid alike) and maps a
//!   byte range of a piece to the files holding it, skipping padding.
//! - [`PieceStore`] is the contract: positional reads and writes of byte ranges inside a
//!   piece, checked against the geometry (the numbers come from the network), a verified set,
//!   `flush` for durability and `finish` to expose the result.
//! - [`FileStore`] keeps an incomplete download in a staging directory with crash-safe
//!   resume data and moves it to its destination only when every piece is verified; it can
//!   also serve complete data in place for seeding.
//! - [`MemoryStore`] is the same contract in memory, for tests and simulations.
//!
//! Every store passes one conformance suite (`tests/conformance.rs`). Calls block; the async
//! driver runs them on blocking threads.
#![forbid(unsafe_code)]

mod error;
mod file_store;
mod layout;
mod memory_store;
mod resume;
mod store;

pub use error::StorageError;
pub use file_store::{FileStore, ResumeState};
pub use layout::{FileSlot, Layout, Segment};
pub use memory_store::MemoryStore;
pub use resume::ResumeError;
pub use store::PieceStore;
