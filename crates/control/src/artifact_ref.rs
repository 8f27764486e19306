//! What a user may type to name an artifact ([`ArtifactRef`]): a `NAME:TAG`, a content id or
//! a unique prefix of one ([`ContentIdPrefix`]), a magnet link, a torrent URL, or a path to a
//! `.torrent` file.
//!
//! The forms are told apart by their shape, in this order: `magnet:?` starts a magnet link;
//! `http://` or `https://` a torrent URL; a path starts with `/`, `./` or `../` or ends with
//! `.torrent`; anything else with a `:` is a `NAME:TAG`; anything else that is all hex digits
//! is a content id. A name always has a `:TAG` and a content id never contains `:`, so the last
//! two never overlap.

use std::fmt;
use std::str::FromStr;

use shoal_metainfo::{Magnet, MagnetError};

use crate::name_tag::{NameTag, NameTagError};

/// The longest reference accepted, in bytes: the longest magnet link.
pub const MAX_REF_LEN: usize = shoal_metainfo::magnet::MAX_MAGNET_LEN;

/// The fewest hex digits a content id prefix may have: 12 (48 bits), enough to be unique
/// among millions of artifacts and short enough to type.
pub const MIN_PREFIX_LEN: usize = 12;

/// The hex digits of a whole content id (a SHA-256 v2 info-hash).
pub const CONTENT_ID_HEX_LEN: usize = 64;

/// One way of naming an artifact. See the module documentation for how the forms are told
/// apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactRef {
    /// `NAME:TAG`.
    NameTag(NameTag),
    /// A content id, whole or a prefix of at least [`MIN_PREFIX_LEN`] hex digits.
    ContentId(ContentIdPrefix),
    /// A magnet link (`magnet:?...`), checked to carry an info-hash; kept as typed.
    Magnet(String),
    /// An `http://` or `https://` URL of a `.torrent` file.
    TorrentUrl(String),
    /// A local path to a `.torrent` file.
    TorrentPath(String),
}

impl FromStr for ArtifactRef {
    type Err = ArtifactRefError;

    /// Parses a reference as typed on a command line or sent to the API; nothing is trimmed.
    ///
    /// # Errors
    /// [`ArtifactRefError::Empty`], [`ArtifactRefError::TooLong`] above [`MAX_REF_LEN`],
    /// [`ArtifactRefError::Magnet`] for a magnet link without a valid info-hash,
    /// [`ArtifactRefError::NameTag`] for text with a `:` (or a valid name without its tag)
    /// that is not a `NAME:TAG`, [`ArtifactRefError::ContentId`] for hex digits of the wrong
    /// count, and [`ArtifactRefError::Unrecognized`] for anything else.
    fn from_str(s: &str) -> Result<Self, ArtifactRefError> {
        if s.is_empty() {
            return Err(ArtifactRefError::Empty);
        }
        if s.len() > MAX_REF_LEN {
            return Err(ArtifactRefError::TooLong { len: s.len() });
        }
        if starts_with_ignore_case(s, "magnet:?") {
            Magnet::parse(s).map_err(ArtifactRefError::Magnet)?;
            return Ok(Self::Magnet(s.to_owned()));
        }
        if starts_with_ignore_case(s, "http://") || starts_with_ignore_case(s, "https://") {
            return Ok(Self::TorrentUrl(s.to_owned()));
        }
        if s.ends_with(".torrent") || ["/", "./", "../"].iter().any(|p| s.starts_with(p)) {
            return Ok(Self::TorrentPath(s.to_owned()));
        }
        let name_tag_error = |source| ArtifactRefError::NameTag {
            input: excerpt(s),
            source,
        };
        if s.contains(':') {
            return s.parse().map(Self::NameTag).map_err(name_tag_error);
        }
        if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return ContentIdPrefix::from_str(s)
                .map(Self::ContentId)
                .map_err(ArtifactRefError::ContentId);
        }
        // A valid name that lacks its tag is the likeliest mistake: say so.
        match s.parse::<NameTag>() {
            Err(NameTagError::MissingTag) => Err(name_tag_error(NameTagError::MissingTag)),
            _ => Err(ArtifactRefError::Unrecognized { input: excerpt(s) }),
        }
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameTag(nt) => nt.fmt(f),
            Self::ContentId(id) => id.fmt(f),
            Self::Magnet(s) | Self::TorrentUrl(s) | Self::TorrentPath(s) => f.write_str(s),
        }
    }
}

/// A content id or a prefix of one: [`MIN_PREFIX_LEN`] to [`CONTENT_ID_HEX_LEN`] hex digits,
/// kept in lowercase.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentIdPrefix {
    hex: String,
}

impl ContentIdPrefix {
    /// The prefix in lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.hex
    }

    /// Returns true if and only if `content_id` starts with this prefix.
    pub fn matches(&self, content_id: &[u8; 32]) -> bool {
        self.hex.bytes().enumerate().all(|(i, digit)| {
            let byte = content_id[i / 2];
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0xf };
            hex_value(digit) == Some(nibble)
        })
    }

    /// The whole content id, if and only if all [`CONTENT_ID_HEX_LEN`] digits were given.
    pub fn full(&self) -> Option<[u8; 32]> {
        let bytes = data_encoding::HEXLOWER.decode(self.hex.as_bytes()).ok()?;
        bytes.try_into().ok()
    }

    /// The smallest content id this prefix matches (the prefix followed by zeros): where to
    /// start a range scan of an index ordered by content id. Every match sorts at or after it,
    /// and the matches are contiguous.
    pub fn lower_bound(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, digit) in self.hex.bytes().enumerate() {
            let nibble = hex_value(digit).unwrap_or(0);
            out[i / 2] |= if i % 2 == 0 { nibble << 4 } else { nibble };
        }
        out
    }
}

impl FromStr for ContentIdPrefix {
    type Err = ContentIdError;

    /// Parses [`MIN_PREFIX_LEN`] to [`CONTENT_ID_HEX_LEN`] hex digits, either case.
    ///
    /// # Errors
    /// [`ContentIdError::NotHex`] for a character that is not a hex digit, then
    /// [`ContentIdError::TooShort`] or [`ContentIdError::TooLong`].
    fn from_str(s: &str) -> Result<Self, ContentIdError> {
        if let Some((offset, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(ContentIdError::NotHex { ch, offset });
        }
        match s.len() {
            len if len < MIN_PREFIX_LEN => Err(ContentIdError::TooShort { len }),
            len if len > CONTENT_ID_HEX_LEN => Err(ContentIdError::TooLong { len }),
            _ => Ok(Self {
                hex: s.to_ascii_lowercase(),
            }),
        }
    }
}

impl From<[u8; 32]> for ContentIdPrefix {
    /// The whole content id as a prefix of itself.
    fn from(content_id: [u8; 32]) -> Self {
        Self {
            hex: data_encoding::HEXLOWER.encode(&content_id),
        }
    }
}

impl fmt::Display for ContentIdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

impl fmt::Debug for ContentIdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentIdPrefix({})", self.hex)
    }
}

/// Why text is not a content id prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentIdError {
    /// A character that is not a hex digit.
    #[error("invalid character {ch:?} at byte {offset} in content id: use hex digits 0-9, a-f")]
    NotHex {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// Fewer than [`MIN_PREFIX_LEN`] digits.
    #[error(
        "content id prefix of {len} hex digits is too short: give at least {MIN_PREFIX_LEN} \
         (or NAME:TAG to name an artifact)"
    )]
    TooShort {
        /// The number of digits given.
        len: usize,
    },
    /// More than [`CONTENT_ID_HEX_LEN`] digits.
    #[error("content id of {len} hex digits is too long: a content id has {CONTENT_ID_HEX_LEN}")]
    TooLong {
        /// The number of digits given.
        len: usize,
    },
}

/// Why text is not an [`ArtifactRef`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactRefError {
    /// No text.
    #[error("empty artifact reference: {FORMS}")]
    Empty,
    /// Text longer than [`MAX_REF_LEN`].
    #[error("artifact reference of {len} bytes is longer than the {MAX_REF_LEN}-byte limit")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A `magnet:?` link without a valid info-hash.
    #[error("invalid magnet link")]
    Magnet(#[source] MagnetError),
    /// Text that can only be meant as a `NAME:TAG` but is not one.
    #[error("{input:?} is not a valid NAME:TAG")]
    NameTag {
        /// The start of the text.
        input: String,
        /// What is wrong with it.
        #[source]
        source: NameTagError,
    },
    /// Hex digits that are not a content id prefix.
    #[error("invalid content id")]
    ContentId(#[source] ContentIdError),
    /// Text of no recognised form.
    #[error("{input:?} is not an artifact reference: {FORMS}")]
    Unrecognized {
        /// The start of the text.
        input: String,
    },
}

/// The accepted forms, for error messages.
const FORMS: &str = "give NAME:TAG (e.g. app/build:1234), a content id (12 to 64 hex digits), \
                     a magnet link, an http(s):// torrent URL, or a path to a .torrent file";

/// The start of `s`, for quoting in an error without echoing 64 KiB back.
fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out: String = s.chars().take(MAX_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    const V2_MAGNET: &str = "magnet:?xt=urn:btmh:1220\
        caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e&dn=x";

    fn parse(s: &str) -> Result<ArtifactRef, ArtifactRefError> {
        s.parse()
    }

    fn form(r: &ArtifactRef) -> &'static str {
        match r {
            ArtifactRef::NameTag(_) => "name",
            ArtifactRef::ContentId(_) => "id",
            ArtifactRef::Magnet(_) => "magnet",
            ArtifactRef::TorrentUrl(_) => "url",
            ArtifactRef::TorrentPath(_) => "path",
        }
    }

    #[test]
    fn tells_the_forms_apart() {
        let id = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";
        let cases = [
            ("app/build:1234", "name"),
            (V2_MAGNET, "magnet"),
            ("https://h/x", "url"),
            ("HTTP://h:80/x", "url"),
            ("/tmp/a", "path"),
            ("./a", "path"),
            ("../a", "path"),
            ("a.torrent", "path"),
            ("c:/x/a.torrent", "path"),
            (id, "id"),
            ("CAF1E1C30E81", "id"),
            // All hex and a colon: a name, since content ids never contain ':'.
            ("abcdef:123456", "name"),
        ];
        for (input, want) in cases {
            let parsed = parse(input).unwrap();
            assert_eq!(form(&parsed), want, "{input:?} parsed as {parsed:?}");
            // Shown as typed; content ids in lowercase.
            let shown = if want == "id" {
                input.to_ascii_lowercase()
            } else {
                input.to_owned()
            };
            assert_eq!(parsed.to_string(), shown);
        }
        let ArtifactRef::ContentId(full) = parse(id).unwrap() else {
            unreachable!("checked above")
        };
        assert!(full.full().is_some());
    }

    #[test]
    fn explains_refusals() {
        assert!(matches!(parse(""), Err(ArtifactRefError::Empty)));
        assert!(matches!(
            parse("magnet:?dn=x"),
            Err(ArtifactRefError::Magnet(MagnetError::NoInfoHash))
        ));
        assert!(matches!(
            parse("myapp"),
            Err(ArtifactRefError::NameTag {
                source: NameTagError::MissingTag,
                ..
            })
        ));
        assert!(matches!(
            parse("App:1"),
            Err(ArtifactRefError::NameTag {
                source: NameTagError::InvalidNameChar { .. },
                ..
            })
        ));
        assert!(matches!(
            parse("abc123"),
            Err(ArtifactRefError::ContentId(ContentIdError::TooShort {
                len: 6
            }))
        ));
        assert!(matches!(
            parse(&"a".repeat(65)),
            Err(ArtifactRefError::ContentId(ContentIdError::TooLong {
                len: 65
            }))
        ));
        let err = parse("Not A Ref").unwrap_err();
        assert!(matches!(err, ArtifactRefError::Unrecognized { .. }));
        assert!(err.to_string().contains("NAME:TAG"), "{err}");
        assert!(matches!(
            parse(&"x".repeat(MAX_REF_LEN + 1)),
            Err(ArtifactRefError::TooLong { .. })
        ));
    }

    #[test]
    fn long_input_is_quoted_short() {
        let err = parse(&"Z".repeat(1000)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }

    #[test]
    fn prefix_matching() {
        let mut id = [0u8; 32];
        id[0] = 0xab;
        id[1] = 0xcd;
        id[5] = 0xef;
        let hex = data_encoding::HEXLOWER.encode(&id);
        for len in MIN_PREFIX_LEN..=CONTENT_ID_HEX_LEN {
            let prefix: ContentIdPrefix = hex[..len].parse().unwrap();
            assert!(prefix.matches(&id), "{len}");
            assert!(prefix.lower_bound() <= id);
            assert_eq!(prefix.full().is_some(), len == CONTENT_ID_HEX_LEN);
        }
        let upper: ContentIdPrefix = hex[..13].to_uppercase().parse().unwrap();
        assert!(upper.matches(&id));
        // Digits count from 1: 13 digits cover bytes 0 to 5 and the high half of byte 6.
        let mut other = id;
        other[6] ^= 0x01; // digit 14 differs: still a match
        assert!(upper.matches(&other));
        other[6] ^= 0x10; // digit 13 differs
        assert!(!upper.matches(&other));
        let mut other = id;
        other[5] ^= 0x01; // digit 12 differs
        assert!(!upper.matches(&other));
        assert_eq!(ContentIdPrefix::from(id).full(), Some(id));
        assert_eq!(
            "abcdefg12345".parse::<ContentIdPrefix>(),
            Err(ContentIdError::NotHex { ch: 'g', offset: 6 })
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn prefixes_match_exactly_their_ids(id in any::<[u8; 32]>(), other in any::<[u8; 32]>(),
                                            len in MIN_PREFIX_LEN..=CONTENT_ID_HEX_LEN) {
            let hex = data_encoding::HEXLOWER.encode(&id);
            let prefix: ContentIdPrefix = hex[..len].parse().unwrap();
            prop_assert!(prefix.matches(&id));
            let other_hex = data_encoding::HEXLOWER.encode(&other);
            prop_assert_eq!(prefix.matches(&other), other_hex.starts_with(prefix.as_str()));
            prop_assert_eq!(prefix.lower_bound() <= other || !prefix.matches(&other), true);
        }
    }
}
