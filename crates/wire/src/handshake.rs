//! The handshake: `\x13BitTorrent protocol`, 8 reserved bytes, info-hash, peer id (68 bytes).

use crate::error::WireError;

/// The protocol string, with its length byte.
const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";

/// The handshake's length.
pub const HANDSHAKE_LEN: usize = 68;

/// The 8 reserved bytes: capability bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// BEP 10: byte 5, bit 0x10.
    const EXTENSION: (usize, u8) = (5, 0x10);
    /// BEP 6: byte 7, bit 0x04.
    const FAST: (usize, u8) = (7, 0x04);
    /// BEP 52: byte 7, bit 0x10 ("v2 upgrade": the peer also speaks v2 for this torrent).
    const V2: (usize, u8) = (7, 0x10);

    /// What Shoal sends: extension protocol and fast extension, plus the v2 bit when the
    /// torrent has v2 metadata.
    pub fn shoal(v2: bool) -> Self {
        let mut r = Self::default();
        r.set(Self::EXTENSION);
        r.set(Self::FAST);
        if v2 {
            r.set(Self::V2);
        }
        r
    }

    fn set(&mut self, (byte, bit): (usize, u8)) {
        self.0[byte] |= bit;
    }

    fn has(self, (byte, bit): (usize, u8)) -> bool {
        self.0[byte] & bit != 0
    }

    /// Returns true if and only if the peer speaks the BEP 10 extension protocol.
    pub fn extension_protocol(self) -> bool {
        self.has(Self::EXTENSION)
    }

    /// Returns true if and only if the peer speaks the BEP 6 fast extension.
    pub fn fast(self) -> bool {
        self.has(Self::FAST)
    }

    /// Returns true if and only if the peer can use v2 (BEP 52) for this torrent.
    pub fn v2(self) -> bool {
        self.has(Self::V2)
    }
}

/// A decoded handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Capability bits.
    pub reserved: Reserved,
    /// The torrent: the v1 info-hash, or the v2 info-hash truncated to 20 bytes.
    pub info_hash: [u8; 20],
    /// The peer's id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Appends the 68-byte encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(&self.reserved.0);
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.peer_id);
    }

    /// Decodes a handshake from the start of `buf`. `Ok(None)` means more bytes are needed.
    /// The protocol string is checked as soon as it arrives, so a non-BitTorrent peer is
    /// refused without waiting for 68 bytes.
    ///
    /// # Errors
    /// [`WireError::NotBitTorrent`].
    pub fn decode(buf: &[u8]) -> Result<Option<Self>, WireError> {
        let seen = buf.len().min(PROTOCOL.len());
        if buf[..seen] != PROTOCOL[..seen] {
            return Err(WireError::NotBitTorrent);
        }
        let Some(bytes) = buf.get(..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let mut handshake = Self {
            reserved: Reserved::default(),
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        handshake.reserved.0.copy_from_slice(&bytes[20..28]);
        handshake.info_hash.copy_from_slice(&bytes[28..48]);
        handshake.peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Some(handshake))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let hs = Handshake {
            reserved: Reserved::shoal(true),
            info_hash: [7; 20],
            peer_id: *b"-SH0100-abcdefghijkl",
        };
        let mut out = Vec::new();
        hs.encode(&mut out);
        assert_eq!(out.len(), HANDSHAKE_LEN);
        assert_eq!(Handshake::decode(&out), Ok(Some(hs)));
        assert_eq!(Handshake::decode(&out[..67]), Ok(None));
        assert!(hs.reserved.extension_protocol() && hs.reserved.fast() && hs.reserved.v2());
        assert!(!Reserved::shoal(false).v2());
        // libtorrent 2 sends these bits: extension (0x10 in byte 5), fast and v2 (0x14 in byte 7), DHT (0x01).
        let lt = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x15]);
        assert!(lt.extension_protocol() && lt.fast() && lt.v2());
    }

    #[test]
    fn refuses_other_protocols_early() {
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(WireError::NotBitTorrent)
        );
        assert_eq!(Handshake::decode(b"\x13BitTorrent"), Ok(None));
        assert_eq!(Handshake::decode(b""), Ok(None));
    }
}
