//! A whole `.torrent` file: the info dictionary (kept as its original bytes) and the fields
//! around it: trackers (BEP 3, 12), web seeds (BEP 19), v2 piece layers (BEP 52).

use std::collections::BTreeMap;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use shoal_bencode::{Dict, Limits, Value};

use crate::error::MetainfoError;
use crate::fields::{Fields, as_str};
use crate::hash::{InfoHashes, Sha1Hash, Sha256Hash};
use crate::info::{Info, MetaVersion};
use crate::magnet::Magnet;
use crate::merkle;

/// The largest `.torrent` accepted, in bytes: 64 MiB.
pub const MAX_TORRENT_SIZE: usize = 64 << 20;

/// The bencode limits for torrents: [`MAX_TORRENT_SIZE`], nesting 64 deep (file trees are
/// directories), and 4 million values (a torrent of about half a million files).
pub const TORRENT_LIMITS: Limits = Limits {
    max_input: MAX_TORRENT_SIZE,
    max_depth: 64,
    max_values: 4_000_000,
};

/// A parsed torrent.
///
/// The info dictionary is kept as the exact bytes it was read from, so the info-hashes are
/// those every other client computes, and re-encoding writes those bytes back unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torrent {
    info: Info,
    info_bytes: Vec<u8>,
    info_hashes: InfoHashes,
    /// The primary tracker (`announce`).
    pub announce: Option<String>,
    /// Tracker tiers (`announce-list`, BEP 12). When non-empty, clients use it instead of
    /// `announce`.
    pub announce_list: Vec<Vec<String>>,
    /// Web seed URLs (`url-list`, BEP 19).
    pub web_seeds: Vec<String>,
    /// v2 piece layers: for each file larger than one piece, its `pieces root` and the hashes of
    /// its pieces. Validated against the roots; may be absent (a torrent made from a magnet
    /// link has none until peers send them).
    pub piece_layers: BTreeMap<Sha256Hash, Vec<Sha256Hash>>,
    /// A free-form comment.
    pub comment: Option<String>,
    /// The program that made the torrent.
    pub created_by: Option<String>,
    /// When the torrent was made, in seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

impl Torrent {
    /// A torrent for `info` with no trackers, web seeds, piece layers or comments; the info
    /// bytes are the canonical encoding of `info`.
    pub fn new(info: Info) -> Self {
        let info_bytes = info.to_bytes();
        let info_hashes = hashes_of(&info, &info_bytes);
        Self {
            info,
            info_bytes,
            info_hashes,
            announce: None,
            announce_list: Vec::new(),
            web_seeds: Vec::new(),
            piece_layers: BTreeMap::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        }
    }

    /// A torrent from an info dictionary's bytes alone (fetched with BEP 9 for a magnet link):
    /// no trackers, web seeds or piece layers until the caller adds them.
    ///
    /// # Errors
    /// As [`Torrent::from_bytes`], for the info dictionary.
    pub fn from_info_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        let value = shoal_bencode::decode_with(bytes, TORRENT_LIMITS)?;
        let dict = value.as_dict().ok_or_else(|| MetainfoError::WrongType {
            field: "info".to_owned(),
            expected: "a dictionary",
            found: value.kind(),
        })?;
        let info = Info::from_dict(dict)?;
        let mut torrent = Self::new(info);
        // Keep the bytes as fetched: they are what the info-hash names.
        torrent.info_hashes = hashes_of(&torrent.info, bytes);
        torrent.info_bytes = bytes.to_vec();
        Ok(torrent)
    }

    /// Parses a `.torrent` file.
    ///
    /// # Errors
    /// A [`MetainfoError`] for malformed bencode (with its offset), a missing, mistyped or
    /// inconsistent field (with its path), an unsafe path, or piece layers that do not match.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        let root = shoal_bencode::decode_with(bytes, TORRENT_LIMITS)?;
        let root = root.as_dict().ok_or_else(|| MetainfoError::WrongType {
            field: "torrent".to_owned(),
            expected: "a dictionary",
            found: root.kind(),
        })?;
        let fields = Fields::new(root, "");
        let info_dict = fields.required_dict("info")?;
        let info = Info::from_dict(info_dict)?;
        // A dictionary decoded from bytes always keeps its span.
        let info_bytes = info_dict
            .raw()
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| info.to_bytes());
        let info_hashes = hashes_of(&info, &info_bytes);

        let announce = fields.string("announce")?.map(str::to_owned);
        let announce_list = match fields.list("announce-list")? {
            None => Vec::new(),
            Some(tiers) => tiers
                .iter()
                .enumerate()
                .map(|(i, tier)| {
                    let field = format!("announce-list[{i}]");
                    let tier = tier.as_list().ok_or_else(|| MetainfoError::WrongType {
                        field: field.clone(),
                        expected: "a list",
                        found: tier.kind(),
                    })?;
                    tier.iter()
                        .map(|url| as_str(url, &field).map(str::to_owned))
                        .collect()
                })
                .filter(|tier: &Result<Vec<String>, _>| {
                    tier.as_ref().map_or(true, |t| !t.is_empty())
                })
                .collect::<Result<_, _>>()?,
        };
        let web_seeds = match fields.get("url-list") {
            None => Vec::new(),
            Some(Value::Bytes(b)) if b.is_empty() => Vec::new(),
            Some(one @ Value::Bytes(_)) => vec![as_str(one, "url-list")?.to_owned()],
            Some(Value::List(urls)) => urls
                .iter()
                .map(|u| as_str(u, "url-list").map(str::to_owned))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(MetainfoError::WrongType {
                    field: "url-list".to_owned(),
                    expected: "a byte string or a list",
                    found: other.kind(),
                });
            }
        };
        let piece_layers = match fields.dict("piece layers")? {
            Some(layers) if info.version.has_v2() => parse_piece_layers(&info, layers)?,
            _ => BTreeMap::new(),
        };
        Ok(Self {
            info,
            info_bytes,
            info_hashes,
            announce,
            announce_list,
            web_seeds,
            piece_layers,
            comment: fields.string("comment")?.map(str::to_owned),
            created_by: fields.string("created by")?.map(str::to_owned),
            creation_date: fields.int("creation date")?,
        })
    }

    /// Encodes the torrent. The info dictionary is written as its original bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Build the outer dictionary with a placeholder, then splice the raw info bytes in
        // where the placeholder's encoding sits: keys sort, so "info" lands in its place.
        let mut root = Dict::new();
        if let Some(announce) = &self.announce {
            root.insert(b"announce".to_vec(), Value::from(announce.clone()));
        }
        if !self.announce_list.is_empty() {
            let tiers = self
                .announce_list
                .iter()
                .map(|tier| Value::List(tier.iter().map(|u| Value::from(u.clone())).collect()))
                .collect();
            root.insert(b"announce-list".to_vec(), Value::List(tiers));
        }
        if let Some(comment) = &self.comment {
            root.insert(b"comment".to_vec(), Value::from(comment.clone()));
        }
        if let Some(created_by) = &self.created_by {
            root.insert(b"created by".to_vec(), Value::from(created_by.clone()));
        }
        if let Some(date) = self.creation_date {
            root.insert(b"creation date".to_vec(), Value::Int(date));
        }
        if !self.piece_layers.is_empty() {
            let layers: Dict<'static> = self
                .piece_layers
                .iter()
                .map(|(root, layer)| {
                    (
                        root.0.to_vec(),
                        Value::from(layer.iter().flat_map(|h| h.0).collect::<Vec<u8>>()),
                    )
                })
                .collect();
            root.insert(b"piece layers".to_vec(), Value::Dict(layers));
        }
        match self.web_seeds.as_slice() {
            [] => {}
            [one] => {
                root.insert(b"url-list".to_vec(), Value::from(one.clone()));
            }
            many => {
                root.insert(
                    b"url-list".to_vec(),
                    Value::List(many.iter().map(|u| Value::from(u.clone())).collect()),
                );
            }
        }
        let mut out = Vec::with_capacity(self.info_bytes.len() + 256);
        out.push(b'd');
        let mut info_written = false;
        for (key, value) in root.iter() {
            if !info_written && key > b"info".as_slice() {
                out.extend_from_slice(b"4:info");
                out.extend_from_slice(&self.info_bytes);
                info_written = true;
            }
            shoal_bencode::encode_bytes_into(key, &mut out);
            value.encode_into(&mut out);
        }
        if !info_written {
            out.extend_from_slice(b"4:info");
            out.extend_from_slice(&self.info_bytes);
        }
        out.push(b'e');
        out
    }

    /// The info dictionary, parsed.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The info dictionary's exact bytes (what BEP 9 sends as metadata).
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// The info-hashes: v1 for v1 and hybrid torrents, v2 for v2 and hybrid torrents.
    pub fn info_hashes(&self) -> InfoHashes {
        self.info_hashes
    }

    /// The tracker tiers to use: `announce-list` if present, else `announce` alone.
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            return self.announce_list.clone();
        }
        self.announce.iter().map(|a| vec![a.clone()]).collect()
    }

    /// A magnet link for this torrent: its info-hashes, name, size, trackers and web seeds.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hashes: self.info_hashes,
            name: Some(self.info.name.to_string()),
            exact_length: Some(self.info.total_size()),
            trackers: self.trackers().into_iter().flatten().collect(),
            web_seeds: self.web_seeds.clone(),
            peers: Vec::new(),
        }
    }
}

impl InfoHashes {
    /// Returns true if and only if `info_bytes` hash to every info-hash present (SHA-1 for v1,
    /// SHA-256 for v2): the check for metadata fetched from peers.
    pub fn matches(&self, info_bytes: &[u8]) -> bool {
        self.v1()
            .is_none_or(|v1| Sha1Hash(Sha1::digest(info_bytes).into()) == v1)
            && self
                .v2()
                .is_none_or(|v2| Sha256Hash(Sha256::digest(info_bytes).into()) == v2)
    }
}

fn hashes_of(info: &Info, info_bytes: &[u8]) -> InfoHashes {
    let v1 = || Sha1Hash(Sha1::digest(info_bytes).into());
    let v2 = || Sha256Hash(Sha256::digest(info_bytes).into());
    match info.version {
        MetaVersion::V1 => InfoHashes::V1(v1()),
        MetaVersion::V2 => InfoHashes::V2(v2()),
        MetaVersion::Hybrid => InfoHashes::Hybrid(v1(), v2()),
    }
}

fn parse_piece_layers(
    info: &Info,
    layers: &Dict<'_>,
) -> Result<BTreeMap<Sha256Hash, Vec<Sha256Hash>>, MetainfoError> {
    let piece_length = info.piece_length;
    let mut out = BTreeMap::new();
    for (key, value) in layers.iter() {
        let root = Sha256Hash::from_slice(key).ok_or_else(|| MetainfoError::PieceLayer {
            file: data_encoding::HEXLOWER.encode(key),
            problem: "key is not a 32-byte pieces root",
        })?;
        let file = info
            .data_files()
            .find(|f| f.pieces_root == Some(root))
            .ok_or_else(|| MetainfoError::PieceLayer {
                file: root.to_hex(),
                problem: "no file has this pieces root",
            })?;
        let name = file.path.to_string();
        if file.length <= piece_length.bytes() {
            return Err(MetainfoError::PieceLayer {
                file: name,
                problem: "file fits in one piece, so it must not have a piece layer",
            });
        }
        let bytes = value.as_bytes().ok_or_else(|| MetainfoError::PieceLayer {
            file: name.clone(),
            problem: "layer is not a byte string",
        })?;
        let expected = piece_length
            .pieces_for(file.length)
            .saturating_mul(Sha256Hash::LEN as u64);
        if bytes.len() as u64 != expected {
            return Err(MetainfoError::PieceLayer {
                file: name,
                problem: "layer length does not match the file's piece count",
            });
        }
        let layer: Vec<Sha256Hash> = bytes
            .chunks_exact(Sha256Hash::LEN)
            .filter_map(Sha256Hash::from_slice)
            .collect();
        if merkle::root_from_piece_layer(&layer, piece_length.blocks_per_piece()) != root {
            return Err(MetainfoError::PieceLayer {
                file: name,
                problem: "layer hashes do not add up to the file's pieces root",
            });
        }
        out.insert(root, layer);
    }
    Ok(out)
}
