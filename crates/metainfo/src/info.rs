//! The info dictionary: what a torrent's content is. Its bytes define the info-hashes.
//!
//! One [`Info`] describes v1 (BEP 3), v2 (BEP 52) and hybrid (BEP 47 + 52) torrents alike:
//! `files` is the v1 file list (with padding files) for v1 and hybrid torrents and the file
//! tree flattened in key order for v2 torrents; v2 `pieces root`s ride on the entries.

use shoal_bencode::{Dict, Value};

use crate::error::MetainfoError;
use crate::fields::{Fields, as_dict};
use crate::geometry::{Geometry, PieceLength};
use crate::hash::{Sha1Hash, Sha256Hash};
use crate::path::{PathComponent, TorrentPath};

/// Which metadata a torrent carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaVersion {
    /// v1 only: SHA-1 piece hashes (BEP 3).
    V1,
    /// v2 only: per-file SHA-256 Merkle trees (BEP 52).
    V2,
    /// Both, over file-aligned pieces, so v1 and v2 clients share one swarm (BEP 47, 52).
    Hybrid,
}

impl MetaVersion {
    /// Returns true if and only if the torrent has v1 metadata (v1 or hybrid).
    pub fn has_v1(self) -> bool {
        matches!(self, Self::V1 | Self::Hybrid)
    }

    /// Returns true if and only if the torrent has v2 metadata (v2 or hybrid).
    pub fn has_v2(self) -> bool {
        matches!(self, Self::V2 | Self::Hybrid)
    }

    /// `v1`, `v2` or `hybrid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Hybrid => "hybrid",
        }
    }
}

/// BEP 47 file attributes that Shoal keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileAttr {
    /// `p`: a padding file, all zeros, never written to disk.
    pub pad: bool,
    /// `h`: hidden.
    pub hidden: bool,
    /// `x`: executable.
    pub executable: bool,
}

impl FileAttr {
    fn parse(bytes: &[u8], field: &str) -> Result<Self, MetainfoError> {
        let mut attr = Self::default();
        for b in bytes {
            match b {
                b'p' => attr.pad = true,
                b'h' => attr.hidden = true,
                b'x' => attr.executable = true,
                b'l' => {
                    return Err(MetainfoError::Symlink {
                        field: field.to_owned(),
                    });
                }
                _ => {} // BEP 47: unknown attributes are ignored.
            }
        }
        Ok(attr)
    }

    /// The attribute string, in the order libtorrent writes it; empty when no flag is set.
    fn encode(self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.pad {
            out.push(b'p');
        }
        if self.hidden {
            out.push(b'h');
        }
        if self.executable {
            out.push(b'x');
        }
        out
    }
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Where the file lives, relative to the torrent's directory (for a single-file torrent,
    /// the one component naming the file).
    pub path: TorrentPath,
    /// Its length in bytes.
    pub length: u64,
    /// Its attributes.
    pub attr: FileAttr,
    /// The root of its v2 Merkle tree; present for every non-empty file of a v2 or hybrid
    /// torrent, absent otherwise.
    pub pieces_root: Option<Sha256Hash>,
}

/// The content of a torrent. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The suggested name: the file name of a single-file torrent, the directory otherwise.
    pub name: PathComponent,
    /// The piece length (a power of two of at least 16 KiB when v2 metadata is present).
    pub piece_length: PieceLength,
    /// Which metadata the torrent carries.
    pub version: MetaVersion,
    /// True for the single-file form (`length` in v1, a lone file at the root of the v2 tree).
    pub single_file: bool,
    /// The files in piece-space order, padding files included (v1 and hybrid).
    pub files: Vec<FileEntry>,
    /// The v1 piece hashes; empty for v2-only torrents.
    pub pieces: Vec<Sha1Hash>,
    /// The BEP 27 private flag: peers come from the tracker only.
    pub private: bool,
}

const PAD_DIR: &str = ".pad";

impl Info {
    /// The total size of the files, padding excluded.
    pub fn total_size(&self) -> u64 {
        self.data_files().map(|f| f.length).sum()
    }

    /// The files that hold data: every file but padding files.
    pub fn data_files(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| !f.attr.pad)
    }

    /// The piece geometry: one run for v1, one per non-empty file for v2 and hybrid.
    ///
    /// # Errors
    /// [`MetainfoError::Geometry`] if the pieces do not fit 32-bit indexes.
    pub fn geometry(&self) -> Result<Geometry, MetainfoError> {
        let geometry = match self.version {
            MetaVersion::V1 => Geometry::new(self.piece_length, [self.v1_length()]),
            MetaVersion::V2 | MetaVersion::Hybrid => {
                Geometry::new(self.piece_length, self.data_files().map(|f| f.length))
            }
        };
        geometry.map_err(MetainfoError::Geometry)
    }

    /// The length of piece space in v1 terms: every file, padding included.
    fn v1_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// Parses an info dictionary.
    ///
    /// # Errors
    /// A [`MetainfoError`] naming the first field that is missing, malformed or inconsistent.
    pub fn from_dict(dict: &Dict<'_>) -> Result<Self, MetainfoError> {
        let info = Fields::new(dict, "info");
        let name = info.required_bytes("name")?;
        let name = PathComponent::from_bytes(name).map_err(|source| MetainfoError::Path {
            field: info.path("name"),
            source,
        })?;
        let meta_version = info.int("meta version")?;
        let tree = info.dict("file tree")?;
        let pieces = info.bytes("pieces")?;
        let has_v2 = match (meta_version, tree) {
            (Some(2), Some(_)) => true,
            (Some(2), None) => {
                return Err(MetainfoError::Missing {
                    field: info.path("file tree"),
                });
            }
            (Some(1) | None, None) => false,
            (None, Some(_)) => {
                return Err(MetainfoError::Missing {
                    field: info.path("meta version"),
                });
            }
            (Some(v), _) => return Err(MetainfoError::UnsupportedVersion(v)),
        };
        let version = match (pieces.is_some(), has_v2) {
            (true, false) => MetaVersion::V1,
            (false, true) => MetaVersion::V2,
            (true, true) => MetaVersion::Hybrid,
            (false, false) => {
                return Err(MetainfoError::Missing {
                    field: info.path("pieces"),
                });
            }
        };
        let raw_piece_length = info.required_uint("piece length")?;
        let piece_length = if has_v2 {
            PieceLength::new_v2(raw_piece_length)
        } else {
            PieceLength::new_v1(raw_piece_length)
        }
        .map_err(MetainfoError::PieceLength)?;
        let private = info.int("private")? == Some(1);

        let v2_tree = || {
            tree.ok_or_else(|| MetainfoError::Missing {
                field: info.path("file tree"),
            })
        };
        let (single_file, files) = match version {
            MetaVersion::V1 => parse_v1_files(&info, &name)?,
            MetaVersion::V2 => parse_file_tree(v2_tree()?)?,
            MetaVersion::Hybrid => {
                let v2 = parse_file_tree(v2_tree()?)?;
                merge_hybrid(parse_v1_files(&info, &name)?, v2, piece_length, &name)?
            }
        };
        check_unique_paths(&files)?;

        let mut out = Self {
            name,
            piece_length,
            version,
            single_file,
            files,
            pieces: Vec::new(),
            private,
        };
        if out.total_size() == 0 {
            return Err(MetainfoError::Empty);
        }
        let geometry = out.geometry()?;
        if let Some(pieces) = pieces {
            if pieces.len() % Sha1Hash::LEN != 0 {
                return Err(MetainfoError::PiecesNotWhole { len: pieces.len() });
            }
            let expected = piece_length.pieces_for(out.v1_length());
            let found = (pieces.len() / Sha1Hash::LEN) as u64;
            if found != expected
                || (version == MetaVersion::Hybrid && expected != u64::from(geometry.piece_count()))
            {
                return Err(MetainfoError::PieceCount { expected, found });
            }
            out.pieces = pieces
                .chunks_exact(Sha1Hash::LEN)
                .filter_map(Sha1Hash::from_slice)
                .collect();
        }
        Ok(out)
    }

    /// The info dictionary as a bencode value, canonical, holding exactly the fields of `self`.
    pub fn to_value(&self) -> Value<'static> {
        let mut d = Dict::new();
        d.insert(b"name".to_vec(), Value::from(self.name.as_str().to_owned()));
        d.insert(
            b"piece length".to_vec(),
            Value::Int(i64::from(self.piece_length.get())),
        );
        if self.private {
            d.insert(b"private".to_vec(), Value::Int(1));
        }
        if self.version.has_v1() {
            let pieces: Vec<u8> = self.pieces.iter().flat_map(|h| h.0).collect();
            d.insert(b"pieces".to_vec(), Value::from(pieces));
            if self.single_file {
                if let Some(file) = self.files.first() {
                    d.insert(b"length".to_vec(), Value::Int(file.length as i64));
                    let attr = file.attr.encode();
                    if !attr.is_empty() {
                        d.insert(b"attr".to_vec(), Value::from(attr));
                    }
                }
            } else {
                let files = self.files.iter().map(v1_file_value).collect::<Vec<_>>();
                d.insert(b"files".to_vec(), Value::List(files));
            }
        }
        if self.version.has_v2() {
            d.insert(b"meta version".to_vec(), Value::Int(2));
            d.insert(b"file tree".to_vec(), Value::Dict(self.file_tree()));
        }
        Value::Dict(d)
    }

    /// The canonical bencoding of [`Info::to_value`].
    pub fn to_bytes(&self) -> Vec<u8> {
        shoal_bencode::encode(&self.to_value())
    }

    fn file_tree(&self) -> Dict<'static> {
        let mut tree = Dict::new();
        for file in self.data_files() {
            let mut leaf = Dict::new();
            leaf.insert(b"length".to_vec(), Value::Int(file.length as i64));
            if let Some(root) = file.pieces_root {
                leaf.insert(b"pieces root".to_vec(), Value::from(root.0.to_vec()));
            }
            let attr = file.attr.encode();
            if !attr.is_empty() {
                leaf.insert(b"attr".to_vec(), Value::from(attr));
            }
            insert_tree_file(&mut tree, file.path.components(), leaf);
        }
        tree
    }
}

fn insert_tree_file(node: &mut Dict<'static>, path: &[PathComponent], leaf: Dict<'static>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = first.as_str().as_bytes().to_vec();
    if rest.is_empty() {
        let mut file_node = Dict::new();
        file_node.insert(Vec::new(), Value::Dict(leaf));
        node.insert(key, Value::Dict(file_node));
        return;
    }
    let mut child = match node.get(&key) {
        Some(Value::Dict(d)) => d.clone(),
        _ => Dict::new(),
    };
    insert_tree_file(&mut child, rest, leaf);
    node.insert(key, Value::Dict(child));
}

fn v1_file_value(file: &FileEntry) -> Value<'static> {
    let mut d = Dict::new();
    let attr = file.attr.encode();
    if !attr.is_empty() {
        d.insert(b"attr".to_vec(), Value::from(attr));
    }
    d.insert(b"length".to_vec(), Value::Int(file.length as i64));
    let path = file
        .path
        .components()
        .iter()
        .map(|c| Value::from(c.as_str().to_owned()))
        .collect();
    d.insert(b"path".to_vec(), Value::List(path));
    Value::Dict(d)
}

/// Largest total accepted: 2^60 bytes, far beyond any real torrent, so sums never overflow.
const MAX_TOTAL: u64 = 1 << 60;

fn checked_total<'e>(mut files: impl Iterator<Item = &'e FileEntry>) -> Result<u64, MetainfoError> {
    files
        .try_fold(0u64, |sum, f| sum.checked_add(f.length))
        .filter(|&t| t <= MAX_TOTAL)
        .ok_or(MetainfoError::TooLarge)
}

fn parse_v1_files(
    info: &Fields<'_, '_>,
    name: &PathComponent,
) -> Result<(bool, Vec<FileEntry>), MetainfoError> {
    let files = info.list("files")?;
    let length = info.uint("length")?;
    match (length, files) {
        (Some(length), None) => {
            let attr =
                FileAttr::parse(info.bytes("attr")?.unwrap_or_default(), &info.path("attr"))?;
            let path =
                TorrentPath::new(vec![name.clone()]).map_err(|source| MetainfoError::Path {
                    field: info.path("name"),
                    source,
                })?;
            let file = FileEntry {
                path,
                length,
                attr,
                pieces_root: None,
            };
            checked_total(std::iter::once(&file))?;
            Ok((true, vec![file]))
        }
        (None, Some(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                let at = format!("info.files[{i}]");
                let entry = Fields::new(as_dict(item, &at)?, at);
                let length = entry.required_uint("length")?;
                let attr = FileAttr::parse(
                    entry.bytes("attr")?.unwrap_or_default(),
                    &entry.path("attr"),
                )?;
                let components = entry.list("path")?.ok_or_else(|| MetainfoError::Missing {
                    field: entry.path("path"),
                })?;
                let path = components
                    .iter()
                    .map(|c| {
                        let bytes = c.as_bytes().ok_or_else(|| MetainfoError::WrongType {
                            field: entry.path("path"),
                            expected: "a list of byte strings",
                            found: c.kind(),
                        })?;
                        PathComponent::from_bytes(bytes).map_err(|source| MetainfoError::Path {
                            field: entry.path("path"),
                            source,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let path = TorrentPath::new(path).map_err(|source| MetainfoError::Path {
                    field: entry.path("path"),
                    source,
                })?;
                out.push(FileEntry {
                    path,
                    length,
                    attr,
                    pieces_root: None,
                });
            }
            if out.is_empty() {
                return Err(MetainfoError::Empty);
            }
            checked_total(out.iter())?;
            Ok((false, out))
        }
        (Some(_), Some(_)) => Err(MetainfoError::Contradiction {
            field: "info".to_owned(),
            problem: "has both 'length' (single file) and 'files' (multiple files)",
        }),
        (None, None) => Err(MetainfoError::Missing {
            field: info.path("length"),
        }),
    }
}

/// Flattens a v2 file tree in key order.
fn parse_file_tree(tree: &Dict<'_>) -> Result<(bool, Vec<FileEntry>), MetainfoError> {
    let mut files = Vec::new();
    walk_tree(tree, &mut Vec::new(), &mut files)?;
    if files.is_empty() {
        return Err(MetainfoError::Empty);
    }
    checked_total(files.iter())?;
    let single_file = tree.len() == 1 && files.len() == 1 && files[0].path.components().len() == 1;
    Ok((single_file, files))
}

fn walk_tree(
    node: &Dict<'_>,
    at: &mut Vec<PathComponent>,
    out: &mut Vec<FileEntry>,
) -> Result<(), MetainfoError> {
    let here = |at: &[PathComponent]| {
        at.iter()
            .map(PathComponent::as_str)
            .collect::<Vec<_>>()
            .join("/")
    };
    if node.is_empty() {
        return Err(MetainfoError::FileTree {
            path: here(at),
            problem: "empty directory",
        });
    }
    for (key, child) in node.iter() {
        let component = PathComponent::from_bytes(key).map_err(|source| MetainfoError::Path {
            field: format!("info.file tree/{}", here(at)),
            source,
        })?;
        at.push(component);
        let child = child.as_dict().ok_or_else(|| MetainfoError::FileTree {
            path: here(at),
            problem: "node is not a dictionary",
        })?;
        match child.get(b"") {
            Some(leaf) if child.len() == 1 => out.push(parse_tree_leaf(leaf, at, &here(at))?),
            Some(_) => {
                return Err(MetainfoError::FileTree {
                    path: here(at),
                    problem: "is both a file and a directory",
                });
            }
            None => walk_tree(child, at, out)?,
        }
        at.pop();
    }
    Ok(())
}

fn parse_tree_leaf(
    leaf: &Value<'_>,
    at: &[PathComponent],
    display: &str,
) -> Result<FileEntry, MetainfoError> {
    let field = format!("info.file tree/{display}");
    let leaf = Fields::new(as_dict(leaf, &field)?, field);
    let length = leaf.required_uint("length")?;
    let attr = FileAttr::parse(leaf.bytes("attr")?.unwrap_or_default(), &leaf.path("attr"))?;
    let pieces_root = match (length, leaf.bytes("pieces root")?) {
        (0, None) => None,
        (0, Some(_)) => {
            return Err(MetainfoError::FileTree {
                path: display.to_owned(),
                problem: "empty file has a pieces root",
            });
        }
        (_, None) => {
            return Err(MetainfoError::Missing {
                field: leaf.path("pieces root"),
            });
        }
        (_, Some(root)) => {
            Some(
                Sha256Hash::from_slice(root).ok_or_else(|| MetainfoError::FileTree {
                    path: display.to_owned(),
                    problem: "pieces root is not 32 bytes",
                })?,
            )
        }
    };
    let path = TorrentPath::new(at.to_vec()).map_err(|source| MetainfoError::Path {
        field: leaf.at.clone(),
        source,
    })?;
    Ok(FileEntry {
        path,
        length,
        attr,
        pieces_root,
    })
}

/// Checks that the v1 list (with padding) and the v2 tree describe the same files at the same
/// piece-aligned offsets, and returns the v1 list with the v2 roots attached.
fn merge_hybrid(
    (v1_single, mut v1): (bool, Vec<FileEntry>),
    (v2_single, v2): (bool, Vec<FileEntry>),
    piece_length: PieceLength,
    name: &PathComponent,
) -> Result<(bool, Vec<FileEntry>), MetainfoError> {
    if v1_single != v2_single {
        return Err(MetainfoError::HybridMismatch {
            path: name.to_string(),
            problem: "one is a single-file torrent and the other is not",
        });
    }
    let mut tree = v2.into_iter();
    let mut offset: u64 = 0;
    for file in &mut v1 {
        let display = file.path.to_string();
        let mismatch = |problem| MetainfoError::HybridMismatch {
            path: display.clone(),
            problem,
        };
        if file.attr.pad {
            let is_pad_path = file
                .path
                .components()
                .first()
                .is_some_and(|c| c.as_str() == PAD_DIR);
            if !is_pad_path
                || file.length >= piece_length.bytes()
                || !(offset + file.length).is_multiple_of(piece_length.bytes())
            {
                return Err(mismatch("padding file does not end on a piece boundary"));
            }
        } else {
            let Some(twin) = tree.next() else {
                return Err(mismatch("file is missing from the v2 tree"));
            };
            if twin.path != file.path && !v1_single {
                return Err(mismatch(
                    "files are in a different order or have different names",
                ));
            }
            if twin.length != file.length {
                return Err(mismatch("lengths differ"));
            }
            if file.length > 0 && !offset.is_multiple_of(piece_length.bytes()) {
                return Err(mismatch(
                    "file does not start on a piece boundary (padding missing)",
                ));
            }
            file.pieces_root = twin.pieces_root;
        }
        offset += file.length;
    }
    if let Some(extra) = tree.next() {
        return Err(MetainfoError::HybridMismatch {
            path: extra.path.to_string(),
            problem: "file is missing from the v1 list",
        });
    }
    Ok((v1_single, v1))
}

fn check_unique_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&TorrentPath> = files
        .iter()
        .filter(|f| !f.attr.pad)
        .map(|f| &f.path)
        .collect();
    paths.sort();
    for pair in paths.windows(2) {
        let (a, b) = (pair[0].components(), pair[1].components());
        if a == b || b.starts_with(a) {
            return Err(MetainfoError::PathConflict {
                path: pair[0].to_string(),
            });
        }
    }
    Ok(())
}
