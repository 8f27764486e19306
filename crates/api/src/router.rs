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

use shoal_control::Role;

use crate::error::{ApiError, ErrorCode};
use crate::rest::error_response;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The header that tags a call in logs and responses.
pub const REQUEST_ID: &str = "x-request-id";

/// Who may call. The hook every call passes through: it decides who the caller is (a
/// [`Principal`] with a [`Role`]); each service method then checks that role against the
/// [`shoal_control::Action`] it performs, so gRPC and REST are judged alike. mTLS will add a
/// way to establish the principal; the services will not change.
#[derive(Clone)]
pub enum Access {
    /// Anyone who can reach the port, as an admin.
    Open,
    /// Callers on the loopback interface, and others presenting one of these bearer tokens;
    /// all as admins (the agent's local API has no finer roles).
    LoopbackOrToken(Vec<String>),
    /// Bearer credentials checked by `verifier` (the control plane's credential table).
    /// A presented token is always checked, and the caller gets its role. A caller without
    /// one is refused, unless `trust_loopback` and it is on loopback (or in-process: no
    /// connection info), in which case it is the admin `local`.
    Credentials {
        /// Turns a presented token into a principal.
        verifier: Arc<dyn Verifier>,
        /// Whether a loopback caller without a token is the admin `local`.
        trust_loopback: bool,
    },
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::LoopbackOrToken(tokens) => write!(f, "LoopbackOrToken({} tokens)", tokens.len()),
            Self::Credentials { trust_loopback, .. } => {
                write!(f, "Credentials {{ trust_loopback: {trust_loopback} }}")
            }
        }
    }
}

/// Checks bearer credentials for [`Access::Credentials`]; the control plane implements it
/// over its credential table, so this crate knows nothing of how credentials are stored.
pub trait Verifier: Send + Sync {
    /// The principal `token` stands for.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a token that is malformed, unknown or revoked (the message says
    /// what to do); `CONTROL_PLANE_UNAVAILABLE` when a replicated control plane cannot read
    /// its credentials (no quorum); `INTERNAL` when the store fails.
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

/// What [`Verifier::verify`] returns: the check may wait for the control plane's cluster.
pub type VerifyFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Principal, ApiError>> + Send + 'a>>;

/// The caller, as the authentication layer saw it; in every request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A name for logs and `created_by`: `local`, `token`, `anonymous@ADDR`, or a
    /// credential's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// The trusted caller in this process or on loopback: `local`, an admin.
    pub fn local() -> Self {
        Self {
            name: "local".to_owned(),
            role: Role::Admin,
        }
    }

    /// The principal of a tonic request: the one the access layer attached, or
    /// [`Principal::local`] when none was (a call from inside this process, which never
    /// passed the access layer).
    pub fn from_request<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Self::local)
    }

    /// The name of a tonic request's principal (`anonymous` when none was attached, as in
    /// tests that call a service directly).
    pub fn of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Principal>()
            .map_or_else(|| "anonymous".to_owned(), |p| p.name.clone())
    }
}

/// The bearer token a caller presented (`Authorization: Bearer ...`), whatever the access
/// rule did with it; in the request's extensions so that a service can pass the caller's
/// credential on (the agent forwards it when it publishes). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken(pub String);

impl std::fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedToken(<hidden>)")
    }
}

impl PresentedToken {
    /// The token a tonic request carried, if any.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<String> {
        request
            .extensions()
            .get::<PresentedToken>()
            .map(|t| t.0.clone())
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
    let presented = bearer(&request).map(|t| PresentedToken(t.to_owned()));
    // Health checks (load balancers, orchestrators) carry no credential and learn nothing
    // but "ok".
    let health = request.uri().path() == "/healthz";
    let verdict = if health {
        Ok(Principal::local())
    } else {
        let token = bearer(&request).map(str::to_owned);
        authenticate(&access, token.as_deref(), remote).await
    };
    let mut response = match verdict {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            if let Some(token) = presented {
                request.extensions_mut().insert(token);
            }
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

async fn authenticate(
    access: &Access,
    bearer: Option<&str>,
    remote: Option<SocketAddr>,
) -> Result<Principal, ApiError> {
    // No connection info means an in-process call (tests, embedded use).
    // `::ffff:127.0.0.1` (a dual-stack listener) is loopback too.
    let local = remote.is_none_or(|r| r.ip().to_canonical().is_loopback());
    let tokens = match access {
        Access::Open => {
            return Ok(Principal {
                name: remote
                    .map_or_else(|| "local".to_owned(), |r| format!("anonymous@{}", r.ip())),
                role: Role::Admin,
            });
        }
        Access::Credentials {
            verifier,
            trust_loopback,
        } => {
            return match bearer {
                Some(token) => verifier.verify(token).await,
                None if local && *trust_loopback => Ok(Principal::local()),
                None => Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "this control plane needs a credential: pass --token or SHOAL_TOKEN \
                     (Authorization: Bearer ...); an admin issues one with `shoal token issue`",
                )),
            };
        }
        Access::LoopbackOrToken(tokens) => tokens,
    };
    if local {
        return Ok(Principal::local());
    }
    match bearer {
        Some(token)
            if tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) =>
        {
            Ok(Principal {
                name: "token".to_owned(),
                role: Role::Admin,
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

/// The bearer token of `Authorization: Bearer TOKEN`, if the request has one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
