//! Our peer id: `-SH0100-` (client and version, Azureus style) and 12 random characters.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A fresh peer id. Randomness comes from the standard library's per-process hash keys, which
/// the OS seeds; a peer id only needs to be unlikely to collide, not secret.
pub fn new_peer_id() -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = *b"-SH0100-000000000000";
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut bits = hasher.finish();
    let mut hasher2 = RandomState::new().build_hasher();
    hasher2.write_u64(bits);
    let mut more = hasher2.finish();
    for byte in &mut id[8..] {
        if bits == 0 {
            bits = more;
            more = 0;
        }
        *byte = ALPHABET[(bits % ALPHABET.len() as u64) as usize];
        bits /= ALPHABET.len() as u64;
    }
    id
}
