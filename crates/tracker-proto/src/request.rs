//! The announce request (BEP 3): what a client tells the tracker, carried in the URL query.
//!
//! The client writes it with [`AnnounceRequest::url`]; the tracker reads the raw query string
//! with [`AnnounceRequest::from_query`]. The two agree on every value:
//! `from_query(query())` gives back the same request.

use core::net::IpAddr;

use crate::error::TrackerError;
use crate::query::{self, QueryWriter, flag, id20, number, once, value};

/// Why the client announces now; `None` in [`AnnounceRequest::event`] is the regular,
/// periodic announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The first announce of a download.
    Started,
    /// The download has just finished (not sent when starting as a seed).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

impl Event {
    /// The value of the `event` parameter: `started`, `completed` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// One announce: the client's identity, its progress, and what it wants back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// `info_hash`: the torrent's v1 info-hash, or a v2 info-hash truncated to 20 bytes.
    pub info_hash: [u8; 20],
    /// `peer_id`: the client's peer id.
    pub peer_id: [u8; 20],
    /// `port`: the port the client listens on (0 is passed through; the tracker decides).
    pub port: u16,
    /// `uploaded`: bytes sent since the `started` announce.
    pub uploaded: u64,
    /// `downloaded`: bytes received since the `started` announce.
    pub downloaded: u64,
    /// `left`: bytes the client still needs; 0 for a seed.
    pub left: u64,
    /// `event`: absent for a regular announce.
    pub event: Option<Event>,
    /// `compact`: the client accepts the BEP 23 compact peer list. Written as `compact=1` or
    /// `compact=0`; an absent parameter reads as `false`.
    pub compact: bool,
    /// `numwant`: how many peers the client wants; absent leaves it to the tracker.
    pub numwant: Option<u32>,
    /// `key`: a number identifying the client across IP address changes, written as 8 hex
    /// digits as libtorrent and Transmission do.
    pub key: Option<u32>,
    /// `ip`: the address the client asks to be listed under; trackers usually ignore it.
    pub ip: Option<IpAddr>,
    /// `no_peer_id`: the client does not need peer ids in a dictionary-form peer list.
    pub no_peer_id: bool,
    /// `trackerid`: the `tracker id` a previous response carried, sent back as BEP 3 asks.
    pub tracker_id: Option<Vec<u8>>,
    /// `shoal_site` (a Shoal extension; other trackers ignore it): the site the client's host
    /// is in, its `site` label, so that a Shoal tracker can list peers nearby first. 1 to
    /// [`MAX_SITE_LEN`] of `A-Z a-z 0-9 . _ -`; anything else reads as absent.
    pub site: Option<String>,
}

/// The longest `shoal_site` value read (a label value's limit).
pub const MAX_SITE_LEN: usize = 63;

impl AnnounceRequest {
    /// The announce URL `announce` with this request's query appended (after `?`, or after `&`
    /// when `announce` already has a query, such as a passkey).
    pub fn url(&self, announce: &str) -> String {
        query::append(announce, &self.query())
    }

    /// The query string alone, without `?`: `info_hash`, `peer_id`, `port`, `uploaded`,
    /// `downloaded`, `left`, then `event`, `key`, `numwant`, `compact`, `no_peer_id`, `ip`,
    /// `trackerid` and `shoal_site` when they have a value. Binary values are percent-encoded byte by byte
    /// (BEP 3), leaving the RFC 3986 unreserved characters literal as libtorrent does.
    pub fn query(&self) -> String {
        let mut q = QueryWriter::default();
        q.bytes("info_hash", &self.info_hash);
        q.bytes("peer_id", &self.peer_id);
        q.display("port", self.port);
        q.display("uploaded", self.uploaded);
        q.display("downloaded", self.downloaded);
        q.display("left", self.left);
        if let Some(event) = self.event {
            q.display("event", event.as_str());
        }
        if let Some(key) = self.key {
            q.display("key", format_args!("{key:08X}"));
        }
        if let Some(numwant) = self.numwant {
            q.display("numwant", numwant);
        }
        q.display("compact", u8::from(self.compact));
        if self.no_peer_id {
            q.display("no_peer_id", 1);
        }
        if let Some(ip) = self.ip {
            q.bytes("ip", ip.to_string().as_bytes());
        }
        if let Some(tracker_id) = &self.tracker_id {
            q.bytes("trackerid", tracker_id);
        }
        if let Some(site) = &self.site {
            q.bytes("shoal_site", site.as_bytes());
        }
        q.finish()
    }

    /// Reads an announce from `query`, the raw query string of the request (after `?`, still
    /// percent-encoded).
    ///
    /// `info_hash`, `peer_id`, `port`, `uploaded`, `downloaded` and `left` are required (BEP 3
    /// marks only the others optional); each parameter may appear once. Unknown parameters are
    /// ignored. Lenient where real clients differ: `event=` and `event=paused` (BEP 21) read as
    /// a regular announce, and a `key` that is not 1 to 8 hex digits reads as absent (aria2
    /// sends 8 raw bytes of its peer id).
    ///
    /// # Errors
    /// [`TrackerError::QueryTooLong`] above [`crate::MAX_QUERY_LEN`], then the first of:
    /// [`TrackerError::DuplicateParam`], [`TrackerError::BadEscape`],
    /// [`TrackerError::HashLength`], [`TrackerError::BadNumber`], [`TrackerError::BadEvent`],
    /// [`TrackerError::BadIp`], [`TrackerError::MissingParam`].
    pub fn from_query(query: &str) -> Result<Self, TrackerError> {
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let mut uploaded = None;
        let mut downloaded = None;
        let mut left = None;
        let mut event = None;
        let mut compact = None;
        let mut numwant = None;
        let mut key = None;
        let mut ip = None;
        let mut no_peer_id = None;
        let mut tracker_id = None;
        let mut site = None;
        for (name, raw) in query::params(query)? {
            match &*name {
                b"info_hash" => once(&mut info_hash, "info_hash", raw, id20)?,
                b"peer_id" => once(&mut peer_id, "peer_id", raw, id20)?,
                b"port" => once(&mut port, "port", raw, number)?,
                b"uploaded" => once(&mut uploaded, "uploaded", raw, number)?,
                b"downloaded" => once(&mut downloaded, "downloaded", raw, number)?,
                b"left" => once(&mut left, "left", raw, number)?,
                b"event" => once(&mut event, "event", raw, parse_event)?,
                b"compact" => once(&mut compact, "compact", raw, flag)?,
                b"numwant" => once(&mut numwant, "numwant", raw, number)?,
                b"key" => once(&mut key, "key", raw, parse_key)?,
                b"ip" => once(&mut ip, "ip", raw, parse_ip)?,
                b"no_peer_id" => once(&mut no_peer_id, "no_peer_id", raw, flag)?,
                b"trackerid" => once(&mut tracker_id, "trackerid", raw, value)?,
                b"shoal_site" => once(&mut site, "shoal_site", raw, parse_site)?,
                _ => {}
            }
        }
        let required = |field| TrackerError::MissingParam { field };
        Ok(Self {
            info_hash: info_hash.ok_or(required("info_hash"))?,
            peer_id: peer_id.ok_or(required("peer_id"))?,
            port: port.ok_or(required("port"))?,
            uploaded: uploaded.ok_or(required("uploaded"))?,
            downloaded: downloaded.ok_or(required("downloaded"))?,
            left: left.ok_or(required("left"))?,
            event: event.flatten(),
            compact: compact.unwrap_or(false),
            numwant,
            key: key.flatten(),
            ip,
            no_peer_id: no_peer_id.unwrap_or(false),
            tracker_id,
            site: site.flatten(),
        })
    }
}

fn parse_site(field: &'static str, raw: &[u8]) -> Result<Option<String>, TrackerError> {
    let bytes = value(field, raw)?;
    let valid = (1..=MAX_SITE_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    // Only the allowed bytes, so this is ASCII.
    Ok(valid.then(|| bytes.iter().map(|&b| char::from(b)).collect()))
}

fn parse_event(field: &'static str, raw: &[u8]) -> Result<Option<Event>, TrackerError> {
    match value(field, raw)?.as_slice() {
        b"started" => Ok(Some(Event::Started)),
        b"completed" => Ok(Some(Event::Completed)),
        b"stopped" => Ok(Some(Event::Stopped)),
        // `empty` is BEP 3's spelling of "no event"; `paused` is a BEP 21 partial seed's
        // regular announce.
        b"" | b"empty" | b"paused" => Ok(None),
        _ => Err(TrackerError::BadEvent),
    }
}

fn parse_key(field: &'static str, raw: &[u8]) -> Result<Option<u32>, TrackerError> {
    let bytes = value(field, raw)?;
    Ok(std::str::from_utf8(&bytes)
        .ok()
        .filter(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok()))
}

fn parse_ip(field: &'static str, raw: &[u8]) -> Result<IpAddr, TrackerError> {
    let bytes = value(field, raw)?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(TrackerError::BadIp)
}
