//! Peer messages after the handshake: `<length: u32 BE><id: u8><payload>`, or a bare zero
//! length for keep-alive.

use shoal_metainfo::Sha256Hash;

use crate::error::WireError;

/// A BEP 52 request for a run of hashes from one file's Merkle tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// The file's Merkle root.
    pub pieces_root: Sha256Hash,
    /// The layer the hashes come from: 0 is the 16 KiB block layer.
    pub base_layer: u32,
    /// The first hash's index in that layer.
    pub index: u32,
    /// How many hashes.
    pub length: u32,
    /// How many layers of uncle hashes to add, so the receiver can check them against the root.
    pub proof_layers: u32,
}

impl HashRequest {
    const LEN: usize = 32 + 16;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pieces_root.0);
        for n in [self.base_layer, self.index, self.length, self.proof_layers] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn decode(p: &[u8]) -> Option<Self> {
        Some(Self {
            pieces_root: Sha256Hash::from_slice(p.get(..32)?)?,
            base_layer: be_u32(p, 32)?,
            index: be_u32(p, 36)?,
            length: be_u32(p, 40)?,
            proof_layers: be_u32(p, 44)?,
        })
    }
}

/// One peer message. Payloads borrow from the decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Length 0: nothing, keeps the connection open.
    KeepAlive,
    /// 0: the sender will not serve the receiver's requests.
    Choke,
    /// 1: the sender will serve the receiver's requests.
    Unchoke,
    /// 2: the sender wants pieces the receiver has.
    Interested,
    /// 3: the sender wants nothing from the receiver.
    NotInterested,
    /// 4: the sender now has a piece.
    Have {
        /// The piece.
        piece: u32,
    },
    /// 5: the pieces the sender has, one bit each, high bit first; only right after the
    /// handshake.
    Bitfield(&'a [u8]),
    /// 6: a block request.
    Request {
        /// The piece.
        piece: u32,
        /// Byte offset in the piece.
        offset: u32,
        /// Byte count.
        len: u32,
    },
    /// 7: a block.
    Piece {
        /// The piece.
        piece: u32,
        /// Byte offset in the piece.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// 8: withdraws a request.
    Cancel {
        /// The piece.
        piece: u32,
        /// Byte offset in the piece.
        offset: u32,
        /// Byte count.
        len: u32,
    },
    /// 9: the sender's DHT port (BEP 5).
    Port(u16),
    /// 0x0D, BEP 6: a piece the receiver might download first.
    Suggest {
        /// The piece.
        piece: u32,
    },
    /// 0x0E, BEP 6: the sender has every piece.
    HaveAll,
    /// 0x0F, BEP 6: the sender has no piece.
    HaveNone,
    /// 0x10, BEP 6: the sender will not serve this request.
    Reject {
        /// The piece.
        piece: u32,
        /// Byte offset in the piece.
        offset: u32,
        /// Byte count.
        len: u32,
    },
    /// 0x11, BEP 6: the receiver may request this piece even while choked.
    AllowedFast {
        /// The piece.
        piece: u32,
    },
    /// 20, BEP 10: an extension message; id 0 is the extension handshake.
    Extended {
        /// The extension's id, as the receiver assigned it (0 = handshake).
        id: u8,
        /// The extension's payload.
        payload: &'a [u8],
    },
    /// 21, BEP 52: asks for hashes.
    HashRequest(HashRequest),
    /// 22, BEP 52: hashes (and their proof), `32 * n` bytes.
    Hashes {
        /// What they answer.
        request: HashRequest,
        /// The hashes, concatenated.
        hashes: &'a [u8],
    },
    /// 23, BEP 52: the sender will not answer this hash request.
    HashReject(HashRequest),
    /// An id Shoal does not know. BEP 3 says to ignore such messages, so this is not an error.
    Unknown {
        /// The id.
        id: u8,
        /// The payload.
        payload: &'a [u8],
    },
}

fn be_u32(p: &[u8], at: usize) -> Option<u32> {
    p.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}

impl<'a> Message<'a> {
    /// Decodes one message from its frame (the bytes after the length prefix; empty for
    /// keep-alive).
    ///
    /// # Errors
    /// [`WireError::BadLength`] when the payload does not fit the id,
    /// [`WireError::RaggedHashes`] for a `hashes` message that is not whole hashes.
    pub fn decode(frame: &'a [u8]) -> Result<Self, WireError> {
        let Some((&id, p)) = frame.split_first() else {
            return Ok(Message::KeepAlive);
        };
        let bad = || WireError::BadLength { id, len: p.len() };
        let exact = |n: usize| if p.len() == n { Ok(()) } else { Err(bad()) };
        let triple = || -> Result<(u32, u32, u32), WireError> {
            exact(12)?;
            Ok((
                be_u32(p, 0).ok_or_else(bad)?,
                be_u32(p, 4).ok_or_else(bad)?,
                be_u32(p, 8).ok_or_else(bad)?,
            ))
        };
        let piece = || -> Result<u32, WireError> {
            exact(4)?;
            be_u32(p, 0).ok_or_else(bad)
        };
        Ok(match id {
            0 => exact(0).map(|()| Message::Choke)?,
            1 => exact(0).map(|()| Message::Unchoke)?,
            2 => exact(0).map(|()| Message::Interested)?,
            3 => exact(0).map(|()| Message::NotInterested)?,
            4 => Message::Have { piece: piece()? },
            5 => Message::Bitfield(p),
            6 => triple().map(|(piece, offset, len)| Message::Request { piece, offset, len })?,
            7 => {
                let (Some(piece), Some(offset)) = (be_u32(p, 0), be_u32(p, 4)) else {
                    return Err(bad());
                };
                Message::Piece {
                    piece,
                    offset,
                    data: &p[8..],
                }
            }
            8 => triple().map(|(piece, offset, len)| Message::Cancel { piece, offset, len })?,
            9 => {
                exact(2)?;
                Message::Port(u16::from_be_bytes([p[0], p[1]]))
            }
            0x0D => Message::Suggest { piece: piece()? },
            0x0E => exact(0).map(|()| Message::HaveAll)?,
            0x0F => exact(0).map(|()| Message::HaveNone)?,
            0x10 => triple().map(|(piece, offset, len)| Message::Reject { piece, offset, len })?,
            0x11 => Message::AllowedFast { piece: piece()? },
            20 => {
                let (&ext, payload) = p.split_first().ok_or_else(bad)?;
                Message::Extended { id: ext, payload }
            }
            21 | 23 => {
                exact(HashRequest::LEN)?;
                let request = HashRequest::decode(p).ok_or_else(bad)?;
                if id == 21 {
                    Message::HashRequest(request)
                } else {
                    Message::HashReject(request)
                }
            }
            22 => {
                let request = HashRequest::decode(p).ok_or_else(bad)?;
                let hashes = &p[HashRequest::LEN..];
                if hashes.len() % 32 != 0 {
                    return Err(WireError::RaggedHashes { len: hashes.len() });
                }
                Message::Hashes { request, hashes }
            }
            _ => Message::Unknown { id, payload: p },
        })
    }

    /// Appends the message, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let triple = |out: &mut Vec<u8>, id: u8, a: u32, b: u32, c: u32| {
            out.push(id);
            for n in [a, b, c] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        };
        match *self {
            Message::KeepAlive => {}
            Message::Choke => out.push(0),
            Message::Unchoke => out.push(1),
            Message::Interested => out.push(2),
            Message::NotInterested => out.push(3),
            Message::Have { piece } => {
                out.push(4);
                out.extend_from_slice(&piece.to_be_bytes());
            }
            Message::Bitfield(bits) => {
                out.push(5);
                out.extend_from_slice(bits);
            }
            Message::Request { piece, offset, len } => triple(out, 6, piece, offset, len),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                out.push(7);
                out.extend_from_slice(&piece.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Cancel { piece, offset, len } => triple(out, 8, piece, offset, len),
            Message::Port(port) => {
                out.push(9);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Message::Suggest { piece } => {
                out.push(0x0D);
                out.extend_from_slice(&piece.to_be_bytes());
            }
            Message::HaveAll => out.push(0x0E),
            Message::HaveNone => out.push(0x0F),
            Message::Reject { piece, offset, len } => triple(out, 0x10, piece, offset, len),
            Message::AllowedFast { piece } => {
                out.push(0x11);
                out.extend_from_slice(&piece.to_be_bytes());
            }
            Message::Extended { id, payload } => {
                out.push(20);
                out.push(id);
                out.extend_from_slice(payload);
            }
            Message::HashRequest(request) => {
                out.push(21);
                request.encode(out);
            }
            Message::Hashes { request, hashes } => {
                out.push(22);
                request.encode(out);
                out.extend_from_slice(hashes);
            }
            Message::HashReject(request) => {
                out.push(23);
                request.encode(out);
            }
            Message::Unknown { id, payload } => {
                out.push(id);
                out.extend_from_slice(payload);
            }
        }
        // A frame longer than u32::MAX cannot be built from in-memory slices we would send.
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}
