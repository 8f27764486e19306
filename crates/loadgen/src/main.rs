//! `shoal-loadgen`: simulated agents against a running control plane; prints what it measured
//! as JSON on stdout. `bench/control-plane.py` runs it; see `shoal-loadgen --help`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shoal_loadgen::{Config, run};

/// Simulated agents against a running control plane (`shoal server`): they register, watch
/// their assignments, and report progress on one placement once a second while the generator
/// measures report throughput and latency and the latency of the placement's status. Prints
/// JSON.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The control plane's API.
    #[arg(long, default_value = "http://127.0.0.1:7421", value_name = "URL")]
    server: String,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Agents sharing one HTTP/2 connection (1: one each, as real agents).
    #[arg(long, default_value_t = 1)]
    agents_per_connection: usize,
    /// Seconds of reporting before the measured window.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds in the measured window.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The artifact's size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// One agent in this many fails once (0: none).
    #[arg(long, default_value_t = 100)]
    fail_every: u64,
    /// Milliseconds between reads of the placement's aggregate status.
    #[arg(long, default_value_t = 50)]
    show_every_ms: u64,
    /// Nodes per page in those reads.
    #[arg(long, default_value_t = 10)]
    show_page_size: u32,
    /// Milliseconds between walks over every node of the placement (0: none).
    #[arg(long, default_value_t = 2000)]
    walk_every_ms: u64,
    /// Agents registering at once.
    #[arg(long, default_value_t = 256)]
    setup_concurrency: usize,
    /// The control plane's process id: its CPU time and memory over the window are reported.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Node ids are PREFIX-00000, PREFIX-00001, ...
    #[arg(long, default_value = "lg")]
    node_prefix: String,
    /// Create the placement before the agents register (a fleet joining an existing
    /// placement: every registration changes assignments), not after.
    #[arg(long)]
    placement_first: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config {
        agents: args.agents,
        agents_per_connection: args.agents_per_connection,
        warmup: Duration::from_secs(args.warmup),
        window: Duration::from_secs(args.seconds),
        size: args.size_mib.saturating_mul(1 << 20),
        fail_every: args.fail_every,
        show_every: Duration::from_millis(args.show_every_ms.max(1)),
        show_page_size: args.show_page_size.max(1),
        walk_every: (args.walk_every_ms > 0).then(|| Duration::from_millis(args.walk_every_ms)),
        setup_concurrency: args.setup_concurrency,
        server_pid: args.server_pid,
        node_prefix: args.node_prefix,
        placement_first: args.placement_first,
        ..Config::new(&args.server)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run(config))?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)?;
    Ok(())
}
