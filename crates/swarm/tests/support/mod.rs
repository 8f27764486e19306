//! An in-memory network of swarm engines under virtual time: each node has a full engine, a
//! piece store in memory and a real verifier; frames travel through queues, not sockets. A node
//! may be malicious (it corrupts every block it serves).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support"
)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{Bitfield, MetaVersion, PathComponent, PieceVerifier, Torrent, TorrentPath};
use shoal_swarm::{Command, Config, DisconnectReason, PeerKey, Swarm, Verification};
use shoal_wire::{DEFAULT_MAX_FRAME, Message, Reserved, decode_frame};

/// A torrent over one synthetic file, and the file's bytes.
pub fn torrent(
    len: usize,
    piece_length: u64,
    version: MetaVersion,
    seed: u64,
) -> (Torrent, Vec<u8>) {
    let mut rng = shoal_swarm::Rng::new(seed);
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    let name = PathComponent::new("payload.bin").unwrap();
    let input = InputFile {
        path: TorrentPath::new(vec![name.clone()]).unwrap(),
        length: len as u64,
        executable: false,
    };
    let options = CreateOptions {
        version,
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    let torrent = Plan::new(name, vec![input], true, options)
        .unwrap()
        .finish_in_memory(|_| &data)
        .unwrap();
    (torrent, data)
}

/// How a node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Serves every block with one byte flipped.
    Corrupt,
    /// Honest, but closes a connection as libtorrent 2.0 (qBittorrent 4.5) does: when a `have`
    /// completes what it knows of the peer (so the peer is now a seed) at a moment it is not
    /// interested in that peer, it drops it as an "uninteresting upload-only peer" before the
    /// piece can make it interested. It sends its own messages as soon as it decides them.
    DropsSeedsWhenUninterested,
}

pub struct Node {
    pub swarm: Swarm,
    pub pieces: BTreeMap<u32, Vec<u8>>,
    pub behaviour: Behaviour,
    pub completed_at: Option<Duration>,
    pub banned: Vec<PeerKey>,
    pub sent_messages: Vec<(PeerKey, String)>,
    /// Every connection this node closed, and why.
    pub disconnects: Vec<(PeerKey, DisconnectReason)>,
    /// The connections a [`Behaviour::DropsSeedsWhenUninterested`] node dropped.
    pub dropped_seeds: Vec<PeerKey>,
    /// What each peer told this node it has.
    told: BTreeMap<PeerKey, Bitfield>,
}

/// The network. Node `i` knows node `j` as `PeerKey(j)`.
pub struct Net {
    pub nodes: Vec<Node>,
    pub verifier: PieceVerifier,
    pub piece_length: usize,
    pub now: Duration,
    links: BTreeMap<(usize, usize), VecDeque<u8>>,
    connected: BTreeMap<(usize, usize), bool>,
    pub data: Vec<u8>,
    /// Bytes each direction of each link carries per step; `usize::MAX` for an ideal network.
    pub link_budget: usize,
}

impl Net {
    pub fn new(torrent: &Torrent, data: Vec<u8>) -> Self {
        Self {
            nodes: Vec::new(),
            verifier: PieceVerifier::new(torrent).unwrap(),
            piece_length: torrent.info().piece_length.get() as usize,
            now: Duration::ZERO,
            links: BTreeMap::new(),
            connected: BTreeMap::new(),
            data,
            link_budget: usize::MAX,
        }
    }

    /// Adds a node holding `have` (its pieces are filled from the real data).
    pub fn add(&mut self, config: Config, have: Bitfield, behaviour: Behaviour) -> usize {
        let geometry = self.verifier.geometry().clone();
        let mut pieces = BTreeMap::new();
        for piece in have.iter() {
            let start = piece as usize * self.piece_length;
            let len = geometry.piece_len(geometry.piece(piece).unwrap()) as usize;
            pieces.insert(piece, self.data[start..start + len].to_vec());
        }
        let swarm = Swarm::new(config, geometry, have, None, true);
        self.nodes.push(Node {
            swarm,
            pieces,
            behaviour,
            completed_at: None,
            banned: Vec::new(),
            sent_messages: Vec::new(),
            disconnects: Vec::new(),
            dropped_seeds: Vec::new(),
            told: BTreeMap::new(),
        });
        self.nodes.len() - 1
    }

    pub fn piece_count(&self) -> u32 {
        self.verifier.geometry().piece_count()
    }

    /// Connects `a` and `b` (both speak the fast and extension protocols).
    pub fn connect(&mut self, a: usize, b: usize) {
        self.connected.insert((a, b), true);
        self.connected.insert((b, a), true);
        let now = self.now;
        self.nodes[a]
            .swarm
            .handle_connected(now, PeerKey(b as u64), Reserved::shoal(true));
        self.nodes[b]
            .swarm
            .handle_connected(now, PeerKey(a as u64), Reserved::shoal(true));
    }

    /// Returns true if and only if `a` and `b` are connected.
    pub fn is_connected(&self, a: usize, b: usize) -> bool {
        self.connected.contains_key(&(a, b))
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        if self.connected.remove(&(a, b)).is_some() {
            self.connected.remove(&(b, a));
            self.links.remove(&(a, b));
            self.links.remove(&(b, a));
            let now = self.now;
            self.nodes[a]
                .swarm
                .handle_disconnected(now, PeerKey(b as u64));
            self.nodes[b]
                .swarm
                .handle_disconnected(now, PeerKey(a as u64));
        }
    }

    /// Carries out every pending command of every node, delivers every frame, and repeats until
    /// quiet; then advances time by `step` and fires timeouts. Checks invariants throughout.
    pub fn step(&mut self, step: Duration) {
        let mut budget: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        loop {
            let mut progress = false;
            for i in 0..self.nodes.len() {
                while let Some(command) = self.nodes[i].swarm.poll_command() {
                    progress = true;
                    self.execute(i, command);
                }
            }
            let pending: Vec<(usize, usize)> = self
                .links
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            for link in pending {
                let left = budget.entry(link).or_insert(self.link_budget);
                let used = self.deliver(link.0, link.1, *left);
                if used > 0 {
                    progress = true;
                }
                if let Some(left) = budget.get_mut(&link) {
                    *left -= used;
                }
            }
            for node in &self.nodes {
                node.swarm.check_invariants().unwrap();
            }
            if !progress {
                break;
            }
        }
        self.now += step;
        let now = self.now;
        for node in &mut self.nodes {
            if node.swarm.poll_timeout() <= now {
                node.swarm.handle_timeout(now);
            }
        }
    }

    fn execute(&mut self, i: usize, command: Command) {
        let now = self.now;
        match command {
            Command::Send { peer, frame } => {
                let to = peer.0 as usize;
                if self.connected.contains_key(&(i, to)) {
                    let mut at = 0;
                    while let Ok(Some((message, used))) =
                        decode_frame(&frame[at..], DEFAULT_MAX_FRAME)
                    {
                        self.nodes[i].sent_messages.push((peer, describe(&message)));
                        at += used;
                    }
                    self.links.entry((i, to)).or_default().extend(frame);
                }
            }
            Command::Read { peer, block } => {
                let to = peer.0 as usize;
                let mut data = self.nodes[i].pieces[&block.piece.get()]
                    [block.offset as usize..(block.offset + block.len) as usize]
                    .to_vec();
                if self.nodes[i].behaviour == Behaviour::Corrupt {
                    data[0] ^= 0xFF;
                }
                let mut frame = Vec::new();
                Message::Piece {
                    piece: block.piece.get(),
                    offset: block.offset,
                    data: &data,
                }
                .encode(&mut frame);
                if self.connected.contains_key(&(i, to)) {
                    self.links.entry((i, to)).or_default().extend(frame);
                }
            }
            Command::Write { block, data, .. } => {
                let len = self.verifier.geometry().piece_len(block.piece) as usize;
                let piece = self.nodes[i]
                    .pieces
                    .entry(block.piece.get())
                    .or_insert_with(|| vec![0; len]);
                piece[block.offset as usize..block.offset as usize + data.len()]
                    .copy_from_slice(&data);
            }
            Command::Verify {
                piece,
                block_digests,
            } => {
                let data = self.nodes[i]
                    .pieces
                    .get(&piece.get())
                    .cloned()
                    .unwrap_or_default();
                let passed = self.verifier.verify(piece, &data);
                let digests = block_digests.then(|| PieceVerifier::block_digests(&data));
                if !passed {
                    self.nodes[i].pieces.remove(&piece.get());
                }
                self.nodes[i].swarm.handle_verified(
                    now,
                    piece,
                    Verification {
                        passed,
                        block_digests: digests,
                    },
                );
            }
            Command::Verified { .. } => {}
            Command::Completed => self.nodes[i].completed_at = Some(now),
            Command::Ban { peer } => self.nodes[i].banned.push(peer),
            Command::Disconnect { peer, reason } => {
                self.nodes[i].disconnects.push((peer, reason));
                self.disconnect(i, peer.0 as usize);
            }
        }
    }

    /// Delivers whole frames from `from` to `to`, at most `budget` bytes; returns bytes used.
    fn deliver(&mut self, from: usize, to: usize, budget: usize) -> usize {
        let now = self.now;
        let mut used = 0;
        loop {
            let Some(queue) = self.links.get_mut(&(from, to)) else {
                return used;
            };
            let bytes = queue.make_contiguous();
            let (message_bytes, len) = match decode_frame(bytes, DEFAULT_MAX_FRAME) {
                Ok(Some((_, len))) if used + len <= budget => (bytes[..len].to_vec(), len),
                Ok(_) => return used,
                Err(e) => panic!("undecodable frame from {from} to {to}: {e}"),
            };
            queue.drain(..len);
            used += len;
            if let Ok(Some((message, _))) = decode_frame(&message_bytes, DEFAULT_MAX_FRAME) {
                if self.nodes[to].behaviour == Behaviour::DropsSeedsWhenUninterested
                    && self.drops_a_new_seed(to, from, &message)
                {
                    return used;
                }
                self.nodes[to]
                    .swarm
                    .handle_message(now, PeerKey(from as u64), message);
                if self.nodes[to].behaviour == Behaviour::DropsSeedsWhenUninterested {
                    while let Some(command) = self.nodes[to].swarm.poll_command() {
                        self.execute(to, command);
                    }
                }
            }
            if !self.connected.contains_key(&(from, to)) {
                return used;
            }
        }
    }

    /// The libtorrent 2.0 model: records what `from` told `to` it has; true if that made `from`
    /// a seed while `to` is not interested in it, and `to` closed the connection.
    fn drops_a_new_seed(&mut self, to: usize, from: usize, message: &Message<'_>) -> bool {
        let n = self.piece_count();
        let key = PeerKey(from as u64);
        let node = &mut self.nodes[to];
        let told = node.told.entry(key).or_insert_with(|| Bitfield::new(n));
        let was_seed = told.is_full();
        match message {
            Message::Have { piece } => {
                told.insert(*piece);
            }
            Message::HaveAll => *told = Bitfield::full(n),
            Message::Bitfield(bytes) => *told = Bitfield::from_bytes(bytes, n).unwrap(),
            _ => return false,
        }
        // Only a `have` runs the check before interest is updated.
        if was_seed || !told.is_full() || !matches!(message, Message::Have { .. }) {
            return false;
        }
        let interested = node
            .sent_messages
            .iter()
            .rev()
            .filter(|(peer, _)| *peer == key)
            .find_map(|(_, m)| match m.as_str() {
                "interested" => Some(true),
                "notinterested" => Some(false),
                _ => None,
            })
            .unwrap_or(false);
        if interested {
            return false;
        }
        node.dropped_seeds.push(key);
        self.disconnect(to, from);
        true
    }

    /// Steps until every node in `nodes` completed, or `limit` of virtual time passed.
    pub fn run_until_complete(&mut self, nodes: &[usize], step: Duration, limit: Duration) {
        while self.now < limit && !nodes.iter().all(|&n| self.nodes[n].swarm.is_complete()) {
            self.step(step);
        }
    }

    /// The node's stored bytes, concatenated in piece order.
    pub fn content(&self, node: usize) -> Vec<u8> {
        self.nodes[node]
            .pieces
            .values()
            .flatten()
            .copied()
            .collect()
    }
}

fn describe(message: &Message<'_>) -> String {
    match message {
        Message::Request { piece, offset, .. } => format!("request {piece}:{offset}"),
        Message::Cancel { piece, offset, .. } => format!("cancel {piece}:{offset}"),
        Message::Choke => "choke".into(),
        Message::Unchoke => "unchoke".into(),
        other => format!("{other:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("")
            .to_lowercase(),
    }
}
