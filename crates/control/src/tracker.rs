//! The tracker's swarm table, sans-IO: announces and scrapes in, replies out ([`Tracker`]).
//!
//! The HTTP server hands over the raw query, the source address, the time and a random seed;
//! the table answers with the [`shoal_tracker_proto`] reply to encode. Peers are keyed by
//! (info-hash, peer id), listed under the address the request came from, and forgotten when
//! they stop or stay silent longer than [`TrackerConfig::peer_ttl_ms`] ([`Tracker::expire`]).
//! IPv4 peers travel in the compact `peers` string and IPv6 peers in `peers6` (BEP 7, 23),
//! which [`AnnounceReply::encode`] does when asked for the compact form.
//!
//! **Sites.** A Shoal agent names its host's site (`shoal_site`, from its `site` label). Such a
//! peer is told of peers in its own site only, except the site's *bridges*: the first two of
//! the site to announce (replaced when they leave), which, while the site has no seed, are also
//! told of peers elsewhere. Data then crosses into a site through its bridges, about once per
//! site rather than once per host, and spreads inside it. Peers that name no site (standard
//! clients) see, and are seen by, everyone as before.
//!
//! Memory is bounded by [`TrackerConfig::max_swarms`] and
//! [`TrackerConfig::max_peers_per_swarm`]; an announce costs O(log n) for the lookups and
//! O(numwant log numwant) for the peers it returns, a uniform random sample, whatever the
//! swarm's size (O(n log n) for a peer with a site, which must be told its own site's peers).

mod swarm;

use core::net::{IpAddr, SocketAddr};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use shoal_tracker_proto::{
    AnnounceReply, AnnounceRequest, AnnounceResponse, Event, ScrapeReply, ScrapeRequest,
    ScrapeResponse, ScrapeStats,
};

use crate::rng::SplitMix64;
use swarm::{Peer, Swarm, Upsert};

/// How the tracker behaves. See each field for its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Seconds between a client's regular announces (`interval`). Default: 60.
    pub interval_s: u32,
    /// Seconds a client must wait before announcing again (`min interval`). Default: 30.
    pub min_interval_s: u32,
    /// Milliseconds after its last announce that a peer is forgotten. Default: three
    /// intervals, 180,000.
    pub peer_ttl_ms: u64,
    /// The most peers one reply lists, whatever `numwant` asks. Default: 200.
    pub max_numwant: u32,
    /// Peers listed when the client does not send `numwant`. Default: 50.
    pub default_numwant: u32,
    /// The most swarms tracked at once; announces for new torrents beyond it are refused.
    /// Default: 100,000.
    pub max_swarms: usize,
    /// The most peers in one swarm; new peers beyond it are refused. Default: 10,000.
    pub max_peers_per_swarm: usize,
    /// Whether to list a peer under the `ip` it claims rather than the address its request
    /// came from. Trusting it lets anyone point a swarm at a third party, so it is off by
    /// default; requests from a loopback address are always trusted (tests, and agents
    /// on the tracker's host announcing their public address).
    pub trust_ip_param: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            interval_s: 60,
            min_interval_s: 30,
            peer_ttl_ms: 3 * 60_000,
            max_numwant: 200,
            default_numwant: 50,
            max_swarms: 100_000,
            max_peers_per_swarm: 10_000,
            trust_ip_param: false,
        }
    }
}

/// One peer as the tracker knows it, for status displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedPeer {
    /// The address it is listed under.
    pub addr: SocketAddr,
    /// Its peer id.
    pub peer_id: [u8; 20],
    /// Whether it has everything (`left=0`).
    pub seed: bool,
    /// When it last announced, in Unix milliseconds.
    pub last_seen_ms: u64,
}

/// The size of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Swarms with at least one peer.
    pub swarms: usize,
    /// Peers in all swarms.
    pub peers: usize,
    /// Of those, seeds.
    pub seeds: usize,
}

/// The swarm table. See the module documentation.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    swarms: BTreeMap<[u8; 20], Swarm>,
    /// `None`: any info-hash is tracked. `Some`: only these.
    allowed: Option<BTreeSet<[u8; 20]>>,
    /// Peers in all swarms.
    peers: usize,
    /// The sites peers named (`shoal_site`), numbered in order of first appearance; at most
    /// [`MAX_SITES`], later ones are treated as no site.
    sites: BTreeMap<String, swarm::Site>,
}

/// The most distinct sites the tracker tells apart.
pub const MAX_SITES: usize = 4096;

impl Tracker {
    /// An empty table that tracks any info-hash.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Restricts the tracker to the info-hashes in `allowed`, or, with `None`, lets it track
    /// any. Swarms of info-hashes no longer allowed are forgotten.
    pub fn set_allowed(&mut self, allowed: Option<BTreeSet<[u8; 20]>>) {
        if let Some(list) = &allowed {
            let mut dropped = 0;
            self.swarms.retain(|hash, swarm| {
                let keep = list.contains(hash);
                if !keep {
                    dropped += swarm.len();
                }
                keep
            });
            self.peers -= dropped;
        }
        self.allowed = allowed;
    }

    /// Adds `info_hash` to the allow-list. No effect while the tracker tracks any info-hash
    /// (no allow-list is set): it is already allowed.
    pub fn allow(&mut self, info_hash: [u8; 20]) {
        if let Some(list) = &mut self.allowed {
            list.insert(info_hash);
        }
    }

    /// Removes `info_hash` from the allow-list (if one is set) and forgets its swarm.
    pub fn disallow(&mut self, info_hash: &[u8; 20]) {
        if let Some(list) = &mut self.allowed {
            list.remove(info_hash);
        }
        if let Some(swarm) = self.swarms.remove(info_hash) {
            self.peers -= swarm.len();
        }
    }

    /// Returns true if and only if announces for `info_hash` are accepted.
    pub fn is_allowed(&self, info_hash: &[u8; 20]) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|list| list.contains(info_hash))
    }

    /// Handles one announce at `now_ms` from `source`. `rng_seed` drives the choice of peers
    /// (pass a fresh random number per request).
    ///
    /// The reply lists up to `numwant` (default [`TrackerConfig::default_numwant`], at most
    /// [`TrackerConfig::max_numwant`]) other peers chosen at random, never the requester and
    /// never a seed to a seed; for a peer that named its site, peers of that site (and, for the
    /// site's bridges while it has no seed, peers outside it: see the module documentation). `stopped` removes the peer; `completed` counts a download;
    /// `left=0` marks a seed. Encode it with `reply.encode(request.compact)`.
    ///
    /// A [`AnnounceReply::Failure`] says why an announce was refused: port 0, an info-hash
    /// outside the allow-list, or a full table.
    pub fn announce(
        &mut self,
        now_ms: u64,
        request: &AnnounceRequest,
        source: IpAddr,
        rng_seed: u64,
    ) -> AnnounceReply {
        let hash = request.info_hash;
        if request.port == 0 {
            return failure(
                "port 0 is not a listening port: announce the port your client accepts connections on",
            );
        }
        if !self.is_allowed(&hash) {
            return failure(
                "unknown info-hash: this tracker serves only artifacts published to its Shoal server",
            );
        }
        if request.event == Some(Event::Stopped) {
            return self.stop(&hash, &request.peer_id);
        }
        let peer = Peer {
            peer_id: request.peer_id,
            ip: self.listed_ip(request, source),
            port: request.port,
            last_seen_ms: now_ms,
            site: request.site.as_deref().and_then(|name| self.site(name)),
        };
        let table_full = self.swarms.len() >= self.config.max_swarms;
        let swarm = match self.swarms.entry(hash) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if table_full => {
                return failure("tracker is full (too many torrents): try again later");
            }
            Entry::Vacant(e) => e.insert(Swarm::default()),
        };
        let slot = match swarm.upsert(peer, request.left == 0, self.config.max_peers_per_swarm) {
            Upsert::Joined(slot) => {
                self.peers += 1;
                slot
            }
            Upsert::Updated(slot) => slot,
            Upsert::Full => {
                if swarm.is_empty() {
                    self.swarms.remove(&hash);
                }
                return failure("swarm is full (too many peers): try again later");
            }
        };
        if request.event == Some(Event::Completed) {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        let numwant = request
            .numwant
            .unwrap_or(self.config.default_numwant)
            .min(self.config.max_numwant);
        let numwant = usize::try_from(numwant).unwrap_or(usize::MAX);
        let peers = swarm.pick(slot, numwant, &mut SplitMix64::new(rng_seed));
        let counts = swarm_counts(Some(&*swarm));
        AnnounceReply::Ok(self.response(counts, peers))
    }

    /// [`Tracker::announce`] from the raw query string, as an HTTP tracker receives it: the
    /// response body, a `failure reason` naming the bad parameter when the query does not
    /// parse.
    pub fn announce_query(
        &mut self,
        now_ms: u64,
        query: &str,
        source: IpAddr,
        rng_seed: u64,
    ) -> Vec<u8> {
        match AnnounceRequest::from_query(query) {
            Ok(request) => self
                .announce(now_ms, &request, source, rng_seed)
                .encode(request.compact),
            Err(e) => AnnounceReply::Failure(format!("bad announce: {e}")).encode(true),
        }
    }

    /// Handles one scrape: the counts of each requested torrent. Torrents without peers are
    /// reported as zeros when they are on the allow-list and left out otherwise (BEP 48). A
    /// scrape of every torrent (no `info_hash`) is refused.
    pub fn scrape(&self, request: &ScrapeRequest) -> ScrapeReply {
        if request.info_hashes.is_empty() {
            return ScrapeReply::Failure(
                "scraping every torrent is not supported: name torrents with info_hash parameters"
                    .to_owned(),
            );
        }
        let mut files = BTreeMap::new();
        for hash in &request.info_hashes {
            let swarm = self.swarms.get(hash);
            let listed = self.allowed.as_ref().is_some_and(|l| l.contains(hash));
            if swarm.is_some() || listed {
                let (complete, incomplete) = swarm_counts(swarm);
                let downloaded = swarm.map_or(0, |s| s.downloaded);
                files.insert(
                    *hash,
                    ScrapeStats {
                        complete,
                        downloaded,
                        incomplete,
                    },
                );
            }
        }
        ScrapeReply::Ok(ScrapeResponse { files })
    }

    /// [`Tracker::scrape`] from the raw query string: the response body.
    pub fn scrape_query(&self, query: &str) -> Vec<u8> {
        match ScrapeRequest::from_query(query) {
            Ok(request) => self.scrape(&request).encode(),
            Err(e) => ScrapeReply::Failure(format!("bad scrape: {e}")).encode(),
        }
    }

    /// Forgets every peer not seen for more than [`TrackerConfig::peer_ttl_ms`] before
    /// `now_ms`, and every swarm left empty. Returns the number of peers forgotten. Costs one
    /// pass over the table: call it every few seconds, not per announce.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        // Kept: last seen at or after the cutoff, i.e. silent for at most the TTL.
        let cutoff = now_ms.saturating_sub(self.config.peer_ttl_ms);
        let mut removed = 0;
        self.swarms.retain(|_, swarm| {
            removed += swarm.expire(cutoff);
            !swarm.is_empty()
        });
        self.peers -= removed;
        removed
    }

    /// The peers of `info_hash`'s swarm, seeds first; empty for an unknown torrent.
    pub fn swarm_peers(&self, info_hash: &[u8; 20]) -> Vec<TrackedPeer> {
        self.swarms
            .get(info_hash)
            .into_iter()
            .flat_map(Swarm::peers)
            .map(|(peer, seed)| TrackedPeer {
                addr: SocketAddr::new(peer.ip, peer.port),
                peer_id: peer.peer_id,
                seed,
                last_seen_ms: peer.last_seen_ms,
            })
            .collect()
    }

    /// The size of the table. Costs one pass over the swarms.
    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            swarms: self.swarms.len(),
            peers: self.peers,
            seeds: self.swarms.values().map(Swarm::seeds).sum(),
        }
    }

    /// The address to list the requester under: its claimed `ip` when that is trusted, else
    /// the source; IPv4-mapped IPv6 addresses (from dual-stack sockets) as IPv4.
    fn listed_ip(&self, request: &AnnounceRequest, source: IpAddr) -> IpAddr {
        let source = source.to_canonical();
        let trusted = self.config.trust_ip_param || source.is_loopback();
        match request.ip {
            Some(claimed) if trusted => claimed.to_canonical(),
            _ => source,
        }
    }

    /// The number of site `name`, numbering it if it is new and there is room.
    fn site(&mut self, name: &str) -> Option<swarm::Site> {
        if let Some(site) = self.sites.get(name) {
            return Some(*site);
        }
        if self.sites.len() >= MAX_SITES {
            return None;
        }
        let next = swarm::Site::try_from(self.sites.len()).ok()?;
        self.sites.insert(name.to_owned(), next);
        Some(next)
    }

    /// A `stopped` announce: the peer leaves; the reply lists no peers.
    fn stop(&mut self, hash: &[u8; 20], peer_id: &[u8; 20]) -> AnnounceReply {
        let mut counts = (0, 0);
        if let Some(swarm) = self.swarms.get_mut(hash) {
            if swarm.remove(peer_id) {
                self.peers -= 1;
            }
            counts = swarm_counts(Some(&*swarm));
            if swarm.is_empty() {
                self.swarms.remove(hash);
            }
        }
        AnnounceReply::Ok(self.response(counts, Vec::new()))
    }

    fn response(
        &self,
        (complete, incomplete): (u32, u32),
        peers: Vec<SocketAddr>,
    ) -> AnnounceResponse {
        AnnounceResponse {
            interval: self.config.interval_s,
            min_interval: Some(self.config.min_interval_s),
            complete: Some(complete),
            incomplete: Some(incomplete),
            peers,
            warning: None,
            tracker_id: None,
        }
    }

    /// Panics if the counts, the allow-list and the swarms disagree.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut peers = 0;
        for (hash, swarm) in &self.swarms {
            swarm.check_invariants();
            assert!(!swarm.is_empty(), "empty swarms are dropped");
            assert!(self.is_allowed(hash));
            peers += swarm.len();
        }
        assert_eq!(peers, self.peers);
        assert!(self.swarms.len() <= self.config.max_swarms);
    }
}

/// (seeds, leechers) of a swarm, 0 for none.
fn swarm_counts(swarm: Option<&Swarm>) -> (u32, u32) {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    swarm.map_or((0, 0), |s| (count(s.seeds()), count(s.leechers())))
}

fn failure(reason: &str) -> AnnounceReply {
    AnnounceReply::Failure(reason.to_owned())
}

#[cfg(test)]
mod tests;
