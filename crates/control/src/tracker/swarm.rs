//! One torrent's peers: seeds and leechers in two dense vectors with an index by peer id, so
//! an announce updates its peer in O(log n) and picks `k` peers in O(k log k), however large
//! the swarm. Peers are picked as a uniform random sample ([`Shuffle`]).

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;

use crate::rng::SplitMix64;

/// A site, as the tracker's interned number for its name.
pub(super) type Site = u32;

/// One peer, kept small (56 bytes): it is multiplied by every peer the tracker holds.
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
    /// The site its host is in (`shoal_site`), if it said.
    pub(super) site: Option<Site>,
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
    /// Per site, the peers (at most [`BRIDGES_PER_SITE`], the first to announce, replaced when
    /// they leave) that are told of peers outside it: the site's way in.
    bridges: BTreeMap<Site, Vec<[u8; 20]>>,
}

/// How many peers of a site fetch from outside it (see [`Swarm::pick`]). Two: a second keeps
/// the site fed while the first is slow or gone, at the cost of some pieces crossing twice.
pub(super) const BRIDGES_PER_SITE: usize = 2;

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
        let upsert = self.upsert_peer(peer, seed, cap);
        if let Upsert::Joined(slot) | Upsert::Updated(slot) = upsert {
            let peer = &self.list(slot.seed)[slot.index as usize];
            if let Some(site) = peer.site {
                let id = peer.peer_id;
                let bridges = self.bridges.entry(site).or_default();
                if bridges.len() < BRIDGES_PER_SITE && !bridges.contains(&id) {
                    bridges.push(id);
                }
            }
        }
        upsert
    }

    fn upsert_peer(&mut self, peer: Peer, seed: bool, cap: usize) -> Upsert {
        match self.index.get(&peer.peer_id).copied() {
            Some(slot) if slot.seed == seed => {
                let old = std::mem::replace(&mut self.list_mut(seed)[slot.index as usize], peer);
                let new_site = self.list(seed)[slot.index as usize].site;
                if old.site != new_site {
                    self.drop_bridge(&old);
                }
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

    /// Forgets `peer` as a bridge of its site.
    fn drop_bridge(&mut self, peer: &Peer) {
        if let Some(site) = peer.site
            && let Some(bridges) = self.bridges.get_mut(&site)
        {
            bridges.retain(|id| *id != peer.peer_id);
            if bridges.is_empty() {
                self.bridges.remove(&site);
            }
        }
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
    /// The candidates (leechers for a seed; seeds then leechers otherwise) are visited in a
    /// uniformly random order ([`Shuffle`]), each at most once, so a reply is a uniform random
    /// sample and the work is O(k log k).
    ///
    /// A requester that named its site is told of peers in that site only, so that data
    /// crosses into a site once rather than once per host, unless it is one of the site's
    /// bridges ([`BRIDGES_PER_SITE`]) and no seed is in the site yet: a bridge is told of
    /// peers outside too, those first (up to half of `k`), as the site's way in. A bridge that
    /// leaves is replaced by the next peer of its site to announce. This costs one pass over
    /// the swarm (O(n log n)) per announce of a peer with a site.
    pub(super) fn pick(&self, requester: Slot, k: usize, rng: &mut SplitMix64) -> Vec<SocketAddr> {
        let from_seeds = if requester.seed { 0 } else { self.seeds.len() };
        let n = from_seeds + self.leechers.len();
        let mut out = Vec::with_capacity(k.min(n));
        if n == 0 || k == 0 {
            return out;
        }
        let me = &self.list(requester.seed)[requester.index as usize];
        let my_position = (!requester.seed).then_some(from_seeds + requester.index as usize);
        // With a site: how many outside peers to list (0 unless a bridge of a seedless site).
        let remote_quota = me.site.map(|site| {
            let bridge = self
                .bridges
                .get(&site)
                .is_some_and(|b| b.contains(&me.peer_id));
            let site_has_seed = self.seeds.iter().any(|p| p.site == Some(site));
            if bridge && !requester.seed && !site_has_seed {
                k.div_ceil(2)
            } else {
                0
            }
        });
        let mut remote = Vec::new();
        let mut order = Shuffle::new(n);
        while let Some(position) = order.next(rng) {
            if out.len() == k && remote_quota.is_none_or(|q| remote.len() >= q) {
                break;
            }
            if Some(position) != my_position {
                let peer = if position < from_seeds {
                    &self.seeds[position]
                } else {
                    &self.leechers[position - from_seeds]
                };
                if (peer.ip, peer.port) != (me.ip, me.port) {
                    match remote_quota {
                        Some(quota) if peer.site != me.site && remote.len() < quota => {
                            remote.push(peer.addr());
                        }
                        Some(_) if peer.site != me.site => {}
                        _ if out.len() < k => out.push(peer.addr()),
                        _ => {}
                    }
                }
            }
        }
        if !remote.is_empty() {
            // Outside peers first, then as many of the site's as fit.
            out.truncate(k - remote.len());
            remote.append(&mut out);
            out = remote;
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
        self.drop_bridge(&peer);
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
        for (site, bridges) in &self.bridges {
            assert!(
                (1..=BRIDGES_PER_SITE).contains(&bridges.len()),
                "{bridges:?}"
            );
            for id in bridges {
                let slot = self.index[id];
                assert_eq!(self.list(slot.seed)[slot.index as usize].site, Some(*site));
            }
        }
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

/// The positions `0..n` in a uniformly random order, drawn one at a time: a Fisher-Yates
/// shuffle that records only the entries it moved, so drawing `k` costs O(k log k) whatever
/// `n` is. (A walk with a random start and stride, used before, listed clusters of peers
/// adjacent in announce order whenever the stride was near `n / 2`, `n / 3`...: in
/// `shoal-sim`, where hosts announce through this tracker, 2 of 6 runs of 100 hosts with 16
/// connections each left a host dialling only full peers until its redial, 3 s later.)
pub(super) struct Shuffle {
    n: usize,
    drawn: usize,
    /// Entries moved by earlier draws: position -> the value now there.
    moved: BTreeMap<usize, usize>,
}

impl Shuffle {
    /// A shuffle of `0..n`.
    pub(super) fn new(n: usize) -> Self {
        Self {
            n,
            drawn: 0,
            moved: BTreeMap::new(),
        }
    }

    /// The next position, `None` once all `n` were drawn.
    pub(super) fn next(&mut self, rng: &mut SplitMix64) -> Option<usize> {
        if self.drawn >= self.n {
            return None;
        }
        let i = self.drawn;
        let j = i + rng.below(self.n - i);
        let at = |moved: &BTreeMap<usize, usize>, p: usize| moved.get(&p).copied().unwrap_or(p);
        let (vi, vj) = (at(&self.moved, i), at(&self.moved, j));
        // Position i is never looked at again; j now holds what was at i.
        self.moved.remove(&i);
        if j != i {
            self.moved.insert(j, vi);
        }
        self.drawn += 1;
        Some(vj)
    }
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
            site: None,
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

    fn sited(n: u8, site: Site) -> Peer {
        Peer {
            site: Some(site),
            ..peer(n, 0)
        }
    }

    /// The sites of the peers `pick` listed for `n` (`None`: no site), in the order listed.
    fn picked_sites(s: &Swarm, n: u8, k: usize, seed: u64) -> Vec<Option<Site>> {
        let by_addr: BTreeMap<SocketAddr, Option<Site>> =
            s.peers().map(|(p, _)| (p.addr(), p.site)).collect();
        s.pick(slot_of(s, n), k, &mut SplitMix64::new(seed))
            .iter()
            .map(|a| by_addr[a])
            .collect()
    }

    /// Site 0 holds the seed (peer 0) and leechers 1-9; site 1 leechers 10-29 announce in
    /// order, so 10 and 11 are its bridges.
    fn two_sites() -> Swarm {
        let mut s = Swarm::default();
        s.upsert(sited(0, 0), true, 100);
        for n in 1..10 {
            s.upsert(sited(n, 0), false, 100);
        }
        for n in 10..30 {
            s.upsert(sited(n, 1), false, 100);
        }
        s.check_invariants();
        s
    }

    #[test]
    fn a_site_is_fed_through_its_bridges_and_its_other_peers_stay_inside() {
        let s = two_sites();
        for seed in 0..20 {
            // Not a bridge: its own site only, all of it when asked for more.
            let inside = picked_sites(&s, 15, 1000, seed);
            assert_eq!(inside.len(), 19);
            assert!(inside.iter().all(|site| *site == Some(1)), "{inside:?}");
            // A bridge: outside peers first, up to half, then its site's.
            let bridge = picked_sites(&s, 10, 8, seed);
            assert_eq!(bridge.len(), 8);
            assert_eq!(bridge[..4], [Some(0); 4], "{bridge:?}");
            assert_eq!(bridge[4..], [Some(1); 4], "{bridge:?}");
            let all = picked_sites(&s, 11, 1000, seed);
            assert_eq!(all.len(), 29, "all of both sites when there are few");
            // Site 0 has the seed: even its bridges (0 and 1) stay inside.
            let home = picked_sites(&s, 1, 1000, seed);
            assert_eq!(home.len(), 9);
            assert!(home.iter().all(|site| *site == Some(0)), "{home:?}");
        }
    }

    #[test]
    fn a_site_with_a_seed_needs_no_bridge_and_a_gone_bridge_is_replaced() {
        let mut s = two_sites();
        // Bridge 10 leaves: the next of site 1 to announce takes its place.
        assert!(s.remove(&[10; 20]));
        s.check_invariants();
        assert!(picked_sites(&s, 20, 1000, 1).iter().all(|x| *x == Some(1)));
        s.upsert(sited(20, 1), false, 100);
        s.check_invariants();
        assert!(picked_sites(&s, 20, 1000, 1).contains(&Some(0)));
        // Peer 25 completes: site 1 has a seed, and its bridges stop looking outside.
        s.upsert(sited(25, 1), true, 100);
        s.check_invariants();
        let bridge = picked_sites(&s, 11, 1000, 1);
        assert!(bridge.iter().all(|x| *x == Some(1)), "{bridge:?}");
        // A peer that moves to another site stops being a bridge of the old one.
        s.upsert(sited(11, 0), false, 100);
        s.check_invariants();
        assert!(!s.bridges[&1].contains(&[11; 20]));
    }

    #[test]
    fn peers_without_a_site_see_everyone_and_are_outside_for_the_others() {
        let mut s = two_sites();
        s.upsert(peer(40, 0), false, 100);
        s.upsert(peer(41, 0), false, 100);
        s.check_invariants();
        let anywhere = picked_sites(&s, 40, 1000, 3);
        assert_eq!(anywhere.len(), 31);
        let inside = picked_sites(&s, 15, 1000, 3);
        assert!(!inside.contains(&None), "{inside:?}");
        let bridge = picked_sites(&s, 10, 1000, 3);
        assert!(bridge.contains(&None), "{bridge:?}");
        assert_eq!(bridge.len(), 31);
    }

    #[test]
    fn a_shuffle_draws_every_position_once() {
        let mut rng = SplitMix64::new(1);
        for n in 0..200 {
            let mut shuffle = Shuffle::new(n);
            let drawn: Vec<usize> = std::iter::from_fn(|| shuffle.next(&mut rng)).collect();
            let mut sorted = drawn.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{n}: {drawn:?}");
        }
    }

    #[test]
    fn a_short_draw_is_spread_like_a_uniform_sample() {
        // 8 of 60, many times: each position is drawn about as often as any other, and the 8
        // almost never fall within 16 consecutive positions (a uniform sample: about 1 draw
        // in 6,000). The stride walk this replaced did in about 1 draw of 8 (12 % in 60,000
        // draws, in a Python model of it).
        let (n, k, runs) = (60usize, 8usize, 6000usize);
        let mut rng = SplitMix64::new(7);
        let mut hits = vec![0usize; n];
        let mut bunched = 0usize;
        for _ in 0..runs {
            let mut shuffle = Shuffle::new(n);
            let mut drawn: Vec<usize> = (0..k).filter_map(|_| shuffle.next(&mut rng)).collect();
            for &p in &drawn {
                hits[p] += 1;
            }
            drawn.sort_unstable();
            // The widest gap between neighbours, around the circle.
            let gaps = drawn.windows(2).map(|w| w[1] - w[0]);
            let widest = gaps.chain([drawn[0] + n - drawn[k - 1]]).max().unwrap_or(n);
            bunched += usize::from(n - widest < 16);
        }
        let expected = runs * k / n; // 800
        for (p, &h) in hits.iter().enumerate() {
            assert!(
                h.abs_diff(expected) < expected / 5,
                "position {p}: {h} of ~{expected}"
            );
        }
        assert!(
            bunched <= 6,
            "{bunched} of {runs} draws within 16 neighbours"
        );
    }
}
