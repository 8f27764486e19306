//! Turning a magnet link into a torrent: connect to the peers we know of (given, in the link,
//! or from its trackers), fetch the info dictionary with BEP 9, and check it against the
//! link's info-hash, before any download starts.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use shoal_metainfo::{Magnet, Torrent};
use shoal_swarm::{Command, MetadataFetch, PeerKey};
use shoal_wire::{Handshake, Message, Reserved};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connection::{self, Link};
use crate::error::DriverError;
use crate::session::{Event, Progress};
use crate::tracker::Announcer;
use crate::write_budget::{WRITE_BUDGET, WriteBudget};

/// How often known peers that are not connected are dialled again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(3);

/// What a metadata fetch found: the torrent and the peers that answered.
pub struct Fetched {
    /// The torrent: the fetched info dictionary, with the link's trackers and web seeds.
    pub torrent: Torrent,
    /// Addresses of peers we reached; the download can start with them.
    pub peers: Vec<SocketAddr>,
}

/// Fetches the metadata of `magnet` from `peers`, the link's `x.pe` peers and its trackers,
/// giving up after `timeout`.
///
/// # Errors
/// [`DriverError::Metadata`] when no peer delivered metadata matching the info-hash in time, or
/// the fetched info dictionary is not a valid torrent.
pub async fn fetch_metadata(
    magnet: &Magnet,
    peers: Vec<SocketAddr>,
    peer_id: [u8; 20],
    timeout: Duration,
) -> Result<Fetched, DriverError> {
    let hashes = magnet.info_hashes;
    let mut accepted = Vec::new();
    if let Some(v1) = hashes.v1() {
        accepted.push(v1.0);
    }
    if let Some(v2) = hashes.v2() {
        accepted.push(v2.truncated().0);
    }
    let our_hash = accepted.first().copied().unwrap_or_default();
    // We have no pieces and no v2 layers yet: announce the v2 bit only if the link has v2.
    let handshake = Handshake {
        reserved: Reserved::shoal(hashes.v2().is_some()),
        info_hash: our_hash,
        peer_id,
    };
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    // Peers send no blocks while we fetch metadata; a budget bounds any that come anyway.
    let budget = WriteBudget::new(WRITE_BUDGET);

    let accepted = std::sync::Arc::new(accepted);
    let dial = |addr: SocketAddr| {
        connection::dial(addr, None, handshake, accepted.clone(), events_tx.clone())
    };
    let mut known: HashSet<SocketAddr> = HashSet::new();
    let from_link = magnet
        .peers
        .iter()
        .filter_map(|p| p.parse::<SocketAddr>().ok());
    for addr in peers.into_iter().chain(from_link) {
        if known.insert(addr) {
            dial(addr);
        }
    }
    let (_progress_tx, progress_rx) = watch::channel(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let announce = (!magnet.trackers.is_empty()).then(|| {
        let announcer = Announcer {
            last_error: HashMap::new(),
            tiers: magnet.trackers.iter().map(|t| vec![t.clone()]).collect(),
            info_hash: our_hash,
            peer_id,
            port: 0,
            ip: None,
            // Unknown until the metadata arrives; trackers only need "not a seed".
            total_size: magnet.exact_length.unwrap_or(1).max(1),
            piece_length: 1,
            site: None,
        };
        tokio::spawn(announcer.run(progress_rx, events_tx.clone(), stop_rx))
    });

    let mut fetch = MetadataFetch::new(
        hashes,
        concat!("Shoal/", env!("CARGO_PKG_VERSION")).to_owned(),
    );
    let mut writers: HashMap<PeerKey, Link> = HashMap::new();
    let mut reached: Vec<SocketAddr> = Vec::new();
    let mut next_key = 0u64;
    let epoch = Instant::now();
    let deadline = epoch + timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut redial = tokio::time::interval_at(Instant::now() + REDIAL_INTERVAL, REDIAL_INTERVAL);
    while fetch.metadata().is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => fetch.handle_timeout(epoch.elapsed()),
            _ = redial.tick() => {
                // Peers still starting up (checking their files) refuse or drop us: try again.
                let connected: HashSet<SocketAddr> = writers.values().map(|l| l.addr).collect();
                known.iter().filter(|a| !connected.contains(a)).for_each(|&a| {
                    dial(a);
                });
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                let now = epoch.elapsed();
                match event {
                    Event::Connected(done) => {
                        let key = PeerKey(next_key);
                        next_key += 1;
                        let (link, theirs) = Link::start(done, key, events_tx.clone(), budget.clone(), crate::HostLimits::default());
                        reached.push(link.addr);
                        writers.insert(key, link);
                        fetch.handle_connected(now, key, theirs.reserved);
                    }
                    Event::Peers(found) => {
                        for addr in found {
                            if known.insert(addr) {
                                dial(addr);
                            }
                        }
                    }
                    Event::Frame { peer, frame } => {
                        if let Ok(message) = Message::decode(&frame) {
                            fetch.handle_message(now, peer, message);
                        }
                    }
                    Event::Closed { peer, .. } => {
                        if let Some(link) = writers.remove(&peer) {
                            link.close();
                        }
                        fetch.handle_disconnected(now, peer);
                    }
                    _ => {}
                }
            }
        }
        while let Some(command) = fetch.poll_command() {
            match command {
                Command::Send { peer, frame } => {
                    if let Some(link) = writers.get(&peer) {
                        // A metadata fetch sends a handful of small messages: never full.
                        let _ = link.writer.send(frame);
                    }
                }
                Command::Disconnect { peer, reason } => {
                    if let Some(link) = writers.remove(&peer) {
                        tracing::warn!(peer = %link.addr, ?reason, "dropped during metadata exchange");
                        reached.retain(|a| *a != link.addr);
                        link.close();
                    }
                    fetch.handle_disconnected(epoch.elapsed(), peer);
                }
                _ => {}
            }
        }
    }
    for (_, link) in writers.drain() {
        link.close();
    }
    let _ = stop_tx.send(());
    if let Some(task) = announce {
        task.abort();
    }
    let Some(info) = fetch.metadata() else {
        return Err(DriverError::Metadata(format!(
            "no peer sent metadata matching the info-hash within {}s ({} peers reached)",
            timeout.as_secs(),
            reached.len()
        )));
    };
    let mut torrent = Torrent::from_info_bytes(info).map_err(|e| {
        DriverError::Metadata(format!("the fetched info dictionary is invalid: {e}"))
    })?;
    torrent.announce_list = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    torrent.announce = magnet.trackers.first().cloned();
    torrent.web_seeds = magnet.web_seeds.clone();
    Ok(Fetched {
        torrent,
        peers: reached,
    })
}
