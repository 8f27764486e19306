//! A set of pieces, one bit each, in the wire's order (BEP 3: the high bit of the first byte is
//! piece 0). Used for what we have, what a peer has, and what is verified on disk.

/// Why a bitfield from a peer or a resume file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BitfieldError {
    /// The byte count does not match the piece count.
    #[error("bitfield of {got} bytes for {pieces} pieces (expected {expected} bytes)")]
    WrongLength {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        expected: usize,
        /// The piece count.
        pieces: u32,
    },
    /// Bits set past the last piece.
    #[error("bitfield has bits set past the last piece")]
    SpareBitsSet,
}

/// A fixed-size set of piece indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// The full set over `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.insert(i);
        }
        b
    }

    /// Reads a wire bitfield for `len` pieces: exactly `ceil(len / 8)` bytes, spare bits zero.
    ///
    /// # Errors
    /// [`BitfieldError::WrongLength`] or [`BitfieldError::SpareBitsSet`].
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
                pieces: len,
            });
        }
        let spare = (expected * 8) as u32 - len;
        if spare > 0 && bytes[expected - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(BitfieldError::SpareBitsSet);
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Returns true if and only if the set ranges over no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Returns true if and only if every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Returns true if and only if `piece` is in the set (false past the end).
    pub fn contains(&self, piece: u32) -> bool {
        piece < self.len && self.bytes[(piece / 8) as usize] & (0x80 >> (piece % 8)) != 0
    }

    /// Adds `piece`; returns true if and only if it was not there. Ignores pieces past the end.
    pub fn insert(&mut self, piece: u32) -> bool {
        if piece >= self.len || self.contains(piece) {
            return false;
        }
        self.bytes[(piece / 8) as usize] |= 0x80 >> (piece % 8);
        self.ones += 1;
        true
    }

    /// Removes `piece`; returns true if and only if it was there.
    pub fn remove(&mut self, piece: u32) -> bool {
        if !self.contains(piece) {
            return false;
        }
        self.bytes[(piece / 8) as usize] &= !(0x80 >> (piece % 8));
        self.ones -= 1;
        true
    }

    /// The pieces in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_counts() {
        let mut b = Bitfield::new(10);
        assert!(b.insert(0) && b.insert(9) && !b.insert(9) && !b.insert(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(b.iter().collect::<Vec<_>>(), [0, 9]);
        assert_eq!(Bitfield::from_bytes(b.as_bytes(), 10), Ok(b.clone()));
        assert!(b.remove(0) && !b.remove(0));
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xFF, 0xC0]);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Bitfield::from_bytes(&[0xFF], 10),
            Err(BitfieldError::WrongLength {
                got: 1,
                expected: 2,
                pieces: 10
            })
        );
        assert_eq!(
            Bitfield::from_bytes(&[0xFF, 0xE0], 10),
            Err(BitfieldError::SpareBitsSet)
        );
        assert!(Bitfield::from_bytes(&[0xFF], 8).is_ok());
        assert!(Bitfield::from_bytes(&[], 0).is_ok());
    }
}
