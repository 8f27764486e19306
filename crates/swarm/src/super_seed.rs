//! BEP 16 super-seeding: a lone origin seed hides that it has everything and offers each peer
//! one piece at a time, so each piece leaves the origin about once and peers trade the rest
//! among themselves.
//!
//! The seed announces `have none` (or nothing), then a single `have` per peer: the piece that
//! the fewest peers are known to have, then the one offered least often, ties broken at
//! random. A peer is offered a new piece when it announces the one it was offered (it finished
//! it), or when another peer announces that piece (it spread). A peer may still request any
//! piece it learns we have; the offer steers, it does not refuse.

use std::collections::BTreeMap;

use shoal_metainfo::Bitfield;

use crate::command::PeerKey;
use crate::rng::Rng;

/// Which piece each peer was offered, and how often each piece has been.
#[derive(Clone, Debug)]
pub(crate) struct SuperSeed {
    offered: BTreeMap<PeerKey, u32>,
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

    /// The piece offered to `key`, if any.
    pub(crate) fn offered(&self, key: PeerKey) -> Option<u32> {
        self.offered.get(&key).copied()
    }

    /// Chooses the next piece to offer `key`, which has `has`; `availability(p)` is how many
    /// peers are known to have `p`. `None` when the peer has every piece.
    pub(crate) fn offer(
        &mut self,
        key: PeerKey,
        has: &Bitfield,
        availability: impl Fn(u32) -> u32,
    ) -> Option<u32> {
        let mut best: Option<(u32, (u32, u32))> = None;
        let mut ties = 0usize;
        for piece in 0..self.times.len() as u32 {
            if has.contains(piece) {
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
        self.offered.insert(key, piece);
        Some(piece)
    }

    /// The peers other than `from` that were offered `piece`.
    pub(crate) fn offered_to_others(&self, piece: u32, from: PeerKey) -> Vec<PeerKey> {
        self.offered
            .iter()
            .filter(|&(&k, &p)| p == piece && k != from)
            .map(|(&k, _)| k)
            .collect()
    }

    /// `key` is gone.
    pub(crate) fn forget(&mut self, key: PeerKey) {
        self.offered.remove(&key);
    }
}
