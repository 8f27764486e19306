//! A small seeded random number generator (SplitMix64). The caller passes the seed, so every
//! choice made with it is reproducible and the crate reads no OS randomness.

/// SplitMix64: fast, any seed (0 included) is fine, and statistically good enough for
/// picking which peers to hand out.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`, or 0 when `n` is 0. The modulo bias is below 2^-40 for the table
    /// sizes used here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(0) | Err(_) => 0,
            // The remainder is below `n`, which came from a `usize`.
            Ok(n) => usize::try_from(self.next_u64() % n).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = SplitMix64::new(0);
        let mut b = SplitMix64::new(0);
        let xs: Vec<usize> = (0..100).map(|_| a.below(7)).collect();
        let ys: Vec<usize> = (0..100).map(|_| b.below(7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 7));
        assert!(
            (0..7).all(|v| xs.contains(&v)),
            "every value comes up: {xs:?}"
        );
        assert_eq!(a.below(0), 0);
    }
}
