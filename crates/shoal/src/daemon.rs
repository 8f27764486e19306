//! `shoal agent` and `shoal server`: the long-running roles. Both stop cleanly on Ctrl-C or
//! SIGTERM, making what was verified durable.

use anyhow::Context;
use shoal_agent::{AgentConfig, ControlPlanes};

use crate::cli::{AgentArgs, ServerArgs};

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

/// Runs `shoal server`.
pub fn server(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let control = shoal_server::ControlPlane::open(shoal_server::ServerConfig {
            data_dir: args.data_dir.clone(),
            announce_url: args.announce_url.clone(),
            tracker: shoal_control::TrackerConfig::default(),
            nodes: shoal_control::NodeConfig::default(),
        })?;
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
        let router = shoal_server::api_router(&control, access)?;
        let tracker_router = shoal_server::tracker_http::router(control.clone());
        let expire = tokio::spawn(shoal_server::tracker_http::expire(control.clone()));
        crate::output::status(&format!(
            "control plane running: API {} (gRPC + REST), tracker {} ({})",
            args.api_listen, args.tracker_listen, args.announce_url
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
        api_task.abort();
        tracker_task.abort();
        expire.abort();
        Ok(())
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
