//! The announce response (BEP 3, 7, 23): the tracker's bencoded answer, or its refusal.
//!
//! Peers arrive in any of three forms, all read by [`AnnounceReply::parse`]:
//!
//! - `peers` as a byte string: compact IPv4 (BEP 23), 4 address bytes and 2 port bytes each;
//! - `peers6` as a byte string: compact IPv6 (BEP 7), 16 address bytes and 2 port bytes each;
//! - `peers` as a list of dictionaries (BEP 3): `ip` as text (IPv4 or IPv6), `port`, and
//!   `peer id`, which is ignored.
//!
//! [`AnnounceResponse::encode`] writes the compact forms or the list, as the client asked.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use shoal_bencode::{Dict, Value};

use crate::MAX_PEERS;
use crate::body::{self, key, top};
use crate::error::TrackerError;

/// A successful announce: when to come back, the swarm's size, and some of its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// `interval`: seconds the client should wait before its next regular announce. Required;
    /// 0 is passed through, so a client applies its own floor.
    pub interval: u32,
    /// `min interval`: seconds the client must wait before announcing again.
    pub min_interval: Option<u32>,
    /// `complete`: seeds in the swarm.
    pub complete: Option<u32>,
    /// `incomplete`: leechers in the swarm.
    pub incomplete: Option<u32>,
    /// Peers, from `peers` (either form) then `peers6`, in the order the tracker sent them.
    /// IPv6 flow information and scope ids are never sent, so they read as 0.
    pub peers: Vec<SocketAddr>,
    /// `warning message`: text for a person, read as lossy UTF-8.
    pub warning: Option<String>,
    /// `tracker id`: to send back as `trackerid` on the next announces.
    pub tracker_id: Option<Vec<u8>>,
}

/// A tracker's answer to an announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnounceReply {
    /// The tracker accepted the announce.
    Ok(AnnounceResponse),
    /// `failure reason`: the tracker refused the announce and says why (lossy UTF-8). Any other
    /// keys beside it are ignored.
    Failure(String),
}

impl AnnounceReply {
    /// Reads a tracker's response body.
    ///
    /// Only `interval` is required, and only when there is no `failure reason`; `peers` may be
    /// absent (no peers), as libtorrent allows. Unknown keys are ignored. The body must be
    /// canonical bencode (sorted keys, no trailing bytes), which opentracker and every tracker
    /// built on a bencode library write.
    ///
    /// # Errors
    /// [`TrackerError::BodyTooLarge`] above [`crate::MAX_BODY_LEN`];
    /// [`TrackerError::Bencode`]; [`TrackerError::WrongType`] for a body that is not a
    /// dictionary or a field of the wrong type; [`TrackerError::MissingField`] (`interval`,
    /// or `ip` or `port` of a peer dictionary); [`TrackerError::OutOfRange`];
    /// [`TrackerError::RaggedPeers`] for compact peers whose length is not a multiple of 6
    /// (`peers`) or 18 (`peers6`); [`TrackerError::TooManyPeers`] above [`MAX_PEERS`], checked
    /// before the list is built; [`TrackerError::BadPeerIp`] for a peer `ip` that is not an
    /// address (BEP 3 allows DNS names, which a sans-IO codec cannot resolve).
    pub fn parse(body: &[u8]) -> Result<Self, TrackerError> {
        let dict = body::decode(body)?;
        if let Some(reason) = body::failure(&dict)? {
            return Ok(Self::Failure(reason));
        }
        let interval = body::int(&dict, "interval", top)?;
        Ok(Self::Ok(AnnounceResponse {
            interval: body::required(interval, "interval", top)?,
            min_interval: body::int(&dict, "min interval", top)?,
            complete: body::int(&dict, "complete", top)?,
            incomplete: body::int(&dict, "incomplete", top)?,
            peers: peers(&dict)?,
            warning: body::text(&dict, "warning message", top)?,
            tracker_id: body::bytes(&dict, "tracker id", top)?.map(<[u8]>::to_vec),
        }))
    }

    /// The response body: [`AnnounceResponse::encode`], or `d14:failure reason...e`.
    pub fn encode(&self, compact: bool) -> Vec<u8> {
        match self {
            Self::Ok(response) => response.encode(compact),
            Self::Failure(reason) => body::encode_failure(reason),
        }
    }
}

impl AnnounceResponse {
    /// The response body, canonical bencode. With `compact`, IPv4 peers go in `peers` (always
    /// present, perhaps empty) and IPv6 peers in `peers6` (present when there are some), so a
    /// client reads the IPv4 peers first. Without, every peer is a dictionary of `ip` and
    /// `port` in `peers`, in order, without `peer id` (the response does not carry peer ids;
    /// clients treat this like a `no_peer_id` answer).
    ///
    /// A tracker should list far fewer peers than [`MAX_PEERS`]: the dictionary form of
    /// more than about 65,000 IPv6 peers is larger than [`crate::MAX_BODY_LEN`], and a client
    /// would refuse it.
    pub fn encode(&self, compact: bool) -> Vec<u8> {
        let mut d = Dict::new();
        let mut int = |name, n: Option<u32>| {
            if let Some(n) = n {
                d.insert(key(name), i64::from(n));
            }
        };
        int("complete", self.complete);
        int("incomplete", self.incomplete);
        int("interval", Some(self.interval));
        int("min interval", self.min_interval);
        if compact {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for peer in &self.peers {
                match peer {
                    SocketAddr::V4(a) => {
                        v4.extend_from_slice(&a.ip().octets());
                        v4.extend_from_slice(&a.port().to_be_bytes());
                    }
                    SocketAddr::V6(a) => {
                        v6.extend_from_slice(&a.ip().octets());
                        v6.extend_from_slice(&a.port().to_be_bytes());
                    }
                }
            }
            d.insert(key("peers"), v4);
            if !v6.is_empty() {
                d.insert(key("peers6"), v6);
            }
        } else {
            let list: Vec<Value<'_>> = self
                .peers
                .iter()
                .map(|peer| {
                    let mut p = Dict::new();
                    p.insert(key("ip"), peer.ip().to_string());
                    p.insert(key("port"), i64::from(peer.port()));
                    Value::Dict(p)
                })
                .collect();
            d.insert(key("peers"), list);
        }
        if let Some(id) = &self.tracker_id {
            d.insert(key("tracker id"), Value::bytes(id));
        }
        if let Some(warning) = &self.warning {
            d.insert(key("warning message"), Value::string(warning));
        }
        shoal_bencode::encode(&Value::Dict(d))
    }
}

/// The peers of a response: `peers` in either form, then `peers6`. Counted against
/// [`MAX_PEERS`] before the list is allocated.
fn peers(dict: &Dict<'_>) -> Result<Vec<SocketAddr>, TrackerError> {
    let v6 = body::bytes(dict, "peers6", top)?.unwrap_or_default();
    let v6_count = whole(v6, "peers6", 18)?;
    let v4 = dict.get(b"peers");
    let v4_count = match v4 {
        None => 0,
        Some(Value::Bytes(b)) => whole(b, "peers", 6)?,
        Some(Value::List(items)) => items.len(),
        Some(other) => return Err(body::wrong_type("peers", "byte string or list", other)),
    };
    let count = v4_count + v6_count;
    if count > MAX_PEERS {
        return Err(TrackerError::TooManyPeers {
            count,
            max: MAX_PEERS,
        });
    }
    let mut peers = Vec::with_capacity(count);
    match v4 {
        Some(Value::Bytes(b)) => peers.extend(b.chunks_exact(6).map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([c[4], c[5]])))
        })),
        Some(Value::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                peers.push(dict_peer(i, item)?);
            }
        }
        _ => {}
    }
    peers.extend(v6.chunks_exact(18).map(|c| {
        let mut ip = [0; 16];
        ip.copy_from_slice(&c[..16]);
        let port = u16::from_be_bytes([c[16], c[17]]);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
    }));
    Ok(peers)
}

/// The number of `unit`-byte entries in the compact string `bytes` under `field`.
fn whole(bytes: &[u8], field: &'static str, unit: usize) -> Result<usize, TrackerError> {
    if !bytes.len().is_multiple_of(unit) {
        return Err(TrackerError::RaggedPeers {
            field,
            len: bytes.len(),
            unit,
        });
    }
    Ok(bytes.len() / unit)
}

/// Peer `i` of a dictionary-form list.
fn dict_peer(i: usize, item: &Value<'_>) -> Result<SocketAddr, TrackerError> {
    let at = |k: &str| format!("peers[{i}].{k}");
    let peer = item
        .as_dict()
        .ok_or_else(|| body::wrong_type(format!("peers[{i}]"), "dictionary", item))?;
    let ip = body::required(body::bytes(peer, "ip", at)?, "ip", at)?;
    let ip: IpAddr = std::str::from_utf8(ip)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TrackerError::BadPeerIp { field: at("ip") })?;
    let port = body::required(body::int(peer, "port", at)?, "port", at)?;
    Ok(SocketAddr::new(ip, port))
}
