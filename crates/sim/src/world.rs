//! The simulated world: hosts with their engines and links, the connections between them, and
//! the loop that plays events in time order and carries out what the engines ask.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use shoal_control::tracker::{Tracker, TrackerConfig};
use shoal_metainfo::{BLOCK_SIZE, Bitfield, BlockRef, Geometry, GeometryError, PieceLength};
use shoal_swarm::{Command, PeerKey, Rng, Swarm, Verification};
use shoal_tracker_proto::{AnnounceReply, AnnounceRequest, Event as AnnounceEvent};
use shoal_wire::Message as Wire;

use crate::event::{Event, Nanos, Queue};
use crate::link::{Fifo, Message, Uplink, transmit_nanos};
use crate::report::{HostReport, Report, Sample};
use crate::scenario::{Behaviour, Invariants, Scenario};

/// Why a simulation could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is not one the simulator can play.
    #[error("bad scenario: {0}")]
    Scenario(String),
    /// The piece length or size does not make a torrent.
    #[error("bad geometry: {0}")]
    Geometry(#[from] GeometryError),
    /// Something that must always hold did not: a bug in the engine or the simulator.
    #[error("invariant broken at {at:.6} s on host {host}: {what}")]
    Invariant {
        /// Virtual seconds.
        at: f64,
        /// The host.
        host: usize,
        /// What broke.
        what: String,
    },
}

/// How often a downloading host dials again the peers it learned of (the driver's
/// `REDIAL_INTERVAL`); each peer's wait doubles after every dial, up to [`MAX_REDIAL`].
const REDIAL: Nanos = 3_000_000_000;
/// The port every host listens on; hosts are told apart by address ([`host_address`]).
const LISTEN_PORT: u16 = 6881;
/// The longest wait between two dials of one learned peer (the driver's `MAX_LEARNED_REDIAL`).
const MAX_REDIAL: Nanos = 60_000_000_000;
/// How long a host that made room at a full host waits before it may again (the driver's
/// `EVICTION_COOLDOWN`).
const EVICTION_COOLDOWN: Nanos = 30_000_000_000;

/// The payload every simulated block carries (blocks are never materialised).
static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// A piece being downloaded: who sent each block, and what its check concluded.
#[derive(Debug)]
struct Pending {
    senders: Vec<Option<usize>>,
    digests: bool,
}

struct Host {
    swarm: Swarm,
    up: f64,
    down: f64,
    site: usize,
    seed: bool,
    behaviour: Behaviour,
    uplink: Uplink,
    downlink: Fifo,
    hasher: Fifo,
    /// Pieces whose data the host holds verified (what it may upload).
    stored: Vec<bool>,
    /// Pieces whose last hash check passed and are not yet recorded.
    passed: Vec<bool>,
    pending: BTreeMap<u32, Pending>,
    /// Hosts the tracker named, with when each may be dialled again and the wait after that.
    learned: Vec<(usize, Nanos, Nanos)>,
    /// Its open connections.
    links: Vec<usize>,
    /// Hosts that dialled it while full and made room, with when.
    evictors: BTreeMap<usize, Nanos>,
    completed: Option<Nanos>,
    timer: Option<Nanos>,
    steps: u32,
}

struct Conn {
    ends: [usize; 2],
    open: bool,
    /// Blocks toward each end, and the messages ordered with them (see [`Conn::urgent`]).
    out: [VecDeque<Message>; 2],
    /// Messages toward each end that go before any queued block, as the driver's two-lane
    /// writer sends them ([`shoal_wire::may_overtake_blocks`]). The driver lets the kernel hold
    /// up to 128 KiB unsent, which such a message still waits behind; the model does not.
    urgent: [Vec<u8>; 2],
    /// Messages other than blocks in `out`: while there are any, nothing overtakes.
    ordered: [usize; 2],
    /// When the last message toward each end reached its downlink (order is kept).
    last_arrival: [Nanos; 2],
}

impl Conn {
    fn side(&self, host: usize) -> usize {
        usize::from(self.ends[0] != host)
    }
}

/// The timeline being recorded: busy time of links per interval, and the samples so far.
struct Timeline {
    width: Nanos,
    /// Per interval: nanoseconds the downloaders' uplinks, the seeds' uplinks and the
    /// downloaders' downlinks were busy, summed over hosts.
    busy: Vec<[u64; 3]>,
    samples: Vec<Sample>,
}

/// Which link's busy time [`Timeline::busy`] counts.
#[derive(Clone, Copy)]
enum Busy {
    Up = 0,
    SeedUp = 1,
    Down = 2,
}

impl Timeline {
    /// `link` was busy from `from` to `to`: spread over the intervals it covers.
    fn add(&mut self, link: Busy, mut from: Nanos, to: Nanos) {
        while from < to {
            let bin = (from / self.width) as usize;
            let bin_end = (bin as Nanos + 1) * self.width;
            let until = to.min(bin_end);
            if self.busy.len() <= bin {
                self.busy.resize(bin + 1, [0; 3]);
            }
            self.busy[bin][link as usize] += until - from;
            from = until;
        }
    }
}

struct World<'s> {
    scenario: &'s Scenario,
    geometry: Geometry,
    hosts: Vec<Host>,
    conns: Vec<Conn>,
    pairs: BTreeSet<(usize, usize)>,
    /// Shoal's own tracker (the control plane's), answering every announce.
    tracker: Tracker,
    /// Per site: the link out of it and the link into it.
    wan: Vec<[Fifo; 2]>,
    /// Per site: the stream rate of its inter-site link.
    wan_rates: Vec<f64>,
    queue: Queue,
    rng: Rng,
    now: Nanos,
    digest: u64,
    events: u64,
    bans: u64,
    unfinished: usize,
    timeline: Option<Timeline>,
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The address `host` announces from: 10.0.0.0/8, the host's index in the low 24 bits.
fn host_address(host: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (host as u32 & 0x00ff_ffff)))
}

fn key(conn: usize) -> PeerKey {
    PeerKey(conn as u64)
}

/// Plays `scenario` out until every downloader has the artifact, nothing is left to happen, or
/// the time limit passes, and reports what happened.
///
/// # Errors
/// The scenario cannot be played ([`SimError::Scenario`], [`SimError::Geometry`]), or an
/// invariant broke ([`SimError::Invariant`]).
pub fn run(scenario: &Scenario) -> Result<Report, SimError> {
    let mut world = World::new(scenario)?;
    world.play()?;
    Ok(world.report())
}

impl<'s> World<'s> {
    fn new(scenario: &'s Scenario) -> Result<Self, SimError> {
        if scenario.hosts.is_empty() || !scenario.hosts.iter().any(|h| h.seed) {
            return Err(SimError::Scenario("no host starts as a seed".into()));
        }
        if scenario.size == 0 {
            return Err(SimError::Scenario("the artifact is empty".into()));
        }
        for (i, h) in scenario.hosts.iter().enumerate() {
            if h.site >= scenario.sites.len() {
                return Err(SimError::Scenario(format!("host {i} is in no site")));
            }
            if !(h.up > 0.0 && h.down > 0.0) {
                return Err(SimError::Scenario(format!("host {i} has no capacity")));
            }
        }
        if scenario.header_overhead.is_nan() || scenario.header_overhead < 0.0 {
            return Err(SimError::Scenario(
                "header overhead must not be negative".into(),
            ));
        }
        if scenario.hosts.len() > 1 << 24 {
            return Err(SimError::Scenario(
                "at most 2^24 hosts (each announces from its own 10.0.0.0/8 address)".into(),
            ));
        }
        if !(0.0..1.0).contains(&scenario.loss) {
            return Err(SimError::Scenario("loss must be in [0, 1)".into()));
        }
        let geometry = Geometry::new(PieceLength::new_v2(scenario.piece_length)?, [scenario.size])?;
        let pieces = geometry.piece_count();
        let mut rng = Rng::new(scenario.rng_seed);
        // Links carry frames: the stream gets what the headers leave.
        let frame = 1.0 + scenario.header_overhead;
        let wan_rates = scenario.sites.iter().map(|s| s.wan_rate / frame).collect();
        let hosts = scenario
            .hosts
            .iter()
            .map(|spec| {
                let base = if spec.seed {
                    &scenario.seed_engine
                } else {
                    &scenario.engine
                };
                let config = shoal_swarm::Config {
                    seed: rng.next_u64(),
                    ..base.clone()
                };
                let have = if spec.seed {
                    Bitfield::full(pieces)
                } else {
                    Bitfield::new(pieces)
                };
                Host {
                    swarm: Swarm::new(config, geometry.clone(), have, None, true),
                    up: spec.up / frame,
                    down: spec.down / frame,
                    site: spec.site,
                    seed: spec.seed,
                    behaviour: spec.behaviour,
                    uplink: Uplink::default(),
                    downlink: Fifo::default(),
                    hasher: Fifo::default(),
                    stored: vec![spec.seed; pieces as usize],
                    passed: vec![false; pieces as usize],
                    pending: BTreeMap::new(),
                    learned: Vec::new(),
                    evictors: BTreeMap::new(),
                    links: Vec::new(),
                    completed: spec.seed.then_some(0),
                    timer: None,
                    steps: 0,
                }
            })
            .collect();
        let mut world = Self {
            scenario,
            geometry,
            hosts,
            conns: Vec::new(),
            pairs: BTreeSet::new(),
            tracker: Tracker::new(TrackerConfig {
                max_numwant: u32::try_from(scenario.numwant).unwrap_or(u32::MAX),
                max_peers_per_swarm: scenario.hosts.len(),
                ..TrackerConfig::default()
            }),
            wan: vec![[Fifo::default(), Fifo::default()]; scenario.sites.len()],
            wan_rates,
            queue: Queue::default(),
            rng,
            now: 0,
            digest: 0xcbf2_9ce4_8422_2325,
            events: 0,
            bans: 0,
            unfinished: scenario.downloaders(),
            timeline: scenario.timeline.map(|width| Timeline {
                width: nanos(width).max(1),
                busy: Vec::new(),
                samples: Vec::new(),
            }),
        };
        if let Some(timeline) = &world.timeline {
            world.queue.push(timeline.width, Event::Sample);
        }
        // Seeds are registered with the tracker before the downloads start.
        for host in 0..world.hosts.len() {
            if world.hosts[host].seed {
                world.tell_tracker(host, AnnounceEvent::Started, 0)?;
            }
        }
        let spread = nanos(scenario.start_spread).max(1);
        for host in 0..world.hosts.len() {
            if !world.hosts[host].seed {
                let at = world.rng.next_u64() % spread;
                world.queue.push(at, Event::Announce { host });
            }
        }
        Ok(world)
    }

    fn play(&mut self) -> Result<(), SimError> {
        let limit = nanos(self.scenario.time_limit);
        while self.unfinished > 0 {
            let Some((at, event)) = self.queue.pop() else {
                break;
            };
            if at > limit {
                break;
            }
            self.now = at;
            if let Event::Sample = event {
                // Observes only: not in the trace, and no more once nothing else is queued.
                self.sample();
                if let Some(timeline) = &self.timeline
                    && self.queue.len() > 0
                {
                    self.queue.push(at + timeline.width, Event::Sample);
                }
                continue;
            }
            self.events += 1;
            let (kind, place) = event.tag();
            for word in [at, kind, place] {
                self.digest = (self.digest ^ word).wrapping_mul(0x0000_0100_0000_01b3);
            }
            self.handle(event)?;
        }
        if self.timeline.is_some() {
            self.sample();
        }
        self.check_links()
    }

    /// Records a [`Sample`] for the interval ending now.
    fn sample(&mut self) {
        let Some(timeline) = self.timeline.as_mut() else {
            return;
        };
        let end = self.now;
        let start = timeline
            .samples
            .last()
            .map_or(0, |s| (s.end * 1e9).round() as Nanos);
        let span = end.saturating_sub(start).max(1) as f64;
        let busy = |link: Busy| -> u64 {
            // Intervals that began before the sample's end: links already booked past it (a
            // downlink's queue) count in the next sample.
            let first = (start / timeline.width) as usize;
            let last = end.div_ceil(timeline.width) as usize;
            timeline
                .busy
                .iter()
                .take(last)
                .skip(first)
                .map(|b| b[link as usize])
                .sum()
        };
        let (up, seed_up, down) = (busy(Busy::Up), busy(Busy::SeedUp), busy(Busy::Down));
        let seeds = self.hosts.iter().filter(|h| h.seed).count().max(1) as f64;
        let downloaders = self.hosts.iter().filter(|h| !h.seed).count().max(1) as f64;
        let pieces = self.geometry.piece_count() as usize;
        let mut copies = vec![0usize; pieces];
        let mut sample = Sample {
            end: end as f64 / 1e9,
            up_busy: up as f64 / (span * downloaders),
            seed_busy: seed_up as f64 / (span * seeds),
            down_busy: down as f64 / (span * downloaders),
            ..Sample::default()
        };
        let mut active = 0usize;
        for h in self.hosts.iter().filter(|h| !h.seed) {
            let held = h.stored.iter().filter(|&&s| s).count();
            for (c, _) in copies.iter_mut().zip(&h.stored).filter(|(_, s)| **s) {
                *c += 1;
            }
            sample.holding += usize::from(held > 0);
            sample.uploaded_any += usize::from(h.swarm.stats().uploaded > 0);
            if h.completed.is_some() {
                sample.done += 1;
                continue;
            }
            active += 1;
            sample.pieces += held as f64 / pieces as f64;
            sample.flows += (h.uplink.queued() + usize::from(h.uplink.busy)) as f64;
            let counts = h.swarm.peer_counts();
            sample.interested_in_us += counts.interested_in_us as f64;
            sample.uploading_to += counts.uploading_to as f64;
            sample.we_want += counts.we_want as f64;
            sample.may_ask += counts.may_ask as f64;
            sample.asked += counts.asked as f64;
            sample.requests += counts.requests as f64;
        }
        let active = active.max(1) as f64;
        for mean in [
            &mut sample.pieces,
            &mut sample.flows,
            &mut sample.interested_in_us,
            &mut sample.uploading_to,
            &mut sample.we_want,
            &mut sample.may_ask,
            &mut sample.asked,
            &mut sample.requests,
        ] {
            *mean /= active;
        }
        sample.copies_min = copies.iter().copied().min().unwrap_or(0);
        sample.copies_max = copies.iter().copied().max().unwrap_or(0);
        timeline.samples.push(sample);
    }

    fn handle(&mut self, event: Event) -> Result<(), SimError> {
        match event {
            Event::Announce { host } => self.announce(host),
            Event::Redial { host } => {
                self.redial(host);
                Ok(())
            }
            Event::Handshake { from, to } => self.handshake(from, to),
            Event::UplinkDone {
                host,
                conn,
                message,
            } => {
                self.hosts[host].uplink.busy = false;
                self.route(host, conn, message);
                self.start_uplink(host);
                Ok(())
            }
            Event::Arrive { conn, to, message } => {
                if self.conns[conn].open {
                    let host = &mut self.hosts[to];
                    let from = host.downlink.free_at().max(self.now);
                    let at = host.downlink.pass(self.now, message.wire_len(), host.down);
                    if let Some(timeline) = self.timeline.as_mut()
                        && !host.seed
                    {
                        timeline.add(Busy::Down, from, at);
                    }
                    self.queue.push(at, Event::Deliver { conn, to, message });
                }
                Ok(())
            }
            Event::Deliver { conn, to, message } => self.deliver(conn, to, message),
            Event::Closed { host, conn } => {
                let now = self.now_d();
                self.hosts[host].swarm.handle_disconnected(now, key(conn));
                self.after(host)
            }
            Event::Hashed { host, piece } => self.hashed(host, piece),
            // Taken in `play`, outside the trace.
            Event::Sample => Ok(()),
            Event::Timer { host } => {
                if self.hosts[host].timer == Some(self.now) {
                    self.hosts[host].timer = None;
                    let now = self.now_d();
                    self.hosts[host].swarm.handle_timeout(now);
                }
                self.after(host)
            }
        }
    }

    fn now_d(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    fn latency(&self, a: usize, b: usize) -> Nanos {
        let (sa, sb) = (self.hosts[a].site, self.hosts[b].site);
        let mut latency = nanos(self.scenario.latency);
        if sa != sb {
            latency += nanos(self.scenario.sites[sa].wan_latency);
        }
        latency
    }

    fn invariant(&self, host: usize, what: impl Into<String>) -> SimError {
        SimError::Invariant {
            at: self.now as f64 / 1e9,
            host,
            what: what.into(),
        }
    }

    // ----- peers -----

    /// How many more peers `host` may dial: it dials only into half its connections, leaving
    /// the rest for hosts that dial it (as the driver does: `SessionConfig::dial_budget`).
    fn dial_room(&self, host: usize) -> usize {
        self.scenario
            .max_peers
            .div_ceil(2)
            .saturating_sub(self.hosts[host].links.len())
    }

    /// `host` announces `event` to the tracker, asking for up to `numwant` peers, and gets the
    /// hosts the tracker names. A host names its site (`shoal_site`, as an agent with a `site`
    /// label does) when the scenario has more than one and [`Scenario::announce_sites`], so the
    /// tracker's site rules apply: its own site's peers, and peers elsewhere only for the
    /// site's bridges while it has no seed. A refusal, or a peer that is not another host, is
    /// an error: the scenario sized the tracker for every host.
    fn tell_tracker(
        &mut self,
        host: usize,
        event: AnnounceEvent,
        numwant: usize,
    ) -> Result<Vec<usize>, SimError> {
        let h = &self.hosts[host];
        let mut peer_id = [0u8; 20];
        peer_id[..8].copy_from_slice(&(host as u64).to_be_bytes());
        let request = AnnounceRequest {
            info_hash: [0x5a; 20],
            peer_id,
            port: LISTEN_PORT,
            uploaded: 0,
            downloaded: 0,
            left: if h.seed || h.completed.is_some() {
                0
            } else {
                self.scenario.size
            },
            event: Some(event),
            compact: true,
            numwant: Some(u32::try_from(numwant).unwrap_or(u32::MAX)),
            key: None,
            ip: None,
            no_peer_id: true,
            tracker_id: None,
            site: (self.scenario.announce_sites && self.scenario.sites.len() > 1)
                .then(|| format!("site-{}", h.site)),
        };
        let now_ms = self.now / 1_000_000;
        let seed = self.rng.next_u64();
        match self
            .tracker
            .announce(now_ms, &request, host_address(host), seed)
        {
            AnnounceReply::Ok(response) => response
                .peers
                .iter()
                .map(|peer| {
                    match peer.ip() {
                        IpAddr::V4(ip) => Some((u32::from(ip) & 0x00ff_ffff) as usize),
                        IpAddr::V6(_) => None,
                    }
                    .filter(|&to| to < self.hosts.len() && to != host)
                    .ok_or_else(|| self.invariant(host, format!("the tracker named {peer}")))
                })
                .collect(),
            AnnounceReply::Failure(reason) => {
                Err(self.invariant(host, format!("the tracker refused an announce: {reason}")))
            }
        }
    }

    /// `host` announces and dials, in the order the tracker listed them, as many of the hosts
    /// it names as its [`World::dial_room`] allows.
    fn announce(&mut self, host: usize) -> Result<(), SimError> {
        let want = self.scenario.numwant.min(self.dial_room(host));
        let order = self.tell_tracker(host, AnnounceEvent::Started, want)?;
        for &to in &order {
            self.dial(host, to);
        }
        let next = self.now + REDIAL;
        self.hosts[host].learned = order.into_iter().map(|to| (to, next, REDIAL)).collect();
        self.queue.push(next, Event::Redial { host });
        Ok(())
    }

    fn dial(&mut self, from: usize, to: usize) {
        // TCP's handshake, then both BitTorrent handshakes: two round trips.
        let at = self.now + 4 * self.latency(from, to);
        self.queue.push(at, Event::Handshake { from, to });
    }

    /// What the driver does every `REDIAL_INTERVAL` while downloading: dials learned peers it
    /// is not connected to, while its dial budget has room (a full peer refused us earlier;
    /// it may have room now).
    fn redial(&mut self, host: usize) {
        if self.hosts[host].completed.is_some() {
            return;
        }
        let mut room = self.dial_room(host);
        let mut learned = std::mem::take(&mut self.hosts[host].learned);
        for (to, at, wait) in &mut learned {
            if room == 0 {
                break;
            }
            if *at > self.now || self.pairs.contains(&(host.min(*to), host.max(*to))) {
                continue;
            }
            self.dial(host, *to);
            *wait = (*wait * 2).min(MAX_REDIAL);
            *at = self.now + *wait;
            room -= 1;
        }
        self.hosts[host].learned = learned;
        self.queue.push(self.now + REDIAL, Event::Redial { host });
    }

    fn handshake(&mut self, from: usize, to: usize) -> Result<(), SimError> {
        let max = self.scenario.max_peers;
        let pair = (from.min(to), from.max(to));
        if from == to || self.hosts[from].links.len() >= max || self.pairs.contains(&pair) {
            return Ok(());
        }
        if self.hosts[to].links.len() >= max {
            // Full: the host that dialled takes the place of a peer picked at random, as the
            // driver does (`SessionConfig::max_peers`), unless it made room here lately.
            let now = self.now;
            let evictors = &mut self.hosts[to].evictors;
            if evictors
                .get(&from)
                .is_some_and(|&last| now - last < EVICTION_COOLDOWN)
            {
                return Ok(());
            }
            evictors.insert(from, now);
            let links = &self.hosts[to].links;
            let victim = links[(self.rng.next_u64() % links.len() as u64) as usize];
            self.close(to, victim);
            let now = self.now_d();
            self.hosts[to].swarm.handle_disconnected(now, key(victim));
            self.after(to)?;
        }
        self.pairs.insert(pair);
        let conn = self.conns.len();
        self.conns.push(Conn {
            ends: [from, to],
            open: true,
            out: [VecDeque::new(), VecDeque::new()],
            urgent: [Vec::new(), Vec::new()],
            ordered: [0, 0],
            last_arrival: [0, 0],
        });
        let now = self.now_d();
        for (a, b) in [(from, to), (to, from)] {
            self.hosts[a].links.push(conn);
            let reserved = self.hosts[b].swarm.reserved();
            self.hosts[a]
                .swarm
                .handle_connected(now, key(conn), reserved);
        }
        self.after(from)?;
        self.after(to)
    }

    fn close(&mut self, host: usize, conn: usize) {
        let c = &mut self.conns[conn];
        if !c.open {
            return;
        }
        c.open = false;
        c.out = [VecDeque::new(), VecDeque::new()];
        c.urgent = [Vec::new(), Vec::new()];
        c.ordered = [0, 0];
        let other = c.ends[1 - c.side(host)];
        let pair = (host.min(other), host.max(other));
        self.pairs.remove(&pair);
        for end in [host, other] {
            self.hosts[end].links.retain(|&l| l != conn);
        }
        let at = self.now + self.latency(host, other);
        self.queue.push(at, Event::Closed { host: other, conn });
    }

    // ----- links -----

    fn enqueue(&mut self, host: usize, conn: usize, message: Message) {
        let c = &mut self.conns[conn];
        if !c.open {
            return;
        }
        let side = c.side(host);
        let was_empty = c.out[side].is_empty() && c.urgent[side].is_empty();
        match message {
            Message::Frames(frames)
                if c.ordered[side] == 0 && shoal_wire::may_overtake_blocks(&frames) =>
            {
                c.urgent[side].extend_from_slice(&frames);
            }
            Message::Frames(frames) => {
                c.ordered[side] += 1;
                c.out[side].push_back(Message::Frames(frames));
            }
            block @ Message::Block(_) => c.out[side].push_back(block),
        }
        if was_empty {
            self.hosts[host].uplink.ready(conn);
        }
        self.start_uplink(host);
    }

    fn start_uplink(&mut self, host: usize) {
        if self.hosts[host].uplink.busy {
            return;
        }
        while let Some(conn) = self.hosts[host].uplink.take_turn() {
            let c = &mut self.conns[conn];
            let side = c.side(host);
            let message = if c.urgent[side].is_empty() {
                let Some(mut message) = c.out[side].pop_front() else {
                    continue;
                };
                // Frames queued behind each other leave together, as the driver's writer
                // coalesces them into one write: one event instead of one per `have`.
                if let Message::Frames(frames) = &mut message {
                    c.ordered[side] -= 1;
                    while let Some(Message::Frames(next)) = c.out[side].front() {
                        frames.extend_from_slice(next);
                        c.out[side].pop_front();
                        c.ordered[side] -= 1;
                    }
                }
                message
            } else {
                Message::Frames(std::mem::take(&mut c.urgent[side]))
            };
            if !c.out[side].is_empty() || !c.urgent[side].is_empty() {
                self.hosts[host].uplink.ready(conn);
            }
            let h = &mut self.hosts[host];
            let bytes = message.wire_len();
            h.uplink.busy = true;
            h.uplink.bytes += bytes;
            let at = self.now + transmit_nanos(bytes, h.up);
            h.uplink.free_at = at;
            let link = if h.seed { Busy::SeedUp } else { Busy::Up };
            if let Some(timeline) = self.timeline.as_mut() {
                timeline.add(link, self.now, at);
            }
            self.queue.push(
                at,
                Event::UplinkDone {
                    host,
                    conn,
                    message,
                },
            );
            return;
        }
    }

    /// A message left `from`'s uplink: across the sites' links if it must, then the latency,
    /// then the receiver's downlink.
    fn route(&mut self, from: usize, conn: usize, message: Message) {
        let c = &self.conns[conn];
        if !c.open {
            return;
        }
        let to_side = 1 - c.side(from);
        let to = c.ends[to_side];
        let (sa, sb) = (self.hosts[from].site, self.hosts[to].site);
        let mut at = self.now;
        if sa != sb {
            let bytes = message.wire_len();
            at = self.wan[sa][0].pass(at, bytes, self.wan_rates[sa]);
            at = self.wan[sb][1].pass(at, bytes, self.wan_rates[sb]);
        }
        at += self.latency(from, to);
        if self.scenario.loss > 0.0 {
            let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if draw < self.scenario.loss {
                at += nanos(self.scenario.rto);
            }
        }
        let c = &mut self.conns[conn];
        at = at.max(c.last_arrival[to_side]);
        c.last_arrival[to_side] = at;
        self.queue.push(at, Event::Arrive { conn, to, message });
    }

    /// No link has carried more than its rate allows by the time its last message left
    /// (rounding each transmission up to a nanosecond only ever adds time).
    fn check_links(&self) -> Result<(), SimError> {
        let within = |bytes: u64, rate: f64, until: Nanos| {
            rate.is_infinite() || bytes as f64 <= rate * (until as f64 / 1e9) * (1.0 + 1e-9) + 1.0
        };
        for (i, h) in self.hosts.iter().enumerate() {
            if !within(h.uplink.bytes, h.up, h.uplink.free_at) {
                return Err(self.invariant(i, "its uplink sent faster than its rate"));
            }
            if !within(h.downlink.bytes, h.down, h.downlink.free_at()) {
                return Err(self.invariant(i, "its downlink took more than its rate"));
            }
        }
        for (site, links) in self.wan.iter().enumerate() {
            for link in links {
                if !within(link.bytes, self.wan_rates[site], link.free_at()) {
                    return Err(self.invariant(0, format!("site {site}'s link beat its rate")));
                }
            }
        }
        Ok(())
    }

    // ----- engines -----

    fn deliver(&mut self, conn: usize, to: usize, message: Message) -> Result<(), SimError> {
        if !self.conns[conn].open {
            return Ok(());
        }
        let now = self.now_d();
        let swarm = &mut self.hosts[to].swarm;
        match message {
            Message::Block(block) => swarm.handle_message(
                now,
                key(conn),
                Wire::Piece {
                    piece: block.piece.get(),
                    offset: block.offset,
                    data: &ZEROS[..block.len as usize],
                },
            ),
            Message::Frames(frames) => {
                let mut rest = &frames[..];
                while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                    let len = u32::from_be_bytes(*len) as usize;
                    let Some(frame) = tail.get(..len) else {
                        return Err(self.invariant(to, "an engine sent a truncated frame"));
                    };
                    if let Err(e) =
                        swarm.handle_frame(now, key(conn), Bytes::copy_from_slice(frame))
                    {
                        return Err(self.invariant(to, format!("an engine sent a bad frame: {e}")));
                    }
                    rest = &tail[len..];
                }
            }
        }
        self.after(to)
    }

    fn hashed(&mut self, host: usize, piece: shoal_metainfo::PieceIndex) -> Result<(), SimError> {
        let index = piece.get();
        let Some(pending) = self.hosts[host].pending.remove(&index) else {
            return Err(self.invariant(host, format!("piece {index} hashed but never written")));
        };
        let honest = |sender: &Option<usize>| {
            sender.is_some_and(|s| self.hosts[s].behaviour == Behaviour::Honest)
        };
        let passed = pending.senders.iter().all(honest);
        let block_digests = pending.digests.then(|| {
            pending
                .senders
                .iter()
                .map(|s| {
                    let mut digest = [0u8; 32];
                    if !honest(s) {
                        digest[..8].copy_from_slice(&(s.unwrap_or(0) as u64 + 1).to_be_bytes());
                    }
                    shoal_metainfo::Sha256Hash(digest)
                })
                .collect()
        });
        self.hosts[host].passed[index as usize] = passed;
        let now = self.now_d();
        self.hosts[host].swarm.handle_verified(
            now,
            piece,
            Verification {
                passed,
                block_digests,
            },
        );
        self.after(host)
    }

    /// Carries out what `host`'s engine asked for, checks invariants, and sets its timer.
    fn after(&mut self, host: usize) -> Result<(), SimError> {
        while let Some(command) = self.hosts[host].swarm.poll_command() {
            self.command(host, command)?;
        }
        let h = &mut self.hosts[host];
        h.steps = h.steps.wrapping_add(1);
        let check = match self.scenario.invariants {
            Invariants::EveryStep => true,
            Invariants::EveryNth(n) => h.steps.is_multiple_of(n.max(1)),
            Invariants::SimulatorOnly => false,
        };
        if check && let Err(what) = h.swarm.check_invariants() {
            return Err(self.invariant(host, format!("engine: {what}")));
        }
        let h = &mut self.hosts[host];
        let wake = nanos(h.swarm.poll_timeout()).max(self.now);
        if h.timer.is_none_or(|t| wake < t) {
            h.timer = Some(wake);
            self.queue.push(wake, Event::Timer { host });
        }
        Ok(())
    }

    fn command(&mut self, host: usize, command: Command) -> Result<(), SimError> {
        match command {
            Command::Send { peer, frame } => {
                self.enqueue(host, peer.0 as usize, Message::Frames(frame));
            }
            Command::Read { peer, block } => {
                if !self.hosts[host].stored[block.piece.get() as usize] {
                    return Err(self.invariant(
                        host,
                        format!("uploads piece {} it has not verified", block.piece.get()),
                    ));
                }
                self.enqueue(host, peer.0 as usize, Message::Block(block));
            }
            Command::Write { peer, block, .. } => self.write(host, peer, block)?,
            Command::Verify {
                piece,
                block_digests,
            } => {
                let h = &mut self.hosts[host];
                let complete = h
                    .pending
                    .get_mut(&piece.get())
                    .filter(|p| p.senders.iter().all(Option::is_some));
                let Some(pending) = complete else {
                    return Err(self.invariant(
                        host,
                        format!(
                            "verifies piece {} before every block is written",
                            piece.get()
                        ),
                    ));
                };
                pending.digests = block_digests;
                let len = u64::from(self.geometry.piece_len(piece));
                let at = h.hasher.pass(self.now, len, self.scenario.hash_rate);
                self.queue.push(at, Event::Hashed { host, piece });
            }
            Command::Verified { piece } => {
                let h = &mut self.hosts[host];
                let index = piece.get() as usize;
                if !std::mem::take(&mut h.passed[index]) {
                    return Err(self.invariant(
                        host,
                        format!("records piece {index}, which failed its check"),
                    ));
                }
                h.stored[index] = true;
            }
            Command::Disconnect { peer, .. } => self.close(host, peer.0 as usize),
            Command::Ban { peer } => {
                self.bans += 1;
                self.close(host, peer.0 as usize);
            }
            Command::Completed => {
                let h = &mut self.hosts[host];
                if !h.stored.iter().all(|&s| s) {
                    return Err(self.invariant(host, "complete without every piece recorded"));
                }
                if h.completed.is_none() {
                    h.completed = Some(self.now);
                    self.unfinished -= 1;
                    // The agent's announcer says so at once: its site now has a seed.
                    self.tell_tracker(host, AnnounceEvent::Completed, 0)?;
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, host: usize, peer: PeerKey, block: BlockRef) -> Result<(), SimError> {
        let conn = &self.conns[peer.0 as usize];
        let sender = conn.ends[1 - conn.side(host)];
        let index = block.piece.get();
        let blocks = self.geometry.blocks_in(block.piece) as usize;
        let h = &mut self.hosts[host];
        if h.stored[index as usize] {
            return Err(self.invariant(host, format!("writes into verified piece {index}")));
        }
        let pending = h.pending.entry(index).or_insert_with(|| Pending {
            senders: vec![None; blocks],
            digests: false,
        });
        let slot = (block.offset / BLOCK_SIZE) as usize;
        match pending.senders.get_mut(slot) {
            Some(s) => *s = Some(sender),
            None => return Err(self.invariant(host, format!("writes outside piece {index}"))),
        }
        Ok(())
    }

    fn report(&self) -> Report {
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let stats = h.swarm.stats();
                HostReport {
                    site: h.site,
                    seed: h.seed,
                    completed: h.completed.map(|t| t as f64 / 1e9),
                    uploaded: stats.uploaded,
                    downloaded: stats.downloaded,
                    wire_up: h.uplink.bytes,
                }
            })
            .collect();
        Report {
            hosts,
            lower_bound: self.scenario.lower_bound(),
            size: self.scenario.size,
            inter_site_bytes: self.wan.iter().map(|w| w[0].bytes).sum(),
            bans: self.bans,
            events: self.events,
            end: self.now as f64 / 1e9,
            trace_digest: self.digest,
            timeline: self
                .timeline
                .as_ref()
                .map(|t| t.samples.clone())
                .unwrap_or_default(),
        }
    }
}
