//! What the engine asks its driver to do, and what the driver reports back.

use bytes::Bytes;
use shoal_metainfo::{BlockRef, PieceIndex, Sha256Hash};

/// A peer connection, named by the driver. The engine never sees addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub u64);

/// Why the engine wants a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer broke the protocol (the text says how).
    Protocol(String),
    /// The peer sent nothing for the idle timeout.
    Idle,
    /// The peer sent data that failed verification.
    BadData,
    /// Both sides are seeds: nothing to exchange.
    BothSeeds,
}

/// One instruction for the driver. Commands for the same torrent must be carried out in the
/// order they are emitted: a [`Command::Verify`] follows the [`Command::Write`]s of its piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send an encoded frame to a peer.
    Send {
        /// The peer.
        peer: PeerKey,
        /// The frame, length prefix included.
        frame: Vec<u8>,
    },
    /// Read `block` from storage and send it to `peer` as a `piece` message.
    Read {
        /// The peer.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Store a block that `peer` sent.
    Write {
        /// The peer it came from.
        peer: PeerKey,
        /// Where it goes.
        block: BlockRef,
        /// The bytes (a view of the received frame, not a copy).
        data: Bytes,
    },
    /// Hash the stored piece and report with [`crate::Swarm::handle_verified`]; include the
    /// SHA-256 of each block when `block_digests` is set (to find who sent bad blocks).
    Verify {
        /// The piece.
        piece: PieceIndex,
        /// Whether to report per-block digests.
        block_digests: bool,
    },
    /// The piece passed verification: record it durably.
    Verified {
        /// The piece.
        piece: PieceIndex,
    },
    /// Close the connection.
    Disconnect {
        /// The peer.
        peer: PeerKey,
        /// Why.
        reason: DisconnectReason,
    },
    /// The peer sent bad data: close it and refuse its address from now on.
    Ban {
        /// The peer.
        peer: PeerKey,
    },
    /// Every wanted piece is verified.
    Completed,
}

/// The driver's answer to [`Command::Verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Whether the piece matched its hash.
    pub passed: bool,
    /// The SHA-256 of each block, when asked for.
    pub block_digests: Option<Vec<Sha256Hash>>,
}
