//! `shoal agent` and `shoal server`: the long-running roles. Both stop cleanly on Ctrl-C or
//! SIGTERM, making what was verified durable.

use anyhow::Context;
use shoal_agent::{AgentConfig, ControlPlanes};

use crate::cli::{AgentArgs, ServerRunArgs};

/// Runs `shoal agent`.
pub fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    // Flags and SHOAL_* variables override the file.
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.node_id {
        config.node_id = Some(v);
    }
    for label in &args.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label {label:?}: write KEY=VALUE"))?;
        config.labels.insert(k.to_owned(), v.to_owned());
    }
    if let Some(v) = args.api_listen {
        config.api_listen = v;
    }
    if let Some(v) = args.peer_listen {
        config.peer_listen = v;
    }
    if let Some(v) = args.advertise_ip {
        config.advertise_ip = Some(v);
    }
    if !args.control_plane.is_empty() {
        config.control_plane = Some(
            // Repeats and commas mean the same; joined, a message quotes what was typed.
            ControlPlanes::parse(&args.control_plane.join(","))
                .context("--control-plane / SHOAL_CONTROL_PLANE")?,
        );
    }
    config.allowed_roots.extend(args.allowed_roots);
    if let Some(v) = args.server_api_listen {
        config.server.api_listen = v;
    }
    if let Some(v) = args.tracker_listen {
        config.server.tracker_listen = v;
    }
    if let Some(v) = args.server_token_file {
        config.server_token_file = Some(v);
    }
    if args.no_trust_loopback {
        config.server.trust_loopback = false;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = shoal_agent::start(config).await?;
        crate::output::status(&format!(
            "agent running: API {} (gRPC + REST), peers {}{}",
            running.api_addr,
            running.peer_addr,
            running
                .server_api_addr
                .map(|a| format!(
                    ", embedded control plane {a}, tracker {}",
                    running
                        .tracker_addr
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                ))
                .unwrap_or_default()
        ));
        if let Some(path) = &running.bootstrap_token {
            crate::output::status(&format!(
                "created the control plane's admin credential `bootstrap`: its token is in {} (mode 0600)",
                path.display()
            ));
        }
        shutdown_signal().await;
        crate::output::status("stopping: recording what was verified");
        running.shutdown().await;
        Ok(())
    })
}

/// Runs `shoal server`: one server node, alone or as a member of a replicated control plane.
pub fn server(args: ServerRunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let Some(announce_url) = args.announce_url.clone() else {
        anyhow::bail!(
            "give --announce-url (this node's tracker as agents reach it, e.g. http://10.0.0.1:6969/announce)"
        );
    };
    runtime.block_on(async {
        let config = shoal_server::ServerConfig {
            data_dir: args.data_dir.clone(),
            announce_url: announce_url.clone(),
            announce_urls: args.announce_urls.clone(),
            tracker: shoal_control::TrackerConfig {
                interval_s: args.announce_interval,
                min_interval_s: args.announce_interval / 2,
                ..shoal_control::TrackerConfig::default()
            },
            nodes: shoal_control::NodeConfig::default(),
        };
        let control = match args.node_id {
            None => shoal_server::ControlPlane::open(config)?,
            Some(id) => {
                let cluster = cluster_config(&args, id)?;
                crate::output::status(&format!(
                    "server node {id} of a replicated control plane; members reach it at {}",
                    cluster.raft.advertise_addr
                ));
                shoal_server::ControlPlane::open_cluster(config, cluster).await?
            }
        };
        let api = tokio::net::TcpListener::bind(args.api_listen)
            .await
            .with_context(|| format!("cannot listen on {} (API)", args.api_listen))?;
        let tracker = tokio::net::TcpListener::bind(args.tracker_listen)
            .await
            .with_context(|| format!("cannot listen on {} (tracker)", args.tracker_listen))?;
        if let Some(path) = control.bootstrap_token_file() {
            crate::output::status(&format!(
                "created the admin credential `bootstrap`: its token is in {} (mode 0600)",
                path.display()
            ));
        }
        let access = shoal_server::access(&control, !args.no_trust_loopback);
        let mut router = shoal_server::api_router(&control, access)?;
        if let Some(raft) = control.raft_routes() {
            // Outside the API's access layer: members present the cluster secret instead.
            router = raft.merge(router);
        }
        let tracker_router = shoal_server::tracker_http::router(control.clone());
        let expire = tokio::spawn(shoal_server::tracker_http::expire(control.clone()));
        crate::output::status(&format!(
            "control plane running: API {} (gRPC + REST), tracker {} ({})",
            args.api_listen, args.tracker_listen, announce_url
        ));
        // Without TCP_NODELAY, a gRPC answer written in two pieces (a response, then its
        // trailers) waits for the client's delayed ACK (40 ms on Linux) whenever the server
        // is busy enough to split them: `bench/control-plane.py` measured it.
        let api = axum::serve::ListenerExt::tap_io(api, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let api_task = tokio::spawn(async move {
            axum::serve(
                api,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        let tracker_task = tokio::spawn(async move {
            axum::serve(
                tracker,
                tracker_router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        shutdown_signal().await;
        control.shutdown().await;
        api_task.abort();
        tracker_task.abort();
        expire.abort();
        Ok(())
    })
}

/// The Raft settings of server node `id`, from the command line.
fn cluster_config(args: &ServerRunArgs, id: u64) -> anyhow::Result<shoal_server::ClusterConfig> {
    let Some(secret_file) = &args.cluster_secret_file else {
        anyhow::bail!(
            "--node-id needs --cluster-secret-file (the secret every server node shares)"
        );
    };
    let secret = std::fs::read_to_string(secret_file)
        .with_context(|| {
            format!(
                "cannot read the cluster secret from {}",
                secret_file.display()
            )
        })?
        .trim()
        .to_owned();
    if secret.is_empty() {
        anyhow::bail!("the cluster secret file {} is empty", secret_file.display());
    }
    let advertise = match &args.advertise {
        Some(a) => a.clone(),
        None if !args.api_listen.ip().is_unspecified() => args.api_listen.to_string(),
        None => anyhow::bail!(
            "--api-listen {} names no address the other server nodes can dial: give --advertise HOST:PORT",
            args.api_listen
        ),
    };
    let initial_members: std::collections::BTreeMap<u64, String> =
        args.initial_members.iter().cloned().collect();
    if initial_members.len() != args.initial_members.len() {
        anyhow::bail!("--initial-members names a node id twice");
    }
    if !initial_members.is_empty() && !initial_members.contains_key(&id) {
        anyhow::bail!("--initial-members does not include this node's id ({id})");
    }
    let (election_min, election_max) = args.raft_election_timeout;
    if election_min < 3 * args.raft_heartbeat {
        anyhow::bail!(
            "--raft-election-timeout {election_min}-{election_max} is too short for --raft-heartbeat {}: \
             MIN must be at least 3 heartbeats, or followers elect a new leader while the current one is well",
            args.raft_heartbeat
        );
    }
    let mut raft = shoal_server::RaftConfig::new(id, args.data_dir.clone(), advertise, secret);
    raft.heartbeat_interval = std::time::Duration::from_millis(args.raft_heartbeat);
    raft.election_timeout = (
        std::time::Duration::from_millis(election_min),
        std::time::Duration::from_millis(election_max),
    );
    Ok(shoal_server::ClusterConfig {
        raft,
        initial_members,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
