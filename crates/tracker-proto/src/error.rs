//! Why a tracker request or response was refused. Each variant names the parameter or field.

use shoal_bencode::DecodeError;

/// A malformed request (read by a tracker) or response (read by a client).
///
/// The request variants are what a tracker reports back as its `failure reason`; the response
/// variants mean the tracker is broken or is not a BitTorrent tracker, and the client should
/// treat it like one that did not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// A request query longer than [`crate::MAX_QUERY_LEN`].
    #[error("query of {len} bytes exceeds the {max}-byte limit")]
    QueryTooLong {
        /// The query's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A required request parameter is absent.
    #[error("{field}: required parameter is missing")]
    MissingParam {
        /// The parameter, e.g. `port`.
        field: &'static str,
    },
    /// A request parameter that may appear once appears again.
    #[error("{field}: parameter given more than once")]
    DuplicateParam {
        /// The parameter.
        field: &'static str,
    },
    /// A `%` in a parameter value that is not followed by two hex digits.
    #[error("{field}: malformed percent-escape")]
    BadEscape {
        /// The parameter.
        field: &'static str,
    },
    /// An `info_hash` or `peer_id` that does not decode to exactly 20 bytes.
    #[error("{field}: {len} bytes after decoding, expected 20")]
    HashLength {
        /// The parameter.
        field: &'static str,
        /// The decoded length.
        len: usize,
    },
    /// A numeric parameter (or a 0/1 flag) that is not a decimal number in its range.
    #[error("{field}: not a decimal number in range")]
    BadNumber {
        /// The parameter.
        field: &'static str,
    },
    /// An `event` other than `started`, `completed`, `stopped`, `paused` or empty.
    #[error("event: not started, completed, stopped, paused or empty")]
    BadEvent,
    /// An `ip` that is not an IPv4 or IPv6 address (a DNS name, which BEP 3 allows, included:
    /// a sans-IO codec cannot resolve it).
    #[error("ip: not an IPv4 or IPv6 address")]
    BadIp,
    /// A response body larger than [`crate::MAX_BODY_LEN`].
    #[error("response of {len} bytes exceeds the {max}-byte limit")]
    BodyTooLarge {
        /// The body's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A response body that is not canonical bencode.
    #[error("response: malformed bencode")]
    Bencode(#[from] DecodeError),
    /// A required response field is absent.
    #[error("{field}: required field is missing")]
    MissingField {
        /// The field's path, e.g. `interval` or `peers[3].port`.
        field: String,
    },
    /// A response field of the wrong bencode type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field's path; `response` for the body itself.
        field: String,
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A response integer outside its field's range (negative, or above `u32`/`u16`).
    #[error("{field}: {value} is out of range")]
    OutOfRange {
        /// The field's path.
        field: String,
        /// The value found.
        value: i64,
    },
    /// A compact peer string whose length is not a whole number of entries.
    #[error("{field}: {len} bytes is not a whole number of {unit}-byte peers")]
    RaggedPeers {
        /// `peers` or `peers6`.
        field: &'static str,
        /// The string's length.
        len: usize,
        /// The entry size: 6 (IPv4) or 18 (IPv6).
        unit: usize,
    },
    /// More peers than [`crate::MAX_PEERS`].
    #[error("peers: {count} peers exceed the {max}-peer limit")]
    TooManyPeers {
        /// The peers listed.
        count: usize,
        /// The limit in force.
        max: usize,
    },
    /// A peer dictionary whose `ip` is not an IPv4 or IPv6 address.
    #[error("{field}: not an IPv4 or IPv6 address")]
    BadPeerIp {
        /// The field's path, e.g. `peers[3].ip`.
        field: String,
    },
    /// A scrape `files` key that is not a 20-byte info-hash.
    #[error("files: a key of {len} bytes is not a 20-byte info-hash")]
    ScrapeKey {
        /// The key's length.
        len: usize,
    },
}
