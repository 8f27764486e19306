//! BEP 16 super-seeding: an origin seed hides that it has everything and offers each peer a
//! few pieces at a time, so each piece leaves the origin about once and peers trade the rest
//! among themselves.
//!
//! The seed announces `have none` (or nothing), then `have` messages: each peer is offered
//! pieces it lacks, those the fewest peers are known to have first, then those offered least
//! often, ties broken at random. Unlike BEP 16's one piece at a time, a peer holds a window of
//! offers of pieces never offered before, sized by the engine (enough to keep the link busy
//! over its round trip, see [`crate::Config::super_seed_window`]); when it announces an
//! offered piece, the window is topped up. Once every piece has been offered, a piece goes to a
//! second peer only when that peer has no offer left, one at a time, as in BEP 16: the seed's
//! upload goes to pieces nobody has for as long as there are any. A peer may still request any
//! piece it learns we have; offers steer, they do not refuse.

use std::collections::{BTreeMap, BTreeSet};

use shoal_metainfo::Bitfield;

use crate::command::PeerKey;
use crate::rng::Rng;

/// The pieces offered to each peer and not yet announced by it, and how often each piece has
/// been offered.
#[derive(Clone, Debug)]
pub(crate) struct SuperSeed {
    offered: BTreeMap<PeerKey, BTreeSet<u32>>,
    times: Vec<u32>,
    rng: Rng,
}

impl SuperSeed {
    /// Super-seeding for a torrent of `pieces` pieces.
    pub(crate) fn new(pieces: u32, seed: u64) -> Self {
        Self {
            offered: BTreeMap::new(),
            times: vec![0; pieces as usize],
            rng: Rng::new(seed),
        }
    }

    /// The pieces offered to `key` that it has not announced yet.
    pub(crate) fn outstanding(&self, key: PeerKey) -> usize {
        self.offered.get(&key).map_or(0, BTreeSet::len)
    }

    /// Chooses the next piece to offer `key`, which has `has`; `availability(p)` is how many
    /// peers are known to have `p`. Only pieces never offered to anyone unless `repeat`. `None`
    /// when there is no such piece that `key` lacks and was not offered.
    pub(crate) fn offer(
        &mut self,
        key: PeerKey,
        has: &Bitfield,
        availability: impl Fn(u32) -> u32,
        repeat: bool,
    ) -> Option<u32> {
        let offered = self.offered.entry(key).or_default();
        let mut best: Option<(u32, (u32, u32))> = None;
        let mut ties = 0usize;
        for piece in 0..self.times.len() as u32 {
            if has.contains(piece)
                || offered.contains(&piece)
                || (!repeat && self.times[piece as usize] > 0)
            {
                continue;
            }
            let rank = (availability(piece), self.times[piece as usize]);
            match best {
                Some((_, r)) if rank > r => {}
                Some((_, r)) if rank == r => {
                    // Reservoir sampling: each of the tied pieces is equally likely.
                    ties += 1;
                    if self.rng.below(ties) == 0 {
                        best = Some((piece, rank));
                    }
                }
                _ => {
                    best = Some((piece, rank));
                    ties = 1;
                }
            }
        }
        let (piece, _) = best?;
        self.times[piece as usize] += 1;
        offered.insert(piece);
        Some(piece)
    }

    /// `key` announced `piece`: it is no longer outstanding.
    pub(crate) fn announced(&mut self, key: PeerKey, piece: u32) {
        if let Some(offered) = self.offered.get_mut(&key) {
            offered.remove(&piece);
        }
    }

    /// `key` is gone.
    pub(crate) fn forget(&mut self, key: PeerKey) {
        self.offered.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pieces_go_to_one_peer_each_and_repeats_only_when_asked() {
        let mut s = SuperSeed::new(3, 7);
        let none = Bitfield::new(3);
        let (a, b) = (PeerKey(1), PeerKey(2));
        let mut to_a: Vec<u32> = (0..3)
            .filter_map(|_| s.offer(a, &none, |_| 0, false))
            .collect();
        to_a.sort_unstable();
        assert_eq!(to_a, [0, 1, 2], "every fresh piece, once");
        assert_eq!(
            s.offer(a, &none, |_| 0, true),
            None,
            "all offered to a already"
        );
        assert_eq!(s.outstanding(a), 3);
        // Every piece has been offered: b gets a repeat only when it may have one.
        assert_eq!(s.offer(b, &none, |_| 0, false), None);
        // The repeat is the piece fewest peers have: a announced piece 1, which the caller
        // counts as available.
        s.announced(a, 1);
        assert_eq!(s.outstanding(a), 2);
        let repeat = s.offer(b, &none, |p| u32::from(p == 1), true);
        assert!(matches!(repeat, Some(0 | 2)), "{repeat:?}");
        // A peer is never offered what it has.
        let mut has = Bitfield::new(3);
        for p in 0..3 {
            has.insert(p);
        }
        s.forget(b);
        assert_eq!(s.offer(b, &has, |_| 0, true), None);
    }
}
