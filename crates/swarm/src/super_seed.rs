//! BEP 16 super-seeding: an origin seed hides that it has everything and offers each peer a
//! few pieces at a time, so each piece leaves the origin about once and peers trade the rest
//! among themselves.
//!
//! The seed announces `have none` (or nothing), then `have` messages: each peer is offered
//! pieces it lacks, those the fewest peers are known to have first, then those offered least
//! often, ties broken at random. Unlike BEP 16's one piece at a time, a peer may hold a window
//! of offers of pieces never offered before, and the offers outstanding in all are capped, both
//! sized by the engine from measured rates (see [`crate::Config::super_seed_window`]): pieces
//! leave the seed at full speed, a few at a time, and peers without an offer are served first;
//! when a peer announces an offered piece, offers are handed out again. Once every piece has been offered, a piece goes to a
//! second peer only when that peer has no offer left, one at a time, as in BEP 16, and only when
//! nobody still holds an offer of it: the seed's upload goes to pieces nobody has for as long as
//! there are any, and a piece is never on its way out of the seed twice. A peer may still request any
//! piece it learns we have; offers steer, they do not refuse. A peer's last piece is offered together
//! with the one before it (see [`SuperSeed::offer_the_last`]).

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
    /// Per piece: the peers holding it as an outstanding offer.
    holders: Vec<u32>,
    /// Offers outstanding in all.
    total: usize,
    /// The peer offered a piece last: the next round starts after it.
    cursor: PeerKey,
    rng: Rng,
}

impl SuperSeed {
    /// Super-seeding for a torrent of `pieces` pieces.
    pub(crate) fn new(pieces: u32, seed: u64) -> Self {
        Self {
            offered: BTreeMap::new(),
            times: vec![0; pieces as usize],
            holders: vec![0; pieces as usize],
            total: 0,
            cursor: PeerKey(0),
            rng: Rng::new(seed),
        }
    }

    /// The pieces offered to `key` that it has not announced yet.
    pub(crate) fn outstanding(&self, key: PeerKey) -> usize {
        self.offered.get(&key).map_or(0, BTreeSet::len)
    }

    /// Offers outstanding over all peers.
    pub(crate) fn total_outstanding(&self) -> usize {
        self.total
    }

    /// The peer last offered a piece.
    pub(crate) fn cursor(&self) -> PeerKey {
        self.cursor
    }

    /// Chooses the next piece to offer `key`, which has `has`; `availability(p)` is how many
    /// peers are known to have `p`. Only pieces never offered to anyone; with `repeat`, also
    /// pieces offered before whose every offer was announced or abandoned (a piece still on its
    /// way to someone is not sent twice). `None` when there is no such piece that `key` lacks.
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
                || (self.times[piece as usize] > 0 && (!repeat || self.holders[piece as usize] > 0))
            {
                continue;
            }
            let available = availability(piece);
            // A repeat only of a piece no peer of ours has: the rest spread peer to peer.
            if self.times[piece as usize] > 0 && available > 0 {
                continue;
            }
            let rank = (available, self.times[piece as usize]);
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
        self.record(key, piece);
        Some(piece)
    }

    /// The one piece `key` lacks and has not been offered, when there is exactly one: offered
    /// now, whoever else holds an offer of it, and returned. A peer that learns from a `have`
    /// that the seed has every piece while it is not interested in the seed (as it is for a
    /// moment after finishing each offer) may close the connection before the piece makes it
    /// interested (libtorrent 2.0 does), so the last piece goes out right behind the offer
    /// before it, which makes the peer interested first.
    pub(crate) fn offer_the_last(&mut self, key: PeerKey, has: &Bitfield) -> Option<u32> {
        let offered = self.offered.get(&key)?;
        let pieces = self.times.len() as u32;
        if (has.count() as usize).saturating_add(offered.len()) + 1 != pieces as usize {
            return None;
        }
        let last = (0..pieces).find(|p| !has.contains(*p) && !offered.contains(p))?;
        self.record(key, last);
        Some(last)
    }

    fn record(&mut self, key: PeerKey, piece: u32) {
        self.times[piece as usize] += 1;
        self.holders[piece as usize] += 1;
        self.total += 1;
        self.cursor = key;
        self.offered.entry(key).or_default().insert(piece);
    }

    /// `key` announced `piece`: it is no longer outstanding.
    pub(crate) fn announced(&mut self, key: PeerKey, piece: u32) {
        if let Some(offered) = self.offered.get_mut(&key)
            && offered.remove(&piece)
        {
            self.holders[piece as usize] -= 1;
            self.total -= 1;
        }
    }

    /// `key` is gone.
    pub(crate) fn forget(&mut self, key: PeerKey) {
        for piece in self.offered.remove(&key).unwrap_or_default() {
            self.holders[piece as usize] -= 1;
            self.total -= 1;
        }
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
        // Pieces still on their way to a are not sent twice.
        assert_eq!(s.offer(b, &none, |_| 0, true), None);
        // a announced piece 1, then left with 0 and 2 unannounced: 0 and 2, which no peer has,
        // may go to b now; 1 spreads from peer to peer, not again from the seed.
        s.announced(a, 1);
        assert_eq!(s.outstanding(a), 2);
        s.forget(a);
        let availability = |p| u32::from(p == 1);
        let first = s.offer(b, &none, availability, true);
        let second = s.offer(b, &none, availability, true);
        let mut rare = [first, second];
        rare.sort_unstable();
        assert_eq!(rare, [Some(0), Some(2)]);
        assert_eq!(s.offer(b, &none, availability, true), None);
        assert_eq!(s.total_outstanding(), 2);
        // A peer is never offered what it has.
        let mut has = Bitfield::new(3);
        for p in 0..3 {
            has.insert(p);
        }
        s.forget(b);
        assert_eq!(s.offer(b, &has, |_| 0, true), None);
    }

    #[test]
    fn the_last_piece_a_peer_lacks_goes_out_with_the_one_before() {
        let mut s = SuperSeed::new(5, 3);
        let a = PeerKey(1);
        let mut has = Bitfield::new(5);
        has.insert(0);
        has.insert(1);
        assert_eq!(s.offer_the_last(a, &has), None, "three pieces left");
        let first = s.offer(a, &has, |_| 0, false).unwrap();
        assert_eq!(s.offer_the_last(a, &has), None, "two pieces left untold");
        let second = s.offer(a, &has, |_| 0, false).unwrap();
        // One left: it follows at once, even though it is offered to nobody else yet.
        let last = s.offer_the_last(a, &has).unwrap();
        let mut all = [first, second, last];
        all.sort_unstable();
        assert_eq!(all, [2, 3, 4]);
        assert_eq!(s.outstanding(a), 3);
        assert_eq!(s.offer_the_last(a, &has), None, "nothing left to tell");
    }
}
