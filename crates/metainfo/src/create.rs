//! Creating torrents, without doing I/O: a [`Plan`] lists the *hash units* (byte ranges of the
//! input files), the caller reads each unit and hands its bytes to [`HashUnit::hash`] (on as
//! many threads as it likes), then [`Plan::finish`] assembles the torrent from the results.
//!
//! Layout rules, matching libtorrent 2.1 so that the same input gives the same info-hash:
//!
//! - files are sorted by path, component by component (the order of a v2 file tree);
//! - v1: files laid end to end, pieces span files;
//! - v2: every file has its own Merkle tree; a file no larger than a piece is one unit whose
//!   result is its `pieces root`, a larger file is one unit per piece whose results form its
//!   piece layer;
//! - hybrid: as v2, and in a multi-file torrent every file that does not end on a piece
//!   boundary is followed by a BEP 47 padding file `.pad/<length>` (the last file too), so the
//!   v1 SHA-1 of each piece covers the file's bytes and then zeros.

use sha1::{Digest, Sha1};

use crate::error::CreateError;
use crate::geometry::{BLOCK_SIZE, PieceLength};
use crate::hash::{Sha1Hash, Sha256Hash};
use crate::info::{FileAttr, FileEntry, Info, MetaVersion};
use crate::merkle;
use crate::path::{PathComponent, TorrentPath};
use crate::torrent::Torrent;

/// One input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Its path relative to the torrent's directory; for a single-file torrent, one component.
    pub path: TorrentPath,
    /// Its length in bytes.
    pub length: u64,
    /// Whether to mark it executable (BEP 47 attribute `x`).
    pub executable: bool,
}

/// What to put in the torrent besides the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Which metadata to write. Default: [`MetaVersion::Hybrid`], readable by every client.
    pub version: MetaVersion,
    /// The piece length; `None` picks [`default_piece_length`].
    pub piece_length: Option<u64>,
    /// The BEP 27 private flag.
    pub private: bool,
    /// Tracker tiers; a single tracker is written as `announce` alone.
    pub trackers: Vec<Vec<String>>,
    /// Web seed URLs (BEP 19).
    pub web_seeds: Vec<String>,
    /// A comment.
    pub comment: Option<String>,
    /// The program creating the torrent.
    pub created_by: Option<String>,
    /// The creation time, seconds since the Unix epoch (the caller reads the clock).
    pub creation_date: Option<i64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            version: MetaVersion::Hybrid,
            piece_length: None,
            private: false,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        }
    }
}

/// The default piece length for `total` bytes: the smallest power of two from 16 KiB to
/// 16 MiB that needs at most 4096 pieces. So 64 MiB gets 16 KiB, 1 GiB gets 256 KiB, 16 GiB
/// gets 4 MiB and 64 GiB or more gets 16 MiB. Small pieces spread through a swarm sooner;
/// the cap keeps the torrent (20 + 32 bytes of hashes a piece) under about 200 KiB.
pub fn default_piece_length(total: u64) -> PieceLength {
    const TARGET_PIECES: u64 = 4096;
    let mut len: u64 = u64::from(BLOCK_SIZE);
    while len < (16 << 20) && total.div_ceil(len) > TARGET_PIECES {
        len *= 2;
    }
    // The loop keeps `len` a power of two between 16 KiB and 16 MiB: a valid v2 length.
    PieceLength::from_valid_v2(len as u32)
}

/// A byte range of one input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// Index into [`Plan::inputs`].
    pub file: usize,
    /// Offset into the file.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// What a unit's SHA-256 result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V2Role {
    /// The unit is a whole file no larger than a piece: the result is its `pieces root`.
    FileRoot,
    /// The unit is one piece of a larger file: the result is a piece-layer entry.
    Piece,
}

/// One unit of hashing work: read `reads` in order, concatenated, and pass them to
/// [`HashUnit::hash`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashUnit {
    /// The byte ranges to read, in order.
    pub reads: Vec<Read>,
    len: u64,
    /// Bytes the v1 SHA-1 covers: `len` plus the zeros of a padding file.
    v1_len: Option<u64>,
    v2: Option<(usize, V2Role)>,
    blocks_per_piece: u32,
}

/// The hashes of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitHash {
    v1: Option<Sha1Hash>,
    v2: Option<Sha256Hash>,
}

impl HashUnit {
    /// The number of data bytes in the unit.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns true if and only if the unit reads nothing (never, in a plan).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hashes the unit's bytes, every hash in one pass over each 16 KiB block.
    ///
    /// # Errors
    /// [`CreateError::UnitLength`] if `data` is not exactly [`HashUnit::len`] bytes; `unit`
    /// only labels that error.
    pub fn hash(&self, unit: usize, data: &[u8]) -> Result<UnitHash, CreateError> {
        if data.len() as u64 != self.len {
            return Err(CreateError::UnitLength {
                unit,
                expected: self.len,
                got: data.len() as u64,
            });
        }
        let mut sha1 = self.v1_len.map(|_| Sha1::new());
        let mut leaves = Vec::with_capacity(if self.v2.is_some() {
            data.len().div_ceil(BLOCK_SIZE as usize)
        } else {
            0
        });
        for block in data.chunks(BLOCK_SIZE as usize) {
            if let Some(sha1) = &mut sha1 {
                sha1.update(block);
            }
            if self.v2.is_some() {
                leaves.push(merkle::block_hash(block));
            }
        }
        let v1 = match (sha1, self.v1_len) {
            (Some(mut sha1), Some(v1_len)) => {
                let zeros = [0u8; BLOCK_SIZE as usize];
                let mut pad = v1_len.saturating_sub(self.len);
                while pad > 0 {
                    let n = pad.min(BLOCK_SIZE.into());
                    sha1.update(&zeros[..n as usize]);
                    pad -= n;
                }
                Some(Sha1Hash(sha1.finalize().into()))
            }
            _ => None,
        };
        let v2 = self.v2.map(|(_, role)| {
            let width = match role {
                V2Role::FileRoot => leaves.len(),
                V2Role::Piece => self.blocks_per_piece as usize,
            };
            merkle::root(&leaves, width, Sha256Hash::default())
        });
        Ok(UnitHash { v1, v2 })
    }
}

/// A torrent waiting for its hashes. See the module documentation.
#[derive(Clone, Debug)]
pub struct Plan {
    name: PathComponent,
    single_file: bool,
    piece_length: PieceLength,
    options: CreateOptions,
    inputs: Vec<InputFile>,
    /// Entries of the info's file list; `Err(i)` marks input `i`, `Ok` a padding file.
    layout: Vec<Result<FileEntry, usize>>,
    units: Vec<HashUnit>,
}

impl Plan {
    /// Plans a torrent named `name` over `inputs`. A single-file torrent has exactly one input
    /// whose path is one component; `single_file` false makes a directory torrent even of one
    /// file.
    ///
    /// # Errors
    /// [`CreateError::Empty`] when there is nothing to hash, [`CreateError::PathConflict`] for
    /// duplicate paths, [`CreateError::PieceLength`] for a piece length the version cannot use.
    pub fn new(
        name: PathComponent,
        mut inputs: Vec<InputFile>,
        single_file: bool,
        options: CreateOptions,
    ) -> Result<Self, CreateError> {
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in inputs.windows(2) {
            let (a, b) = (pair[0].path.components(), pair[1].path.components());
            if a == b || b.starts_with(a) {
                return Err(CreateError::PathConflict(pair[0].path.to_string()));
            }
        }
        let total = inputs
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.length))
            .filter(|&t| t <= 1 << 60)
            .ok_or(CreateError::TooLarge)?;
        if total == 0 {
            return Err(CreateError::Empty);
        }
        let single_file = single_file && inputs.len() == 1;
        let version = options.version;
        let piece_length = match options.piece_length {
            None => default_piece_length(total),
            Some(len) if version.has_v2() => {
                PieceLength::new_v2(len).map_err(CreateError::PieceLength)?
            }
            Some(len) => PieceLength::new_v1(len).map_err(CreateError::PieceLength)?,
        };
        let mut plan = Self {
            name,
            single_file,
            piece_length,
            options,
            inputs,
            layout: Vec::new(),
            units: Vec::new(),
        };
        match version {
            MetaVersion::V1 => plan.plan_v1(),
            MetaVersion::V2 | MetaVersion::Hybrid => plan.plan_aligned()?,
        }
        let pieces = plan.units.iter().filter(|u| u.v1_len.is_some()).count() as u64;
        if pieces > u64::from(u32::MAX) {
            return Err(CreateError::Geometry(
                crate::geometry::GeometryError::TooManyPieces(pieces),
            ));
        }
        Ok(plan)
    }

    fn plan_v1(&mut self) {
        let piece = self.piece_length.bytes();
        self.layout = (0..self.inputs.len()).map(Err).collect();
        let mut reads = Vec::new();
        let mut in_unit = 0u64;
        for (file, input) in self.inputs.iter().enumerate() {
            let mut offset = 0;
            while offset < input.length {
                let len = (input.length - offset).min(piece - in_unit);
                reads.push(Read { file, offset, len });
                offset += len;
                in_unit += len;
                if in_unit == piece {
                    self.units
                        .push(self.v1_unit(std::mem::take(&mut reads), in_unit));
                    in_unit = 0;
                }
            }
        }
        if in_unit > 0 {
            self.units.push(self.v1_unit(reads, in_unit));
        }
    }

    fn v1_unit(&self, reads: Vec<Read>, len: u64) -> HashUnit {
        HashUnit {
            reads,
            len,
            v1_len: Some(len),
            v2: None,
            blocks_per_piece: self.piece_length.blocks_per_piece(),
        }
    }

    fn plan_aligned(&mut self) -> Result<(), CreateError> {
        let piece = self.piece_length.bytes();
        let hybrid = self.options.version == MetaVersion::Hybrid;
        let pad_tail = hybrid && !self.single_file;
        for (file, input) in self.inputs.iter().enumerate() {
            self.layout.push(Err(file));
            let role = if input.length <= piece {
                V2Role::FileRoot
            } else {
                V2Role::Piece
            };
            let mut offset = 0;
            while offset < input.length {
                let len = (input.length - offset).min(piece);
                let v1_len = hybrid.then_some(if pad_tail { piece } else { len });
                self.units.push(HashUnit {
                    reads: vec![Read { file, offset, len }],
                    len,
                    v1_len,
                    v2: Some((file, role)),
                    blocks_per_piece: self.piece_length.blocks_per_piece(),
                });
                offset += len;
            }
            let tail = input.length % piece;
            if pad_tail && tail != 0 {
                let pad = piece - tail;
                let path = TorrentPath::parse(&format!(".pad/{pad}"))
                    .map_err(|_| CreateError::PathConflict(format!(".pad/{pad}")))?;
                let attr = FileAttr {
                    pad: true,
                    ..FileAttr::default()
                };
                self.layout.push(Ok(FileEntry {
                    path,
                    length: pad,
                    attr,
                    pieces_root: None,
                }));
            }
        }
        Ok(())
    }

    /// The input files, sorted into torrent order; [`Read::file`] indexes this.
    pub fn inputs(&self) -> &[InputFile] {
        &self.inputs
    }

    /// The hashing work, in piece order.
    pub fn units(&self) -> &[HashUnit] {
        &self.units
    }

    /// The piece length in use.
    pub fn piece_length(&self) -> PieceLength {
        self.piece_length
    }

    /// The number of data bytes to hash.
    pub fn total_bytes(&self) -> u64 {
        self.inputs.iter().map(|f| f.length).sum()
    }

    /// Hashes every unit from the files' contents in memory (`content` gives each input's
    /// bytes) and builds the torrent: for tests, tools and small payloads. Files on disk go
    /// through `shoal-create`, which reads and hashes units in parallel.
    ///
    /// # Errors
    /// [`CreateError::UnitLength`] when a file's content is shorter than its declared length.
    pub fn finish_in_memory<'a>(
        self,
        content: impl Fn(&InputFile) -> &'a [u8],
    ) -> Result<Torrent, CreateError> {
        let files: Vec<&[u8]> = self.inputs.iter().map(content).collect();
        let mut bytes = Vec::new();
        let mut results = Vec::with_capacity(self.units.len());
        for (i, unit) in self.units.iter().enumerate() {
            bytes.clear();
            for read in &unit.reads {
                let range = usize::try_from(read.offset)
                    .ok()
                    .zip(usize::try_from(read.offset + read.len).ok());
                // Missing bytes leave the unit short, which `hash` reports.
                if let Some(slice) = range.and_then(|(start, end)| files[read.file].get(start..end))
                {
                    bytes.extend_from_slice(slice);
                }
            }
            results.push(unit.hash(i, &bytes)?);
        }
        self.finish(&results)
    }

    /// Builds the torrent from one result per unit, in unit order.
    ///
    /// # Errors
    /// [`CreateError::ResultCount`] if `results` does not have one entry per unit.
    pub fn finish(self, results: &[UnitHash]) -> Result<Torrent, CreateError> {
        if results.len() != self.units.len() {
            return Err(CreateError::ResultCount {
                expected: self.units.len(),
                got: results.len(),
            });
        }
        let blocks_per_piece = self.piece_length.blocks_per_piece();
        let mut roots: Vec<Option<Sha256Hash>> = vec![None; self.inputs.len()];
        let mut layers: Vec<Vec<Sha256Hash>> = vec![Vec::new(); self.inputs.len()];
        for (unit, result) in self.units.iter().zip(results) {
            match (unit.v2, result.v2) {
                (Some((file, V2Role::FileRoot)), Some(root)) => roots[file] = Some(root),
                (Some((file, V2Role::Piece)), Some(hash)) => layers[file].push(hash),
                _ => {}
            }
        }
        let mut piece_layers = std::collections::BTreeMap::new();
        for (file, layer) in layers.into_iter().enumerate() {
            if !layer.is_empty() {
                let root = merkle::root_from_piece_layer(&layer, blocks_per_piece);
                roots[file] = Some(root);
                piece_layers.insert(root, layer);
            }
        }
        let version = self.options.version;
        let files = self
            .layout
            .into_iter()
            .map(|entry| match entry {
                Ok(pad) => pad,
                Err(i) => FileEntry {
                    path: self.inputs[i].path.clone(),
                    length: self.inputs[i].length,
                    attr: FileAttr {
                        executable: self.inputs[i].executable,
                        ..FileAttr::default()
                    },
                    pieces_root: if version.has_v2() { roots[i] } else { None },
                },
            })
            .collect();
        let info = Info {
            name: self.name,
            piece_length: self.piece_length,
            version,
            single_file: self.single_file,
            files,
            pieces: results.iter().filter_map(|r| r.v1).collect(),
            private: self.options.private,
        };
        let mut torrent = Torrent::new(info);
        let mut tiers = self
            .options
            .trackers
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>();
        torrent.announce = tiers.first().and_then(|t| t.first()).cloned();
        if tiers.len() > 1 || tiers.first().is_some_and(|t| t.len() > 1) {
            torrent.announce_list = std::mem::take(&mut tiers);
        }
        torrent.web_seeds = self.options.web_seeds;
        torrent.piece_layers = piece_layers;
        torrent.comment = self.options.comment;
        torrent.created_by = self.options.created_by;
        torrent.creation_date = self.options.creation_date;
        Ok(torrent)
    }
}
