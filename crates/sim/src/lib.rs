//! A deterministic simulator of a Shoal swarm: many real [`shoal_swarm::Swarm`] engines — the
//! same sans-IO core the agents run — in one process, under virtual time, over a modelled
//! network.
//!
//! A [`Scenario`] says who is where: hosts with upload and download capacities, grouped into
//! sites joined by narrower inter-site links, one-way latencies, optional loss, the artifact's
//! size and piece length, how many peers a tracker hands out. [`run`] plays it out and returns a
//! [`Report`]: every host's completion time against the fluid lower bound
//! [`Scenario::lower_bound`], the bytes each host sent, the bytes that crossed between sites,
//! and a digest of the whole event trace.
//!
//! The link model ([`link`]): each host's uplink serves its connections in turn (as TCP flows
//! share a bottleneck), each message leaving whole at the uplink's rate; a message between sites
//! then queues on the inter-site link; every message crosses the path's latency and queues for
//! the receiver's downlink. Order within a connection is kept, as TCP keeps it. A lost segment
//! (probability [`Scenario::loss`] per message) holds its connection up for a retransmission
//! timeout. Storage is instant; hashing takes `piece length / hash rate` on one thread per
//! host. CPU is not modelled: the simulator predicts what the protocol and the network allow.
//!
//! Determinism: time is virtual, randomness comes from one seeded [`shoal_swarm::Rng`], and
//! events at the same instant run in the order they were scheduled; the same scenario gives the
//! same trace digest on every machine.
//!
//! Invariants ([`Invariants`]) are checked as the run goes, by the simulator (a host uploads only
//! verified pieces, verifies only pieces whose every block it wrote, never writes into a verified
//! piece, never passes a piece that holds a liar's block; no link delivers faster than its rate)
//! and by each engine's own [`shoal_swarm::Swarm::check_invariants`].
#![forbid(unsafe_code)]

mod event;
pub mod link;
mod report;
mod scenario;
mod world;

pub use report::{HostReport, Report, Sample};
pub use scenario::{Behaviour, HostSpec, Invariants, Scenario, SiteSpec};
pub use world::{SimError, run};
