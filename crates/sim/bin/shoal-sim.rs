//! `shoal-sim`: runs one simulated distribution and prints its ratios to the lower bound, as a
//! line of text or a JSON document. The thin driver of the `shoal-sim` library: arguments in,
//! a report out, wall-clock time measured here (the library has no clock).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shoal_sim::{Invariants, Report, Scenario, run};

const HELP: &str = "\
shoal-sim: simulate one seed distributing an artifact to many hosts, with Shoal's real swarm
engine under virtual time, and report completion times against the fluid lower bound T*.

USAGE: shoal-sim [OPTIONS]

OPTIONS (defaults in brackets):
  --downloaders N       hosts downloading [16]
  --size-mib MIB        artifact size [256]
  --piece-kib KIB       piece length [what `shoal publish` picks for the size]
  --rate-mbit MBIT      every host's upload and download [100]
  --latency-ms MS       one-way latency inside a site [0.1]
  --loss P              probability a message waits a retransmission timeout [0]
  --sites 1|2           two sites: the seed and half the hosts in site 0 [1]
  --wan-mbit MBIT       inter-site link, each way [20]
  --wan-latency-ms MS   one-way latency added between sites [10]
  --no-site-announces   hosts do not name their site to the tracker (standard clients):
                        no bridges, every host may fetch across the inter-site link
  --super-seed          the seed super-seeds (BEP 16)
  --window-kib KIB      least data a super-seed keeps offered to each peer [1024]
  --queue-time-ms MS    engines keep this much time of data requested from a peer [300]
  --upload-slots N      peers each host uploads to at once [the engine's default]
  --min-requests N      requests kept in flight to a peer before its rate is known
                        [the engine's default]
  --max-peers N         the most connections a host keeps; it dials at most half [50]
  --keep-idle-interest  engines stay interested in a peer whose pieces are all requested
                        elsewhere (as the standalone client does), instead of freeing its
                        upload slot
  --seed S              the run's random seed [1]
  --invariants every|N|off
                        engine invariant checks: every step, every Nth step of each engine,
                        or the simulator's only [every up to 64 hosts, else every 1000th]
  --json                print a JSON document instead of a line
  --per-host            also print each host's completion time and traffic to stderr
  --timeline MS         also print the swarm every MS of virtual time to stderr: link use,
                        progress, choking and requests (observes only; in the JSON too)
";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok(Some((scenario, json, per_host))) => simulate(&scenario, json, per_host),
        Ok(None) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}\n\nRun `shoal-sim --help` for the options.");
            ExitCode::from(2)
        }
    }
}

/// A scenario, then whether to print JSON, then whether to print every host to stderr.
type Parsed = (Scenario, bool, bool);

fn parse(args: Vec<String>) -> Result<Option<Parsed>, String> {
    let mut downloaders = 16usize;
    let mut size_mib = 256u64;
    let mut piece_kib = None;
    let mut rate = 100.0f64;
    let mut latency = 0.1f64;
    let mut loss = 0.0f64;
    let mut sites = 1usize;
    let mut wan = 20.0f64;
    let mut wan_latency = 10.0f64;
    let mut super_seed = false;
    let mut keep_idle_interest = false;
    let mut announce_sites = true;
    let mut window_kib = None;
    let mut queue_ms = None;
    let mut seed = 1u64;
    let mut invariants = None;
    let mut json = false;
    let mut per_host = false;
    let mut max_peers = None;
    let mut slots = None;
    let mut timeline = None;
    let mut min_requests = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        }
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--downloaders" => downloaders = num(&flag, value()?)?,
            "--size-mib" => size_mib = num(&flag, value()?)?,
            "--piece-kib" => piece_kib = Some(num::<u64>(&flag, value()?)?),
            "--rate-mbit" => rate = num(&flag, value()?)?,
            "--latency-ms" => latency = num(&flag, value()?)?,
            "--loss" => loss = num(&flag, value()?)?,
            "--sites" => sites = num(&flag, value()?)?,
            "--wan-mbit" => wan = num(&flag, value()?)?,
            "--wan-latency-ms" => wan_latency = num(&flag, value()?)?,
            "--super-seed" => super_seed = true,
            "--keep-idle-interest" => keep_idle_interest = true,
            "--no-site-announces" => announce_sites = false,
            "--window-kib" => window_kib = Some(num::<u64>(&flag, value()?)?),
            "--queue-time-ms" => queue_ms = Some(num::<u64>(&flag, value()?)?),
            "--seed" => seed = num(&flag, value()?)?,
            "--invariants" => {
                invariants = Some(match value()?.as_str() {
                    "every" => Invariants::EveryStep,
                    "off" => Invariants::SimulatorOnly,
                    n => Invariants::EveryNth(num(&flag, n.to_owned())?),
                })
            }
            "--json" => json = true,
            "--per-host" => per_host = true,
            "--timeline" => timeline = Some(num::<f64>(&flag, value()?)?),
            "--upload-slots" => slots = Some(num::<usize>(&flag, value()?)?),
            "--min-requests" => min_requests = Some(num::<u32>(&flag, value()?)?),
            "--max-peers" => max_peers = Some(num::<usize>(&flag, value()?)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if downloaders == 0 || size_mib == 0 {
        return Err("--downloaders and --size-mib must be at least 1".into());
    }
    let mbit = |m: f64| m * 1e6 / 8.0;
    let ms = |m: f64| Duration::from_secs_f64(m / 1000.0);
    if !(rate > 0.0 && wan > 0.0 && latency >= 0.0 && wan_latency >= 0.0) {
        return Err("rates must be positive and latencies not negative".into());
    }
    let size = size_mib << 20;
    let mut scenario = match sites {
        1 => Scenario::lan(downloaders, size, mbit(rate)),
        2 => Scenario::two_sites(downloaders, size, mbit(rate), mbit(wan), ms(wan_latency)),
        _ => return Err("--sites must be 1 or 2".into()),
    };
    if let Some(kib) = piece_kib {
        scenario.piece_length = kib * 1024;
    }
    scenario.latency = ms(latency);
    scenario.loss = loss;
    scenario.seed_engine.super_seed = super_seed;
    scenario.engine.withdraw_idle_interest = !keep_idle_interest;
    scenario.announce_sites = announce_sites;
    if let Some(kib) = window_kib {
        scenario.seed_engine.super_seed_window = kib * 1024;
    }
    if let Some(ms) = queue_ms {
        scenario.engine.request_queue_time = Duration::from_millis(ms);
        scenario.seed_engine.request_queue_time = Duration::from_millis(ms);
    }
    scenario.rng_seed = seed;
    if let Some(ms) = timeline {
        if ms.is_nan() || ms <= 0.0 {
            return Err("--timeline must be positive".into());
        }
        scenario.timeline = Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(slots) = slots {
        scenario.engine.upload_slots = slots;
        scenario.seed_engine.upload_slots = slots;
    }
    if let Some(min) = min_requests {
        scenario.engine.min_requests = min;
        scenario.seed_engine.min_requests = min;
    }
    if let Some(max) = max_peers {
        if max < 2 {
            return Err("--max-peers must be at least 2".into());
        }
        scenario.max_peers = max;
    }
    scenario.invariants = invariants.unwrap_or(if downloaders <= 64 {
        Invariants::EveryStep
    } else {
        Invariants::EveryNth(1000)
    });
    Ok(Some((scenario, json, per_host)))
}

fn simulate(scenario: &Scenario, json: bool, per_host: bool) -> ExitCode {
    let started = Instant::now();
    let report = match run(scenario) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wall = started.elapsed().as_secs_f64();
    if per_host {
        for (i, h) in report.hosts.iter().enumerate() {
            eprintln!(
                "host {i:>5} site {} {}: done {:>8.2} s, up {:>6.2} x S, down {:>6.2} x S",
                h.site,
                if h.seed { "seed" } else { "    " },
                h.completed.unwrap_or(f64::NAN),
                h.uploaded as f64 / report.size as f64,
                h.downloaded as f64 / report.size as f64
            );
        }
    }
    if !report.timeline.is_empty() {
        eprintln!(
            "{:>7} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
            "t/T*",
            "up",
            "seed",
            "down",
            "done",
            "hold",
            "upany",
            "pieces",
            "cmin",
            "cmax",
            "flows",
            "intrst",
            "upto",
            "want",
            "mayask",
            "asked",
            "reqs"
        );
        for s in &report.timeline {
            eprintln!(
                "{:>7.3} {:>5.2} {:>5.2} {:>5.2} {:>6} {:>6} {:>6} {:>6.3} {:>5} {:>5} {:>5.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>7.1}",
                s.end / report.lower_bound,
                s.up_busy,
                s.seed_busy,
                s.down_busy,
                s.done,
                s.holding,
                s.uploaded_any,
                s.pieces,
                s.copies_min,
                s.copies_max,
                s.flows,
                s.interested_in_us,
                s.uploading_to,
                s.we_want,
                s.may_ask,
                s.asked,
                s.requests
            );
        }
    }
    if json {
        println!("{}", to_json(scenario, &report, wall));
    } else {
        println!("{}", to_line(scenario, &report, wall));
    }
    if report.unfinished() > 0 {
        eprintln!(
            "error: {} of {} downloaders did not finish by {:.0} s of virtual time",
            report.unfinished(),
            scenario.downloaders(),
            report.end
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn ratio(report: &Report, p: f64) -> f64 {
    report
        .percentile(p)
        .map_or(f64::NAN, |t| t / report.lower_bound)
}

fn to_line(scenario: &Scenario, report: &Report, wall: f64) -> String {
    format!(
        "N={} S={} MiB piece={} KiB: T*={:.2} s; p50 {:.2}, p99 {:.2}, max {:.2} x T*; seeds sent \
         {:.2} x S; between sites {:.2} x S; {} bans; {} events in {:.1} s; trace {:016x}",
        scenario.downloaders(),
        scenario.size >> 20,
        scenario.piece_length >> 10,
        report.lower_bound,
        ratio(report, 50.0),
        ratio(report, 99.0),
        ratio(report, 100.0),
        report.seed_upload_ratio(),
        report.inter_site_ratio(),
        report.bans,
        report.events,
        wall,
        report.trace_digest,
    )
}

fn to_json(scenario: &Scenario, report: &Report, wall: f64) -> String {
    let times: Vec<String> = report
        .completion_times()
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{t:.6}"))
        .collect();
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.6}")
        } else {
            "null".to_owned()
        }
    };
    format!(
        "{{\"downloaders\":{},\"size_bytes\":{},\"piece_length\":{},\"sites\":{},\
         \"t_star_seconds\":{},\"p50_ratio\":{},\"p99_ratio\":{},\"max_ratio\":{},\
         \"seed_upload_over_size\":{},\"inter_site_over_size\":{},\"bans\":{},\"unfinished\":{},\
         \"events\":{},\"wall_seconds\":{},\"trace_digest\":\"{:016x}\",\"seconds\":[{}]}}",
        scenario.downloaders(),
        scenario.size,
        scenario.piece_length,
        scenario.sites.len(),
        num(report.lower_bound),
        num(ratio(report, 50.0)),
        num(ratio(report, 99.0)),
        num(ratio(report, 100.0)),
        num(report.seed_upload_ratio()),
        num(report.inter_site_ratio()),
        report.bans,
        report.unfinished(),
        report.events,
        num(wall),
        report.trace_digest,
        times.join(","),
    )
}
