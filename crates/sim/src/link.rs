//! The link model: what a message costs on the wire, a host's uplink shared by its connections
//! in turn, and first-in-first-out pipes (downlinks, inter-site links) with a fixed rate.

use std::collections::VecDeque;

use shoal_metainfo::BlockRef;

use crate::event::Nanos;

/// What travels on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Encoded frames as the engine emitted them, length prefixes included.
    Frames(Vec<u8>),
    /// A `piece` message carrying `block`: the sender read it from storage. Its bytes are not
    /// materialised; the receiver sees zeros (or the sender's lie, see [`crate::Behaviour`]).
    Block(BlockRef),
}

/// The `piece` message header: length prefix, id, index, offset.
const PIECE_HEADER: u64 = 4 + 1 + 4 + 4;

impl Message {
    /// Bytes on the wire.
    pub fn wire_len(&self) -> u64 {
        match self {
            Message::Frames(frames) => frames.len() as u64,
            Message::Block(block) => PIECE_HEADER + u64::from(block.len),
        }
    }
}

/// Nanoseconds to send `bytes` at `rate` bytes per second (0 for an unlimited link).
pub fn transmit_nanos(bytes: u64, rate: f64) -> Nanos {
    if rate.is_infinite() {
        return 0;
    }
    (bytes as f64 * 1e9 / rate).ceil() as Nanos
}

/// A first-in-first-out pipe with a fixed rate: a downlink or an inter-site link. Each message
/// leaves when the ones before it have, after its own transmission time.
#[derive(Clone, Debug, Default)]
pub struct Fifo {
    free_at: Nanos,
    /// Bytes that have entered it.
    pub bytes: u64,
}

impl Fifo {
    /// When the last message that entered has passed through.
    pub fn free_at(&self) -> Nanos {
        self.free_at
    }

    /// A message of `bytes` enters at `now`; returns when it has passed through at `rate`.
    pub fn pass(&mut self, now: Nanos, bytes: u64, rate: f64) -> Nanos {
        self.free_at = self.free_at.max(now) + transmit_nanos(bytes, rate);
        self.bytes += bytes;
        self.free_at
    }
}

/// A host's uplink: one queue per connection, served in turn a message at a time (as TCP flows
/// share a bottleneck), one message on the wire at once.
#[derive(Clone, Debug, Default)]
pub struct Uplink {
    /// Connections with something queued, in serving order.
    turns: VecDeque<usize>,
    /// Whether a message is on the wire.
    pub busy: bool,
    /// When the message last put on the wire has left.
    pub free_at: Nanos,
    /// Bytes sent.
    pub bytes: u64,
}

impl Uplink {
    /// `conn`'s queue went from empty to not empty.
    pub fn ready(&mut self, conn: usize) {
        self.turns.push_back(conn);
    }

    /// Connections waiting for a turn.
    pub fn queued(&self) -> usize {
        self.turns.len()
    }

    /// The connection whose turn it is, removed from the turns; the caller puts it back with
    /// [`Uplink::ready`] if more is queued.
    pub fn take_turn(&mut self) -> Option<usize> {
        self.turns.pop_front()
    }
}
