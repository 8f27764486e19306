//! The session: one torrent's event loop. It owns the engine and every peer handle.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_metainfo::{Geometry, MetaVersion, PieceIndex, PieceVerifier, Torrent};
use shoal_storage::{PieceStore, StorageError};
use shoal_swarm::{Command, PeerKey, Stats, Swarm, Verification};
use shoal_wire::{Handshake, Reserved};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connection::{self, Established, Link};
use crate::error::DriverError;
use crate::limits::{HostLimits, Limits};
use crate::storage_worker::{self, Op};
use crate::tracker::Announcer;
use crate::web_seed::{WebLink, WebSeed};
use crate::write_budget::{WRITE_BUDGET, WriteBudget, block_bytes};

/// How often peers named in the configuration are dialled again while not connected.
const REDIAL_INTERVAL: Duration = Duration::from_secs(3);
/// The longest pause between redials of a peer a tracker named (each failure doubles it).
const MAX_LEARNED_REDIAL: Duration = Duration::from_secs(60);
/// How many tracker-named peers a download remembers for redialling.
const MAX_LEARNED: usize = 1000;
/// How long after a peer's address made room for it (a peer dropped) a newcomer from the same
/// address is let go instead: a host that reconnects in a loop churns one peer per cooldown,
/// not one per connection.
const EVICTION_COOLDOWN: Duration = Duration::from_secs(30);
/// The most addresses whose last eviction is remembered; past it, the expired are forgotten.
const MAX_EVICTORS: usize = 4096;

/// What the session needs. Defaults are the caller's; see each field.
pub struct SessionConfig {
    /// The torrent.
    pub torrent: Arc<Torrent>,
    /// Where its bytes live.
    pub store: Arc<dyn PieceStore>,
    /// Hash-check every piece the store has not recorded as verified before starting (seeding
    /// existing data, or resuming after a crash).
    pub recheck: bool,
    /// Fail with [`DriverError::DataMismatch`] unless every piece passes that check (seeding).
    pub require_complete: bool,
    /// Where to accept peers; `None` for outbound connections only. With `inbound` set, the
    /// address is only advertised (to trackers); the shared listener accepts.
    pub listen: Option<SocketAddr>,
    /// Connections from a [`PeerListener`](crate::PeerListener) shared with other sessions,
    /// instead of a socket of our own.
    pub inbound: Option<crate::Inbound>,
    /// Peers to connect to.
    pub peers: Vec<SocketAddr>,
    /// Tracker tiers to announce to (BEP 12); usually `torrent.trackers()`.
    pub trackers: Vec<Vec<String>>,
    /// Web seed URLs (BEP 19); usually `torrent.web_seeds`. Used while downloading.
    pub web_seeds: Vec<String>,
    /// The engine's settings.
    pub swarm: shoal_swarm::Config,
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// After completing: `None` stops at once; `Some(d)` keeps seeding for `d` (until shutdown
    /// for `Duration::MAX`).
    pub seed_for: Option<Duration>,
    /// The most peers connected at once. We dial peers the tracker names only while fewer
    /// than half that many are connected ([`SessionConfig::dial_budget`]); the other half is
    /// for peers that dial us. When full, a peer that dials us takes the place of a peer picked
    /// at random: the first hosts of a swarm to announce know only each other, and would
    /// otherwise fill up with each other and stay a clique that latecomers cannot reach (in
    /// `shoal-sim`, the first 50 of 1,000 hosts kept two thirds of their links among
    /// themselves and finished last; with the swap, 1,000 hosts finish in 1.43 x the lower
    /// bound instead of 1.61). A newcomer from an address that made room less than 30 s ago
    /// is let go, so a peer reconnecting in a loop cannot churn every peer.
    pub max_peers: usize,
    /// Limits shared with the host's other sessions (rate caps, no uploads, fewer peers),
    /// followed live as they change. `HostLimits::default()` limits nothing.
    pub limits: HostLimits,
    /// The site this host is in (its `site` label), sent to trackers as `shoal_site`: a Shoal
    /// tracker then names peers of the same site, so data crosses between sites once per site.
    pub site: Option<String>,
}

impl SessionConfig {
    /// How many connections we fill by dialling peers we learned of: half of
    /// [`SessionConfig::max_peers`]. If hosts dialled until they were full, the first few hundred
    /// of a large swarm would fill each other up, refuse everyone who came later, and leave the
    /// latecomers connected only among themselves, with no copy of the data (the simulator
    /// found it at 400 hosts with 200 peers each).
    pub fn dial_budget(&self) -> usize {
        self.max_peers.div_ceil(2)
    }
}

/// A snapshot for progress displays.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Pieces verified.
    pub have: u32,
    /// All pieces.
    pub total: u32,
    /// Pieces hash-checked so far during the initial check (`None` once it is over).
    pub checking: Option<u32>,
    /// Pieces the initial check hashed: those on disk that the resume record did not vouch
    /// for. 0 when the record covered everything or the data was trusted as complete.
    pub rechecked: u32,
    /// Engine counters.
    pub stats: Stats,
    /// Connected peers.
    pub peers: usize,
    /// Every piece verified and the data at its destination.
    pub complete: bool,
    /// Announces to trackers so far, and how long they took.
    pub announces: AnnounceStats,
}

/// Announces a session made, for metrics: counts and the total time they took (mean latency
/// is `micros / (ok + failed)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Announces a tracker answered.
    pub ok: u64,
    /// Announces that failed (unreachable, timed out, refused, unreadable answer).
    pub failed: u64,
    /// Microseconds spent on all of them.
    pub micros: u64,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Engine counters.
    pub stats: Stats,
    /// Every piece verified and the data at its destination.
    pub complete: bool,
    /// Pieces that failed the initial hash check.
    pub recheck_failed: u32,
    /// Addresses banned for sending data that failed verification.
    pub banned: Vec<IpAddr>,
    /// Web seeds banned for the same reason.
    pub banned_web_seeds: Vec<String>,
}

/// What reaches the session's event loop.
pub(crate) enum Event {
    Connected(Established),
    /// Peers a tracker returned.
    Peers(Vec<SocketAddr>),
    /// One announce finished, successfully or not, after `took`.
    Announced {
        took: Duration,
        ok: bool,
    },
    Frame {
        peer: PeerKey,
        frame: Bytes,
    },
    Closed {
        peer: PeerKey,
        error: Option<String>,
    },
    Verified {
        piece: PieceIndex,
        result: Verification,
    },
    StorageFailed(StorageError),
    ReadFailed {
        peer: PeerKey,
        error: StorageError,
    },
    /// A peer's write queue is full ([`connection::MAX_QUEUED`]): it asked for more than it
    /// reads.
    Overflowing {
        peer: PeerKey,
    },
    Finished(Result<(), StorageError>),
}

/// Runs one torrent until it is complete (and has seeded for `seed_for`), or `shutdown`
/// resolves, or storage fails.
///
/// # Errors
/// [`DriverError`] when the torrent cannot make progress: storage failure, a listening socket
/// that cannot be opened, pieces that cannot be verified.
pub async fn run(
    config: SessionConfig,
    shutdown: impl Future<Output = ()>,
    progress: watch::Sender<Progress>,
) -> Result<Summary, DriverError> {
    let torrent = config.torrent.clone();
    let verifier = Arc::new(PieceVerifier::new(&torrent)?);
    let total = verifier.geometry().piece_count();

    let mut recheck_failed = 0;
    if config.recheck {
        let store = config.store.clone();
        let checker = verifier.clone();
        let report = progress.clone();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (checked, failed) = tokio::task::spawn_blocking(move || {
            storage_worker::recheck(&*store, &checker, threads, &|checked| {
                report.send_modify(|p| p.checking = Some(checked));
            })
        })
        .await
        .map_err(|_| DriverError::StorageThread)??;
        recheck_failed = failed;
        progress.send_modify(|p| p.rechecked = checked);
        config.store.flush()?;
        if config.require_complete && recheck_failed > 0 {
            return Err(DriverError::DataMismatch {
                bad: recheck_failed,
                total,
            });
        }
    }
    progress.send_modify(|p| {
        p.checking = None;
        p.total = total;
    });

    let info = torrent.info();
    let v2 = info.version.has_v2();
    let hashes = torrent.info_hashes();
    let mut accepted = Vec::new();
    if let Some(v1) = hashes.v1() {
        accepted.push(v1.0);
    }
    if let Some(v2) = hashes.v2() {
        accepted.push(v2.truncated().0);
    }
    // We introduce ourselves with the v1 info-hash when there is one (every client knows it),
    // the truncated v2 one otherwise; we accept either from others.
    let our_hash = accepted.first().copied().unwrap_or_default();
    let mut swarm = Swarm::new(
        config.swarm.clone(),
        verifier.geometry().clone(),
        config.store.verified(),
        Some(torrent.info_bytes().to_vec()),
        v2,
    );
    // Requests may run past the data: v1 peers of a hybrid ask for padded pieces, and
    // libtorrent asks for whole 16 KiB blocks at the end of v2 files. Storage serves zeros.
    let padded = match info.version {
        MetaVersion::Hybrid => Geometry::new(
            info.piece_length,
            [info.files.iter().map(|f| f.length).sum()],
        )
        .ok(),
        MetaVersion::V2 => Geometry::new(
            info.piece_length,
            info.data_files().map(|f| {
                f.length
                    .next_multiple_of(u64::from(shoal_metainfo::BLOCK_SIZE))
            }),
        )
        .ok(),
        MetaVersion::V1 => None,
    };
    if let Some(padded) = padded {
        swarm = swarm.with_request_geometry(padded);
    }
    let handshake = Handshake {
        reserved: swarm.reserved(),
        info_hash: our_hash,
        peer_id: config.peer_id,
    };

    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    let (ops_tx, ops_rx) = std::sync::mpsc::channel::<Op>();
    // Received block bytes not yet on disk: readers wait when it runs out.
    let write_budget = WriteBudget::new(WRITE_BUDGET);
    let storage_thread = {
        let budget = write_budget.clone();
        let store = config.store.clone();
        let verifier = verifier.clone();
        let events = events_tx.clone();
        std::thread::Builder::new()
            .name("shoal-storage".into())
            .spawn(move || storage_worker::run(store, verifier, ops_rx, events, budget))
            .map_err(|_| DriverError::StorageThread)?
    };

    let accepted = Arc::new(accepted);
    let mut config = config;
    let shared = config.inbound.take();
    let listener = match config.listen {
        Some(_) if shared.is_some() => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| DriverError::Listen { addr, source })?,
        ),
        None => None,
    };
    let accept_task = listener.map(|listener| {
        let events = events_tx.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, addr)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let events = events.clone();
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    match connection::handshake(stream, addr, handshake, &accepted, false).await {
                        Ok(done) => {
                            let _ = events.send(Event::Connected(done)).await;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %addr, error = %e, "inbound handshake failed")
                        }
                    }
                });
            }
        })
    });
    let shared_task = shared.map(|mut inbound| {
        let events = events_tx.clone();
        tokio::spawn(async move {
            while let Some(arrival) = inbound.receiver.recv().await {
                let events = events.clone();
                tokio::spawn(async move {
                    let addr = arrival.addr;
                    match connection::complete(
                        arrival.stream,
                        addr,
                        handshake,
                        arrival.theirs,
                        arrival.leftover,
                        true,
                    )
                    .await
                    {
                        Ok(done) => {
                            let _ = events.send(Event::Connected(done)).await;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %addr, error = %e, "inbound handshake failed")
                        }
                    }
                });
            }
        })
    });
    let source = config.listen.map(|l| l.ip());
    let dial = |addr: SocketAddr| {
        connection::dial(addr, source, handshake, accepted.clone(), events_tx.clone())
    };
    // The latest dial of each configured peer, so a slow handshake is not doubled.
    let mut pending: HashMap<SocketAddr, tokio::task::JoinHandle<()>> = HashMap::new();
    for &addr in &config.peers {
        pending.insert(addr, dial(addr));
    }
    // Peers named in the configuration are dialled again while they are not connected (a seed
    // may still be checking its files, or restarting).
    let mut redial = tokio::time::interval_at(Instant::now() + REDIAL_INTERVAL, REDIAL_INTERVAL);
    // Peers a tracker named, dialled again while the download is not complete, each on its
    // own back-off: a seed that restarts is back within seconds, not at the next announce.
    let mut learned: HashMap<SocketAddr, Redial> = HashMap::new();

    let (stop_announcing, announce_stop) = tokio::sync::oneshot::channel();
    let announce_task = (!config.trackers.is_empty()).then(|| {
        let announcer = Announcer {
            last_error: HashMap::new(),
            tiers: config.trackers.clone(),
            info_hash: our_hash,
            peer_id: config.peer_id,
            port: config.listen.map_or(0, |a| a.port()),
            ip: config
                .listen
                .map(|a| a.ip())
                .filter(|ip| !ip.is_unspecified()),
            total_size: info.total_size(),
            piece_length: info.piece_length.bytes(),
            site: config.site.clone(),
        };
        tokio::spawn(announcer.run(progress.subscribe(), events_tx.clone(), announce_stop))
    });

    let epoch = Instant::now();
    let mut peers: HashMap<PeerKey, Link> = HashMap::new();
    // Every key's address, kept after it disconnects: smart ban may blame a peer later.
    let mut addresses: HashMap<PeerKey, SocketAddr> = HashMap::new();
    let mut next_key = 0u64;
    let mut banned: HashSet<IpAddr> = HashSet::new();
    // Picks the peer that makes room for a newcomer when we are full.
    let mut eviction = shoal_swarm::Rng::new(!config.swarm.seed);
    // When each address last made room for itself (see `EVICTION_COOLDOWN`).
    let mut evictors: HashMap<IpAddr, Instant> = HashMap::new();
    let mut finished = swarm.is_complete() && config.store.finish().is_ok();
    let mut seed_until: Option<Instant> = None;
    let mut failure: Option<DriverError> = None;
    let mut verified_since_flush = 0u32;
    // Write budget taken by the readers for the blocks handled in this turn of the loop.
    let mut budget_taken = 0usize;
    let mut last_flush = Instant::now();
    if finished {
        seed_until = config
            .seed_for
            .map(|d| Instant::now().checked_add(d).unwrap_or_else(far_future));
    }
    // Web seeds join as peers that have everything, while there is something to download.
    let mut web: HashMap<PeerKey, WebLink> = HashMap::new();
    let mut banned_web: Vec<String> = Vec::new();
    if !finished && !config.web_seeds.is_empty() {
        match shoal_storage::Layout::new(info) {
            Ok(layout) => {
                let layout = Arc::new(layout);
                for url in &config.web_seeds {
                    match WebSeed::new(url, info, layout.clone()) {
                        Ok(seed) => {
                            let key = PeerKey(next_key);
                            next_key += 1;
                            web.insert(
                                key,
                                WebLink::start(
                                    seed,
                                    key,
                                    events_tx.clone(),
                                    write_budget.clone(),
                                    config.limits.clone(),
                                ),
                            );
                            swarm.handle_connected(epoch.elapsed(), key, Reserved::shoal(false));
                        }
                        Err(e) => tracing::warn!(web_seed = %url, error = %e, "web seed not used"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "web seeds not used"),
        }
    }
    let publish = |swarm: &Swarm, peers: usize, complete: bool| {
        progress.send_modify(|p| {
            p.have = swarm.have().count();
            p.stats = swarm.stats();
            p.peers = peers;
            p.complete = complete;
        });
    };
    // The host's limits, now and as a policy changes them.
    let most_peers = config.max_peers;
    let upload_slots = config.swarm.upload_slots;
    let mut limits = config.limits.subscribe();
    apply_limits(
        &mut swarm,
        &mut config,
        &mut peers,
        epoch.elapsed(),
        *limits.borrow_and_update(),
        most_peers,
        upload_slots,
    );
    tokio::pin!(shutdown);

    loop {
        if finished && seed_until.is_none_or(|until| Instant::now() >= until) {
            break;
        }
        let deadline = epoch + swarm.poll_timeout();
        let seed_deadline = seed_until.unwrap_or_else(far_future);
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(seed_deadline), if seed_until.is_some() => break,
            () = tokio::time::sleep_until(deadline) => swarm.handle_timeout(epoch.elapsed()),
            Ok(()) = limits.changed() => {
                let now = epoch.elapsed();
                let new = *limits.borrow_and_update();
                tracing::debug!(?new, "host limits changed");
                apply_limits(&mut swarm, &mut config, &mut peers, now, new, most_peers, upload_slots);
            }
            _ = redial.tick(), if wants_peers(&config, finished, seed_until) || !finished && !learned.is_empty() => {
                pending.retain(|_, dial| !dial.is_finished());
                let connected: HashSet<SocketAddr> = peers.values().map(|h| h.addr).collect();
                for &addr in &config.peers {
                    let dialling = pending.get(&addr).is_some_and(|d| !d.is_finished());
                    if !connected.contains(&addr) && !banned.contains(&addr.ip()) && !dialling {
                        pending.insert(addr, dial(addr));
                    }
                }
                if !finished {
                    let now = Instant::now();
                    let mut room = config.dial_budget().saturating_sub(peers.len());
                    for (&addr, next) in &mut learned {
                        let dialling = pending.get(&addr).is_some_and(|d| !d.is_finished());
                        if room == 0 {
                            break;
                        }
                        if connected.contains(&addr) || dialling || banned.contains(&addr.ip()) || now < next.at {
                            continue;
                        }
                        pending.insert(addr, dial(addr));
                        next.wait = (next.wait * 2).min(MAX_LEARNED_REDIAL);
                        next.at = now + next.wait;
                        room -= 1;
                    }
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                let now = epoch.elapsed();
                match event {
                    Event::Connected(done) => {
                        if banned.contains(&done.addr.ip()) || finished && seed_until.is_none() {
                            continue;
                        }
                        if peers.len() >= config.max_peers {
                            // Full: a peer that dialled us takes the place of one picked at
                            // random (see `SessionConfig::max_peers`); one we dialled is let go.
                            if !done.inbound {
                                continue;
                            }
                            let at = Instant::now();
                            let ip = done.addr.ip();
                            if evictors.get(&ip).is_some_and(|&last| at.duration_since(last) < EVICTION_COOLDOWN) {
                                tracing::debug!(newcomer = %done.addr, "full: this address made room less than {EVICTION_COOLDOWN:?} ago; letting it go");
                                continue;
                            }
                            let Some(victim) = peers.keys().copied().nth(eviction.below(peers.len())) else {
                                continue;
                            };
                            if evictors.len() >= MAX_EVICTORS {
                                evictors.retain(|_, last| at.duration_since(*last) < EVICTION_COOLDOWN);
                            }
                            if evictors.len() < MAX_EVICTORS {
                                evictors.insert(ip, at);
                            }
                            tracing::debug!(peer = ?peers.get(&victim).map(|h| h.addr), newcomer = %done.addr, "full: making room for a peer that dialled us");
                            drop_peer(&mut peers, victim);
                            swarm.handle_disconnected(now, victim);
                        }
                        if let Some(next) = learned.get_mut(&done.addr) {
                            next.wait = REDIAL_INTERVAL;
                        }
                        let key = PeerKey(next_key);
                        next_key += 1;
                        let (link, theirs) = Link::start(done, key, events_tx.clone(), write_budget.clone(), config.limits.clone());
                        addresses.insert(key, link.addr);
                        peers.insert(key, link);
                        swarm.handle_connected(now, key, theirs.reserved);
                    }
                    Event::Peers(found) => {
                        let connected: HashSet<SocketAddr> = peers.values().map(|h| h.addr).collect();
                        let room = config.dial_budget().saturating_sub(peers.len());
                        let fresh = found.into_iter().filter(|a| !connected.contains(a) && !banned.contains(&a.ip()) && !is_us(a, config.listen));
                        if !(finished && seed_until.is_none()) {
                            for addr in fresh.take(room) {
                                pending.insert(addr, dial(addr));
                                if learned.len() < MAX_LEARNED {
                                    learned.entry(addr).or_insert_with(Redial::new);
                                }
                            }
                        }
                    }
                    Event::Announced { took, ok } => progress.send_modify(|p| {
                        if ok {
                            p.announces.ok += 1;
                        } else {
                            p.announces.failed += 1;
                        }
                        p.announces.micros += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    }),
                    Event::Frame { peer, frame } => {
                        budget_taken += block_bytes(&frame);
                        if let Err(e) = swarm.handle_frame(now, peer, frame) {
                            tracing::debug!(peer = ?peers.get(&peer).map(|h| h.addr), error = %e, "peer broke the protocol");
                            drop_peer(&mut peers, peer);
                            swarm.handle_disconnected(now, peer);
                        }
                    }
                    Event::Closed { peer, error } => {
                        tracing::debug!(peer = ?peers.get(&peer).map(|h| h.addr), error = error.as_deref().unwrap_or("closed"), "peer gone");
                        drop_peer(&mut peers, peer);
                        swarm.handle_disconnected(now, peer);
                    }
                    Event::Verified { piece, result } => {
                        if result.passed {
                            verified_since_flush += 1;
                        }
                        swarm.handle_verified(now, piece, result);
                    }
                    Event::Overflowing { peer } => overflowed(&mut peers, &mut swarm, now, peer),
                    Event::ReadFailed { peer, error } => {
                        tracing::warn!(peer = ?peers.get(&peer).map(|h| h.addr), %error, "cannot read a block to upload");
                        drop_peer(&mut peers, peer);
                        swarm.handle_disconnected(now, peer);
                    }
                    Event::StorageFailed(e) => {
                        failure = Some(e.into());
                        break;
                    }
                    Event::Finished(result) => match result {
                        Ok(()) => {
                            finished = true;
                            seed_until = config.seed_for.map(|d| Instant::now().checked_add(d).unwrap_or_else(far_future));
                        }
                        Err(e) => {
                            failure = Some(e.into());
                            break;
                        }
                    },
                }
            }
        }
        // Carry out what the engine decided.
        let mut overflowing = Vec::new();
        while let Some(command) = swarm.poll_command() {
            match command {
                Command::Send { peer, frame } => {
                    if let Some(link) = peers.get(&peer) {
                        if !link.writer.send(frame) {
                            overflowing.push(peer);
                        }
                    } else if let Some(link) = web.get(&peer) {
                        let _ = link.writer.send(frame);
                    }
                }
                Command::Read { peer, block } => {
                    if let Some(handle) = peers.get(&peer) {
                        let _ = ops_tx.send(Op::Read {
                            peer,
                            block,
                            writer: handle.writer.clone(),
                        });
                    }
                }
                Command::Write { block, data, .. } => {
                    // The storage thread gives this block's budget back once it is written.
                    budget_taken = budget_taken.saturating_sub(data.len());
                    let _ = ops_tx.send(Op::Write { block, data });
                }
                Command::Verify {
                    piece,
                    block_digests,
                } => {
                    let _ = ops_tx.send(Op::Verify {
                        piece,
                        block_digests,
                    });
                }
                Command::Verified { .. } => {}
                Command::Disconnect { peer, reason } => {
                    tracing::debug!(peer = ?peers.get(&peer).map(|h| h.addr), ?reason, "disconnecting");
                    drop_peer(&mut peers, peer);
                    if let Some(link) = web.remove(&peer) {
                        link.close();
                    }
                }
                Command::Ban { peer } => {
                    if let Some(addr) = addresses.get(&peer) {
                        tracing::warn!(peer = %addr, "banned: sent data that failed verification");
                        banned.insert(addr.ip());
                    }
                    drop_peer(&mut peers, peer);
                    if let Some(link) = web.remove(&peer) {
                        tracing::warn!(web_seed = %link.url, "web seed banned: sent data that failed verification");
                        banned_web.push(link.url.clone());
                        link.close();
                    }
                }
                Command::Completed => {
                    let _ = ops_tx.send(Op::Finish);
                }
            }
        }
        // Peers whose queue overflowed asked for more than they read: they go.
        for peer in overflowing {
            overflowed(&mut peers, &mut swarm, epoch.elapsed(), peer);
        }
        // Budget taken for a block the engine did not keep (unwanted, refused) comes back now.
        write_budget.give_back(std::mem::take(&mut budget_taken));
        // Durability in batches: the resume data names every piece verified up to here.
        if verified_since_flush > 0
            && (verified_since_flush >= 64 || last_flush.elapsed() >= Duration::from_secs(2))
        {
            let _ = ops_tx.send(Op::Flush);
            verified_since_flush = 0;
            last_flush = Instant::now();
        }
        publish(&swarm, peers.len() + web.len(), finished);
    }

    // Shut down: close peers, make what was verified durable, stop the storage thread.
    for (_, link) in peers.drain() {
        link.close();
    }
    for (_, link) in web.drain() {
        link.close();
    }
    if let Some(task) = accept_task {
        task.abort();
    }
    if let Some(task) = shared_task {
        task.abort();
    }
    // Tell the trackers we are leaving, briefly: a dead tracker must not hold up the exit.
    let _ = stop_announcing.send(());
    if let Some(task) = announce_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    let _ = ops_tx.send(Op::Flush);
    drop(ops_tx);
    drop(events_tx);
    // Drain events so the storage thread is never blocked sending, then join it.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let joined = tokio::task::spawn_blocking(move || storage_thread.join()).await;
    drain.abort();
    if !matches!(joined, Ok(Ok(()))) {
        return Err(DriverError::StorageThread);
    }
    publish(&swarm, 0, finished);
    if let Some(failure) = failure {
        return Err(failure);
    }
    let mut banned: Vec<IpAddr> = banned.into_iter().collect();
    banned.sort();
    Ok(Summary {
        stats: swarm.stats(),
        complete: finished,
        recheck_failed,
        banned,
        banned_web_seeds: banned_web,
    })
}

/// Returns true if and only if the session still needs the peers named in its configuration:
/// it has some, and it is downloading or seeding.
/// When to dial a tracker-named peer again.
struct Redial {
    at: Instant,
    wait: Duration,
}

impl Redial {
    fn new() -> Self {
        Self {
            at: Instant::now() + REDIAL_INTERVAL,
            wait: REDIAL_INTERVAL,
        }
    }
}

fn wants_peers(config: &SessionConfig, finished: bool, seed_until: Option<Instant>) -> bool {
    !config.peers.is_empty() && (!finished || seed_until.is_some())
}

/// Returns true if and only if `addr` is our own listening socket (trackers return us too).
/// Listening on a specific address, only that address is us (several agents on one host
/// share a port on different loopback addresses); listening on every address, our port on
/// a loopback address is us too.
fn is_us(addr: &SocketAddr, listen: Option<SocketAddr>) -> bool {
    listen.is_some_and(|l| {
        if l.ip().is_unspecified() {
            l.port() == addr.port() && addr.ip().is_loopback()
        } else {
            *addr == l
        }
    })
}

/// Applies the host's `limits` to a running session: no uploads chokes every peer (and more
/// upload slots than that brings them back); fewer peers sheds the excess at once.
fn apply_limits(
    swarm: &mut Swarm,
    config: &mut SessionConfig,
    peers: &mut HashMap<PeerKey, Link>,
    now: Duration,
    limits: Limits,
    most_peers: usize,
    upload_slots: usize,
) {
    swarm.set_upload_slots(now, if limits.uploads() { upload_slots } else { 0 });
    config.max_peers = limits
        .max_peers
        .map_or(most_peers, |m| m.min(most_peers))
        .max(1);
    let excess = peers.len().saturating_sub(config.max_peers);
    let shed: Vec<PeerKey> = peers.keys().copied().take(excess).collect();
    for peer in shed {
        drop_peer(peers, peer);
        swarm.handle_disconnected(now, peer);
    }
}

/// Drops a peer whose write queue overflowed: it asked for more than it reads.
fn overflowed(peers: &mut HashMap<PeerKey, Link>, swarm: &mut Swarm, now: Duration, peer: PeerKey) {
    tracing::debug!(peer = ?peers.get(&peer).map(|h| h.addr), queued_limit = connection::MAX_QUEUED, "peer asked for more than it reads; disconnecting");
    if peers.contains_key(&peer) {
        drop_peer(peers, peer);
        swarm.handle_disconnected(now, peer);
    }
}

fn drop_peer(peers: &mut HashMap<PeerKey, Link>, peer: PeerKey) {
    if let Some(link) = peers.remove(&peer) {
        link.close();
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn a_specific_listen_address_is_us_only_exactly() {
        let listen = Some(addr("127.0.0.2:6881"));
        assert!(is_us(&addr("127.0.0.2:6881"), listen));
        // Another agent on the same host and port, on another loopback address.
        assert!(!is_us(&addr("127.0.0.1:6881"), listen));
        assert!(!is_us(&addr("127.0.0.2:6882"), listen));
    }

    #[test]
    fn listening_everywhere_our_port_on_loopback_is_us() {
        let listen = Some(addr("0.0.0.0:6881"));
        assert!(is_us(&addr("127.0.0.1:6881"), listen));
        assert!(!is_us(&addr("10.0.0.5:6881"), listen));
        assert!(!is_us(&addr("127.0.0.1:6882"), listen));
        assert!(!is_us(&addr("127.0.0.1:6881"), None));
    }
}
