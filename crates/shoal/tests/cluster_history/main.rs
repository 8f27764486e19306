//! The fault-injection history test of the replicated control plane: real `shoal server`
//! processes (5 in one test, 3 in the other), each in its own network namespace, while
//! concurrent clients bind and read `name:tag`s through random nodes and a seeded schedule
//! kills nodes (the leader too; restarted from their data directories), stalls them (SIGSTOP,
//! then SIGCONT), partitions them with `iptables` (one node or the leader cut off, 2|3 splits,
//! a one-way drop) and takes the quorum away (a majority killed, a 2|2|1 split).
//!
//! Every fault is held for a while and then healed; the next begins only once a bind invoked
//! after the heal has been acknowledged (the cluster recovers, or the test fails). At the end
//! every node runs, the cluster converges, every node's catalog is read, and the history goes
//! through `shoal_control::history::check`: no key bound to two contents, no acknowledged bind
//! lost, reads linearizable. Every node must also hold the same catalog.
//!
//! The schedule comes from a seed, printed first: `SHOAL_HISTORY_SEED=<n>` replays it (the
//! faults, their order and timings, and each client's choices; which node is the leader when a
//! fault aims at it, and how operations interleave, are up to the real processes). On failure
//! the whole history is written to a file named in the report. Needs root for the namespaces,
//! like the other `netns` tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]
#![allow(
    clippy::print_stderr,
    reason = "the schedule, the faults as they happen and the totals are the test's log"
)]

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod faults;
mod schedule;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clients::{Clock, Shared, Target};
use common::netns::Lab;
use common::server_cluster::ServerCluster;
use faults::Faults;
use schedule::Schedule;
use shoal_control::history::{self, BindResult, FinalState, Op, OpKind};
use shoal_swarm::Rng;

/// Concurrent clients.
const CLIENTS: u64 = 5;
/// How long the cluster must take to acknowledge a bind again once a fault heals.
const RECOVER_WITHIN: Duration = Duration::from_secs(20);
/// Healthy running after the last episode, before the clients stop.
const QUIET_END: Duration = Duration::from_secs(3);
/// How long the nodes may take to agree once everything runs again.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn five_server_nodes_keep_the_catalog_linearizable_under_faults() {
    run(5, 5);
}

#[test]
fn three_server_nodes_keep_the_catalog_linearizable_under_faults() {
    run(3, 3);
}

/// `SHOAL_HISTORY_SEED`, else `default`.
fn seed(default: u64) -> u64 {
    std::env::var("SHOAL_HISTORY_SEED")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("SHOAL_HISTORY_SEED={s:?} is not a number"))
        })
        .unwrap_or(default)
}

/// One fault as it was carried out, for the report.
struct Happened {
    index: usize,
    what: String,
    began: u64,
    healed: u64,
    recovered: u64,
}

/// How to run a seed's schedule again, for failure reports.
fn replay(seed: u64) -> String {
    format!(
        "replay the schedule: SHOAL_HISTORY_SEED={seed} cargo nextest run -p shoal --test cluster_history"
    )
}

/// The whole test on `servers` nodes, with the seed from `SHOAL_HISTORY_SEED` or
/// `default_seed`.
fn run(servers: usize, default_seed: u64) {
    let wall = Instant::now();
    let seed = seed(default_seed);
    let schedule = Schedule::generate(seed, servers);
    eprintln!("{schedule}");
    let replay = replay(seed);

    // Hosts 0..servers are the server nodes; the clients run on the next one.
    let lab = Lab::new(&format!("hist{servers}"), servers + 1);
    let mut cluster = ServerCluster::start(lab, servers);
    let runtime = cluster.lab().runtime_in(servers);
    let token = std::fs::read_to_string(cluster.admin_token()).unwrap();
    let target = Target::new((0..servers).map(|h| cluster.url(h)).collect(), &token);

    let clock = Clock::start();
    let shared = Shared::new();
    let candidates = clients::candidates();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            runtime.spawn(clients::run(
                client,
                seed,
                target.clone(),
                candidates.clone(),
                clock,
                shared.clone(),
            ))
        })
        .collect();
    let first = wait_for_ack(&shared, 0, &cluster, &format!("the start\n{replay}"));
    eprintln!(
        "[{:>5.1} s] the first bind acknowledged",
        first as f64 / 1e6
    );
    let happened = inject(&schedule, &mut cluster, &runtime, &target, &shared, clock);
    std::thread::sleep(QUIET_END);
    shared.stop.store(true, Ordering::Relaxed);
    let mut ops: Vec<Op> = Vec::new();
    for task in tasks {
        ops.extend(runtime.block_on(task).unwrap());
    }
    ops.sort_by_key(|op| (op.invoked, op.client));

    let finals = converge(&runtime, &target, &cluster, &replay);
    let summary = summarize(&ops, &finals, wall.elapsed());
    eprintln!("seed {seed}, {servers} server nodes: {summary}");
    let anomalies = shared.anomalies.lock().unwrap().clone();
    if let Some(failure) = verdict(&ops, &finals, &anomalies) {
        let file = write_history(seed, servers, &schedule, &happened, &ops, &finals);
        panic!(
            "seed {seed} on {servers} server nodes: {failure}\nthe history is in {}\n{replay}\n{}",
            file.display(),
            cluster.logs()
        );
    }
    let acked = ops
        .iter()
        .filter(|op| {
            matches!(
                op.kind,
                OpKind::Bind {
                    result: BindResult::Bound,
                    ..
                }
            )
        })
        .count();
    assert!(
        acked >= 50,
        "only {acked} binds acknowledged in the whole run: {summary}\n{replay}"
    );
}

/// Carries out every episode of `schedule` on `cluster` while the clients run: a pause, the
/// fault (aimed at the leader of the moment, if it names one), its hold, the heal, then a wait
/// until a bind invoked after the heal is acknowledged.
fn inject(
    schedule: &Schedule,
    cluster: &mut ServerCluster,
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    shared: &Shared,
    clock: Clock,
) -> Vec<Happened> {
    let mut faults = Faults::default();
    let mut happened = Vec::new();
    for (index, episode) in schedule.episodes.iter().enumerate() {
        std::thread::sleep(episode.pause);
        let statuses = {
            let target = target.clone();
            runtime
                .block_on(runtime.spawn(async move { clients::statuses(&target).await }))
                .unwrap()
        };
        let leader = clients::leader(&statuses);
        let mut rng = Rng::new(episode.salt);
        let resolved = episode
            .fault
            .resolve(schedule.servers, leader.map(|(h, _)| h), &mut rng);
        let began = clock.now();
        faults.apply(cluster, &resolved);
        let leader = leader.map_or("none".to_owned(), |(h, term)| {
            format!("host {h}, term {term}")
        });
        let what = format!(
            "#{index} {} (leader: {leader}): {resolved:?}",
            episode.fault
        );
        eprintln!("[{:>5.1} s] {what}", began as f64 / 1e6);
        std::thread::sleep(episode.hold);
        faults.heal(cluster);
        let healed = clock.now();
        let context = format!("the heal of {what}\n{}", replay(schedule.seed));
        wait_for_ack(shared, healed, cluster, &context);
        let recovered = clock.now();
        eprintln!(
            "[{:>5.1} s] healed; a bind invoked since acknowledged {:.2} s after the heal",
            healed as f64 / 1e6,
            (recovered - healed) as f64 / 1e6
        );
        happened.push(Happened {
            index,
            what,
            began,
            healed,
            recovered,
        });
    }
    happened
}

/// What is wrong with a finished run, if anything: answers no correct server gives, nodes
/// that hold different catalogs, or a history that breaks a rule.
fn verdict(ops: &[Op], finals: &[FinalState], anomalies: &[String]) -> Option<String> {
    if !anomalies.is_empty() {
        return Some(format!("answers no correct server gives: {anomalies:#?}"));
    }
    if let Some(other) = finals.iter().find(|f| f.bindings != finals[0].bindings) {
        return Some(format!(
            "{} and {} hold different catalogs",
            finals[0].node, other.node
        ));
    }
    history::check(ops, finals)
        .err()
        .map(|v| format!("the history breaks a rule: {v}"))
}

/// Waits until a bind invoked at or after `since` (clock microseconds) is acknowledged;
/// the latest such bind's invoke time. Fails the test after [`RECOVER_WITHIN`].
fn wait_for_ack(shared: &Shared, since: u64, cluster: &ServerCluster, after: &str) -> u64 {
    let start = Instant::now();
    loop {
        let acked = shared.acked_invoked.load(Ordering::Relaxed);
        if acked >= since && acked > 0 {
            return acked;
        }
        assert!(
            start.elapsed() < RECOVER_WITHIN,
            "no bind acknowledged within {RECOVER_WITHIN:?} after {after}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every node answers, names the same leader and has applied everything the
/// leader committed; then every node's catalog.
fn converge(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    cluster: &ServerCluster,
    replay: &str,
) -> Vec<FinalState> {
    let start = Instant::now();
    loop {
        let target = target.clone();
        let attempt = runtime.block_on(runtime.spawn(async move {
            let all: Vec<_> = clients::statuses(&target)
                .await
                .into_iter()
                .collect::<Option<_>>()?;
            let leader = all[0].leader_id?;
            let commit = all
                .iter()
                .find(|s| s.node_id == leader)
                .and_then(|s| s.commit_index)?;
            let agreed = all
                .iter()
                .all(|s| s.leader_id == Some(leader) && s.applied_index == Some(commit));
            if !agreed {
                return None;
            }
            let mut finals = Vec::new();
            for host in 0..target.urls.len() {
                finals.push(clients::final_state(&target, host).await?);
            }
            Some(finals)
        }));
        match attempt.unwrap() {
            Some(finals) => return finals,
            None => {
                assert!(
                    start.elapsed() < CONVERGE_WITHIN,
                    "the nodes did not converge within {CONVERGE_WITHIN:?} of the last heal\n\
                     {replay}\n{}",
                    cluster.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Operation counts and the run's wall time, on one line.
fn summarize(ops: &[Op], finals: &[FinalState], wall: Duration) -> String {
    let (mut bound, mut refused, mut bind_unknown) = (0, 0, 0);
    let (mut found, mut unbound, mut read_unknown) = (0, 0, 0);
    let mut definite: Vec<u64> = Vec::new();
    for op in ops {
        let unknown = matches!(
            op.kind,
            OpKind::Bind {
                result: BindResult::Unknown,
                ..
            } | OpKind::Read { result: None }
        );
        if !unknown {
            definite.push(op.completed - op.invoked);
        }
        match op.kind {
            OpKind::Bind { result, .. } => match result {
                BindResult::Bound => bound += 1,
                BindResult::Refused { .. } => refused += 1,
                BindResult::Unknown => bind_unknown += 1,
            },
            OpKind::Read { result } => match result {
                Some(Some(_)) => found += 1,
                Some(None) => unbound += 1,
                None => read_unknown += 1,
            },
        }
    }
    definite.sort_unstable();
    let percentile = |p: usize| {
        definite
            .get(definite.len().saturating_sub(1) * p / 100)
            .map_or(0.0, |us| *us as f64 / 1e3)
    };
    format!(
        "{} ops: binds {bound} acknowledged, {refused} refused, {bind_unknown} unknown; \
         reads {found} found, {unbound} unbound, {read_unknown} unknown; \
         definite answers in {:.0}/{:.0} ms p50/p99; {} keys bound at the end; {:.1} s wall",
        ops.len(),
        percentile(50),
        percentile(99),
        finals.first().map_or(0, |f| f.bindings.len()),
        wall.as_secs_f64()
    )
}

/// Writes the schedule, the faults as they happened, every operation and every final state
/// to a file that outlives the test; its path.
fn write_history(
    seed: u64,
    servers: usize,
    schedule: &Schedule,
    happened: &[Happened],
    ops: &[Op],
    finals: &[FinalState],
) -> std::path::PathBuf {
    let mut text = format!("{schedule}\nfaults as they happened (clock in microseconds):\n");
    for h in happened {
        let _ = writeln!(
            text,
            "  {} began {} healed {} recovered {} ({})",
            h.index, h.began, h.healed, h.recovered, h.what
        );
    }
    let _ = writeln!(text, "\noperations, by invoke time:");
    for (i, op) in ops.iter().enumerate() {
        let _ = writeln!(text, "  op #{i} ({op})");
    }
    for state in finals {
        let _ = writeln!(text, "\nfinal state of {}:", state.node);
        for (key, content) in &state.bindings {
            let _ = writeln!(
                text,
                "  {key} -> {}",
                data_encoding::HEXLOWER.encode(content)
            );
        }
    }
    let path = std::env::temp_dir().join(format!(
        "shoal-history-seed{seed}-{servers}nodes-{}.txt",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}
