//! The tokio driver of one torrent's swarm: it owns the sockets, the timers and a storage
//! thread, and carries out what `shoal_swarm::Swarm` decides.
//!
//! Shape (one owner per state, no shared locks):
//! - the **session task** owns the [`shoal_swarm::Swarm`] and runs one event loop over a closed
//!   [`Event`](session::Event) enum: peer connected, frame received, peer closed, piece hashed,
//!   storage failed, timer, shutdown;
//! - each **peer** has a reader task (framing with the length check before allocation, frames
//!   to the session) and a writer task (frames from a two-lane queue to the socket: requests,
//!   `have`s and the like ahead of the blocks waiting, see `connection::Writer`);
//! - one **storage thread** carries out writes, reads for uploads (answering the peer's writer
//!   directly) and hash checks, in the order the engine emitted them, off the async threads;
//! - an **announce task** talks to the torrent's HTTP trackers (BEP 3, 12, 23) and hands the
//!   peers they return to the session;
//! - each **web seed** (BEP 19) has a task that answers the engine's requests with ranged HTTP
//!   GETs, so the engine treats it as one more peer.
//!
//! A process with many torrents shares one listening socket: [`PeerListener`] reads each
//! peer's handshake and routes the connection to the session of the info-hash it names.
//!
//! Entry point: [`run`] with a [`SessionConfig`] and a shutdown future; progress is published
//! on a `watch` channel.
#![forbid(unsafe_code)]

mod connection;
mod error;
mod limits;
mod listener;
mod magnet;
mod peer_id;
mod read_buffers;
mod session;
mod storage_worker;
mod tracker;
mod web_seed;
mod write_budget;

pub use error::DriverError;
pub use limits::{HostLimits, Limits};
pub use listener::{Inbound, PeerListener};
pub use magnet::{Fetched, fetch_metadata};
pub use peer_id::new_peer_id;
pub use session::{AnnounceStats, Progress, SessionConfig, Summary, run};
