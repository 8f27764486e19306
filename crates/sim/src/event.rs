//! The event queue: events ordered by virtual time, ties by the order they were scheduled, so
//! a run is the same on every machine.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use shoal_metainfo::PieceIndex;

use crate::link::Message;

/// Nanoseconds of virtual time since the start of the run.
pub(crate) type Nanos = u64;

/// Something that happens at an instant.
#[derive(Debug)]
pub(crate) enum Event {
    /// A host asks the tracker for peers and dials them.
    Announce { host: usize },
    /// A host that is still downloading dials again the peers it learned of that it is not
    /// connected to.
    Redial { host: usize },
    /// A dial from `from` to `to` completes its handshakes.
    Handshake { from: usize, to: usize },
    /// A host's uplink finished sending `message` on `conn`.
    UplinkDone {
        host: usize,
        conn: usize,
        message: Message,
    },
    /// A message reaches the receiver's downlink.
    Arrive {
        conn: usize,
        to: usize,
        message: Message,
    },
    /// A message has been received whole by `to`.
    Deliver {
        conn: usize,
        to: usize,
        message: Message,
    },
    /// The other end closed `conn`; `host` learns of it.
    Closed { host: usize, conn: usize },
    /// A host finished hashing a piece.
    Hashed { host: usize, piece: PieceIndex },
    /// A host's engine asked to be woken now.
    Timer { host: usize },
    /// The end of a timeline interval: the swarm is sampled (observes only).
    Sample,
}

impl Event {
    /// A small number naming the kind of event, for the trace digest.
    pub(crate) fn tag(&self) -> (u64, u64) {
        match self {
            Event::Announce { host } => (1, *host as u64),
            Event::Handshake { from, to } => (2, (*from as u64) << 32 | *to as u64),
            Event::UplinkDone { host, conn, .. } => (3, (*host as u64) << 32 | *conn as u64),
            Event::Arrive { conn, to, .. } => (5, (*to as u64) << 32 | *conn as u64),
            Event::Deliver { conn, to, .. } => (6, (*to as u64) << 32 | *conn as u64),
            Event::Closed { host, conn } => (7, (*host as u64) << 32 | *conn as u64),
            Event::Hashed { host, piece } => (8, (*host as u64) << 32 | u64::from(piece.get())),
            Event::Timer { host } => (9, *host as u64),
            Event::Redial { host } => (10, *host as u64),
            Event::Sample => (11, 0),
        }
    }
}

struct Entry {
    at: Nanos,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the heap pops the earliest, then the first scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events by time.
#[derive(Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl Queue {
    /// Schedules `event` at `at`.
    pub(crate) fn push(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Nanos, Event)> {
        self.heap.pop().map(|e| (e.at, e.event))
    }
}
