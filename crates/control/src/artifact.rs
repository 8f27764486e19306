//! Published artifacts: the record the control plane keeps for each `NAME:TAG`
//! ([`ArtifactRecord`]), its stored form, the `.torrent` rebuilt from it, and the bind rule
//! that keeps tags immutable ([`decide_bind`]).
//!
//! An artifact's content id is its torrent's v2 info-hash (SHA-256 of the info dictionary), so
//! the same bytes published twice get the same id, and any client can check what it fetched.
//! The record keeps the info dictionary's exact bytes, so the `.torrent` it serves has exactly
//! that info-hash.

use sha2::{Digest, Sha256};
use shoal_bencode::{Dict, Value};
use shoal_metainfo::Torrent;

use crate::name_tag::NameTag;
use crate::record::{self, Fields, RecordError, uint};

/// The stored record's format number, written as `format` and checked on reading.
const FORMAT: i64 = 1;

/// What the control plane knows about one published artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// The name and tag it is published under.
    pub name_tag: NameTag,
    /// The content id: the torrent's v2 info-hash.
    pub content_id: [u8; 32],
    /// The v1 info-hash, for hybrid torrents.
    pub info_hash_v1: Option<[u8; 20]>,
    /// The total size of its files in bytes, padding excluded.
    pub size: u64,
    /// The piece length in bytes.
    pub piece_length: u32,
    /// Its files in torrent order, padding files excluded.
    pub files: Vec<ArtifactFile>,
    /// When it was published, in Unix milliseconds.
    pub created_at_ms: u64,
    /// Who published it (a user or node identity, as the server names it).
    pub created_by: String,
    /// The info dictionary's exact bytes: what the content id hashes.
    pub info: Vec<u8>,
    /// The torrent's `piece layers` dictionary, canonical bencode; empty when no file is
    /// larger than one piece.
    pub piece_layers: Vec<u8>,
}

/// One file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Its path inside the artifact, `/`-separated (for a single-file torrent, the file name).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The root of its v2 Merkle tree; `None` for an empty file.
    pub pieces_root: Option<[u8; 32]>,
}

impl ArtifactRecord {
    /// The record for publishing `torrent` as `name_tag`, by `created_by` at `now_ms`.
    ///
    /// # Errors
    /// [`ArtifactError::V1Only`] for a torrent without v2 metadata (content ids are v2
    /// info-hashes), [`ArtifactError::MissingPieceLayer`] for a file larger than one piece
    /// whose piece layer the torrent lacks (a torrent rebuilt from a magnet link).
    pub fn from_torrent(
        name_tag: NameTag,
        torrent: &Torrent,
        created_by: &str,
        now_ms: u64,
    ) -> Result<Self, ArtifactError> {
        let hashes = torrent.info_hashes();
        let Some(v2) = hashes.v2() else {
            return Err(ArtifactError::V1Only { name_tag });
        };
        let info = torrent.info();
        let piece_length = info.piece_length;
        let mut files = Vec::new();
        for file in info.data_files() {
            if let Some(root) = file.pieces_root
                && file.length > piece_length.bytes()
                && !torrent.piece_layers.contains_key(&root)
            {
                return Err(ArtifactError::MissingPieceLayer {
                    name_tag,
                    file: file.path.to_string(),
                });
            }
            files.push(ArtifactFile {
                path: file.path.to_string(),
                size: file.length,
                pieces_root: file.pieces_root.map(|r| r.0),
            });
        }
        let piece_layers = if torrent.piece_layers.is_empty() {
            Vec::new()
        } else {
            let layers: Dict<'_> = torrent
                .piece_layers
                .iter()
                .map(|(root, layer)| {
                    let bytes: Vec<u8> = layer.iter().flat_map(|h| h.0).collect();
                    (root.0.to_vec(), bytes)
                })
                .collect();
            shoal_bencode::encode(&Value::Dict(layers))
        };
        Ok(Self {
            name_tag,
            content_id: v2.0,
            info_hash_v1: hashes.v1().map(|h| h.0),
            size: info.total_size(),
            piece_length: piece_length.get(),
            files,
            created_at_ms: now_ms,
            created_by: created_by.to_owned(),
            info: torrent.info_bytes().to_vec(),
            piece_layers,
        })
    }

    /// The content id in lowercase hex (64 digits).
    pub fn content_id_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.content_id)
    }

    /// The first 12 hex digits of the content id: enough to name it to a person.
    pub fn content_id_short(&self) -> String {
        short_hex(&self.content_id)
    }

    /// The 20-byte info-hashes peers announce this artifact under: the v2 info-hash truncated
    /// (BEP 52), then the v1 info-hash of a hybrid torrent. What a tracker's allow-list needs.
    pub fn announce_info_hashes(&self) -> Vec<[u8; 20]> {
        let mut truncated = [0u8; 20];
        truncated.copy_from_slice(&self.content_id[..20]);
        std::iter::once(truncated)
            .chain(self.info_hash_v1)
            .collect()
    }

    /// A `.torrent` file for this artifact: the first of `trackers` as `announce` and, when
    /// there are several (the server nodes of a cluster), all of them in `announce-list`, each
    /// its own BEP 12 tier so clients fail over in order; then the info dictionary as its exact
    /// bytes, and the piece layers. It has the record's info-hashes.
    pub fn to_torrent_bytes(&self, trackers: &[String]) -> Vec<u8> {
        let urls: usize = trackers.iter().map(|t| 2 * t.len() + 16).sum();
        let mut out = Vec::with_capacity(self.info.len() + self.piece_layers.len() + 64 + urls);
        // Keys in sorted order: announce, announce-list, info, piece layers. The info
        // dictionary and the piece layers are already canonical bencode, so they are spliced
        // in as they are.
        out.push(b'd');
        if let Some(first) = trackers.first() {
            shoal_bencode::encode_bytes_into(b"announce", &mut out);
            shoal_bencode::encode_bytes_into(first.as_bytes(), &mut out);
        }
        if trackers.len() > 1 {
            shoal_bencode::encode_bytes_into(b"announce-list", &mut out);
            out.push(b'l');
            for tracker in trackers {
                out.push(b'l');
                shoal_bencode::encode_bytes_into(tracker.as_bytes(), &mut out);
                out.push(b'e');
            }
            out.push(b'e');
        }
        shoal_bencode::encode_bytes_into(b"info", &mut out);
        out.extend_from_slice(&self.info);
        if !self.piece_layers.is_empty() {
            shoal_bencode::encode_bytes_into(b"piece layers", &mut out);
            out.extend_from_slice(&self.piece_layers);
        }
        out.push(b'e');
        out
    }

    /// The stored form: a canonical bencode dictionary with a `format` number. Sizes and times
    /// above `i64::MAX` (never reached in practice) are written as `i64::MAX`.
    pub fn encode(&self) -> Vec<u8> {
        let files: Vec<Value<'_>> = self
            .files
            .iter()
            .map(|f| {
                let mut d = Dict::new();
                d.insert(b"path".as_slice(), f.path.as_str());
                d.insert(b"size".as_slice(), uint(f.size));
                if let Some(root) = &f.pieces_root {
                    d.insert(b"pieces root".as_slice(), root.as_slice());
                }
                Value::Dict(d)
            })
            .collect();
        let mut d = Dict::new();
        d.insert(b"content id".as_slice(), self.content_id.as_slice());
        d.insert(b"created at".as_slice(), uint(self.created_at_ms));
        d.insert(b"created by".as_slice(), self.created_by.as_str());
        d.insert(b"files".as_slice(), files);
        d.insert(b"format".as_slice(), FORMAT);
        d.insert(b"info".as_slice(), self.info.as_slice());
        d.insert(b"name".as_slice(), self.name_tag.as_str());
        d.insert(b"piece layers".as_slice(), self.piece_layers.as_slice());
        d.insert(b"piece length".as_slice(), i64::from(self.piece_length));
        d.insert(b"size".as_slice(), uint(self.size));
        if let Some(v1) = &self.info_hash_v1 {
            d.insert(b"v1".as_slice(), v1.as_slice());
        }
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a record written by [`ArtifactRecord::encode`], checking that the info bytes hash
    /// to the content id and the file sizes add up.
    ///
    /// # Errors
    /// [`ArtifactError::Record`] naming the field that is missing, mistyped or inconsistent.
    pub fn decode(bytes: &[u8]) -> Result<Self, ArtifactError> {
        Ok(decode_record(bytes)?)
    }
}

fn decode_record(bytes: &[u8]) -> Result<ArtifactRecord, RecordError> {
    let dict = record::decode(bytes, FORMAT)?;
    let top = Fields::new(&dict, "");
    let name = top.str("name")?;
    let name_tag: NameTag = name
        .parse()
        .map_err(|e| top.invalid("name", format!("{name:?}: {e}")))?;
    let content_id = top.array::<32>("content id")?;
    let info = top.bytes("info")?;
    if <[u8; 32]>::from(Sha256::digest(info)) != content_id {
        return Err(top.invalid("info", "does not hash to the content id"));
    }
    let items = top.list("files")?;
    let mut files = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("files[{i}]");
        let dict = item.as_dict().ok_or_else(|| RecordError::WrongType {
            field: prefix.clone(),
            expected: "a dictionary",
            found: item.kind(),
        })?;
        let file = Fields::new(dict, &prefix);
        files.push(ArtifactFile {
            path: file.str("path")?.to_owned(),
            size: file.uint("size")?,
            pieces_root: file.opt_array::<32>("pieces root")?,
        });
    }
    let size: u64 = top.uint("size")?;
    if files
        .iter()
        .map(|f| f.size)
        .try_fold(0u64, u64::checked_add)
        != Some(size)
    {
        return Err(top.invalid("size", "is not the sum of the file sizes"));
    }
    Ok(ArtifactRecord {
        name_tag,
        content_id,
        info_hash_v1: top.opt_array::<20>("v1")?,
        size,
        piece_length: top.uint("piece length")?,
        files,
        created_at_ms: top.uint("created at")?,
        created_by: top.str("created by")?.to_owned(),
        info: info.to_vec(),
        piece_layers: top.bytes("piece layers")?.to_vec(),
    })
}

/// Why an artifact could not be recorded or read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The torrent has v1 metadata only.
    #[error(
        "cannot publish {name_tag}: the torrent is v1-only, and content ids are v2 info-hashes; \
         publish a v2 or hybrid torrent"
    )]
    V1Only {
        /// The name it was to be published under.
        name_tag: NameTag,
    },
    /// A file larger than one piece has no piece layer in the torrent.
    #[error(
        "cannot publish {name_tag}: the torrent has no piece layer for {file:?}; publish the \
         .torrent file as it was created, not one rebuilt from a magnet link"
    )]
    MissingPieceLayer {
        /// The name it was to be published under.
        name_tag: NameTag,
        /// The file's path.
        file: String,
    },
    /// A stored record that does not read.
    #[error("cannot read artifact record")]
    Record(#[from] RecordError),
}

/// What publishing a record under its `NAME:TAG` does, when allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The tag was free: store the new record.
    Bound,
    /// The tag is already bound to the same content: keep the existing record (publishing is
    /// idempotent).
    AlreadyBound,
}

/// Why a record cannot be bound to its `NAME:TAG`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The tag already names different content.
    #[error(
        "{name_tag} is bound to other content ({}); tags are immutable, publish under a new tag",
        short_hex(.bound_content_id)
    )]
    TagBoundToOtherContent {
        /// The name and tag.
        name_tag: NameTag,
        /// The content id it is bound to.
        bound_content_id: [u8; 32],
    },
}

/// The bind rule: whether `new` may be published given the record `existing` already bound to
/// the same `NAME:TAG` (if any). Tags are immutable: a tag binds once, and publishing the same
/// content again is a no-op.
///
/// # Errors
/// [`BindError::TagBoundToOtherContent`] when `existing` has another content id.
pub fn decide_bind(
    existing: Option<&ArtifactRecord>,
    new: &ArtifactRecord,
) -> Result<BindOutcome, BindError> {
    match existing {
        None => Ok(BindOutcome::Bound),
        Some(old) if old.content_id == new.content_id => Ok(BindOutcome::AlreadyBound),
        Some(old) => Err(BindError::TagBoundToOtherContent {
            name_tag: new.name_tag.clone(),
            bound_content_id: old.content_id,
        }),
    }
}

/// The first 12 hex digits of `id`.
fn short_hex(id: &[u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(&id[..6])
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;
    use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
    use shoal_metainfo::{MetaVersion, PathComponent, TorrentPath};

    use super::*;

    /// Deterministic content for the file at `path`.
    fn content(path: &str, len: u64) -> Vec<u8> {
        let seed = path
            .bytes()
            .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect()
    }

    /// A torrent of `files` (path, length) with 16 KiB pieces.
    pub(crate) fn torrent(version: MetaVersion, files: &[(&str, u64)]) -> Torrent {
        let inputs = files
            .iter()
            .map(|(path, length)| InputFile {
                path: TorrentPath::parse(path).unwrap(),
                length: *length,
                executable: false,
            })
            .collect();
        let options = CreateOptions {
            version,
            piece_length: Some(16 * 1024),
            ..CreateOptions::default()
        };
        let single = files.len() == 1;
        let contents: std::collections::BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(path, length)| ((*path).to_owned(), content(path, *length)))
            .collect();
        let torrent = Plan::new(PathComponent::new("art").unwrap(), inputs, single, options)
            .unwrap()
            .finish_in_memory(|f| &contents[&f.path.to_string()])
            .unwrap();
        // Read back from bytes, as a published torrent would be.
        Torrent::from_bytes(&torrent.to_bytes()).unwrap()
    }

    fn name(s: &str) -> NameTag {
        s.parse().unwrap()
    }

    const MULTI: &[(&str, u64)] = &[("bin/app", 40_000), ("README", 10), ("empty", 0)];

    #[test]
    fn records_a_hybrid_torrent() {
        let t = torrent(MetaVersion::Hybrid, MULTI);
        let r =
            ArtifactRecord::from_torrent(name("app:1"), &t, "alice", 1_700_000_000_000).unwrap();
        assert_eq!(
            Some(shoal_metainfo::Sha256Hash(r.content_id)),
            t.info_hashes().v2()
        );
        assert_eq!(r.info_hash_v1, t.info_hashes().v1().map(|h| h.0));
        assert_eq!(r.size, 40_010);
        assert_eq!(r.piece_length, 16 * 1024);
        let paths: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["README", "bin/app", "empty"],
            "padding files are left out"
        );
        assert!(r.files[1].pieces_root.is_some() && r.files[2].pieces_root.is_none());
        assert!(!r.piece_layers.is_empty(), "bin/app spans three pieces");
        assert_eq!(r.content_id_hex().len(), 64);
        assert_eq!(r.content_id_short(), r.content_id_hex()[..12]);
        let keys = r.announce_info_hashes();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], r.content_id[..20]);
    }

    #[test]
    fn torrent_bytes_parse_back_with_the_same_hashes() {
        for (version, files) in [
            (MetaVersion::Hybrid, MULTI),
            (MetaVersion::V2, MULTI),
            (MetaVersion::V2, &[("one.bin", 100)][..]),
        ] {
            let t = torrent(version, files);
            let r = ArtifactRecord::from_torrent(name("a:b"), &t, "x", 0).unwrap();
            let one = vec!["http://tracker:7070/announce".to_owned()];
            let three: Vec<String> = (1..=3)
                .map(|i| format!("http://10.0.0.{i}:6969/announce"))
                .collect();
            for trackers in [Vec::new(), one, three] {
                let again = Torrent::from_bytes(&r.to_torrent_bytes(&trackers)).unwrap();
                assert_eq!(again.info_hashes(), t.info_hashes());
                assert_eq!(again.piece_layers, t.piece_layers);
                assert_eq!(again.info_bytes(), r.info.as_slice());
                assert_eq!(again.announce.as_ref(), trackers.first());
                let tiers: Vec<Vec<String>> = if trackers.len() > 1 {
                    trackers.iter().map(|t| vec![t.clone()]).collect()
                } else {
                    Vec::new()
                };
                assert_eq!(
                    again.announce_list, tiers,
                    "each tracker its own tier, in order"
                );
            }
        }
    }

    #[test]
    fn refuses_v1_only_and_missing_layers() {
        let v1 = torrent(MetaVersion::V1, MULTI);
        let err = ArtifactRecord::from_torrent(name("app:1"), &v1, "x", 0).unwrap_err();
        assert!(matches!(err, ArtifactError::V1Only { .. }));
        assert!(
            err.to_string().contains("publish a v2 or hybrid torrent"),
            "{err}"
        );

        let mut bare = torrent(MetaVersion::V2, MULTI);
        bare.piece_layers.clear();
        assert_eq!(
            ArtifactRecord::from_torrent(name("app:1"), &bare, "x", 0),
            Err(ArtifactError::MissingPieceLayer {
                name_tag: name("app:1"),
                file: "bin/app".into()
            })
        );
    }

    #[test]
    fn stored_form_round_trips_and_is_checked() {
        let t = torrent(MetaVersion::Hybrid, MULTI);
        let r = ArtifactRecord::from_torrent(name("team/app:v1.0"), &t, "ci", 42).unwrap();
        let bytes = r.encode();
        assert_eq!(ArtifactRecord::decode(&bytes), Ok(r.clone()));
        // Canonical: decoding and encoding again gives the same bytes.
        assert_eq!(ArtifactRecord::decode(&bytes).unwrap().encode(), bytes);

        let mut wrong = r.clone();
        wrong.content_id[0] ^= 1;
        assert!(matches!(
            ArtifactRecord::decode(&wrong.encode()),
            Err(ArtifactError::Record(RecordError::Invalid { field, .. })) if field == "info"
        ));
        let mut wrong = r;
        wrong.size += 1;
        assert!(matches!(
            ArtifactRecord::decode(&wrong.encode()),
            Err(ArtifactError::Record(RecordError::Invalid { field, .. })) if field == "size"
        ));
        assert!(ArtifactRecord::decode(b"de").is_err());
    }

    #[test]
    fn bind_rule() {
        let a = ArtifactRecord::from_torrent(
            name("app:1"),
            &torrent(MetaVersion::V2, &[("x", 5)]),
            "x",
            0,
        )
        .unwrap();
        let b = ArtifactRecord::from_torrent(
            name("app:1"),
            &torrent(MetaVersion::V2, &[("y", 5)]),
            "x",
            0,
        )
        .unwrap();
        assert_eq!(decide_bind(None, &a), Ok(BindOutcome::Bound));
        assert_eq!(decide_bind(Some(&a), &a), Ok(BindOutcome::AlreadyBound));
        let err = decide_bind(Some(&a), &b).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "app:1 is bound to other content ({}); tags are immutable, publish under a new tag",
                a.content_id_short()
            )
        );
    }

    fn arbitrary_record() -> impl Strategy<Value = ArtifactRecord> {
        let file = (
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}",
            0u64..1 << 40,
            any::<Option<[u8; 32]>>(),
        )
            .prop_map(|(path, size, pieces_root)| ArtifactFile {
                path,
                size,
                pieces_root,
            });
        (
            "[a-z0-9]{1,10}:[a-z0-9]{1,10}",
            any::<Option<[u8; 20]>>(),
            any::<u32>(),
            prop::collection::vec(file, 0..6),
            0u64..i64::MAX as u64,
            "\\PC{0,20}",
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(nt, v1, piece_length, files, at, by, info, layers)| {
                ArtifactRecord {
                    name_tag: name(&nt),
                    content_id: Sha256::digest(&info).into(),
                    info_hash_v1: v1,
                    size: files.iter().map(|f| f.size).sum(),
                    piece_length,
                    files,
                    created_at_ms: at,
                    created_by: by,
                    info,
                    piece_layers: layers,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(r in arbitrary_record()) {
            prop_assert_eq!(ArtifactRecord::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = ArtifactRecord::decode(&bytes);
        }
    }
}
