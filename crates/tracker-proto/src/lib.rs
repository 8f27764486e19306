//! HTTP tracker codecs, sans I/O: the announce and scrape requests a client sends as URL
//! queries, and the bencoded responses a tracker answers with.
//!
//! - [`request`]: [`AnnounceRequest`] (BEP 3), written by a client as a URL
//!   ([`AnnounceRequest::url`]) and read by a tracker from the raw query string
//!   ([`AnnounceRequest::from_query`]).
//! - [`response`]: [`AnnounceReply`], either an [`AnnounceResponse`] with its peers (the BEP 23
//!   compact IPv4 form, the BEP 7 `peers6` form, or the BEP 3 list of dictionaries) or the
//!   tracker's `failure reason`.
//! - [`scrape`]: the BEP 48 scrape URL convention ([`scrape_url`]), [`ScrapeRequest`] and
//!   [`ScrapeReply`].
//!
//! Both sides of each exchange live here, so the client (issue 3) and the tracker (issue 4)
//! cannot disagree: `AnnounceRequest::from_query` reads what `AnnounceRequest::url` writes,
//! and `AnnounceReply::parse` reads what `AnnounceReply::encode` writes.
//!
//! Everything from outside is bounded before it is decoded: queries by [`MAX_QUERY_LEN`],
//! response bodies by [`MAX_BODY_LEN`] and peer lists by [`MAX_PEERS`]. Responses are read with
//! the strict `shoal_bencode` decoder, so a response that is not canonical bencode is refused
//! with the offset of the first violation.
#![forbid(unsafe_code)]

mod body;
mod error;
mod query;
pub mod request;
pub mod response;
pub mod scrape;

pub use error::TrackerError;
pub use request::{AnnounceRequest, Event, MAX_SITE_LEN};
pub use response::{AnnounceReply, AnnounceResponse};
pub use scrape::{ScrapeReply, ScrapeRequest, ScrapeResponse, ScrapeStats, scrape_url};

/// The longest request query accepted, in bytes: 8 KiB. An announce from a real client is
/// under 400 bytes; a scrape of 100 info-hashes is about 6 KiB.
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// The largest response body accepted, in bytes: 4 MiB, room for [`MAX_PEERS`] compact peers.
pub const MAX_BODY_LEN: usize = 4 << 20;

/// The most peers one announce response may list (`peers` and `peers6` together): 100,000.
/// Trackers return 50 to 200.
pub const MAX_PEERS: usize = 100_000;
