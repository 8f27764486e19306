//! The resume file: which pieces were verified *and durable* at the last flush.
//!
//! Format, version 1 (integers little-endian):
//!
//! ```text
//! magic "SHOALRSM" | version u32 = 1 | flags u32 | piece count u32 | bitfield (wire order)
//!   | FNV-1a 64 of every byte before it
//! ```
//!
//! Flag bit 0, *finishing*, says every piece is verified and the files are being moved to
//! their destination, so a file missing from staging may already be there.
//!
//! The file is replaced atomically: written to `resume.tmp`, `sync_all`ed, renamed over
//! `resume`, and the directory synced. A reader therefore sees the old record or the new one,
//! never a mix; a record that fails any check is ignored (every piece is re-verified), never
//! trusted and never an error that stops the download.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use shoal_metainfo::Bitfield;

use crate::error::StorageError;

const MAGIC: &[u8; 8] = b"SHOALRSM";
const VERSION: u32 = 1;
const FINISHING: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 4;
const CHECKSUM: usize = 8;

/// The resume file's name inside a staging directory.
pub(crate) const FILE_NAME: &str = "resume";
const TEMP_NAME: &str = "resume.tmp";

/// Why a resume file was ignored. Nothing is lost: every piece is simply re-verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// Not a resume file, cut short, or its checksum does not match (a torn or damaged write).
    #[error("resume file is corrupt ({0}); every piece will be re-verified")]
    Corrupt(&'static str),
    /// Written by a build with another format version.
    #[error(
        "resume file has format version {found}, this build reads version {VERSION}; every piece will be re-verified"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// Written for a different piece count, so not for this torrent.
    #[error(
        "resume file is for {found} pieces but the torrent has {expected}; every piece will be re-verified"
    )]
    PieceCount {
        /// The count found.
        found: u32,
        /// The torrent's piece count.
        expected: u32,
    },
    /// The file exists but could not be read.
    #[error("resume file could not be read; every piece will be re-verified")]
    Unreadable(#[source] io::Error),
}

/// What a resume file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub verified: Bitfield,
    pub finishing: bool,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let bits = self.verified.as_bytes();
        let mut out = Vec::with_capacity(HEADER + bits.len() + CHECKSUM);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&u32::from(self.finishing).to_le_bytes());
        out.extend_from_slice(&self.verified.len().to_le_bytes());
        out.extend_from_slice(bits);
        out.extend_from_slice(&fnv1a64(&out).to_le_bytes());
        out
    }

    /// Decodes a record for a torrent of `pieces` pieces.
    pub(crate) fn decode(bytes: &[u8], pieces: u32) -> Result<Self, ResumeError> {
        if bytes.len() < HEADER + CHECKSUM {
            return Err(ResumeError::Corrupt("too short"));
        }
        if &bytes[..8] != MAGIC {
            return Err(ResumeError::Corrupt("not a Shoal resume file"));
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(ResumeError::Version { found: version });
        }
        let found = u32_at(bytes, 16);
        if found != pieces {
            return Err(ResumeError::PieceCount {
                found,
                expected: pieces,
            });
        }
        if bytes.len() != expected_len(pieces) {
            return Err(ResumeError::Corrupt("wrong length"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
        let mut word = [0; 8];
        word.copy_from_slice(sum);
        if fnv1a64(body) != u64::from_le_bytes(word) {
            return Err(ResumeError::Corrupt("checksum mismatch"));
        }
        let finishing = match u32_at(bytes, 12) {
            0 => false,
            FINISHING => true,
            _ => return Err(ResumeError::Corrupt("unknown flags")),
        };
        let verified = Bitfield::from_bytes(&body[HEADER..], pieces)
            .map_err(|_| ResumeError::Corrupt("bits set past the last piece"))?;
        if finishing && !verified.is_full() {
            return Err(ResumeError::Corrupt("finishing with pieces missing"));
        }
        Ok(Self {
            verified,
            finishing,
        })
    }
}

fn expected_len(pieces: u32) -> usize {
    HEADER + (pieces as usize).div_ceil(8) + CHECKSUM
}

/// Reads the record in `dir` for a torrent of `pieces` pieces: `Ok(None)` when there is none.
pub(crate) fn load(dir: &Path, pieces: u32) -> Result<Option<Record>, ResumeError> {
    let file = match File::open(dir.join(FILE_NAME)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResumeError::Unreadable(e)),
    };
    // One byte more than a valid record, so an oversized file is refused without reading it.
    let limit = expected_len(pieces) as u64 + 1;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(ResumeError::Unreadable)?;
    Record::decode(&bytes, pieces).map(Some)
}

/// Replaces the record in `dir` atomically and durably (see the module documentation).
pub(crate) fn store(dir: &Path, record: &Record) -> Result<(), StorageError> {
    let temp = dir.join(TEMP_NAME);
    let written = File::create(&temp)
        .and_then(|mut f| {
            f.write_all(&record.encode())?;
            f.sync_all()
        })
        .map_err(|e| StorageError::io("writing resume data to", &temp, e));
    if let Err(e) = written {
        // Best effort: the old record is intact either way, and the next flush rewrites this.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    let path = dir.join(FILE_NAME);
    fs::rename(&temp, &path).map_err(|e| StorageError::io("replacing resume data", &path, e))?;
    sync_dir(dir)
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]
    use super::*;
    use proptest::prelude::*;

    fn record(pieces: u32, set: &[u32], finishing: bool) -> Record {
        let mut verified = Bitfield::new(pieces);
        for &p in set {
            verified.insert(p);
        }
        Record {
            verified,
            finishing,
        }
    }

    proptest! {
        #[test]
        fn round_trips(pieces in 0u32..200, seed in any::<u64>()) {
            let set: Vec<u32> = (0..pieces).filter(|p| seed.rotate_left(*p) & 1 == 1).collect();
            let r = record(pieces, &set, false);
            prop_assert_eq!(Record::decode(&r.encode(), pieces).unwrap(), r);
        }

        #[test]
        fn any_flipped_bit_is_caught(pieces in 1u32..100, bit in any::<usize>()) {
            let mut bytes = record(pieces, &[0], false).encode();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Record::decode(&bytes, pieces).is_err());
        }
    }

    #[test]
    fn refusals_say_why() {
        let good = record(10, &[1, 2], false).encode();
        let decode = |bytes: &[u8]| Record::decode(bytes, 10).unwrap_err();
        assert!(matches!(
            decode(&good[..5]),
            ResumeError::Corrupt("too short")
        ));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            ResumeError::Corrupt("wrong length")
        ));
        let mut other = good.clone();
        other[0] = b'X';
        assert!(matches!(decode(&other), ResumeError::Corrupt(_)));
        let mut other = good.clone();
        other[8] = 2;
        assert!(matches!(decode(&other), ResumeError::Version { found: 2 }));
        assert!(matches!(
            Record::decode(&good, 11).unwrap_err(),
            ResumeError::PieceCount {
                found: 10,
                expected: 11
            }
        ));
        let mut other = good.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode(&other),
            ResumeError::Corrupt("checksum mismatch")
        ));
        // A finishing record must have every piece.
        let partial = record(10, &[1], true).encode();
        assert!(matches!(decode(&partial), ResumeError::Corrupt(_)));
        let full = record(10, &(0..10).collect::<Vec<_>>(), true);
        assert_eq!(Record::decode(&full.encode(), 10).unwrap(), full);
    }

    #[test]
    fn store_replaces_and_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), 10).unwrap().is_none());
        let first = record(10, &[3], false);
        store(dir.path(), &first).unwrap();
        let second = record(10, &[3, 4], false);
        store(dir.path(), &second).unwrap();
        assert_eq!(load(dir.path(), 10).unwrap(), Some(second));
        assert!(!dir.path().join(TEMP_NAME).exists());
    }
}
