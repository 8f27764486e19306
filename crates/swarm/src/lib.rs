//! The per-torrent swarm engine, sans I/O.
//!
//! One [`Swarm`] per torrent. The driver feeds it what happened — a peer connected
//! ([`Swarm::handle_connected`]), a message arrived ([`Swarm::handle_message`]), a piece was
//! hashed ([`Swarm::handle_verified`]), time passed ([`Swarm::handle_timeout`]) — and carries out
//! the [`Command`]s it returns from [`Swarm::poll_command`]: send these bytes, write this block,
//! read that block for a peer, verify a piece, close or ban a peer. Time is a `Duration` since
//! the driver's epoch; randomness comes from a seeded generator; so a run is reproducible and
//! many engines can run in one process under virtual time.
//!
//! Behaviour:
//! - **Picking**: rarest first with random tie-break, finishing started pieces first, endgame
//!   duplicates with cancels ([`picker`]).
//! - **Pipelining**: requests in flight per peer sized to its measured rate times
//!   [`Config::request_queue_time`] (the bandwidth-delay product), within the peer's `reqq`.
//! - **Choking without tit-for-tat**: every interested peer is uploaded to, up to
//!   [`Config::upload_slots`] at once, rotating fairly when more are waiting.
//! - **Verification and bans**: a failed piece sent by one peer bans that peer; one sent by
//!   several is downloaded again and the blocks compared ("smart ban"): whoever sent a block
//!   that differs from the verified one is banned.
//! - **Timeouts**: snubbing of peers that stop delivering, idle disconnects, keep-alives.
//! - **Super-seeding** (BEP 16, [`Config::super_seed`]): a lone origin seed offers each peer
//!   one piece at a time so that each piece leaves it about once.
#![forbid(unsafe_code)]

mod command;
mod config;
pub mod metadata;
mod peer;
pub mod picker;
mod rate;
mod rng;
mod super_seed;
mod swarm;

pub use command::{Command, DisconnectReason, PeerKey, Verification};
pub use config::Config;
pub use metadata::MetadataFetch;
pub use rate::RateMeter;
pub use rng::Rng;
pub use swarm::{PeerCounts, Stats, Swarm, TICK, UT_METADATA_ID};
