//! Fetching a torrent's info dictionary from peers (BEP 9), for magnet links: sans I/O, like
//! the swarm engine, and driven the same way (`handle_*` in, [`MetadataFetch::poll_command`]
//! out).
//!
//! Peers announce `metadata_size` in their extension handshake; the first plausible size
//! (at most [`MAX_METADATA_SIZE`]) is adopted, and 16 KiB pieces are requested from every peer
//! that speaks `ut_metadata`, each piece from one peer at a time. When all pieces are in, the
//! bytes must hash to the magnet link's info-hash(es); if they do not, every peer that sent a
//! piece is dropped and the fetch starts over with the others.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use shoal_metainfo::InfoHashes;
use shoal_wire::extension::{MAX_METADATA_SIZE, METADATA_PIECE_SIZE};
use shoal_wire::{ExtensionHandshake, Message, MetadataMessage, Reserved};

use crate::command::{Command, DisconnectReason, PeerKey};
use crate::swarm::UT_METADATA_ID;

/// How long a metadata request may go unanswered before it is asked of another peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
struct MetaPeer {
    /// Its id for `ut_metadata`, once its extension handshake arrived.
    ut_metadata: Option<u8>,
    /// Pieces it rejected.
    rejected: BTreeSet<u32>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hashes: InfoHashes,
    client: String,
    size: Option<usize>,
    pieces: Vec<Option<Vec<u8>>>,
    /// Piece -> (peer asked, when).
    asked: BTreeMap<u32, (PeerKey, Duration)>,
    senders: BTreeSet<PeerKey>,
    peers: BTreeMap<PeerKey, MetaPeer>,
    commands: VecDeque<Command>,
    done: Option<Vec<u8>>,
}

impl MetadataFetch {
    /// A fetch for the torrent named by `info_hashes`; `client` goes in our extension handshake.
    pub fn new(info_hashes: InfoHashes, client: String) -> Self {
        Self {
            info_hashes,
            client,
            size: None,
            pieces: Vec::new(),
            asked: BTreeMap::new(),
            senders: BTreeSet::new(),
            peers: BTreeMap::new(),
            commands: VecDeque::new(),
            done: None,
        }
    }

    /// The verified info dictionary, once fetched.
    pub fn metadata(&self) -> Option<&[u8]> {
        self.done.as_deref()
    }

    /// The next command for the driver (only `Send` and `Disconnect`).
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn send(&mut self, peer: PeerKey, message: Message<'_>) {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        self.commands.push_back(Command::Send { peer, frame });
    }

    /// A peer completed the handshake.
    pub fn handle_connected(&mut self, now: Duration, peer: PeerKey, reserved: Reserved) {
        if !reserved.extension_protocol() {
            // It cannot send metadata.
            self.commands.push_back(Command::Disconnect {
                peer,
                reason: DisconnectReason::Protocol(
                    "no extension protocol, so no metadata exchange".into(),
                ),
            });
            return;
        }
        self.peers.insert(peer, MetaPeer::default());
        let handshake = ExtensionHandshake {
            extensions: BTreeMap::from([("ut_metadata".to_owned(), UT_METADATA_ID)]),
            client: Some(self.client.clone()),
            ..ExtensionHandshake::default()
        };
        self.send(
            peer,
            Message::Extended {
                id: 0,
                payload: &handshake.encode(),
            },
        );
        // BEP 6 peers expect our piece announcement; we have nothing.
        if reserved.fast() {
            self.send(peer, Message::HaveNone);
        }
        self.request(now);
    }

    /// A peer is gone.
    pub fn handle_disconnected(&mut self, now: Duration, peer: PeerKey) {
        self.peers.remove(&peer);
        self.asked.retain(|_, (asked, _)| *asked != peer);
        self.request(now);
    }

    /// A message from a peer; everything but the extension messages is ignored.
    pub fn handle_message(&mut self, now: Duration, peer: PeerKey, message: Message<'_>) {
        if self.done.is_some() || !self.peers.contains_key(&peer) {
            return;
        }
        match message {
            Message::Extended { id: 0, payload } => {
                let Ok(handshake) = ExtensionHandshake::decode(payload) else {
                    return;
                };
                let id = handshake
                    .extensions
                    .get("ut_metadata")
                    .copied()
                    .filter(|&id| id != 0);
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.ut_metadata = id;
                }
                if self.size.is_none()
                    && let Some(size) = handshake
                        .metadata_size
                        .filter(|&s| s > 0 && s <= MAX_METADATA_SIZE)
                {
                    // Bounded above by MAX_METADATA_SIZE, so it fits a usize.
                    self.size = Some(size as usize);
                    self.pieces = vec![None; (size as usize).div_ceil(METADATA_PIECE_SIZE)];
                }
                self.request(now);
            }
            Message::Extended {
                id: UT_METADATA_ID,
                payload,
            } => match MetadataMessage::decode(payload) {
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                }) => self.on_data(now, peer, piece, total_size, data),
                Ok(MetadataMessage::Reject { piece }) => {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.rejected.insert(piece);
                    }
                    if self
                        .asked
                        .get(&piece)
                        .is_some_and(|(asked, _)| *asked == peer)
                    {
                        self.asked.remove(&piece);
                    }
                    self.request(now);
                }
                // Peers may ask us too; we have nothing yet.
                Ok(MetadataMessage::Request { piece }) => {
                    if let Some(id) = self.peers.get(&peer).and_then(|p| p.ut_metadata) {
                        let mut out = Vec::new();
                        MetadataMessage::Reject { piece }.encode(&mut out);
                        self.send(peer, Message::Extended { id, payload: &out });
                    }
                }
                Err(_) => self.drop_peer(peer, "malformed ut_metadata message"),
            },
            _ => {}
        }
    }

    fn on_data(&mut self, now: Duration, peer: PeerKey, piece: u32, total_size: u64, data: &[u8]) {
        let Some(size) = self.size else { return };
        let expected_len = size
            .saturating_sub(piece as usize * METADATA_PIECE_SIZE)
            .min(METADATA_PIECE_SIZE);
        let fits = total_size == size as u64
            && (piece as usize) < self.pieces.len()
            && data.len() == expected_len;
        if !fits {
            return self.drop_peer(peer, "metadata piece of the wrong size");
        }
        self.asked.remove(&piece);
        self.senders.insert(peer);
        self.pieces[piece as usize] = Some(data.to_vec());
        if self.pieces.iter().all(Option::is_some) {
            let bytes: Vec<u8> = self.pieces.iter().flatten().flatten().copied().collect();
            if self.info_hashes.matches(&bytes) {
                self.done = Some(bytes);
                return;
            }
            // Someone lied: drop everyone who sent a piece, and start over.
            for liar in std::mem::take(&mut self.senders) {
                self.drop_peer(liar, "metadata does not match the info-hash");
            }
            self.pieces.iter_mut().for_each(|p| *p = None);
        }
        self.request(now);
    }

    fn drop_peer(&mut self, peer: PeerKey, why: &str) {
        if self.peers.remove(&peer).is_some() {
            self.asked.retain(|_, (asked, _)| *asked != peer);
            self.commands.push_back(Command::Disconnect {
                peer,
                reason: DisconnectReason::Protocol(why.to_owned()),
            });
        }
    }

    /// Asks for every missing piece not in flight, spreading them over peers.
    fn request(&mut self, now: Duration) {
        if self.done.is_some() || self.size.is_none() {
            return;
        }
        let capable: Vec<(PeerKey, u8)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| p.ut_metadata.map(|id| (*k, id)))
            .collect();
        if capable.is_empty() {
            return;
        }
        let mut turn = 0;
        for piece in 0..self.pieces.len() as u32 {
            if self.pieces[piece as usize].is_some() || self.asked.contains_key(&piece) {
                continue;
            }
            // The next capable peer that has not rejected this piece.
            let choice = (0..capable.len())
                .map(|i| capable[(turn + i) % capable.len()])
                .find(|(k, _)| {
                    self.peers
                        .get(k)
                        .is_some_and(|p| !p.rejected.contains(&piece))
                });
            let Some((peer, id)) = choice else { continue };
            turn += 1;
            self.asked.insert(piece, (peer, now));
            let mut out = Vec::new();
            MetadataMessage::Request { piece }.encode(&mut out);
            self.send(peer, Message::Extended { id, payload: &out });
        }
    }

    /// Time passed: requests unanswered for too long go to other peers.
    pub fn handle_timeout(&mut self, now: Duration) {
        let stale: Vec<u32> = self
            .asked
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= REQUEST_TIMEOUT)
            .map(|(p, _)| *p)
            .collect();
        for piece in stale {
            if let Some((peer, _)) = self.asked.remove(&piece)
                && let Some(state) = self.peers.get_mut(&peer)
            {
                state.rejected.insert(piece);
            }
        }
        self.request(now);
    }
}
