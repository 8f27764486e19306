//! One simulated run: 3 or 5 openraft nodes replicating `ControlState`, clients binding a few
//! tags to differing contents and reading them linearizably through random nodes, and a
//! seeded schedule of faults (crashes and restarts, partitions, stalls, lost and delayed
//! messages). At the end the faults heal, every node restarts, and the run checks that they
//! converge to one digest and that the history the clients saw passes the checker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use shoal_control::history::{self, BindResult, Content, FinalState, Op, OpKind};
use shoal_control::{ArtifactRecord, BindError, Command, ControlState, Outcome};

use super::check::Checks;
use super::net::{SimNetwork, World};
use super::store::{Applied, Disk, Life, LifeRef, SimLog, SimSm, lock};
use crate::StateMachine;
use crate::types::{Incarnation, Member, NodeId, Raft};

/// The tags clients race on.
const KEYS: [&str; 4] = ["app:1", "app:2", "app:3", "web:1"];
/// How long a client waits for one operation before calling its outcome unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long, after the faults heal, the nodes have to converge.
const SETTLE: Duration = Duration::from_secs(60);

/// What a run is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Params {
    pub(super) nodes: u64,
    pub(super) seed: u64,
    /// Virtual time under faults, before the healing.
    pub(super) run_for: Duration,
    pub(super) clients: u64,
    /// A deliberate bug, to show the checker catches it: reads answered from the local state
    /// of whichever node is asked, with no leader check or read index.
    pub(super) local_reads: bool,
}

/// What a run did.
pub(super) struct Report {
    /// The hash of everything that happened, in order, with virtual times.
    pub(super) trace: [u8; 32],
    /// The trace itself, line by line.
    pub(super) lines: Vec<String>,
    pub(super) ops: usize,
    pub(super) acked_binds: usize,
    pub(super) answered_reads: usize,
    pub(super) crashes: u64,
    pub(super) terms_led: usize,
    /// Terms led by two nodes or more (openraft allows it; see `check`).
    pub(super) terms_shared: usize,
    pub(super) delivered: u64,
    pub(super) lost: u64,
    pub(super) virtual_ms: u64,
}

/// The control plane's state machine, as the server replicates it.
#[derive(Default)]
pub(super) struct Replica(pub(super) ControlState);

impl StateMachine for Replica {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.apply_entry(command).encode()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.encode()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = ControlState::decode(snapshot).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// An artifact record of small content `fill`.
fn artifact(fill: u8) -> ArtifactRecord {
    use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
    use shoal_metainfo::{MetaVersion, PathComponent, TorrentPath};
    let data = vec![fill; 3000];
    let name = PathComponent::new("payload.bin").unwrap();
    let input = InputFile {
        path: TorrentPath::new(vec![name.clone()]).unwrap(),
        length: data.len() as u64,
        executable: false,
    };
    let options = CreateOptions {
        version: MetaVersion::Hybrid,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    let torrent = Plan::new(name, vec![input], true, options)
        .unwrap()
        .finish_in_memory(|_| &data)
        .unwrap();
    ArtifactRecord::from_torrent("x:1".parse().unwrap(), &torrent, "sim", 1).unwrap()
}

fn bind_command(record: &ArtifactRecord, key: &str) -> Vec<u8> {
    let mut record = record.clone();
    record.name_tag = key.parse().unwrap();
    Command::Bind(record).encode()
}

/// A running node as a client reaches it: its `Raft`, its life number, its applied state.
type Handle = (Raft, u64, Arc<Mutex<Applied<Replica>>>);

/// One node: its current life's disk and applied state, and whether it runs.
struct Node {
    life: LifeRef,
    applied: Arc<Mutex<Applied<Replica>>>,
    up: bool,
}

struct Sim {
    params: Params,
    world: Arc<World>,
    checks: Arc<Checks>,
    nodes: Mutex<BTreeMap<NodeId, Node>>,
    contents: Vec<ArtifactRecord>,
    history: Mutex<Vec<Op>>,
    crashes: Mutex<u64>,
}

/// Runs one seeded schedule; `Err` names the first violation found.
pub(super) async fn run(params: Params) -> Result<Report, String> {
    let checks = Arc::new(Checks::default());
    let world = Arc::new(World::new(params.seed));
    let result = run_checked(params, Arc::clone(&world), Arc::clone(&checks)).await;
    if let Some(path) = std::env::var_os("SHOAL_SIM_TRACE") {
        let lines = match &result {
            Ok(report) => report.lines.clone(),
            Err(_) => world.lock().lines.clone(),
        };
        let _ = std::fs::write(path, lines.join("\n"));
    }
    result.map_err(|e| {
        // An invariant broken earlier is the likelier cause of a later failure: name it too.
        match checks.violations().first() {
            Some(first) if !e.contains(first.as_str()) => format!("{e}; earlier: {first}"),
            _ => e,
        }
    })
}

async fn run_checked(
    params: Params,
    world: Arc<World>,
    checks: Arc<Checks>,
) -> Result<Report, String> {
    let sim = Arc::new(Sim {
        params,
        world,
        checks,
        nodes: Mutex::new(BTreeMap::new()),
        contents: (1..=3).map(artifact).collect(),
        history: Mutex::new(Vec::new()),
        crashes: Mutex::new(0),
    });
    for id in 1..=params.nodes {
        sim.start(id, Disk::default()).await?;
    }
    let members: BTreeMap<NodeId, Member> = (1..=params.nodes)
        .map(|id| {
            let member = Member {
                addr: format!("sim-{id}"),
                incarnation: Incarnation(u128::from(id)),
            };
            (id, member)
        })
        .collect();
    let first = sim.world.raft(1).ok_or("node 1 is not up")?;
    first
        .initialize(members)
        .await
        .map_err(|e| format!("initialize: {e}"))?;

    let end = tokio::time::Instant::now() + params.run_for;
    let mut tasks = Vec::new();
    for client in 0..params.clients {
        let sim = Arc::clone(&sim);
        tasks.push(tokio::spawn(async move { sim.client(client, end).await }));
    }
    let observer = {
        let sim = Arc::clone(&sim);
        tokio::spawn(async move { sim.observe().await })
    };
    sim.faults(end).await?;
    for task in tasks {
        task.await.map_err(|e| format!("a client panicked: {e}"))?;
    }

    // Heal everything, bring every node back, and let them converge.
    sim.world.lock().faults = super::net::Faults::default();
    sim.world.trace("heal");
    let down: Vec<NodeId> = lock(&sim.nodes)
        .iter()
        .filter(|(_, n)| !n.up)
        .map(|(id, _)| *id)
        .collect();
    for id in down {
        sim.restart(id).await?;
    }
    sim.final_write().await?;
    let digests = sim.converge().await?;
    observer.abort();

    let violations = sim.checks.violations();
    if let Some(first) = violations.first() {
        return Err(format!(
            "{first} ({} invariant violations in all)",
            violations.len()
        ));
    }
    let finals: Vec<FinalState> = lock(&sim.nodes)
        .iter()
        .map(|(id, node)| FinalState {
            node: format!("node {id}"),
            bindings: lock(&node.applied)
                .machine
                .0
                .artifacts()
                .map(|r| (r.name_tag.to_string(), r.content_id))
                .collect(),
        })
        .collect();
    let ops = lock(&sim.history).clone();
    history::check(&ops, &finals).map_err(|v| format!("history: {v}"))?;

    for (id, digest) in &digests {
        sim.world
            .trace(&format!("final node {id} digest {}", hex(digest)));
    }
    let (delivered, lost) = {
        let w = sim.world.lock();
        (w.delivered, w.lost)
    };
    let crashes = *lock(&sim.crashes);
    let lines = std::mem::take(&mut sim.world.lock().lines);
    Ok(Report {
        trace: sim.world.trace_digest(),
        lines,
        ops: ops.len(),
        acked_binds: ops
            .iter()
            .filter(|o| {
                matches!(
                    o.kind,
                    OpKind::Bind {
                        result: BindResult::Bound | BindResult::Refused { .. },
                        ..
                    }
                )
            })
            .count(),
        answered_reads: ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Read { result: Some(_) }))
            .count(),
        crashes,
        terms_led: sim.checks.terms_led(),
        terms_shared: sim.checks.terms_shared(),
        delivered,
        lost,
        virtual_ms: sim.world.now_ms(),
    })
}

impl Report {
    /// One line: the counts and the trace digest.
    pub(super) fn summary(&self) -> String {
        format!(
            "trace {}, {} ops ({} binds acknowledged, {} reads answered), {} crashes, {} terms led ({} by two nodes), {} messages delivered, {} lost, {} ms virtual",
            hex(&self.trace[..8]),
            self.ops,
            self.acked_binds,
            self.answered_reads,
            self.crashes,
            self.terms_led,
            self.terms_shared,
            self.delivered,
            self.lost,
            self.virtual_ms
        )
    }

    /// Where two runs' traces first differ, if they do.
    pub(super) fn divergence(&self, other: &Report) -> Option<String> {
        let at = self
            .lines
            .iter()
            .zip(&other.lines)
            .position(|(a, b)| a != b)
            .or((self.lines.len() != other.lines.len())
                .then(|| self.lines.len().min(other.lines.len())))?;
        let line = |r: &Report| {
            r.lines
                .get(at)
                .cloned()
                .unwrap_or_else(|| "(end)".to_owned())
        };
        Some(format!(
            "line {at}: {} vs {} (after {})",
            line(self),
            line(other),
            at.checked_sub(1)
                .and_then(|i| self.lines.get(i))
                .map_or("nothing", String::as_str)
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sim {
    /// Starts a new life of node `id` on `disk`, with an election timeout drawn from the seed.
    async fn start(&self, id: NodeId, disk: Disk) -> Result<(), String> {
        let (life_no, timeout, snapshot_every, keep) = {
            let mut w = self.world.lock();
            let slot = w.nodes.entry(id).or_default();
            slot.life += 1;
            let life_no = slot.life;
            // openraft draws a node's election timeout once, at start, from `rand`'s thread
            // RNG: a range one millisecond wide pins it to the seeded draw.
            let timeout = 150 + w.rng.below(150);
            (life_no, timeout, 5 + w.rng.below(40), w.rng.below(6))
        };
        let config = Config {
            cluster_name: "sim".to_owned(),
            heartbeat_interval: 50,
            election_timeout_min: timeout,
            election_timeout_max: timeout + 1,
            install_snapshot_timeout: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: keep,
            purge_batch_size: 1,
            snapshot_max_chunk_size: 512,
            ..Config::default()
        }
        .validate()
        .map_err(|e| format!("config: {e}"))?;
        let life: LifeRef = Arc::new(Mutex::new(Life {
            node: id,
            disk,
            alive: true,
        }));
        let log = SimLog {
            life: Arc::clone(&life),
            checks: Arc::clone(&self.checks),
        };
        let sm = SimSm::open(
            Arc::clone(&life),
            Replica::default(),
            Arc::clone(&self.checks),
        )
        .map_err(|e| format!("node {id} cannot restore its snapshot: {e}"))?;
        let applied = Arc::clone(&sm.applied);
        let network = SimNetwork {
            world: Arc::clone(&self.world),
            from: id,
            life: life_no,
        };
        let raft = Raft::new(id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| format!("node {id} does not start: {e}"))?;
        if let Some(slot) = self.world.lock().nodes.get_mut(&id) {
            slot.raft = Some(raft);
        }
        lock(&self.nodes).insert(
            id,
            Node {
                life,
                applied,
                up: true,
            },
        );
        self.world.trace(&format!(
            "start node {id} life {life_no} election timeout {timeout} ms, snapshot every {snapshot_every} keeping {keep}"
        ));
        Ok(())
    }

    /// Stops node `id` as a crash would: its disk stays as it is now, its memory is gone.
    async fn crash(&self, id: NodeId) {
        let raft = self
            .world
            .lock()
            .nodes
            .get_mut(&id)
            .and_then(|s| s.raft.take());
        if let Some(node) = lock(&self.nodes).get_mut(&id) {
            lock(&node.life).alive = false;
            node.up = false;
        }
        *lock(&self.crashes) += 1;
        self.world.trace(&format!("crash node {id}"));
        if let Some(raft) = raft {
            let _ = raft.shutdown().await;
        }
    }

    async fn restart(&self, id: NodeId) -> Result<(), String> {
        let disk = {
            let nodes = lock(&self.nodes);
            let node = nodes.get(&id).ok_or("no such node")?;
            lock(&node.life).disk.after_crash()
        };
        self.start(id, disk).await
    }

    fn up(&self) -> Vec<NodeId> {
        lock(&self.nodes)
            .iter()
            .filter(|(_, n)| n.up)
            .map(|(id, _)| *id)
            .collect()
    }

    fn down(&self) -> Vec<NodeId> {
        lock(&self.nodes)
            .iter()
            .filter(|(_, n)| !n.up)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick<T: Copy>(&self, from: &[T]) -> Option<T> {
        if from.is_empty() {
            return None;
        }
        let i = self.world.lock().rng.below(from.len() as u64);
        from.get(usize::try_from(i).ok()?).copied()
    }

    /// The fault schedule, until `end`.
    async fn faults(&self, end: tokio::time::Instant) -> Result<(), String> {
        let n = self.params.nodes;
        while tokio::time::Instant::now() < end {
            let (pause, dice) = {
                let mut w = self.world.lock();
                (w.rng.millis(50, 700), w.rng.below(100))
            };
            tokio::time::sleep(pause).await;
            match dice {
                // Crash a node, leaving at least a minority up.
                0..18 => {
                    if (self.down().len() as u64) < n.div_ceil(2)
                        && let Some(id) = self.pick(&self.up())
                    {
                        self.crash(id).await;
                    }
                }
                18..38 => {
                    if let Some(id) = self.pick(&self.down()) {
                        self.restart(id).await?;
                    }
                }
                38..52 => {
                    let mut w = self.world.lock();
                    let size = 1 + w.rng.below(n / 2);
                    let mut side = std::collections::BTreeSet::new();
                    while (side.len() as u64) < size {
                        side.insert(1 + w.rng.below(n));
                    }
                    drop(w);
                    self.world.trace(&format!("partition {side:?}"));
                    self.world.lock().faults.isolated = Some(side);
                }
                52..64 => {
                    self.world.lock().faults.isolated = None;
                    self.world.trace("partition healed");
                }
                64..78 => {
                    let mut w = self.world.lock();
                    let id = 1 + w.rng.below(n);
                    let until = tokio::time::Instant::now() + w.rng.millis(100, 1500);
                    w.faults.stalled.insert(id, until);
                    drop(w);
                    self.world.trace(&format!("stall node {id}"));
                }
                78..92 => {
                    let mut w = self.world.lock();
                    w.faults.drop_per_mille = w.rng.below(200);
                    w.faults.max_delay = w.rng.millis(0, 60);
                    let (d, m) = (w.faults.drop_per_mille, w.faults.max_delay);
                    drop(w);
                    self.world
                        .trace(&format!("weather: drop {d}/1000, delay up to {m:?}"));
                }
                _ => {
                    let mut w = self.world.lock();
                    w.faults.drop_per_mille = 0;
                    w.faults.max_delay = w.rng.millis(0, 5);
                    drop(w);
                    self.world.trace("calm");
                }
            }
        }
        Ok(())
    }

    /// Samples every running node's metrics: a leader leads under its own committed vote, and
    /// no node stops on its own.
    async fn observe(&self) {
        let mut seen: BTreeMap<NodeId, (ServerState, u64, Option<NodeId>)> = BTreeMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let rafts: Vec<(NodeId, Raft)> = {
                let w = self.world.lock();
                w.nodes
                    .iter()
                    .filter_map(|(id, s)| s.raft.clone().map(|r| (*id, r)))
                    .collect()
            };
            for (id, raft) in rafts {
                let m = raft.metrics().borrow().clone();
                let now = (m.state, m.current_term, m.vote.leader_id().voted_for());
                if seen.insert(id, now) != Some(now) {
                    self.world.trace(&format!(
                        "node {id}: {:?} in term {}, vote {}, last log {:?}, applied {:?}",
                        m.state,
                        m.current_term,
                        m.vote,
                        m.last_log_index,
                        m.last_applied.map(|l| l.index)
                    ));
                }
                if m.state == ServerState::Leader {
                    self.checks.leader(id, &m.vote);
                }
                if let Err(fatal) = &m.running_state {
                    self.checks
                        .violation(format!("node {id} stopped by itself: {fatal}"));
                }
            }
        }
    }

    /// One client: binds and reads through random nodes until `end`.
    async fn client(&self, client: u64, end: tokio::time::Instant) {
        while tokio::time::Instant::now() < end {
            let (pause, node, key, content, is_bind) = {
                let mut w = self.world.lock();
                (
                    w.rng.millis(0, 150),
                    1 + w.rng.below(self.params.nodes),
                    KEYS[w.rng.below(KEYS.len() as u64) as usize],
                    w.rng.below(self.contents.len() as u64) as usize,
                    w.rng.chance(500),
                )
            };
            tokio::time::sleep(pause).await;
            let invoked = self.now_us();
            let kind = if is_bind {
                let record = &self.contents[content];
                let result = tokio::time::timeout(
                    OP_TIMEOUT,
                    self.bind(node, key, record.content_id, bind_command(record, key)),
                )
                .await
                .unwrap_or(BindResult::Unknown);
                OpKind::Bind {
                    content: record.content_id,
                    result,
                }
            } else {
                let result = tokio::time::timeout(OP_TIMEOUT, self.read(node, key))
                    .await
                    .unwrap_or(None);
                OpKind::Read { result }
            };
            let op = Op {
                client,
                invoked,
                completed: self.now_us(),
                key: key.to_owned(),
                kind,
            };
            self.world
                .trace(&format!("client {client} via node {node}: {op:?}"));
            lock(&self.history).push(op);
        }
    }

    fn now_us(&self) -> u64 {
        self.world.now_ms().saturating_mul(1000)
    }

    /// The running `Raft` of `id`, its life number and its applied state.
    fn handle(&self, id: NodeId) -> Option<Handle> {
        let (raft, life) = {
            let w = self.world.lock();
            let slot = w.nodes.get(&id)?;
            (slot.raft.clone()?, slot.life)
        };
        let applied = Arc::clone(&lock(&self.nodes).get(&id)?.applied);
        Some((raft, life, applied))
    }

    /// Binds through node `via`: proposed there if it leads, else forwarded once to the leader
    /// it names, over the faulty network.
    async fn bind(&self, via: NodeId, key: &str, content: Content, command: Vec<u8>) -> BindResult {
        let Some((raft, life, _)) = self.handle(via) else {
            return BindResult::Unknown;
        };
        let reply = match raft.client_write(command.clone()).await {
            Ok(r) => r.data,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let Some(leader) = f.leader_id else {
                    return BindResult::Unknown;
                };
                let forwarded = self
                    .world
                    .deliver(via, life, leader, "client_write", |r| async move {
                        r.client_write(command).await
                    })
                    .await;
                match forwarded {
                    Ok(Ok(r)) => r.data,
                    _ => return BindResult::Unknown,
                }
            }
            Err(_) => return BindResult::Unknown,
        };
        match Outcome::decode(&reply) {
            Ok(Outcome::Bound { record, .. }) if record.content_id == content => BindResult::Bound,
            Ok(Outcome::BindRefused(BindError::TagBoundToOtherContent {
                bound_content_id,
                ..
            })) => BindResult::Refused {
                holder: bound_content_id,
            },
            other => {
                self.checks
                    .violation(format!("bind {key} answered {other:?}"));
                BindResult::Unknown
            }
        }
    }

    /// Reads `key` linearizably through node `via`: on the leader after `ensure_linearizable`;
    /// on a follower after the leader's read index (asked over the faulty network) is applied
    /// here, as `RaftNode::read_linearizable` does. `None`: no answer.
    async fn read(&self, via: NodeId, key: &str) -> Option<Option<Content>> {
        let (raft, life, applied) = self.handle(via)?;
        if self.params.local_reads {
            let name_tag = key.parse().ok()?;
            return Some(
                lock(&applied)
                    .machine
                    .0
                    .artifact(&name_tag)
                    .map(|r| r.content_id),
            );
        }
        let index = match self.world.linearizable(via, raft.clone()).await {
            Ok(_) => None,
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let leader = f.leader_id?;
                let asked = self
                    .world
                    .deliver(via, life, leader, "read_index", |r| {
                        self.world.linearizable(leader, r)
                    })
                    .await;
                match asked {
                    Ok(Ok(id)) => id.map(|id| id.index),
                    _ => return None,
                }
            }
            Err(_) => return None,
        };
        if let Some(index) = index {
            loop {
                let m = raft.metrics().borrow().clone();
                if m.running_state.is_err() {
                    return None;
                }
                if m.last_applied.map(|l| l.index) >= Some(index) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let name_tag = key.parse().ok()?;
        let applied = lock(&applied);
        Some(applied.machine.0.artifact(&name_tag).map(|r| r.content_id))
    }

    /// After the healing: one bind acknowledged, so the last leader has committed in its term.
    async fn final_write(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        let record = &self.contents[0];
        let key = "final:1";
        let mut via = 1;
        loop {
            let invoked = self.now_us();
            let result = tokio::time::timeout(
                OP_TIMEOUT,
                self.bind(via, key, record.content_id, bind_command(record, key)),
            )
            .await
            .unwrap_or(BindResult::Unknown);
            lock(&self.history).push(Op {
                client: u64::MAX,
                invoked,
                completed: self.now_us(),
                key: key.to_owned(),
                kind: OpKind::Bind {
                    content: record.content_id,
                    result,
                },
            });
            if result == BindResult::Bound {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "no write acknowledged within {SETTLE:?} after the faults healed"
                ));
            }
            via = via % self.params.nodes + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every node has applied the same log, then compares their digests.
    async fn converge(&self) -> Result<BTreeMap<NodeId, [u8; 32]>, String> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            // (applied index, last log index) of every running node.
            let progress: BTreeMap<NodeId, (Option<u64>, Option<u64>)> = self
                .up()
                .into_iter()
                .filter_map(|id| {
                    let m = self.world.raft(id)?.metrics().borrow().clone();
                    Some((id, (m.last_applied.map(|l| l.index), m.last_log_index)))
                })
                .collect();
            let first = progress.values().next().map(|p| p.0);
            let same = progress.len() as u64 == self.params.nodes
                && progress.values().all(|(a, l)| Some(*a) == first && a == l);
            if same {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the nodes did not converge within {SETTLE:?} after the faults healed: (applied, last log) {progress:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let digests: BTreeMap<NodeId, [u8; 32]> = lock(&self.nodes)
            .iter()
            .map(|(id, n)| (*id, lock(&n.applied).machine.0.digest()))
            .collect();
        let distinct: std::collections::BTreeSet<&[u8; 32]> = digests.values().collect();
        if distinct.len() > 1 {
            return Err(format!(
                "converged logs but different states: {:?}",
                digests
                    .iter()
                    .map(|(id, d)| format!("node {id} {}", hex(&d[..8])))
                    .collect::<Vec<_>>()
            ));
        }
        Ok(digests)
    }
}
