//! The Shoal control plane, single node: the catalog (`name:tag` -> content, immutable once
//! bound) in an embedded transactional store (redb), the HTTP tracker, and the registry of
//! agents with their labels and heartbeats.
//!
//! [`ControlPlane`] holds the state and implements the `shoal.v1` `CatalogService`,
//! `NodeService`, `PlacementService`, `AssignmentService`, `PolicyService` and
//! `CredentialService`; every method first checks the caller's role
//! ([`ControlPlane::authorize`]). [`api_router`] serves them over gRPC and REST on one port,
//! behind [`access`] (bearer credentials, loopback trusted or not);
//! [`tracker_http::router`] serves the tracker. The decisions themselves (the bind rule,
//! the swarm table, label grammar) are in the sans-IO `shoal-control` crate.
//!
//! An agent with no control plane configured runs one of these in-process (the embedded
//! default) and opens the same listeners, so other agents cannot tell the difference.
#![forbid(unsafe_code)]

mod catalog;
mod cluster;
mod control_plane;
pub mod convert;
mod credentials;
mod error;
mod placements;
mod policies;
pub mod tracker_http;

use std::sync::Arc;

pub use control_plane::{ClusterConfig, ControlPlane, ServerConfig, now_ms, parse_ref};
pub use credentials::{ADMIN_TOKEN_FILE, BOOTSTRAP_NAME, access};
pub use error::ServerError;
pub use placements::{AssignmentStream, MAX_REPORT_ENTRIES, REPORT_INTERVAL};
pub use policies::rules_from;
pub use shoal_raft::RaftConfig;

use shoal_api::v1::assignment_service_server::AssignmentServiceServer;
use shoal_api::v1::catalog_service_server::CatalogServiceServer;
use shoal_api::v1::cluster_service_server::ClusterServiceServer;
use shoal_api::v1::credential_service_server::CredentialServiceServer;
use shoal_api::v1::node_service_server::NodeServiceServer;
use shoal_api::v1::placement_service_server::PlacementServiceServer;
use shoal_api::v1::policy_service_server::PolicyServiceServer;

/// The largest gRPC message the catalog accepts: 64 MiB (a bind carries a whole info
/// dictionary and its piece layers).
pub const MAX_BIND_BYTES: usize = 64 << 20;

/// The control plane's gRPC services, to add to a router.
pub fn grpc_routes(control: &Arc<ControlPlane>) -> tonic::service::Routes {
    tonic::service::Routes::new(
        CatalogServiceServer::from_arc(control.clone()).max_decoding_message_size(MAX_BIND_BYTES),
    )
    .add_service(NodeServiceServer::from_arc(control.clone()))
    .add_service(PlacementServiceServer::from_arc(control.clone()))
    .add_service(AssignmentServiceServer::from_arc(control.clone()))
    .add_service(PolicyServiceServer::from_arc(control.clone()))
    .add_service(CredentialServiceServer::from_arc(control.clone()))
    .add_service(
        ClusterServiceServer::from_arc(control.clone())
            .max_decoding_message_size(MAX_BIND_BYTES)
            .max_encoding_message_size(MAX_BIND_BYTES),
    )
}

/// The control plane's REST routes (generated from the proto annotations).
pub fn rest_routes(control: &Arc<ControlPlane>) -> axum::Router {
    shoal_api::rest::catalog_service(control.clone())
        .merge(shoal_api::rest::node_service(control.clone()))
        .merge(shoal_api::rest::placement_service(control.clone()))
        .merge(shoal_api::rest::assignment_service(control.clone()))
        .merge(shoal_api::rest::policy_service(control.clone()))
        .merge(shoal_api::rest::credential_service(control.clone()))
        .merge(shoal_api::rest::cluster_service(control.clone()))
}

/// The control plane's API router: gRPC and REST, reflection, OpenAPI, health.
///
/// # Errors
/// When the reflection service cannot be built (a build problem).
pub fn api_router(
    control: &Arc<ControlPlane>,
    access: shoal_api::router::Access,
) -> Result<axum::Router, shoal_api::ApiError> {
    shoal_api::router::build(
        grpc_routes(control),
        &[
            shoal_api::v1::catalog_service_server::SERVICE_NAME,
            shoal_api::v1::node_service_server::SERVICE_NAME,
            shoal_api::v1::placement_service_server::SERVICE_NAME,
            shoal_api::v1::assignment_service_server::SERVICE_NAME,
            shoal_api::v1::policy_service_server::SERVICE_NAME,
            shoal_api::v1::credential_service_server::SERVICE_NAME,
            shoal_api::v1::cluster_service_server::SERVICE_NAME,
        ],
        rest_routes(control),
        access,
    )
}
