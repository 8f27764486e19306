//! One torrent's peers: seeds and leechers in two dense vectors with an index by peer id, so
//! an announce updates its peer in O(log n) and picks `k` peers in O(k), however large the
//! swarm.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;

use crate::rng::SplitMix64;

/// One peer, kept small (48 bytes): it is multiplied by every peer the tracker holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Peer {
    /// Its peer id.
    pub(super) peer_id: [u8; 20],
    /// The address it is listed under.
    pub(super) ip: IpAddr,
    /// The port it listens on.
    pub(super) port: u16,
    /// When it last announced, in Unix milliseconds.
    pub(super) last_seen_ms: u64,
}

impl Peer {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// Where a peer sits: which vector, and its position there. Positions are below
/// [`MAX_SWARM_PEERS`], so they fit `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    seed: bool,
    index: u32,
}

/// The most peers one swarm can hold, whatever the configuration says: positions are `u32`.
pub(super) const MAX_SWARM_PEERS: usize = u32::MAX as usize;

/// The peers of one torrent. Invariant: `index` maps every peer's id to its slot, and nothing
/// else.
#[derive(Debug, Default)]
pub(super) struct Swarm {
    seeds: Vec<Peer>,
    leechers: Vec<Peer>,
    index: BTreeMap<[u8; 20], Slot>,
    /// Completed downloads reported (`event=completed`).
    pub(super) downloaded: u32,
}

/// What an announce did to a swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upsert {
    /// A new peer joined, at this slot.
    Joined(Slot),
    /// A known peer was updated; it now sits at this slot.
    Updated(Slot),
    /// The swarm is full and the peer is new: nothing changed.
    Full,
}

impl Swarm {
    /// The number of peers.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Returns true if and only if the swarm has no peers.
    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The number of seeds.
    pub(super) fn seeds(&self) -> usize {
        self.seeds.len()
    }

    /// The number of leechers.
    pub(super) fn leechers(&self) -> usize {
        self.leechers.len()
    }

    /// Adds the peer `peer.peer_id` or updates it (address, progress, time), unless it is new
    /// and the swarm already holds `cap` peers.
    pub(super) fn upsert(&mut self, peer: Peer, seed: bool, cap: usize) -> Upsert {
        match self.index.get(&peer.peer_id).copied() {
            Some(slot) if slot.seed == seed => {
                self.list_mut(seed)[slot.index as usize] = peer;
                Upsert::Updated(slot)
            }
            Some(slot) => {
                // Finished (or, rarely, lost data): move it to the other vector.
                self.take(slot);
                Upsert::Updated(self.push(peer, seed))
            }
            None if self.len() >= cap.min(MAX_SWARM_PEERS) => Upsert::Full,
            None => Upsert::Joined(self.push(peer, seed)),
        }
    }

    /// Removes the peer `peer_id`; returns true if and only if it was there.
    pub(super) fn remove(&mut self, peer_id: &[u8; 20]) -> bool {
        match self.index.get(peer_id).copied() {
            Some(slot) => {
                self.take(slot);
                true
            }
            None => false,
        }
    }

    /// Removes every peer last seen before `cutoff_ms`; returns how many.
    pub(super) fn expire(&mut self, cutoff_ms: u64) -> usize {
        let mut removed = 0;
        for seed in [true, false] {
            let mut i = 0;
            while i < self.list(seed).len() {
                if self.list(seed)[i].last_seen_ms < cutoff_ms {
                    // The last peer moves into `i`: look at `i` again.
                    self.take(Slot {
                        seed,
                        index: i as u32,
                    });
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        }
        removed
    }

    /// Every peer with whether it is a seed: seeds first.
    pub(super) fn peers(&self) -> impl Iterator<Item = (&Peer, bool)> {
        let seeds = self.seeds.iter().map(|p| (p, true));
        seeds.chain(self.leechers.iter().map(|p| (p, false)))
    }

    /// Up to `k` peer addresses for the peer at `requester`, chosen at random: never the
    /// requester or another entry with its address, and only leechers for a seed (seeds have
    /// nothing to give each other).
    ///
    /// The candidates (leechers for a seed; seeds then leechers otherwise) are visited from a
    /// random start with a random stride coprime to their count, which visits each at most
    /// once, so the work is O(k) and needs no scratch memory.
    pub(super) fn pick(&self, requester: Slot, k: usize, rng: &mut SplitMix64) -> Vec<SocketAddr> {
        let from_seeds = if requester.seed { 0 } else { self.seeds.len() };
        let n = from_seeds + self.leechers.len();
        let mut out = Vec::with_capacity(k.min(n));
        if n == 0 || k == 0 {
            return out;
        }
        let me = &self.list(requester.seed)[requester.index as usize];
        let my_position = (!requester.seed).then_some(from_seeds + requester.index as usize);
        let stride = coprime_stride(n, rng);
        let mut position = rng.below(n);
        for _ in 0..n {
            if out.len() == k {
                break;
            }
            if Some(position) != my_position {
                let peer = if position < from_seeds {
                    &self.seeds[position]
                } else {
                    &self.leechers[position - from_seeds]
                };
                if (peer.ip, peer.port) != (me.ip, me.port) {
                    out.push(peer.addr());
                }
            }
            position = (position + stride) % n;
        }
        out
    }

    fn list(&self, seed: bool) -> &Vec<Peer> {
        if seed { &self.seeds } else { &self.leechers }
    }

    fn list_mut(&mut self, seed: bool) -> &mut Vec<Peer> {
        if seed {
            &mut self.seeds
        } else {
            &mut self.leechers
        }
    }

    /// Appends `peer` (which is not in the swarm) and indexes it.
    fn push(&mut self, peer: Peer, seed: bool) -> Slot {
        let list = self.list_mut(seed);
        // Below MAX_SWARM_PEERS (checked by `upsert`), so it fits u32.
        let slot = Slot {
            seed,
            index: list.len() as u32,
        };
        let id = peer.peer_id;
        list.push(peer);
        self.index.insert(id, slot);
        slot
    }

    /// Removes the peer at `slot` (which is occupied) by moving the last peer of its vector
    /// into its place, and fixes the index.
    fn take(&mut self, slot: Slot) -> Peer {
        let list = self.list_mut(slot.seed);
        let peer = list.swap_remove(slot.index as usize);
        let moved = list.get(slot.index as usize).map(|p| p.peer_id);
        self.index.remove(&peer.peer_id);
        if let Some(moved) = moved
            && let Some(moved_slot) = self.index.get_mut(&moved)
        {
            *moved_slot = slot;
        }
        peer
    }

    /// Panics if the index and the vectors disagree.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.index.len(), self.seeds.len() + self.leechers.len());
        for (seed, list) in [(true, &self.seeds), (false, &self.leechers)] {
            for (i, peer) in list.iter().enumerate() {
                let slot = Slot {
                    seed,
                    index: i as u32,
                };
                assert_eq!(self.index.get(&peer.peer_id), Some(&slot));
            }
        }
    }
}

/// A step in `1..n` coprime to `n` (1 when `n` is 1 or 2), chosen at random.
fn coprime_stride(n: usize, rng: &mut SplitMix64) -> usize {
    if n <= 2 {
        return 1;
    }
    // About 60% of numbers are coprime to a given n, so this walk is short; it ends at 1.
    let mut stride = 1 + rng.below(n - 1);
    while gcd(stride, n) != 1 {
        stride -= 1;
    }
    stride
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;
    use std::collections::BTreeSet;

    use super::*;

    fn peer(n: u8, last_seen_ms: u64) -> Peer {
        Peer {
            peer_id: [n; 20],
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
            port: 6881,
            last_seen_ms,
        }
    }

    fn slot_of(swarm: &Swarm, n: u8) -> Slot {
        swarm.index[&[n; 20]]
    }

    #[test]
    fn moves_between_seeds_and_leechers() {
        let mut s = Swarm::default();
        for n in 0..5 {
            assert!(matches!(s.upsert(peer(n, 0), false, 10), Upsert::Joined(_)));
        }
        assert!(matches!(
            s.upsert(peer(1, 5), true, 10),
            Upsert::Updated(Slot { seed: true, .. })
        ));
        s.check_invariants();
        assert_eq!((s.seeds(), s.leechers()), (1, 4));
        assert!(s.remove(&[3; 20]));
        assert!(!s.remove(&[3; 20]));
        s.check_invariants();
        assert_eq!(s.upsert(peer(9, 0), false, 4), Upsert::Full);
        assert!(matches!(s.upsert(peer(0, 1), false, 4), Upsert::Updated(_)));
        assert_eq!(s.expire(1), 2, "peers 2 and 4 were last seen at 0");
        s.check_invariants();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn pick_visits_each_candidate_once_and_skips_the_requester() {
        let mut s = Swarm::default();
        for n in 0..40 {
            s.upsert(peer(n, 0), n % 3 == 0, 100);
        }
        for seed in 0..50 {
            let mut rng = SplitMix64::new(seed);
            let me = slot_of(&s, 7); // a leecher
            let all = s.pick(me, 1000, &mut rng);
            assert_eq!(all.len(), 39);
            let distinct: BTreeSet<_> = all.iter().collect();
            assert_eq!(distinct.len(), 39);
            let some = s.pick(me, 5, &mut rng);
            assert_eq!(some.len(), 5);
            // A seed gets only leechers.
            let seed_slot = slot_of(&s, 0);
            let for_seed = s.pick(seed_slot, 1000, &mut rng);
            assert_eq!(for_seed.len(), s.leechers());
        }
    }

    #[test]
    fn strides_are_coprime() {
        let mut rng = SplitMix64::new(1);
        for n in 1..200 {
            let stride = coprime_stride(n, &mut rng);
            assert!(
                (1..n.max(2)).contains(&stride) && gcd(stride, n) == 1,
                "{n}: {stride}"
            );
        }
    }
}
