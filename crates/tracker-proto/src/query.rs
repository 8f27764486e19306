//! The query string of a tracker request: splitting it into parameters, decoding values byte
//! for byte, and writing them.
//!
//! `form_urlencoded` would hand values back as UTF-8 strings, which mangles the binary
//! `info_hash` and `peer_id`, so values are decoded here on raw bytes: `+` is a space (form
//! encoding, which Go clients use for the byte 0x20), `%XX` is the byte `XX`, and a `%` not
//! followed by two hex digits is an error rather than the literal `%` that `percent_decode`
//! would let through.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

use crate::MAX_QUERY_LEN;
use crate::error::TrackerError;

/// Bytes written as they are; every other byte is percent-encoded. The RFC 3986 unreserved
/// characters: what libtorrent leaves literal, and safe in every tracker's parser.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Splits `query` (the part of the URL after `?`) into `(key, raw value)` pairs after checking
/// its length. Keys come back decoded, leniently: a key with a bad escape matches no known
/// parameter and is ignored like any unknown one. Values stay encoded for [`value`].
///
/// # Errors
/// [`TrackerError::QueryTooLong`] if `query` exceeds [`MAX_QUERY_LEN`].
pub(crate) fn params(
    query: &str,
) -> Result<impl Iterator<Item = (Cow<'_, [u8]>, &[u8])>, TrackerError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(TrackerError::QueryTooLong {
            len: query.len(),
            max: MAX_QUERY_LEN,
        });
    }
    Ok(query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (Cow::from(percent_decode(key)), value)
        }))
}

/// Decodes the raw value of parameter `field` to bytes.
///
/// # Errors
/// [`TrackerError::BadEscape`] for a `%` not followed by two hex digits.
pub(crate) fn value(field: &'static str, raw: &[u8]) -> Result<Vec<u8>, TrackerError> {
    let mut at = 0;
    while let Some(found) = raw[at..].iter().position(|&b| b == b'%') {
        let escape = at + found;
        match raw.get(escape + 1..escape + 3) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => at = escape + 3,
            _ => return Err(TrackerError::BadEscape { field }),
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    for (n, piece) in raw.split(|&b| b == b'+').enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        out.extend(percent_decode(piece));
    }
    Ok(out)
}

/// Decodes parameter `field` as a 20-byte info-hash or peer id.
///
/// # Errors
/// [`TrackerError::BadEscape`], or [`TrackerError::HashLength`] if it is not 20 bytes.
pub(crate) fn id20(field: &'static str, raw: &[u8]) -> Result<[u8; 20], TrackerError> {
    let bytes = value(field, raw)?;
    <[u8; 20]>::try_from(bytes.as_slice()).map_err(|_| TrackerError::HashLength {
        field,
        len: bytes.len(),
    })
}

/// Decodes parameter `field` as a decimal number: ASCII digits only (no sign, no spaces),
/// leading zeros allowed.
///
/// # Errors
/// [`TrackerError::BadEscape`], or [`TrackerError::BadNumber`] for anything else, including a
/// value out of `T`'s range.
pub(crate) fn number<T: std::str::FromStr>(
    field: &'static str,
    raw: &[u8],
) -> Result<T, TrackerError> {
    let bytes = value(field, raw)?;
    let bad = TrackerError::BadNumber { field };
    // `str::parse` also takes a leading `+`: only digits are a number on the wire.
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad)
}

/// Decodes parameter `field` as a flag: `0` or `1`.
///
/// # Errors
/// [`TrackerError::BadEscape`], or [`TrackerError::BadNumber`] for any other value.
pub(crate) fn flag(field: &'static str, raw: &[u8]) -> Result<bool, TrackerError> {
    match number::<u8>(field, raw)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(TrackerError::BadNumber { field }),
    }
}

/// Decodes parameter `field` from `raw` with `parse` and stores it in `slot`, the first time
/// only.
///
/// # Errors
/// [`TrackerError::DuplicateParam`] if `slot` is already filled, else `parse`'s error.
pub(crate) fn once<T>(
    slot: &mut Option<T>,
    field: &'static str,
    raw: &[u8],
    parse: impl FnOnce(&'static str, &[u8]) -> Result<T, TrackerError>,
) -> Result<(), TrackerError> {
    if slot.is_some() {
        return Err(TrackerError::DuplicateParam { field });
    }
    *slot = Some(parse(field, raw)?);
    Ok(())
}

/// A query string being written, one `key=value` parameter at a time.
#[derive(Default)]
pub(crate) struct QueryWriter(String);

impl QueryWriter {
    /// Appends `key=value` with `value`'s bytes percent-encoded.
    pub(crate) fn bytes(&mut self, key: &str, value: &[u8]) {
        self.display(key, percent_encode(value, UNRESERVED));
    }

    /// Appends `key=value` with `value` written as it displays: for numbers and words that
    /// need no encoding.
    pub(crate) fn display(&mut self, key: &str, value: impl Display) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        // Writing to a `String` cannot fail.
        let _ = write!(self.0, "{key}={value}");
    }

    /// The query written so far.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// `url` with `query` added: after `?` if `url` has no query yet, else after `&`, and before
/// any `#fragment` (a query written after it would never be sent). An empty `query` leaves
/// `url` as it is.
pub(crate) fn append(url: &str, query: &str) -> String {
    if query.is_empty() {
        return url.to_owned();
    }
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let separator = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    format!("{base}{separator}{query}{fragment}")
}
