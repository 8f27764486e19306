//! Where each byte of piece space lives: which file, at which offset.
//!
//! Piece `i` starts at byte `i * piece_length` of *piece space*. How files fill that space
//! depends on the torrent:
//!
//! - v1: files laid end to end, padding files included (they occupy space), so a piece may
//!   span files;
//! - v2: every non-empty file starts on a piece boundary; the gap after a file's last byte is
//!   not addressable (the piece is short);
//! - hybrid: the v1 list, whose BEP 47 padding files already align the files. A piece is
//!   addressable up to its v1 length, padding included, because a v1 peer sends whole pieces.
//!
//! Padding reads as zeros and writes to it are discarded; only data files reach a disk.

use std::path::PathBuf;

use shoal_metainfo::{Geometry, Info, MetaVersion};

use crate::error::StorageError;

/// One file of a torrent, placed in piece space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSlot {
    /// Where the file goes, relative to the directory the torrent downloads into:
    /// `<name>/<path>` for a multi-file torrent, the file's name for a single-file one.
    pub path: PathBuf,
    /// Its length in bytes.
    pub length: u64,
    /// The piece-space offset of its first byte.
    pub offset: u64,
    /// True for a BEP 47 padding file: zeros, never stored.
    pub pad: bool,
    /// True for a file marked executable (BEP 47 attribute `x`).
    pub executable: bool,
}

/// A run of a request that lives in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Layout::files`]; always a non-empty data file.
    pub file: usize,
    /// The offset inside that file.
    pub file_offset: u64,
    /// The offset inside the request's buffer.
    pub at: usize,
    /// The number of bytes.
    pub len: usize,
}

/// The files of one torrent placed in piece space, with its geometry. See the module
/// documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    files: Vec<FileSlot>,
    /// Indexes of the non-empty data files, ascending by offset (so by index too).
    data: Vec<usize>,
    geometry: Geometry,
    version: MetaVersion,
    /// The end of piece space in v1 terms (padding included); used for hybrid piece lengths.
    v1_end: u64,
}

impl Layout {
    /// Places `info`'s files in piece space.
    ///
    /// # Errors
    /// [`StorageError::Geometry`] if the pieces do not fit 32-bit indexes,
    /// [`StorageError::Misplaced`] if the file list does not match the geometry (a hybrid
    /// file off a piece boundary); only an `Info` built by hand can have either.
    pub fn new(info: &Info) -> Result<Self, StorageError> {
        let geometry = info.geometry().map_err(StorageError::Geometry)?;
        let piece = info.piece_length.bytes();
        let mut files = Vec::with_capacity(info.files.len());
        let mut cursor: u64 = 0;
        for entry in &info.files {
            let pad = entry.attr.pad;
            if info.version == MetaVersion::Hybrid
                && !pad
                && entry.length > 0
                && !cursor.is_multiple_of(piece)
            {
                return Err(StorageError::Misplaced {
                    path: entry.path.to_string(),
                    problem: "does not start on a piece boundary, as a hybrid torrent requires",
                });
            }
            let in_torrent = entry.path.to_path_buf();
            let path = if info.single_file {
                in_torrent
            } else {
                PathBuf::from(info.name.as_str()).join(in_torrent)
            };
            files.push(FileSlot {
                path,
                length: entry.length,
                offset: cursor,
                pad,
                executable: entry.attr.executable,
            });
            // Saturating: an `Info` built by hand may hold absurd padding; the piece-count
            // check below refuses it.
            cursor = match info.version {
                MetaVersion::V1 | MetaVersion::Hybrid => cursor.saturating_add(entry.length),
                // v2 pieces hold one file each; padding files take no room in v2 piece space.
                MetaVersion::V2 if pad => cursor,
                MetaVersion::V2 => {
                    cursor.saturating_add(entry.length.div_ceil(piece).saturating_mul(piece))
                }
            };
        }
        // Every data byte must lie in a piece the geometry knows, so offsets stay below
        // 2^32 pieces of 128 MiB and no sum overflows.
        if info.version != MetaVersion::V2
            && cursor.div_ceil(piece) != u64::from(geometry.piece_count())
        {
            return Err(StorageError::Misplaced {
                path: info.name.to_string(),
                problem: "the file list (padding included) does not fill the torrent's pieces",
            });
        }
        let data = (0..files.len())
            .filter(|&i| !files[i].pad && files[i].length > 0)
            .collect();
        Ok(Self {
            files,
            data,
            geometry,
            version: info.version,
            v1_end: cursor,
        })
    }

    /// Every file, padding included, in piece-space order.
    pub fn files(&self) -> &[FileSlot] {
        &self.files
    }

    /// The torrent's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.geometry.piece_count()
    }

    /// How many bytes of `piece` a request may address: the v1 length (padding included) for
    /// v1 and hybrid torrents, the data length for v2 ones.
    ///
    /// # Errors
    /// [`StorageError::PieceOutOfRange`].
    pub fn piece_span(&self, piece: u32) -> Result<u32, StorageError> {
        let index = self
            .geometry
            .piece(piece)
            .map_err(|_| StorageError::PieceOutOfRange {
                piece,
                count: self.piece_count(),
            })?;
        let piece_len = self.geometry.piece_length().bytes();
        Ok(match self.version {
            MetaVersion::Hybrid => {
                let start = u64::from(piece) * piece_len;
                // At most the piece length, so it fits a u32.
                self.v1_end.saturating_sub(start).min(piece_len) as u32
            }
            MetaVersion::V1 => self.geometry.piece_len(index),
            // libtorrent asks for whole 16 KiB blocks at the end of a v2 file: the bytes past
            // the file read as zeros, like padding.
            MetaVersion::V2 => {
                let block = shoal_metainfo::BLOCK_SIZE;
                self.geometry
                    .piece_len(index)
                    .next_multiple_of(block)
                    .min(piece_len as u32)
            }
        })
    }

    /// Maps `len` bytes at `offset` of `piece` to the data files holding them, in order.
    /// Bytes that fall in padding are in no segment: a reader fills them with zeros, a writer
    /// drops them.
    ///
    /// # Errors
    /// [`StorageError::PieceOutOfRange`], or [`StorageError::RangeOutOfPiece`] when the range
    /// does not lie inside [`Layout::piece_span`].
    pub fn segments(
        &self,
        piece: u32,
        offset: u32,
        len: usize,
    ) -> Result<Vec<Segment>, StorageError> {
        let piece_len = self.piece_span(piece)?;
        let len64 = len as u64;
        if u64::from(offset) + len64 > u64::from(piece_len) {
            return Err(StorageError::RangeOutOfPiece {
                piece,
                offset,
                len: len64,
                piece_len,
            });
        }
        let start = u64::from(piece) * self.geometry.piece_length().bytes() + u64::from(offset);
        let end = start + len64;
        let first = self.data.partition_point(|&i| {
            let f = &self.files[i];
            f.offset + f.length <= start
        });
        let mut out = Vec::new();
        for &i in &self.data[first..] {
            let f = &self.files[i];
            if f.offset >= end {
                break;
            }
            let (from, to) = (start.max(f.offset), end.min(f.offset + f.length));
            if from >= to {
                // A zero-length range touches no file.
                continue;
            }
            // Both differences are at most `len`, a usize.
            out.push(Segment {
                file: i,
                file_offset: from - f.offset,
                at: (from - start) as usize,
                len: (to - from) as usize,
            });
        }
        Ok(out)
    }

    /// The pieces holding any byte of file `file` (empty for padding, empty files and indexes
    /// out of range).
    pub fn pieces_of(&self, file: usize) -> std::ops::Range<u32> {
        let piece = self.geometry.piece_length().bytes();
        match self.files.get(file) {
            Some(f) if !f.pad && f.length > 0 => {
                // Offsets of data bytes lie below piece_count * piece length, so these fit.
                let first = (f.offset / piece) as u32;
                let last = ((f.offset + f.length - 1) / piece) as u32;
                first..last + 1
            }
            _ => 0..0,
        }
    }

    /// The piece-space end of the last data byte: the size of a buffer that holds every file.
    pub(crate) fn data_end(&self) -> u64 {
        self.data
            .last()
            .map_or(0, |&i| self.files[i].offset + self.files[i].length)
    }
}

/// Fills `buf` from `segments`: each segment's bytes come from `read`, every byte between
/// segments (padding) becomes zero.
pub(crate) fn read_segments<E>(
    buf: &mut [u8],
    segments: &[Segment],
    mut read: impl FnMut(&Segment, &mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut done = 0;
    for seg in segments {
        buf[done..seg.at].fill(0);
        read(seg, &mut buf[seg.at..seg.at + seg.len])?;
        done = seg.at + seg.len;
    }
    buf[done..].fill(0);
    Ok(())
}
