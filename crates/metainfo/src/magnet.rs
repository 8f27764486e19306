//! Magnet links (BEP 9, BEP 53): `magnet:?xt=urn:btih:...&xt=urn:btmh:...&dn=...&tr=...`.
//!
//! Read: `xt` as `urn:btih:` (v1: 40 hex digits or 32 base32 digits) and `urn:btmh:` (v2: the
//! SHA-256 multihash `1220` + 64 hex digits), `dn` (name), `xl` (exact length), `tr`
//! (trackers), `ws` (web seeds), `x.pe` (peer addresses). Other parameters are ignored. Written
//! in that order with every reserved character percent-encoded, as libtorrent does.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE32, HEXLOWER_PERMISSIVE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::MagnetError;
use crate::hash::{InfoHashes, Sha1Hash, Sha256Hash};

/// The longest magnet link accepted, in bytes.
pub const MAX_MAGNET_LEN: usize = 64 * 1024;

/// The multihash prefix of a SHA-256 digest: function 0x12, length 0x20.
const SHA256_MULTIHASH: &str = "1220";

/// Characters written as they are; everything else is percent-encoded (RFC 3986 unreserved).
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The info-hashes (at least one).
    pub info_hashes: InfoHashes,
    /// The display name (`dn`).
    pub name: Option<String>,
    /// The exact total length in bytes (`xl`).
    pub exact_length: Option<u64>,
    /// Tracker URLs (`tr`), in order.
    pub trackers: Vec<String>,
    /// Web seed URLs (`ws`), in order.
    pub web_seeds: Vec<String>,
    /// Peer addresses (`x.pe`), `host:port`, in order.
    pub peers: Vec<String>,
}

impl Magnet {
    /// A magnet link with only the given info-hashes.
    pub fn new(info_hashes: InfoHashes) -> Self {
        Self {
            info_hashes,
            name: None,
            exact_length: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Parses a magnet link.
    ///
    /// # Errors
    /// A [`MagnetError`] saying what is missing or malformed.
    pub fn parse(link: &str) -> Result<Self, MagnetError> {
        if link.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(link.len()));
        }
        let query = link
            .strip_prefix("magnet:?")
            .or_else(|| link.strip_prefix("MAGNET:?"))
            .ok_or(MagnetError::NotMagnet)?;
        let mut v1: Option<Sha1Hash> = None;
        let mut v2: Option<Sha256Hash> = None;
        let mut out = Magnet::new(InfoHashes::V1(Sha1Hash::default()));
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "xt" => {
                    if let Some(hash) = strip_prefix_ignore_case(&value, "urn:btih:") {
                        let hash = parse_btih(hash)
                            .ok_or_else(|| MagnetError::BadInfoHash(value.to_string()))?;
                        set_once(&mut v1, hash, "v1")?;
                    } else if let Some(hash) = strip_prefix_ignore_case(&value, "urn:btmh:") {
                        let hash = parse_btmh(hash)
                            .ok_or_else(|| MagnetError::BadInfoHash(value.to_string()))?;
                        set_once(&mut v2, hash, "v2")?;
                    }
                }
                "dn" => out.name = Some(value.into_owned()),
                "xl" => {
                    out.exact_length = Some(
                        value
                            .parse()
                            .map_err(|_| MagnetError::BadLength(value.to_string()))?,
                    );
                }
                "tr" => out.trackers.push(value.into_owned()),
                "ws" => out.web_seeds.push(value.into_owned()),
                "x.pe" => out.peers.push(value.into_owned()),
                _ => {}
            }
        }
        out.info_hashes = InfoHashes::new(v1, v2).ok_or(MagnetError::NoInfoHash)?;
        Ok(out)
    }
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn set_once<T: PartialEq>(
    slot: &mut Option<T>,
    value: T,
    which: &'static str,
) -> Result<(), MagnetError> {
    match slot {
        Some(existing) if *existing != value => Err(MagnetError::ConflictingInfoHash(which)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn parse_btih(s: &str) -> Option<Sha1Hash> {
    let bytes = match s.len() {
        40 => HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()?,
        32 => BASE32.decode(s.to_ascii_uppercase().as_bytes()).ok()?,
        _ => return None,
    };
    Sha1Hash::from_slice(&bytes)
}

fn parse_btmh(s: &str) -> Option<Sha256Hash> {
    let digest = strip_prefix_ignore_case(s, SHA256_MULTIHASH)?;
    if digest.len() != 64 {
        return None;
    }
    Sha256Hash::from_slice(&HEXLOWER_PERMISSIVE.decode(digest.as_bytes()).ok()?)
}

impl FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, MagnetError> {
        Self::parse(s)
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("magnet:?")?;
        let mut sep = "";
        if let Some(v1) = self.info_hashes.v1() {
            write!(f, "xt=urn:btih:{v1}")?;
            sep = "&";
        }
        if let Some(v2) = self.info_hashes.v2() {
            write!(f, "{sep}xt=urn:btmh:{SHA256_MULTIHASH}{v2}")?;
        }
        if let Some(name) = &self.name {
            write!(f, "&dn={}", utf8_percent_encode(name, COMPONENT))?;
        }
        if let Some(len) = self.exact_length {
            write!(f, "&xl={len}")?;
        }
        for (key, values) in [
            ("tr", &self.trackers),
            ("ws", &self.web_seeds),
            ("x.pe", &self.peers),
        ] {
            for value in values {
                write!(f, "&{key}={}", utf8_percent_encode(value, COMPONENT))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    const V2: &str = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";

    #[test]
    fn reads_v1_v2_and_fields() {
        let link = format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{V2}&dn=My+File%20x&xl=1234&tr=http%3A%2F%2Ft%2Fa&tr=udp://u:1&ws=http://w/f&x.pe=10.0.0.1:6881&foo=bar",
            V1.to_uppercase()
        );
        let m = Magnet::parse(&link).unwrap();
        assert_eq!(m.info_hashes.v1().unwrap().to_hex(), V1);
        assert_eq!(m.info_hashes.v2().unwrap().to_hex(), V2);
        assert_eq!(m.name.as_deref(), Some("My File x"));
        assert_eq!(m.exact_length, Some(1234));
        assert_eq!(m.trackers, ["http://t/a", "udp://u:1"]);
        assert_eq!(m.web_seeds, ["http://w/f"]);
        assert_eq!(m.peers, ["10.0.0.1:6881"]);
        assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn base32_btih() {
        let bytes = HEXLOWER_PERMISSIVE.decode(V1.as_bytes()).unwrap();
        let b32 = BASE32.encode(&bytes).to_lowercase();
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap();
        assert_eq!(m.info_hashes.v1().unwrap().to_hex(), V1);
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, MagnetError)] = &[
            ("http://x", MagnetError::NotMagnet),
            ("magnet:?dn=x", MagnetError::NoInfoHash),
            (
                "magnet:?xt=urn:btih:abc",
                MagnetError::BadInfoHash("urn:btih:abc".into()),
            ),
            (
                "magnet:?xt=urn:btmh:1114aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                MagnetError::BadInfoHash(
                    "urn:btmh:1114aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
                ),
            ),
            (
                "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&xl=-1",
                MagnetError::BadLength("-1".into()),
            ),
            (
                "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88b",
                MagnetError::ConflictingInfoHash("v1"),
            ),
        ];
        for (link, expected) in cases {
            assert_eq!(&Magnet::parse(link).unwrap_err(), expected, "{link}");
        }
        let long = format!("magnet:?xt=urn:btih:{V1}&dn={}", "a".repeat(MAX_MAGNET_LEN));
        assert!(matches!(Magnet::parse(&long), Err(MagnetError::TooLong(_))));
    }
}
