//! SHA-256 Merkle trees as BEP 52 defines them.
//!
//! Each file has its own tree. Leaves are the SHA-256 of each 16 KiB block (the last block of
//! a file may be shorter and is hashed as it is). The leaf layer is padded to a power of two
//! with all-zero *hashes* (not hashes of zero blocks); inner nodes hash the concatenation of
//! their two children. For a file larger than one piece, the *piece layer* holds the roots of
//! the piece-sized subtrees, and the file's `pieces root` is the tree over that layer, padded
//! with the root of an all-zero-leaf piece subtree.

use sha2::{Digest, Sha256};

use crate::geometry::BLOCK_SIZE;
use crate::hash::Sha256Hash;

/// The leaf hash of one block (at most 16 KiB; the last block of a file may be shorter).
pub fn block_hash(block: &[u8]) -> Sha256Hash {
    Sha256Hash(Sha256::digest(block).into())
}

/// The parent of two nodes.
pub fn hash_pair(left: &Sha256Hash, right: &Sha256Hash) -> Sha256Hash {
    let mut hasher = Sha256::new();
    hasher.update(left.0);
    hasher.update(right.0);
    Sha256Hash(hasher.finalize().into())
}

/// The root of a perfect subtree of `2^height` zero leaves; height 0 is the zero leaf itself.
pub fn pad_hash(height: u32) -> Sha256Hash {
    (0..height).fold(Sha256Hash::default(), |node, _| hash_pair(&node, &node))
}

/// The root of a tree `width` leaves wide whose first leaves are `leaves` and the rest `pad`.
///
/// `width` is rounded up to a power of two and to at least `leaves.len()`. An empty `leaves`
/// gives the root of a tree of pads.
pub fn root(leaves: &[Sha256Hash], width: usize, pad: Sha256Hash) -> Sha256Hash {
    let width = width.max(leaves.len()).max(1).next_power_of_two();
    let mut level = leaves.to_vec();
    let mut pad = pad;
    let mut width = width;
    while width > 1 {
        level = level
            .chunks(2)
            .map(|pair| hash_pair(&pair[0], pair.get(1).unwrap_or(&pad)))
            .collect();
        pad = hash_pair(&pad, &pad);
        width /= 2;
    }
    level.first().copied().unwrap_or(pad)
}

/// The leaf hashes of `data`, block by block.
pub fn leaves(data: &[u8]) -> Vec<Sha256Hash> {
    data.chunks(BLOCK_SIZE as usize).map(block_hash).collect()
}

/// The `pieces root` of a file no larger than one piece, from its bytes. `None` for an empty
/// file, which has no root.
pub fn small_file_root(data: &[u8]) -> Option<Sha256Hash> {
    (!data.is_empty()).then(|| {
        let leaves = leaves(data);
        root(&leaves, leaves.len(), Sha256Hash::default())
    })
}

/// The `pieces root` of a file from its piece layer, for a piece length of `blocks_per_piece`
/// blocks (a power of two).
pub fn root_from_piece_layer(layer: &[Sha256Hash], blocks_per_piece: u32) -> Sha256Hash {
    root(
        layer,
        layer.len(),
        pad_hash(blocks_per_piece.trailing_zeros()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_hashes_climb() {
        let zero = Sha256Hash::default();
        assert_eq!(pad_hash(0), zero);
        assert_eq!(pad_hash(1), hash_pair(&zero, &zero));
        assert_eq!(pad_hash(2), hash_pair(&pad_hash(1), &pad_hash(1)));
    }

    #[test]
    fn root_pads_on_the_right() {
        let a = block_hash(b"a");
        let b = block_hash(b"b");
        let c = block_hash(b"c");
        let z = Sha256Hash::default();
        assert_eq!(root(&[a], 1, z), a);
        assert_eq!(root(&[a, b], 2, z), hash_pair(&a, &b));
        assert_eq!(
            root(&[a, b, c], 3, z),
            hash_pair(&hash_pair(&a, &b), &hash_pair(&c, &z))
        );
        assert_eq!(
            root(&[a], 4, z),
            hash_pair(&hash_pair(&a, &z), &pad_hash(1))
        );
    }

    #[test]
    fn piece_layer_root_equals_the_flat_tree() {
        // 5 blocks, 2 blocks a piece: the flat tree over 8 leaves equals the tree over the
        // 3-piece layer padded with the pad of a 2-leaf subtree.
        let data: Vec<u8> = (0..5 * BLOCK_SIZE as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        let leaves = leaves(&data);
        let flat = root(&leaves, 8, Sha256Hash::default());
        let layer: Vec<_> = leaves
            .chunks(2)
            .map(|p| root(p, 2, Sha256Hash::default()))
            .collect();
        assert_eq!(root_from_piece_layer(&layer, 2), flat);
    }
}
