//! A piece store in memory, for tests and simulations: the same rules as the file store, no
//! disk. `flush` has nothing to make durable and `finish` only records completion.

use std::sync::{Mutex, RwLock};

use shoal_metainfo::{Bitfield, Info};

use crate::error::StorageError;
use crate::layout::{Layout, read_segments};
use crate::store::{PieceStore, Verified, lock, read_lock, write_lock};

/// Every data byte of a torrent in one buffer indexed by piece-space offset.
#[derive(Debug)]
pub struct MemoryStore {
    layout: Layout,
    bytes: RwLock<Vec<u8>>,
    verified: Mutex<Verified>,
}

impl MemoryStore {
    /// An empty store (all zeros, nothing verified) for `info`.
    ///
    /// # Errors
    /// Those of [`Layout::new`], or [`StorageError::TooLargeForMemory`] when the buffer cannot
    /// be allocated.
    pub fn new(info: &Info) -> Result<Self, StorageError> {
        let layout = Layout::new(info)?;
        let len = layout.data_end();
        let too_large = || StorageError::TooLargeForMemory { bytes: len };
        let len = usize::try_from(len).map_err(|_| too_large())?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).map_err(|_| too_large())?;
        bytes.resize(len, 0);
        let verified = Verified::new(layout.piece_count());
        Ok(Self {
            layout,
            bytes: RwLock::new(bytes),
            verified: Mutex::new(verified),
        })
    }

    /// The layout the store follows.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Returns true if and only if [`PieceStore::finish`] has succeeded.
    pub fn is_finished(&self) -> bool {
        lock(&self.verified).sealed
    }
}

impl PieceStore for MemoryStore {
    fn write(&self, piece: u32, offset: u32, data: &[u8]) -> Result<(), StorageError> {
        let segments = self.layout.segments(piece, offset, data.len())?;
        lock(&self.verified).check_writable(piece)?;
        let mut bytes = write_lock(&self.bytes);
        for seg in &segments {
            let at = (self.layout.files()[seg.file].offset + seg.file_offset) as usize;
            bytes[at..at + seg.len].copy_from_slice(&data[seg.at..seg.at + seg.len]);
        }
        Ok(())
    }

    fn read(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let segments = self.layout.segments(piece, offset, buf.len())?;
        let bytes = read_lock(&self.bytes);
        read_segments(buf, &segments, |seg, out| {
            let at = (self.layout.files()[seg.file].offset + seg.file_offset) as usize;
            out.copy_from_slice(&bytes[at..at + seg.len]);
            Ok(())
        })
    }

    fn mark_verified(&self, piece: u32) -> Result<(), StorageError> {
        self.layout.piece_span(piece)?;
        lock(&self.verified).set.insert(piece);
        Ok(())
    }

    fn mark_unverified(&self, piece: u32) -> Result<(), StorageError> {
        self.layout.piece_span(piece)?;
        lock(&self.verified).unmark(piece)?;
        Ok(())
    }

    fn verified(&self) -> Bitfield {
        lock(&self.verified).set.clone()
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn finish(&self) -> Result<(), StorageError> {
        let mut verified = lock(&self.verified);
        verified.check_complete()?;
        verified.sealed = true;
        Ok(())
    }
}
