//! The engine's tunables, with the defaults Shoal ships.

use std::time::Duration;

/// How a swarm engine behaves. `Default` gives Shoal's defaults, documented per field.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Peers uploaded to at once. No tit-for-tat: every interested peer gets a turn; when more
    /// are interested than there are slots, slots go to the peers furthest behind, then to
    /// those waiting longest. Each upload runs at a share of the uplink, so fewer slots pass a
    /// new piece on sooner: in `shoal-sim` with 50 connections a host, 100 hosts finish in 1.41
    /// x the lower bound with 8 slots, 1.43-1.52 x with 16 and 1.53 x with 32; at 8 or 16 hosts
    /// the number makes no difference. Default: 8 (libtorrent's default too).
    pub upload_slots: usize,
    /// How long an unchoked peer keeps its slot while others wait. Default: 10 s.
    pub rotation_interval: Duration,
    /// An unchoked peer that asks for nothing this long gives its slot to one that waits (it
    /// wants something we have, but others already send it all of that). Default: 1 s.
    pub slot_idle_time: Duration,
    /// The fewest requests kept in flight to a peer, whatever its measured rate. Lower floors
    /// (2 once a peer had sent a block) helped large simulated swarms but starved a peer
    /// that answers in batches (Transmission, which pulses its uploads): in-flight requests
    /// follow the measured rate, which then follows the in-flight requests down. Default: 16.
    pub min_requests: u32,
    /// The most requests in flight to one peer (also capped by the peer's `reqq`). Default: 500.
    pub max_requests: u32,
    /// How much data, in time at the peer's measured rate, to keep requested from it: the
    /// bandwidth-delay product with headroom (never fewer than [`Config::min_requests`]).
    /// Deeper queues hoard blocks on peers whose upload is shared by many: in `shoal-sim`,
    /// 16 downloaders of a 100 Mbit/s LAN finish in 1.10 x the lower bound with 300 ms and
    /// 1.75 x with 3 s. Default: 300 ms.
    pub request_queue_time: Duration,
    /// A peer that owes us blocks and sends none for this long is snubbed: its requests go to
    /// other peers and it gets one request at a time until it delivers. Default: 20 s.
    pub snub_timeout: Duration,
    /// A peer that sends nothing at all for this long is dropped. Default: 120 s.
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything. Default: 60 s.
    pub keepalive_interval: Duration,
    /// Protocol violations (malformed requests, unexpected messages) tolerated before a peer is
    /// dropped. Default: 20.
    pub max_violations: u32,
    /// Our client name in the extension handshake. Default: `Shoal/<version>`.
    pub client_name: String,
    /// Our listening port, advertised in the extension handshake. Default: none.
    pub listen_port: Option<u16>,
    /// BEP 16 super-seeding, for an engine that starts with every piece (a lone origin seed):
    /// peers are told of one piece at a time, the rarest, and of the next once that one has
    /// spread, so the origin sends each piece about once. Slower for a single downloader;
    /// saves the origin's upload when many download at once. Default: off.
    pub super_seed: bool,
    /// While super-seeding, the least data, in bytes, each peer holds offers for (more when
    /// its measured rate times [`Config::request_queue_time`] is larger): a window of pieces
    /// rather than BEP 16's one, so that a lone downloader is not held to one piece per round
    /// trip. Default: 1 MiB.
    pub super_seed_window: u64,
    /// Tell a peer that unchokes us we are not interested while everything we want from it is
    /// already requested from others, and interested again once a block of its pieces is free
    /// (a request rejected or lost) or it gets a piece we can ask for, or at endgame. Its
    /// upload slot then goes at once to a peer that can use it, instead of sitting idle until
    /// [`Config::slot_idle_time`]. In `shoal-sim` with a super-seeding origin (how the agent
    /// publishes): 100 hosts finish in 1.35 x the lower bound instead of 1.44, 1,000 hosts in
    /// 1.61 instead of 1.72, 16 hosts alike (1.24, 1.27). Behind a plain seed it costs with
    /// large pieces: 16 hosts of 64 MiB in 256 KiB pieces take 1.78 x instead of 1.58, the
    /// seed sending 1.72 x S instead of 1.54 (in 16 KiB pieces it helps: 1.29 x, 1.32 x).
    /// Default: on; the standalone client, which joins swarms of plain seeds, turns it off.
    pub withdraw_idle_interest: bool,
    /// Seed for the engine's random choices (piece tie-breaks). Default: 0; the driver should
    /// pass a random seed so that swarms do not all pick alike.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            upload_slots: 8,
            rotation_interval: Duration::from_secs(10),
            slot_idle_time: Duration::from_millis(1000),
            min_requests: 16,
            max_requests: 500,
            request_queue_time: Duration::from_millis(300),
            snub_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            max_violations: 20,
            client_name: concat!("Shoal/", env!("CARGO_PKG_VERSION")).to_owned(),
            listen_port: None,
            super_seed: false,
            super_seed_window: 1 << 20,
            withdraw_idle_interest: true,
            seed: 0,
        }
    }
}
