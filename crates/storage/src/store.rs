//! The contract every piece store keeps ([`PieceStore`]), and the verified-set bookkeeping the
//! stores share.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use shoal_metainfo::Bitfield;

use crate::error::StorageError;

/// Where a torrent's pieces are kept: blocking calls, safe to share between threads (the async
/// driver calls them on blocking threads).
///
/// Requests are byte ranges inside one piece, `offset..offset + len` within
/// [`Layout::piece_span`](crate::Layout::piece_span); anything else is refused with
/// [`StorageError::PieceOutOfRange`] or [`StorageError::RangeOutOfPiece`] and touches nothing.
/// Block alignment is the swarm's business (`Geometry::block`), not the store's: whole-piece
/// reads for hashing are requests too. Bytes in padding read as zeros; writes to them are
/// dropped.
///
/// The verified set is the caller's record of which pieces passed their hash check. The store
/// keeps it in memory; [`PieceStore::flush`] makes it durable where the store is durable. A
/// verified piece's data is never rewritten ([`StorageError::AlreadyVerified`]).
pub trait PieceStore: Send + Sync {
    /// Writes `data` at `offset` of `piece`.
    ///
    /// # Errors
    /// A range error; [`StorageError::AlreadyVerified`] if the piece is verified;
    /// [`StorageError::ReadOnly`] on a store that only serves; I/O errors, among them
    /// [`StorageError::DiskFull`].
    fn write(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError>;

    /// Fills `buf` from `offset` of `piece`, verified or not (the caller hashes unverified
    /// pieces through this). Bytes never written read as zeros.
    ///
    /// # Errors
    /// A range error, or an I/O error.
    fn read(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError>;

    /// Adds `piece` to the verified set, in memory until the next flush. Call it only after
    /// every write to the piece has returned and its hash checked out.
    ///
    /// # Errors
    /// [`StorageError::PieceOutOfRange`].
    fn mark_verified(&self, piece: u32) -> Result<(), StorageError>;

    /// Removes `piece` from the verified set so it can be written again. Where the piece was
    /// recorded durably, the removal is durable before this returns, so a crash can never
    /// leave a record vouching for data that is being rewritten.
    ///
    /// # Errors
    /// [`StorageError::PieceOutOfRange`]; [`StorageError::ReadOnly`] once finishing has
    /// begun; I/O errors from recording the removal.
    fn mark_unverified(&self, piece: u32) -> Result<(), StorageError>;

    /// The verified set as it is now.
    fn verified(&self) -> Bitfield;

    /// Makes the data written so far durable, then records the verified set durably. After a
    /// crash, a reopened store reports as verified exactly what its last successful flush
    /// recorded.
    ///
    /// # Errors
    /// I/O errors, among them [`StorageError::DiskFull`]; what an earlier flush recorded stays.
    fn flush(&self) -> Result<(), StorageError>;

    /// Completes the download: requires every piece verified, then exposes the data where the
    /// store exposes it. Afterwards the store serves reads only. Calling it again is a no-op.
    ///
    /// # Errors
    /// [`StorageError::NotComplete`] (nothing changes), or whatever exposing the data hits.
    fn finish(&self) -> Result<(), StorageError>;
}

/// The verified set and the state that decides which changes are allowed.
#[derive(Debug)]
pub(crate) struct Verified {
    pub set: Bitfield,
    /// Finished or finishing: no more writes, no more unmarking.
    pub sealed: bool,
    /// Serving existing data in place: no writes, unmarking allowed.
    pub read_only: bool,
}

impl Verified {
    pub fn new(pieces: u32) -> Self {
        Self {
            set: Bitfield::new(pieces),
            sealed: false,
            read_only: false,
        }
    }

    pub fn check_writable(&self, piece: u32) -> Result<(), StorageError> {
        if self.sealed || self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if self.set.contains(piece) {
            return Err(StorageError::AlreadyVerified { piece });
        }
        Ok(())
    }

    /// Removes `piece`; returns true if and only if it was there.
    pub fn unmark(&mut self, piece: u32) -> Result<bool, StorageError> {
        if self.sealed {
            return Err(StorageError::ReadOnly);
        }
        Ok(self.set.remove(piece))
    }

    pub fn check_complete(&self) -> Result<(), StorageError> {
        if self.set.is_full() {
            Ok(())
        } else {
            Err(StorageError::NotComplete {
                verified: self.set.count(),
                total: self.set.len(),
            })
        }
    }
}

// A panic while a lock is held cannot leave these structures half-updated (each update is a
// single assignment or insertion), so a poisoned lock is still safe to use.

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
