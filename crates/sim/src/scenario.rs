//! What a simulation plays out: hosts, sites, links, the artifact, and the knobs of the run.

use std::time::Duration;

use shoal_metainfo::create::default_piece_length;
use shoal_swarm::Config;

/// Whether a host serves the data it has, or lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves what it verified.
    Honest,
    /// Serves every block corrupted: its peers' verification must catch it and ban it.
    Liar,
}

/// One host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    /// Upload capacity, bytes per second.
    pub up: f64,
    /// Download capacity, bytes per second.
    pub down: f64,
    /// The site it sits in (an index into [`Scenario::sites`]).
    pub site: usize,
    /// Whether it starts with every piece (a seed) or with none (a downloader).
    pub seed: bool,
    /// How it behaves.
    pub behaviour: Behaviour,
}

/// One site: hosts on one LAN, joined to the other sites by an inter-site link.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteSpec {
    /// The capacity of the site's link to the others, bytes per second, each way.
    pub wan_rate: f64,
    /// One-way latency added when a message crosses between sites.
    pub wan_latency: Duration,
}

/// How often the engines' own invariant checks run (the simulator's run at every step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariants {
    /// After every event, on the engine that handled it.
    EveryStep,
    /// After every `n`th event of each engine (large runs: the check walks every piece and peer).
    EveryNth(u32),
    /// Only the simulator's own checks.
    SimulatorOnly,
}

/// A whole simulation. Build one with [`Scenario::lan`] or [`Scenario::two_sites`] and adjust
/// the fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The hosts. Seeds first by convention; any host may seed.
    pub hosts: Vec<HostSpec>,
    /// The sites; one for a single LAN.
    pub sites: Vec<SiteSpec>,
    /// One-way latency between two hosts of one site.
    pub latency: Duration,
    /// Probability that a message loses a segment and waits a retransmission timeout.
    pub loss: f64,
    /// Bytes of TCP/IP and Ethernet headers per byte of stream: links are shaped on the frames
    /// they carry, so the stream gets `rate / (1 + header_overhead)`. Default 66 / 1448 (a
    /// 1448-byte segment with TCP timestamps: 20 IP + 32 TCP + 14 Ethernet bytes).
    pub header_overhead: f64,
    /// The retransmission timeout a lost segment costs (at least 200 ms in Linux TCP).
    pub rto: Duration,
    /// The artifact's size in bytes.
    pub size: u64,
    /// Its piece length in bytes (a power of two, at least 16 KiB); by default what `publish`
    /// picks.
    pub piece_length: u64,
    /// How fast a host hashes, bytes per second (one hashing thread per host).
    pub hash_rate: f64,
    /// How many peers the tracker hands each host (Shoal asks for 200).
    pub numwant: usize,
    /// The most connections a host keeps (Shoal's agent: 50).
    pub max_peers: usize,
    /// With more than one site, hosts name their site in announces, as agents with a `site`
    /// label do, and Shoal's tracker applies its site rules (design §9: a host learns its own
    /// site's peers, and the site's two bridges, while it has no seed, peers elsewhere too).
    /// False: hosts announce as standard clients do and learn peers anywhere. Default: true.
    pub announce_sites: bool,
    /// Downloaders announce at a uniformly random instant in `[0, start_spread)`.
    pub start_spread: Duration,
    /// The engine configuration of downloaders; `seed` is replaced per host.
    pub engine: Config,
    /// The engine configuration of hosts that start as seeds; `seed` is replaced per host.
    pub seed_engine: Config,
    /// Seed of the run's random choices.
    pub rng_seed: u64,
    /// Give up at this virtual time.
    pub time_limit: Duration,
    /// How often engines check their own invariants.
    pub invariants: Invariants,
    /// When set, the report carries a [`crate::Sample`] of the swarm per this much virtual
    /// time (link use, progress, choking). Observes only: the run is the same. Default: none.
    pub timeline: Option<Duration>,
}

impl Scenario {
    /// One seed and `downloaders` downloaders on one LAN, every link `rate` bytes per second each
    /// way: the shape of `bench/swarm.py`.
    pub fn lan(downloaders: usize, size: u64, rate: f64) -> Self {
        let host = |seed| HostSpec {
            up: rate,
            down: rate,
            site: 0,
            seed,
            behaviour: Behaviour::Honest,
        };
        Self {
            hosts: std::iter::once(host(true))
                .chain((0..downloaders).map(|_| host(false)))
                .collect(),
            sites: vec![SiteSpec {
                wan_rate: f64::INFINITY,
                wan_latency: Duration::ZERO,
            }],
            latency: Duration::from_micros(100),
            loss: 0.0,
            header_overhead: 66.0 / 1448.0,
            rto: Duration::from_millis(200),
            size,
            piece_length: default_piece_length(size).bytes(),
            hash_rate: 1.0e9,
            numwant: 200,
            max_peers: 50,
            announce_sites: true,
            start_spread: Duration::from_millis(50),
            engine: Config::default(),
            seed_engine: Config::default(),
            rng_seed: 1,
            time_limit: Duration::from_secs(24 * 3600),
            invariants: Invariants::EveryStep,
            timeline: None,
        }
    }

    /// [`Scenario::lan`] split over two sites: the seed and the first half of the downloaders in
    /// site 0, the rest in site 1, the sites joined by a `wan_rate` link with `wan_latency` one
    /// way.
    pub fn two_sites(
        downloaders: usize,
        size: u64,
        rate: f64,
        wan_rate: f64,
        wan_latency: Duration,
    ) -> Self {
        let mut scenario = Self::lan(downloaders, size, rate);
        let half = downloaders.div_ceil(2);
        for host in scenario.hosts.iter_mut().skip(1 + half) {
            host.site = 1;
        }
        let site = SiteSpec {
            wan_rate,
            wan_latency,
        };
        scenario.sites = vec![site.clone(), site];
        scenario
    }

    /// The time no distribution scheme can beat, in seconds: every byte leaves the seeds at
    /// least once, reaches every downloader through its own downlink, and every copy is
    /// uploaded by someone; a site without a seed receives the data over its inter-site link
    /// (at least once) and its hosts' copies come through that link or from its own hosts.
    ///
    /// `T* = max(S / sum(u_seed), S / d_min, N * S / sum(u), per site without a seed:
    /// max(S / wan, n_site * S / (wan + sum(u_site))))`.
    pub fn lower_bound(&self) -> f64 {
        let s = self.size as f64;
        let seed_up: f64 = self.hosts.iter().filter(|h| h.seed).map(|h| h.up).sum();
        let downloaders: Vec<&HostSpec> = self.hosts.iter().filter(|h| !h.seed).collect();
        let d_min = downloaders
            .iter()
            .map(|h| h.down)
            .fold(f64::INFINITY, f64::min);
        let all_up: f64 = self.hosts.iter().map(|h| h.up).sum();
        let mut bound = (s / seed_up)
            .max(s / d_min)
            .max(downloaders.len() as f64 * s / all_up);
        for (index, site) in self.sites.iter().enumerate() {
            let here = || self.hosts.iter().filter(move |h| h.site == index);
            if here().any(|h| h.seed) || self.sites.len() == 1 {
                continue;
            }
            let n = here().filter(|h| !h.seed).count() as f64;
            let up: f64 = here().map(|h| h.up).sum();
            bound = bound
                .max(s / site.wan_rate)
                .max(n * s / (site.wan_rate + up));
        }
        bound
    }

    /// The number of downloaders.
    pub fn downloaders(&self) -> usize {
        self.hosts.iter().filter(|h| !h.seed).count()
    }
}
