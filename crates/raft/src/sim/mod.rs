//! A deterministic simulation of the control plane's Raft cluster: real openraft nodes (3 and
//! 5 voters) replicating the real `ControlState`, in one process, on a current-thread tokio
//! runtime with paused (virtual) time, under seeded fault schedules. Clients race binds of a few
//! tags to differing contents and read them linearizably through random nodes; the history they
//! record goes through `shoal_control::history::check`, and the run checks its invariants as it
//! goes (one leader per leader id, committed entries never change, no node stops by itself; see
//! `check` for why not one leader per term) and at
//! the end (after the faults heal, every node applies the same log and holds the same digest).
//!
//! Everything random comes from the seed: the faults, the clients, and each node's election
//! timeout (openraft draws it once per start from `rand`'s thread RNG; a range one millisecond
//! wide makes the draw the seed's). Storage is in memory (`store`), the network is in process
//! (`net`), so a seed replays exactly: the same trace digest every time (pinned by
//! `a_seed_replays_exactly`).
//!
//! A failing seed prints how to replay it alone:
//! `SHOAL_SIM_SEED=<seed> SHOAL_SIM_NODES=<n> cargo nextest run -p shoal-raft sim::replay`.

mod check;
mod cluster;
mod net;
mod store;

use std::time::{Duration, Instant};

use cluster::{Params, Report, run};

/// Virtual time under faults per schedule.
const RUN_FOR: Duration = Duration::from_secs(15);
const CLIENTS: u64 = 4;

fn params(nodes: u64, seed: u64) -> Params {
    Params {
        nodes,
        seed,
        run_for: RUN_FOR,
        clients: CLIENTS,
        local_reads: false,
    }
}

/// Runs one schedule on its own runtime; `Err` says what failed and how to replay it.
fn run_one(nodes: u64, seed: u64) -> Result<Report, String> {
    run_params(params(nodes, seed))
}

fn run_params(params: Params) -> Result<Report, String> {
    let Params { nodes, seed, .. } = params;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(run(params)).map_err(|e| {
        format!(
            "seed {seed} on {nodes} nodes failed: {e}\n\
             replay it: SHOAL_SIM_SEED={seed} SHOAL_SIM_NODES={nodes} cargo nextest run -p shoal-raft sim::replay"
        )
    })
}

/// Runs every seed in `seeds` on `nodes` nodes and prints totals; panics on the first failure.
fn run_many(nodes: u64, seeds: std::ops::Range<u64>) {
    let start = Instant::now();
    let count = seeds.end - seeds.start;
    let (mut ops, mut acked, mut reads, mut crashes, mut terms, mut lost, mut delivered) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut shared = 0;
    let mut virtual_ms = 0;
    for seed in seeds {
        match run_one(nodes, seed) {
            Ok(r) => {
                ops += r.ops;
                acked += r.acked_binds;
                reads += r.answered_reads;
                crashes += r.crashes;
                terms += r.terms_led;
                shared += r.terms_shared;
                lost += r.lost;
                delivered += r.delivered;
                virtual_ms += r.virtual_ms;
            }
            Err(e) => panic!("{e}"),
        }
    }
    println!(
        "{count} schedules on {nodes} nodes ({}s of virtual time) in {:?}: {ops} client ops ({acked} binds acknowledged, \
         {reads} reads answered), {crashes} crashes, {terms} terms with a leader ({shared} with two), \
         {delivered} messages delivered, {lost} lost",
        virtual_ms / 1000,
        start.elapsed()
    );
}

#[test]
fn three_nodes_survive_seeded_faults() {
    run_many(3, 0..60);
}

#[test]
fn five_nodes_survive_seeded_faults() {
    run_many(5, 1000..1040);
}

#[test]
fn a_seed_replays_exactly() {
    for (nodes, seed) in [(3, 7), (3, 19), (5, 1007), (5, 1011)] {
        let first = run_one(nodes, seed).unwrap();
        let second = run_one(nodes, seed).unwrap();
        assert_eq!(
            first.divergence(&second),
            None,
            "seed {seed} on {nodes} nodes did not replay"
        );
        assert_eq!(first.trace, second.trace);
    }
}

/// Replays one schedule named by `SHOAL_SIM_SEED` (and `SHOAL_SIM_NODES`, default 3); without
/// them, runs seed 0.
#[test]
fn replay() {
    let seed = std::env::var("SHOAL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let nodes = std::env::var("SHOAL_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let report = run_one(nodes, seed).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", report.summary());
}

/// The checker has teeth: with a deliberate bug (reads served from whichever node is asked,
/// without the leader's read index) some schedule shows a stale read, and the failure names
/// the seed and the operations.
#[test]
fn stale_local_reads_are_caught() {
    let caught = (0..30).find_map(|seed| {
        let mut p = params(3, seed);
        p.local_reads = true;
        run_params(p).err()
    });
    let message = caught.expect("no schedule caught reads from a node's local state");
    assert!(message.contains("stale read"), "{message}");
    assert!(message.contains("SHOAL_SIM_SEED="), "{message}");
    assert!(message.contains("op #"), "{message}");
}
