//! Carrying out the control plane's assignments: the agent keeps one stream open to the
//! control plane (reconnecting with back-off) that says which artifacts this node must hold;
//! it fetches each one it lacks without asking anyone, retries failures with back-off, and
//! reports progress back (only what changed, at most once per `REPORT_INTERVAL`, everything
//! again after a reconnect so a restarted control plane learns the whole state).
//!
//! An agent never refuses an assignment and never starts a distribution on its own: what to
//! hold is decided centrally. The rules the node is under (its policy) arrive on the same
//! stream and are applied at once: rate caps, no uploads and fewer peers to running transfers
//! (through the shared [`shoal_driver::HostLimits`]); seed retention to artifacts no placement
//! assigns any more (kept and seeded that long, then removed); the storage quota to what the
//! node holds (least recently used unpinned artifacts evicted to make room, an assignment that
//! cannot fit failed with `quota`, see [`crate::quota`]). With no retention rule an artifact
//! that stops being assigned keeps seeding until the quota or an operator removes it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_api::{ErrorCode, v1};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::Agent;
use crate::quota::{self, Held, Room};
use crate::torrents::RunState;

/// The longest wait between two attempts to open the stream, or to start one assignment.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How often every state is reported again even when nothing changed.
const FULL_REPORT: Duration = Duration::from_secs(60);

/// An assignment the agent could not start, and when it tries again.
struct Failure {
    reason: String,
    attempts: u32,
    retry_at: Instant,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent at every step; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs forever: the stream, the executor and the reporter.
pub(crate) async fn run(agent: Arc<Agent>) {
    let (sets, set) = watch::channel(v1::AssignmentSet::default());
    let (reconnects, reconnected) = watch::channel(0u64);
    let failures = Arc::new(std::sync::Mutex::new(HashMap::<String, Failure>::new()));
    // Aborted with this task when the agent shuts down.
    let _executor = AbortOnDrop(tokio::spawn(execute(
        agent.clone(),
        set.clone(),
        failures.clone(),
    )));
    let _reporter = AbortOnDrop(tokio::spawn(report(
        agent.clone(),
        set,
        reconnected,
        failures,
    )));
    let mut backoff = Duration::from_secs(1);
    let mut failed = 0u32;
    loop {
        match agent.control.watch_assignments(&agent.node_id).await {
            Ok(mut stream) => {
                reconnects.send_modify(|n| *n += 1);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(next) => {
                            if failed > 0 {
                                tracing::info!("assignment stream open again");
                            }
                            failed = 0;
                            backoff = Duration::from_secs(1);
                            let names: Vec<&str> = next
                                .assignments
                                .iter()
                                .map(|a| {
                                    if a.name_tag.is_empty() {
                                        a.content_id.as_str()
                                    } else {
                                        a.name_tag.as_str()
                                    }
                                })
                                .collect();
                            tracing::info!(assignments = ?names, "assignments from the control plane");
                            apply_limits(&agent, next.policy.as_ref());
                            sets.send_replace(next);
                        }
                        Err(status) => {
                            tracing::warn!(error = %status.message(), "assignment stream broke; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                if failed == 1 || failed.is_power_of_two() {
                    tracing::warn!(error = %e, attempts = failed, "cannot open the assignment stream; retrying with back-off");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The rules of a node's policy (none: share without limits).
fn rules_of(policy: Option<&v1::NodePolicy>) -> shoal_control::Rules {
    policy
        .and_then(|p| p.rules.as_ref())
        .map(shoal_server::rules_from)
        .unwrap_or_default()
}

/// Applies the policy's network rules to every transfer, running or to come.
fn apply_limits(agent: &Agent, policy: Option<&v1::NodePolicy>) {
    let rules = rules_of(policy);
    let limits = shoal_driver::Limits {
        upload_rate: rules.upload_rate,
        download_rate: rules.download_rate,
        max_peers: rules
            .max_peers
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
    };
    *agent
        .policy
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = policy.cloned();
    let host = agent.torrents.limits();
    if host.get() != limits {
        let from = policy.map(|p| p.policies.join(",")).unwrap_or_default();
        tracing::info!(
            upload_rate = ?limits.upload_rate,
            download_rate = ?limits.download_rate,
            max_peers = ?limits.max_peers,
            policies = %from,
            "policy applied to every transfer"
        );
        host.set(limits);
    }
}

/// What the executor remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Artifacts a placement assigned to this node (recorded in the data directory too, so
    /// a restarted agent still lets them go after the retention).
    assigned_once: HashSet<String>,
    /// Artifacts no longer assigned, and since when.
    released: HashMap<String, Instant>,
}

/// Starts every assigned artifact that is not running, retrying failures with back-off; lets
/// go of released artifacts after the seed retention; keeps the node under its quota.
async fn execute(
    agent: Arc<Agent>,
    mut set: watch::Receiver<v1::AssignmentSet>,
    failures: Arc<std::sync::Mutex<HashMap<String, Failure>>>,
) {
    // What placements assigned before a restart, and still held.
    let mut memory = Memory {
        assigned_once: agent
            .torrents
            .list()
            .into_iter()
            .map(|v| v.id)
            .filter(|id| agent.torrents.data().was_placed(id))
            .collect(),
        ..Memory::default()
    };
    loop {
        let current = set.borrow_and_update().clone();
        let rules = rules_of(current.policy.as_ref());
        let assigned: HashSet<String> = current
            .assignments
            .iter()
            .map(|a| a.content_id.clone())
            .collect();
        release(&agent, &assigned, rules.seed_retention_secs, &mut memory).await;
        // Over the quota (it was lowered): trim. The sizes alone tell, so the use records
        // are read only then.
        if let Some(quota) = rules.quota_bytes
            && agent
                .torrents
                .list()
                .iter()
                .map(|v| v.torrent.info().total_size())
                .sum::<u64>()
                > quota
        {
            let evict = quota::trim(&holdings(&agent, &assigned), quota);
            evict_all(&agent, &evict, quota, "the quota was lowered").await;
        }
        for a in &current.assignments {
            if memory.assigned_once.insert(a.content_id.clone())
                && let Err(e) = agent.torrents.data().mark_placed(&a.content_id)
            {
                tracing::warn!(content_id = %a.content_id, error = %e, "cannot record that a placement assigned this artifact; after a restart its seed retention will not apply");
            }
            let running = agent
                .torrents
                .get(&a.content_id)
                .is_some_and(|v| !matches!(*v.state.borrow(), RunState::Failed(_)));
            if running {
                continue;
            }
            let due = lock(&failures)
                .get(&a.content_id)
                .is_none_or(|f| Instant::now() >= f.retry_at);
            if !due {
                continue;
            }
            match start(&agent, a, &assigned, rules.quota_bytes).await {
                Ok(()) => {
                    lock(&failures).remove(&a.content_id);
                    tracing::info!(content_id = %a.content_id, name_tag = %a.name_tag, placements = ?a.placements, "assigned: fetching");
                }
                Err(reason) => {
                    let mut failures = lock(&failures);
                    let attempts = failures.get(&a.content_id).map_or(0, |f| f.attempts) + 1;
                    let wait = Duration::from_secs(1 << attempts.min(5)).min(MAX_BACKOFF);
                    tracing::warn!(content_id = %a.content_id, %reason, attempts, retry_in = ?wait, "cannot start an assignment");
                    failures.insert(
                        a.content_id.clone(),
                        Failure {
                            reason,
                            attempts,
                            retry_at: Instant::now() + wait,
                        },
                    );
                }
            }
        }
        tokio::select! {
            changed = set.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Starts one assignment, first making room for it under the quota. The error is the reason
/// reported to the control plane.
async fn start(
    agent: &Agent,
    a: &v1::Assignment,
    assigned: &HashSet<String>,
    quota: Option<u64>,
) -> Result<(), String> {
    let reference = v1::ArtifactRef {
        kind: Some(v1::artifact_ref::Kind::ContentId(a.content_id.clone())),
    };
    let (torrent, name_tag) = agent
        .resolve(Some(&reference))
        .await
        .map_err(|e| e.message)?;
    if let Some(quota) = quota {
        let size = torrent.info().total_size();
        // This artifact is pinned, but not held yet: it is the incoming one.
        let held: Vec<Held> = holdings(agent, assigned)
            .into_iter()
            .filter(|h| h.id != a.content_id)
            .collect();
        match quota::make_room(&held, size, quota) {
            Room::Fits { evict } => evict_all(agent, &evict, quota, "to make room").await,
            Room::Cannot { needed, kept } => {
                return Err(format!(
                    "quota: this node may hold {}, but would need {} ({} of it pinned by \
                     placements or downloading); raise the quota or narrow the placements",
                    mib(quota),
                    mib(needed),
                    mib(kept),
                ));
            }
        }
    }
    agent
        .torrents
        .start(Arc::new(torrent), name_tag)
        .map(|_| ())
        .map_err(|e| {
            let e = crate::service::storage_error(&e);
            if e.code == ErrorCode::DiskFull {
                format!("disk full: {}", e.message)
            } else {
                e.message
            }
        })
}

/// Bytes in MiB, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// What the node holds, as the quota sees it.
fn holdings(agent: &Agent, assigned: &HashSet<String>) -> Vec<Held> {
    agent
        .torrents
        .list()
        .into_iter()
        .map(|v| Held {
            bytes: v.torrent.info().total_size(),
            last_used_ms: agent.torrents.data().last_used(&v.id),
            pinned: assigned.contains(&v.id) || agent.torrents.uses().contains(&v.id),
            complete: matches!(*v.state.borrow(), RunState::Seeding),
            id: v.id,
        })
        .collect()
}

/// Removes each of `ids` from the node (stops seeding, deletes the data).
async fn evict_all(agent: &Agent, ids: &[String], quota: u64, why: &str) {
    for id in ids {
        if let Some(freed) = agent.torrents.remove(id).await {
            tracing::info!(content_id = %id, bytes_freed = freed, quota, "evicted under the storage quota, least recently used first ({why})");
        }
    }
}

/// Lets go of artifacts a placement assigned here but no longer does, once they have seeded
/// for the retention the policy sets.
async fn release(
    agent: &Agent,
    assigned: &HashSet<String>,
    retention: Option<u64>,
    memory: &mut Memory,
) {
    let now = Instant::now();
    memory.released.retain(|id, _| !assigned.contains(id));
    for id in &memory.assigned_once {
        if !assigned.contains(id) {
            memory.released.entry(id.clone()).or_insert(now);
        }
    }
    let Some(retention) = retention else {
        return;
    };
    let retention = Duration::from_secs(retention);
    let expired: Vec<String> = memory
        .released
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= retention)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        memory.released.remove(&id);
        memory.assigned_once.remove(&id);
        if let Some(freed) = agent.torrents.remove(&id).await {
            tracing::info!(content_id = %id, bytes_freed = freed, retention_secs = retention.as_secs(), "no placement assigns it any more and its seed retention is over: removed");
        }
    }
}

/// How long a download may go without a verified piece and without peers before it is
/// reported stalled for `no peers`.
const STALL: Duration = Duration::from_secs(30);

/// When each download last verified a piece or had a peer, to tell a stalled one.
#[derive(Default)]
struct Stalls(HashMap<String, (u32, Instant)>);

impl Stalls {
    /// What holds a download back, if anything: no peers for [`STALL`], pieces failing
    /// verification.
    fn why(&mut self, content_id: &str, p: &shoal_driver::Progress, now: Instant) -> String {
        let last = self.0.entry(content_id.to_owned()).or_insert((p.have, now));
        if p.have != last.0 || p.peers > 0 {
            *last = (p.have, now);
        }
        let mut why = Vec::new();
        let idle = now.duration_since(last.1);
        if p.checking.is_none() && idle >= STALL {
            why.push(format!(
                "no peers for {} s: no host holding it is reachable, or none is seeding it",
                idle.as_secs()
            ));
        }
        if p.stats.pieces_failed > 0 {
            why.push(format!(
                "{} pieces failed verification, {} peers banned for it",
                p.stats.pieces_failed, p.stats.peers_banned
            ));
        }
        why.join("; ")
    }
}

/// Where this node is with one assigned artifact.
fn progress_of(
    agent: &Agent,
    content_id: &str,
    failures: &HashMap<String, Failure>,
    stalls: &mut Stalls,
) -> v1::ArtifactProgress {
    use v1::AssignmentState as S;
    let (state, bytes_done, reason) = match agent.torrents.get(content_id) {
        Some(view) => {
            let size = view.torrent.info().total_size();
            let run = view.state.borrow().clone();
            match run {
                RunState::Failed(reason) => (S::Failed, 0, reason),
                RunState::Seeding => (S::Done, size, String::new()),
                RunState::Checking | RunState::Downloading => {
                    let p = view.progress.borrow();
                    let piece = view.torrent.info().piece_length.bytes();
                    let done = (u64::from(p.have) * piece).min(size);
                    (
                        S::Downloading,
                        done,
                        stalls.why(content_id, &p, Instant::now()),
                    )
                }
            }
        }
        None => match failures.get(content_id) {
            Some(f) => (S::Failed, 0, f.reason.clone()),
            None => (S::Pending, 0, String::new()),
        },
    };
    v1::ArtifactProgress {
        content_id: content_id.to_owned(),
        state: state.into(),
        bytes_done,
        reason,
    }
}

/// Reports what changed since the last report, batched, at the interval the control plane
/// asks for; everything after a reconnect and every [`FULL_REPORT`].
async fn report(
    agent: Arc<Agent>,
    set: watch::Receiver<v1::AssignmentSet>,
    mut reconnected: watch::Receiver<u64>,
    failures: Arc<std::sync::Mutex<HashMap<String, Failure>>>,
) {
    let mut sent: BTreeMap<String, v1::ArtifactProgress> = BTreeMap::new();
    let mut stalls = Stalls::default();
    let mut interval = shoal_server::REPORT_INTERVAL;
    let mut last_full = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        if reconnected.has_changed().unwrap_or(false) || last_full.elapsed() >= FULL_REPORT {
            reconnected.mark_unchanged();
            sent.clear();
            last_full = Instant::now();
        }
        let assignments = set.borrow().assignments.clone();
        let ids: HashSet<&str> = assignments.iter().map(|a| a.content_id.as_str()).collect();
        stalls.0.retain(|id, _| ids.contains(id.as_str()));
        let now: Vec<v1::ArtifactProgress> = {
            let failures = lock(&failures);
            assignments
                .iter()
                .map(|a| progress_of(&agent, &a.content_id, &failures, &mut stalls))
                .collect()
        };
        let changed: Vec<v1::ArtifactProgress> = now
            .into_iter()
            .filter(|p| sent.get(&p.content_id) != Some(p))
            .collect();
        for batch in changed.chunks(shoal_server::MAX_REPORT_ENTRIES) {
            let request = v1::ReportProgressRequest {
                node_id: agent.node_id.clone(),
                artifacts: batch.to_vec(),
            };
            match agent.control.report_progress(request).await {
                Ok(reply) => {
                    for p in batch {
                        sent.insert(p.content_id.clone(), p.clone());
                    }
                    interval = Duration::from_millis(u64::from(reply.min_interval_ms))
                        .max(shoal_server::REPORT_INTERVAL);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "progress report failed; sending it again later");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_without_peers_or_progress_is_stalled_and_says_why() {
        let mut stalls = Stalls::default();
        let start = Instant::now();
        let mut p = shoal_driver::Progress {
            have: 3,
            total: 10,
            ..shoal_driver::Progress::default()
        };
        assert_eq!(stalls.why("a", &p, start), "");
        assert_eq!(stalls.why("a", &p, start + STALL / 2), "");
        let why = stalls.why("a", &p, start + STALL);
        assert!(why.starts_with("no peers for 30 s"), "{why}");
        // A verified piece (or a peer) clears it.
        p.have = 4;
        assert_eq!(stalls.why("a", &p, start + STALL * 2), "");
        p.peers = 2;
        assert_eq!(stalls.why("a", &p, start + STALL * 4), "");
        // Failing pieces are reported while the download goes on.
        p.stats.pieces_failed = 2;
        p.stats.peers_banned = 1;
        assert_eq!(
            stalls.why("a", &p, start + STALL * 4),
            "2 pieces failed verification, 1 peers banned for it"
        );
    }
}
