//! The control plane's load generator: many simulated agents in one process, each with its
//! own gRPC channel (or one per `agents_per_connection` agents), talking to a real control
//! plane over its real API.
//!
//! A run binds an artifact, registers every agent (`Heartbeat`, label `role=web`), opens each
//! agent's `WatchAssignments` stream, creates a placement to `role=web` and times until every
//! stream has delivered it, then has every agent report progress once a second (spread
//! evenly over the second; see [`progress`] for what each reports) and heartbeat at the
//! interval the control plane asks for. After a warm-up, a measured window records the
//! reports accepted per second and their latency, the latency of the placement's aggregate
//! status (`GetPlacement` with a small page, from a connection of its own) and of a walk over
//! every node as `shoal placement show` does it, and, given the control plane's pid, its CPU
//! time and memory from `/proc`. [`run`] returns a [`Report`]; the binary prints it as JSON.
//!
//! The generator keeps itself cheap: one task per agent (plus one draining its stream), no
//! per-report allocation beyond the request message, every latency sample kept in a flat
//! vector per agent.

pub mod artifact;
pub mod process;
pub mod progress;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use shoal_api::v1;
use shoal_api::v1::assignment_service_client::AssignmentServiceClient;
use shoal_api::v1::catalog_service_client::CatalogServiceClient;
use shoal_api::v1::node_service_client::NodeServiceClient;
use shoal_api::v1::placement_service_client::PlacementServiceClient;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::{Channel, Endpoint};

use crate::process::ProcessSample;
use crate::progress::Course;
use crate::stats::{Latencies, Summary};

/// The label every simulated agent carries, and the placement's selector.
pub const LABEL: (&str, &str) = ("role", "web");

/// How a run is set up. [`Config::new`] gives the defaults the binary's flags document.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control plane's API, e.g. `http://127.0.0.1:7421`.
    pub server: String,
    /// Simulated agents.
    pub agents: usize,
    /// Agents sharing one HTTP/2 connection; 1 (the default) is one per agent, as real agents.
    pub agents_per_connection: usize,
    /// Reporting before the measured window starts.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// The artifact's size in bytes.
    pub size: u64,
    /// One agent in this many fails once on its way; 0 for none.
    pub fail_every: u64,
    /// How often the aggregate status is read during the window.
    pub show_every: Duration,
    /// The page size of those reads.
    pub show_page_size: u32,
    /// How often every node of the placement is walked, 1,000 per page as `shoal placement
    /// show` does; `None` never.
    pub walk_every: Option<Duration>,
    /// Agents registering at once.
    pub setup_concurrency: usize,
    /// The control plane's process id, to read its CPU time and memory.
    pub server_pid: Option<u32>,
    /// Node ids are `<prefix>-<index>`.
    pub node_prefix: String,
    /// The artifact's name:tag.
    pub name_tag: String,
    /// The placement's name.
    pub placement: String,
    /// Create the placement before the agents register, so each registration changes
    /// assignments (a fleet joining an existing placement), instead of after.
    pub placement_first: bool,
}

impl Config {
    /// The defaults: 1,000 agents, one connection each, 5 s warm-up, 30 s window, 1 GiB, one
    /// agent in 100 failing once, the aggregate read every 50 ms with page size 10, every node
    /// walked every 2 s, 256 agents registering at once, node ids `lg-00000`...
    pub fn new(server: &str) -> Self {
        Self {
            server: server.to_owned(),
            agents: 1000,
            agents_per_connection: 1,
            warmup: Duration::from_secs(5),
            window: Duration::from_secs(30),
            size: 1 << 30,
            fail_every: 100,
            show_every: Duration::from_millis(50),
            show_page_size: 10,
            walk_every: Some(Duration::from_secs(2)),
            setup_concurrency: 256,
            server_pid: None,
            node_prefix: "lg".to_owned(),
            name_tag: "loadgen/artifact:1".to_owned(),
            placement: "loadgen".to_owned(),
            placement_first: false,
        }
    }
}

/// What a run measured. Latencies are in microseconds; rates per second of the window.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Simulated agents.
    pub agents: usize,
    /// HTTP/2 connections they used.
    pub connections: usize,
    /// The warm-up, seconds.
    pub warmup_seconds: f64,
    /// The measured window, seconds.
    pub window_seconds: f64,
    /// Whether the placement existed before the agents registered.
    pub placement_first: bool,
    /// Registering every agent and opening its stream, seconds.
    pub setup_seconds: f64,
    /// From `CreatePlacement` returning to the last stream delivering the assignment, ms
    /// (with `placement_first`, to the last agent's registration and first set).
    pub assignment_fanout_ms: f64,
    /// Progress reports whose tick fell in the window.
    pub reports: Calls,
    /// Heartbeats whose tick fell in the window.
    pub heartbeats: Calls,
    /// Every agent had a report accepted in the window and none refused.
    pub every_agent_reported: bool,
    /// `GetPlacement` with `show_page_size` nodes: the aggregate.
    pub show: Show,
    /// Walks over every node of the placement, 1,000 per page (what `shoal placement show`
    /// does); absent when not asked for.
    pub walk: Option<Show>,
    /// The placement's totals after the run.
    pub final_totals: Totals,
    /// The control plane over the window, when its pid was given.
    pub server: Option<ServerUse>,
    /// Cores this generator kept busy during the window: near 1.0 on one core, the generator,
    /// not the server, may be what the latencies measure.
    pub generator_cpu_cores: f64,
    /// The fraction of the whole machine's core time not idle during the window.
    pub machine_cpu_busy: f64,
}

/// One kind of call during the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Calls {
    /// Calls due (one per agent per tick for reports).
    pub due: u64,
    /// Calls made.
    pub sent: u64,
    /// Calls answered OK.
    pub ok: u64,
    /// Calls refused or failed, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// One error message, for the reader.
    pub first_error: Option<String>,
    /// Calls answered OK per second of the window.
    pub ok_per_second: f64,
    /// Latency of the calls answered OK.
    pub latency: Summary,
}

/// Reads of the placement's status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Show {
    /// Nodes asked for per page.
    pub page_size: u32,
    /// Reads that failed.
    pub errors: u64,
    /// Latency of each read (of every page, for a walk).
    pub latency: Summary,
}

/// A placement's totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Target nodes.
    pub nodes: u64,
    /// Nodes in each state.
    pub pending: u64,
    /// Downloading.
    pub downloading: u64,
    /// Done.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Bytes verified over every node.
    pub bytes_done: u64,
}

/// The control plane's use of the machine over the window.
#[derive(Clone, Debug, Serialize)]
pub struct ServerUse {
    /// Its pid.
    pub pid: u32,
    /// At the window's start.
    pub start: ProcessSample,
    /// At its end.
    pub end: ProcessSample,
    /// CPU seconds used in the window.
    pub cpu_seconds: f64,
    /// Those over the window: the fraction of one core it kept busy.
    pub cpu_cores: f64,
    /// CPU microseconds per report accepted in the window (heartbeats and status reads in the
    /// window included: this is the whole cost of the load, counted per report).
    pub cpu_us_per_report: f64,
}

/// When the reports run, shared with every agent.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// Tick 0 of agent 0; agent i's ticks are `i / agents` of a second later.
    start: Instant,
    window_start: Instant,
    window_end: Instant,
}

/// What one agent saw in the window.
#[derive(Default)]
struct AgentStats {
    reports: CallStats,
    heartbeats: CallStats,
}

#[derive(Default)]
struct CallStats {
    due: u64,
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
    latency: Latencies,
}

impl CallStats {
    fn record<T>(&mut self, result: &Result<T, tonic::Status>, elapsed: Duration) {
        self.sent += 1;
        match result {
            Ok(_) => {
                self.ok += 1;
                self.latency.record(elapsed);
            }
            Err(status) => {
                *self
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                self.first_error
                    .get_or_insert_with(|| status.message().to_owned());
            }
        }
    }

    fn merge(&mut self, other: CallStats) {
        self.due += other.due;
        self.sent += other.sent;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.merge(other.latency);
    }

    fn calls(self, window: Duration) -> Calls {
        Calls {
            due: self.due,
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            ok_per_second: self.ok as f64 / window.as_secs_f64(),
            latency: self.latency.summary(),
        }
    }
}

/// What every agent task shares.
struct Shared {
    content_id: String,
    node_prefix: String,
    agents: usize,
    size: u64,
    fail_every: u64,
    /// Ticks from the first report to the window's end, for [`Course::new`].
    ticks: u32,
    setup: Semaphore,
    /// Each agent says it registered and its stream is open.
    ready: mpsc::UnboundedSender<anyhow::Result<()>>,
    /// Each agent's stream says when the assignment arrived.
    assigned: mpsc::UnboundedSender<Instant>,
}

/// Raises this process's open-file limit to its hard limit when below `wanted`: every agent
/// connection is a socket.
fn raise_fd_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < wanted) {
        // Best effort: when it cannot be raised, connecting fails later with a clear error.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// Runs the load and measures it. See the crate documentation for the phases.
///
/// # Errors
/// When the control plane cannot be reached, refuses the bind, a registration or the
/// placement, or not every agent receives its assignment within a minute. Refused or failed
/// reports are not errors: the report counts them.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    if config.agents == 0 || config.agents_per_connection == 0 {
        bail!("agents and agents per connection must be at least 1");
    }
    if config.window.is_zero() {
        bail!("the window must be longer than zero");
    }
    let connections = config.agents.div_ceil(config.agents_per_connection);
    raise_fd_limit(connections as u64 + 256);
    let endpoint = Endpoint::from_shared(config.server.clone())
        .with_context(|| format!("control plane URL {:?}", config.server))?
        .connect_timeout(Duration::from_secs(10));
    let admin = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the control plane at {}", config.server))?;

    let (bind, content_id) = artifact::zeros(&config.name_tag, config.size)?;
    CatalogServiceClient::new(admin.clone())
        .max_encoding_message_size(64 << 20)
        .bind_artifact(bind)
        .await
        .context("the control plane refused the artifact")?;

    // Agents stream their assignments on the same channel they report on; HTTP/2 keep-alive
    // pings as a real agent's stream channel sends them.
    let agent_endpoint = endpoint
        .clone()
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channels: Vec<Channel> = (0..connections)
        .map(|_| agent_endpoint.connect_lazy())
        .collect();

    let ticks_total = (config.warmup + config.window).as_secs().max(1);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (assigned_tx, mut assigned_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        content_id: content_id.clone(),
        node_prefix: config.node_prefix.clone(),
        agents: config.agents,
        size: config.size,
        fail_every: config.fail_every,
        ticks: u32::try_from(ticks_total).unwrap_or(u32::MAX),
        setup: Semaphore::new(config.setup_concurrency.max(1)),
        ready: ready_tx,
        assigned: assigned_tx,
    });
    let mut placements = PlacementServiceClient::new(admin.clone());
    let create = v1::CreatePlacementRequest {
        name: config.placement.clone(),
        r#ref: config.name_tag.clone(),
        selector: format!("{}={}", LABEL.0, LABEL.1),
        until: None,
    };
    let mut created = Instant::now();
    if config.placement_first {
        placements
            .create_placement(create.clone())
            .await
            .context("the control plane refused the placement")?;
        created = Instant::now();
    }
    let (schedule_tx, schedule_rx) = watch::channel(None::<Schedule>);
    let setup_started = Instant::now();
    let mut agents = tokio::task::JoinSet::new();
    for index in 0..config.agents {
        let channel = channels[index / config.agents_per_connection].clone();
        agents.spawn(agent(index, channel, shared.clone(), schedule_rx.clone()));
    }
    drop(channels);
    for _ in 0..config.agents {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.context("an agent could not register")),
            None => bail!("the agents stopped before registering"),
        }
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    if !config.placement_first {
        placements
            .create_placement(create)
            .await
            .context("the control plane refused the placement")?;
        created = Instant::now();
    }
    let mut last_assigned = created;
    for received in 0..config.agents {
        match tokio::time::timeout(Duration::from_secs(60), assigned_rx.recv()).await {
            Ok(Some(at)) => last_assigned = last_assigned.max(at),
            _ => bail!(
                "{received} of {} agents received the placement's assignment within a minute",
                config.agents
            ),
        }
    }
    let assignment_fanout_ms = last_assigned.duration_since(created).as_secs_f64() * 1000.0;

    let start = Instant::now() + Duration::from_millis(500);
    let schedule = Schedule {
        start,
        window_start: start + config.warmup,
        window_end: start + config.warmup + config.window,
    };
    schedule_tx.send_replace(Some(schedule));

    let show_task = tokio::spawn(show(
        endpoint.connect().await?,
        config.placement.clone(),
        config.show_page_size,
        config.show_every,
        schedule,
    ));
    let walk_task = match config.walk_every {
        Some(every) => Some(tokio::spawn(show(
            endpoint.connect().await?,
            config.placement.clone(),
            0,
            every,
            schedule,
        ))),
        None => None,
    };

    tokio::time::sleep_until(schedule.window_start).await;
    let server_start = config.server_pid.map(process::sample).transpose()?;
    let machine_start = process::machine()?;
    let generator_start = process::sample(std::process::id())?;
    tokio::time::sleep_until(schedule.window_end).await;
    let generator_end = process::sample(std::process::id())?;
    let server_end = config.server_pid.map(process::sample).transpose()?;
    let machine_cpu_busy = process::busy(machine_start, process::machine()?);

    let mut reports = CallStats::default();
    let mut heartbeats = CallStats::default();
    let mut every_agent_reported = true;
    while let Some(joined) = agents.join_next().await {
        let stats = joined.context("an agent task panicked")??;
        every_agent_reported &= stats.reports.ok > 0 && stats.reports.errors.is_empty();
        reports.merge(stats.reports);
        heartbeats.merge(stats.heartbeats);
    }
    let show = show_task.await.context("the status reader panicked")?;
    let walk = match walk_task {
        Some(task) => Some(task.await.context("the node walker panicked")?),
        None => None,
    };

    let reports = reports.calls(config.window);
    let server = match (config.server_pid, server_start, server_end) {
        (Some(pid), Some(start), Some(end)) => {
            let cpu_seconds = end.cpu_seconds - start.cpu_seconds;
            Some(ServerUse {
                pid,
                start,
                end,
                cpu_seconds,
                cpu_cores: cpu_seconds / config.window.as_secs_f64(),
                cpu_us_per_report: if reports.ok == 0 {
                    0.0
                } else {
                    cpu_seconds * 1e6 / reports.ok as f64
                },
            })
        }
        _ => None,
    };
    let final_totals = placements
        .get_placement(v1::GetPlacementRequest {
            name: config.placement.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .context("cannot read the placement after the run")?
        .into_inner()
        .placement
        .and_then(|p| p.totals)
        .unwrap_or_default();
    Ok(Report {
        agents: config.agents,
        connections,
        warmup_seconds: config.warmup.as_secs_f64(),
        window_seconds: config.window.as_secs_f64(),
        placement_first: config.placement_first,
        setup_seconds,
        assignment_fanout_ms,
        reports,
        heartbeats: heartbeats.calls(config.window),
        every_agent_reported,
        show,
        walk,
        final_totals: Totals {
            nodes: final_totals.nodes,
            pending: final_totals.pending,
            downloading: final_totals.downloading,
            done: final_totals.done,
            failed: final_totals.failed,
            bytes_done: final_totals.bytes_done,
        },
        server,
        generator_cpu_cores: (generator_end.cpu_seconds - generator_start.cpu_seconds)
            / config.window.as_secs_f64(),
        machine_cpu_busy,
    })
}

/// One simulated agent: registers, opens its stream, then reports every second and
/// heartbeats at the asked interval until the window ends.
async fn agent(
    index: usize,
    channel: Channel,
    shared: Arc<Shared>,
    mut schedule: watch::Receiver<Option<Schedule>>,
) -> anyhow::Result<AgentStats> {
    let node_id = format!("{}-{index:05}", shared.node_prefix);
    let heartbeat = v1::HeartbeatRequest {
        node_id: node_id.clone(),
        labels: [(LABEL.0.to_owned(), LABEL.1.to_owned())].into(),
        // A distinct, well-formed address per agent; nothing dials it.
        peer_address: format!(
            "10.{}.{}.{}:6881",
            (index >> 16) & 0xff,
            (index >> 8) & 0xff,
            index & 0xff
        ),
        agent_api: String::new(),
    };
    let mut nodes = NodeServiceClient::new(channel.clone());
    let mut assignments = AssignmentServiceClient::new(channel);
    let setup = async {
        let _permit = shared.setup.acquire().await?;
        let interval = nodes
            .heartbeat(heartbeat.clone())
            .await
            .with_context(|| format!("{node_id}: heartbeat"))?
            .into_inner()
            .interval_seconds
            .max(1);
        let mut stream = assignments
            .watch_assignments(v1::WatchAssignmentsRequest {
                node_id: node_id.clone(),
            })
            .await
            .with_context(|| format!("{node_id}: watch assignments"))?
            .into_inner();
        let first = stream
            .message()
            .await
            .with_context(|| format!("{node_id}: the first assignment set"))?;
        anyhow::Ok((interval, stream, first))
    };
    let (interval, mut stream, first) = match setup.await {
        Ok(ok) => ok,
        Err(e) => {
            let message = format!("{e:#}");
            let _ = shared.ready.send(Err(e));
            bail!(message)
        }
    };
    let _ = shared.ready.send(Ok(()));

    // The stream is drained as a real agent does, in a task of its own; it ends with the run.
    let assigned = shared.assigned.clone();
    let content_id = shared.content_id.clone();
    let holds = |set: &v1::AssignmentSet, content_id: &str| {
        set.assignments.iter().any(|a| a.content_id == content_id)
    };
    // With the placement made first, the first set already holds the assignment.
    let mut told = first.is_some_and(|set| holds(&set, &content_id));
    if told {
        let _ = assigned.send(Instant::now());
    }
    let drain = tokio::spawn(async move {
        while let Ok(Some(set)) = stream.message().await {
            if !told && holds(&set, &content_id) {
                told = true;
                let _ = assigned.send(Instant::now());
            }
        }
    });

    let schedule = loop {
        if let Some(s) = *schedule.borrow_and_update() {
            break s;
        }
        schedule.changed().await?;
    };
    let phase = Duration::from_secs_f64(index as f64 / shared.agents as f64);
    let first = schedule.start + phase;
    let course = Course::new(index as u64, shared.size, shared.ticks, shared.fail_every);
    let mut ticker = tokio::time::interval_at(first, Duration::from_secs(1));
    // One report in flight per agent, as a real agent: a slow control plane sees fewer
    // reports, and the shortfall shows as calls due but not sent.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut stats = AgentStats::default();
    let beat_phase = u32::try_from(index % interval as usize).unwrap_or(0);
    let in_window = |at: Instant| at >= schedule.window_start && at < schedule.window_end;
    // The ticks due in the window, whether or not they are sent.
    let mut at = first;
    while at < schedule.window_end {
        if in_window(at) {
            stats.reports.due += 1;
            let tick = u32::try_from((at - first).as_secs()).unwrap_or(u32::MAX);
            if tick % interval == beat_phase {
                stats.heartbeats.due += 1;
            }
        }
        at += Duration::from_secs(1);
    }
    loop {
        let at = ticker.tick().await;
        if at >= schedule.window_end {
            break;
        }
        let tick = u32::try_from((at - first).as_secs_f64().round() as u64).unwrap_or(u32::MAX);
        let (state, bytes_done, reason) = course.at(tick);
        let request = v1::ReportProgressRequest {
            node_id: node_id.clone(),
            artifacts: vec![v1::ArtifactProgress {
                content_id: shared.content_id.clone(),
                state: state.into(),
                bytes_done,
                reason: reason.to_owned(),
            }],
        };
        let sent = Instant::now();
        let result = assignments.report_progress(request).await;
        if in_window(at) {
            stats.reports.record(&result, sent.elapsed());
        }
        if tick % interval == beat_phase {
            let sent = Instant::now();
            let result = nodes.heartbeat(heartbeat.clone()).await;
            if in_window(at) {
                stats.heartbeats.record(&result, sent.elapsed());
            }
        }
    }
    drain.abort();
    Ok(stats)
}

/// Reads the placement's status every `every` through the window: one page of `page_size`
/// nodes, or, when `page_size` is 0, every page of 1,000 (a walk over every node).
async fn show(
    channel: Channel,
    name: String,
    page_size: u32,
    every: Duration,
    schedule: Schedule,
) -> Show {
    let mut client = PlacementServiceClient::new(channel);
    let mut latency = Latencies::default();
    let mut errors = 0;
    let mut ticker = tokio::time::interval_at(schedule.window_start, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if ticker.tick().await >= schedule.window_end {
            break;
        }
        let sent = Instant::now();
        let mut page_token = String::new();
        let ok = loop {
            let request = v1::GetPlacementRequest {
                name: name.clone(),
                page_size: if page_size == 0 { 1000 } else { page_size },
                page_token,
            };
            match client.get_placement(request).await {
                Ok(reply) => {
                    let next = reply.into_inner().next_page_token;
                    if page_size != 0 || next.is_empty() {
                        break true;
                    }
                    page_token = next;
                }
                Err(_) => break false,
            }
        };
        if ok {
            latency.record(sent.elapsed());
        } else {
            errors += 1;
        }
    }
    Show {
        page_size: if page_size == 0 { 1000 } else { page_size },
        errors,
        latency: latency.summary(),
    }
}
