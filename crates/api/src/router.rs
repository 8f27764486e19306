//! One axum router for everything an API port serves: gRPC (tonic routes), the generated
//! REST routes, gRPC reflection (v1 and v1alpha, so `grpcurl list` works), the OpenAPI
//! document at [`OPENAPI_PATH`], `GET /healthz`, and whatever the caller adds (`/metrics`).
//!
//! One layer in front of it all authenticates every call, gRPC and REST alike, and tags it
//! with an `x-request-id` (kept if the caller sent one) that is echoed in the response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::error::{ApiError, ErrorCode};
use crate::rest::error_response;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The header that tags a call in logs and responses.
pub const REQUEST_ID: &str = "x-request-id";

/// Who may call. The hook every call passes through; mTLS and RBAC replace it with the
/// security work, without touching the services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can reach the port.
    Open,
    /// Callers on the loopback interface, and others presenting one of these bearer tokens.
    LoopbackOrToken(Vec<String>),
}

/// The caller, as the authentication layer saw it; in every request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A name for logs and `created_by`: `local`, `token`, or `anonymous@ADDR`.
    pub name: String,
}

impl Principal {
    /// The principal of a tonic request (`anonymous` when none was attached, as in tests
    /// that call a service directly).
    pub fn of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Principal>()
            .map_or_else(|| "anonymous".to_owned(), |p| p.name.clone())
    }
}

/// Builds the router: `grpc` (tonic services, whose fully-qualified names are `services`) and
/// `rest` (the generated REST routes and any extra routes), with reflection (advertising
/// `services` only, so `grpcurl list` shows what this port serves), OpenAPI, health and the
/// access layer.
///
/// # Errors
/// When the reflection service cannot read the descriptor set (a build problem).
pub fn build(
    grpc: tonic::service::Routes,
    services: &[&str],
    rest: Router,
    access: Access,
) -> Result<Router, ApiError> {
    let reflection = |e: tonic_reflection::server::Error| {
        ApiError::new(ErrorCode::Internal, format!("gRPC reflection: {e}"))
    };
    let configure = || {
        services
            .iter()
            .fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let v1 = configure().build_v1().map_err(reflection)?;
    let v1alpha = configure().build_v1alpha().map_err(reflection)?;
    let grpc = grpc.add_service(v1).add_service(v1alpha);
    let access = Arc::new(access);
    Ok(grpc
        .into_axum_router()
        .merge(rest)
        .route(
            OPENAPI_PATH,
            axum::routing::get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    crate::OPENAPI_JSON,
                )
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .fallback(|request: Request| async move {
            error_response(&ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no route for {} {}; the routes are listed at {OPENAPI_PATH}",
                    request.method(),
                    request.uri().path()
                ),
            ))
        })
        .layer(axum::middleware::from_fn(move |request, next| {
            let access = access.clone();
            guard(access, request, next)
        })))
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// Authenticates the call, attaches the principal and a request id, and echoes the id.
async fn guard(access: Arc<Access>, mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(REQUEST_ID) {
        Some(id) if id.len() <= 128 => id.clone(),
        _ => {
            let n = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
            let id = format!("{:08x}-{n}", std::process::id());
            let Ok(id) = HeaderValue::from_str(&id) else {
                return error_response(&ApiError::new(ErrorCode::Internal, "request id"));
            };
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    let mut response = match authenticate(&access, &request, remote) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            tracing::warn!(remote = ?remote, path = %request.uri().path(), "refused: {e}");
            if grpc {
                tonic::Status::from(e).into_http::<Body>().into_response()
            } else {
                error_response(&e)
            }
        }
    };
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

fn authenticate(
    access: &Access,
    request: &Request,
    remote: Option<SocketAddr>,
) -> Result<Principal, ApiError> {
    let tokens = match access {
        Access::Open => {
            return Ok(Principal {
                name: remote
                    .map_or_else(|| "local".to_owned(), |r| format!("anonymous@{}", r.ip())),
            });
        }
        Access::LoopbackOrToken(tokens) => tokens,
    };
    // No connection info means an in-process call (tests, embedded use).
    if remote.is_none_or(|r| r.ip().is_loopback()) {
        return Ok(Principal {
            name: "local".to_owned(),
        });
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token)
            if tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) =>
        {
            Ok(Principal {
                name: "token".to_owned(),
            })
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "the bearer token is not valid here; check the token the administrator issued",
        )),
        None => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "this API accepts callers on loopback, or with a bearer token (Authorization: Bearer ...)",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
