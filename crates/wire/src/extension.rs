//! BEP 10 extension handshake and BEP 9 `ut_metadata` messages: the payloads of
//! [`Message::Extended`](crate::Message::Extended).

use std::collections::BTreeMap;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use shoal_bencode::{Dict, Limits, Value};

use crate::error::WireError;

/// The size of a metadata piece (BEP 9): the info dictionary travels in 16 KiB pieces.
pub const METADATA_PIECE_SIZE: usize = 16 * 1024;

/// The largest info dictionary accepted by metadata exchange: 32 MiB.
pub const MAX_METADATA_SIZE: u64 = 32 << 20;

/// Bencode limits for extension payloads: small, shallow dictionaries.
const LIMITS: Limits = Limits {
    max_input: 1 << 20,
    max_depth: 4,
    max_values: 4096,
};

/// The BEP 10 extension handshake (extended message id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// `m`: the extensions the sender supports and the message id it wants for each; id 0
    /// means "disabled".
    pub extensions: BTreeMap<String, u8>,
    /// `p`: the sender's listening port.
    pub listen_port: Option<u16>,
    /// `v`: the sender's client name and version.
    pub client: Option<String>,
    /// `yourip`: the receiver's address as the sender sees it.
    pub your_ip: Option<IpAddr>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub request_queue: Option<u32>,
    /// `metadata_size` (BEP 9): the info dictionary's size in bytes.
    pub metadata_size: Option<u64>,
    /// `upload_only` (BEP 21): the sender is a seed or a partial seed.
    pub upload_only: bool,
}

impl ExtensionHandshake {
    /// Decodes a handshake payload. Unknown keys are ignored; known keys with unusable values
    /// (an id above 255, a negative port) are left out rather than failing the connection.
    ///
    /// # Errors
    /// [`WireError::BadExtension`] if the payload is not a bencoded dictionary.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let bad = WireError::BadExtension {
            what: "extension handshake",
        };
        let value = shoal_bencode::decode_with(payload, LIMITS).map_err(|_| bad.clone())?;
        let dict = value.as_dict().ok_or(bad)?;
        let int = |key: &str| dict.get(key.as_bytes()).and_then(Value::as_int);
        let extensions = dict
            .get(b"m")
            .and_then(Value::as_dict)
            .map(|m| {
                m.iter()
                    .filter_map(|(name, id)| {
                        let name = std::str::from_utf8(name).ok()?.to_owned();
                        Some((name, u8::try_from(id.as_int()?).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let your_ip = dict
            .get(b"yourip")
            .and_then(Value::as_bytes)
            .and_then(|b| match b.len() {
                4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                16 => <[u8; 16]>::try_from(b)
                    .ok()
                    .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
                _ => None,
            });
        Ok(Self {
            extensions,
            listen_port: int("p").and_then(|p| u16::try_from(p).ok()),
            client: dict.get(b"v").and_then(Value::as_str).map(str::to_owned),
            your_ip,
            request_queue: int("reqq").and_then(|n| u32::try_from(n).ok()),
            metadata_size: int("metadata_size").and_then(|n| u64::try_from(n).ok()),
            upload_only: int("upload_only").is_some_and(|n| n != 0),
        })
    }

    /// The bencoded payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        let m: Dict<'_> = self
            .extensions
            .iter()
            .map(|(name, id)| (name.as_bytes().to_vec(), Value::Int(i64::from(*id))))
            .collect();
        d.insert(b"m".to_vec(), Value::Dict(m));
        if let Some(port) = self.listen_port {
            d.insert(b"p".to_vec(), Value::Int(port.into()));
        }
        if let Some(client) = &self.client {
            d.insert(b"v".to_vec(), Value::from(client.clone()));
        }
        if let Some(ip) = self.your_ip {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            d.insert(b"yourip".to_vec(), Value::from(bytes));
        }
        if let Some(reqq) = self.request_queue {
            d.insert(b"reqq".to_vec(), Value::Int(reqq.into()));
        }
        if let Some(size) = self.metadata_size {
            d.insert(b"metadata_size".to_vec(), Value::Int(size as i64));
        }
        if self.upload_only {
            d.insert(b"upload_only".to_vec(), Value::Int(1));
        }
        shoal_bencode::encode(&Value::Dict(d))
    }
}

/// A BEP 9 `ut_metadata` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: asks for metadata piece `piece`.
    Request {
        /// The metadata piece.
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece` of an info dictionary of `total_size` bytes.
    Data {
        /// The metadata piece.
        piece: u32,
        /// The whole info dictionary's size.
        total_size: u64,
        /// The piece's bytes.
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send metadata piece `piece`.
    Reject {
        /// The metadata piece.
        piece: u32,
    },
}

impl<'a> MetadataMessage<'a> {
    /// Decodes a `ut_metadata` payload: a bencoded dictionary, followed by the piece's bytes for
    /// a data message.
    ///
    /// # Errors
    /// [`WireError::BadExtension`] for a malformed dictionary, a missing or out-of-range field,
    /// trailing bytes on a request or reject, or a data piece larger than 16 KiB;
    /// [`WireError::UnknownMetadataType`] for other message types.
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let bad = || WireError::BadExtension {
            what: "ut_metadata message",
        };
        let (value, end) = shoal_bencode::decode_prefix(payload, LIMITS).map_err(|_| bad())?;
        let dict = value.as_dict().ok_or_else(bad)?;
        let int = |key: &str| dict.get(key.as_bytes()).and_then(Value::as_int);
        let piece = int("piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(bad)?;
        let rest = &payload[end..];
        match int("msg_type").ok_or_else(bad)? {
            0 | 2 if !rest.is_empty() => Err(bad()),
            0 => Ok(Self::Request { piece }),
            2 => Ok(Self::Reject { piece }),
            1 => {
                let total_size = int("total_size")
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|&n| n <= MAX_METADATA_SIZE)
                    .ok_or_else(bad)?;
                if rest.len() > METADATA_PIECE_SIZE {
                    return Err(bad());
                }
                Ok(Self::Data {
                    piece,
                    total_size,
                    data: rest,
                })
            }
            other => Err(WireError::UnknownMetadataType(other)),
        }
    }

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut d = Dict::new();
        let (kind, piece) = match *self {
            Self::Request { piece } => (0, piece),
            Self::Data { piece, .. } => (1, piece),
            Self::Reject { piece } => (2, piece),
        };
        d.insert(b"msg_type".to_vec(), Value::Int(kind));
        d.insert(b"piece".to_vec(), Value::Int(piece.into()));
        if let Self::Data { total_size, .. } = *self {
            d.insert(b"total_size".to_vec(), Value::Int(total_size as i64));
        }
        Value::Dict(d).encode_into(out);
        if let Self::Data { data, .. } = *self {
            out.extend_from_slice(data);
        }
    }
}
