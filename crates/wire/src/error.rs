//! Why bytes from a peer were refused. Every variant is a reason to drop the connection.

/// A protocol violation by the remote peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The handshake does not start with `\x13BitTorrent protocol`.
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    /// A length prefix above the frame limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// A message whose payload length does not fit its id.
    #[error("message id {id} with a {len}-byte payload is malformed")]
    BadLength {
        /// The message id.
        id: u8,
        /// The payload length.
        len: usize,
    },
    /// A BEP 52 `hashes` message whose hash bytes are not a whole number of SHA-256 hashes.
    #[error("hashes message carries {len} bytes, not a whole number of 32-byte hashes")]
    RaggedHashes {
        /// The byte count.
        len: usize,
    },
    /// A BEP 10 or BEP 9 payload that is not the bencoded dictionary it must be.
    #[error("malformed {what}")]
    BadExtension {
        /// Which payload.
        what: &'static str,
    },
    /// A BEP 9 message type other than request (0), data (1) and reject (2).
    #[error("unknown ut_metadata message type {0}")]
    UnknownMetadataType(i64),
}
