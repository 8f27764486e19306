//! Why a session stopped before finishing its job.

/// A session-level failure: the torrent cannot make progress. Individual peers failing is
/// normal and never an error here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Storage failed (disk full, permissions, a file changed under us).
    #[error("storage failed; the download can be resumed once the cause is fixed")]
    Storage(#[from] shoal_storage::StorageError),
    /// The torrent's pieces cannot be verified (a v2 torrent without piece layers).
    #[error("cannot verify pieces")]
    Verify(#[from] shoal_metainfo::MissingPieceLayer),
    /// Data to seed that does not match the torrent.
    #[error("the data does not match the torrent: {bad} of {total} pieces fail their hash check")]
    DataMismatch {
        /// Pieces that failed.
        bad: u32,
        /// All pieces.
        total: u32,
    },
    /// A magnet link's metadata could not be fetched.
    #[error("cannot fetch the torrent's metadata: {0}")]
    Metadata(String),
    /// The storage thread stopped unexpectedly.
    #[error("the storage thread stopped unexpectedly")]
    StorageThread,
}
