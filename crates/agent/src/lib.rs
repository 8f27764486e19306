//! The Shoal agent: the daemon on every host. It stores, verifies, downloads and seeds
//! artifacts (one driver session per torrent behind one peer listener), serves the local API
//! (`shoal.v1.ArtifactService` and `AgentService`, gRPC and REST on one port, plus
//! `/metrics`), registers with the control plane and heartbeats.
//!
//! With no control plane configured it runs one in-process (the embedded default) and opens
//! its API and tracker listeners, so other agents point at this host as they would at a
//! standalone `shoal server`.
//!
//! Modules: [`config`] (the TOML file), [`store`] (the data directory), [`torrents`] (the
//! sessions), [`control`] (the link to the control plane), `service` (the API
//! implementation), `metrics`.
#![forbid(unsafe_code)]

mod action;
mod assignments;
pub mod config;
pub mod control;
mod metrics;
mod quota;
mod service;
pub mod store;
pub mod torrents;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_api::v1;
use shoal_api::v1::agent_service_server::AgentServiceServer;
use shoal_api::v1::artifact_service_server::ArtifactServiceServer;
use shoal_driver::PeerListener;
use shoal_server::{ControlPlane, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{AgentConfig, ControlPlanes};
use control::Control;
use store::DataDir;
use torrents::{RunState, Torrents};

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory cannot be used.
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listener cannot be bound.
    #[error(
        "cannot listen on {addr} ({what}): {source}; is another agent running, or is the port taken?"
    )]
    Listen {
        /// What the port is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded control plane cannot start.
    #[error("the embedded control plane cannot start: {0}")]
    Server(#[from] shoal_server::ServerError),
    /// A configuration value is unusable.
    #[error("{0}")]
    Config(String),
}

/// The agent's state, shared by its API, its heartbeat and its sessions.
pub struct Agent {
    config: AgentConfig,
    node_id: String,
    control: Control,
    torrents: Arc<Torrents>,
    api_addr: SocketAddr,
    last_heartbeat_ms: AtomicU64,
    announce: Mutex<String>,
    /// The rules the control plane last sent with this node's assignments.
    policy: Mutex<Option<v1::NodePolicy>>,
}

/// A started agent: its addresses and tasks. [`Running::shutdown`] stops it cleanly.
pub struct Running {
    /// The agent.
    pub agent: Arc<Agent>,
    /// The local API's address.
    pub api_addr: SocketAddr,
    /// The peer listener's address.
    pub peer_addr: SocketAddr,
    /// The embedded control plane's API address, when embedded.
    pub server_api_addr: Option<SocketAddr>,
    /// The embedded tracker's address, when embedded.
    pub tracker_addr: Option<SocketAddr>,
    /// The file holding the embedded control plane's bootstrap admin token, when this start
    /// created it.
    pub bootstrap_token: Option<std::path::PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops every session (making what was verified durable), then stops serving.
    pub async fn shutdown(self) {
        // Sessions first: their final `stopped` announces may go to the embedded tracker.
        self.agent.torrents.shutdown().await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs an agent until `shutdown` resolves.
///
/// # Errors
/// [`AgentError`] when it cannot start.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down: stopping sessions and recording what was verified");
    running.shutdown().await;
    Ok(())
}

/// Starts an agent: data directory, peer listener, control plane (embedded or remote), the
/// recorded torrents, the API, the heartbeat.
///
/// # Errors
/// [`AgentError`] when a directory or a listener cannot be set up.
pub async fn start(config: AgentConfig) -> Result<Running, AgentError> {
    let data = DataDir::create(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let node_id = config.node_id.clone().unwrap_or_else(hostname);
    let advertise_ip = match (config.advertise_ip, config.peer_listen.ip()) {
        (Some(ip), _) => ip,
        (None, ip) if !ip.is_unspecified() => ip,
        (None, _) => match &config.control_plane {
            // The first node this host has a route to (they are normally on one network).
            Some(urls) => urls.urls().iter().find_map(|url| route_to(url)),
            None => primary_ip(),
        }
        .unwrap_or_else(|| {
            tracing::warn!(
                "no network route found: advertising 127.0.0.1, which peers on other hosts cannot reach; set advertise_ip"
            );
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }),
    };
    let listener = PeerListener::bind(config.peer_listen)
        .await
        .map_err(|source| AgentError::Listen {
            what: "BitTorrent peers",
            addr: config.peer_listen,
            source,
        })?;
    let peer_addr = SocketAddr::new(advertise_ip, listener.local_addr().port());
    let mut tasks = Vec::new();

    let mut bootstrap_token = None;
    let (control, server_api_addr, tracker_addr, announce) = match &config.control_plane {
        Some(urls) => (
            Control::remote(
                urls,
                config
                    .control_plane_token()
                    .map_err(|e| AgentError::Config(e.to_string()))?,
            )
            .map_err(|e| AgentError::Config(e.message))?,
            None,
            None,
            String::new(),
        ),
        None => {
            let tracker_listener =
                bind(config.server.tracker_listen, "the embedded tracker").await?;
            let tracker_addr =
                tracker_listener
                    .local_addr()
                    .map_err(|source| AgentError::Listen {
                        what: "the embedded tracker",
                        addr: config.server.tracker_listen,
                        source,
                    })?;
            let announce = config.server.announce_url.clone().unwrap_or_else(|| {
                format!(
                    "http://{}/announce",
                    SocketAddr::new(advertise_ip, tracker_addr.port())
                )
            });
            let control_plane = ControlPlane::open(ServerConfig {
                data_dir: data.catalog(),
                announce_url: announce.clone(),
                announce_urls: Vec::new(),
                tracker: shoal_control::TrackerConfig::default(),
                nodes: shoal_control::NodeConfig::default(),
            })?;
            let server_listener =
                bind(config.server.api_listen, "the embedded control plane's API").await?;
            let server_api_addr = server_listener.local_addr().ok();
            bootstrap_token = control_plane.bootstrap_token_file().map(ToOwned::to_owned);
            let access = shoal_server::access(&control_plane, config.server.trust_loopback);
            let router = shoal_server::api_router(&control_plane, access)
                .map_err(|e| AgentError::Config(e.message))?;
            tasks.push(tokio::spawn(serve(server_listener, router)));
            tasks.push(tokio::spawn(serve(
                tracker_listener,
                shoal_server::tracker_http::router(control_plane.clone()),
            )));
            tasks.push(tokio::spawn(shoal_server::tracker_http::expire(
                control_plane.clone(),
            )));
            tracing::info!(api = ?server_api_addr, tracker = %tracker_addr, %announce, "embedded control plane running");
            (
                Control::Embedded(control_plane),
                server_api_addr,
                Some(tracker_addr),
                announce,
            )
        }
    };

    let torrents = Arc::new(
        Torrents::new(data, listener, peer_addr)
            .with_on_complete(action::OnComplete::new(config.on_complete.clone()))
            .with_site(config.site()),
    );
    if !announce.is_empty() {
        torrents.set_announce(vec![announce.clone()]);
    }
    let api_listener = bind(config.api_listen, "the local API").await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| AgentError::Listen {
            what: "the local API",
            addr: config.api_listen,
            source,
        })?;
    let agent = Arc::new(Agent {
        node_id,
        control,
        torrents: torrents.clone(),
        api_addr,
        last_heartbeat_ms: AtomicU64::new(0),
        announce: Mutex::new(announce),
        policy: Mutex::new(None),
        config,
    });
    let resumed = torrents.resume_all();
    if resumed > 0 {
        tracing::info!(torrents = resumed, "resumed recorded torrents");
    }
    let router = api_router(&agent)?;
    tasks.push(tokio::spawn(serve(api_listener, router)));
    tasks.push(tokio::spawn(heartbeat(agent.clone())));
    tasks.push(tokio::spawn(assignments::run(agent.clone())));
    tracing::info!(api = %api_addr, peers = %peer_addr, node = %agent.node_id, control_plane = %agent.control.endpoint(), "agent running");
    Ok(Running {
        agent,
        api_addr,
        peer_addr,
        server_api_addr,
        tracker_addr,
        bootstrap_token,
        tasks,
    })
}

/// The agent's API router: its services over gRPC and REST, and `/metrics`.
///
/// # Errors
/// [`AgentError::Config`] when the router cannot be built (a build problem).
pub fn api_router(agent: &Arc<Agent>) -> Result<axum::Router, AgentError> {
    let grpc = tonic::service::Routes::new(ArtifactServiceServer::from_arc(agent.clone()))
        .add_service(AgentServiceServer::from_arc(agent.clone()));
    let metrics_agent = agent.clone();
    let rest = shoal_api::rest::artifact_service(agent.clone())
        .merge(shoal_api::rest::agent_service(agent.clone()))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let agent = metrics_agent.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        agent.render_metrics(),
                    )
                }
            }),
        );
    let access = shoal_api::router::Access::LoopbackOrToken(agent.config.api_tokens.clone());
    let services = [
        v1::artifact_service_server::SERVICE_NAME,
        v1::agent_service_server::SERVICE_NAME,
    ];
    shoal_api::router::build(grpc, &services, rest, access)
        .map_err(|e| AgentError::Config(e.message))
}

impl Agent {
    /// The tracker URL put in published torrents.
    fn announce_url(&self) -> String {
        self.announce.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// True when the control plane answered the last heartbeat (always, when embedded).
    fn connected(&self) -> bool {
        matches!(self.control, Control::Embedded(_))
            || shoal_server::now_ms().saturating_sub(self.last_heartbeat_ms.load(Ordering::Relaxed))
                < 60_000
    }

    async fn status(&self) -> v1::AgentStatus {
        let mut torrents = Vec::new();
        let (mut up, mut down) = (0, 0);
        for view in self.torrents.list() {
            let p = view.progress.borrow().clone();
            let info = view.torrent.info();
            let total = info.total_size();
            let verified = (u64::from(p.have) * info.piece_length.bytes()).min(total);
            let (state, error) = match &*view.state.borrow() {
                RunState::Checking => (v1::TorrentState::Checking, String::new()),
                RunState::Downloading => (v1::TorrentState::Downloading, String::new()),
                RunState::Seeding => (v1::TorrentState::Seeding, String::new()),
                RunState::Failed(e) => (v1::TorrentState::Failed, e.clone()),
            };
            up += view.rates.upload;
            down += view.rates.download;
            torrents.push(v1::TorrentStatus {
                content_id: view.id.clone(),
                name_tag: view.name_tag.clone().unwrap_or_default(),
                bytes_verified: if p.complete || state == v1::TorrentState::Seeding {
                    total
                } else {
                    verified
                },
                bytes_total: total,
                upload_rate: view.rates.upload,
                download_rate: view.rates.download,
                peers: u32::try_from(p.peers).unwrap_or(u32::MAX),
                banned_peers: p.stats.peers_banned,
                state: state as i32,
                uploaded: p.stats.uploaded,
                downloaded: p.stats.downloaded,
                pieces_rechecked: p.rechecked,
                error,
            });
        }
        let data = self.torrents.data().clone();
        let (used, free) = tokio::task::spawn_blocking(move || {
            let free = rustix::fs::statvfs(data.root())
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .unwrap_or(0);
            (data.used_bytes(), free)
        })
        .await
        .unwrap_or((0, 0));
        let last = self.last_heartbeat_ms.load(Ordering::Relaxed);
        v1::AgentStatus {
            node_id: self.node_id.clone(),
            labels: self
                .config
                .labels
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
            torrents,
            upload_rate: up,
            download_rate: down,
            disk: Some(v1::DiskStatus { used, free }),
            control_plane: Some(v1::ControlPlaneLink {
                endpoint: self.control.endpoint(),
                embedded: matches!(self.control, Control::Embedded(_)),
                connected: self.connected(),
                last_heartbeat: (last > 0).then(|| shoal_server::convert::timestamp(last)),
            }),
            peer_address: self.torrents.advertise().to_string(),
            policy: self
                .policy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Registers with the control plane, then heartbeats at the interval it asks for.
async fn heartbeat(agent: Arc<Agent>) {
    let mut failures = 0u32;
    loop {
        let request = v1::HeartbeatRequest {
            node_id: agent.node_id.clone(),
            labels: agent.config.labels.clone().into_iter().collect(),
            peer_address: agent.torrents.advertise().to_string(),
            agent_api: agent.api_addr.to_string(),
        };
        let wait = match agent.control.heartbeat(request).await {
            Ok(reply) => {
                if failures > 0 {
                    tracing::info!(control_plane = %agent.control.endpoint(), "control plane reachable again");
                }
                failures = 0;
                agent
                    .last_heartbeat_ms
                    .store(shoal_server::now_ms(), Ordering::Relaxed);
                let trackers = trackers(&reply);
                // Published torrents name the first: the same whichever node answered.
                if let Some(first) = trackers.first()
                    && let Ok(mut a) = agent.announce.lock()
                {
                    a.clone_from(first);
                }
                if !trackers.is_empty() {
                    agent.torrents.set_announce(trackers);
                }
                Duration::from_secs(u64::from(reply.interval_seconds.clamp(1, 300)))
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "heartbeat failed; retrying");
                }
                Duration::from_secs(u64::from(failures.min(5)) * 2)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The trackers a heartbeat's answer names, in order, each to be its own BEP 12 tier: every
/// tracker of the control plane (`announce_urls`), or, from a single-node or older control
/// plane that sends none, its one `announce_url`. Empty when it names none.
fn trackers(reply: &v1::HeartbeatResponse) -> Vec<String> {
    let listed: Vec<String> = reply
        .announce_urls
        .iter()
        .filter(|url| !url.is_empty())
        .cloned()
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    if reply.announce_url.is_empty() {
        Vec::new()
    } else {
        vec![reply.announce_url.clone()]
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen { what, addr, source })
}

/// Serves a router (HTTP/1.1 and h2c on one socket) with the callers' addresses.
async fn serve(listener: TcpListener, router: axum::Router) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    // TCP_NODELAY: otherwise a gRPC answer written in two pieces can wait for the client's
    // delayed ACK (40 ms), as `shoal server` did under `bench/control-plane.py`.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, service).await {
        tracing::error!(error = %e, "a listener stopped");
    }
}

/// The host name, from the kernel.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The local address this host uses to reach the host of `url` (no packet is sent).
fn route_to(url: &str) -> Option<IpAddr> {
    let authority = url.split("://").nth(1)?.split('/').next()?;
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()?
        .next()?;
    source_for(target)
}

/// The address other hosts most likely reach this one at, for an agent that runs the control
/// plane itself and so has no control plane to route to: its source address on the default
/// route, or else on its first route through a non-loopback interface (a host on an isolated
/// network has no default route). No packet is sent.
fn primary_ip() -> Option<IpAddr> {
    let default_route = SocketAddr::from(([192, 0, 2, 1], 9)); // TEST-NET-1, never answered
    source_for(default_route)
        .filter(|ip| !ip.is_loopback())
        .or_else(|| {
            // Destination is the network's address as the kernel's native u32, in hex.
            let routes = std::fs::read_to_string("/proc/net/route").ok()?;
            routes.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (iface, dest) = (fields.first()?, fields.get(1)?);
                if *iface == "lo" {
                    return None;
                }
                let mut host = u32::from_str_radix(dest, 16).ok()?.to_ne_bytes();
                host[3] |= 1;
                source_for(SocketAddr::from((host, 9))).filter(|ip| !ip.is_loopback())
            })
        })
}

/// The source address the kernel would use to send to `target`.
fn source_for(target: SocketAddr) -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .ok()?;
    socket.connect(target).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tracker_of_a_cluster_is_announced_to_in_its_order() {
        let reply = v1::HeartbeatResponse {
            interval_seconds: 10,
            announce_url: "http://10.0.0.2:6969/announce".to_owned(),
            announce_urls: vec![
                "http://10.0.0.1:6969/announce".to_owned(),
                "http://10.0.0.2:6969/announce".to_owned(),
                "http://10.0.0.3:6969/announce".to_owned(),
            ],
        };
        assert_eq!(trackers(&reply), reply.announce_urls);
    }

    #[test]
    fn a_single_node_control_plane_names_its_one_tracker() {
        let reply = v1::HeartbeatResponse {
            interval_seconds: 10,
            announce_url: "http://10.0.0.1:6969/announce".to_owned(),
            announce_urls: Vec::new(),
        };
        assert_eq!(trackers(&reply), vec![reply.announce_url.clone()]);
        assert!(trackers(&v1::HeartbeatResponse::default()).is_empty());
    }
}
