//! The HTTP tracker (BEP 3 announce, BEP 48 scrape, BEP 23 compact, BEP 7 IPv6) over the
//! control plane's swarm table, for agents and standard clients alike. Paths: `/announce`
//! and `/scrape`. Peers that stop announcing expire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::IntoResponse;
use http::header;

use crate::control_plane::ControlPlane;

/// How often expired peers are dropped.
const EXPIRY_SWEEP: Duration = Duration::from_secs(15);

/// The tracker's routes.
pub fn router(control: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/announce", axum::routing::get(announce))
        .route("/scrape", axum::routing::get(scrape))
        .with_state(control)
}

/// Drops expired peers every few seconds, until the task is aborted.
pub async fn expire(control: Arc<ControlPlane>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        let gone = control.expire_peers();
        if gone > 0 {
            tracing::debug!(
                peers = gone,
                "tracker: expired peers that stopped announcing"
            );
        }
    }
}

async fn announce(
    State(control): State<Arc<ControlPlane>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let body = control.announce(query.as_deref().unwrap_or(""), remote.ip());
    ([(header::CONTENT_TYPE, "text/plain")], body)
}

async fn scrape(
    State(control): State<Arc<ControlPlane>>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let body = control.scrape(query.as_deref().unwrap_or(""));
    ([(header::CONTENT_TYPE, "text/plain")], body)
}
