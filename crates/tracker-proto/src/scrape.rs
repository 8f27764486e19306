//! Scrape (BEP 48): swarm sizes for given torrents without joining them.
//!
//! The scrape URL is derived from the announce URL ([`scrape_url`]); the request lists
//! info-hashes as repeated `info_hash` parameters ([`ScrapeRequest`]); the response maps each
//! info-hash to its counts ([`ScrapeReply`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use shoal_bencode::{Dict, Value};

use crate::body::{self, key, top};
use crate::error::TrackerError;
use crate::query::{self, QueryWriter};

/// The scrape URL of the announce URL `announce`, by the BEP 48 convention: the last path
/// segment must start with `announce`, which becomes `scrape`; the rest of the segment, the
/// query and any fragment are kept (`http://t/x/announce.php?passkey=p` →
/// `http://t/x/scrape.php?passkey=p`). Returns `None` if and only if there is no such segment:
/// the tracker does not support scrape.
pub fn scrape_url(announce: &str) -> Option<String> {
    let path_end = announce.find(['?', '#']).unwrap_or(announce.len());
    let path = &announce[..path_end];
    // The authority's `//` is not a path separator: `http://announce.example` has no path.
    let authority = path.find("://").map_or(0, |at| at + 3);
    let path_start = authority + path[authority..].find('/')?;
    let segment = path_start + path[path_start..].rfind('/')? + 1;
    let rest = path[segment..].strip_prefix("announce")?;
    Some(format!(
        "{}scrape{rest}{}",
        &announce[..segment],
        &announce[path_end..]
    ))
}

/// The torrents a client asks about. Empty means "every torrent", which trackers may refuse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrapeRequest {
    /// The `info_hash` parameters, in order.
    pub info_hashes: Vec<[u8; 20]>,
}

impl ScrapeRequest {
    /// The scrape URL `scrape` (see [`scrape_url`]) with this request's query appended.
    pub fn url(&self, scrape: &str) -> String {
        query::append(scrape, &self.query())
    }

    /// The query string alone, without `?`: one `info_hash` parameter per info-hash, each
    /// percent-encoded byte by byte.
    pub fn query(&self) -> String {
        let mut q = QueryWriter::default();
        for hash in &self.info_hashes {
            q.bytes("info_hash", hash);
        }
        q.finish()
    }

    /// Reads a scrape request from `query`, the raw query string (after `?`, still
    /// percent-encoded). Every `info_hash` parameter counts, repeats included; other
    /// parameters are ignored. At most about 115 info-hashes fit in [`crate::MAX_QUERY_LEN`].
    ///
    /// # Errors
    /// [`TrackerError::QueryTooLong`], [`TrackerError::BadEscape`], or
    /// [`TrackerError::HashLength`] for an `info_hash` that is not 20 bytes.
    pub fn from_query(query: &str) -> Result<Self, TrackerError> {
        let mut info_hashes = Vec::new();
        for (name, raw) in query::params(query)? {
            if *name == *b"info_hash" {
                info_hashes.push(query::id20("info_hash", raw)?);
            }
        }
        Ok(Self { info_hashes })
    }
}

/// The counts for one torrent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// `complete`: seeds.
    pub complete: u32,
    /// `downloaded`: completed downloads ever reported.
    pub downloaded: u32,
    /// `incomplete`: leechers.
    pub incomplete: u32,
}

/// A successful scrape: counts per info-hash. Torrents the tracker does not know are left
/// out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrapeResponse {
    /// `files`: info-hash → counts.
    pub files: BTreeMap<[u8; 20], ScrapeStats>,
}

/// A tracker's answer to a scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScrapeReply {
    /// The tracker answered.
    Ok(ScrapeResponse),
    /// `failure reason`: the tracker refused the scrape and says why (lossy UTF-8).
    Failure(String),
}

impl ScrapeReply {
    /// Reads a tracker's scrape response body. `files` is required, and each entry's
    /// `complete`, `downloaded` and `incomplete`; other keys (BEP 48's `name`, trackers'
    /// `flags`) are ignored. The body must be canonical bencode.
    ///
    /// # Errors
    /// [`TrackerError::BodyTooLarge`] above [`crate::MAX_BODY_LEN`],
    /// [`TrackerError::Bencode`], [`TrackerError::WrongType`], [`TrackerError::MissingField`],
    /// [`TrackerError::OutOfRange`] for a count that is negative or above `u32`, and
    /// [`TrackerError::ScrapeKey`] for a `files` key that is not 20 bytes.
    pub fn parse(body: &[u8]) -> Result<Self, TrackerError> {
        let dict = body::decode(body)?;
        if let Some(reason) = body::failure(&dict)? {
            return Ok(Self::Failure(reason));
        }
        let files = body::required(dict.get(b"files"), "files", top)?;
        let files = files
            .as_dict()
            .ok_or_else(|| body::wrong_type("files", "dictionary", files))?;
        let mut out = BTreeMap::new();
        for (hash, entry) in files.iter() {
            let hash = <[u8; 20]>::try_from(hash)
                .map_err(|_| TrackerError::ScrapeKey { len: hash.len() })?;
            let name = format!("files[{}]", hex(&hash));
            let at = |k: &str| format!("{name}.{k}");
            let entry = entry
                .as_dict()
                .ok_or_else(|| body::wrong_type(name.as_str(), "dictionary", entry))?;
            let count = |name| body::required(body::int(entry, name, at)?, name, at);
            let stats = ScrapeStats {
                complete: count("complete")?,
                downloaded: count("downloaded")?,
                incomplete: count("incomplete")?,
            };
            out.insert(hash, stats);
        }
        Ok(Self::Ok(ScrapeResponse { files: out }))
    }

    /// The response body: [`ScrapeResponse::encode`], or `d14:failure reason...e`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ok(response) => response.encode(),
            Self::Failure(reason) => body::encode_failure(reason),
        }
    }
}

impl ScrapeResponse {
    /// The response body, canonical bencode: `d5:filesd<hash>d8:completei..e10:downloadedi..e
    /// 10:incompletei..eee...ee`.
    pub fn encode(&self) -> Vec<u8> {
        let files: Dict<'_> = self
            .files
            .iter()
            .map(|(hash, stats)| {
                let mut entry = Dict::new();
                entry.insert(key("complete"), i64::from(stats.complete));
                entry.insert(key("downloaded"), i64::from(stats.downloaded));
                entry.insert(key("incomplete"), i64::from(stats.incomplete));
                (hash.as_slice(), entry)
            })
            .collect();
        let mut d = Dict::new();
        d.insert(key("files"), files);
        shoal_bencode::encode(&Value::Dict(d))
    }
}

/// `hash` in lowercase hex, to name a `files` entry in errors.
fn hex(hash: &[u8; 20]) -> String {
    let mut out = String::with_capacity(40);
    for b in hash {
        // Writing to a `String` cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
