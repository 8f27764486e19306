//! What the engine knows about one connected peer.

use std::collections::VecDeque;
use std::time::Duration;

use shoal_metainfo::{Bitfield, BlockRef};
use shoal_wire::Reserved;

use crate::rate::RateMeter;

/// One peer's state. Owned by the engine; the driver only knows the [`crate::PeerKey`].
#[derive(Clone, Debug)]
pub struct Peer {
    /// Capability bits from its handshake.
    pub reserved: Reserved,
    /// The pieces it has.
    pub has: Bitfield,
    /// It has every piece.
    pub is_seed: bool,
    /// We refuse its requests.
    pub am_choking: bool,
    /// We want something it has.
    pub am_interested: bool,
    /// It refuses our requests.
    pub peer_choking: bool,
    /// It wants something we have.
    pub peer_interested: bool,
    /// Pieces it has that we still want.
    pub wanted_from: u32,
    /// We want pieces it has, but every block of them is already requested elsewhere: we told
    /// it we are not interested until one has a block to ask for (`Swarm::starve`).
    pub starved: bool,
    /// Our requests to it, oldest first.
    pub requests: Vec<BlockRef>,
    /// Download rate from it.
    pub download: RateMeter,
    /// Upload rate to it.
    pub upload: RateMeter,
    /// When it last sent anything.
    pub last_heard: Duration,
    /// When it last sent a block we asked for (or when we first asked, if none yet).
    pub last_block: Duration,
    /// When we last sent it anything.
    pub last_sent: Duration,
    /// Owes us blocks and is not delivering.
    pub snubbed: bool,
    /// When it got or lost its upload slot, or became interested: orders the rotation.
    pub turn_started: Duration,
    /// When it last sent us a request we serve.
    pub last_request: Duration,
    /// Its `reqq`: how many requests it accepts.
    pub max_requests: u32,
    /// Its id for `ut_metadata`, if it speaks it.
    pub ut_metadata: Option<u8>,
    /// Protocol violations so far.
    pub violations: u32,
    /// Blocks we cancelled that may still arrive (a cancel crosses the data on the wire): such
    /// a block is no violation. Oldest first, at most [`Peer::MAX_CANCELLED`].
    pub cancelled: VecDeque<BlockRef>,
}

impl Peer {
    /// A peer that just completed its handshake at `now`.
    pub fn new(reserved: Reserved, piece_count: u32, now: Duration, max_requests: u32) -> Self {
        Self {
            reserved,
            has: Bitfield::new(piece_count),
            is_seed: false,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            wanted_from: 0,
            starved: false,
            requests: Vec::new(),
            download: RateMeter::default(),
            upload: RateMeter::default(),
            last_heard: now,
            last_block: now,
            last_sent: now,
            snubbed: false,
            turn_started: now,
            last_request: now,
            max_requests,
            ut_metadata: None,
            violations: 0,
            cancelled: VecDeque::new(),
        }
    }

    /// How many cancelled blocks are remembered per peer.
    pub const MAX_CANCELLED: usize = 1024;

    /// Remembers that we cancelled our request for `block`.
    pub fn cancelled(&mut self, block: BlockRef) {
        if self.cancelled.len() == Self::MAX_CANCELLED {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(block);
    }

    /// Returns true if and only if `block` answers a request we cancelled (and forgets it).
    pub fn was_cancelled(&mut self, block: &BlockRef) -> bool {
        match self.cancelled.iter().position(|b| b == block) {
            Some(at) => {
                self.cancelled.remove(at);
                true
            }
            None => false,
        }
    }
}
