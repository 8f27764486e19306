//! Node identities ([`NodeId`]): the name an agent registers under, validated once at the
//! edge. Short, printable and safe in paths, URLs and log lines.

use std::fmt;
use std::str::FromStr;

/// The longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A validated node id: 1 to [`MAX_NODE_ID_LEN`] bytes of `A-Z a-z 0-9 . _ -`, starting with
/// a letter or a digit (host names qualify).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    /// Parses a node id; nothing is trimmed or case-folded.
    ///
    /// # Errors
    /// [`NodeIdError::Empty`], [`NodeIdError::TooLong`], then the first bad character.
    fn from_str(s: &str) -> Result<Self, NodeIdError> {
        if s.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if s.len() > MAX_NODE_ID_LEN {
            return Err(NodeIdError::TooLong { len: s.len() });
        }
        for (offset, ch) in s.char_indices() {
            if !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')) {
                return Err(NodeIdError::InvalidChar { ch, offset });
            }
            if offset == 0 && !ch.is_ascii_alphanumeric() {
                return Err(NodeIdError::BadStart { ch });
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", self.0)
    }
}

/// Why text is not a node id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeIdError {
    /// No text.
    #[error("empty node id: use the host name, or 1 to {MAX_NODE_ID_LEN} of A-Z a-z 0-9 . _ -")]
    Empty,
    /// Longer than [`MAX_NODE_ID_LEN`].
    #[error("node id of {len} bytes is longer than the {MAX_NODE_ID_LEN}-byte limit")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `A-Z a-z 0-9 . _ -`.
    #[error("invalid character {ch:?} at byte {offset} in node id: use A-Z a-z 0-9 . _ -")]
    InvalidChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// Starts with `.`, `_` or `-`.
    #[error("node id starts with {ch:?}: it must start with a letter or a digit")]
    BadStart {
        /// The character.
        ch: char,
    },
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grammar() {
        for ok in ["a", "node-1", "Host.example.com", "0_x", &"n".repeat(64)] {
            assert_eq!(ok.parse::<NodeId>().unwrap().as_str(), ok);
        }
        let cases = [
            ("", NodeIdError::Empty),
            ("-a", NodeIdError::BadStart { ch: '-' }),
            (".a", NodeIdError::BadStart { ch: '.' }),
            ("a b", NodeIdError::InvalidChar { ch: ' ', offset: 1 }),
            ("a/b", NodeIdError::InvalidChar { ch: '/', offset: 1 }),
            (
                "ü",
                NodeIdError::InvalidChar {
                    ch: 'ü', offset: 0
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<NodeId>(), Err(want), "{input:?}");
        }
        assert_eq!(
            "n".repeat(65).parse::<NodeId>(),
            Err(NodeIdError::TooLong { len: 65 })
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,70}") {
            if let Ok(id) = s.parse::<NodeId>() {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
