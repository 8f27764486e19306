//! Digest newtypes (SHA-1 for v1, SHA-256 for v2) and the pair of info-hashes a torrent has.

use std::fmt;
use std::str::FromStr;

use data_encoding::HEXLOWER_PERMISSIVE;

macro_rules! digest {
    ($name:ident, $len:literal, $what:literal) => {
        #[doc = concat!("A ", $what, " digest (", stringify!($len), " bytes), shown as lowercase hex.")]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The digest length in bytes.
            pub const LEN: usize = $len;

            /// Returns the digest if and only if `bytes` is exactly [`Self::LEN`] bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self)
            }

            /// The raw digest bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The digest as lowercase hex.
            pub fn to_hex(&self) -> String {
                data_encoding::HEXLOWER.encode(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            /// Parses hex, either case.
            fn from_str(s: &str) -> Result<Self, HexError> {
                let bytes = HEXLOWER_PERMISSIVE
                    .decode(s.as_bytes())
                    .map_err(|_| HexError {
                        expected: $len * 2,
                        input: s.chars().take(80).collect(),
                    })?;
                Self::from_slice(&bytes).ok_or(HexError {
                    expected: $len * 2,
                    input: s.chars().take(80).collect(),
                })
            }
        }
    };
}

digest!(Sha1Hash, 20, "SHA-1");
digest!(Sha256Hash, 32, "SHA-256");

impl Sha256Hash {
    /// The first 20 bytes: how a v2 info-hash travels where the v1 wire expects 20 bytes
    /// (handshakes, tracker announces).
    pub fn truncated(&self) -> Sha1Hash {
        let mut out = [0u8; 20];
        out.copy_from_slice(&self.0[..20]);
        Sha1Hash(out)
    }
}

/// A string that is not the hex form of a digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex digits, got {input:?}")]
pub struct HexError {
    /// The number of hex digits expected.
    pub expected: usize,
    /// The start of the offending input.
    pub input: String,
}

/// The info-hashes of one torrent: v1 (SHA-1 of the info dictionary) when it has v1 metadata,
/// v2 (SHA-256 of the same bytes) when it has v2 metadata; a hybrid torrent has both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InfoHashes {
    /// A v1-only torrent.
    V1(Sha1Hash),
    /// A v2-only torrent.
    V2(Sha256Hash),
    /// A hybrid torrent.
    Hybrid(Sha1Hash, Sha256Hash),
}

impl InfoHashes {
    /// Returns the hashes, or `None` if both are absent.
    pub fn new(v1: Option<Sha1Hash>, v2: Option<Sha256Hash>) -> Option<Self> {
        match (v1, v2) {
            (Some(v1), None) => Some(Self::V1(v1)),
            (None, Some(v2)) => Some(Self::V2(v2)),
            (Some(v1), Some(v2)) => Some(Self::Hybrid(v1, v2)),
            (None, None) => None,
        }
    }

    /// The v1 info-hash, if the torrent has v1 metadata.
    pub fn v1(&self) -> Option<Sha1Hash> {
        match *self {
            Self::V1(v1) | Self::Hybrid(v1, _) => Some(v1),
            Self::V2(_) => None,
        }
    }

    /// The v2 info-hash, if the torrent has v2 metadata.
    pub fn v2(&self) -> Option<Sha256Hash> {
        match *self {
            Self::V2(v2) | Self::Hybrid(_, v2) => Some(v2),
            Self::V1(_) => None,
        }
    }
}
